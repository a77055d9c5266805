//! The writer task: group commit to the database, or to the local outbox while the database
//! is away.
//!
//! It waits for one append, takes whatever else is queued (up to [`MAX_GROUP`]), and commits
//! the group as one transaction: take the next log positions from the `log` row (its row
//! lock orders concurrent replicas, so positions follow commit order), one multi-row
//! `INSERT … ON CONFLICT DO NOTHING`, the namespace counters and stored bytes; then it
//! answers every request. A row the insert skipped is a duplicate (same request key, or
//! this very event already committed by an earlier attempt) or, rarely, an id another
//! replica took in the same microsecond: that one gets the next free id.
//!
//! When the database does not answer within the commit timeout (or refuses connections),
//! the group goes to the outbox (one fsync) and is answered at once; from then on every new
//! group goes there too, behind the waiting ones, so the order is kept. Between groups the
//! task drains the outbox oldest first, one transaction per chunk, retrying every second
//! while the database stays away.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logistis_api::EventId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::types::ToSql;

use super::super::outbox::{Outbox, Pending};
use super::super::{Appended, Durability, Error, Result};
use super::{Shared, db_id, event_id, text};
use crate::admission::NewEvent;

/// Events per group commit (and per drained chunk); 14 parameters each stays far below
/// the protocol's 65,535.
const MAX_GROUP: usize = 512;
/// While the database is away, try again this often.
const RETRY: Duration = Duration::from_secs(1);
/// Attempts of one transaction that lost a serialisation race or a deadlock.
const MAX_CONFLICT_RETRIES: usize = 8;

pub enum Command {
    Append(Box<NewEvent>, oneshot::Sender<Result<Appended>>),
    Shutdown,
}

/// An object whose versions grew: (cluster, group, kind, namespace, name).
pub type Touched = [String; 5];

/// A row of `logistis_events`, ready to insert.
struct Row {
    id: i64,
    cluster: String,
    group: String,
    kind: String,
    namespace: String,
    name: String,
    username: String,
    operation: String,
    time_us: i64,
    dedupe: Option<Vec<u8>>,
    summary: Vec<u8>,
    objects: Option<Vec<u8>>,
    bytes: i64,
}

impl Row {
    fn new(pending: &Pending) -> Row {
        let mut event = pending.event.clone();
        let objects = (event.object.is_some() || event.old_object.is_some()).then(|| {
            serde_json::to_vec(&serde_json::json!({
                "object": event.object.take(),
                "oldObject": event.old_object.take(),
            }))
            .expect("objects always serialise")
        });
        event.id = pending.id;
        let summary = serde_json::to_vec(&event).expect("an event always serialises");
        let r = &event.resource;
        let bytes = summary.len() + objects.as_ref().map_or(0, Vec::len);
        Row {
            id: db_id(pending.id),
            cluster: text(&event.cluster),
            group: text(&r.group),
            kind: text(&r.kind.to_ascii_lowercase()),
            namespace: text(&r.namespace),
            name: text(&r.name),
            username: text(&event.user.username),
            operation: event.operation.as_str().to_owned(),
            time_us: event.time.timestamp_micros(),
            dedupe: pending.dedupe.map(|key| key.to_vec()),
            summary,
            objects,
            bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        }
    }

    fn touched(&self) -> Touched {
        [
            self.cluster.clone(),
            self.group.clone(),
            self.kind.clone(),
            self.namespace.clone(),
            self.name.clone(),
        ]
    }
}

/// Why a commit did not happen.
enum Failure {
    /// The database is away or too slow: keep the events in the outbox and retry.
    Unavailable(String),
    /// The database refused these rows: retrying will not help.
    Rejected(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let unavailable = match &error {
            Error::Pool(_) => true,
            Error::Database(e) => is_unavailable(e),
            _ => false,
        };
        if unavailable {
            Failure::Unavailable(crate::telemetry::chain(&error).to_string())
        } else {
            Failure::Rejected(error)
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        Failure::from(Error::Database(error))
    }
}

/// A lost connection, a server shutting down or out of resources, or a transaction that
/// kept losing conflicts: the same rows may succeed later.
fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "40001"
                || code == "40P01"
        }
    }
}

fn is_conflict(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|c| c.code() == "40001" || c.code() == "40P01")
}

struct Writer {
    shared: Arc<Shared>,
    outbox: Outbox,
    retention: mpsc::UnboundedSender<Touched>,
    last_id: u64,
    /// While the database is away: the next attempt to drain.
    retry_at: Option<Instant>,
}

pub async fn run(
    shared: Arc<Shared>,
    outbox: Outbox,
    mut commands: mpsc::UnboundedReceiver<Command>,
    retention: mpsc::UnboundedSender<Touched>,
) {
    let mut writer = Writer {
        shared,
        outbox,
        retention,
        last_id: 0,
        retry_at: None,
    };
    if !writer.outbox.is_empty() {
        writer.shared.set_degraded(Some(
            "events from before the restart are in the outbox".into(),
        ));
    }
    loop {
        let first = if writer.outbox.is_empty() {
            commands.recv().await
        } else {
            let wake = writer.retry_at.unwrap_or_else(Instant::now);
            tokio::select! {
                command = commands.recv() => command,
                () = tokio::time::sleep_until(wake) => {
                    writer.drain().await;
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let mut group = Vec::new();
        let mut shutdown = false;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Append(event, reply) => group.push((event, reply)),
                Command::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if group.len() < MAX_GROUP {
                next = commands.try_recv().ok();
            }
        }
        if !group.is_empty() {
            writer.append_group(group).await;
        }
        if shutdown {
            break;
        }
        if !writer.outbox.is_empty() && writer.retry_at.is_none_or(|at| at <= Instant::now()) {
            writer.drain().await;
        }
    }
    // One last attempt, so a clean stop leaves as little as it can in the outbox; the rest
    // drains on the next start.
    if !writer.outbox.is_empty() {
        writer.retry_at = None;
        writer.drain().await;
    }
    tracing::debug!("database writer stopped");
}

impl Writer {
    fn next_id(&mut self) -> EventId {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.last_id = now.max(self.last_id + 1);
        EventId(self.last_id)
    }

    async fn append_group(
        &mut self,
        group: Vec<(Box<NewEvent>, oneshot::Sender<Result<Appended>>)>,
    ) {
        let mut in_group: HashMap<[u8; 32], EventId> = HashMap::new();
        let mut pending = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        for (event, reply) in group {
            let NewEvent { event, dedupe_key } = *event;
            if let Some(key) = dedupe_key
                && let Some(id) = in_group.get(&key)
            {
                let _ = reply.send(Ok(Appended::Duplicate(*id)));
                continue;
            }
            let id = self.next_id();
            if let Some(key) = dedupe_key {
                in_group.insert(key, id);
            }
            pending.push(Pending {
                id,
                dedupe: dedupe_key,
                event,
            });
            replies.push(reply);
        }
        if pending.is_empty() {
            return;
        }
        if self.shared.settings.durability == Durability::Discard {
            for (reply, p) in replies.into_iter().zip(&pending) {
                let _ = reply.send(Ok(Appended::Recorded(p.id)));
            }
            return;
        }
        if self.outbox.is_empty() && self.retry_at.is_none() {
            let rows: Vec<Row> = pending.iter().map(Row::new).collect();
            match self.commit(rows).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                    return;
                }
                Err(Failure::Unavailable(reason)) => {
                    self.went_away(reason);
                }
                Err(Failure::Rejected(error)) if pending.len() > 1 => {
                    // One bad row must not fail the group: commit them one by one.
                    tracing::warn!(error = %crate::telemetry::chain(&error), "the database refused a group: committing its events one by one");
                    for (reply, p) in replies.into_iter().zip(pending) {
                        let outcome = match self.commit(vec![Row::new(&p)]).await {
                            Ok(mut outcomes) => Ok(outcomes.remove(0)),
                            Err(Failure::Unavailable(reason)) => {
                                self.went_away(reason);
                                self.keep_in_outbox(std::slice::from_ref(&p))
                                    .map(|()| Appended::Recorded(p.id))
                            }
                            Err(Failure::Rejected(error)) => {
                                self.shared
                                    .stats
                                    .write_errors
                                    .fetch_add(1, Ordering::Relaxed);
                                Err(error)
                            }
                        };
                        let _ = reply.send(outcome);
                    }
                    return;
                }
                Err(Failure::Rejected(error)) => {
                    self.shared
                        .stats
                        .write_errors
                        .fetch_add(1, Ordering::Relaxed);
                    for reply in replies {
                        let _ = reply.send(Err(Error::Write(
                            crate::telemetry::chain(&error).to_string(),
                        )));
                    }
                    return;
                }
            }
        }
        // The database is away (or events wait before these): the outbox, in order.
        let stored = self.keep_in_outbox(&pending);
        for (reply, p) in replies.into_iter().zip(&pending) {
            let _ = reply.send(match &stored {
                Ok(()) => Ok(Appended::Recorded(p.id)),
                Err(Error::OutboxFull { bytes }) => Err(Error::OutboxFull { bytes: *bytes }),
                Err(error) => Err(Error::Write(format!(
                    "neither the database nor the outbox took it: {}",
                    crate::telemetry::chain(error)
                ))),
            });
        }
    }

    fn keep_in_outbox(&mut self, pending: &[Pending]) -> Result<()> {
        let stored = self.outbox.push(pending);
        if let Err(error) = &stored {
            self.shared
                .stats
                .write_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %crate::telemetry::chain(error), events = pending.len(), "cannot keep events in the outbox: not recorded");
        }
        stored
    }

    fn went_away(&mut self, reason: String) {
        self.shared.set_degraded(Some(reason));
        self.retry_at = Some(Instant::now() + RETRY);
    }

    /// Move the oldest outbox events to the database, one chunk.
    async fn drain(&mut self) {
        let chunk = match self.outbox.peek(MAX_GROUP) {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::error!(error = %crate::telemetry::chain(&error), "cannot read the outbox");
                self.retry_at = Some(Instant::now() + RETRY);
                return;
            }
        };
        if chunk.is_empty() {
            self.came_back();
            return;
        }
        let (keys, pending): (Vec<u64>, Vec<Pending>) = chunk.into_iter().unzip();
        let rows: Vec<Row> = pending.iter().map(Row::new).collect();
        let drained = match self.commit(rows).await {
            Ok(_) => true,
            Err(Failure::Unavailable(reason)) => {
                self.went_away(reason);
                false
            }
            Err(Failure::Rejected(error)) => {
                tracing::warn!(error = %crate::telemetry::chain(&error), "the database refused outbox events: draining them one by one");
                for p in &pending {
                    match self.commit(vec![Row::new(p)]).await {
                        Ok(_) => {}
                        Err(Failure::Unavailable(reason)) => {
                            self.went_away(reason);
                            return;
                        }
                        Err(Failure::Rejected(error)) => {
                            // Kept, it would stop every event behind it.
                            self.shared
                                .stats
                                .write_errors
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::error!(id = %p.id, error = %crate::telemetry::chain(&error), "the database refuses this event: dropped from the outbox");
                        }
                    }
                }
                true
            }
        };
        if drained {
            if let Err(error) = self.outbox.remove(&keys) {
                tracing::error!(error = %crate::telemetry::chain(&error), "cannot remove drained events from the outbox (they will be deduplicated)");
            }
            if self.outbox.is_empty() {
                self.came_back();
            }
        }
    }

    fn came_back(&mut self) {
        self.retry_at = None;
        self.shared.set_degraded(None);
    }

    /// Commit `rows` in one transaction, within the commit timeout.
    async fn commit(&mut self, rows: Vec<Row>) -> Result<Vec<Appended>, Failure> {
        let timeout = self.shared.pg.commit_timeout;
        let shared = self.shared.clone();
        let outcome = tokio::time::timeout(timeout, async {
            let mut attempt = 0;
            loop {
                match insert(&shared, &rows).await {
                    Err(Error::Database(e))
                        if is_conflict(&e) && attempt < MAX_CONFLICT_RETRIES =>
                    {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                    }
                    other => return other,
                }
            }
        })
        .await;
        self.shared
            .stats
            .write_batches
            .fetch_add(1, Ordering::Relaxed);
        match outcome {
            Err(_) => Err(Failure::Unavailable(format!(
                "no commit within {timeout:?}"
            ))),
            Ok(Err(error)) => Err(Failure::from(error)),
            Ok(Ok((outcomes, touched))) => {
                if let Some(last) = outcomes.iter().filter_map(recorded).max() {
                    self.last_id = self.last_id.max(last.0);
                }
                if self.shared.settings.max_versions_per_object > 0 {
                    for object in touched {
                        let _ = self.retention.send(object);
                    }
                }
                Ok(outcomes)
            }
        }
    }
}

fn recorded(outcome: &Appended) -> Option<EventId> {
    match outcome {
        Appended::Recorded(id) => Some(*id),
        Appended::Duplicate(_) => None,
    }
}

const COLUMNS: &str = "id, seq, cluster, grp, kind, namespace, name, username, operation, time_us, dedupe, summary, objects, bytes";
const PER_ROW: usize = 14;

/// One transaction: positions, rows, counters. Returns each row's outcome and the objects
/// that got a new version.
async fn insert(shared: &Shared, rows: &[Row]) -> Result<(Vec<Appended>, Vec<Touched>)> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let last_seq: i64 = tx
        .query_one(
            "UPDATE logistis_log SET seq = seq + $1 WHERE id = 1 RETURNING seq",
            &[&count],
        )
        .await?
        .get(0);
    let first_seq = last_seq - count + 1;
    let mut outcomes: Vec<Option<Appended>> = vec![None; rows.len()];
    let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut todo: Vec<usize> = (0..rows.len()).collect();
    // Rounds: the first inserts everything; later ones only rows whose id was taken.
    for _round in 0..8 {
        if todo.is_empty() {
            break;
        }
        let seqs: Vec<i64> = todo.iter().map(|&i| first_seq + i as i64).collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(todo.len() * PER_ROW);
        let mut values = Vec::with_capacity(todo.len());
        for (n, &i) in todo.iter().enumerate() {
            let r = &rows[i];
            let base = params.len();
            params.extend_from_slice(&[
                &ids[i] as &(dyn ToSql + Sync),
                &seqs[n],
                &r.cluster,
                &r.group,
                &r.kind,
                &r.namespace,
                &r.name,
                &r.username,
                &r.operation,
                &r.time_us,
                &r.dedupe,
                &r.summary,
                &r.objects,
                &r.bytes,
            ]);
            let placeholders: Vec<String> =
                (1..=PER_ROW).map(|k| format!("${}", base + k)).collect();
            values.push(format!("({})", placeholders.join(", ")));
        }
        let sql = format!(
            "INSERT INTO logistis_events ({COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
            values.join(", ")
        );
        let inserted: std::collections::HashSet<i64> = tx
            .query(&sql, &params)
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut again = Vec::new();
        for &i in &todo {
            if inserted.contains(&ids[i]) {
                outcomes[i] = Some(Appended::Recorded(event_id(ids[i])));
                continue;
            }
            let r = &rows[i];
            if let Some(key) = &r.dedupe
                && let Some(row) = tx
                    .query_opt("SELECT id FROM logistis_events WHERE dedupe = $1", &[key])
                    .await?
            {
                outcomes[i] = Some(Appended::Duplicate(event_id(row.get(0))));
                continue;
            }
            let same = tx
                .query_opt(
                    "SELECT summary FROM logistis_events WHERE id = $1",
                    &[&ids[i]],
                )
                .await?
                .is_some_and(|row| row.get::<_, &[u8]>(0) == r.summary.as_slice());
            if same {
                // This very event, committed by an attempt that timed out.
                outcomes[i] = Some(Appended::Duplicate(event_id(ids[i])));
            } else {
                // Another replica's event in the same microsecond: the next id.
                ids[i] += 1;
                again.push(i);
            }
        }
        todo = again;
    }
    if !todo.is_empty() {
        return Err(Error::Write("no free event id after 8 tries".into()));
    }
    let mut bytes = 0i64;
    let mut namespaces: HashMap<(&str, &str), i64> = HashMap::new();
    let mut touched = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        if let Some(Appended::Recorded(_)) = outcome {
            let r = &rows[i];
            bytes += r.bytes;
            *namespaces.entry((&r.cluster, &r.namespace)).or_default() += 1;
            touched.push(r.touched());
        }
    }
    if !namespaces.is_empty() {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let mut values = Vec::new();
        let entries: Vec<(&&str, &&str, &i64)> =
            namespaces.iter().map(|((c, n), v)| (c, n, v)).collect();
        for (cluster, namespace, events) in &entries {
            let base = params.len();
            params.push(*cluster);
            params.push(*namespace);
            params.push(*events);
            values.push(format!("(${}, ${}, ${})", base + 1, base + 2, base + 3));
        }
        tx.execute(
            &format!(
                "INSERT INTO logistis_namespaces (cluster, namespace, events) VALUES {}
                 ON CONFLICT (cluster, namespace) DO UPDATE
                 SET events = logistis_namespaces.events + excluded.events",
                values.join(", ")
            ),
            &params,
        )
        .await?;
        tx.execute(
            "UPDATE logistis_log SET bytes = bytes + $1 WHERE id = 1",
            &[&bytes],
        )
        .await?;
    }
    tx.commit().await?;
    shared
        .stored_bytes
        .fetch_add(u64::try_from(bytes).unwrap_or(0), Ordering::Relaxed);
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.expect("every row has an outcome"))
        .collect();
    Ok((outcomes, touched))
}
