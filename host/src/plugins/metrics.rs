//! Plugin metrics for `/metrics`: call time per plugin, failures by reason (trap, timeout,
//! memory, fuel), verdicts, sink lag/deliveries/failures and reload outcomes. Durations
//! are in seconds (Prometheus convention) with buckets from 1 µs, because a Rust
//! predicate call is a few microseconds.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

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
    pub sink_lag_seconds: Family<PluginLabels, Gauge<f64, AtomicU64>>,
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
            sink_lag_seconds: Family::default(),
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
            "Plugin failures by reason: trap, timeout, memory, fuel, rejected",
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
            "sink_lag_seconds",
            "Time between the newest stored event and the last one the sink delivered",
            self.sink_lag_seconds.clone(),
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

    pub fn plugin(name: &str) -> PluginLabels {
        PluginLabels {
            plugin: name.to_owned(),
        }
    }
}
