//! What a person is told when a lock denies their change. The API server prints it after
//! `admission webhook "record.logistis.io" denied the request: `, so it must stand alone:
//! which lock, why, who set it, until when, who is exempt, and how to get past it.

use chrono::{DateTime, SecondsFormat, Utc};
use logistis_api::lock::{DEFAULT_EXEMPT, Denial, Lock};

/// The denial an attempt's event records, with the message answered to the user.
pub fn denial(lock: &Lock, what: &str) -> Denial {
    let spec = &lock.spec;
    let set_by = lock
        .status
        .as_ref()
        .map(|s| s.set_by.username.clone())
        .unwrap_or_default();
    let mut message = format!(
        "{what} is locked by lock {} ({}), set by {}",
        lock.key(),
        spec.reason.trim(),
        if set_by.is_empty() {
            "an unknown user"
        } else {
            &set_by
        },
    );
    if let Some(created) = lock.metadata.creation_timestamp {
        message.push_str(&format!(" at {}", time(created)));
    }
    match spec.expires_at {
        Some(until) => message.push_str(&format!(", until {}", time(until))),
        None => message.push_str(", until it is deleted"),
    }
    message.push_str(&format!(". It applies to {}", spec.applies_to()));
    match spec.exempt() {
        Some(exempt) => message.push_str(&format!("; exempt: {exempt}")),
        None => message.push_str("; nobody is exempt"),
    }
    message.push_str(&format!(
        " (and, unless named, the cluster's own machinery: {}). To lift it: kubectl blame unlock {}",
        DEFAULT_EXEMPT.join(", "),
        lock.metadata.name
    ));
    if !lock.metadata.namespace.is_empty() {
        message.push_str(&format!(" -n {}", lock.metadata.namespace));
    }
    Denial {
        lock: lock.key(),
        reason: spec.reason.clone(),
        set_by,
        expires_at: spec.expires_at,
        message,
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use logistis_api::lock::{LockMetadata, LockSpec, LockStatus, LockUser};

    use super::*;

    #[test]
    fn the_message_names_the_lock_its_reason_owner_expiry_and_exemptions() {
        let lock = Lock {
            api_version: "logistis.io/v1alpha1".into(),
            kind: "Lock".into(),
            metadata: LockMetadata {
                name: "freeze".into(),
                namespace: "shop".into(),
                creation_timestamp: Some(Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()),
                ..LockMetadata::default()
            },
            spec: LockSpec {
                except_groups: vec!["sre".into()],
                reason: "release 4.2".into(),
                expires_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 18, 0, 0).unwrap()),
                ..LockSpec::default()
            },
            status: Some(LockStatus {
                set_by: LockUser {
                    username: "carol@example.com".into(),
                    groups: vec![],
                },
                ..LockStatus::default()
            }),
        };
        let denial = denial(&lock, "Deployment.apps/web in namespace shop");
        assert_eq!(denial.lock, "shop/freeze");
        assert_eq!(denial.set_by, "carol@example.com");
        assert_eq!(
            denial.message,
            "Deployment.apps/web in namespace shop is locked by lock shop/freeze (release 4.2), \
             set by carol@example.com at 2026-12-01T12:00:00Z, until 2026-12-01T18:00:00Z. \
             It applies to everyone; exempt: group sre (and, unless named, the cluster's own \
             machinery: group system:nodes (kubelets), user system:kube-controller-manager, \
             user system:kube-scheduler, service accounts of namespace kube-system). \
             To lift it: kubectl blame unlock freeze -n shop"
        );
    }
}
