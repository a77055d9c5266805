//! Which Kind a resource is: `deployments` → `Deployment`.
//!
//! A subresource request names the parent by resource (`deployments`, subresource `scale`)
//! while its `kind` is the subresource's own (`Scale`, `PodExecOptions`). To file the event
//! under the parent object we need the parent's Kind: a built-in table of the core resources,
//! plus every (group, resource) → Kind pair learned from the main-resource requests seen.

use std::collections::HashMap;
use std::sync::RwLock;

/// Well-known resources: group, plural, Kind.
const BUILT_IN: &[(&str, &str, &str)] = &[
    ("", "pods", "Pod"),
    ("", "services", "Service"),
    ("", "configmaps", "ConfigMap"),
    ("", "secrets", "Secret"),
    ("", "namespaces", "Namespace"),
    ("", "nodes", "Node"),
    ("", "persistentvolumes", "PersistentVolume"),
    ("", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ("", "replicationcontrollers", "ReplicationController"),
    ("", "serviceaccounts", "ServiceAccount"),
    ("", "endpoints", "Endpoints"),
    ("", "resourcequotas", "ResourceQuota"),
    ("", "limitranges", "LimitRange"),
    ("apps", "deployments", "Deployment"),
    ("apps", "replicasets", "ReplicaSet"),
    ("apps", "statefulsets", "StatefulSet"),
    ("apps", "daemonsets", "DaemonSet"),
    ("batch", "jobs", "Job"),
    ("batch", "cronjobs", "CronJob"),
    (
        "autoscaling",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
    ),
    ("networking.k8s.io", "ingresses", "Ingress"),
    ("networking.k8s.io", "networkpolicies", "NetworkPolicy"),
    ("policy", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io", "roles", "Role"),
    ("rbac.authorization.k8s.io", "rolebindings", "RoleBinding"),
    ("rbac.authorization.k8s.io", "clusterroles", "ClusterRole"),
    (
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "ClusterRoleBinding",
    ),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
    ),
];

/// Resolves the Kind of a (group, resource) pair; learns new pairs as requests arrive.
#[derive(Debug, Default)]
pub struct KindTable {
    learned: RwLock<HashMap<(String, String), String>>,
}

impl KindTable {
    /// The Kind of `resource` in `group`, if known.
    pub fn kind_of(&self, group: &str, resource: &str) -> Option<String> {
        if let Some((_, _, kind)) = BUILT_IN
            .iter()
            .find(|(g, r, _)| *g == group && *r == resource)
        {
            return Some((*kind).to_owned());
        }
        let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
        learned
            .get(&(group.to_owned(), resource.to_owned()))
            .cloned()
    }

    /// Remember that `resource` in `group` is `kind` (from a main-resource request).
    pub fn learn(&self, group: &str, resource: &str, kind: &str) {
        if group.is_empty() && resource.is_empty() || kind.is_empty() {
            return;
        }
        let key = (group.to_owned(), resource.to_owned());
        {
            let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
            if learned.get(&key).is_some_and(|known| known == kind) {
                return;
            }
        }
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        learned.insert(key, kind.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_core_kinds_and_learns_custom_ones() {
        let table = KindTable::default();
        assert_eq!(
            table.kind_of("apps", "deployments").as_deref(),
            Some("Deployment")
        );
        assert_eq!(table.kind_of("example.com", "widgets"), None);
        table.learn("example.com", "widgets", "Widget");
        assert_eq!(
            table.kind_of("example.com", "widgets").as_deref(),
            Some("Widget")
        );
    }
}
