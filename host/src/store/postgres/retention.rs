//! Retention in the database, never one giant DELETE: every removal is a transaction of at
//! most [`CHUNK`] rows chosen by an indexed sub-select, and updates the counters the rows
//! carried (namespaces, trimmed versions, stored bytes) in the same transaction.
//!
//! - Versions per object: the writer reports each object that got a version; this task
//!   counts an object's versions once (an index-only count) and then adds this replica's
//!   appends. Other replicas' appends are not counted, so the count is a lower bound and a
//!   trim may come a little late — never early: the delete itself keeps the newest N by
//!   `ORDER BY id DESC OFFSET N`, whatever the count said.
//! - Age: this cluster's events older than `--retention`, oldest first, in chunks.
//! - Size: while the events of the whole database take more than `--max-store-size`
//!   (their stored bytes, kept in the `log` row), the oldest go, of every cluster.
//!
//! Age by time partitions was considered: it makes expiry a `DROP`, but declarative
//! partitioning is PostgreSQL-only (CockroachDB and YugabyteDB partition differently) and
//! every per-object trim would still be a row delete; batched deletes serve both.
//! Each transaction first locks the `log` row, as the writer does, so the two never wait
//! on each other in opposite orders.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use super::super::Result;
use super::Shared;
use super::writer::Touched;

/// Rows per delete transaction.
const CHUNK: i64 = 1_000;
/// Chunks per sweep, so a huge backlog is worked off over several sweeps.
const MAX_CHUNKS_PER_SWEEP: usize = 50;
/// Objects whose count is remembered; past this the memory is cleared.
const MAX_COUNTED_OBJECTS: usize = 200_000;
/// After the first report of a round, wait this long for more.
const ROUND_WINDOW: Duration = Duration::from_millis(50);

pub async fn run(shared: Arc<Shared>, mut touched: mpsc::UnboundedReceiver<Touched>) {
    let interval = shared.settings.retention_interval;
    let mut counts: HashMap<Touched, u64> = HashMap::new();
    let mut next_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            first = touched.recv() => {
                let Some(first) = first else { break };
                tokio::time::sleep(ROUND_WINDOW.min(interval)).await;
                let mut round: HashMap<Touched, u64> = HashMap::new();
                *round.entry(first).or_default() += 1;
                while let Ok(object) = touched.try_recv() {
                    *round.entry(object).or_default() += 1;
                }
                for (object, added) in round {
                    if let Err(error) = versions(&shared, &mut counts, object, added).await {
                        tracing::warn!(error = %crate::telemetry::chain(&error), "trimming an object's versions failed");
                    }
                }
            }
            () = tokio::time::sleep_until(next_sweep) => {
                match sweep_age(&shared).await {
                    Ok(0) => {}
                    Ok(_) => counts.clear(),
                    Err(error) => {
                        counts.clear();
                        tracing::warn!(error = %crate::telemetry::chain(&error), "removing expired events failed");
                    }
                }
                match sweep_size(&shared).await {
                    Ok(0) => {}
                    Ok(_) => counts.clear(),
                    Err(error) => {
                        counts.clear();
                        tracing::warn!(error = %crate::telemetry::chain(&error), "enforcing the store size limit failed");
                    }
                }
                next_sweep = tokio::time::Instant::now() + interval;
            }
        }
    }
}

const OBJECT: &str = "grp = $1 AND kind = $2 AND namespace = $3 AND name = $4 AND cluster = $5";

async fn versions(
    shared: &Shared,
    counts: &mut HashMap<Touched, u64>,
    object: Touched,
    added: u64,
) -> Result<()> {
    let keep = u64::from(shared.settings.max_versions_per_object);
    if keep == 0 {
        return Ok(());
    }
    let [cluster, group, kind, namespace, name] = &object;
    let key: [&(dyn ToSql + Sync); 5] = [group, kind, namespace, name, cluster];
    let count = match counts.get_mut(&object) {
        Some(count) => {
            *count += added;
            *count
        }
        None => {
            if counts.len() >= MAX_COUNTED_OBJECTS {
                counts.clear();
            }
            let client = shared.pool.get().await?;
            let live: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM logistis_events WHERE {OBJECT}"),
                    &key,
                )
                .await?
                .get(0);
            let live = u64::try_from(live).unwrap_or(0);
            counts.insert(object.clone(), live);
            live
        }
    };
    // Trim back to the limit once past it by 10 %: deletes come in groups.
    if count < keep + (keep / 10).max(1) {
        return Ok(());
    }
    let keep_param = i64::try_from(keep).unwrap_or(i64::MAX);
    let mut params: Vec<&(dyn ToSql + Sync)> = key.to_vec();
    params.push(&keep_param);
    delete(
        shared,
        &format!(
            "SELECT id FROM logistis_events WHERE {OBJECT} ORDER BY id DESC OFFSET $6 LIMIT {CHUNK}"
        ),
        &params,
    )
    .await?;
    counts.insert(object, keep);
    Ok(())
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

async fn sweep_age(shared: &Shared) -> Result<u64> {
    let Some(retention) = shared.settings.retention else {
        return Ok(0);
    };
    let cutoff =
        now_micros().saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX));
    let mut removed = 0;
    for _ in 0..MAX_CHUNKS_PER_SWEEP {
        let n = delete(
            shared,
            &format!(
                "SELECT id FROM logistis_events WHERE cluster = $1 AND id < $2 ORDER BY id LIMIT {CHUNK}"
            ),
            &[&shared.cluster, &cutoff],
        )
        .await?;
        removed += n;
        if n < CHUNK as u64 {
            break;
        }
    }
    Ok(removed)
}

async fn sweep_size(shared: &Shared) -> Result<u64> {
    let client = shared.pool.get().await?;
    let bytes: i64 = client
        .query_one("SELECT bytes FROM logistis_log WHERE id = 1", &[])
        .await?
        .get(0);
    drop(client);
    shared
        .stored_bytes
        .store(u64::try_from(bytes).unwrap_or(0), Ordering::Relaxed);
    let Some(max) = shared.settings.max_size_bytes else {
        return Ok(0);
    };
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let mut removed = 0;
    let mut size = bytes;
    for _ in 0..MAX_CHUNKS_PER_SWEEP {
        if size <= max {
            break;
        }
        tracing::info!(
            size,
            max,
            "database over its size limit: removing the oldest events"
        );
        // The oldest rows whose sizes cover the excess (at most CHUNK of them).
        let n = delete(
            shared,
            &format!(
                "SELECT id FROM (
                   SELECT id, (sum(bytes) OVER (ORDER BY id) - bytes)::BIGINT AS older
                   FROM (SELECT id, bytes FROM logistis_events ORDER BY id LIMIT {CHUNK}) AS oldest
                 ) AS sized WHERE older < $1"
            ),
            &[&(size - max)],
        )
        .await?;
        removed += n;
        if n == 0 {
            break;
        }
        let client = shared.pool.get().await?;
        size = client
            .query_one("SELECT bytes FROM logistis_log WHERE id = 1", &[])
            .await?
            .get(0);
        shared
            .stored_bytes
            .store(u64::try_from(size).unwrap_or(0), Ordering::Relaxed);
    }
    Ok(removed)
}

/// Delete the rows whose ids `select` picks (at most [`CHUNK`]), and what they counted.
async fn delete(shared: &Shared, select: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    tx.query_one(
        "SELECT bytes FROM logistis_log WHERE id = 1 FOR UPDATE",
        &[],
    )
    .await?;
    let rows = tx
        .query(
            &format!(
                "DELETE FROM logistis_events WHERE id IN ({select})
                 RETURNING cluster, grp, kind, namespace, name, bytes"
            ),
            params,
        )
        .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let mut bytes = 0i64;
    let mut namespaces: HashMap<(String, String), i64> = HashMap::new();
    let mut objects: HashMap<[String; 5], i64> = HashMap::new();
    for row in &rows {
        let cluster: String = row.get(0);
        let namespace: String = row.get(3);
        bytes += row.get::<_, i64>(5);
        *namespaces
            .entry((cluster.clone(), namespace.clone()))
            .or_default() += 1;
        *objects
            .entry([cluster, row.get(1), row.get(2), namespace, row.get(4)])
            .or_default() += 1;
    }
    for ((cluster, namespace), count) in &namespaces {
        tx.execute(
            "UPDATE logistis_namespaces SET events = events - $3 WHERE cluster = $1 AND namespace = $2",
            &[cluster, namespace, count],
        )
        .await?;
    }
    tx.execute("DELETE FROM logistis_namespaces WHERE events <= 0", &[])
        .await?;
    for ([cluster, group, kind, namespace, name], count) in &objects {
        tx.execute(
            "INSERT INTO logistis_trimmed (cluster, grp, kind, namespace, name, versions)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (grp, kind, namespace, name, cluster)
             DO UPDATE SET versions = logistis_trimmed.versions + excluded.versions",
            &[cluster, group, kind, namespace, name, count],
        )
        .await?;
    }
    tx.execute(
        "UPDATE logistis_log SET bytes = bytes - $1 WHERE id = 1",
        &[&bytes],
    )
    .await?;
    tx.commit().await?;
    let removed = rows.len() as u64;
    shared
        .stats
        .events_removed_by_retention
        .fetch_add(removed, Ordering::Relaxed);
    let freed = u64::try_from(bytes).unwrap_or(0);
    let _ = shared
        .stored_bytes
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            Some(held.saturating_sub(freed))
        });
    Ok(removed)
}
