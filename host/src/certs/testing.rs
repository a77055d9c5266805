//! Test helpers: fixed instants and freshly issued Secret contents, so every test states the
//! time it runs at instead of reading the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{CertSettings, Material, plan};

/// 2030-01-01T00:00:00Z plus `seconds`: far enough from today that a test reading the real
/// clock by mistake fails.
pub fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000 + seconds)
}

pub fn settings() -> CertSettings {
    CertSettings {
        namespace: "logistis".into(),
        secret: "logistis-tls".into(),
        service: "logistis".into(),
        webhook_configuration: "logistis".into(),
    }
}

pub fn names() -> Vec<String> {
    settings().dns_names()
}

/// A new CA and a serving certificate for [`settings`], both issued at `now`.
pub fn material(now: SystemTime) -> Material {
    plan::generate_all(&settings(), now).unwrap()
}
