//! Reads: filtered, paginated event lists, single events, the namespace overview, one
//! object's history and the log in order (for sinks). Each picks the narrowest index for its
//! filters and walks it newest first; filters the index does not cover are applied to the
//! summaries, within a scan budget so no request can walk the whole store.

use fjall::Readable as _;
use logistis_api::{Event, EventId, NamespaceSummary, Operation};

use super::record::{self, Objects, StoredPatch};
use super::{Fjall, Result, keys, read_u64};

/// Filters of `GET /api/v1/events`. `namespace: Some("")` selects cluster-scoped objects.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Events of this cluster only (`--cluster` of the server that recorded them).
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub group: Option<String>,
    /// Matched case-insensitively.
    pub kind: Option<String>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub operation: Option<Operation>,
    /// Inclusive lower bound on the event time (microseconds since the epoch).
    pub since_micros: Option<i64>,
    /// Exclusive upper bound on the event time (microseconds since the epoch).
    pub until_micros: Option<i64>,
}

impl EventFilter {
    fn matches(&self, event: &Event) -> bool {
        let r = &event.resource;
        let time = event.time.timestamp_micros();
        self.cluster.as_ref().is_none_or(|c| *c == event.cluster)
            && self.namespace.as_ref().is_none_or(|ns| *ns == r.namespace)
            && self.group.as_ref().is_none_or(|g| *g == r.group)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| k.eq_ignore_ascii_case(&r.kind))
            && self.name.as_ref().is_none_or(|n| *n == r.name)
            && self.user.as_ref().is_none_or(|u| *u == event.user.username)
            && self
                .operation
                .as_ref()
                .is_none_or(|o| *o == event.operation)
            && self.since_micros.is_none_or(|since| time >= since)
            && self.until_micros.is_none_or(|until| time < until)
    }
}

/// How much of a list to read.
#[derive(Debug, Clone, Copy)]
pub struct Scan {
    pub limit: usize,
    /// Continue strictly before this id (from a `continue` token).
    pub before: Option<EventId>,
    /// At most this many index entries are examined; the page then ends early with a
    /// `continue` token so the client can go on.
    pub budget: usize,
}

impl Scan {
    pub const DEFAULT_BUDGET: usize = 20_000;
}

/// A page of events, newest first. `next` continues strictly before that id.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Event>,
    pub next: Option<EventId>,
}

/// One object: the path segments of `/api/v1/objects/{group}/{kind}/{namespace}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub group: String,
    /// Matched case-insensitively.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    fn prefix(&self) -> Vec<u8> {
        keys::prefix(&[
            &self.group,
            &self.kind.to_ascii_lowercase(),
            &self.namespace,
            &self.name,
        ])
    }
}

/// Ids are allocated from the clock in microseconds, never before the receive time, so a
/// time bound is also an id bound (the exact check on `time` follows).
fn id_floor(micros: Option<i64>) -> u64 {
    micros.map_or(0, |m| u64::try_from(m).unwrap_or(0))
}

impl Fjall {
    /// Events matching `filter`, newest first.
    pub fn list_events(&self, filter: &EventFilter, scan: Scan) -> Result<Page> {
        let ks = &self.shared().ks;
        let kind = filter.kind.as_ref().map(|k| k.to_ascii_lowercase());
        let (keyspace, prefix) = match (&filter.group, &kind, &filter.namespace, &filter.name) {
            (Some(group), Some(kind), Some(ns), Some(name)) => {
                (&ks.by_object, keys::prefix(&[group, kind, ns, name]))
            }
            (_, Some(kind), Some(ns), _) => (&ks.by_kind_ns, keys::prefix(&[ns, kind])),
            (_, Some(kind), None, _) => (&ks.by_kind, keys::prefix(&[kind])),
            (_, None, Some(ns), _) => (&ks.by_namespace, keys::prefix(&[ns])),
            _ => match &filter.user {
                Some(user) => (&ks.by_user, keys::prefix(&[user])),
                None => (&ks.events, Vec::new()),
            },
        };
        let lower = keys::with_id(&prefix, EventId(id_floor(filter.since_micros)));
        // The id of an event is allocated at or after its receive time, so an event received
        // before `until` may carry an id a little later: widen by a minute, then filter exactly.
        let until = filter
            .until_micros
            .map(|u| id_floor(Some(u)).saturating_add(60_000_000));
        let upper_id = match (scan.before, until) {
            (Some(before), Some(until)) => Some(before.0.min(until)),
            (Some(before), None) => Some(before.0),
            (None, until) => until,
        };
        let upper = match upper_id {
            Some(id) => keys::with_id(&prefix, EventId(id)),
            None => {
                let mut end = prefix.clone();
                end.extend_from_slice(&[0xff; 9]);
                end
            }
        };
        let mut items = Vec::new();
        let mut examined = 0;
        let mut next = None;
        for guard in keyspace.range(lower..upper).rev() {
            let key = guard.key()?;
            let Some(id) = keys::id_suffix(&key) else {
                continue;
            };
            examined += 1;
            if examined > scan.budget {
                next = Some(EventId(id.0 + 1));
                break;
            }
            let Some(event) = self.summary(id)? else {
                continue;
            };
            if !filter.matches(&event) {
                continue;
            }
            if items.len() == scan.limit {
                // One more match exists: the page is full and there is more to read.
                next = items.last().map(|e: &Event| e.id);
                break;
            }
            items.push(event);
        }
        Ok(Page { items, next })
    }

    /// One event's summary (no objects).
    pub fn summary(&self, id: EventId) -> Result<Option<Event>> {
        let Some(value) = self.shared().ks.events.get(id.to_be_bytes())? else {
            return Ok(None);
        };
        let (mut event, patch, _) = record::decode_summary(id, &value)?;
        if patch == StoredPatch::WholeObject {
            let raw = self.shared().ks.objects.get(id.to_be_bytes())?;
            let object = match &raw {
                Some(value) => {
                    record::parse_raw(id, record::decode_raw_objects(id, value)?.object)?
                }
                None => None,
            };
            event.patch = record::whole_object_patch(object.as_ref());
        }
        Ok(Some(event))
    }

    /// One event with its objects.
    pub fn get_event(&self, id: EventId) -> Result<Option<Event>> {
        let Some(value) = self.shared().ks.events.get(id.to_be_bytes())? else {
            return Ok(None);
        };
        let (mut event, patch, _) = record::decode_summary(id, &value)?;
        let objects = self.objects(id)?;
        if patch == StoredPatch::WholeObject {
            event.patch = record::whole_object_patch(objects.object.as_ref());
        }
        event.object = objects.object;
        event.old_object = objects.old_object;
        Ok(Some(event))
    }

    fn objects(&self, id: EventId) -> Result<Objects> {
        match self.shared().ks.objects.get(id.to_be_bytes())? {
            Some(value) => record::decode_objects(id, &value),
            None => Ok(Objects::default()),
        }
    }

    /// Every namespace with stored events: count and newest event.
    pub fn namespaces(&self) -> Result<Vec<NamespaceSummary>> {
        let ks = &self.shared().ks;
        let mut summaries = Vec::new();
        for guard in ks.ns_stats.iter() {
            let (key, value) = guard.into_inner()?;
            let Some(namespace) = keys::decode_fields(&key).and_then(|f| f.into_iter().next())
            else {
                continue;
            };
            let latest = match ks
                .by_namespace
                .prefix(keys::prefix(&[&namespace]))
                .next_back()
            {
                Some(guard) => match keys::id_suffix(&guard.key()?) {
                    Some(id) => self.summary(id)?,
                    None => None,
                },
                None => None,
            };
            summaries.push(NamespaceSummary {
                cluster: latest
                    .as_ref()
                    .map(|e| e.cluster.clone())
                    .unwrap_or_default(),
                namespace,
                events: read_u64(&value),
                latest,
            });
        }
        Ok(summaries)
    }

    /// Every stored event of one object, oldest first, and how many older events retention
    /// removed. Each event carries its `object`; `oldObject` only where it is the only state
    /// (a DELETE, or an event without `object`) — rebuilding versions needs nothing more, and
    /// not parsing it halves the work of a history answer.
    pub fn object_events(&self, object: &ObjectKey) -> Result<(Vec<Event>, u64)> {
        let ks = &self.shared().ks;
        let prefix = object.prefix();
        // One snapshot for every read: retention may delete versions meanwhile, and the
        // versions and the count of trimmed ones must describe the same moment.
        let snapshot = self.shared().db.snapshot();
        let mut events = Vec::new();
        for guard in snapshot.prefix(&ks.by_object, &prefix) {
            let key = guard.key()?;
            let Some(id) = keys::id_suffix(&key) else {
                continue;
            };
            let Some(summary) = snapshot.get(&ks.events, id.to_be_bytes())? else {
                continue;
            };
            let (mut event, patch, _) = record::decode_summary(id, &summary)?;
            if let Some(value) = snapshot.get(&ks.objects, id.to_be_bytes())? {
                let raw = record::decode_raw_objects(id, &value)?;
                event.object = record::parse_raw(id, raw.object)?;
                if event.object.is_none() || event.operation == Operation::Delete {
                    event.old_object = record::parse_raw(id, raw.old_object)?;
                }
            }
            if patch == StoredPatch::WholeObject {
                event.patch = record::whole_object_patch(event.object.as_ref());
            }
            events.push(event);
        }
        let trimmed = snapshot
            .get(&ks.trimmed, &prefix)?
            .map_or(0, |v| read_u64(&v));
        Ok((events, trimmed))
    }

    /// The log in order, strictly after `after`, with objects (for sinks).
    pub fn read_log(&self, after: Option<EventId>, limit: usize) -> Result<Vec<Event>> {
        let start = after.map_or(0, |id| id.0.saturating_add(1));
        let mut events = Vec::with_capacity(limit.min(1024));
        for guard in self.shared().ks.events.range(start.to_be_bytes()..) {
            if events.len() >= limit {
                break;
            }
            let key = guard.key()?;
            if let Some(id) = keys::id_suffix(&key)
                && let Some(event) = self.get_event(id)?
            {
                events.push(event);
            }
        }
        Ok(events)
    }
}
