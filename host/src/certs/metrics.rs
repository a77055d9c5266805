//! Certificate metrics for `/metrics`: when the served certificate and the current CA expire
//! (alert on `logistis_certificate_expiry_timestamp_seconds - time() < 30 * 86400`: renewal
//! should have happened months before), and how many checks failed.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    certificate: &'static str,
}

/// Cheap to clone (the metrics are shared).
#[derive(Debug, Clone, Default)]
pub struct CertMetrics {
    expiry: Family<CertificateLabels, Gauge>,
    check_errors: Counter,
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl CertMetrics {
    /// Register under `registry`, which carries the `logistis_` prefix already.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the served certificate (certificate=\"serving\") and the current CA (certificate=\"ca\") expire, in Unix seconds",
            self.expiry.clone(),
        );
        registry.register(
            "certificate_check_errors",
            "Certificate checks (Secret, renewal, caBundle patch) that failed; retried with back-off",
            self.check_errors.clone(),
        );
    }

    pub fn set_expiry(&self, serving: SystemTime, ca: SystemTime) {
        for (certificate, time) in [("serving", serving), ("ca", ca)] {
            self.expiry
                .get_or_create(&CertificateLabels { certificate })
                .set(unix_seconds(time));
        }
    }

    pub fn check_failed(&self) {
        self.check_errors.inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::certs::testing::at;

    #[test]
    fn exposes_expiry_timestamps_and_failed_checks() {
        let metrics = CertMetrics::default();
        let mut registry = Registry::with_prefix("logistis");
        metrics.register(&mut registry);
        metrics.set_expiry(at(10), at(20));
        metrics.check_failed();
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "logistis_certificate_expiry_timestamp_seconds{certificate=\"serving\"} 1893456010"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "logistis_certificate_expiry_timestamp_seconds{certificate=\"ca\"} 1893456020"
            ),
            "{text}"
        );
        assert!(
            text.contains("logistis_certificate_check_errors_total 1"),
            "{text}"
        );
    }
}
