//! The store: fjall keyspaces for the event log and its indexes, one writer thread doing
//! group commit, and retention.
//!
//! Keyspaces (all keys binary, see [`keys`]):
//! - `events`: id → summary (see `record`); `objects`: id → the objects after/before.
//! - `by_object` (group, kind, namespace, name, id), `by_namespace` (namespace, id),
//!   `by_kind` (kind, id), `by_kind_ns` (namespace, kind, id), `by_user` (username, id):
//!   empty values; every "newest N" is one reverse range scan.
//! - `dedupe`: request key → id; `ns_stats`: namespace → event count;
//!   `trimmed`: object → versions dropped by retention; `cursors`: consumer → id.
//! - `locks`: (namespace, name) → a lock (see `locks`; the store does not read them).
//!
//! Only the writer thread (`writer`) mutates; reads go straight to fjall from any thread
//! (callers on an async runtime wrap them in `spawn_blocking`). Kinds are stored lower-case
//! in keys so that `kind` matches case-insensitively.

pub mod keys;
mod locks;
mod query;
mod record;
mod retention;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use logistis_api::EventId;

pub use query::{EventFilter, ObjectKey, Page, Scan};
pub use record::Objects;
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
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            durability: Durability::Sync,
            max_versions_per_object: 100,
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            max_size_bytes: None,
            retention_interval: Duration::from_secs(10),
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every keyspace, opened once.
pub(crate) struct Keyspaces {
    pub events: Keyspace,
    pub objects: Keyspace,
    pub by_object: Keyspace,
    pub by_namespace: Keyspace,
    pub by_kind: Keyspace,
    pub by_kind_ns: Keyspace,
    pub by_user: Keyspace,
    pub dedupe: Keyspace,
    pub ns_stats: Keyspace,
    pub trimmed: Keyspace,
    pub cursors: Keyspace,
    pub locks: Keyspace,
}

impl Keyspaces {
    fn open(db: &Database) -> Result<Self, fjall::Error> {
        let open = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        Ok(Keyspaces {
            events: open("events")?,
            objects: open("objects")?,
            by_object: open("by_object")?,
            by_namespace: open("by_namespace")?,
            by_kind: open("by_kind")?,
            by_kind_ns: open("by_kind_ns")?,
            by_user: open("by_user")?,
            dedupe: open("dedupe")?,
            ns_stats: open("ns_stats")?,
            trimmed: open("trimmed")?,
            cursors: open("cursors")?,
            locks: open("locks")?,
        })
    }
}

/// Counters the store keeps for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub events_removed_by_retention: AtomicU64,
    pub write_batches: AtomicU64,
    pub write_errors: AtomicU64,
}

pub(crate) struct Shared {
    pub db: Database,
    pub ks: Keyspaces,
    pub settings: StoreSettings,
    pub stats: StoreStats,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    writer: Sender<writer::Command>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl Store {
    /// Open (or create) the store in `dir` and start its writer and retention threads.
    pub fn open(dir: &Path, settings: StoreSettings) -> Result<Store> {
        let open_error = |source| Error::Open {
            path: dir.to_owned(),
            source,
        };
        let db = Database::builder(dir).open().map_err(open_error)?;
        let ks = Keyspaces::open(&db).map_err(open_error)?;
        let shared = Arc::new(Shared {
            db,
            ks,
            settings,
            stats: StoreStats::default(),
        });
        let (retention_tx, retention_rx) = crossbeam_channel::unbounded();
        let (writer_tx, writer_thread) = writer::start(shared.clone(), retention_tx)?;
        let retention_thread = retention::start(shared.clone(), writer_tx.clone(), retention_rx)?;
        Ok(Store {
            shared,
            writer: writer_tx,
            threads: Arc::new(Mutex::new(vec![writer_thread, retention_thread])),
        })
    }

    /// Queue one event; the receiver resolves once it is committed (and, in sync mode, on disk).
    /// The event is serialised here, on the caller's thread, not on the single writer thread.
    pub fn append(&self, event: Box<NewEvent>) -> tokio::sync::oneshot::Receiver<Result<Appended>> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let prepared = Box::new(writer::Prepared::new(*event));
        if let Err(crossbeam_channel::SendError(writer::Command::Append(_, reply))) =
            self.writer.send(writer::Command::Append(prepared, reply))
        {
            let _ = reply.send(Err(Error::Closed));
        }
        receiver
    }

    /// Append and wait, for callers that are not async (tests, tools).
    pub fn append_blocking(&self, event: NewEvent) -> Result<Appended> {
        self.append(Box::new(event))
            .blocking_recv()
            .map_err(|_| Error::Closed)?
    }

    /// The persisted position of a log consumer (a sink), if it has one.
    pub fn cursor(&self, consumer: &str) -> Result<Option<EventId>> {
        Ok(self
            .shared
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

    /// Bytes on disk (tables and journals).
    pub fn disk_space(&self) -> u64 {
        self.shared.db.disk_space().unwrap_or(0)
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// The newest event id in the log.
    pub fn last_id(&self) -> Option<EventId> {
        self.shared
            .ks
            .events
            .last_key_value()
            .and_then(|guard| guard.key().ok())
            .and_then(|key| keys::id_suffix(&key))
    }

    /// Flush everything to disk and stop the background threads. Appends after this fail;
    /// the directory is released when the last clone of the handle is dropped.
    pub fn close(self) {
        let _ = self.writer.send(writer::Command::Shutdown);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
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
mod tests;
