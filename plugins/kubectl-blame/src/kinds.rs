//! Kind names as people type them (`deploy`, `deployments`, `Deployment`, `po`,
//! `widgets.example.com`) resolved to the kind and group the server records. The resolution is
//! pure: it works on a list of [`KindInfo`] in priority order, which is either the built-in
//! table of the core kinds below or the API server's discovery (see `discovery`).

use std::fmt;

/// One resource type: what the server stores (`kind`, `group`) and the names a user may type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindInfo {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The resource name (`deployments`); empty when unknown.
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
}

impl KindInfo {
    /// `Deployment.apps` or `Pod`: how messages name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// (group, version, kind, plural, short names, namespaced)
type BuiltIn = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    bool,
);

/// Built-in kinds, in kubectl's priority order (core first): used when API discovery is not
/// possible, and first in any case because these names never change meaning between clusters.
const BUILT_IN: &[BuiltIn] = &[
    ("", "v1", "Pod", "pods", &["po"], true),
    ("", "v1", "Service", "services", &["svc"], true),
    ("", "v1", "ConfigMap", "configmaps", &["cm"], true),
    ("", "v1", "Secret", "secrets", &[], true),
    ("", "v1", "ServiceAccount", "serviceaccounts", &["sa"], true),
    ("", "v1", "Namespace", "namespaces", &["ns"], false),
    ("", "v1", "Node", "nodes", &["no"], false),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        &["pvc"],
        true,
    ),
    (
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        &["pv"],
        false,
    ),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        &["rc"],
        true,
    ),
    ("", "v1", "Endpoints", "endpoints", &["ep"], true),
    ("", "v1", "Event", "events", &["ev"], true),
    ("", "v1", "LimitRange", "limitranges", &["limits"], true),
    (
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        &["quota"],
        true,
    ),
    ("", "v1", "PodTemplate", "podtemplates", &[], true),
    ("apps", "v1", "Deployment", "deployments", &["deploy"], true),
    ("apps", "v1", "StatefulSet", "statefulsets", &["sts"], true),
    ("apps", "v1", "DaemonSet", "daemonsets", &["ds"], true),
    ("apps", "v1", "ReplicaSet", "replicasets", &["rs"], true),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        &[],
        true,
    ),
    ("batch", "v1", "Job", "jobs", &[], true),
    ("batch", "v1", "CronJob", "cronjobs", &["cj"], true),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        &["hpa"],
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        &["ing"],
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        &[],
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        &["netpol"],
        true,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        &[],
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        &[],
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        &[],
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        &["sc"],
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "CSIDriver",
        "csidrivers",
        &[],
        false,
    ),
    (
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        &[],
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        &[],
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        &[],
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        &[],
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        &[],
        false,
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        &["pc"],
        false,
    ),
    ("coordination.k8s.io", "v1", "Lease", "leases", &[], true),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        &[],
        true,
    ),
    (
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        &["csr"],
        false,
    ),
    (
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        &[],
        false,
    ),
    (
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        &[],
        false,
    ),
];

/// The built-in table as [`KindInfo`]s, in priority order.
pub fn built_in() -> Vec<KindInfo> {
    BUILT_IN
        .iter()
        .map(
            |&(group, version, kind, plural, short, namespaced)| KindInfo {
                group: group.to_owned(),
                version: version.to_owned(),
                kind: kind.to_owned(),
                plural: plural.to_owned(),
                singular: kind.to_ascii_lowercase(),
                short_names: short.iter().map(|s| (*s).to_owned()).collect(),
                namespaced,
            },
        )
        .collect()
}

/// What the user typed, split like kubectl does: `name[.version].group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindQuery {
    /// As typed (case kept, for the pass-through of unknown `Kind.group`).
    pub name: String,
    pub group: Option<String>,
    pub version: Option<String>,
}

impl KindQuery {
    pub fn parse(text: &str) -> KindQuery {
        let Some((name, rest)) = text.split_once('.') else {
            return KindQuery {
                name: text.to_owned(),
                group: None,
                version: None,
            };
        };
        // `deployments.v1.apps`: a first segment that looks like an API version is one.
        let (version, group) = match rest.split_once('.') {
            Some((version, group)) if looks_like_version(version) => (Some(version), group),
            _ if looks_like_version(rest) => (Some(rest), ""),
            _ => (None, rest),
        };
        let group = if group == "core" { "" } else { group };
        KindQuery {
            name: name.to_owned(),
            group: Some(group.to_owned()),
            version: version.map(str::to_owned),
        }
    }
}

/// `v1`, `v2beta1`, `v1alpha3`.
fn looks_like_version(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('v') else {
        return false;
    };
    let digits = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    digits.len() < rest.len()
        && (digits.is_empty()
            || ["alpha", "beta"].iter().any(|stage| {
                digits
                    .strip_prefix(stage)
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            }))
}

/// Finds `query` in `kinds` (priority order). Names (plural, singular, kind) win over short
/// names, as in kubectl, so a custom resource's short name cannot shadow a real resource.
pub fn resolve<'a>(kinds: &'a [KindInfo], query: &KindQuery) -> Option<&'a KindInfo> {
    let name = query.name.to_ascii_lowercase();
    let group_ok = |info: &KindInfo| {
        query
            .group
            .as_ref()
            .is_none_or(|g| g.eq_ignore_ascii_case(&info.group))
            && query.version.as_ref().is_none_or(|v| *v == info.version)
    };
    let by_name = kinds.iter().find(|info| {
        group_ok(info)
            && (info.plural == name
                || info.singular == name
                || info.kind.to_ascii_lowercase() == name)
    });
    by_name.or_else(|| {
        kinds
            .iter()
            .find(|info| group_ok(info) && info.short_names.contains(&name))
    })
}

/// A `Kind.group` nobody knows (a custom resource whose definition was deleted: its history
/// is still stored) is taken at its word when it is written as a Kind, in CamelCase. Its
/// scope is unknown; namespaced is the common case.
pub fn pass_through(query: &KindQuery) -> Option<KindInfo> {
    let group = query.group.as_ref().filter(|g| !g.is_empty())?;
    if !query.name.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    Some(KindInfo {
        group: group.clone(),
        version: query.version.clone().unwrap_or_default(),
        kind: query.name.clone(),
        plural: String::new(),
        singular: query.name.to_ascii_lowercase(),
        short_names: Vec::new(),
        namespaced: true,
    })
}

/// Where the names came from (the built-in table, and discovery), for the "unknown kind"
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    /// The built-in table only: discovery was not reached (or failed, with why).
    Unreached { discovery_error: Option<String> },
    /// With `--server` the kubeconfig's cluster is not asked: it may not be the one that
    /// Logistis records.
    ServerGiven,
    /// The built-in table and the cluster's discovery.
    Discovered,
}

impl fmt::Display for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sources::Discovered => {
                f.write_str("neither the cluster's API discovery nor the built-in table knows it")
            }
            Sources::Unreached {
                discovery_error: Some(error),
            } => write!(
                f,
                "the built-in table does not know it and API discovery failed: {error}"
            ),
            Sources::Unreached {
                discovery_error: None,
            } => f.write_str("the built-in table does not know it (no cluster to ask)"),
            Sources::ServerGiven => f.write_str(
                "the built-in table does not know it (with --server, no cluster's API discovery \
                 is asked)",
            ),
        }
    }
}

/// The kind could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown kind {input:?}: {sources}; for a custom resource use Kind.group \
     (for example Widget.example.com)"
)]
pub struct UnknownKind {
    pub input: String,
    pub sources: Sources,
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn resolve_built_in(text: &str) -> Option<(String, String)> {
        let kinds = built_in();
        resolve(&kinds, &KindQuery::parse(text)).map(|k| (k.group.clone(), k.kind.clone()))
    }

    #[rstest]
    #[case("deployment", "apps", "Deployment")]
    #[case("deployments", "apps", "Deployment")]
    #[case("deploy", "apps", "Deployment")]
    #[case("Deployment", "apps", "Deployment")]
    #[case("DEPLOY", "apps", "Deployment")]
    #[case("deployments.apps", "apps", "Deployment")]
    #[case("deployments.v1.apps", "apps", "Deployment")]
    #[case("po", "", "Pod")]
    #[case("pods", "", "Pod")]
    #[case("pod.core", "", "Pod")]
    #[case("pods.v1", "", "Pod")]
    #[case("svc", "", "Service")]
    #[case("cm", "", "ConfigMap")]
    #[case("sts", "apps", "StatefulSet")]
    #[case("ds", "apps", "DaemonSet")]
    #[case("ing", "networking.k8s.io", "Ingress")]
    #[case("ns", "", "Namespace")]
    #[case("hpa", "autoscaling", "HorizontalPodAutoscaler")]
    #[case("crds", "apiextensions.k8s.io", "CustomResourceDefinition")]
    #[case("ev", "", "Event")]
    fn built_in_names(#[case] input: &str, #[case] group: &str, #[case] kind: &str) {
        assert_eq!(
            resolve_built_in(input),
            Some((group.to_owned(), kind.to_owned()))
        );
    }

    #[rstest]
    #[case("deploy.batch")]
    #[case("widgets")]
    #[case("deployments.v2.apps")]
    fn unknown_names(#[case] input: &str) {
        assert_eq!(resolve_built_in(input), None);
    }

    #[test]
    fn names_win_over_short_names_and_priority_order_breaks_ties() {
        let mut kinds = built_in();
        // A custom resource whose short name is a core plural, and one that reuses a kind.
        kinds.push(KindInfo {
            group: "example.com".into(),
            version: "v1".into(),
            kind: "Gadget".into(),
            plural: "gadgets".into(),
            singular: "gadget".into(),
            short_names: vec!["pods".into(), "gd".into()],
            namespaced: true,
        });
        kinds.push(KindInfo {
            group: "example.com".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            singular: "deployment".into(),
            short_names: vec![],
            namespaced: true,
        });
        let find = |text: &str| resolve(&kinds, &KindQuery::parse(text)).map(KindInfo::qualified);
        assert_eq!(find("pods").as_deref(), Some("Pod"));
        assert_eq!(find("gd").as_deref(), Some("Gadget.example.com"));
        assert_eq!(find("deployment").as_deref(), Some("Deployment.apps"));
        assert_eq!(
            find("deployment.example.com").as_deref(),
            Some("Deployment.example.com")
        );
    }

    #[test]
    fn versions_are_told_from_dotted_groups() {
        assert!(looks_like_version("v1"));
        assert!(looks_like_version("v2beta1"));
        assert!(looks_like_version("v1alpha3"));
        assert!(!looks_like_version("values"));
        assert!(!looks_like_version("v"));
        assert!(!looks_like_version("v1beta"));
        let q = KindQuery::parse("widgets.v1alpha1.example.com");
        assert_eq!(q.version.as_deref(), Some("v1alpha1"));
        assert_eq!(q.group.as_deref(), Some("example.com"));
        let q = KindQuery::parse("gateways.gateway.networking.k8s.io");
        assert_eq!(q.group.as_deref(), Some("gateway.networking.k8s.io"));
        assert_eq!(q.version, None);
    }

    #[test]
    fn only_camel_case_kind_dot_group_passes_through() {
        let kind = pass_through(&KindQuery::parse("Widget.example.com")).unwrap();
        assert_eq!(kind.qualified(), "Widget.example.com");
        assert!(pass_through(&KindQuery::parse("widgets.example.com")).is_none());
        assert!(pass_through(&KindQuery::parse("Widget")).is_none());
    }

    #[test]
    fn unknown_kind_says_where_it_looked() {
        let error = UnknownKind {
            input: "wigdet".into(),
            sources: Sources::Unreached {
                discovery_error: Some("connection refused".into()),
            },
        };
        let text = error.to_string();
        assert!(text.contains("\"wigdet\""), "{text}");
        assert!(
            text.contains("API discovery failed: connection refused"),
            "{text}"
        );
    }
}
