//! Locks: a person freezes a namespace, a kind in a namespace, one object, or cluster-scoped
//! objects for some users, and the webhook denies their changes — the only `allowed: false`
//! Logistis ever answers, and only because someone asked for it.
//!
//! - [`validate`]: is a requested lock sound (422 with the field and the reason otherwise).
//! - [`index`]: the matcher on the admission path, by namespace → kind → name.
//! - [`message`]: what the denied user reads, and what the attempt's event records.
//!
//! [`Locks`] owns the live set: locks are stored in the store — the `locks` keyspace,
//! fsynced before a create or delete is answered, or the database's `logistis_locks` table,
//! committed first — loaded at start, and every change builds a new immutable snapshot that
//! is swapped in at once, so a review never waits for a writer and never sees half a change.
//! Watchers get every change as it happens. Replicas sharing a database re-read the set
//! every [`REFRESH_INTERVAL`] ([`spawn_maintenance`]), so a lock made through one applies on
//! all; watchers are told of an expiry as a `MODIFIED` change within a second.

pub mod index;
pub mod message;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, SubsecRound as _, Utc};
use logistis_api::lock::{
    DEFAULT_EXEMPT, Denial, ENFORCEMENT_NOTE, Lock, LockStatus, LockUser, PHASE_ACTIVE,
    PHASE_EXPIRED,
};
use logistis_api::{Operation, lock::LOCK_API_VERSION, lock::LOCK_KIND};
use rand::Rng as _;
use tokio::sync::broadcast;

pub use index::{Entry, Index, Request};
pub use validate::Invalid;

use crate::admission::{self, AdmissionRequest, KindTable};
use crate::store::Store;

/// Most locks at once: the matcher's cost grows with the locks of one namespace, and a
/// runaway script creating locks must not slow every review of the cluster.
pub const MAX_LOCKS: usize = 10_000;
/// Changes a slow watcher may fall behind by before it is told to re-list (410 Gone).
const WATCH_BUFFER: usize = 1024;

/// Why a lock operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid lock: {0}")]
    Invalid(#[from] Invalid),
    #[error("lock {key} already exists")]
    AlreadyExists { key: String },
    #[error("lock {key} not found")]
    NotFound { key: String },
    #[error("too many locks: at most {MAX_LOCKS} may exist at once")]
    TooMany,
    #[error("cannot store the lock")]
    Store(#[source] crate::store::Error),
    #[error("stored lock {index} cannot be read")]
    Corrupt {
        index: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// What a watcher is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    /// Its phase changed: it expired.
    Modified,
    Deleted,
}

impl ChangeType {
    /// The watch event `type` of Kubernetes.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One change to the set of locks, as watchers receive it.
#[derive(Debug, Clone)]
pub struct Change {
    pub change: ChangeType,
    pub lock: Arc<Lock>,
    pub resource_version: u64,
}

/// One immutable state of the set.
#[derive(Debug, Default)]
struct Snapshot {
    locks: BTreeMap<(String, String), Arc<Entry>>,
    index: Index,
    resource_version: u64,
}

impl Snapshot {
    fn new(locks: BTreeMap<(String, String), Arc<Entry>>, resource_version: u64) -> Snapshot {
        let index = Index::build(locks.values().cloned());
        Snapshot {
            locks,
            index,
            resource_version,
        }
    }
}

/// The live set of locks; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Locks {
    current: ArcSwap<Snapshot>,
    store: Store,
    /// Serialises creates and deletes (each is store write, then swap).
    write: Mutex<()>,
    changes: broadcast::Sender<Change>,
}

impl Locks {
    /// Load every stored lock (blocking: call from a blocking context).
    pub fn load(store: Store) -> Result<Locks, Error> {
        let (locks, resource_version) = read_all(&store)?;
        let (changes, _) = broadcast::channel(WATCH_BUFFER);
        Ok(Locks {
            current: ArcSwap::from_pointee(Snapshot::new(locks, resource_version)),
            store,
            write: Mutex::new(()),
            changes,
        })
    }

    /// Read the stored set again and take in what other replicas changed (a store shared
    /// through a database): watchers are told, the matcher swaps at once. Returns how many
    /// locks were added or removed. Blocking.
    pub fn reload(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let (stored, stored_version) = read_all(&self.store)?;
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let same = |a: &Entry, b: &Entry| a.lock.metadata.uid == b.lock.metadata.uid;
        let mut changes = Vec::new();
        for (key, entry) in &current.locks {
            if stored.get(key).is_none_or(|other| !same(entry, other)) {
                changes.push((ChangeType::Deleted, entry.lock.clone()));
            }
        }
        for (key, entry) in &stored {
            if current
                .locks
                .get(key)
                .is_none_or(|other| !same(entry, other))
            {
                changes.push((ChangeType::Added, entry.lock.clone()));
            }
        }
        if changes.is_empty() {
            return Ok(0);
        }
        let resource_version = next_version(current.resource_version.max(stored_version), now);
        self.current
            .store(Arc::new(Snapshot::new(stored, resource_version)));
        for (change, lock) in &changes {
            tracing::info!(lock = %lock.key(), change = change.as_str(), "lock changed by another replica");
            let _ = self.changes.send(Change {
                change: *change,
                lock: lock.clone(),
                resource_version,
            });
        }
        Ok(changes.len())
    }

    /// The number of locks (active or expired).
    pub fn len(&self) -> usize {
        self.current.load().locks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lock that denies `request` at `now`, if any.
    pub fn find(&self, request: &Request<'_>, now: DateTime<Utc>) -> Option<Arc<Lock>> {
        let snapshot = self.current.load();
        snapshot
            .index
            .find(request, now)
            .map(|entry| entry.lock.clone())
    }

    /// The webhook's question: does a lock deny this admission request? With no locks this
    /// is one atomic load.
    pub fn check_review(
        &self,
        request: &AdmissionRequest,
        kinds: &KindTable,
        now: DateTime<Utc>,
    ) -> Option<Denial> {
        let snapshot = self.current.load();
        if snapshot.index.is_empty() {
            return None;
        }
        let resource = admission::resource_of(request, kinds);
        let operation = Operation::parse(&request.operation);
        let user = &request.user_info;
        let groups = user.groups.as_deref().unwrap_or_default();
        let asked = Request {
            namespace: &resource.namespace,
            group: &resource.group,
            kind: &resource.kind,
            name: &resource.name,
            operation: &operation,
            username: &user.username,
            groups,
        };
        let entry = snapshot.index.find(&asked, now)?;
        let mut what = resource.display_key();
        if !resource.namespace.is_empty() {
            what.push_str(" in namespace ");
            what.push_str(&resource.namespace);
        }
        Some(message::denial(&entry.lock, &what))
    }

    /// Create a lock in `namespace` (empty: cluster scope) from a request body, set by the
    /// authenticated `set_by`. Blocking: it waits for the fsync. A `dry_run` checks
    /// everything and answers the lock it would have created, storing nothing.
    pub fn create(
        &self,
        namespace: &str,
        mut lock: Lock,
        set_by: LockUser,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Lock, Error> {
        if !namespace.is_empty() {
            validate::check_namespace(namespace)?;
        }
        if !lock.metadata.namespace.is_empty() && lock.metadata.namespace != namespace {
            return Err(Invalid {
                field: "metadata.namespace".into(),
                reason: format!(
                    "{:?} does not match the namespace of the request ({namespace:?})",
                    lock.metadata.namespace
                ),
            }
            .into());
        }
        if lock.metadata.name.is_empty() && !lock.metadata.generate_name.is_empty() {
            lock.metadata.name = generate_name(&lock.metadata.generate_name);
        }
        validate::check_name(&lock.metadata.name)?;
        let operations = validate::check_spec(namespace, &lock.spec, now)?;

        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let key = (namespace.to_owned(), lock.metadata.name.clone());
        if current.locks.contains_key(&key) {
            return Err(Error::AlreadyExists {
                key: logistis_api::lock::lock_key(namespace, &key.1),
            });
        }
        if current.locks.len() >= MAX_LOCKS {
            return Err(Error::TooMany);
        }
        let resource_version = next_version(current.resource_version, now);
        let mut stored = Lock {
            api_version: LOCK_API_VERSION.to_owned(),
            kind: LOCK_KIND.to_owned(),
            metadata: lock.metadata,
            spec: lock.spec,
            status: Some(LockStatus {
                set_by,
                phase: PHASE_ACTIVE.to_owned(),
                operations: operations.names(),
                exempt_by_default: DEFAULT_EXEMPT.iter().map(|s| (*s).to_owned()).collect(),
                enforcement: ENFORCEMENT_NOTE.to_owned(),
            }),
        };
        stored.spec.operations = operations.names();
        stored.metadata.namespace = namespace.to_owned();
        stored.metadata.generate_name.clear();
        stored.metadata.uid = new_uid();
        stored.metadata.resource_version = resource_version.to_string();
        stored.metadata.creation_timestamp = Some(now.trunc_subsecs(0));
        if dry_run {
            return Ok(with_phase(&stored, now));
        }
        let bytes = serde_json::to_vec(&stored).expect("a lock always serialises");
        let stored_now = self
            .store
            .insert_lock(namespace, &key.1, bytes)
            .map_err(Error::Store)?;
        if !stored_now {
            return Err(Error::AlreadyExists {
                key: logistis_api::lock::lock_key(namespace, &key.1),
            });
        }

        let lock = Arc::new(stored);
        let mut locks = current.locks.clone();
        locks.insert(key, Arc::new(Entry::new(lock.clone(), operations)));
        self.current
            .store(Arc::new(Snapshot::new(locks, resource_version)));
        let _ = self.changes.send(Change {
            change: ChangeType::Added,
            lock: lock.clone(),
            resource_version,
        });
        tracing::info!(lock = %lock.key(), target = %lock.spec.target, "lock created");
        Ok(with_phase(&lock, now))
    }

    /// Delete one lock; answers it as it was. Blocking: it waits for the fsync.
    pub fn delete(&self, namespace: &str, name: &str, now: DateTime<Utc>) -> Result<Lock, Error> {
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let key = (namespace.to_owned(), name.to_owned());
        let Some(entry) = current.locks.get(&key) else {
            return Err(Error::NotFound {
                key: logistis_api::lock::lock_key(namespace, name),
            });
        };
        let lock = entry.lock.clone();
        self.store
            .delete_lock(namespace, name)
            .map_err(Error::Store)?;
        let resource_version = next_version(current.resource_version, now);
        let mut locks = current.locks.clone();
        locks.remove(&key);
        self.current
            .store(Arc::new(Snapshot::new(locks, resource_version)));
        let _ = self.changes.send(Change {
            change: ChangeType::Deleted,
            lock: lock.clone(),
            resource_version,
        });
        tracing::info!(lock = %lock.key(), "lock deleted");
        Ok(with_phase(&lock, now))
    }

    /// Tell watchers of the locks that expired in `(after, now]` (their phase is now
    /// `Expired`), as a `MODIFIED` change each, under a new resourceVersion. Returns how
    /// many. Matching needs nothing of this: an expired lock stops applying by itself.
    pub fn announce_expired(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> usize {
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let expired: Vec<Arc<Lock>> = current
            .locks
            .values()
            .filter(|entry| {
                entry
                    .lock
                    .spec
                    .expires_at
                    .is_some_and(|at| after < at && at <= now)
            })
            .map(|entry| entry.lock.clone())
            .collect();
        if expired.is_empty() {
            return 0;
        }
        let resource_version = next_version(current.resource_version, now);
        self.current.store(Arc::new(Snapshot::new(
            current.locks.clone(),
            resource_version,
        )));
        for lock in &expired {
            tracing::info!(lock = %lock.key(), "lock expired");
            let _ = self.changes.send(Change {
                change: ChangeType::Modified,
                lock: lock.clone(),
                resource_version,
            });
        }
        expired.len()
    }

    /// One lock, with its phase at `now`.
    pub fn get(&self, namespace: &str, name: &str, now: DateTime<Utc>) -> Option<Lock> {
        let current = self.current.load();
        current
            .locks
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|entry| with_phase(&entry.lock, now))
    }

    /// The locks of one namespace (`Some("")`: cluster scope) or of all (`None`), in
    /// (namespace, name) order with their phase at `now`, and the set's resourceVersion.
    pub fn list(&self, namespace: Option<&str>, now: DateTime<Utc>) -> (Vec<Lock>, u64) {
        let current = self.current.load();
        let items = current
            .locks
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|wanted| wanted == ns))
            .map(|(_, entry)| with_phase(&entry.lock, now))
            .collect();
        (items, current.resource_version)
    }

    /// Changes from now on. A receiver that lags by more than the buffer gets
    /// `RecvError::Lagged` and should end its watch (the client re-lists).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// How many watchers are subscribed.
    pub fn watchers(&self) -> usize {
        self.changes.receiver_count()
    }

    /// The resourceVersion of the current set.
    pub fn resource_version(&self) -> u64 {
        self.current.load().resource_version
    }
}

/// How often a replica re-reads the locks of a shared database: a lock created through one
/// replica applies on the others within this.
pub const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// How soon after a lock's expiry its watchers are told.
const EXPIRY_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Until `shutdown`: tell watchers of expiries every [`EXPIRY_TICK`], and with a `shared`
/// store (replicas sharing a database) re-read the stored locks every [`REFRESH_INTERVAL`].
/// A failed read keeps the set as it was and is logged once until one succeeds.
pub fn spawn_maintenance(
    locks: Arc<Locks>,
    shared: bool,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        let mut checked = Utc::now();
        let mut last_read = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(EXPIRY_TICK) => {}
            }
            let now = Utc::now();
            locks.announce_expired(checked, now);
            checked = now;
            if !shared || last_read.elapsed() < REFRESH_INTERVAL {
                continue;
            }
            last_read = tokio::time::Instant::now();
            let reader = locks.clone();
            let outcome = tokio::task::spawn_blocking(move || reader.reload(Utc::now())).await;
            match outcome {
                Ok(Ok(_)) if failing => {
                    failing = false;
                    tracing::info!("locks are read from the database again");
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) if !failing => {
                    failing = true;
                    tracing::warn!(error = %crate::telemetry::chain(&error), "cannot re-read the locks: enforcing the set last read");
                }
                Ok(Err(_)) => {}
                Err(_) => tracing::error!("re-reading the locks panicked"),
            }
        }
    })
}

/// The event of an attempt a lock denied, received at `now`: what was tried, by whom, and
/// the denial. It never passes the capture predicates — who tried to change a frozen target
/// is what the lock's owner wants to see — and keeps no objects (the state it asked for never
/// existed; the patch says what it was). `None` for a dry run unless dry runs are recorded.
pub fn attempt_event(
    request: AdmissionRequest,
    now: DateTime<Utc>,
    policy: admission::Policy,
    redactor: &admission::Redactor,
    kinds: &KindTable,
    denial: Denial,
) -> Option<Box<admission::NewEvent>> {
    // Even an attempt that would only have touched status is recorded.
    let policy = admission::Policy {
        record_noise: true,
        ..policy
    };
    match admission::build_event(request, now, policy, redactor, kinds) {
        admission::Outcome::Record(mut new_event) => {
            new_event.event.denied = Some(denial);
            new_event.event.object = None;
            new_event.event.old_object = None;
            Some(new_event)
        }
        admission::Outcome::SkippedDryRun | admission::Outcome::SkippedNoise => None,
    }
}

/// `lock` with `status.phase` as of `now`.
pub fn with_phase(lock: &Lock, now: DateTime<Utc>) -> Lock {
    let mut lock = lock.clone();
    if let Some(status) = &mut lock.status {
        status.phase = if lock.spec.expires_at.is_none_or(|at| now < at) {
            PHASE_ACTIVE
        } else {
            PHASE_EXPIRED
        }
        .to_owned();
    }
    lock
}

fn version_of(lock: &Lock) -> u64 {
    lock.metadata.resource_version.parse().unwrap_or(0)
}

/// Every stored lock by (namespace, name), and the newest resourceVersion among them.
type Stored = (BTreeMap<(String, String), Arc<Entry>>, u64);

fn read_all(store: &Store) -> Result<Stored, Error> {
    let mut locks = BTreeMap::new();
    let mut resource_version = 0;
    for (index, value) in store.locks().map_err(Error::Store)?.into_iter().enumerate() {
        let lock: Lock =
            serde_json::from_slice(&value).map_err(|source| Error::Corrupt { index, source })?;
        // Stored locks were valid when created; only the operations need recompiling
        // (an expiry now in the past is fine: it no longer applies).
        let operations = validate::check_spec(
            &lock.metadata.namespace,
            &lock.spec,
            DateTime::<Utc>::MIN_UTC,
        )?;
        resource_version = resource_version.max(version_of(&lock));
        let key = (lock.metadata.namespace.clone(), lock.metadata.name.clone());
        locks.insert(key, Arc::new(Entry::new(Arc::new(lock), operations)));
    }
    Ok((locks, resource_version))
}

/// Resource versions are microseconds since the epoch, bumped past the last one: they keep
/// increasing across restarts even after the newest lock was deleted.
fn next_version(last: u64, now: DateTime<Utc>) -> u64 {
    let micros = u64::try_from(now.timestamp_micros()).unwrap_or(0);
    micros.max(last + 1)
}

fn new_uid() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `generateName` as the API server does it: the prefix and five random characters.
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod tests;
