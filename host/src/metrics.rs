//! Prometheus metrics (`GET /metrics`). Latency histograms are in seconds, as Prometheus
//! conventions ask, with buckets from 25 µs so the sub-millisecond admission path is visible.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::Store;

/// What happened to one admission review.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ReviewOutcome {
    Recorded,
    Deduplicated,
    DryRun,
    Noise,
    SkippedByPlugin,
    StoreError,
    /// Past a limit on what is stored ([`crate::admission::limits`]): not stored.
    OverLimits,
    AnswerOnly,
    BadRequest,
    /// A lock denied the request (`allowed: false`); the attempt is recorded.
    DeniedByLock,
}

impl ReviewOutcome {
    const ALL: [ReviewOutcome; 10] = [
        ReviewOutcome::Recorded,
        ReviewOutcome::Deduplicated,
        ReviewOutcome::DryRun,
        ReviewOutcome::Noise,
        ReviewOutcome::SkippedByPlugin,
        ReviewOutcome::StoreError,
        ReviewOutcome::OverLimits,
        ReviewOutcome::AnswerOnly,
        ReviewOutcome::BadRequest,
        ReviewOutcome::DeniedByLock,
    ];

    fn label(self) -> &'static str {
        match self {
            ReviewOutcome::Recorded => "recorded",
            ReviewOutcome::Deduplicated => "deduplicated",
            ReviewOutcome::DryRun => "dry_run",
            ReviewOutcome::Noise => "noise",
            ReviewOutcome::SkippedByPlugin => "skipped_by_plugin",
            ReviewOutcome::StoreError => "store_error",
            ReviewOutcome::OverLimits => "over_limits",
            ReviewOutcome::AnswerOnly => "answer_only",
            ReviewOutcome::BadRequest => "bad_request",
            ReviewOutcome::DeniedByLock => "denied_by_lock",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    status: u16,
}

/// Latency buckets in seconds: 25 µs … 2.5 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
        250e-3, 1.0, 2.5,
    ]
    .into_iter()
}

/// Every metric of the server. Plugin metrics are registered by the plugin host.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    admission_duration: Histogram,
    reviews: Family<OutcomeLabels, Counter>,
    query_duration: Family<RouteLabels, Histogram>,
    store_size: Gauge,
    retention_removed: Counter,
    write_batches: Counter,
    write_errors: Counter,
    webhook_client_refused: Family<ReasonLabels, Counter>,
    volume_free: Gauge,
    accepting_writes: Gauge,
    memtable_bytes: Gauge,
    sealed_memtables: Gauge,
    level0_tables: Gauge,
    write_state_changes: Counter,
    rejected_events: Counter,
    outbox: OutboxGauges,
}

/// The local outbox of a database-backed store (all zero for the embedded store).
#[derive(Debug, Default)]
struct OutboxGauges {
    events: Gauge,
    bytes: Gauge,
    oldest_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    degraded: Gauge,
}

impl OutboxGauges {
    fn register(registry: &mut Registry) -> OutboxGauges {
        let gauges = OutboxGauges::default();
        registry.register(
            "store_outbox_events",
            "Events acknowledged and waiting in the local outbox for the database",
            gauges.events.clone(),
        );
        registry.register(
            "store_outbox_bytes",
            "Bytes of the events waiting in the local outbox",
            gauges.bytes.clone(),
        );
        registry.register(
            "store_outbox_oldest_seconds",
            "Age of the oldest event waiting in the local outbox",
            gauges.oldest_seconds.clone(),
        );
        registry.register(
            "store_degraded",
            "1 while writes go to the local outbox because the database is away",
            gauges.degraded.clone(),
        );
        gauges
    }

    fn set(&self, status: &crate::store::StoreStatus) {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.events.set(int(status.outbox_events));
        self.bytes.set(int(status.outbox_bytes));
        self.oldest_seconds.set(status.outbox_oldest_seconds);
        self.degraded.set(i64::from(status.degraded));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("logistis");
        let admission_duration = Histogram::new(latency_buckets());
        registry.register(
            "admission_request_duration_seconds",
            "Time from receiving an AdmissionReview to answering it (durable in sync mode)",
            admission_duration.clone(),
        );
        let reviews = Family::<OutcomeLabels, Counter>::default();
        // Every outcome's series exists from the start, at zero (see `initialize` of the
        // plugin metrics for why).
        for outcome in ReviewOutcome::ALL {
            let _ = reviews.get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            });
        }
        registry.register(
            "admission_reviews",
            "AdmissionReviews by outcome: recorded, deduplicated, dry_run, noise, skipped_by_plugin, store_error, bad_request, denied_by_lock",
            reviews.clone(),
        );
        let query_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "query_request_duration_seconds",
            "Query API latency by route and status",
            query_duration.clone(),
        );
        let store_size = Gauge::default();
        registry.register(
            "store_size_bytes",
            "Bytes the embedded store's files take on disk (allocated blocks; with a database: the stored size of its events)",
            store_size.clone(),
        );
        let retention_removed = Counter::default();
        registry.register(
            "store_retention_removed_events",
            "Events removed by retention (versions per object, age, size)",
            retention_removed.clone(),
        );
        let write_batches = Counter::default();
        registry.register(
            "store_write_batches",
            "Group commits of the store writer",
            write_batches.clone(),
        );
        let write_errors = Counter::default();
        registry.register(
            "store_write_errors",
            "Failed group commits",
            write_errors.clone(),
        );
        let webhook_client_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "webhook_client_refused",
            "Reviews refused (never recorded) because the client certificate was missing, untrusted or not an allowed name (--webhook-client-ca)",
            webhook_client_refused.clone(),
        );
        let volume_free = Gauge::default();
        registry.register(
            "store_volume_free_bytes",
            "Free bytes of the volume holding the store (as df's Avail)",
            volume_free.clone(),
        );
        let accepting_writes = Gauge::default();
        registry.register(
            "store_accepting_writes",
            "1 while the store's writes succeed, 0 from a failed write (a full disk) until one succeeds again",
            accepting_writes.clone(),
        );
        let write_state_changes = Counter::default();
        registry.register(
            "store_write_state_changes",
            "Changes between accepting and refusing writes",
            write_state_changes.clone(),
        );
        let rejected_events = Counter::default();
        registry.register(
            "store_rejected_events",
            "Events the store refused alone (a key over the engine's limit, a failure while encoding it); answered allowed, not recorded",
            rejected_events.clone(),
        );
        let memtable_bytes = Gauge::default();
        registry.register(
            "store_memtable_bytes",
            "Bytes of the embedded store's memtables, active and sealed, as fjall counts them (keys and values, not the skiplist's nodes)",
            memtable_bytes.clone(),
        );
        let sealed_memtables = Gauge::default();
        registry.register(
            "store_sealed_memtables",
            "Memtables of the embedded store waiting to be flushed, all keyspaces (at 4 in one keyspace fjall stalls writes)",
            sealed_memtables.clone(),
        );
        let level0_tables = Gauge::default();
        registry.register(
            "store_level0_tables",
            "Tables in level 0 of the embedded store waiting for compaction, all keyspaces (at 20 in one keyspace fjall slows writes)",
            level0_tables.clone(),
        );
        let outbox = OutboxGauges::register(&mut registry);
        Metrics {
            memtable_bytes,
            sealed_memtables,
            level0_tables,
            webhook_client_refused,
            volume_free,
            accepting_writes,
            write_state_changes,
            rejected_events,
            outbox,
            registry,
            admission_duration,
            reviews,
            query_duration,
            store_size,
            retention_removed,
            write_batches,
            write_errors,
        }
    }

    /// For other parts (plugins) to add their metrics before serving starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn observe_admission(&self, seconds: f64, outcome: ReviewOutcome) {
        self.admission_duration.observe(seconds);
        self.reviews
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// A review refused by client authentication: `missing`, `untrusted` or `name`.
    pub fn webhook_client_refused(&self, reason: &'static str) {
        self.webhook_client_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn observe_query(&self, route: &str, status: u16, seconds: f64) {
        self.query_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                status,
            })
            .observe(seconds);
    }

    /// The Prometheus text exposition, with store figures read now.
    pub fn render(&self, store: &Store) -> String {
        self.store_size
            .set(i64::try_from(store.disk_space()).unwrap_or(i64::MAX));
        if let Some(free) = store.volume_free_bytes() {
            self.volume_free
                .set(i64::try_from(free).unwrap_or(i64::MAX));
        }
        let health = store.health();
        self.accepting_writes
            .set(i64::from(health.accepts_writes()));
        self.outbox.set(&store.store_status());
        if let Some(backlog) = store.write_backlog() {
            for (gauge, value) in [
                (&self.memtable_bytes, backlog.memtable_bytes),
                (&self.sealed_memtables, backlog.sealed_memtables),
                (&self.level0_tables, backlog.level0_tables),
            ] {
                gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        let stats = store.stats();
        for (counter, total) in [
            (&self.retention_removed, &stats.events_removed_by_retention),
            (&self.write_batches, &stats.write_batches),
            (&self.write_errors, &stats.write_errors),
            (&self.write_state_changes, &health.transitions),
            (&self.rejected_events, &stats.rejected_events),
        ] {
            let total = total.load(Ordering::Relaxed);
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
