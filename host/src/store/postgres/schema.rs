//! The schema and its versioned migrations, applied on start and serialised across replicas
//! by a lock row with an expiry (`logistis_migration_lock`), not advisory locks: CockroachDB
//! and YugabyteDB have none. A replica that dies holding the lock blocks the others only
//! until it expires.
//!
//! Tables (all names prefixed `logistis_`):
//! - `events`: one row per event; `id` is the time-ordered event id, `seq` the position in
//!   the log in commit order (sinks read by it), the indexed columns are what the query API
//!   filters on, `summary` and `objects` are JSON, `dedupe` the request key (unique).
//! - `log`: one row: the next `seq` (taking it serialises group commits, so `seq` order is
//!   commit order) and the stored bytes of all events (for the size limit).
//! - `namespaces`: events per cluster and namespace (the overview without a scan);
//!   `trimmed`: versions of an object removed by retention; `cursors`: sink positions.
//! - version 2: `leases`: which replica delivers a sink, until when; `settings`: the
//!   Secret hashing key of the installation.
//! - version 3: `locks`: (cluster, namespace, name) → the lock as `crate::locks` stores it.
//!
//! Only portable SQL: `BIGINT`, `TEXT`, `BYTEA`, `TIMESTAMPTZ`, `ON CONFLICT`, no
//! extensions, no partitioning.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::super::{Error, Result};

/// Each entry moves the schema from version N to N + 1 (index N); never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    // 1: the event log.
    "CREATE TABLE logistis_events (
        id BIGINT PRIMARY KEY,
        seq BIGINT NOT NULL,
        cluster TEXT NOT NULL,
        grp TEXT NOT NULL,
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        username TEXT NOT NULL,
        operation TEXT NOT NULL,
        time_us BIGINT NOT NULL,
        dedupe BYTEA UNIQUE,
        summary BYTEA NOT NULL,
        objects BYTEA,
        bytes BIGINT NOT NULL
    );
    CREATE INDEX logistis_events_by_seq ON logistis_events (cluster, seq);
    CREATE INDEX logistis_events_by_object ON logistis_events (grp, kind, namespace, name, cluster, id);
    CREATE INDEX logistis_events_by_namespace ON logistis_events (namespace, id);
    CREATE INDEX logistis_events_by_kind ON logistis_events (kind, id);
    CREATE INDEX logistis_events_by_kind_ns ON logistis_events (namespace, kind, id);
    CREATE INDEX logistis_events_by_user ON logistis_events (username, id);
    CREATE TABLE logistis_log (id INT PRIMARY KEY, seq BIGINT NOT NULL, bytes BIGINT NOT NULL);
    INSERT INTO logistis_log (id, seq, bytes) VALUES (1, 0, 0);
    CREATE TABLE logistis_namespaces (
        cluster TEXT NOT NULL,
        namespace TEXT NOT NULL,
        events BIGINT NOT NULL,
        PRIMARY KEY (cluster, namespace)
    );
    CREATE TABLE logistis_trimmed (
        cluster TEXT NOT NULL,
        grp TEXT NOT NULL,
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        versions BIGINT NOT NULL,
        PRIMARY KEY (grp, kind, namespace, name, cluster)
    );
    CREATE TABLE logistis_cursors (name TEXT PRIMARY KEY, id BIGINT NOT NULL, seq BIGINT NOT NULL);",
    // 2: sink leases (several replicas, one delivers) and installation-wide settings (the
    // Secret hashing key, so every replica and cluster hashes a value the same way).
    "CREATE TABLE logistis_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE logistis_settings (name TEXT PRIMARY KEY, value BYTEA NOT NULL);",
    // 3: locks, per cluster (every replica of a cluster enforces the same set).
    "CREATE TABLE logistis_locks (
        cluster TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (cluster, namespace, name)
    );",
];

/// The schema version this build writes and reads.
pub const VERSION: usize = MIGRATIONS.len();

/// How long the migration lock is held at most (a migration that takes longer must renew).
const LOCK_TTL_SECONDS: i64 = 120;

/// Bring the schema to `target` (normally [`VERSION`]; tests stop earlier), under the lock.
pub async fn migrate(pool: &Pool, holder: &str, target: usize) -> Result<usize> {
    let client = pool.get().await?;
    // Two replicas creating the bookkeeping tables at once may collide on the catalog: the
    // loser sees an error and retries, then finds them.
    for attempt in 0.. {
        let created = client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS logistis_migration_lock (
                    id INT PRIMARY KEY, holder TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL);
                 CREATE TABLE IF NOT EXISTS logistis_schema (id INT PRIMARY KEY, version INT NOT NULL);",
            )
            .await;
        match created {
            Ok(()) => break,
            Err(_) if attempt < 5 => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(error) => return Err(error.into()),
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(LOCK_TTL_SECONDS as u64 * 2);
    loop {
        let taken = client
            .query_opt(
                "INSERT INTO logistis_migration_lock (id, holder, expires_at)
                 VALUES (1, $1, now() + $2::BIGINT * INTERVAL '1 second')
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE logistis_migration_lock.expires_at < now()
                    OR logistis_migration_lock.holder = excluded.holder
                 RETURNING holder",
                &[&holder, &LOCK_TTL_SECONDS],
            )
            .await?;
        if taken.is_some() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Migrate(
                "another replica holds the migration lock (logistis_migration_lock) and does not finish"
                    .into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let outcome = apply(&client, target).await;
    client
        .execute(
            "DELETE FROM logistis_migration_lock WHERE id = 1 AND holder = $1",
            &[&holder],
        )
        .await?;
    outcome
}

async fn apply(client: &deadpool_postgres::Client, target: usize) -> Result<usize> {
    let current: usize = client
        .query_opt("SELECT version FROM logistis_schema WHERE id = 1", &[])
        .await?
        .map(|row| row.get::<_, i32>(0))
        .map_or(0, |v| usize::try_from(v).unwrap_or(0));
    if current > VERSION {
        return Err(Error::Migrate(format!(
            "the database has schema version {current}, newer than this build's {VERSION}: upgrade Logistis"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        // Each migration and its version bump in one transaction: a crash leaves either.
        let applied = client
            .batch_execute(&format!(
                "BEGIN;
                 {sql}
                 INSERT INTO logistis_schema (id, version) VALUES (1, {version})
                   ON CONFLICT (id) DO UPDATE SET version = excluded.version;
                 COMMIT;"
            ))
            .await;
        if let Err(error) = applied {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(Error::Migrate(format!(
                "schema version {version}: {}",
                super::describe(&error)
            )));
        }
        tracing::info!(version, "database schema migrated");
    }
    Ok(current.max(target))
}
