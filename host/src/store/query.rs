//! Reads: filtered, paginated event lists, single events, the namespace overview, one
//! object's history and the log in order (for sinks). Each picks the narrowest index for its
//! filters and walks it newest first; filters the index does not cover are applied to the
//! summaries, within a scan budget so no request can walk the whole store.

use fjall::Readable as _;
use logistis_api::{Event, EventId, NamespaceSummary, Operation, Status};

use std::collections::HashMap;

use super::objects::{self, Texts};
use super::record::{self, StoredPatch};
use super::{Engine, Fjall, Keyspaces, Result, keys, read_u64};

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
    /// Any of these confirmation statuses (events without a status never match).
    pub status: Option<Vec<Status>>,
}

impl EventFilter {
    /// Whether `event` passes every filter (for readers that follow the log, e.g. watches).
    pub fn matches_event(&self, event: &Event) -> bool {
        use std::borrow::Cow;
        let r = &event.resource;
        let fields = record::FilterFields {
            cluster: Cow::Borrowed(&event.cluster),
            resource: record::ResourceFields {
                group: Cow::Borrowed(&r.group),
                kind: Cow::Borrowed(&r.kind),
                namespace: Cow::Borrowed(&r.namespace),
                name: Cow::Borrowed(&r.name),
            },
            user: record::UserFields {
                username: Cow::Borrowed(&event.user.username),
            },
            operation: Cow::Borrowed(event.operation.as_str()),
            time: event.time,
        };
        self.matches_fields(&fields) && self.matches_status(event.status)
    }

    /// The status filter: the status lives in its own keyspace, so it is checked once the
    /// event is read (events without a status never match a status filter).
    fn matches_status(&self, status: Option<Status>) -> bool {
        self.status
            .as_ref()
            .is_none_or(|statuses| status.is_some_and(|status| statuses.contains(&status)))
    }

    /// Whether an event matches, from the borrowed fields of its summary (all but `status`).
    fn matches_fields(&self, event: &record::FilterFields<'_>) -> bool {
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
                .is_none_or(|o| o.as_str().eq_ignore_ascii_case(&event.operation))
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
    /// However many entries that is, a page stops reading after this long.
    pub const TIME_BUDGET: std::time::Duration = std::time::Duration::from_millis(250);
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
        let engine = self.shared().engine()?;
        let ks = &engine.ks;
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
        let started = std::time::Instant::now();
        let scanning_log = std::ptr::eq(keyspace, &ks.events);
        for guard in keyspace.range(lower..upper).rev() {
            let (key, value) = if scanning_log {
                let (key, value) = guard.into_inner()?;
                (key, Some(value))
            } else {
                (guard.key()?, None)
            };
            let Some(id) = keys::id_suffix(&key) else {
                continue;
            };
            examined += 1;
            // Filters no index covers (group alone, operation alone) are answered a slice at a
            // time: the page ends early with a `continue` token.
            if examined > scan.budget || started.elapsed() > Scan::TIME_BUDGET {
                next = Some(EventId(id.0 + 1));
                break;
            }
            let value = match value {
                Some(value) => value,
                None => match ks.events.get(id.to_be_bytes())? {
                    Some(value) => value,
                    None => continue,
                },
            };
            if !filter.matches_fields(&record::decode_filter_fields(id, &value)?) {
                continue;
            }
            if items.len() == scan.limit {
                // One more match exists: the page is full and there is more to read.
                next = items.last().map(|e: &Event| e.id);
                break;
            }
            let event = self.summary_from(&engine, id, &value)?;
            if !filter.matches_status(event.status) {
                continue;
            }
            items.push(event);
        }
        Ok(Page { items, next })
    }

    /// One event's summary (no objects).
    pub fn summary(&self, id: EventId) -> Result<Option<Event>> {
        let engine = self.shared().engine()?;
        self.summary_in(&engine, id)
    }

    fn summary_in(&self, engine: &Engine, id: EventId) -> Result<Option<Event>> {
        let Some(value) = engine.ks.events.get(id.to_be_bytes())? else {
            return Ok(None);
        };
        self.summary_from(engine, id, &value).map(Some)
    }

    fn summary_from(&self, engine: &Engine, id: EventId, value: &[u8]) -> Result<Event> {
        let (mut event, patch, _) = record::decode_summary(id, value)?;
        if patch == StoredPatch::WholeObject {
            // A CREATE: self-contained, one record.
            let texts = texts(&engine.ks, &engine.db.snapshot(), id)?;
            let object = parse(id, texts.object.as_deref())?;
            event.patch = record::whole_object_patch(object.as_ref());
        }
        self.merge_status(&mut event)?;
        Ok(event)
    }

    /// One event with its objects.
    pub fn get_event(&self, id: EventId) -> Result<Option<Event>> {
        // One snapshot for the summary and the chain of deltas: retention may rewrite them.
        let engine = self.shared().engine()?;
        let snapshot = engine.db.snapshot();
        let Some(value) = snapshot.get(&engine.ks.events, id.to_be_bytes())? else {
            return Ok(None);
        };
        let (mut event, patch, _) = record::decode_summary(id, &value)?;
        let texts = texts(&engine.ks, &snapshot, id)?;
        event.object = parse(id, texts.object.as_deref())?;
        event.old_object = parse(id, texts.old_object.as_deref())?;
        if patch == StoredPatch::WholeObject {
            event.patch = record::whole_object_patch(event.object.as_ref());
        }
        self.merge_status(&mut event)?;
        Ok(Some(event))
    }

    /// Every namespace with stored events: count and newest event.
    pub fn namespaces(&self) -> Result<Vec<NamespaceSummary>> {
        let engine = self.shared().engine()?;
        let ks = &engine.ks;
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
                    Some(id) => self.summary_in(&engine, id)?,
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
        let engine = self.shared().engine()?;
        let ks = &engine.ks;
        let prefix = object.prefix();
        // One snapshot for every read: retention may delete versions meanwhile, and the
        // versions and the count of trimmed ones must describe the same moment.
        let snapshot = engine.db.snapshot();
        let mut events = Vec::new();
        // The state of every version read so far: the base of the next delta is one of them.
        let mut states: HashMap<EventId, Vec<u8>> = HashMap::new();
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
                let texts = match objects::base_of(id, &value)? {
                    None => objects::decode(id, &value, None, &ks.dictionaries)?,
                    Some(base) => match states.get(&base) {
                        Some(state) => objects::decode(id, &value, Some(state), &ks.dictionaries)?,
                        // Not a version of this object read here: rebuild it on its own.
                        None => texts(ks, &snapshot, id)?,
                    },
                };
                event.object = parse(id, texts.object.as_deref())?;
                if event.object.is_none() || event.operation == Operation::Delete {
                    event.old_object = parse(id, texts.old_object.as_deref())?;
                }
                if let Some(state) = texts.into_state() {
                    states.insert(id, state);
                }
            }
            if patch == StoredPatch::WholeObject {
                event.patch = record::whole_object_patch(event.object.as_ref());
            }
            if let Some(value) = snapshot.get(&ks.status, id.to_be_bytes())? {
                super::StatusRecord::decode(id, &value)?.apply_to(&mut event);
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
        let engine = self.shared().engine()?;
        let ks = &engine.ks;
        let start = after.map_or(0, |id| id.0.saturating_add(1));
        let snapshot = engine.db.snapshot();
        let mut events = Vec::with_capacity(limit.min(1024));
        // States of the events read so far: most deltas in a page are on one of them.
        let mut states: HashMap<EventId, Vec<u8>> = HashMap::new();
        for guard in snapshot.range(&ks.events, start.to_be_bytes()..) {
            if events.len() >= limit {
                break;
            }
            let (key, summary) = guard.into_inner()?;
            let Some(id) = keys::id_suffix(&key) else {
                continue;
            };
            let (mut event, patch, _) = record::decode_summary(id, &summary)?;
            if let Some(value) = snapshot.get(&ks.objects, id.to_be_bytes())? {
                let texts = match objects::base_of(id, &value)? {
                    Some(base) if states.contains_key(&base) => objects::decode(
                        id,
                        &value,
                        states.get(&base).map(Vec::as_slice),
                        &ks.dictionaries,
                    )?,
                    None => objects::decode(id, &value, None, &ks.dictionaries)?,
                    Some(_) => texts(ks, &snapshot, id)?,
                };
                event.object = parse(id, texts.object.as_deref())?;
                event.old_object = parse(id, texts.old_object.as_deref())?;
                if let Some(state) = texts.into_state() {
                    states.insert(id, state);
                }
            }
            if patch == StoredPatch::WholeObject {
                event.patch = record::whole_object_patch(event.object.as_ref());
            }
            events.push(event);
        }
        Ok(events)
    }
}

impl Fjall {
    /// The objects of one kind that have stored events, in key order, strictly after
    /// `after` (namespace, name), at most `limit` — for the confirmer's catch-up after a
    /// list: one seek per object, never a read of its events.
    pub fn object_names(
        &self,
        group: &str,
        kind: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let engine = self.shared().engine()?;
        let ks = &engine.ks;
        let kind = kind.to_ascii_lowercase();
        let kind_prefix = keys::prefix(&[group, &kind]);
        let mut start = match after {
            // Past every id of that object: its prefix, then more than 8 bytes of 0xff.
            Some((namespace, name)) => {
                let mut key = keys::prefix(&[group, &kind, namespace, name]);
                key.extend_from_slice(&[0xff; 9]);
                key
            }
            None => kind_prefix.clone(),
        };
        let mut end = kind_prefix.clone();
        end.extend_from_slice(&[0xff; 9]);
        let mut names = Vec::new();
        while names.len() < limit {
            let Some(guard) = ks.by_object.range(start.clone()..end.clone()).next() else {
                break;
            };
            let key = guard.key()?;
            let Some(fields) = key
                .len()
                .checked_sub(8)
                .and_then(|cut| keys::decode_fields(&key[..cut]))
            else {
                break;
            };
            let [_, _, namespace, name] =
                <[String; 4]>::try_from(fields).map_err(|_| super::Error::Corrupt {
                    id: keys::id_suffix(&key).unwrap_or(EventId(0)),
                    reason: "object index key without four fields",
                })?;
            start = keys::prefix(&[group, &kind, &namespace, &name]);
            start.extend_from_slice(&[0xff; 9]);
            names.push((namespace, name));
        }
        Ok(names)
    }
}

/// The texts of event `id`'s objects, rebuilt from its record and those of its bases.
fn texts(ks: &Keyspaces, snapshot: &fjall::Snapshot, id: EventId) -> Result<Texts> {
    let get = |id: EventId| {
        snapshot
            .get(&ks.objects, id.to_be_bytes())
            .map_err(super::Error::from)
    };
    Ok(objects::rebuild(id, get, &ks.dictionaries)?
        .map(|(texts, _)| texts)
        .unwrap_or_default())
}

/// Parse one object's JSON text.
fn parse(id: EventId, text: Option<&[u8]>) -> Result<Option<serde_json::Value>> {
    text.map(|text| {
        serde_json::from_slice(text).map_err(|source| super::Error::Decode { id, source })
    })
    .transpose()
}
