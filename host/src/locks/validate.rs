//! Checking a lock a person asks for: every reason a lock is refused, as one sentence that
//! names the field (answered as a 422 `Status`), and the normalised form the matcher uses.
//!
//! A lock that silently never matches is worse than no lock — its owner believes the target
//! is frozen — so anything ambiguous is refused rather than guessed at.

use chrono::{DateTime, Utc};
use logistis_api::Operation;
use logistis_api::lock::{LockSpec, LockTarget};

/// Longest reason accepted: it is shown in every denial message.
pub const MAX_REASON_CHARS: usize = 1024;
/// Most users or groups one list of a lock may name.
pub const MAX_SUBJECTS: usize = 256;

/// The operations a lock may deny, in the order they are shown.
pub const OPERATIONS: [Operation; 4] = [
    Operation::Create,
    Operation::Update,
    Operation::Delete,
    Operation::Connect,
];
/// Without `operations`: everything but CONNECT (exec stays possible for debugging).
pub const DEFAULT_OPERATIONS: [Operation; 3] =
    [Operation::Create, Operation::Update, Operation::Delete];

/// Why a lock cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The offending field, as in the object (`spec.operations[1]`).
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A set of operations as bits, so the hot path tests one with one AND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperationSet(u8);

impl OperationSet {
    fn bit(operation: &Operation) -> u8 {
        match operation {
            Operation::Create => 1,
            Operation::Update => 2,
            Operation::Delete => 4,
            Operation::Connect => 8,
            Operation::Other(_) => 0,
        }
    }

    pub fn contains(self, operation: &Operation) -> bool {
        self.0 & Self::bit(operation) != 0
    }

    fn insert(&mut self, operation: &Operation) {
        self.0 |= Self::bit(operation);
    }

    /// The operations in the set, upper-case, in [`OPERATIONS`] order.
    pub fn names(self) -> Vec<String> {
        OPERATIONS
            .iter()
            .filter(|op| self.contains(op))
            .map(|op| op.as_str().to_owned())
            .collect()
    }
}

/// Check `spec` for a lock in `namespace` (empty: cluster scope) at `now`, and return the
/// operations it denies.
pub fn check_spec(
    namespace: &str,
    spec: &LockSpec,
    now: DateTime<Utc>,
) -> Result<OperationSet, Invalid> {
    check_target(namespace, &spec.target)?;
    for (field, list) in [
        ("spec.users", &spec.users),
        ("spec.groups", &spec.groups),
        ("spec.exceptUsers", &spec.except_users),
        ("spec.exceptGroups", &spec.except_groups),
    ] {
        if list.len() > MAX_SUBJECTS {
            return Err(invalid(field, format!("at most {MAX_SUBJECTS} entries")));
        }
        if let Some(position) = list.iter().position(|s| s.trim().is_empty()) {
            return Err(invalid(format!("{field}[{position}]"), "must not be empty"));
        }
    }
    let operations = check_operations(&spec.operations)?;
    if spec.reason.trim().is_empty() {
        return Err(invalid(
            "spec.reason",
            "required: say why, it is shown to everyone whose change is denied",
        ));
    }
    if spec.reason.chars().count() > MAX_REASON_CHARS {
        return Err(invalid(
            "spec.reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    if let Some(expires_at) = spec.expires_at
        && expires_at <= now
    {
        return Err(invalid(
            "spec.expiresAt",
            format!(
                "{} is in the past (now is {})",
                expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    Ok(operations)
}

fn check_target(namespace: &str, target: &LockTarget) -> Result<(), Invalid> {
    if target.kind.is_empty() {
        if namespace.is_empty() {
            return Err(invalid(
                "spec.target.kind",
                "required for a cluster-scope lock (an empty target would freeze every \
                 cluster-scoped object); to freeze a namespace, create the lock in it",
            ));
        }
        if !target.name.is_empty() {
            return Err(invalid(
                "spec.target.name",
                "needs spec.target.kind: name the kind of the object",
            ));
        }
        if target.group.is_some() {
            return Err(invalid(
                "spec.target.group",
                "needs spec.target.kind: name the kind of the group",
            ));
        }
        return Ok(());
    }
    // A Kind is a CamelCase identifier; a plural (`deployments`) or `kind/name` here would
    // never match a request, so it is refused instead.
    if !target.kind.chars().all(|c| c.is_ascii_alphanumeric())
        || !target.kind.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return Err(invalid(
            "spec.target.kind",
            format!(
                "{:?} is not a Kind (letters and digits, e.g. Deployment)",
                target.kind
            ),
        ));
    }
    if let Some(group) = &target.group
        && !group.is_empty()
        && !is_dns_subdomain(group)
    {
        return Err(invalid(
            "spec.target.group",
            format!("{group:?} is not an API group (e.g. apps, or \"\" for the core group)"),
        ));
    }
    if !target.name.is_empty() && (target.name.contains('/') || target.name.len() > 253) {
        return Err(invalid(
            "spec.target.name",
            format!("{:?} is not an object name", target.name),
        ));
    }
    Ok(())
}

fn check_operations(names: &[String]) -> Result<OperationSet, Invalid> {
    let mut set = OperationSet::default();
    if names.is_empty() {
        for operation in &DEFAULT_OPERATIONS {
            set.insert(operation);
        }
        return Ok(set);
    }
    for (position, name) in names.iter().enumerate() {
        if name.trim() == "*" {
            for operation in &OPERATIONS {
                set.insert(operation);
            }
            continue;
        }
        match Operation::parse(name.trim()) {
            Operation::Other(other) => {
                return Err(invalid(
                    format!("spec.operations[{position}]"),
                    format!(
                        "unknown operation {other:?} (expected CREATE, UPDATE, DELETE, CONNECT or *)"
                    ),
                ));
            }
            operation => set.insert(&operation),
        }
    }
    Ok(set)
}

/// A Kubernetes object name (`metadata.name` of a lock): a DNS subdomain.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(invalid(
            "metadata.name",
            "required (or metadata.generateName)",
        ));
    }
    if !is_dns_subdomain(name) {
        return Err(invalid(
            "metadata.name",
            format!(
                "{name:?} is not a valid name: lower-case letters, digits, '-' and '.', \
                 starting and ending with a letter or digit, at most 253 characters"
            ),
        ));
    }
    Ok(())
}

/// A namespace name: a DNS label.
pub fn check_namespace(namespace: &str) -> Result<(), Invalid> {
    let valid = !namespace.is_empty()
        && namespace.len() <= 63
        && !namespace.contains('.')
        && is_dns_subdomain(namespace);
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "metadata.namespace",
            format!("{namespace:?} is not a valid namespace name"),
        ))
    }
}

fn is_dns_subdomain(text: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !text.is_empty()
        && text.len() <= 253
        && text.starts_with(alphanumeric)
        && text.ends_with(alphanumeric)
        && text
            .chars()
            .all(|c| alphanumeric(c) || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use rstest::rstest;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn spec(reason: &str) -> LockSpec {
        LockSpec {
            reason: reason.into(),
            ..LockSpec::default()
        }
    }

    #[test]
    fn a_namespace_lock_denies_create_update_delete_by_default() {
        let operations = check_spec("shop", &spec("release"), now()).unwrap();
        assert_eq!(operations.names(), ["CREATE", "UPDATE", "DELETE"]);
        assert!(!operations.contains(&Operation::Connect));
    }

    #[test]
    fn operations_are_case_insensitive_and_star_is_all() {
        let mut s = spec("incident");
        s.operations = vec!["connect".into(), "Update".into()];
        assert_eq!(
            check_spec("shop", &s, now()).unwrap().names(),
            ["UPDATE", "CONNECT"]
        );
        s.operations = vec!["*".into()];
        assert_eq!(check_spec("shop", &s, now()).unwrap().names().len(), 4);
    }

    #[rstest]
    #[case::unknown_operation("shop", |s: &mut LockSpec| s.operations = vec!["CREATE".into(), "PATCH".into()], "spec.operations[1]", "unknown operation \"PATCH\"")]
    #[case::empty_cluster_target("", |_: &mut LockSpec| {}, "spec.target.kind", "required for a cluster-scope lock")]
    #[case::name_without_kind("shop", |s: &mut LockSpec| s.target.name = "web".into(), "spec.target.name", "needs spec.target.kind")]
    #[case::plural_kind("shop", |s: &mut LockSpec| s.target.kind = "deployments/web".into(), "spec.target.kind", "is not a Kind")]
    #[case::expiry_in_the_past("shop", |s: &mut LockSpec| s.expires_at = Some(now() - chrono::Duration::minutes(1)), "spec.expiresAt", "in the past")]
    #[case::no_reason("shop", |s: &mut LockSpec| s.reason = "  ".into(), "spec.reason", "required")]
    #[case::empty_user("shop", |s: &mut LockSpec| s.except_users = vec!["".into()], "spec.exceptUsers[0]", "must not be empty")]
    #[case::bad_group("shop", |s: &mut LockSpec| { s.target.kind = "Deployment".into(); s.target.group = Some("Apps!".into()) }, "spec.target.group", "not an API group")]
    fn bad_locks_say_which_field_and_why(
        #[case] namespace: &str,
        #[case] edit: fn(&mut LockSpec),
        #[case] field: &str,
        #[case] reason: &str,
    ) {
        let mut s = spec("release");
        edit(&mut s);
        let error = check_spec(namespace, &s, now()).unwrap_err();
        assert_eq!(error.field, field);
        assert!(error.reason.contains(reason), "{}", error.reason);
    }

    #[test]
    fn cluster_scope_locks_name_a_kind() {
        let mut s = spec("migration");
        s.target.kind = "ClusterRole".into();
        s.target.group = Some("rbac.authorization.k8s.io".into());
        assert!(check_spec("", &s, now()).is_ok());
    }

    #[test]
    fn names_are_dns_subdomains() {
        assert!(check_name("freeze-shop.1").is_ok());
        assert!(check_name("Freeze").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_namespace("shop").is_ok());
        assert!(check_namespace("a.b").is_err());
    }
}
