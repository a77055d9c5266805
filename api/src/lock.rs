//! Locks (`locks.logistis.io`): a person freezes a namespace, a kind or one object for some
//! users, and the webhook denies their changes until the lock is deleted or expires.
//!
//! The wire format is a Kubernetes object (`apiVersion: logistis.io/v1alpha1`, `kind: Lock`):
//! what the creator asks for is in `spec`; what the server decides — who set it, whether it
//! still applies, who is exempt by default — is in `status`, and a `status` in a request body
//! is ignored. A lock in a namespace targets objects of that namespace; a lock without a
//! namespace (created at cluster scope) targets cluster-scoped objects.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The API group and version locks are served under.
pub const LOCK_API_VERSION: &str = "logistis.io/v1alpha1";
pub const LOCK_KIND: &str = "Lock";
pub const LOCK_LIST_KIND: &str = "LockList";

/// Who is never locked out unless a lock names them: the cluster's own machinery. Each entry
/// is as a person reads it; [`machinery_reason`] is the check.
pub const DEFAULT_EXEMPT: [&str; 4] = [
    "group system:nodes (kubelets)",
    "user system:kube-controller-manager",
    "user system:kube-scheduler",
    "service accounts of namespace kube-system",
];

/// Why `username`/`groups` is the cluster's own machinery, or `None` for everyone else.
pub fn machinery_reason(username: &str, groups: &[String]) -> Option<&'static str> {
    if username == "system:kube-controller-manager" {
        Some("system:kube-controller-manager")
    } else if username == "system:kube-scheduler" {
        Some("system:kube-scheduler")
    } else if username.starts_with("system:node:") || groups.iter().any(|g| g == "system:nodes") {
        Some("system:nodes")
    } else if username.starts_with("system:serviceaccount:kube-system:")
        || groups
            .iter()
            .any(|g| g == "system:serviceaccounts:kube-system")
    {
        Some("kube-system service accounts")
    } else {
        None
    }
}

/// One lock, as created, stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    #[serde(default = "lock_api_version")]
    pub api_version: String,
    #[serde(default = "lock_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: LockMetadata,
    #[serde(default)]
    pub spec: LockSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LockStatus>,
}

fn lock_api_version() -> String {
    LOCK_API_VERSION.to_owned()
}

fn lock_kind() -> String {
    LOCK_KIND.to_owned()
}

/// The part of Kubernetes `ObjectMeta` a lock uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockMetadata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A prefix for a generated name when `name` is empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    /// Empty for a cluster-scope lock.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What the lock's creator asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockSpec {
    /// What is frozen. Empty in a namespace: the whole namespace.
    #[serde(default)]
    pub target: LockTarget,
    /// Applies to these users (and the members of `groups`); both empty: everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Never applies to these users, nor to members of these groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except_users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except_groups: Vec<String>,
    /// Admission operations denied: `CREATE`, `UPDATE`, `DELETE`, `CONNECT` (exec, attach,
    /// port-forward) or `*`. Empty: CREATE, UPDATE and DELETE.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    /// Why: shown to everyone whose change is denied.
    #[serde(default)]
    pub reason: String,
    /// When the lock stops applying; absent: until it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The frozen target inside the lock's namespace (or among cluster-scoped objects).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockTarget {
    /// API group of `kind` (`apps`); absent: any group. `""` is the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The object kind (`Deployment`, case-insensitive); absent: every kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// One object of `kind`; absent: every object of the kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// What the server decided about a lock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockStatus {
    /// The authenticated user who created the lock (never taken from the body).
    pub set_by: LockUser,
    /// `Active` or `Expired`.
    #[serde(default)]
    pub phase: String,
    /// The operations actually denied (the default filled in).
    #[serde(default)]
    pub operations: Vec<String>,
    /// Who is never locked out unless named: see [`DEFAULT_EXEMPT`].
    #[serde(default)]
    pub exempt_by_default: Vec<String>,
    /// What enforcement depends on, in one sentence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub enforcement: String,
}

/// The phase of a lock that applies.
pub const PHASE_ACTIVE: &str = "Active";
/// The phase of a lock past its expiry: it no longer applies.
pub const PHASE_EXPIRED: &str = "Expired";

/// The enforcement caveat every lock answer carries.
pub const ENFORCEMENT_NOTE: &str = "enforced by the Logistis webhook, whose failurePolicy is \
     Ignore: while Logistis is down this lock is not enforced (unless the namespace opted in \
     to the hard-freeze webhook)";

/// A user as a lock records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockUser {
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// `GET .../locks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockList {
    #[serde(default = "lock_api_version")]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ListMeta,
    pub items: Vec<Lock>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
}

/// The lock that denied a request, as the attempt's event records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Denial {
    /// `namespace/name` of the lock (`name` alone for a cluster-scope lock).
    pub lock: String,
    pub reason: String,
    pub set_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The message the user was answered with.
    pub message: String,
}

impl Lock {
    /// `namespace/name`, or `name` for a cluster-scope lock.
    pub fn key(&self) -> String {
        lock_key(&self.metadata.namespace, &self.metadata.name)
    }

    /// Whether the lock applies at `now` (it has not expired).
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.spec.expires_at.is_none_or(|at| now < at)
    }
}

/// `namespace/name`, or `name` for a cluster-scope lock.
pub fn lock_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}/{name}")
    }
}

impl fmt::Display for LockTarget {
    /// `kind.group/name` as kubectl prints it; `*` for every kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind.is_empty() {
            return f.write_str("*");
        }
        f.write_str(&self.kind)?;
        if let Some(group) = self.group.as_deref().filter(|g| !g.is_empty()) {
            write!(f, ".{group}")?;
        }
        if !self.name.is_empty() {
            write!(f, "/{}", self.name)?;
        }
        Ok(())
    }
}

impl LockSpec {
    /// Whom the lock applies to, as a person reads it.
    pub fn applies_to(&self) -> String {
        if self.users.is_empty() && self.groups.is_empty() {
            return "everyone".to_owned();
        }
        join_people(&self.users, &self.groups)
    }

    /// Who is exempt, as a person reads it (`None`: nobody is listed).
    pub fn exempt(&self) -> Option<String> {
        (!self.except_users.is_empty() || !self.except_groups.is_empty())
            .then(|| join_people(&self.except_users, &self.except_groups))
    }
}

fn join_people(users: &[String], groups: &[String]) -> String {
    let mut parts = Vec::new();
    if !users.is_empty() {
        let noun = if users.len() == 1 { "user" } else { "users" };
        parts.push(format!("{noun} {}", users.join(", ")));
    }
    if !groups.is_empty() {
        let noun = if groups.len() == 1 { "group" } else { "groups" };
        parts.push(format!("{noun} {}", groups.join(", ")));
    }
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_body_reads_with_defaults() {
        let lock: Lock =
            serde_json::from_str(r#"{"metadata":{"name":"freeze"},"spec":{"reason":"release"}}"#)
                .unwrap();
        assert_eq!(lock.api_version, LOCK_API_VERSION);
        assert_eq!(lock.kind, "Lock");
        assert_eq!(lock.spec.target, LockTarget::default());
        assert_eq!(lock.spec.applies_to(), "everyone");
        assert_eq!(lock.spec.exempt(), None);
    }

    #[test]
    fn targets_and_people_read_like_kubectl() {
        let target = LockTarget {
            group: Some("apps".into()),
            kind: "Deployment".into(),
            name: "web".into(),
        };
        assert_eq!(target.to_string(), "Deployment.apps/web");
        let spec = LockSpec {
            except_users: vec!["carol".into()],
            except_groups: vec!["sre".into(), "oncall".into()],
            ..LockSpec::default()
        };
        assert_eq!(spec.exempt().unwrap(), "user carol and groups sre, oncall");
    }

    #[test]
    fn machinery_is_recognised() {
        let none: [String; 0] = [];
        assert!(machinery_reason("system:kube-scheduler", &none).is_some());
        assert!(machinery_reason("system:node:n1", &none).is_some());
        assert!(machinery_reason("x", &["system:nodes".to_owned()]).is_some());
        assert!(
            machinery_reason(
                "system:serviceaccount:kube-system:deployment-controller",
                &none
            )
            .is_some()
        );
        assert!(machinery_reason("system:serviceaccount:shop:ci", &none).is_none());
        assert!(machinery_reason("alice", &none).is_none());
    }
}
