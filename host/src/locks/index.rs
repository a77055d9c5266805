//! The matcher on the admission hot path: locks indexed by namespace, then kind, then name,
//! so a review looks at the few locks that could concern its object and never at the rest.
//!
//! An index is immutable; a change to the set of locks builds a new one and swaps it in
//! (`super::Locks`). Expiry is checked per match against the review's time, so an expired
//! lock stops applying on the microsecond without anything having to run.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use logistis_api::Operation;
use logistis_api::lock::{Lock, machinery_reason};

use super::validate::OperationSet;

/// What a lock is asked about: one admission request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Empty for a cluster-scoped object.
    pub namespace: &'a str,
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub operation: &'a Operation,
    pub username: &'a str,
    pub groups: &'a [String],
}

/// One lock, compiled for matching.
#[derive(Debug)]
pub struct Entry {
    pub lock: Arc<Lock>,
    group: Option<String>,
    operations: OperationSet,
    expires_at: Option<DateTime<Utc>>,
}

impl Entry {
    pub fn new(lock: Arc<Lock>, operations: OperationSet) -> Entry {
        Entry {
            group: lock.spec.target.group.clone(),
            expires_at: lock.spec.expires_at,
            operations,
            lock,
        }
    }

    /// Whether this lock denies `request` at `now` (its target already matched by kind,
    /// name and namespace through the index).
    fn denies(&self, request: &Request<'_>, now: DateTime<Utc>) -> bool {
        if self.expires_at.is_some_and(|at| now >= at)
            || !self.operations.contains(request.operation)
        {
            return false;
        }
        if self.group.as_deref().is_some_and(|g| g != request.group) {
            return false;
        }
        let spec = &self.lock.spec;
        let in_groups = |list: &[String]| list.iter().any(|g| request.groups.contains(g));
        let named = spec.users.iter().any(|u| u == request.username) || in_groups(&spec.groups);
        let everyone = spec.users.is_empty() && spec.groups.is_empty();
        if !everyone && !named {
            return false;
        }
        if spec.except_users.iter().any(|u| u == request.username) || in_groups(&spec.except_groups)
        {
            return false;
        }
        // The cluster's own machinery is never locked out by a lock that does not name it.
        named || machinery_reason(request.username, request.groups).is_none()
    }
}

#[derive(Debug, Default)]
struct KindScope {
    /// Every object of the kind.
    all: Vec<Arc<Entry>>,
    by_name: HashMap<String, Vec<Arc<Entry>>>,
}

#[derive(Debug, Default)]
struct Scope {
    /// The whole namespace.
    all: Vec<Arc<Entry>>,
    /// By lower-case kind.
    kinds: HashMap<String, KindScope>,
}

/// Every lock, by namespace (`""`: cluster scope), kind and name.
#[derive(Debug, Default)]
pub struct Index {
    scopes: HashMap<String, Scope>,
    len: usize,
}

impl Index {
    pub fn build(entries: impl IntoIterator<Item = Arc<Entry>>) -> Index {
        let mut index = Index::default();
        for entry in entries {
            let lock = &entry.lock;
            let scope = index
                .scopes
                .entry(lock.metadata.namespace.clone())
                .or_default();
            let target = &lock.spec.target;
            if target.kind.is_empty() {
                scope.all.push(entry.clone());
            } else {
                let kind = scope
                    .kinds
                    .entry(target.kind.to_ascii_lowercase())
                    .or_default();
                if target.name.is_empty() {
                    kind.all.push(entry.clone());
                } else {
                    kind.by_name
                        .entry(target.name.clone())
                        .or_default()
                        .push(entry.clone());
                }
            }
            index.len += 1;
        }
        index
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The lock that denies `request` at `now`, if any: the most specific one (an object's
    /// lock before its kind's, before its namespace's).
    pub fn find(&self, request: &Request<'_>, now: DateTime<Utc>) -> Option<&Arc<Entry>> {
        if self.len == 0 {
            return None;
        }
        fn first<'e>(
            entries: &'e [Arc<Entry>],
            request: &Request<'_>,
            now: DateTime<Utc>,
        ) -> Option<&'e Arc<Entry>> {
            entries.iter().find(|e| e.denies(request, now))
        }
        if let Some(scope) = self.scopes.get(request.namespace) {
            if !scope.kinds.is_empty() {
                let kind = request.kind.to_ascii_lowercase();
                if let Some(kind) = scope.kinds.get(&kind) {
                    let found = kind
                        .by_name
                        .get(request.name)
                        .and_then(|entries| first(entries, request, now))
                        .or_else(|| first(&kind.all, request, now));
                    if found.is_some() {
                        return found;
                    }
                }
            }
            if let Some(found) = first(&scope.all, request, now) {
                return Some(found);
            }
        }
        // A namespace that is frozen is frozen as a whole: its Namespace object too.
        if request.namespace.is_empty()
            && request.group.is_empty()
            && request.kind == "Namespace"
            && let Some(scope) = self.scopes.get(request.name)
        {
            return first(&scope.all, request, now);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use logistis_api::lock::{LockMetadata, LockSpec, LockTarget};

    use super::*;
    use crate::locks::validate::check_spec;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn lock(namespace: &str, name: &str, edit: impl FnOnce(&mut LockSpec)) -> Arc<Entry> {
        let mut spec = LockSpec {
            reason: "release".into(),
            ..LockSpec::default()
        };
        edit(&mut spec);
        let operations = check_spec(namespace, &spec, now() - chrono::Duration::hours(1)).unwrap();
        Arc::new(Entry::new(
            Arc::new(Lock {
                api_version: "logistis.io/v1alpha1".into(),
                kind: "Lock".into(),
                metadata: LockMetadata {
                    name: name.into(),
                    namespace: namespace.into(),
                    ..LockMetadata::default()
                },
                spec,
                status: None,
            }),
            operations,
        ))
    }

    struct Ask {
        namespace: &'static str,
        group: &'static str,
        kind: &'static str,
        name: &'static str,
        operation: Operation,
        username: &'static str,
        groups: Vec<String>,
    }

    impl Ask {
        fn update(namespace: &'static str, kind: &'static str, name: &'static str) -> Ask {
            Ask {
                namespace,
                group: if kind == "Deployment" { "apps" } else { "" },
                kind,
                name,
                operation: Operation::Update,
                username: "alice",
                groups: vec!["system:authenticated".into()],
            }
        }

        fn by(mut self, username: &'static str, groups: &[&str]) -> Ask {
            self.username = username;
            self.groups = groups.iter().map(|g| (*g).to_owned()).collect();
            self
        }

        fn op(mut self, operation: Operation) -> Ask {
            self.operation = operation;
            self
        }

        fn found<'i>(&self, index: &'i Index, at: DateTime<Utc>) -> Option<&'i str> {
            let request = Request {
                namespace: self.namespace,
                group: self.group,
                kind: self.kind,
                name: self.name,
                operation: &self.operation,
                username: self.username,
                groups: &self.groups,
            };
            index
                .find(&request, at)
                .map(|entry| entry.lock.metadata.name.as_str())
        }
    }

    #[test]
    fn a_namespace_lock_freezes_everyone_but_the_exempt() {
        let index = Index::build([lock("shop", "freeze", |s| {
            s.except_groups = vec!["sre".into()]
        })]);
        let at = now();
        assert_eq!(
            Ask::update("shop", "Deployment", "web").found(&index, at),
            Some("freeze")
        );
        assert_eq!(
            Ask::update("shop", "ConfigMap", "x").found(&index, at),
            Some("freeze")
        );
        assert_eq!(
            Ask::update("shop", "Deployment", "web")
                .by("bob", &["sre"])
                .found(&index, at),
            None
        );
        assert_eq!(
            Ask::update("other", "Deployment", "web").found(&index, at),
            None
        );
        // CONNECT is not locked unless asked for.
        assert_eq!(
            Ask::update("shop", "Pod", "web-1")
                .op(Operation::Connect)
                .found(&index, at),
            None
        );
        // The Namespace object itself.
        assert_eq!(
            Ask::update("", "Namespace", "shop")
                .op(Operation::Delete)
                .found(&index, at),
            Some("freeze")
        );
        assert_eq!(
            Ask::update("", "Namespace", "other").found(&index, at),
            None
        );
    }

    #[test]
    fn an_object_lock_leaves_its_neighbours_alone() {
        let index = Index::build([lock("shop", "web-only", |s| {
            s.target = LockTarget {
                group: Some("apps".into()),
                kind: "deployment".into(),
                name: "web".into(),
            }
        })]);
        let at = now();
        assert_eq!(
            Ask::update("shop", "Deployment", "web").found(&index, at),
            Some("web-only")
        );
        assert_eq!(
            Ask::update("shop", "Deployment", "api").found(&index, at),
            None
        );
        assert_eq!(
            Ask::update("shop", "Service", "web").found(&index, at),
            None
        );
        let mut other_group = Ask::update("shop", "Deployment", "web");
        other_group.group = "example.com";
        assert_eq!(other_group.found(&index, at), None);
    }

    #[test]
    fn the_most_specific_lock_answers() {
        let index = Index::build([
            lock("shop", "namespace", |_| {}),
            lock("shop", "kind", |s| s.target.kind = "Deployment".into()),
            lock("shop", "object", |s| {
                s.target.kind = "Deployment".into();
                s.target.name = "web".into();
            }),
        ]);
        let at = now();
        assert_eq!(
            Ask::update("shop", "Deployment", "web").found(&index, at),
            Some("object")
        );
        assert_eq!(
            Ask::update("shop", "Deployment", "api").found(&index, at),
            Some("kind")
        );
        assert_eq!(
            Ask::update("shop", "Secret", "s").found(&index, at),
            Some("namespace")
        );
    }

    #[test]
    fn listed_users_and_groups_narrow_who_is_locked() {
        let index = Index::build([lock("shop", "interns", |s| {
            s.users = vec!["alice".into()];
            s.groups = vec!["interns".into()];
            s.except_users = vec!["carol".into()];
        })]);
        let at = now();
        assert!(Ask::update("shop", "Pod", "p").found(&index, at).is_some());
        assert!(
            Ask::update("shop", "Pod", "p")
                .by("bob", &[])
                .found(&index, at)
                .is_none()
        );
        assert!(
            Ask::update("shop", "Pod", "p")
                .by("dave", &["interns"])
                .found(&index, at)
                .is_some()
        );
        // Exemption wins over membership.
        assert!(
            Ask::update("shop", "Pod", "p")
                .by("carol", &["interns"])
                .found(&index, at)
                .is_none()
        );
    }

    #[test]
    fn the_cluster_machinery_is_exempt_unless_named() {
        let everyone = Index::build([lock("shop", "freeze", |_| {})]);
        let naming_nodes = Index::build([lock("shop", "nodes-too", |s| {
            s.groups = vec!["system:nodes".into()]
        })]);
        let at = now();
        for (username, groups) in [
            ("system:node:n1", &["system:nodes"][..]),
            ("system:kube-controller-manager", &[][..]),
            ("system:kube-scheduler", &[][..]),
            (
                "system:serviceaccount:kube-system:replicaset-controller",
                &["system:serviceaccounts:kube-system"][..],
            ),
        ] {
            let ask = Ask::update("shop", "Pod", "p").by(username, groups);
            assert_eq!(ask.found(&everyone, at), None, "{username}");
        }
        let kubelet = Ask::update("shop", "Pod", "p").by("system:node:n1", &["system:nodes"]);
        assert_eq!(kubelet.found(&naming_nodes, at), Some("nodes-too"));
        let ci = Ask::update("shop", "Pod", "p").by("system:serviceaccount:shop:ci", &[]);
        assert_eq!(ci.found(&everyone, at), Some("freeze"));
    }

    #[test]
    fn an_expired_lock_stops_applying_on_time() {
        let until = now() + chrono::Duration::minutes(30);
        let index = Index::build([lock("shop", "until", |s| s.expires_at = Some(until))]);
        let ask = Ask::update("shop", "Pod", "p");
        assert_eq!(
            ask.found(&index, until - chrono::Duration::microseconds(1)),
            Some("until")
        );
        assert_eq!(ask.found(&index, until), None);
    }

    #[test]
    fn cluster_scope_locks_match_cluster_scoped_objects() {
        let index = Index::build([lock("", "admin-role", |s| {
            s.target.kind = "ClusterRole".into();
            s.target.name = "admin".into();
        })]);
        let at = now();
        assert_eq!(
            Ask::update("", "ClusterRole", "admin").found(&index, at),
            Some("admin-role")
        );
        assert_eq!(
            Ask::update("", "ClusterRole", "edit").found(&index, at),
            None
        );
        assert_eq!(
            Ask::update("shop", "ClusterRole", "admin").found(&index, at),
            None
        );
    }
}
