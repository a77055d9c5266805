//! The single writer: every mutation of the store goes through this thread.
//!
//! Group commit: the thread blocks for one command, then drains whatever else is queued (up
//! to [`MAX_GROUP`]) into one fjall write batch, commits it, fsyncs once in sync mode, and
//! only then answers every waiting request. Concurrent admission requests therefore share
//! one fsync, and one writer makes id allocation, dedupe and counters race-free.

use std::collections::{HashMap, HashSet};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use fjall::{OwnedWriteBatch, PersistMode};
use logistis_api::{Event, EventId, Operation};
use tokio::sync::oneshot;

use super::bulk::{Puts, Runs};
use super::dicts::{self, Dict, Dictionaries, Sampler};
use super::objects::{self, Base, Precompressed, Texts};
use super::record::{self, StoredPatch};
use super::states::{self, State, States};
use super::status::{StatusRecord, StatusUpdate};
use super::{ASYNC_FLUSH_INTERVAL, Durability, Error, Result, Shared, keys, read_u64};
use crate::admission::NewEvent;

/// Upper bound on events per group commit, so one batch never grows without limit.
const MAX_GROUP: usize = 512;
/// An event with this uid makes the writer panic, in tests.
#[cfg(test)]
pub(crate) const PANIC_FOR_TESTS: &str = "logistis-test-panic-in-the-writer";
/// fjall's limit on the length of a key.
const MAX_KEY_LEN: usize = u16::MAX as usize;
/// While writes fail, how often the volume is probed.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a reopen waits for readers to let go of the old database.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Survivors of an object looked at after its deleted versions, for deltas to rewrite.
const REBASE_WINDOW: usize = 64;

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored under this new id.
    Recorded(EventId),
    /// The same review was already stored under this id; nothing was written.
    Duplicate(EventId),
}

/// An event ready for the writer: serialised (and its object compressed) on the caller's
/// thread, so the one writer thread only allocates the id, checks dedupe, compresses the old
/// object against the previous version and fills the batch.
pub(crate) struct Prepared {
    /// The event without its objects (for index keys); its `id` is assigned by the writer.
    pub event: Event,
    /// The summary value (see `record`); its JSON carries a placeholder id — the real one is
    /// the key, and decoding takes it from there.
    pub summary: Vec<u8>,
    pub objects: Option<Precompressed>,
    pub dedupe_key: Option<[u8; 32]>,
    /// The event's first status (`pending`, or `observed` for a change the watch saw),
    /// written beside it; `None` when it is not confirmed by a watch.
    pub status: Option<StatusRecord>,
}

impl Prepared {
    /// `dictionaries`: the open database's, for an object stored whole (none while the
    /// database is being reopened: the object is then compressed alone).
    pub fn new(new_event: NewEvent, dictionaries: Option<&Dictionaries>) -> Prepared {
        let NewEvent {
            mut event,
            dedupe_key,
        } = new_event;
        // The status is mutable: it lives in its own keyspace, never in the summary.
        let status = event.status.take().map(|status| StatusRecord {
            status,
            confirmation: event.confirmation.take(),
        });
        let object = event.object.take();
        let old_object = event.old_object.take();
        // A CREATE's patch is its object: stored once, rebuilt on reading.
        let patch = if record::patch_is_whole_object(&event.patch, object.as_ref()) {
            event.patch = serde_json::Value::Null;
            StoredPatch::WholeObject
        } else {
            StoredPatch::Inline
        };
        let text = |value: Option<serde_json::Value>| {
            value.map(|v| serde_json::to_vec(&v).expect("a JSON value always serialises"))
        };
        let texts = Texts {
            object: text(object),
            old_object: text(old_object),
        };
        let dict = dictionaries.and_then(|d| d.for_kind(&dicts::kind_key(&event)));
        Prepared {
            summary: record::encode_summary(&event, dedupe_key.as_ref(), patch),
            objects: (!texts.is_empty()).then(|| Precompressed::new(texts, dict)),
            event,
            dedupe_key,
            status,
        }
    }
}

pub(crate) enum Command {
    Append(Box<Prepared>, oneshot::Sender<Result<Appended>>),
    /// Remove these events and their index entries (from retention).
    Delete(Vec<EventId>, Sender<Result<u64>>),
    SaveCursor(String, EventId, Sender<Result<()>>),
    /// Change the status of events (from the confirmer), group-committed.
    SetStatus(Vec<StatusUpdate>, oneshot::Sender<Result<()>>),
    /// Write (`Some`) or remove (`None`) one lock, then fsync (see `store::locks`).
    Lock(Vec<u8>, Option<Vec<u8>>, Sender<Result<()>>),
    /// Store a chunk of events as sorted runs (see `bulk`): one outcome per event.
    Bulk(
        Vec<Prepared>,
        oneshot::Sender<Result<Vec<Result<Appended>>>>,
    ),
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
    /// The newest stored state of recently written objects: what the next version is
    /// compressed against.
    states: States,
    dirty: bool,
    /// When writes last failed or were last probed (see `engine`).
    last_probe: Instant,
    /// Samples for the dictionaries of kinds that have none yet (see `dicts`).
    sampler: Sampler,
    /// Dictionaries made during the group being written: stored with it, published once
    /// it committed.
    new_dicts: Vec<(Vec<u8>, Dict)>,
}

/// The writer's share of the memory budget.
fn plan_states(settings: &super::StoreSettings) -> usize {
    usize::try_from(super::MemoryPlan::new(settings.memory_budget_bytes).states)
        .unwrap_or(usize::MAX)
}

pub(crate) fn start(
    shared: std::sync::Arc<Shared>,
    retention: Sender<Touched>,
) -> Result<(Sender<Command>, JoinHandle<()>)> {
    let engine = shared.engine()?;
    let last_id = engine
        .ks
        .events
        .last_key_value()
        .map(|guard| guard.key())
        .transpose()?
        .and_then(|key| keys::id_suffix(&key))
        .map_or(0, |id| id.0);
    let ns_counts = load_counts(&engine.ks)?;
    drop(engine);
    let (sender, receiver) = crossbeam_channel::unbounded();
    let states = States::new(plan_states(&shared.settings));
    let mut writer = Writer {
        shared,
        retention,
        last_id,
        ns_counts,
        states,
        dirty: false,
        last_probe: Instant::now(),
        sampler: Sampler::default(),
        new_dicts: Vec::new(),
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
                    self.try_recover();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut appends = Vec::new();
            let mut statuses = Vec::new();
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
                    Command::SetStatus(updates, reply) => statuses.push((updates, reply)),
                    Command::Lock(key, value, reply) => {
                        let _ = reply.send(self.apply_lock(key, value));
                    }
                    Command::Bulk(prepared, reply) => {
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                self.append_bulk(prepared)
                            }))
                            .unwrap_or_else(|_| {
                                self.states.clear();
                                self.reload_counts();
                                Err(Error::NotWriting(
                                    "the store writer failed on a bulk load (see the log)".into(),
                                ))
                            });
                        let _ = reply.send(outcome);
                    }
                    Command::Shutdown => {
                        shutdown = true;
                        break;
                    }
                }
                if appends.len() + statuses.len() < MAX_GROUP {
                    next = commands.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                self.try_recover();
                // A bug in one group must not take the writer (and every later write) down:
                // the group's requests see the writer error, the next group goes on.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.append_group(appends);
                }));
                if outcome.is_err() {
                    tracing::error!(
                        "the store writer panicked on a group of events; they were not recorded"
                    );
                    self.states.clear();
                    self.shared
                        .stats
                        .write_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.reload_counts();
                }
            }
            if !statuses.is_empty() {
                self.set_statuses(statuses);
            }
            if self.shared.settings.durability == Durability::Async {
                self.background_flush(&mut last_flush);
            }
            if shutdown {
                break;
            }
        }
        let flushed = match self.shared.engine() {
            Ok(engine) => match engine.db.persist(PersistMode::SyncAll) {
                Ok(()) => self.shared.health.accepts_writes(),
                Err(error) => {
                    tracing::error!(error = %error, "final flush of the store failed");
                    false
                }
            },
            Err(_) => false,
        };
        self.shared.health.set_flushed(flushed);
        tracing::debug!("store writer stopped");
    }

    fn background_flush(&mut self, last_flush: &mut Instant) {
        if self.dirty && last_flush.elapsed() >= ASYNC_FLUSH_INTERVAL {
            let result = self
                .shared
                .engine()
                .and_then(|engine| Ok(engine.db.persist(PersistMode::SyncData)?));
            if let Err(error) = result {
                tracing::error!(error = %error, "background flush of the store failed");
                self.failed(&error);
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
        let engine = match self.writable_engine() {
            Ok(engine) => engine,
            Err(error) => {
                let reason = error.to_string();
                for (_, reply) in appends {
                    let _ = reply.send(Err(Error::NotWriting(reason.clone())));
                }
                return;
            }
        };
        let ks = &engine.ks;
        let mut batch = engine.db.batch();
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
        self.states.keep_within_budget();
        let mut lineages = Vec::new();
        let (prepared, replies): (Vec<_>, Vec<_>) = appends.into_iter().unzip();
        for prepared in prepared {
            // Taken before the event's bytes move into the batch.
            let prefix = object_prefix(&prepared.event);
            let namespace = prepared.event.resource.namespace.clone();
            let uid = prepared.event.uid.clone();
            // A panic here (a bug) costs this event, never its group: the event touches the
            // batch only once nothing can fail any more.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.add_to_batch(&engine, *prepared, &mut batch, &mut in_batch, &mut lineages)
            }))
            .unwrap_or_else(|_| {
                // Whatever the panic left half-remembered must not become a delta base.
                self.states.clear();
                Err(Error::Unstorable {
                    uid,
                    reason: "the store writer failed on it (see the log)".into(),
                })
            });
            if matches!(outcome, Err(Error::Unstorable { .. })) {
                self.shared
                    .stats
                    .rejected_events
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if let Ok(Appended::Recorded(id)) = outcome {
                if self.shared.settings.max_versions_per_object > 0 {
                    touched.push((prefix, id));
                }
                ns_touched.push(namespace);
            }
            outcomes.push(outcome);
        }
        self.put_dicts(ks, &mut batch);
        self.put_counts(ks, &mut batch, ns_touched);
        let result = batch
            .commit()
            .and_then(|()| match self.shared.settings.durability {
                Durability::Sync => engine.db.persist(PersistMode::SyncAll),
                Durability::Async | Durability::Discard => Ok(()),
            });
        self.dirty = true;
        match self.settle(ks, result, touched, &lineages) {
            Ok(()) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                let reason = crate::telemetry::chain(&error);
                for reply in replies {
                    let _ = reply.send(Err(Error::NotWriting(reason.clone())));
                }
            }
        }
    }

    /// After a group's commit (and fsync): on success publish the dictionaries it made and
    /// tell retention what it appended; on failure nothing of it is durable, so reload the
    /// counters and forget the states it would have stored. Counted either way.
    fn settle(
        &mut self,
        ks: &super::Keyspaces,
        result: Result<(), fjall::Error>,
        touched: Vec<Touched>,
        lineages: &[Vec<u8>],
    ) -> Result<()> {
        self.shared
            .stats
            .write_batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let new_dicts = std::mem::take(&mut self.new_dicts);
        match result {
            Ok(()) => {
                for (kind, dict) in new_dicts {
                    ks.dictionaries.publish(kind, dict);
                }
                for appended in touched {
                    let _ = self.retention.send(appended);
                }
                Ok(())
            }
            Err(error) => {
                let error = Error::from(error);
                self.failed(&error);
                self.shared
                    .stats
                    .write_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.reload_counts();
                self.states.forget(lineages);
                Err(error)
            }
        }
    }

    /// What every group writes besides its events: the dictionaries made while encoding
    /// them (here), and the event counts of the namespaces they are in ([`Self::put_counts`]).
    fn put_dicts(&self, ks: &super::Keyspaces, batch: &mut OwnedWriteBatch) {
        for (kind, dict) in &self.new_dicts {
            batch.insert(
                &ks.dicts,
                dict.id.to_be_bytes().to_vec(),
                dicts::encode(kind, &dict.content),
            );
        }
    }

    fn put_counts(
        &mut self,
        ks: &super::Keyspaces,
        batch: &mut OwnedWriteBatch,
        ns_touched: Vec<String>,
    ) {
        for namespace in ns_touched {
            let count = self.ns_counts.entry(namespace.clone()).or_insert(0);
            *count += 1;
            batch.insert(
                &ks.ns_stats,
                ns_key(&namespace),
                count.to_le_bytes().to_vec(),
            );
        }
    }

    /// A bulk load (see `bulk`): every event encoded as an append would be; the dictionaries
    /// made on the way committed, fsynced and published first (an ingested object may name
    /// one, and must never be read without it); the entries ingested as sorted runs; then the
    /// counters committed and everything fsynced. One outcome per event, in order. On an
    /// error the chunk may be stored in part (index entries and objects without their events,
    /// which reads skip) or, when only the counters failed, whole: a retry stores its events
    /// again unless they carry dedupe keys.
    fn append_bulk(&mut self, prepared: Vec<Prepared>) -> Result<Vec<Result<Appended>>> {
        let engine = self.writable_engine()?;
        if self.shared.settings.durability == Durability::Discard {
            return Ok(prepared
                .iter()
                .map(|_| Ok(Appended::Recorded(self.next_id())))
                .collect());
        }
        let ks = &engine.ks;
        let mut runs = Runs::default();
        let mut in_batch: HashMap<[u8; 32], EventId> = HashMap::new();
        let mut lineages = Vec::new();
        let mut touched = Vec::new();
        let mut ns_touched = Vec::new();
        let mut outcomes = Vec::with_capacity(prepared.len());
        for (n, prepared) in prepared.into_iter().enumerate() {
            if n % MAX_GROUP == 0 {
                self.states.keep_within_budget();
            }
            let prefix = object_prefix(&prepared.event);
            let namespace = prepared.event.resource.namespace.clone();
            let outcome =
                self.add_to_batch(&engine, prepared, &mut runs, &mut in_batch, &mut lineages);
            if let Ok(Appended::Recorded(id)) = outcome {
                if self.shared.settings.max_versions_per_object > 0 {
                    touched.push((prefix, id));
                }
                ns_touched.push(namespace);
            }
            outcomes.push(outcome);
        }
        let mut dictionaries = engine.db.batch();
        self.put_dicts(ks, &mut dictionaries);
        let mut counts = engine.db.batch();
        self.put_counts(ks, &mut counts, ns_touched);
        let result = dictionaries
            .commit()
            .and_then(|()| engine.db.persist(PersistMode::SyncAll))
            .map(|()| {
                for (kind, dict) in std::mem::take(&mut self.new_dicts) {
                    ks.dictionaries.publish(kind, dict);
                }
            })
            .and_then(|()| runs.ingest(&ks.events))
            .and_then(|()| counts.commit())
            .and_then(|()| engine.db.persist(PersistMode::SyncAll));
        self.settle(ks, result, touched, &lineages)?;
        Ok(outcomes)
    }

    fn reload_counts(&mut self) {
        self.ns_counts = self
            .shared
            .engine()
            .and_then(|engine| load_counts(&engine.ks))
            .unwrap_or_default();
    }

    /// The database, if it takes writes: after a failed write nothing is tried until a probe
    /// succeeded and the database was reopened.
    fn writable_engine(&self) -> Result<std::sync::Arc<super::Engine>> {
        match self.shared.health.reason() {
            Some(reason) if !self.shared.health.accepts_writes() => Err(Error::NotWriting(reason)),
            _ => self.shared.engine(),
        }
    }

    /// A write failed: the database is poisoned (fjall) and must be reopened.
    fn failed(&mut self, error: &Error) {
        self.shared.health.failed(error);
        self.last_probe = Instant::now();
    }

    /// While writes fail: every [`PROBE_INTERVAL`], write a probe file; once that works,
    /// reopen the database and take writes again.
    fn try_recover(&mut self) {
        if self.shared.health.accepts_writes() || self.last_probe.elapsed() < PROBE_INTERVAL {
            return;
        }
        self.last_probe = Instant::now();
        if let Err(error) = super::engine::probe_write(&self.shared.dir) {
            tracing::debug!(error = %error, "the store's volume still refuses writes");
            return;
        }
        match self.reopen() {
            Ok(()) => self.shared.health.recovered(),
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::chain(&error), "reopening the store failed; trying again soon");
            }
        }
    }

    /// Close the (poisoned) database and open it again from its directory: its journal
    /// holds everything that was committed.
    fn reopen(&mut self) -> Result<()> {
        if let Ok(old) = self.shared.engine() {
            self.shared.set_engine(None);
            // Readers hold the old database for the length of one query.
            let deadline = Instant::now() + REOPEN_WAIT;
            while std::sync::Arc::strong_count(&old) > 1 {
                if Instant::now() >= deadline {
                    self.shared.set_engine(Some(old));
                    return Err(Error::Reopening);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            drop(old);
        }
        let engine =
            super::Engine::open(&self.shared.dir, &self.shared.settings).map_err(|source| {
                Error::Open {
                    path: self.shared.dir.clone(),
                    source,
                }
            })?;
        if let Some(id) = engine
            .ks
            .events
            .last_key_value()
            .and_then(|guard| guard.key().ok())
            .and_then(|key| keys::id_suffix(&key))
        {
            self.last_id = self.last_id.max(id.0);
        }
        self.shared.set_engine(Some(std::sync::Arc::new(engine)));
        self.states.clear();
        self.sampler.clear();
        self.reload_counts();
        Ok(())
    }

    /// Add one event to the batch, or report it as a duplicate.
    fn add_to_batch(
        &mut self,
        engine: &super::Engine,
        prepared: Prepared,
        batch: &mut impl Puts,
        in_batch: &mut HashMap<[u8; 32], EventId>,
        lineages: &mut Vec<Vec<u8>>,
    ) -> Result<Appended> {
        let ks = &engine.ks;
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
        // Everything that can fail for this event alone is done before the batch is
        // touched: a hostile event is rejected alone and its group commits without it.
        let index = index_keys(
            ks,
            &prepared.event.resource,
            &prepared.event.user.username,
            id,
        );
        if let Some((_, key)) = index.iter().find(|(_, key)| key.len() > MAX_KEY_LEN) {
            return Err(Error::Unstorable {
                uid: prepared.event.uid.clone(),
                reason: format!(
                    "its name, namespace, kind, group or username make a key of {} bytes (at most {MAX_KEY_LEN})",
                    key.len()
                ),
            });
        }
        #[cfg(test)]
        if prepared.event.uid == PANIC_FOR_TESTS {
            panic!("a bug in the writer, for tests");
        }
        let objects = prepared
            .objects
            .as_ref()
            .map(|objects| self.encode_objects(ks, &prepared.event, id, objects, lineages));
        if let Some(value) = objects {
            batch.put(&ks.objects, id_bytes.to_vec(), value);
        }
        batch.put(&ks.events, id_bytes.to_vec(), prepared.summary);
        for (keyspace, key) in index {
            batch.put(keyspace, key, Vec::<u8>::new());
        }
        if let Some(key) = &prepared.dedupe_key {
            batch.put(&ks.dedupe, key.to_vec(), id_bytes.to_vec());
            in_batch.insert(*key, id);
        }
        if let Some(status) = &prepared.status {
            batch.put(&ks.status, id_bytes.to_vec(), status.encode());
            if status.status == logistis_api::Status::Pending {
                batch.put(&ks.pending, id_bytes.to_vec(), Vec::<u8>::new());
            }
        }
        Ok(Appended::Recorded(id))
    }

    /// The objects value of event `id`: a delta on the newest stored state of its lineage,
    /// or self-contained (a CREATE, the first sight of an object, a snapshot that is due).
    fn encode_objects(
        &mut self,
        ks: &super::Keyspaces,
        event: &Event,
        id: EventId,
        objects: &Precompressed,
        lineages: &mut Vec<Vec<u8>>,
    ) -> Vec<u8> {
        let lineage = states::lineage(event);
        // The first stored version of an object: nothing of it to compress against.
        let mut first_version = true;
        let base = match event.operation {
            Operation::Create => None,
            _ => self.states.base(ks, &lineage, event).and_then(|base| {
                first_version = false;
                (!base.snapshot_due()).then_some(base)
            }),
        };
        let (value, dependent, depth, dependent_before) = match base {
            Some(base) => {
                let (value, dependent) = objects.encode(Some(Base {
                    id: base.id,
                    state: &base.text,
                }));
                (value, dependent, base.depth + 1, base.dependent)
            }
            None => {
                let (value, dependent) = objects.encode(None);
                (value, dependent, 0, 0)
            }
        };
        // A delta whose parts turned out not to need the base is self-contained.
        let (depth, dependent) = match objects::base_of(id, &value) {
            Ok(Some(_)) => (depth, dependent_before + dependent),
            _ => (0, 0),
        };
        if first_version
            && !objects.has_dict()
            && let Some(text) = objects.texts.state()
        {
            let kind = dicts::kind_key(event);
            if let Some(content) = self.sampler.sample(&ks.dictionaries, &kind, text) {
                let id = ks
                    .dictionaries
                    .next_id()
                    .max(self.new_dicts.last().map_or(0, |(_, d)| d.id + 1));
                self.new_dicts.push((
                    kind,
                    Dict {
                        id,
                        content: content.into(),
                    },
                ));
            }
        }
        if let Some(text) = objects.texts.state() {
            self.states.remember(
                lineage.clone(),
                State {
                    id,
                    text: text.to_vec(),
                    depth,
                    dependent,
                },
            );
            lineages.push(lineage);
        }
        value
    }

    fn delete(&mut self, ids: &[EventId]) -> Result<u64> {
        let engine = self.writable_engine()?;
        let ks = &engine.ks;
        // Per event: its summary, objects, status, pending mark, dedupe key and five index
        // keys; then the rewritten survivors and the counters.
        let mut batch = engine.batch_with_capacity(ids.len() * 10 + 16);
        let mut removed = 0;
        let mut trimmed: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut ns_removed: HashMap<String, u64> = HashMap::new();
        // Each deleted event's lineage (its object and subresource).
        let mut deleted: HashMap<EventId, Vec<u8>> = HashMap::new();
        let mut oldest_deleted: HashMap<Vec<u8>, EventId> = HashMap::new();
        // Per object: the lineages that lose versions, each with the newest it loses.
        let mut losing: HashMap<Vec<u8>, HashMap<Vec<u8>, EventId>> = HashMap::new();
        for &id in ids {
            let id_bytes = id.to_be_bytes();
            let Some(value) = ks.events.get(id_bytes)? else {
                continue;
            };
            let (summary, dedupe) = record::decode_summary_keys(id, &value)?;
            batch.remove(&ks.events, id_bytes.to_vec());
            batch.remove(&ks.objects, id_bytes.to_vec());
            // Only events confirmed by a watch have a status, and only unconfirmed ones are
            // pending: a tombstone for a key never written costs a memtable insert now and
            // compaction later, a look that finds nothing costs neither (this thread makes
            // every write, so nothing adds one before the batch commits).
            for keyspace in [&ks.status, &ks.pending] {
                if keyspace.contains_key(id_bytes)? {
                    batch.remove(keyspace, id_bytes.to_vec());
                }
            }
            for (keyspace, key) in index_keys(ks, &summary.resource, &summary.user.username, id) {
                batch.remove(keyspace, key);
            }
            if let Some(key) = dedupe {
                batch.remove(&ks.dedupe, key.to_vec());
            }
            let prefix = resource_prefix(&summary.resource);
            let oldest = oldest_deleted.entry(prefix.clone()).or_insert(id);
            *oldest = (*oldest).min(id);
            let lineage = states::lineage_of(prefix.clone(), &summary.resource.subresource);
            let newest = losing
                .entry(prefix.clone())
                .or_default()
                .entry(lineage.clone())
                .or_insert(id);
            *newest = (*newest).max(id);
            deleted.insert(id, lineage);
            *trimmed.entry(prefix).or_default() += 1;
            *ns_removed
                .entry(summary.resource.namespace.clone())
                .or_default() += 1;
            removed += 1;
        }
        self.states.forget_ids(
            deleted
                .iter()
                .map(|(id, lineage)| (*id, lineage.as_slice())),
        );
        for (prefix, oldest) in &oldest_deleted {
            let survivors = Survivors {
                prefix,
                oldest: *oldest,
                count: trimmed[prefix],
                losing: &losing[prefix],
            };
            rebase_survivors(ks, &mut batch, &survivors, &deleted)?;
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
        if let Err(error) = &result {
            self.failed(error);
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

    /// Every status change queued together: one batch, one commit, one fsync (sync mode).
    fn set_statuses(&mut self, groups: Vec<(Vec<StatusUpdate>, oneshot::Sender<Result<()>>)>) {
        let outcome = (|| -> Result<()> {
            let engine = self.writable_engine()?;
            let ks = &engine.ks;
            let mut batch = engine.db.batch();
            for (updates, _) in &groups {
                for update in updates {
                    let id_bytes = update.id.to_be_bytes();
                    // Retention may have removed the event meanwhile: no orphan status.
                    if !ks.events.contains_key(id_bytes)? {
                        continue;
                    }
                    match &update.record {
                        Some(record) => {
                            batch.insert(&ks.status, id_bytes.to_vec(), record.encode());
                            if record.status == logistis_api::Status::Pending {
                                batch.insert(&ks.pending, id_bytes.to_vec(), Vec::<u8>::new());
                            } else {
                                batch.remove(&ks.pending, id_bytes.to_vec());
                            }
                        }
                        None => {
                            batch.remove(&ks.status, id_bytes.to_vec());
                            batch.remove(&ks.pending, id_bytes.to_vec());
                        }
                    }
                }
            }
            batch.commit()?;
            if self.shared.settings.durability == Durability::Sync {
                engine.db.persist(PersistMode::SyncAll)?;
            }
            Ok(())
        })();
        self.dirty = true;
        if let Err(error) = &outcome {
            tracing::error!(error = %error, "committing status changes failed");
            self.failed(error);
            self.shared
                .stats
                .write_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for (_, reply) in groups {
            let _ = reply.send(match &outcome {
                Ok(()) => Ok(()),
                Err(error) => Err(Error::NotWriting(error.to_string())),
            });
        }
    }

    fn save_cursor(&mut self, name: &str, id: EventId) -> Result<()> {
        let engine = self.writable_engine()?;
        let mut batch = engine.db.batch();
        batch.insert(
            &engine.ks.cursors,
            name.as_bytes().to_vec(),
            id.to_be_bytes().to_vec(),
        );
        self.commit_synced(&engine, batch)
    }

    /// Commit a small batch and fsync it whatever the durability mode (cursors, locks); a
    /// failure marks the store as not writing.
    fn commit_synced(&mut self, engine: &super::Engine, batch: OwnedWriteBatch) -> Result<()> {
        let result = batch
            .commit()
            .and_then(|()| engine.db.persist(PersistMode::SyncAll))
            .map_err(Error::from);
        if let Err(error) = &result {
            self.failed(error);
        }
        result
    }

    /// One lock written (`Some`) or removed, then fsync whatever the durability mode (see
    /// `store::locks`).
    fn apply_lock(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        let engine = self.writable_engine()?;
        let mut batch = engine.db.batch();
        match value {
            Some(value) => batch.insert(&engine.ks.locks, key, value),
            None => batch.remove(&engine.ks.locks, key),
        }
        self.commit_synced(&engine, batch)
    }
}

/// One object that loses versions: its `by_object` prefix, its oldest deleted version, how
/// many it loses, and the lineages they belong to with the newest version each loses.
#[derive(Clone, Copy)]
struct Survivors<'a> {
    prefix: &'a [u8],
    oldest: EventId,
    count: u64,
    losing: &'a HashMap<Vec<u8>, EventId>,
}

/// Before the versions in `deleted` go, rewrite as self-contained every surviving version
/// of the object that is stored as a delta on one of them. Retention deletes an object's
/// oldest versions, and a version's base is the newest earlier one of its lineage, so
/// the versions to rewrite are among the first survivors: in each lineage that lost
/// versions, the survivor after the newest one it lost. The scan stops once each of those
/// lineages has had that survivor rewritten (every later version of the lineage is based on
/// a survivor), and looks at most `REBASE_WINDOW` survivors past the deleted ones (a
/// lineage whose next survivor is a snapshot, or that has none, is never found).
fn rebase_survivors(
    ks: &super::Keyspaces,
    batch: &mut OwnedWriteBatch,
    survivors: &Survivors<'_>,
    deleted: &HashMap<EventId, Vec<u8>>,
) -> Result<()> {
    let Survivors {
        prefix,
        oldest,
        count,
        losing,
    } = *survivors;
    let mut unresolved: HashSet<&[u8]> = losing.keys().map(Vec::as_slice).collect();
    let mut end = prefix.to_vec();
    end.extend_from_slice(&[0xff; 9]);
    let window = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .saturating_add(REBASE_WINDOW);
    for guard in ks
        .by_object
        .range(keys::with_id(prefix, oldest)..end)
        .take(window)
    {
        if unresolved.is_empty() {
            break;
        }
        let Some(id) = keys::id_suffix(&guard.key()?) else {
            continue;
        };
        if deleted.contains_key(&id) {
            continue;
        }
        let Some(value) = ks.objects.get(id.to_be_bytes())? else {
            continue;
        };
        let Some((base, lineage)) = objects::base_of(id, &value)?
            .and_then(|base| deleted.get(&base).map(|lineage| (base, lineage)))
        else {
            continue;
        };
        let get = |id: EventId| ks.objects.get(id.to_be_bytes()).map_err(Error::from);
        if let Some((texts, _)) = objects::rebuild(id, get, &ks.dictionaries)? {
            let (value, _) = Precompressed::new(texts, None).encode(None);
            batch.insert(&ks.objects, id.to_be_bytes().to_vec(), value);
        }
        if losing.get(lineage) == Some(&base) {
            unresolved.remove(lineage.as_slice());
        }
    }
    Ok(())
}

/// The `ns_stats` key of a namespace: encoded like index fields, so the cluster scope (`""`)
/// is a valid, non-empty key.
pub(crate) fn ns_key(namespace: &str) -> Vec<u8> {
    keys::prefix(&[namespace])
}

/// Namespace → event count, from `ns_stats`.
pub(crate) fn load_counts(ks: &super::Keyspaces) -> Result<HashMap<String, u64>> {
    let mut counts = HashMap::new();
    for guard in ks.ns_stats.iter() {
        let (key, value) = guard.into_inner()?;
        if let Some(namespace) = keys::decode_fields(&key).and_then(|f| f.into_iter().next()) {
            counts.insert(namespace, read_u64(&value));
        }
    }
    Ok(counts)
}

/// Every index entry of an event.
pub(crate) fn index_keys<'a>(
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
