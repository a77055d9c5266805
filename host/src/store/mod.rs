//! The store: fjall keyspaces for the event log and its indexes, one writer thread doing
//! group commit, and retention.
//!
//! Keyspaces (all keys binary, see [`keys`]):
//! - `events`: id → summary (see `record`); `objects`: id → the objects after/before, as
//!   zstd snapshots and deltas on the previous version (see `objects`).
//! - `by_object` (group, kind, namespace, name, id), `by_namespace` (namespace, id),
//!   `by_kind` (kind, id), `by_kind_ns` (namespace, kind, id), `by_user` (username, id):
//!   empty values; every "newest N" is one reverse range scan.
//! - `dedupe`: request key → id; `ns_stats`: namespace → event count;
//!   `trimmed`: object → versions dropped by retention; `cursors`: consumer → id.
//! - `status`: id → confirmation status, `pending`: ids awaiting the watch (see `status`).
//! - `locks`: (namespace, name) → a lock (see `locks`; the store does not read them).
//!
//! Only the writer thread (`writer`) mutates; reads go straight to fjall from any thread
//! (callers on an async runtime wrap them in `spawn_blocking`). Kinds are stored lower-case
//! in keys so that `kind` matches case-insensitively. A failed write (a full disk) makes the
//! store refuse writes until the writer has reopened the database (see `engine`); one event
//! that cannot be stored (a key over fjall's limit) is refused alone.

mod backend;
pub mod backup;
mod bulk;
mod dicts;
mod engine;
pub mod keys;
mod locks;
mod objects;
mod outbox;
mod postgres;
mod query;
mod record;
mod retention;
mod states;
mod status;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use crossbeam_channel::Sender;
use logistis_api::EventId;

pub use backend::{
    BackendSettings, PostgresSettings, Store, StoreStatus, TlsMode, postgres_settings, redact_url,
    replica_name,
};
pub(crate) use engine::{Engine, Keyspaces};
pub use engine::{Health, MemoryPlan};
pub use query::{EventFilter, ObjectKey, Page, Scan};
pub use record::Objects;
pub use status::{StatusRecord, StatusUpdate};
pub use writer::Appended;

use crate::admission::NewEvent;

/// How a write becomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync before the webhook answers, one fsync per group of concurrent events.
    #[default]
    Sync,
    /// Answer once the write reached the OS (survives a crash of the process, not of the
    /// machine); fsync in the background every [`ASYNC_FLUSH_INTERVAL`].
    Async,
    /// Benchmarking only (`--discard-events`): the writer takes every event, gives it an id
    /// and answers without writing it — the whole pipeline but the store, to measure what
    /// the store itself costs.
    Discard,
}

/// How often async mode fsyncs.
pub const ASYNC_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Validated store settings.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub durability: Durability,
    /// Versions kept per object; 0 = unlimited.
    pub max_versions_per_object: u32,
    /// Events older than this are removed; `None` = forever.
    pub retention: Option<Duration>,
    /// Oldest events are removed while the store is larger than this; `None` = no limit.
    pub max_size_bytes: Option<u64>,
    /// How often the age and size limits are checked.
    pub retention_interval: Duration,
    /// Memory for fjall's block cache and memtables and the writer's delta bases together
    /// (see [`MemoryPlan`]).
    pub memory_budget_bytes: u64,
    /// Where the events live (see [`backend`]).
    pub backend: BackendSettings,
    /// Stamped on every event (`--cluster`); empty = unnamed.
    pub cluster: String,
}

/// The default of [`StoreSettings::memory_budget_bytes`].
pub const DEFAULT_MEMORY_BUDGET: u64 = 32 << 20;

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            durability: Durability::Sync,
            max_versions_per_object: 100,
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            max_size_bytes: None,
            retention_interval: Duration::from_secs(10),
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET,
            backend: BackendSettings::Embedded,
            cluster: String::new(),
        }
    }
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the store in {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: fjall::Error,
    },
    #[error("store I/O failed")]
    Io(#[from] fjall::Error),
    #[error("stored event {id} is corrupt: {reason}")]
    Corrupt { id: EventId, reason: &'static str },
    #[error("stored event {id} cannot be decoded")]
    Decode {
        id: EventId,
        #[source]
        source: serde_json::Error,
    },
    #[error("the store is closed")]
    Closed,
    #[error("the store is being reopened after a write failure")]
    Reopening,
    /// Writes failed and have not succeeded since (a full disk, an I/O error).
    #[error("the store is not accepting writes: {0}")]
    NotWriting(String),
    /// This event alone cannot be stored (the others of its group are).
    #[error("event {uid:?} cannot be stored: {reason}")]
    Unstorable { uid: String, reason: String },
    #[error("the database failed")]
    Database(#[from] tokio_postgres::Error),
    #[error("no connection to the database")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("migrating the database schema failed: {0}")]
    Migrate(String),
    #[error("the database did not take the event: {0}")]
    Write(String),
    #[error("the local outbox is full ({bytes} bytes): the event was not recorded")]
    OutboxFull { bytes: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Counters the store keeps for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub events_removed_by_retention: AtomicU64,
    pub write_batches: AtomicU64,
    pub write_errors: AtomicU64,
    /// Events refused alone: unstorable (a key over fjall's limit) or failed in the writer.
    pub rejected_events: AtomicU64,
}

/// What the embedded store's writes wait for (see [`Fjall::write_backlog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteBacklog {
    pub memtable_bytes: u64,
    pub sealed_memtables: u64,
    pub level0_tables: u64,
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    /// `None` only while the writer reopens the database after a write failure.
    engine: ArcSwapOption<Engine>,
    pub settings: StoreSettings,
    pub stats: StoreStats,
    pub health: Health,
}

impl Shared {
    /// The open database.
    pub fn engine(&self) -> Result<Arc<Engine>> {
        self.engine.load_full().ok_or(Error::Reopening)
    }

    /// Replace the database (the writer's recovery); `None` while it is being reopened.
    pub fn set_engine(&self, engine: Option<Arc<Engine>>) {
        self.engine.store(engine);
    }
}

/// The embedded store (fjall); cheap to clone. The rest of the server uses [`Store`].
#[derive(Clone)]
pub struct Fjall {
    shared: Arc<Shared>,
    writer: Sender<writer::Command>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Fjall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fjall")
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl Fjall {
    /// Open (or create) the store in `dir` and start its writer and retention threads.
    pub fn open(dir: &Path, settings: StoreSettings) -> Result<Fjall> {
        let open_error = |source| Error::Open {
            path: dir.to_owned(),
            source,
        };
        let engine = Engine::open(dir, &settings).map_err(open_error)?;
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            engine: ArcSwapOption::from_pointee(engine),
            settings,
            stats: StoreStats::default(),
            health: Health::default(),
        });
        let (retention_tx, retention_rx) = crossbeam_channel::unbounded();
        let (writer_tx, writer_thread) = writer::start(shared.clone(), retention_tx)?;
        let retention_thread = retention::start(shared.clone(), writer_tx.clone(), retention_rx)?;
        Ok(Fjall {
            shared,
            writer: writer_tx,
            threads: Arc::new(Mutex::new(vec![writer_thread, retention_thread])),
        })
    }

    /// Queue one event; the receiver resolves once it is committed (and, in sync mode, on disk).
    /// The event is serialised here, on the caller's thread, not on the single writer thread.
    pub fn append(&self, event: Box<NewEvent>) -> tokio::sync::oneshot::Receiver<Result<Appended>> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let engine = self.shared.engine().ok();
        let dictionaries = engine.as_ref().map(|engine| &engine.ks.dictionaries);
        let prepared = Box::new(writer::Prepared::new(*event, dictionaries));
        if let Err(crossbeam_channel::SendError(writer::Command::Append(_, reply))) =
            self.writer.send(writer::Command::Append(prepared, reply))
        {
            let _ = reply.send(Err(Error::Closed));
        }
        receiver
    }

    /// Queue a chunk of events for a bulk load (see `bulk`); the receiver resolves, with one
    /// outcome per event, once they are all on disk.
    pub fn append_bulk(
        &self,
        events: Vec<NewEvent>,
    ) -> tokio::sync::oneshot::Receiver<Result<Vec<Result<Appended>>>> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let engine = self.shared.engine().ok();
        let dictionaries = engine.as_ref().map(|engine| &engine.ks.dictionaries);
        let prepared = events
            .into_iter()
            .map(|event| writer::Prepared::new(event, dictionaries))
            .collect();
        if let Err(crossbeam_channel::SendError(writer::Command::Bulk(_, reply))) =
            self.writer.send(writer::Command::Bulk(prepared, reply))
        {
            let _ = reply.send(Err(Error::Closed));
        }
        receiver
    }

    /// The persisted position of a log consumer (a sink), if it has one.
    pub fn cursor(&self, consumer: &str) -> Result<Option<EventId>> {
        Ok(self
            .shared
            .engine()?
            .ks
            .cursors
            .get(consumer.as_bytes())?
            .and_then(|value| keys::id_suffix(&value)))
    }

    /// Durably record that `consumer` has processed everything up to and including `id`.
    pub fn save_cursor(&self, consumer: &str, id: EventId) -> Result<()> {
        let (reply, receiver) = crossbeam_channel::bounded(1);
        self.writer
            .send(writer::Command::SaveCursor(consumer.to_owned(), id, reply))
            .map_err(|_| Error::Closed)?;
        receiver.recv().map_err(|_| Error::Closed)?
    }

    /// The writer thread is running: appends can succeed (for `/readyz`).
    pub fn is_open(&self) -> bool {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.first().is_some_and(|writer| !writer.is_finished())
    }

    /// Whether writes succeed (`false` from a failed write until one succeeds again).
    pub fn health(&self) -> &Health {
        &self.shared.health
    }

    /// Bytes the store's files take on disk (allocated blocks: journals are sparse files).
    pub fn disk_space(&self) -> u64 {
        engine::allocated_bytes(&self.shared.dir)
    }

    /// Free bytes of the volume that holds the store, for the unprivileged (as `df`).
    pub fn volume_free_bytes(&self) -> Option<u64> {
        engine::volume_free_bytes(&self.shared.dir)
    }

    /// The write path's backlog, as fjall counts it: memtable bytes (active and sealed, keys
    /// and values only), sealed memtables waiting for a flush, and tables in level 0 waiting
    /// for compaction (at 4 sealed memtables or 20 level-0 tables of one keyspace fjall
    /// stalls writes).
    pub fn write_backlog(&self) -> Result<WriteBacklog> {
        let engine = self.shared.engine()?;
        let mut backlog = WriteBacklog {
            memtable_bytes: engine.db.write_buffer_size(),
            ..WriteBacklog::default()
        };
        for (_, keyspace) in engine.ks.named() {
            backlog.sealed_memtables += keyspace.sealed_memtable_count() as u64;
            backlog.level0_tables += keyspace.l0_table_count() as u64;
        }
        Ok(backlog)
    }

    /// Bytes of tables per keyspace (apparent sizes, journals not included): what each part
    /// of the layout costs.
    pub fn keyspace_sizes(&self) -> Result<Vec<(&'static str, u64)>> {
        let engine = self.shared.engine()?;
        Ok(engine
            .ks
            .named()
            .into_iter()
            .map(|(name, keyspace)| (name, keyspace.disk_space()))
            .collect())
    }

    /// Write every memtable to a table and wait (benchmarks: the steady state on disk).
    pub fn flush_tables(&self) -> Result<()> {
        let engine = self.shared.engine()?;
        let ks = &engine.ks;
        for (_, keyspace) in ks.named() {
            keyspace.rotate_memtable_and_wait()?;
        }
        engine.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// The newest event id in the log.
    pub fn last_id(&self) -> Option<EventId> {
        self.shared
            .engine()
            .ok()?
            .ks
            .events
            .last_key_value()
            .and_then(|guard| guard.key().ok())
            .and_then(|key| keys::id_suffix(&key))
    }

    /// Flush everything to disk and stop the background threads. Appends after this fail;
    /// the directory is released when the last clone of the handle is dropped.
    pub fn close(self) {
        let _ = self.shutdown();
    }

    /// [`Store::close`], telling whether everything written reached the disk (false when
    /// writes were failing, or the final flush failed).
    pub fn shutdown(self) -> bool {
        let _ = self.writer.send(writer::Command::Shutdown);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        self.shared.health.flushed().unwrap_or(false)
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn writer_sender(&self) -> &Sender<writer::Command> {
        &self.writer
    }
}

/// Read a little-endian u64 counter value.
pub(crate) fn read_u64(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod layout_tests;
#[cfg(test)]
mod tests;
