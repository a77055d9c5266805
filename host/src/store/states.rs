//! The writer's memory of the newest stored state of each recently written object: what its
//! next version is compressed against (see `objects`). Bounded by a byte budget; an object
//! not remembered is looked up in the store (its newest record, rebuilt), so a restart or an
//! eviction costs a few reads, not a snapshot.
//!
//! Objects are remembered per *lineage*: the object plus the subresource written through,
//! since a `deployments/scale` event carries a `Scale`, not the Deployment, and the two
//! compress well only against their own kind.

use std::collections::HashMap;

use logistis_api::{Event, EventId};

use super::objects::{self, MAX_DEPTH};
use super::{Error, Keyspaces, Result, keys, record};

/// Records of an object looked at (newest first) to find the newest of its lineage.
const LOOKBACK: usize = 8;

/// One lineage's newest stored state.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub id: EventId,
    pub text: Vec<u8>,
    /// Deltas since the last self-contained record.
    pub depth: u32,
    /// Bytes of those deltas.
    pub dependent: usize,
}

impl State {
    /// Whether the next version should be self-contained instead of a delta on this one.
    pub fn snapshot_due(&self) -> bool {
        self.depth + 1 >= MAX_DEPTH || self.dependent > self.text.len() / 3
    }
}

#[derive(Debug)]
pub(crate) struct States {
    map: HashMap<Vec<u8>, State>,
    bytes: usize,
    budget: usize,
}

impl Default for States {
    fn default() -> Self {
        States::new(DEFAULT_BUDGET)
    }
}

/// Bytes of object text remembered by default.
pub const DEFAULT_BUDGET: usize = 8 * 1024 * 1024;

/// The lineage key of an event: its `by_object` prefix and its subresource.
pub(crate) fn lineage(event: &Event) -> Vec<u8> {
    lineage_of(
        super::writer::object_prefix(event),
        &event.resource.subresource,
    )
}

/// The lineage key of a subresource of the object whose `by_object` prefix is `prefix`.
pub(crate) fn lineage_of(mut prefix: Vec<u8>, subresource: &str) -> Vec<u8> {
    keys::push_field(&mut prefix, subresource);
    prefix
}

impl States {
    pub fn new(budget: usize) -> States {
        States {
            map: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// Called between groups: forget everything once over the budget (the store remembers).
    pub fn keep_within_budget(&mut self) {
        if self.bytes > self.budget {
            self.map.clear();
            self.bytes = 0;
        }
    }

    /// The newest stored state of `event`'s lineage: remembered, or read from the store.
    /// Read errors only cost compression: the next version is then self-contained.
    pub fn base(&mut self, ks: &Keyspaces, lineage: &[u8], event: &Event) -> Option<&State> {
        if !self.map.contains_key(lineage) {
            match load(ks, event) {
                Ok(Some(state)) => self.remember(lineage.to_vec(), state),
                Ok(None) => return None,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot read an object's newest version: storing the next one whole");
                    return None;
                }
            }
        }
        self.map.get(lineage)
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    pub fn remember(&mut self, lineage: Vec<u8>, state: State) {
        self.bytes += state.text.len() + lineage.len();
        if let Some(old) = self.map.insert(lineage, state) {
            self.bytes = self.bytes.saturating_sub(old.text.len());
        }
    }

    /// Forget lineages whose newest state may not be stored (a failed commit).
    pub fn forget(&mut self, lineages: &[Vec<u8>]) {
        for lineage in lineages {
            if let Some(old) = self.map.remove(lineage) {
                self.bytes = self.bytes.saturating_sub(old.text.len() + lineage.len());
            }
        }
    }

    /// Forget states whose event is being deleted (each with its lineage): nothing may be
    /// compressed against them. One lookup per deleted event, not a pass over every
    /// remembered state.
    pub fn forget_ids<'a>(&mut self, deleted: impl IntoIterator<Item = (EventId, &'a [u8])>) {
        for (id, lineage) in deleted {
            if self.map.get(lineage).is_some_and(|state| state.id == id)
                && let Some(state) = self.map.remove(lineage)
            {
                self.bytes = self.bytes.saturating_sub(state.text.len() + lineage.len());
            }
        }
    }
}

/// The newest stored record of `event`'s lineage, rebuilt.
fn load(ks: &Keyspaces, event: &Event) -> Result<Option<State>> {
    let prefix = super::writer::object_prefix(event);
    for guard in ks.by_object.prefix(&prefix).rev().take(LOOKBACK) {
        let Some(id) = keys::id_suffix(&guard.key()?) else {
            continue;
        };
        let Some(summary) = ks.events.get(id.to_be_bytes())? else {
            continue;
        };
        let (summary, _) = record::decode_summary_keys(id, &summary)?;
        if summary.resource.subresource != event.resource.subresource {
            continue;
        }
        let get = |id: EventId| ks.objects.get(id.to_be_bytes()).map_err(Error::from);
        let Some((texts, depth)) = objects::rebuild(id, get, &ks.dictionaries)? else {
            continue;
        };
        let Some(text) = texts.into_state() else {
            continue;
        };
        return Ok(Some(State {
            id,
            text,
            depth,
            // Unknown without reading every delta: counted from here.
            dependent: 0,
        }));
    }
    Ok(None)
}
