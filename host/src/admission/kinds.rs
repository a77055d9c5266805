//! Which Kind a resource is: `deployments` → `Deployment`.
//!
//! A subresource request names the parent by resource (`deployments`, subresource `scale`)
//! while its `kind` is the subresource's own (`Scale`, `PodExecOptions`). To file the event
//! under the parent object we need the parent's Kind: a built-in table of the core resources,
//! plus every (group, resource) → Kind pair learned from the main-resource requests seen.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Most learned pairs kept: far more resources than a cluster serves (a few hundred), so
/// only crafted reviews ever reach it. Past it the oldest learned pair is forgotten.
pub const MAX_LEARNED: usize = 4096;
/// Longest group, resource or kind learned (Kubernetes names are at most 253 bytes).
const MAX_LEARNED_BYTES: usize = 253;

/// Resolves the Kind of a (group, resource) pair; learns new pairs as requests arrive,
/// keeping at most [`MAX_LEARNED`] (oldest forgotten first).
#[derive(Debug, Default)]
pub struct KindTable {
    learned: RwLock<Learned>,
    forgotten: AtomicU64,
}

#[derive(Debug, Default)]
struct Learned {
    kinds: HashMap<(String, String), String>,
    /// Insertion order, for forgetting the oldest.
    order: VecDeque<(String, String)>,
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
            .kinds
            .get(&(group.to_owned(), resource.to_owned()))
            .cloned()
    }

    /// Remember that `resource` in `group` is `kind` (from a main-resource request).
    pub fn learn(&self, group: &str, resource: &str, kind: &str) {
        if group.is_empty() && resource.is_empty() || kind.is_empty() {
            return;
        }
        if [group, resource, kind]
            .iter()
            .any(|text| text.len() > MAX_LEARNED_BYTES)
            || BUILT_IN
                .iter()
                .any(|(g, r, _)| *g == group && *r == resource)
        {
            return;
        }
        let key = (group.to_owned(), resource.to_owned());
        {
            let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
            if learned.kinds.get(&key).is_some_and(|known| known == kind) {
                return;
            }
        }
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        if learned.kinds.insert(key.clone(), kind.to_owned()).is_none() {
            learned.order.push_back(key);
            while learned.order.len() > MAX_LEARNED {
                if let Some(oldest) = learned.order.pop_front() {
                    learned.kinds.remove(&oldest);
                    self.forgotten.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Pairs learned and kept now.
    pub fn learned(&self) -> usize {
        self.learned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .kinds
            .len()
    }

    /// Pairs forgotten to stay within [`MAX_LEARNED`].
    pub fn forgotten(&self) -> u64 {
        self.forgotten.load(Ordering::Relaxed)
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

    #[test]
    fn learned_pairs_are_bounded_oldest_forgotten_first() {
        let table = KindTable::default();
        table.learn("example.com", "widgets", "Widget");
        for n in 0..MAX_LEARNED + 10 {
            table.learn(&format!("g{n}.example.com"), "things", "Thing");
        }
        assert_eq!(table.learned(), MAX_LEARNED);
        assert_eq!(table.forgotten(), 11);
        assert_eq!(table.kind_of("example.com", "widgets"), None);
        assert_eq!(
            table
                .kind_of(&format!("g{}.example.com", MAX_LEARNED + 9), "things")
                .as_deref(),
            Some("Thing")
        );
        // Oversized names are never learned; built-in pairs need no memory.
        table.learn(&"g".repeat(300), "things", "Thing");
        table.learn("apps", "deployments", "Deployment");
        assert_eq!(table.learned(), MAX_LEARNED);
    }
}
