//! Plugin metrics for `/metrics`: call time per plugin, failures by reason (trap, timeout,
//! memory, fuel), verdicts, sink lag/deliveries/failures and reload outcomes. Durations
//! are in seconds (Prometheus convention) with buckets from 1 µs, because a Rust
//! predicate call is a few microseconds. Values read at scrape time (sink lag, memory in
//! use) are in [`Snapshot`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub plugin: String,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub plugin: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

fn call_buckets() -> impl Iterator<Item = f64> {
    [
        1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
        50e-3, 250e-3, 1.0, 10.0,
    ]
    .into_iter()
}

/// Every plugin metric; cheap to clone (the families are shared).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub call_seconds: Family<PluginLabels, Histogram>,
    pub calls: Family<ResultLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub generation: Gauge,
    pub chain_ceiling: Counter,
    pub set_fallback: Gauge,
    pub memory_budget_bytes: Gauge,
    pub sink_delivered: Family<PluginLabels, Counter>,
    pub sink_failures: Family<PluginLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            call_seconds: Family::new_with_constructor(|| Histogram::new(call_buckets())),
            calls: Family::default(),
            failures: Family::default(),
            reloads: Family::default(),
            generation: Gauge::default(),
            chain_ceiling: Counter::default(),
            set_fallback: Gauge::default(),
            memory_budget_bytes: Gauge::default(),
            sink_delivered: Family::default(),
            sink_failures: Family::default(),
        }
    }
}

impl Metrics {
    /// Register under `registry`, which carries the `logistis_` prefix already.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plugin_call_seconds",
            "Time of one plugin call (predicate evaluate or sink delivery), instantiation included when no idle instance was ready",
            self.call_seconds.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls by result: capture, skip, delivered, failed",
            self.calls.clone(),
        );
        registry.register(
            "plugin_failures",
            "Plugin failures by reason: trap, timeout (running time), ceiling (the review's), memory, memory_budget, fuel, rejected",
            self.failures.clone(),
        );
        registry.register(
            "plugin_reloads",
            "Loads of the plugins directory by result: ok, error (the previous set stays active)",
            self.reloads.clone(),
        );
        registry.register(
            "plugin_set_generation",
            "Generation of the active plugin set (0: none loaded)",
            self.generation.clone(),
        );
        registry.register(
            "plugin_chain_ceiling",
            "Reviews whose predicate chain reached its ceiling (--plugin-chain-timeout); the set's on-error decided",
            self.chain_ceiling.clone(),
        );
        registry.register(
            "plugin_set_fallback",
            "1 while the last good plugin set runs because the mounted one is broken (alert on it)",
            self.set_fallback.clone(),
        );
        registry.register(
            "plugin_memory_budget_bytes",
            "Linear memory all plugin instances may hold together (--plugin-memory-budget)",
            self.memory_budget_bytes.clone(),
        );
        registry.register(
            "sink_delivered_events",
            "Events delivered by each sink",
            self.sink_delivered.clone(),
        );
        registry.register(
            "sink_failures",
            "Failed sink deliveries (each is retried with back-off)",
            self.sink_failures.clone(),
        );
    }

    /// Create the series of a set's plugins at zero when it becomes active, as Prometheus
    /// asks of labelled counters: an alert's `increase()` then sees the first failure,
    /// and the series are there to graph before anything went wrong.
    pub fn initialize<'a>(
        &self,
        predicates: impl IntoIterator<Item = &'a str>,
        sinks: impl IntoIterator<Item = &'a str>,
    ) {
        let touch = |name: &str| {
            let _ = self.call_seconds.get_or_create(&Self::plugin(name));
            for reason in ["trap", "timeout"] {
                let _ = self.failures.get_or_create(&FailureLabels {
                    plugin: name.to_owned(),
                    reason,
                });
            }
        };
        for name in predicates {
            touch(name);
        }
        for name in sinks {
            touch(name);
            let _ = self.sink_delivered.get_or_create(&Self::plugin(name));
            let _ = self.sink_failures.get_or_create(&Self::plugin(name));
        }
    }

    pub fn plugin(name: &str) -> PluginLabels {
        PluginLabels {
            plugin: name.to_owned(),
        }
    }
}

/// The metrics computed when scraped, so they are always current: each sink's lag (from
/// its cursor and the head of the log) and the plugins' memory in use.
#[derive(Debug)]
pub struct Snapshot {
    pub memory_used_bytes: u64,
    /// `(sink, lag in seconds)`.
    pub sink_lag_seconds: Vec<(String, f64)>,
}

impl Snapshot {
    pub fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        let used = ConstGauge::new(i64::try_from(self.memory_used_bytes).unwrap_or(i64::MAX));
        used.encode(encoder.encode_descriptor(
            "plugin_memory_used_bytes",
            "Linear memory held by all live plugin instances (idle ones included)",
            None,
            used.metric_type(),
        )?)?;
        if self.sink_lag_seconds.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "sink_lag_seconds",
            "How long the oldest event a sink has not delivered has been waiting (0: caught up)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (sink, lag) in &self.sink_lag_seconds {
            let labels = PluginLabels {
                plugin: sink.clone(),
            };
            ConstGauge::new(*lag).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
