//! The PostgreSQL-protocol backend: the same operations as the embedded store over a
//! database that any number of replicas (and clusters) share — PostgreSQL itself, and the
//! engines that speak its protocol (CockroachDB, YugabyteDB, Citus) with portable SQL only.
//!
//! - Writes: one writer task per replica does group commit, one transaction per batch (a
//!   multi-row insert), and answers after the commit. A request key (`dedupe`, unique)
//!   makes a review re-sent to two replicas one row. While the database is away or slow,
//!   batches go to the local [`Outbox`](super::outbox) and are answered at once; they drain
//!   in order when it returns (see `writer`).
//! - Reads: plain indexed queries (see `schema` for the tables), run on this backend's own
//!   small runtime so callers on any thread can wait for them.
//! - Retention and sink leases: see `retention` and [`Postgres::lease`].

mod connect;
mod retention;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use logistis_api::{Event, EventId, NamespaceSummary, Operation};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

pub use connect::split_tls_params;

use super::outbox::{Outbox, OutboxFigures};
use super::{
    Appended, Error, EventFilter, ObjectKey, Page, PostgresSettings, Result, Scan, StoreSettings,
    StoreStats, StoreStatus,
};
use crate::admission::NewEvent;

/// A readable cause for logs and messages: the server's message and code when there is one.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// Text columns cannot hold NUL; Kubernetes names never do, but a username might.
pub(crate) fn text(value: &str) -> String {
    value.replace('\0', "\u{fffd}")
}

/// What the writer, retention and readers share.
pub(crate) struct Shared {
    pub pool: Pool,
    pub cluster: String,
    pub settings: StoreSettings,
    pub pg: PostgresSettings,
    pub stats: StoreStats,
    /// Writes are going to the outbox (the database is away); why.
    pub degraded: AtomicBool,
    pub reason: Mutex<Option<String>>,
    pub outbox: Arc<OutboxFigures>,
    /// Stored bytes of all events (from the `log` row, refreshed by retention).
    pub stored_bytes: AtomicU64,
}

impl Shared {
    pub fn set_degraded(&self, reason: Option<String>) {
        let was = self.degraded.swap(reason.is_some(), Ordering::Relaxed);
        match (&reason, was) {
            (Some(reason), false) => tracing::warn!(
                reason,
                "the database is not taking writes: events go to the local outbox"
            ),
            (None, true) => tracing::info!("the database is back: the outbox is drained"),
            _ => {}
        }
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
    }
}

/// The backend handle (inside [`super::Store`]).
pub struct Postgres {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    writer: mpsc::UnboundedSender<writer::Command>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Postgres {
    /// Connect, migrate the schema, open the outbox in `dir` and start the writer and
    /// retention tasks. The database must answer at start (to migrate); later it may go away.
    pub fn open(dir: &Path, pg: PostgresSettings, settings: StoreSettings) -> Result<Postgres> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("logistis-postgres")
            .enable_all()
            .build()
            .map_err(|e| Error::Io(fjall::Error::Io(e)))?;
        let pool = {
            let _entered = runtime.enter();
            connect::pool(&pg)?
        };
        let holder = holder_name();
        // Waited for from outside the runtime (the caller may be on another runtime's
        // blocking thread, where `block_on` is not allowed).
        let (migrated, version) = std::sync::mpsc::channel();
        let migrating = pool.clone();
        runtime.spawn(async move {
            let _ = migrated.send(schema::migrate(&migrating, &holder, schema::VERSION).await);
        });
        let version = version.recv().map_err(|_| Error::Closed)??;
        let outbox = Outbox::open(&dir.join("outbox"), pg.outbox_max_bytes)?;
        let shared = Arc::new(Shared {
            pool,
            cluster: text(&settings.cluster),
            settings,
            pg,
            stats: StoreStats::default(),
            degraded: AtomicBool::new(false),
            reason: Mutex::new(None),
            outbox: outbox.figures(),
            stored_bytes: AtomicU64::new(0),
        });
        tracing::info!(
            url = %super::redact_url(&shared.pg.url),
            schema = version,
            cluster = shared.cluster,
            outbox_events = shared.outbox.events.load(Ordering::Relaxed),
            "connected to the database"
        );
        let (retention_tx, retention_rx) = mpsc::unbounded_channel();
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let writer = runtime.spawn(writer::run(shared.clone(), outbox, writer_rx, retention_tx));
        let retention = runtime.spawn(retention::run(shared.clone(), retention_rx));
        Ok(Postgres {
            shared,
            runtime: Some(runtime),
            writer: writer_tx,
            tasks: Mutex::new(vec![writer, retention]),
            closed: AtomicBool::new(false),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the handle")
            .handle()
    }

    /// Run `query` on this backend's runtime and wait for it, from any thread (also from
    /// an async task: the runtime is a separate one, so this cannot deadlock).
    fn wait<T, F, Fut>(&self, query: F) -> Result<T>
    where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, receiver) = std::sync::mpsc::channel();
        let future = query(self.shared.clone());
        self.handle().spawn(async move {
            let _ = reply.send(future.await);
        });
        receiver.recv().map_err(|_| Error::Closed)?
    }

    pub fn append(&self, event: Box<NewEvent>) -> oneshot::Receiver<Result<Appended>> {
        let (reply, receiver) = oneshot::channel();
        if let Err(mpsc::error::SendError(writer::Command::Append(_, reply))) =
            self.writer.send(writer::Command::Append(event, reply))
        {
            let _ = reply.send(Err(Error::Closed));
        }
        receiver
    }

    /// Consumers are per cluster: each cluster's replicas deliver their own sinks.
    fn consumer(&self, consumer: &str) -> String {
        format!("{}/{consumer}", self.shared.cluster)
    }

    pub fn cursor(&self, consumer: &str) -> Result<Option<EventId>> {
        let name = self.consumer(consumer);
        self.wait(|shared| async move {
            let client = shared.pool.get().await?;
            let row = client
                .query_opt("SELECT id FROM logistis_cursors WHERE name = $1", &[&name])
                .await?;
            Ok(row.map(|row| event_id(row.get(0))))
        })
    }

    pub fn save_cursor(&self, consumer: &str, id: EventId) -> Result<()> {
        let name = self.consumer(consumer);
        self.wait(move |shared| async move {
            let client = shared.pool.get().await?;
            client
                .execute(
                    "INSERT INTO logistis_cursors (name, id, seq) VALUES ($1, $2, COALESCE(
                        (SELECT seq FROM logistis_events WHERE id = $2),
                        (SELECT seq FROM logistis_cursors WHERE name = $1), 0))
                     ON CONFLICT (name) DO UPDATE SET id = excluded.id, seq = excluded.seq",
                    &[&name, &db_id(id)],
                )
                .await?;
            Ok(())
        })
    }

    /// Take or renew `consumer`'s lease for `holder` until now + the lease TTL (database
    /// time, so replica clocks do not matter); false while another holder's lease runs.
    pub fn lease(&self, consumer: &str, holder: &str) -> Result<bool> {
        let name = self.consumer(consumer);
        let holder = holder.to_owned();
        let ttl = i64::try_from(self.shared.pg.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        self.wait(move |shared| async move {
            let client = shared.pool.get().await?;
            let row = client
                .query_opt(
                    "INSERT INTO logistis_leases (name, holder, expires_at)
                     VALUES ($1, $2, now() + $3::BIGINT * INTERVAL '1 millisecond')
                     ON CONFLICT (name) DO UPDATE
                       SET holder = excluded.holder, expires_at = excluded.expires_at
                       WHERE logistis_leases.holder = excluded.holder
                          OR logistis_leases.expires_at < now()
                     RETURNING holder",
                    &[&name, &holder, &ttl],
                )
                .await?;
            Ok(row.is_some())
        })
    }

    pub fn release_lease(&self, consumer: &str, holder: &str) {
        let name = self.consumer(consumer);
        let holder = holder.to_owned();
        let released = self.wait(move |shared| async move {
            let client = shared.pool.get().await?;
            client
                .execute(
                    "DELETE FROM logistis_leases WHERE name = $1 AND holder = $2",
                    &[&name, &holder],
                )
                .await?;
            Ok(())
        });
        if let Err(error) = released {
            tracing::warn!(error = %crate::telemetry::chain(&error), "cannot release a sink lease: it expires by itself");
        }
    }

    /// Every lock of this cluster, in (namespace, name) order (see `store::locks`).
    pub fn locks(&self) -> Result<Vec<Vec<u8>>> {
        self.wait(|shared| async move {
            let client = shared.pool.get().await?;
            let rows = client
                .query(
                    "SELECT value FROM logistis_locks WHERE cluster = $1 ORDER BY namespace, name",
                    &[&shared.cluster],
                )
                .await?;
            Ok(rows.into_iter().map(|row| row.get(0)).collect())
        })
    }

    /// Store a new lock; false when one of that name exists already (another replica may
    /// have created it since this one last read the set). Committed before it returns.
    pub fn insert_lock(&self, namespace: &str, name: &str, value: Vec<u8>) -> Result<bool> {
        let (namespace, name) = (text(namespace), text(name));
        self.wait(move |shared| async move {
            let client = shared.pool.get().await?;
            let inserted = client
                .execute(
                    "INSERT INTO logistis_locks (cluster, namespace, name, value)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (cluster, namespace, name) DO NOTHING",
                    &[&shared.cluster, &namespace, &name, &value],
                )
                .await?;
            Ok(inserted == 1)
        })
    }

    /// Remove one lock (nothing happens when there is none).
    pub fn delete_lock(&self, namespace: &str, name: &str) -> Result<()> {
        let (namespace, name) = (text(namespace), text(name));
        self.wait(move |shared| async move {
            let client = shared.pool.get().await?;
            client
                .execute(
                    "DELETE FROM logistis_locks WHERE cluster = $1 AND namespace = $2 AND name = $3",
                    &[&shared.cluster, &namespace, &name],
                )
                .await?;
            Ok(())
        })
    }

    /// The installation's Secret hashing key, kept in the database: the first replica to
    /// start offers its local key (so a store moved from the embedded backend keeps its
    /// hashes comparable), every replica then uses the one the database holds.
    pub fn hash_key(&self, local: [u8; 32]) -> Result<[u8; 32]> {
        self.wait(move |shared| async move {
            let client = shared.pool.get().await?;
            client
                .execute(
                    "INSERT INTO logistis_settings (name, value) VALUES ('secret-hash-key', $1)
                     ON CONFLICT (name) DO NOTHING",
                    &[&local.as_slice()],
                )
                .await?;
            let row = client
                .query_one(
                    "SELECT value FROM logistis_settings WHERE name = 'secret-hash-key'",
                    &[],
                )
                .await?;
            row.get::<_, &[u8]>(0)
                .try_into()
                .map_err(|_| Error::Migrate("the stored Secret hashing key is not 32 bytes".into()))
        })
    }

    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
            && self
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .first()
                .is_some_and(|writer| !writer.is_finished())
    }

    pub fn status(&self) -> StoreStatus {
        let outbox = &self.shared.outbox;
        let oldest = outbox.oldest_micros.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_micros();
        StoreStatus {
            backend: "postgres",
            degraded: self.shared.degraded.load(Ordering::Relaxed),
            reason: self
                .shared
                .reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            outbox_events: outbox.events.load(Ordering::Relaxed),
            outbox_bytes: outbox.bytes.load(Ordering::Relaxed),
            outbox_oldest_seconds: if oldest == 0 {
                0.0
            } else {
                (now - i64::try_from(oldest).unwrap_or(now)).max(0) as f64 / 1e6
            },
        }
    }

    pub fn stored_bytes(&self) -> u64 {
        self.shared.stored_bytes.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    pub fn last_id(&self) -> Option<EventId> {
        self.wait(|shared| async move {
            let client = shared.pool.get().await?;
            let row = client
                .query_opt(
                    "SELECT id FROM logistis_events WHERE cluster = $1 ORDER BY seq DESC LIMIT 1",
                    &[&shared.cluster],
                )
                .await?;
            Ok(row.map(|row| event_id(row.get(0))))
        })
        .unwrap_or_else(|error| {
            tracing::warn!(error = %crate::telemetry::chain(&error), "cannot read the newest event id");
            None
        })
    }

    pub fn list_events(&self, filter: &EventFilter, scan: Scan) -> Result<Page> {
        let filter = filter.clone();
        self.wait(move |shared| async move {
            let mut conditions = Vec::new();
            let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            let mut param = |column: &str, op: &str, value: Box<dyn ToSql + Sync + Send>| {
                params.push(value);
                conditions.push(format!("{column} {op} ${}", params.len()));
            };
            if let Some(cluster) = &filter.cluster {
                param("cluster", "=", Box::new(text(cluster)));
            }
            if let Some(namespace) = &filter.namespace {
                param("namespace", "=", Box::new(text(namespace)));
            }
            if let Some(group) = &filter.group {
                param("grp", "=", Box::new(text(group)));
            }
            if let Some(kind) = &filter.kind {
                param("kind", "=", Box::new(text(&kind.to_ascii_lowercase())));
            }
            if let Some(name) = &filter.name {
                param("name", "=", Box::new(text(name)));
            }
            if let Some(user) = &filter.user {
                param("username", "=", Box::new(text(user)));
            }
            if let Some(operation) = &filter.operation {
                param("operation", "=", Box::new(operation.as_str().to_owned()));
            }
            if let Some(since) = filter.since_micros {
                param("time_us", ">=", Box::new(since));
                // Ids are allocated at or after the receive time: a bound the index can use.
                param("id", ">=", Box::new(since));
            }
            if let Some(until) = filter.until_micros {
                param("time_us", "<", Box::new(until));
            }
            if let Some(before) = scan.before {
                param("id", "<", Box::new(db_id(before)));
            }
            let limit = i64::try_from(scan.limit)
                .unwrap_or(i64::MAX)
                .saturating_add(1);
            params.push(Box::new(limit));
            let sql = format!(
                "SELECT id, summary FROM logistis_events {} ORDER BY id DESC LIMIT ${}",
                where_clause(&conditions),
                params.len()
            );
            let client = shared.pool.get().await?;
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let rows = client.query(&sql, &refs).await?;
            let mut items = rows
                .iter()
                .map(|row| summary(row.get(0), row.get(1)))
                .collect::<Result<Vec<_>>>()?;
            let next = if items.len() > scan.limit {
                items.truncate(scan.limit);
                items.last().map(|e| e.id)
            } else {
                None
            };
            Ok(Page { items, next })
        })
    }

    /// One event, with its objects or without.
    pub fn event(&self, id: EventId, with_objects: bool) -> Result<Option<Event>> {
        self.wait(move |shared| async move {
            let client = shared.pool.get().await?;
            let row = client
                .query_opt(
                    "SELECT id, summary, objects FROM logistis_events WHERE id = $1",
                    &[&db_id(id)],
                )
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut event = summary(row.get(0), row.get(1))?;
            if with_objects {
                let objects = objects(id, row.get(2))?;
                event.object = objects.object;
                event.old_object = objects.old_object;
            }
            Ok(Some(event))
        })
    }

    pub fn namespaces(&self) -> Result<Vec<NamespaceSummary>> {
        self.wait(|shared| async move {
            let client = shared.pool.get().await?;
            let rows = client
                .query(
                    "SELECT cluster, namespace, events FROM logistis_namespaces WHERE events > 0",
                    &[],
                )
                .await?;
            let latest = client
                .prepare(
                    "SELECT id, summary FROM logistis_events WHERE namespace = $1 AND cluster = $2
                     ORDER BY id DESC LIMIT 1",
                )
                .await?;
            let mut summaries = Vec::with_capacity(rows.len());
            for row in rows {
                let cluster: String = row.get(0);
                let namespace: String = row.get(1);
                let events: i64 = row.get(2);
                let newest = client.query_opt(&latest, &[&namespace, &cluster]).await?;
                summaries.push(NamespaceSummary {
                    cluster,
                    namespace,
                    events: u64::try_from(events).unwrap_or(0),
                    latest: newest
                        .map(|row| summary(row.get(0), row.get(1)))
                        .transpose()?,
                });
            }
            // Byte order, as the embedded store lists them (collations differ by database).
            summaries.sort_by(|a, b| {
                (a.namespace.as_bytes(), a.cluster.as_bytes())
                    .cmp(&(b.namespace.as_bytes(), b.cluster.as_bytes()))
            });
            Ok(summaries)
        })
    }

    pub fn object_events(
        &self,
        cluster: Option<&str>,
        object: &ObjectKey,
    ) -> Result<(Vec<Event>, u64)> {
        let cluster = cluster.map(text);
        let key = [
            text(&object.group),
            text(&object.kind.to_ascii_lowercase()),
            text(&object.namespace),
            text(&object.name),
        ];
        self.wait(move |shared| async move {
            let mut client = shared.pool.get().await?;
            // One snapshot: retention may delete versions meanwhile, and the versions and
            // the count of trimmed ones must describe the same moment.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let [group, kind, namespace, name] = &key;
            let cluster = match cluster {
                Some(cluster) => Some(cluster),
                None => {
                    let newest = tx
                        .query_opt(
                            "SELECT cluster FROM logistis_events
                             WHERE grp = $1 AND kind = $2 AND namespace = $3 AND name = $4
                             ORDER BY id DESC LIMIT 1",
                            &[group, kind, namespace, name],
                        )
                        .await?;
                    match newest {
                        Some(row) => Some(row.get::<_, String>(0)),
                        None => tx
                            .query_opt(
                                "SELECT cluster FROM logistis_trimmed
                                 WHERE grp = $1 AND kind = $2 AND namespace = $3 AND name = $4 LIMIT 1",
                                &[group, kind, namespace, name],
                            )
                            .await?
                            .map(|row| row.get::<_, String>(0)),
                    }
                }
            };
            let Some(cluster) = cluster else {
                return Ok((Vec::new(), 0));
            };
            let rows = tx
                .query(
                    "SELECT id, summary, objects FROM logistis_events
                     WHERE grp = $1 AND kind = $2 AND namespace = $3 AND name = $4 AND cluster = $5
                     ORDER BY id",
                    &[group, kind, namespace, name, &cluster],
                )
                .await?;
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                let mut event = summary(row.get(0), row.get(1))?;
                let objects = objects(event.id, row.get(2))?;
                event.object = objects.object;
                if event.object.is_none() || event.operation == Operation::Delete {
                    event.old_object = objects.old_object;
                }
                events.push(event);
            }
            let trimmed = tx
                .query_opt(
                    "SELECT versions FROM logistis_trimmed
                     WHERE grp = $1 AND kind = $2 AND namespace = $3 AND name = $4 AND cluster = $5",
                    &[group, kind, namespace, name, &cluster],
                )
                .await?
                .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0));
            tx.commit().await?;
            Ok((events, trimmed))
        })
    }

    /// This cluster's log strictly after `after`, in commit order (`seq`): an event that
    /// committed late (another replica's, or drained from an outbox) comes after the ones
    /// already read, never before a sink's cursor.
    pub fn read_log(&self, after: Option<EventId>, limit: usize) -> Result<Vec<Event>> {
        self.wait(move |shared| async move {
            let client = shared.pool.get().await?;
            let after_seq: i64 = match after {
                None => 0,
                Some(id) => client
                    .query_one(
                        "SELECT COALESCE(
                            (SELECT seq FROM logistis_events WHERE id = $1),
                            (SELECT max(seq) FROM logistis_cursors WHERE id = $1),
                            (SELECT max(seq) FROM logistis_events WHERE cluster = $2 AND id <= $1),
                            0)",
                        &[&db_id(id), &shared.cluster],
                    )
                    .await?
                    .get(0),
            };
            let rows = client
                .query(
                    "SELECT id, summary, objects FROM logistis_events
                     WHERE cluster = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[
                        &shared.cluster,
                        &after_seq,
                        &i64::try_from(limit).unwrap_or(i64::MAX),
                    ],
                )
                .await?;
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                let mut event = summary(row.get(0), row.get(1))?;
                let objects = objects(event.id, row.get(2))?;
                event.object = objects.object;
                event.old_object = objects.old_object;
                events.push(event);
            }
            Ok(events)
        })
    }

    /// Stop the writer (it drains what it can of the outbox, briefly) and retention.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let _ = self.writer.send(writer::Command::Shutdown);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let mut tasks = tasks.into_iter();
        if let Some(writer) = tasks.next() {
            let (done, finished) = std::sync::mpsc::channel();
            self.handle().spawn(async move {
                let _ = writer.await;
                let _ = done.send(());
            });
            let _ = finished.recv();
        }
        for task in tasks {
            task.abort();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.close();
        // The last handle may be dropped on an async task: never block there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Who this replica is, for the migration lock and sink leases: the pod name (the host
/// name) and a random suffix, so a restarted pod is a new holder.
pub fn holder_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "logistis".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

/// Event ids are u64 microseconds; the column is BIGINT (good until the year 294247).
pub(crate) fn db_id(id: EventId) -> i64 {
    i64::try_from(id.0).unwrap_or(i64::MAX)
}

pub(crate) fn event_id(value: i64) -> EventId {
    EventId(u64::try_from(value).unwrap_or(0))
}

/// A summary row: the event's JSON without objects; the id column is the truth.
fn summary(id: i64, json: &[u8]) -> Result<Event> {
    let id = event_id(id);
    let mut event: Event =
        serde_json::from_slice(json).map_err(|source| Error::Decode { id, source })?;
    event.id = id;
    Ok(event)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Objects {
    #[serde(default)]
    object: Option<serde_json::Value>,
    #[serde(default)]
    old_object: Option<serde_json::Value>,
}

fn objects(id: EventId, json: Option<&[u8]>) -> Result<Objects> {
    match json {
        Some(json) => serde_json::from_slice(json).map_err(|source| Error::Decode { id, source }),
        None => Ok(Objects::default()),
    }
}
