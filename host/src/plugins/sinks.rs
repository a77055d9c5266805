//! Sink workers: one thread per sink, reading the durable log from the sink's own cursor
//! (`sink:<name>` in the store) and delivering batches, outside the admission path.
//!
//! At-least-once: the cursor is saved (durably) only after a batch was delivered, so a
//! crash or a failed delivery repeats the batch, never skips it. A failure is retried with
//! exponential back-off (0.2 s doubling to 60 s) until the sink takes it, so a receiver
//! that is down for an hour loses nothing and catches up in batches. A new sink starts at
//! the end of the log: it does not replay history it was never configured for.
//!
//! Several replicas on one database: each sink is delivered by one replica at a time, the
//! holder of its lease in the store (renewed every third of its lifetime); the others wait
//! and take over — from the saved cursor — within a lease lifetime of the holder's death.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use logistis_api::EventId;

use super::bindings::{self, sink::Sink};
use super::metrics::Metrics;
use super::runtime::{self, DisplayChain, Plugin};
use crate::store::Store;

const POLL: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
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
    let mut backoff = BACKOFF_MIN;
    tracing::info!(sink = name, "sink started");
    loop {
        if renewed.is_none_or(|at| at.elapsed() >= LEASE_RENEW) {
            match store.lease(&cursor_name, holder) {
                Ok(true) if renewed.is_none() => {
                    // Another replica may have delivered up to here: start from the cursor.
                    cursor = match store.cursor(&cursor_name) {
                        Ok(Some(cursor)) => Some(cursor),
                        Ok(None) => store.last_id(),
                        Err(error) => {
                            tracing::error!(sink = name, error = %DisplayChain(&error), "cannot read the sink cursor");
                            if pause(stopped, backoff) {
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
                    if pause(stopped, backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        let events = match store.read_log(cursor, plugin.spec.batch) {
            Ok(events) => events,
            Err(error) => {
                tracing::error!(sink = name, error = %DisplayChain(&error), "cannot read the log");
                if pause(stopped, backoff) {
                    return;
                }
                continue;
            }
        };
        let lag = lag_seconds(store.last_id(), cursor);
        metrics.sink_lag_seconds.get_or_create(&labels).set(lag);
        let Some(last) = events.last().map(|event| event.id) else {
            if pause(stopped, POLL) {
                return;
            }
            continue;
        };
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
                metrics
                    .sink_lag_seconds
                    .get_or_create(&labels)
                    .set(lag_seconds(store.last_id(), cursor));
                backoff = BACKOFF_MIN;
            }
            Some(message) => {
                metrics.sink_failures.get_or_create(&labels).inc();
                plugin.counters.set_error(&message);
                tracing::warn!(sink = name, error = message, retry_in = ?backoff, events = batch.len(), "sink delivery failed");
                if pause(stopped, backoff) {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        }
        if stopped.try_recv() != Err(crossbeam_channel::TryRecvError::Empty) {
            return;
        }
    }
}

/// The time span (seconds) between the cursor and the newest event: ids are microsecond
/// timestamps, so this needs no extra read.
pub fn lag_seconds(last: Option<EventId>, cursor: Option<EventId>) -> f64 {
    match (last, cursor) {
        (Some(last), Some(cursor)) if last > cursor => (last.0 - cursor.0) as f64 / 1e6,
        // No cursor yet: a new sink on an empty log, nothing missed.
        _ => 0.0,
    }
}
