//! Confirmation metrics for `/metrics`: the lag from recording to confirmation, events by
//! the status they reached, watch restarts and relists per resource, and the objects
//! compared while catching up after a (re)list.

use logistis_api::Status;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// `deployments.apps`, `pods` (as kubectl names resources).
    pub resource: String,
}

/// Lag buckets in seconds: 1 ms … 60 s (a deadline is a few seconds).
fn lag_buckets() -> impl Iterator<Item = f64> {
    [
        1e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ]
    .into_iter()
}

/// Every confirmation metric; cheap to clone (the families are shared).
#[derive(Debug, Clone)]
pub struct ConfirmMetrics {
    pub lag: Histogram,
    pub events: Family<StatusLabels, Counter>,
    pub restarts: Family<ResourceLabels, Counter>,
    pub relists: Family<ResourceLabels, Counter>,
    pub catchup_objects: Counter,
    pub watched_resources: Gauge,
}

impl Default for ConfirmMetrics {
    fn default() -> Self {
        ConfirmMetrics {
            lag: Histogram::new(lag_buckets()),
            events: Family::default(),
            restarts: Family::default(),
            relists: Family::default(),
            catchup_objects: Counter::default(),
            watched_resources: Gauge::default(),
        }
    }
}

impl ConfirmMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "confirm_lag_seconds",
            "Time from recording an event to the watch confirming it",
            self.lag.clone(),
        );
        registry.register(
            "confirm_events",
            "Events by the status they reached: pending (recorded), confirmed, phantom, observed",
            self.events.clone(),
        );
        registry.register(
            "confirm_watch_restarts",
            "Watch errors per resource (each followed by a retry with back-off)",
            self.restarts.clone(),
        );
        registry.register(
            "confirm_relists",
            "Lists per resource: the first one, and one after every 410 Gone",
            self.relists.clone(),
        );
        registry.register(
            "confirm_catchup_objects",
            "Objects compared with the store while catching up after a (re)list",
            self.catchup_objects.clone(),
        );
        registry.register(
            "confirm_watched_resources",
            "Resources being watched",
            self.watched_resources.clone(),
        );
    }

    pub fn count(&self, status: Status) {
        self.events
            .get_or_create(&StatusLabels {
                status: status.as_str(),
            })
            .inc();
    }

    pub fn resource(resource: &kube::discovery::ApiResource) -> ResourceLabels {
        ResourceLabels {
            resource: discovery_name(resource),
        }
    }
}

/// `deployments.apps`, `pods`.
pub fn discovery_name(resource: &kube::discovery::ApiResource) -> String {
    if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}
