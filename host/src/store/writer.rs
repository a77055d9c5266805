//! The single writer: every mutation of the store goes through this thread.
//!
//! Group commit: the thread blocks for one command, then drains whatever else is queued (up
//! to [`MAX_GROUP`]) into one fjall write batch, commits it, fsyncs once in sync mode, and
//! only then answers every waiting request. Concurrent admission requests therefore share
//! one fsync, and one writer makes id allocation, dedupe and counters race-free.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use fjall::{OwnedWriteBatch, PersistMode};
use logistis_api::{Event, EventId};
use tokio::sync::oneshot;

use super::record::{self, Objects, StoredPatch};
use super::{ASYNC_FLUSH_INTERVAL, Durability, Error, Result, Shared, keys, read_u64};
use crate::admission::NewEvent;

/// Upper bound on events per group commit, so one batch never grows without limit.
const MAX_GROUP: usize = 512;

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored under this new id.
    Recorded(EventId),
    /// The same review was already stored under this id; nothing was written.
    Duplicate(EventId),
}

/// An event ready for the writer: serialised on the caller's thread, so the one writer
/// thread only allocates the id, checks dedupe and fills the batch.
pub(crate) struct Prepared {
    /// The event without its objects (for index keys); its `id` is assigned by the writer.
    pub event: Event,
    /// The summary value (see `record`); its JSON carries a placeholder id — the real one is
    /// the key, and decoding takes it from there.
    pub summary: Vec<u8>,
    pub objects: Option<Vec<u8>>,
    pub dedupe_key: Option<[u8; 32]>,
}

impl Prepared {
    pub fn new(new_event: NewEvent) -> Prepared {
        let NewEvent {
            mut event,
            dedupe_key,
        } = new_event;
        let objects = Objects {
            object: event.object.take(),
            old_object: event.old_object.take(),
        };
        // A CREATE's patch is its object: stored once, rebuilt on reading.
        let patch = if record::patch_is_whole_object(&event.patch, objects.object.as_ref()) {
            event.patch = serde_json::Value::Null;
            StoredPatch::WholeObject
        } else {
            StoredPatch::Inline
        };
        Prepared {
            summary: record::encode_summary(&event, dedupe_key.as_ref(), patch),
            objects: (!objects.is_empty()).then(|| record::encode_objects(&objects)),
            event,
            dedupe_key,
        }
    }
}

pub(crate) enum Command {
    Append(Box<Prepared>, oneshot::Sender<Result<Appended>>),
    /// Remove these events and their index entries (from retention).
    Delete(Vec<EventId>, Sender<Result<u64>>),
    SaveCursor(String, EventId, Sender<Result<()>>),
    /// Write (`Some`) or remove (`None`) one lock, then fsync (see `store::locks`).
    Lock(Vec<u8>, Option<Vec<u8>>, Sender<Result<()>>),
    Shutdown,
}

/// Index keys of one event: (keyspace, key) pairs, shared by insert and delete.
pub(crate) fn object_prefix(event: &Event) -> Vec<u8> {
    resource_prefix(&event.resource)
}

/// The `by_object` prefix of a resource (kind lower-cased: kind matches case-insensitively).
pub(crate) fn resource_prefix(r: &logistis_api::ResourceRef) -> Vec<u8> {
    keys::prefix(&[
        &r.group,
        &r.kind.to_ascii_lowercase(),
        &r.namespace,
        &r.name,
    ])
}

/// An append reported to retention once it is committed: the object's `by_object` prefix
/// and the event's id.
pub(crate) type Touched = (Vec<u8>, EventId);

struct Writer {
    shared: std::sync::Arc<Shared>,
    retention: Sender<Touched>,
    last_id: u64,
    ns_counts: HashMap<String, u64>,
    dirty: bool,
}

pub(crate) fn start(
    shared: std::sync::Arc<Shared>,
    retention: Sender<Touched>,
) -> Result<(Sender<Command>, JoinHandle<()>)> {
    let last_id = shared
        .ks
        .events
        .last_key_value()
        .map(|guard| guard.key())
        .transpose()?
        .and_then(|key| keys::id_suffix(&key))
        .map_or(0, |id| id.0);
    let ns_counts = load_counts(&shared)?;
    let (sender, receiver) = crossbeam_channel::unbounded();
    let mut writer = Writer {
        shared,
        retention,
        last_id,
        ns_counts,
        dirty: false,
    };
    let thread = std::thread::Builder::new()
        .name("logistis-store-writer".into())
        .spawn(move || writer.run(receiver))
        .map_err(|e| Error::Io(fjall::Error::Io(e)))?;
    Ok((sender, thread))
}

impl Writer {
    fn run(&mut self, commands: Receiver<Command>) {
        let mut last_flush = Instant::now();
        loop {
            let first = match commands.recv_timeout(ASYNC_FLUSH_INTERVAL) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    self.background_flush(&mut last_flush);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut appends = Vec::new();
            let mut shutdown = false;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append(event, reply) => appends.push((event, reply)),
                    Command::Delete(ids, reply) => {
                        let _ = reply.send(self.delete(&ids));
                    }
                    Command::SaveCursor(name, id, reply) => {
                        let _ = reply.send(self.save_cursor(&name, id));
                    }
                    Command::Lock(key, value, reply) => {
                        let _ = reply.send(super::locks::apply(&self.shared, key, value));
                    }
                    Command::Shutdown => {
                        shutdown = true;
                        break;
                    }
                }
                if appends.len() < MAX_GROUP {
                    next = commands.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                // A bug in one group must not take the writer (and every later write) down:
                // the group's requests see the writer error, the next group goes on.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.append_group(appends);
                }));
                if outcome.is_err() {
                    tracing::error!(
                        "the store writer panicked on a group of events; they were not recorded"
                    );
                    self.shared
                        .stats
                        .write_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.reload_counts();
                }
            }
            if self.shared.settings.durability == Durability::Async {
                self.background_flush(&mut last_flush);
            }
            if shutdown {
                break;
            }
        }
        if let Err(error) = self.shared.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %error, "final flush of the store failed");
        }
        tracing::debug!("store writer stopped");
    }

    fn background_flush(&mut self, last_flush: &mut Instant) {
        if self.dirty && last_flush.elapsed() >= ASYNC_FLUSH_INTERVAL {
            if let Err(error) = self.shared.db.persist(PersistMode::SyncData) {
                tracing::error!(error = %error, "background flush of the store failed");
            }
            self.dirty = false;
            *last_flush = Instant::now();
        }
    }

    fn next_id(&mut self) -> EventId {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.last_id = now.max(self.last_id + 1);
        EventId(self.last_id)
    }

    fn append_group(&mut self, appends: Vec<(Box<Prepared>, oneshot::Sender<Result<Appended>>)>) {
        let shared = self.shared.clone();
        let ks = &shared.ks;
        let mut batch = self.shared.db.batch();
        let mut outcomes = Vec::with_capacity(appends.len());
        let mut in_batch: HashMap<[u8; 32], EventId> = HashMap::new();
        let mut touched = Vec::new();
        let mut ns_touched = Vec::new();
        if self.shared.settings.durability == Durability::Discard {
            for (_, reply) in appends {
                let _ = reply.send(Ok(Appended::Recorded(self.next_id())));
            }
            return;
        }
        let (prepared, replies): (Vec<_>, Vec<_>) = appends.into_iter().unzip();
        for prepared in prepared {
            // Taken before the event's bytes move into the batch.
            let prefix = object_prefix(&prepared.event);
            let namespace = prepared.event.resource.namespace.clone();
            let outcome = self.add_to_batch(*prepared, &mut batch, &mut in_batch);
            if let Ok(Appended::Recorded(id)) = outcome {
                if self.shared.settings.max_versions_per_object > 0 {
                    touched.push((prefix, id));
                }
                ns_touched.push(namespace);
            }
            outcomes.push(outcome);
        }
        for namespace in ns_touched {
            let count = self.ns_counts.entry(namespace.clone()).or_insert(0);
            *count += 1;
            batch.insert(
                &ks.ns_stats,
                ns_key(&namespace),
                count.to_le_bytes().to_vec(),
            );
        }
        let result = batch
            .commit()
            .and_then(|()| match self.shared.settings.durability {
                Durability::Sync => self.shared.db.persist(PersistMode::SyncAll),
                Durability::Async | Durability::Discard => Ok(()),
            });
        self.dirty = true;
        self.shared
            .stats
            .write_batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(()) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                for appended in touched {
                    let _ = self.retention.send(appended);
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "committing a group of events failed");
                self.shared
                    .stats
                    .write_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Nothing of this group is durable: reload the counters and fail every request.
                self.reload_counts();
                for reply in replies {
                    let _ = reply.send(Err(Error::Io(fjall::Error::Poisoned)));
                }
            }
        }
    }

    fn reload_counts(&mut self) {
        self.ns_counts = load_counts(&self.shared).unwrap_or_default();
    }

    /// Add one event to the batch, or report it as a duplicate.
    fn add_to_batch(
        &mut self,
        prepared: Prepared,
        batch: &mut OwnedWriteBatch,
        in_batch: &mut HashMap<[u8; 32], EventId>,
    ) -> Result<Appended> {
        let shared = self.shared.clone();
        let ks = &shared.ks;
        if let Some(key) = &prepared.dedupe_key {
            if let Some(id) = in_batch.get(key) {
                return Ok(Appended::Duplicate(*id));
            }
            if let Some(value) = ks.dedupe.get(key)? {
                return Ok(Appended::Duplicate(
                    keys::id_suffix(&value).unwrap_or(EventId(0)),
                ));
            }
        }
        let id = self.next_id();
        let id_bytes = id.to_be_bytes();
        batch.insert(&ks.events, id_bytes.to_vec(), prepared.summary);
        if let Some(objects) = prepared.objects {
            batch.insert(&ks.objects, id_bytes.to_vec(), objects);
        }
        for (keyspace, key) in index_keys(
            ks,
            &prepared.event.resource,
            &prepared.event.user.username,
            id,
        ) {
            batch.insert(keyspace, key, Vec::<u8>::new());
        }
        if let Some(key) = &prepared.dedupe_key {
            batch.insert(&ks.dedupe, key.to_vec(), id_bytes.to_vec());
            in_batch.insert(*key, id);
        }
        Ok(Appended::Recorded(id))
    }

    fn delete(&mut self, ids: &[EventId]) -> Result<u64> {
        let shared = self.shared.clone();
        let ks = &shared.ks;
        let mut batch = self.shared.db.batch();
        let mut removed = 0;
        let mut trimmed: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut ns_removed: HashMap<String, u64> = HashMap::new();
        for &id in ids {
            let id_bytes = id.to_be_bytes();
            let Some(value) = ks.events.get(id_bytes)? else {
                continue;
            };
            let (summary, dedupe) = record::decode_summary_keys(id, &value)?;
            batch.remove(&ks.events, id_bytes.to_vec());
            batch.remove(&ks.objects, id_bytes.to_vec());
            for (keyspace, key) in index_keys(ks, &summary.resource, &summary.user.username, id) {
                batch.remove(keyspace, key);
            }
            if let Some(key) = dedupe {
                batch.remove(&ks.dedupe, key.to_vec());
            }
            *trimmed
                .entry(resource_prefix(&summary.resource))
                .or_default() += 1;
            *ns_removed
                .entry(summary.resource.namespace.clone())
                .or_default() += 1;
            removed += 1;
        }
        for (prefix, count) in trimmed {
            let before = ks.trimmed.get(&prefix)?.map_or(0, |v| read_u64(&v));
            batch.insert(&ks.trimmed, prefix, (before + count).to_le_bytes().to_vec());
        }
        for (namespace, count) in ns_removed {
            let current = self.ns_counts.entry(namespace.clone()).or_insert(0);
            *current = current.saturating_sub(count);
            if *current == 0 {
                self.ns_counts.remove(&namespace);
                batch.remove(&ks.ns_stats, ns_key(&namespace));
            } else {
                batch.insert(
                    &ks.ns_stats,
                    ns_key(&namespace),
                    current.to_le_bytes().to_vec(),
                );
            }
        }
        let result = batch.commit().map_err(Error::from);
        if result.is_err() {
            self.reload_counts();
        }
        result?;
        self.dirty = true;
        self.shared
            .stats
            .events_removed_by_retention
            .fetch_add(removed, std::sync::atomic::Ordering::Relaxed);
        Ok(removed)
    }

    fn save_cursor(&mut self, name: &str, id: EventId) -> Result<()> {
        let mut batch = self.shared.db.batch();
        batch.insert(
            &self.shared.ks.cursors,
            name.as_bytes().to_vec(),
            id.to_be_bytes().to_vec(),
        );
        batch.commit()?;
        self.shared.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

/// The `ns_stats` key of a namespace: encoded like index fields, so the cluster scope (`""`)
/// is a valid, non-empty key.
pub(crate) fn ns_key(namespace: &str) -> Vec<u8> {
    keys::prefix(&[namespace])
}

/// Namespace → event count, from `ns_stats`.
pub(crate) fn load_counts(shared: &Shared) -> Result<HashMap<String, u64>> {
    let mut counts = HashMap::new();
    for guard in shared.ks.ns_stats.iter() {
        let (key, value) = guard.into_inner()?;
        if let Some(namespace) = keys::decode_fields(&key).and_then(|f| f.into_iter().next()) {
            counts.insert(namespace, read_u64(&value));
        }
    }
    Ok(counts)
}

/// Every index entry of an event.
fn index_keys<'a>(
    ks: &'a super::Keyspaces,
    r: &logistis_api::ResourceRef,
    username: &str,
    id: EventId,
) -> [(&'a fjall::Keyspace, Vec<u8>); 5] {
    let kind = r.kind.to_ascii_lowercase();
    [
        (&ks.by_object, keys::with_id(&resource_prefix(r), id)),
        (
            &ks.by_namespace,
            keys::with_id(&keys::prefix(&[&r.namespace]), id),
        ),
        (&ks.by_kind, keys::with_id(&keys::prefix(&[&kind]), id)),
        (
            &ks.by_kind_ns,
            keys::with_id(&keys::prefix(&[&r.namespace, &kind]), id),
        ),
        (&ks.by_user, keys::with_id(&keys::prefix(&[username]), id)),
    ]
}
