//! The store interface: one [`Store`] handle that the rest of the server uses, dispatching
//! to the backend chosen at start — the embedded fjall store (the default) or a
//! PostgreSQL-protocol database (`--store postgres://…`). Nothing outside `store/` names a
//! backend: callers see the same operations, the same answers and the same errors.
//!
//! Every operation but [`Store::append`] is synchronous (callers on the async runtime wrap
//! reads in `spawn_blocking`, as they do for fjall); the PostgreSQL backend runs its queries
//! on its own small runtime and waits for them, so it can be called from any thread.
//!
//! The handle also stamps every appended event with the server's `--cluster` name, so both
//! backends record it the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use logistis_api::{Event, EventId, NamespaceSummary};

use super::postgres::Postgres;
use super::{
    Appended, EventFilter, Fjall, ObjectKey, Page, Result, Scan, StoreSettings, StoreStats,
};
use crate::admission::NewEvent;

/// Which backend holds the events.
#[derive(Debug, Clone, Default)]
pub enum BackendSettings {
    /// The embedded fjall store in the data dir (one replica owns it).
    #[default]
    Embedded,
    /// A PostgreSQL-protocol database shared by any number of replicas.
    Postgres(PostgresSettings),
}

/// How to reach the database, from `--store postgres://…` and its companion flags.
#[derive(Clone)]
pub struct PostgresSettings {
    /// The connection URL without `sslmode`/`sslrootcert` (taken out into the fields below).
    pub url: String,
    /// Overrides any password in the URL (from `--store-password-file` or the environment).
    pub password: Option<String>,
    pub tls: TlsMode,
    /// PEM file of the CA that signed the database's certificate.
    pub ca_file: Option<PathBuf>,
    /// Connections kept open to the database.
    pub pool_size: usize,
    /// A group commit that takes longer goes to the local outbox instead, so the webhook
    /// answers in time while the database is slow or away.
    pub commit_timeout: Duration,
    /// The local outbox (on the pod's volume) holds at most this many bytes of events.
    pub outbox_max_bytes: u64,
    /// How long a replica holds a sink's lease without renewing it.
    pub lease_ttl: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PostgresSettings")
            .field("url", &redact_url(&self.url))
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .field("commit_timeout", &self.commit_timeout)
            .field("outbox_max_bytes", &self.outbox_max_bytes)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// `sslmode`, as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    Disable,
    /// TLS when the server offers it, else plain (libpq's default).
    #[default]
    Prefer,
    /// TLS, certificate not verified (unless a CA file is given: then as `verify-ca`).
    Require,
    /// TLS, certificate chain verified against the CA file.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

impl TlsMode {
    pub fn parse(text: &str) -> Option<TlsMode> {
        Some(match text {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Validate `--store postgres://…` and its companions; the message names the flag.
pub fn postgres_settings(
    url: &str,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    commit_timeout: Duration,
    outbox_max_bytes: u64,
) -> std::result::Result<PostgresSettings, String> {
    let shown = redact_url(url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "--store {shown:?}: expected `embedded` or a postgres:// URL"
        ));
    }
    let (url, tls, root) =
        super::postgres::split_tls_params(url).map_err(|e| format!("--store {shown:?}: {e}"))?;
    if let Err(error) = url.parse::<tokio_postgres::Config>() {
        return Err(format!("--store {shown:?}: {error}"));
    }
    let ca_file = ca_file.or(root.map(PathBuf::from));
    if let Some(path) = &ca_file
        && !path.is_file()
    {
        return Err(format!("--store-ca-file {}: no such file", path.display()));
    }
    let tls = tls.unwrap_or_default();
    if matches!(tls, TlsMode::VerifyCa | TlsMode::VerifyFull) && ca_file.is_none() {
        return Err(format!(
            "--store {shown:?}: sslmode=verify-ca and verify-full need the database's CA (--store-ca-file)"
        ));
    }
    Ok(PostgresSettings {
        url,
        password,
        tls,
        ca_file,
        pool_size: DEFAULT_POOL_SIZE,
        commit_timeout,
        outbox_max_bytes,
        lease_ttl: DEFAULT_LEASE_TTL,
    })
}

/// Connections per replica: the writer, retention and concurrent queries.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// A sink's leaseholder that stops renewing is replaced after this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// A URL with its password (if any) replaced by `***`, for logs and messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// This replica's name for sink leases: the pod (host) name and a random suffix, so a
/// restarted pod is a new holder. The same for the whole process.
pub fn replica_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(super::postgres::holder_name)
}

/// How the store is doing, beyond open/closed: for `/api/v1/store` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    pub backend: &'static str,
    /// Writes are reaching the store itself (not only the local outbox).
    pub degraded: bool,
    /// Why, when degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Events acknowledged but not yet in the database.
    pub outbox_events: u64,
    pub outbox_bytes: u64,
    /// Age of the oldest of them, in seconds.
    pub outbox_oldest_seconds: f64,
}

#[derive(Clone)]
enum Backend {
    Fjall(Fjall),
    Postgres(Arc<Postgres>),
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    cluster: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            Backend::Fjall(fjall) => format!("{fjall:?}"),
            Backend::Postgres(_) => "Postgres".to_owned(),
        };
        f.debug_struct("Store")
            .field("backend", &backend)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl Store {
    /// Open the store chosen by `settings.backend`: the embedded one in `dir`, or the
    /// database (its local outbox then lives in `dir`). Migrates the database's schema first.
    pub fn open(dir: &Path, settings: StoreSettings) -> Result<Store> {
        let cluster: Arc<str> = Arc::from(settings.cluster.as_str());
        let backend = match settings.backend.clone() {
            BackendSettings::Embedded => Backend::Fjall(Fjall::open(dir, settings)?),
            BackendSettings::Postgres(pg) => {
                Backend::Postgres(Arc::new(Postgres::open(dir, pg, settings)?))
            }
        };
        Ok(Store { backend, cluster })
    }

    /// The name stamped on every event (`--cluster`); empty when unnamed.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Queue one event; the receiver resolves once it is committed (and, in sync mode,
    /// durable: on disk, in the database, or — while the database is away — in the outbox).
    pub fn append(
        &self,
        mut event: Box<NewEvent>,
    ) -> tokio::sync::oneshot::Receiver<Result<Appended>> {
        event.event.cluster = self.cluster.to_string();
        match &self.backend {
            Backend::Fjall(fjall) => fjall.append(event),
            Backend::Postgres(pg) => pg.append(event),
        }
    }

    /// Append many events at once, for filling a store (imports, benchmarks); a server
    /// appends one review at a time with [`Store::append`]. On the embedded store the chunk
    /// is written as sorted tables (fjall's ingestion: no journal, no memtables), several
    /// times faster than appending the same events; on PostgreSQL the events are appended
    /// as usual and share its group commits. The receiver resolves once all are durable,
    /// with one outcome per event in order. The events are stored exactly as appends
    /// would store them (the same ids, deltas, dictionaries and indexes).
    pub fn append_bulk(
        &self,
        mut events: Vec<NewEvent>,
    ) -> tokio::sync::oneshot::Receiver<Result<Vec<Result<Appended>>>> {
        for event in &mut events {
            event.event.cluster = self.cluster.to_string();
        }
        match &self.backend {
            Backend::Fjall(fjall) => fjall.append_bulk(events),
            Backend::Postgres(pg) => {
                let receivers: Vec<_> = events
                    .into_iter()
                    .map(|event| pg.append(Box::new(event)))
                    .collect();
                let (reply, receiver) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    let outcomes = receivers
                        .into_iter()
                        .map(|r| r.blocking_recv().unwrap_or(Err(super::Error::Closed)))
                        .collect();
                    let _ = reply.send(Ok(outcomes));
                });
                receiver
            }
        }
    }

    /// Append and wait, for callers that are not async (tests, tools).
    pub fn append_blocking(&self, event: NewEvent) -> Result<Appended> {
        self.append(Box::new(event))
            .blocking_recv()
            .map_err(|_| super::Error::Closed)?
    }

    /// The persisted position of a log consumer (a sink), if it has one.
    pub fn cursor(&self, consumer: &str) -> Result<Option<EventId>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.cursor(consumer),
            Backend::Postgres(pg) => pg.cursor(consumer),
        }
    }

    /// Durably record that `consumer` has processed everything up to and including `id`.
    pub fn save_cursor(&self, consumer: &str, id: EventId) -> Result<()> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.save_cursor(consumer, id),
            Backend::Postgres(pg) => pg.save_cursor(consumer, id),
        }
    }

    /// Take or renew the lease on a log consumer for `holder`: true while this holder may
    /// deliver it. Several replicas share a database, and exactly one of them delivers each
    /// sink; the embedded store has one replica, which always holds every lease.
    pub fn lease(&self, consumer: &str, holder: &str) -> Result<bool> {
        match &self.backend {
            Backend::Fjall(_) => Ok(true),
            Backend::Postgres(pg) => pg.lease(consumer, holder),
        }
    }

    /// Give a lease up (a sink stopping), so another replica takes over at once.
    pub fn release_lease(&self, consumer: &str, holder: &str) {
        if let Backend::Postgres(pg) = &self.backend {
            pg.release_lease(consumer, holder);
        }
    }

    /// The Secret hashing key to use: `local` (from the data dir) for the embedded store;
    /// the installation's, shared by every replica, for a database.
    pub fn hash_key(&self, local: [u8; 32]) -> Result<[u8; 32]> {
        match &self.backend {
            Backend::Fjall(_) => Ok(local),
            Backend::Postgres(pg) => pg.hash_key(local),
        }
    }

    /// The store accepts appends (for `/readyz`). With a database, that includes the time
    /// it is away: appends then go to the local outbox.
    pub fn is_open(&self) -> bool {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.is_open(),
            Backend::Postgres(pg) => pg.is_open(),
        }
    }

    /// Backend, degraded or not, outbox depth and age.
    pub fn store_status(&self) -> StoreStatus {
        match &self.backend {
            Backend::Fjall(_) => StoreStatus {
                backend: "embedded",
                ..StoreStatus::default()
            },
            Backend::Postgres(pg) => pg.status(),
        }
    }

    /// Bytes the events take: on disk (embedded), or their stored size (database).
    pub fn disk_space(&self) -> u64 {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.disk_space(),
            Backend::Postgres(pg) => pg.stored_bytes(),
        }
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> &StoreStats {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.stats(),
            Backend::Postgres(pg) => pg.stats(),
        }
    }

    /// The newest event id in the log (of this cluster).
    pub fn last_id(&self) -> Option<EventId> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.last_id(),
            Backend::Postgres(pg) => pg.last_id(),
        }
    }

    /// Events matching `filter`, newest first.
    pub fn list_events(&self, filter: &EventFilter, scan: Scan) -> Result<Page> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.list_events(filter, scan),
            Backend::Postgres(pg) => pg.list_events(filter, scan),
        }
    }

    /// One event's summary (no objects).
    pub fn summary(&self, id: EventId) -> Result<Option<Event>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.summary(id),
            Backend::Postgres(pg) => pg.event(id, false),
        }
    }

    /// One event with its objects.
    pub fn get_event(&self, id: EventId) -> Result<Option<Event>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.get_event(id),
            Backend::Postgres(pg) => pg.event(id, true),
        }
    }

    /// Every namespace with stored events (per cluster): count and newest event.
    pub fn namespaces(&self) -> Result<Vec<NamespaceSummary>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.namespaces(),
            Backend::Postgres(pg) => pg.namespaces(),
        }
    }

    /// Every stored event of one object, oldest first, and how many older events retention
    /// removed (see the fjall store's documentation for which objects they carry).
    pub fn object_events(&self, object: &ObjectKey) -> Result<(Vec<Event>, u64)> {
        self.object_events_in(None, object)
    }

    /// [`Store::object_events`] of one cluster's object. Without a cluster: the cluster of
    /// the object's newest event (one object's history never mixes two clusters).
    pub fn object_events_in(
        &self,
        cluster: Option<&str>,
        object: &ObjectKey,
    ) -> Result<(Vec<Event>, u64)> {
        match &self.backend {
            Backend::Fjall(fjall) => {
                let (mut events, trimmed) = fjall.object_events(object)?;
                if let Some(cluster) = cluster {
                    events.retain(|event| event.cluster == cluster);
                }
                Ok((events, trimmed))
            }
            Backend::Postgres(pg) => pg.object_events(cluster, object),
        }
    }

    /// The log in order, strictly after `after`, with objects (for sinks): this cluster's
    /// events, in the order they became durable.
    pub fn read_log(&self, after: Option<EventId>, limit: usize) -> Result<Vec<Event>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.read_log(after, limit),
            Backend::Postgres(pg) => pg.read_log(after, limit),
        }
    }

    /// Flush everything and stop the background work. Appends after this fail.
    /// Whether the embedded store accepts writes (a database-backed store always does:
    /// what the database does not take goes to the outbox, see [`Store::store_status`]).
    pub fn health(&self) -> &super::Health {
        static DATABASE: std::sync::LazyLock<super::Health> =
            std::sync::LazyLock::new(super::Health::default);
        match &self.backend {
            Backend::Fjall(fjall) => fjall.health(),
            Backend::Postgres(_) => &DATABASE,
        }
    }

    /// Free bytes of the embedded store's volume (none with a database).
    pub fn volume_free_bytes(&self) -> Option<u64> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.volume_free_bytes(),
            Backend::Postgres(_) => None,
        }
    }

    /// The embedded store's write backlog (`None` for a database, or while the embedded
    /// one is being reopened).
    pub fn write_backlog(&self) -> Option<super::WriteBacklog> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.write_backlog().ok(),
            Backend::Postgres(_) => None,
        }
    }

    /// Table bytes per keyspace (the embedded store; empty for a database).
    pub fn keyspace_sizes(&self) -> Result<Vec<(&'static str, u64)>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.keyspace_sizes(),
            Backend::Postgres(_) => Ok(Vec::new()),
        }
    }

    /// Write every memtable to a table (the embedded store; benchmarks).
    pub fn flush_tables(&self) -> Result<()> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.flush_tables(),
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Queue confirmation status changes (the embedded store only: `--confirm` is refused
    /// with a database at startup).
    pub fn set_statuses(
        &self,
        updates: Vec<super::StatusUpdate>,
    ) -> tokio::sync::oneshot::Receiver<Result<()>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.set_statuses(updates),
            Backend::Postgres(_) => {
                let (reply, receiver) = tokio::sync::oneshot::channel();
                let _ = reply.send(Err(super::Error::Write(
                    "confirmation statuses need the embedded store".to_owned(),
                )));
                receiver
            }
        }
    }

    /// The stored confirmation status of one event, if it has one.
    pub fn status(&self, id: EventId) -> Result<Option<super::StatusRecord>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.status(id),
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// Events still `pending`, oldest first, strictly after `after`, at most `limit`.
    pub fn pending(&self, after: Option<EventId>, limit: usize) -> Result<Vec<EventId>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.pending(after, limit),
            Backend::Postgres(_) => Ok(Vec::new()),
        }
    }

    /// The objects of one kind with stored events (the confirmer's catch-up).
    pub fn object_names(
        &self,
        group: &str,
        kind: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.object_names(group, kind, after, limit),
            Backend::Postgres(_) => Ok(Vec::new()),
        }
    }

    /// A backup of the embedded store (a database is backed up with its own tools).
    pub fn backup_into<W: std::io::Write>(
        &self,
        writer: &mut super::backup::BackupWriter<W>,
    ) -> std::result::Result<super::backup::Summary, super::backup::BackupError> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.backup_into(writer),
            Backend::Postgres(_) => Err(super::backup::BackupError::Database),
        }
    }

    /// Every stored lock of this cluster (see `store::locks`).
    pub fn locks(&self) -> Result<Vec<Vec<u8>>> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.locks(),
            Backend::Postgres(pg) => pg.locks(),
        }
    }

    /// Durably store a new lock; false when one of that name exists already (with a
    /// database, another replica may have created it).
    pub fn insert_lock(&self, namespace: &str, name: &str, value: Vec<u8>) -> Result<bool> {
        match &self.backend {
            // One writer: the caller's set is the truth (it checked the name).
            Backend::Fjall(fjall) => fjall.put_lock(namespace, name, value).map(|()| true),
            Backend::Postgres(pg) => pg.insert_lock(namespace, name, value),
        }
    }

    /// Durably remove one lock.
    pub fn delete_lock(&self, namespace: &str, name: &str) -> Result<()> {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.delete_lock(namespace, name),
            Backend::Postgres(pg) => pg.delete_lock(namespace, name),
        }
    }

    /// Whether other processes change what this one reads (replicas sharing a database):
    /// state kept in memory, such as the set of locks, must then be re-read now and then.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Stop the store; whether its final flush reached the disk (the database's commits
    /// did already).
    pub fn shutdown(self) -> bool {
        match self.backend {
            Backend::Fjall(fjall) => fjall.shutdown(),
            Backend::Postgres(pg) => {
                pg.close();
                true
            }
        }
    }

    pub fn close(self) {
        match self.backend {
            Backend::Fjall(fjall) => fjall.close(),
            Backend::Postgres(pg) => pg.close(),
        }
    }

    /// The embedded store, for its own tests.
    #[cfg(test)]
    pub(crate) fn fjall(&self) -> &Fjall {
        match &self.backend {
            Backend::Fjall(fjall) => fjall,
            Backend::Postgres(_) => panic!("not the embedded store"),
        }
    }

    /// The embedded store's internals, for its own tests.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &super::Shared {
        match &self.backend {
            Backend::Fjall(fjall) => fjall.shared(),
            Backend::Postgres(_) => panic!("not the embedded store"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_modes_parsed() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/logistis?sslmode=require"),
            "postgres://app:***@db:5432/logistis?sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(TlsMode::parse("verify-full"), Some(TlsMode::VerifyFull));
        assert_eq!(TlsMode::parse("bogus"), None);
    }

    #[test]
    fn store_urls_are_checked() {
        let ok = |url: &str| postgres_settings(url, None, None, Duration::from_secs(2), 1 << 20);
        let settings = ok("postgresql://app:pw@db:5432/logistis?sslmode=require").unwrap();
        assert_eq!(settings.tls, TlsMode::Require);
        assert_eq!(settings.url, "postgresql://app:pw@db:5432/logistis");
        assert!(
            !format!("{settings:?}").contains("pw@"),
            "no password in Debug"
        );
        let error = ok("mysql://db/x").unwrap_err();
        assert!(error.contains("postgres://"), "{error}");
        let error = ok("postgres://db/x?sslmode=verify-full").unwrap_err();
        assert!(error.contains("--store-ca-file"), "{error}");
        let error = ok("postgres://db/x?sslrootcert=/nonexistent.pem").unwrap_err();
        assert!(error.contains("no such file"), "{error}");
        assert!(
            !ok("postgres://app:pw@db/x?bogus=1")
                .unwrap_err()
                .contains("pw")
        );
    }
}
