//! Sink workers: one thread per sink, reading the durable log from the sink's own cursor
//! (`sink:<name>` in the store) and delivering batches, outside the admission path.
//!
//! At-least-once: the cursor is saved (durably) only after a batch was delivered, so a
//! crash or a failed delivery repeats the batch, never skips it. A failure is retried with
//! back-off (0.2 s doubling, capped at [`PROBE_INTERVAL`]) until the sink takes it: while the
//! receiver is down each retry is a probe carrying only the first pending event, so a
//! receiver down for an hour costs a small request every few seconds, and delivery resumes
//! within [`PROBE_INTERVAL`] of its return, then catches up in full batches. A new sink
//! starts at the end of the log: it does not replay history it was never configured for.
//!
//! Several replicas on one database: each sink is delivered by one replica at a time, the
//! holder of its lease in the store (renewed every third of its lifetime); the others wait
//! and take over — from the saved cursor — within a lease lifetime of the holder's death.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use logistis_api::{Event, EventId, Status};

use super::bindings::{self, sink::Sink};
use super::metrics::Metrics;
use super::runtime::{self, DisplayChain, Plugin};
use super::spec::Deliver;
use crate::store::Store;

const POLL: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// `deliver: confirmed` waits this long at most for a pending event (the watch may be
/// away): then it is delivered as it is, rather than stalling the sink.
const MAX_HOLD: chrono::TimeDelta = chrono::TimeDelta::seconds(300);

/// What of `events` (in log order) a sink may receive now: with [`Deliver::Confirmed`],
/// everything up to the first event still pending (younger than [`MAX_HOLD`]), phantoms
/// left out. Attempts a lock denied are never delivered: the WIT `event` record cannot say
/// that the change did not happen, so a sink would report it as made. Returns the events
/// to deliver and the id of the last one consumed (delivered or skipped), to move the
/// cursor to; `None` when the first event must wait.
pub fn settled(
    events: Vec<Event>,
    deliver: Deliver,
    now: chrono::DateTime<chrono::Utc>,
) -> (Vec<Event>, Option<EventId>) {
    let mut out = Vec::with_capacity(events.len());
    let mut last = None;
    for event in events {
        let skipped = event.denied.is_some()
            || (deliver == Deliver::Confirmed && event.status == Some(Status::Phantom));
        if deliver == Deliver::Confirmed
            && event.status == Some(Status::Pending)
            && now - event.time < MAX_HOLD
        {
            break;
        }
        last = Some(event.id);
        if !skipped {
            out.push(event);
        }
    }
    (out, last)
}

/// The longest wait between two attempts while a receiver is failing.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(3);

/// When to try again after failures: doubling from [`BACKOFF_MIN`], capped at
/// [`PROBE_INTERVAL`], reset by a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff { failures: 0 }
    }

    /// Record a failure; how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        let wait = BACKOFF_MIN
            .saturating_mul(1 << self.failures.min(16))
            .min(PROBE_INTERVAL);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// A delivery went through.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Whether the receiver is failing: the next attempt is a probe of one event.
    pub fn probing(&self) -> bool {
        self.failures > 0
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// How often a replica without the lease asks for it again.
const LEASE_POLL: Duration = Duration::from_millis(500);
/// Renew the lease when it was last renewed this long ago (a third of its lifetime).
const LEASE_RENEW: Duration = Duration::from_millis(1_500);

/// A running sink; dropping the stop sender ends it after the current batch.
#[derive(Debug)]
pub struct Worker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn start(
        plugin: Arc<Plugin<Sink>>,
        store: Store,
        metrics: Metrics,
    ) -> std::io::Result<Worker> {
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let thread = std::thread::Builder::new()
            .name(format!("sink-{}", plugin.spec.name))
            .spawn(move || run(&plugin, &store, &metrics, &stopped))?;
        Ok(Worker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stop and wait for the current batch to finish (its cursor is saved).
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The cursor name of a sink in the store.
pub fn cursor_name(sink: &str) -> String {
    format!("sink:{sink}")
}

/// Wait `duration` unless told to stop; true = stop.
fn pause(stopped: &Receiver<()>, duration: Duration) -> bool {
    !matches!(
        stopped.recv_timeout(duration),
        Err(RecvTimeoutError::Timeout)
    )
}

fn run(plugin: &Plugin<Sink>, store: &Store, metrics: &Metrics, stopped: &Receiver<()>) {
    deliver(plugin, store, metrics, stopped);
    // Stopping (a reload or shutdown): another replica may take over at once.
    store.release_lease(
        &cursor_name(&plugin.spec.name),
        crate::store::replica_name(),
    );
}

fn deliver(plugin: &Plugin<Sink>, store: &Store, metrics: &Metrics, stopped: &Receiver<()>) {
    let name = plugin.spec.name.as_str();
    let cursor_name = cursor_name(name);
    let labels = Metrics::plugin(name);
    let holder = crate::store::replica_name();
    let mut cursor = None;
    let mut renewed: Option<Instant> = None;
    let mut backoff = Backoff::new();
    tracing::info!(sink = name, "sink started");
    loop {
        if renewed.is_none_or(|at| at.elapsed() >= LEASE_RENEW) {
            match store.lease(&cursor_name, holder) {
                Ok(true) if renewed.is_none() => {
                    // Another replica may have delivered up to here: start from the cursor.
                    cursor = match start_cursor(store, &cursor_name) {
                        Ok(cursor) => cursor,
                        Err(error) => {
                            tracing::error!(sink = name, error = %DisplayChain(&error), "cannot read the sink cursor");
                            if pause(stopped, backoff.failed()) {
                                return;
                            }
                            continue;
                        }
                    };
                    tracing::info!(sink = name, cursor = ?cursor.map(|c| c.to_string()), "delivering (this replica holds the sink's lease)");
                    renewed = Some(Instant::now());
                }
                Ok(true) => renewed = Some(Instant::now()),
                Ok(false) => {
                    if renewed.take().is_some() {
                        tracing::warn!(sink = name, "another replica took the sink's lease");
                    }
                    if pause(stopped, LEASE_POLL) {
                        return;
                    }
                    continue;
                }
                Err(error) => {
                    tracing::error!(sink = name, error = %DisplayChain(&error), "cannot take the sink's lease");
                    renewed = None;
                    if pause(stopped, backoff.failed()) {
                        return;
                    }
                    continue;
                }
            }
        }
        let size = if backoff.probing() {
            1
        } else {
            plugin.spec.batch
        };
        let events = match store.read_log(cursor, size) {
            Ok(events) => events,
            Err(error) => {
                tracing::error!(sink = name, error = %DisplayChain(&error), "cannot read the log");
                if pause(stopped, backoff.failed()) {
                    return;
                }
                continue;
            }
        };
        let (events, consumed) = settled(events, plugin.spec.deliver, chrono::Utc::now());
        let Some(last) = consumed else {
            if pause(stopped, POLL) {
                return;
            }
            continue;
        };
        if events.is_empty() {
            // Only phantoms: nothing to deliver, move past them.
            match store.save_cursor(&cursor_name, last) {
                Ok(()) => cursor = Some(last),
                Err(error) => {
                    tracing::error!(sink = name, error = %DisplayChain(&error), "cannot save the sink cursor");
                    if pause(stopped, backoff.failed()) {
                        return;
                    }
                }
            }
            continue;
        }
        let batch: Vec<_> = events
            .iter()
            .map(|e| bindings::to_wit(e, Some(e.id.to_string())))
            .collect();
        let started = Instant::now();
        let outcome = runtime::deliver(plugin, &batch);
        metrics
            .call_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(error) => {
                metrics
                    .failures
                    .get_or_create(&super::metrics::FailureLabels {
                        plugin: name.to_owned(),
                        reason: error.reason(),
                    })
                    .inc();
                Some(format!("{}", DisplayChain(&error)))
            }
        };
        match failure {
            None => {
                if let Err(error) = store.save_cursor(&cursor_name, last) {
                    // Delivered but not recorded: the batch will be delivered again.
                    tracing::error!(sink = name, error = %DisplayChain(&error), "cannot save the sink cursor");
                } else {
                    cursor = Some(last);
                }
                plugin.counters.clear_error();
                plugin
                    .counters
                    .delivered
                    .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                metrics
                    .sink_delivered
                    .get_or_create(&labels)
                    .inc_by(batch.len() as u64);
                metrics
                    .calls
                    .get_or_create(&super::metrics::ResultLabels {
                        plugin: name.to_owned(),
                        result: "delivered",
                    })
                    .inc();
                if backoff.probing() {
                    tracing::info!(sink = name, "sink delivering again");
                }
                backoff.succeeded();
            }
            Some(message) => {
                metrics.sink_failures.get_or_create(&labels).inc();
                plugin.counters.set_error(&message);
                let wait = backoff.failed();
                // One line per failure, at most one per probe interval once it is failing.
                tracing::warn!(sink = name, error = message, retry_in = ?wait, events = batch.len(), "sink delivery failed");
                if pause(stopped, wait) {
                    return;
                }
                continue;
            }
        }
        if stopped.try_recv() != Err(crossbeam_channel::TryRecvError::Empty) {
            return;
        }
    }
}

/// Where a sink (re)starts: its saved cursor, or the head of the log for a new sink — saved
/// at once, since the lag is measured from the saved cursor and a restart before the first
/// delivery must not skip events.
fn start_cursor(store: &Store, cursor_name: &str) -> crate::store::Result<Option<EventId>> {
    if let Some(cursor) = store.cursor(cursor_name)? {
        return Ok(Some(cursor));
    }
    let head = store.last_id();
    if let Some(head) = head {
        store.save_cursor(cursor_name, head)?;
    }
    Ok(head)
}

/// How long the oldest event the sink has not delivered (the first after its cursor) has
/// been waiting, at `now` (microseconds since the epoch, as event ids are); 0 when the sink
/// is at the head of the log. Ids are times, so only the next id is read.
pub fn lag_seconds(store: &Store, cursor: Option<EventId>, now_micros: u64) -> f64 {
    if store.last_id().is_none_or(|last| Some(last) <= cursor) {
        return 0.0;
    }
    match store.read_log(cursor, 1) {
        Ok(events) => events.first().map_or(0.0, |next| {
            now_micros.saturating_sub(next.id.0) as f64 / 1e6
        }),
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_at_the_probe_interval_and_reset_by_a_success() {
        let mut backoff = Backoff::new();
        assert!(!backoff.probing());
        let waits: Vec<Duration> = (0..40).map(|_| backoff.failed()).collect();
        assert_eq!(waits[0], BACKOFF_MIN);
        assert_eq!(waits[1], BACKOFF_MIN * 2);
        assert!(
            waits.iter().all(|wait| *wait <= PROBE_INTERVAL),
            "{waits:?}"
        );
        assert_eq!(waits[39], PROBE_INTERVAL);
        assert!(backoff.probing());
        backoff.succeeded();
        assert!(!backoff.probing());
        assert_eq!(backoff.failed(), BACKOFF_MIN);
    }
}

#[cfg(test)]
mod deliver_tests {
    use chrono::{TimeDelta, Utc};

    use super::*;

    fn event(id: u64, status: Option<Status>, age_seconds: i64) -> Event {
        let mut event: Event = serde_json::from_value(serde_json::json!({
            "id": format!("{id:016x}"), "uid": "u", "time": "2026-01-01T00:00:00Z",
            "operation": "UPDATE", "user": {}, "resource": {}}))
        .unwrap();
        event.time = Utc::now() - TimeDelta::seconds(age_seconds);
        event.status = status;
        event
    }

    #[test]
    fn attempts_a_lock_denied_are_never_delivered() {
        let mut log: Vec<Event> = (1..=3).map(|id| event(id, None, 0)).collect();
        log[1].denied = Some(logistis_api::lock::Denial::default());
        for deliver in [Deliver::Recorded, Deliver::Confirmed] {
            let (out, last) = settled(log.clone(), deliver, Utc::now());
            assert_eq!(ids(&out), [1, 3], "{deliver:?}");
            assert_eq!(last, Some(EventId(3)), "{deliver:?}");
        }
        let (out, last) = settled(log[1..2].to_vec(), Deliver::Recorded, Utc::now());
        assert!(out.is_empty());
        assert_eq!(last, Some(EventId(2)), "the cursor moves past it");
    }

    fn ids(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.id.0).collect()
    }

    #[test]
    fn confirmed_delivery_waits_for_pending_and_skips_phantoms() {
        let log = vec![
            event(1, Some(Status::Confirmed), 9),
            event(2, Some(Status::Phantom), 8),
            event(3, None, 7),
            event(4, Some(Status::Pending), 1),
            event(5, Some(Status::Observed), 0),
        ];
        let (out, last) = settled(log.clone(), Deliver::Confirmed, Utc::now());
        assert_eq!(ids(&out), [1, 3]);
        assert_eq!(last, Some(EventId(3)));
        let (out, last) = settled(log[3..].to_vec(), Deliver::Confirmed, Utc::now());
        assert!(out.is_empty());
        assert_eq!(last, None, "the sink waits for the pending event");
        let (out, last) = settled(log[1..2].to_vec(), Deliver::Confirmed, Utc::now());
        assert!(out.is_empty());
        assert_eq!(last, Some(EventId(2)), "a phantom is passed over");
        // Pending for too long (the watch is away): delivered rather than stalling.
        let stale = vec![event(6, Some(Status::Pending), 400)];
        assert_eq!(ids(&settled(stale, Deliver::Confirmed, Utc::now()).0), [6]);
        let (out, _) = settled(log, Deliver::Recorded, Utc::now());
        assert_eq!(ids(&out), [1, 2, 3, 4, 5]);
    }
}
