//! The fjall database and its keyspaces, opened with a memory budget, and the store's
//! health: whether it accepts writes.
//!
//! fjall poisons a database on the first failed journal write (a full disk, an I/O error):
//! every later write fails until it is opened again. So the writer, once a write failed,
//! probes the volume now and then, and when a probe write succeeds it reopens the database
//! in place (readers see "unavailable" for the few milliseconds it takes). Queries keep
//! being answered from the poisoned database meanwhile: reading does not write.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fjall::config::{CompressionPolicy, PartitioningPolicy};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use super::StoreSettings;
use super::dicts::Dictionaries;

/// Every keyspace, opened once per database.
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
    /// Event id → its mutable status (see `status`); `pending`: the ids still pending.
    pub status: Keyspace,
    pub pending: Keyspace,
    /// (namespace, name) → a lock (see `locks`).
    pub locks: Keyspace,
    /// Dictionary id → a kind's compression dictionary (see `dicts`).
    pub dicts: Keyspace,
    /// The dictionaries of `dicts`, in memory.
    pub dictionaries: Dictionaries,
}

impl Keyspaces {
    /// Every keyspace with its name, for flushing and for the size breakdown.
    pub fn named(&self) -> [(&'static str, &Keyspace); 15] {
        [
            ("events", &self.events),
            ("objects", &self.objects),
            ("by_object", &self.by_object),
            ("by_namespace", &self.by_namespace),
            ("by_kind", &self.by_kind),
            ("by_kind_ns", &self.by_kind_ns),
            ("by_user", &self.by_user),
            ("dedupe", &self.dedupe),
            ("ns_stats", &self.ns_stats),
            ("trimmed", &self.trimmed),
            ("cursors", &self.cursors),
            ("status", &self.status),
            ("pending", &self.pending),
            ("locks", &self.locks),
            ("dicts", &self.dicts),
        ]
    }
}

/// An open database.
pub(crate) struct Engine {
    pub db: Database,
    pub ks: Keyspaces,
}

/// How the memory budget is shared (see the README's "The store").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// fjall's block cache.
    pub cache: u64,
    /// All memtables together.
    pub write_buffer: u64,
    /// The memtable of `events` and of `objects` each, before it is flushed to a table.
    pub memtable: u64,
    /// The memtable of every other keyspace (indexes, dedupe, statuses, counters): their
    /// entries are small, so the skiplist's own nodes weigh several times what fjall counts.
    pub index_memtable: u64,
    /// Object texts the writer remembers to compress the next version against.
    pub states: u64,
}

impl MemoryPlan {
    pub fn new(budget: u64) -> MemoryPlan {
        // At least 4 MiB in all: below that, tables would be flushed every few events.
        let budget = budget.max(4 << 20);
        let cache = budget * 3 / 8;
        let write_buffer = budget / 2;
        MemoryPlan {
            cache,
            write_buffer,
            // fjall 3.1 does not enforce a total for all memtables (its `max_write_buffer_size`
            // is stored, never read): each keyspace flushes at its own size, so the sizes are
            // chosen to add up to the share, 2 × 1/6 + 13 × 1/24 of it.
            memtable: (write_buffer / 6).max(256 << 10),
            index_memtable: (write_buffer / 24).max(64 << 10),
            states: budget - cache - write_buffer,
        }
    }
}

impl Engine {
    /// A write batch with room for `items` entries, journaled as [`Database::batch`]'s are
    /// (written to the OS on commit; the writer fsyncs itself in sync mode). A batch that
    /// grows one entry at a time reallocated and copied its items over and over: a
    /// retention pass writes ten entries per event it removes.
    pub fn batch_with_capacity(&self, items: usize) -> fjall::OwnedWriteBatch {
        fjall::OwnedWriteBatch::with_capacity(self.db.clone(), items)
            .durability(Some(fjall::PersistMode::Buffer))
    }

    pub fn open(dir: &Path, settings: &StoreSettings) -> Result<Engine, fjall::Error> {
        let plan = MemoryPlan::new(settings.memory_budget_bytes);
        let db = Database::builder(dir)
            .cache_size(plan.cache)
            // The smallest fjall allows: journals are replayed into memory on opening.
            .max_journaling_size(64 << 20)
            .open()?;
        // Summaries and index keys repeat themselves from one event to the next: LZ4 on
        // every level (fjall's default leaves the first two uncompressed). Objects are
        // compressed by the store itself (zstd), so their blocks are not.
        //
        // Index and filter blocks are partitioned on every level (fjall's default: from the
        // fourth on), so a point read loads a 4 KiB partition of them, not a table's whole
        // index and filter: those of a store of ten million events are tens of MB, far more
        // than the block cache, and each read would load a ~0.5 MB filter block anew (a
        // history of 100 versions took 25 ms instead of 3 at 10 M events).
        let options = |memtable: u64, compression: fjall::CompressionType| {
            move || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(memtable)
                    .data_block_compression_policy(CompressionPolicy::all(compression))
                    .index_block_partitioning_policy(PartitioningPolicy::all(true))
                    .filter_block_partitioning_policy(PartitioningPolicy::all(true))
            }
        };
        let lz4 = options(plan.index_memtable, fjall::CompressionType::Lz4);
        let plain = options(plan.index_memtable, fjall::CompressionType::None);
        // `events` and `objects` are read by ids taken from an index or a log: such a read
        // finds its key, so a Bloom filter on their last level (most of the data) would only
        // cost memory and bytes.
        let by_id = |compression| {
            let options = options(plan.memtable, compression);
            move || options().expect_point_read_hits(true)
        };
        let ks = Keyspaces {
            events: db.keyspace("events", by_id(fjall::CompressionType::Lz4))?,
            objects: db.keyspace("objects", by_id(fjall::CompressionType::None))?,
            by_object: db.keyspace("by_object", lz4)?,
            by_namespace: db.keyspace("by_namespace", lz4)?,
            by_kind: db.keyspace("by_kind", lz4)?,
            by_kind_ns: db.keyspace("by_kind_ns", lz4)?,
            by_user: db.keyspace("by_user", lz4)?,
            dedupe: db.keyspace("dedupe", plain)?,
            ns_stats: db.keyspace("ns_stats", lz4)?,
            trimmed: db.keyspace("trimmed", lz4)?,
            cursors: db.keyspace("cursors", lz4)?,
            status: db.keyspace("status", lz4)?,
            pending: db.keyspace("pending", plain)?,
            locks: db.keyspace("locks", lz4)?,
            dictionaries: Dictionaries::default(),
            dicts: db.keyspace("dicts", plain)?,
        };
        let ks = Keyspaces {
            dictionaries: Dictionaries::load(&ks.dicts)?,
            ..ks
        };
        // Opening replayed the journal into memtables (up to 64 MB of recent writes). Flush
        // them now, in the background: they would otherwise stay in memory until enough new
        // writes fill them, and an idle server would hold them for nothing.
        for (name, keyspace) in ks.named() {
            if let Err(error) = keyspace.rotate_memtable() {
                tracing::debug!(keyspace = name, error = %error, "cannot flush a recovered memtable");
            }
        }
        Ok(Engine { db, ks })
    }
}

/// Whether the store accepts writes, for `/readyz`, the webhook's status and `/metrics`.
#[derive(Debug, Default)]
pub struct Health {
    failing: AtomicBool,
    /// Changes between accepting and refusing writes.
    pub transitions: AtomicU64,
    reason: Mutex<Option<String>>,
    /// Set at shutdown: whether the final flush reached the disk.
    flushed: Mutex<Option<bool>>,
}

impl Health {
    pub fn accepts_writes(&self) -> bool {
        !self.failing.load(Ordering::Acquire)
    }

    /// Why writes fail, while they do.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A write failed: logged once per change of state, not once per event.
    pub(crate) fn failed(&self, error: &dyn std::error::Error) {
        let text = crate::telemetry::chain(error);
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(text.clone());
        if !self.failing.swap(true, Ordering::AcqRel) {
            self.transitions.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                error = %text,
                "the store cannot write: events are answered but not recorded until writes succeed again"
            );
        }
    }

    /// Writes succeed (again).
    pub(crate) fn recovered(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            self.transitions.fetch_add(1, Ordering::Relaxed);
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = None;
            tracing::warn!("the store writes again: events are recorded");
        }
    }

    pub(crate) fn set_flushed(&self, flushed: bool) {
        *self.flushed.lock().unwrap_or_else(|e| e.into_inner()) = Some(flushed);
    }

    /// After shutdown: whether everything acknowledged is on disk.
    pub fn flushed(&self) -> Option<bool> {
        *self.flushed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Write and sync a small file in `dir`: can the volume take writes again?
pub(crate) fn probe_write(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.join(".write-probe");
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        // More than one journal entry of a big object: a volume that takes this takes events.
        file.write_all(&[0u8; 256 * 1024])?;
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Bytes the store's files take on disk: allocated blocks, not apparent sizes (a journal
/// is a sparse, preallocated file).
pub(crate) fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total += metadata.blocks() * 512;
            }
        }
    }
    total
}

/// Free bytes of the volume holding `dir`, for unprivileged writers (`df`'s "Avail").
pub(crate) fn volume_free_bytes(dir: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(dir).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}
