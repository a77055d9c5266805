//! The authorization table a test fills: who (a user or a group) may do which verbs on which
//! resources (in which namespaces, optionally only some names) or non-resource URLs. It
//! answers both the stand-in's own requests and the SubjectAccessReviews Logistis posts, so a
//! test states the cluster's RBAC once. `system:masters` may do everything, as in a cluster.
//!
//! Rules follow RBAC's matching: `*` matches any verb, group, resource or namespace;
//! `resource/subresource` must be named as such; non-resource URLs match exactly or by a
//! trailing `*` prefix.

use super::requestinfo::RequestInfo;

/// The group that bypasses authorization.
pub const SYSTEM_MASTERS: &str = "system:masters";

/// Who a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    User(String),
    Group(String),
}

impl Subject {
    pub fn user(name: &str) -> Subject {
        Subject::User(name.to_owned())
    }

    pub fn group(name: &str) -> Subject {
        Subject::Group(name.to_owned())
    }
}

/// Where a resource rule applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A ClusterRoleBinding: every namespace and cluster-scoped objects.
    Cluster,
    /// A RoleBinding in one namespace.
    Namespace(String),
}

/// One rule of the table (a role's rule, already bound to a subject).
#[derive(Clone, Debug)]
pub struct Rule {
    pub subject: Subject,
    pub verbs: Vec<String>,
    pub kind: RuleKind,
}

#[derive(Clone, Debug)]
pub enum RuleKind {
    Resource {
        groups: Vec<String>,
        /// `resource` or `resource/subresource`, or `*`.
        resources: Vec<String>,
        /// Empty: every name.
        names: Vec<String>,
        scope: Scope,
    },
    NonResource {
        urls: Vec<String>,
    },
}

/// The attributes of one authorization question.
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    pub user: String,
    pub groups: Vec<String>,
    pub verb: String,
    pub resource_request: bool,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

impl Attributes {
    /// The question kube-apiserver asks about a request.
    pub fn of_request(user: &str, groups: &[String], info: &RequestInfo) -> Attributes {
        Attributes {
            user: user.to_owned(),
            groups: groups.to_vec(),
            verb: info.verb.clone(),
            resource_request: info.is_resource_request,
            group: info.api_group.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            path: info.path.clone(),
        }
    }

    /// kube-apiserver's wording of a refusal, e.g. `User "bob" cannot list resource
    /// "changes" in API group "logistis.io" in the namespace "shop"`.
    pub fn refusal(&self) -> String {
        if !self.resource_request {
            return format!(
                "User \"{}\" cannot {} path \"{}\"",
                self.user, self.verb, self.path
            );
        }
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace \"{}\"", self.namespace)
        };
        format!(
            "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            self.user, self.verb, self.group
        )
    }
}

/// The table.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    rules: Vec<Rule>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn matches(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| p == "*" || p == value)
}

impl Rbac {
    /// The defaults every cluster has: discovery for every authenticated user
    /// (`system:discovery`, `system:public-info-viewer`).
    pub fn with_defaults() -> Rbac {
        let mut rbac = Rbac::default();
        rbac.allow_urls(
            Subject::group("system:authenticated"),
            &["get"],
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/version",
                "/healthz",
                "/livez",
                "/readyz",
                "/openapi/*",
            ],
        );
        rbac
    }

    /// Add a rule.
    pub fn push(&mut self, rule: Rule) -> &mut Rbac {
        self.rules.push(rule);
        self
    }

    /// `verbs` on `resources` of API `group` ("" for core), bound at `scope`.
    pub fn allow(
        &mut self,
        subject: Subject,
        verbs: &[&str],
        group: &str,
        resources: &[&str],
        scope: Scope,
    ) -> &mut Rbac {
        self.allow_names(subject, verbs, group, resources, &[], scope)
    }

    /// As [`Rbac::allow`], restricted to these object names (RBAC `resourceNames`).
    pub fn allow_names(
        &mut self,
        subject: Subject,
        verbs: &[&str],
        group: &str,
        resources: &[&str],
        names: &[&str],
        scope: Scope,
    ) -> &mut Rbac {
        self.push(Rule {
            subject,
            verbs: strings(verbs),
            kind: RuleKind::Resource {
                groups: vec![group.to_owned()],
                resources: strings(resources),
                names: strings(names),
                scope,
            },
        })
    }

    /// `verbs` on non-resource URLs (`/metrics`, `/apis/*`).
    pub fn allow_urls(&mut self, subject: Subject, verbs: &[&str], urls: &[&str]) -> &mut Rbac {
        self.push(Rule {
            subject,
            verbs: strings(verbs),
            kind: RuleKind::NonResource {
                urls: strings(urls),
            },
        })
    }

    /// What `system:auth-delegator` grants: TokenReviews and SubjectAccessReviews.
    pub fn auth_delegator(&mut self, subject: Subject) -> &mut Rbac {
        self.allow(
            subject.clone(),
            &["create"],
            "authentication.k8s.io",
            &["tokenreviews"],
            Scope::Cluster,
        )
        .allow(
            subject,
            &["create"],
            "authorization.k8s.io",
            &["subjectaccessreviews"],
            Scope::Cluster,
        )
    }

    /// What `extension-apiserver-authentication-reader` grants: reading that ConfigMap.
    pub fn authentication_reader(&mut self, subject: Subject) -> &mut Rbac {
        self.allow_names(
            subject,
            &["get", "list", "watch"],
            "",
            &["configmaps"],
            &["extension-apiserver-authentication"],
            Scope::Namespace("kube-system".into()),
        )
    }

    /// Whether the table allows the question.
    pub fn allows(&self, attributes: &Attributes) -> bool {
        if attributes.groups.iter().any(|g| g == SYSTEM_MASTERS) {
            return true;
        }
        self.rules
            .iter()
            .any(|rule| self.rule_allows(rule, attributes))
    }

    fn rule_allows(&self, rule: &Rule, a: &Attributes) -> bool {
        let bound = match &rule.subject {
            Subject::User(name) => *name == a.user,
            Subject::Group(name) => a.groups.iter().any(|g| g == name),
        };
        if !bound || !matches(&rule.verbs, &a.verb) {
            return false;
        }
        match (&rule.kind, a.resource_request) {
            (RuleKind::NonResource { urls }, false) => urls.iter().any(|url| {
                url == "*"
                    || *url == a.path
                    || url
                        .strip_suffix('*')
                        .is_some_and(|prefix| a.path.starts_with(prefix))
            }),
            (
                RuleKind::Resource {
                    groups,
                    resources,
                    names,
                    scope,
                },
                true,
            ) => {
                let in_scope = match scope {
                    Scope::Cluster => true,
                    Scope::Namespace(ns) => !a.namespace.is_empty() && *ns == a.namespace,
                };
                let resource = if a.subresource.is_empty() {
                    a.resource.clone()
                } else {
                    format!("{}/{}", a.resource, a.subresource)
                };
                let resource_matches = resources.iter().any(|r| {
                    r == "*"
                        || *r == resource
                        || r.strip_prefix("*/").is_some_and(|sub| sub == a.subresource)
                });
                in_scope
                    && matches(groups, &a.group)
                    && resource_matches
                    && (names.is_empty() || names.contains(&a.name))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(user: &str, verb: &str, resource: &str, namespace: &str) -> Attributes {
        Attributes {
            user: user.into(),
            groups: vec!["system:authenticated".into()],
            verb: verb.into(),
            resource_request: true,
            group: "logistis.io".into(),
            resource: resource.into(),
            namespace: namespace.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn a_role_binding_allows_its_namespace_only() {
        let mut rbac = Rbac::with_defaults();
        rbac.allow(
            Subject::user("alice"),
            &["get", "list", "watch"],
            "logistis.io",
            &["changes"],
            Scope::Namespace("a".into()),
        );
        assert!(rbac.allows(&ask("alice", "list", "changes", "a")));
        assert!(!rbac.allows(&ask("alice", "list", "changes", "b")));
        assert!(
            !rbac.allows(&ask("alice", "list", "changes", "")),
            "cluster scope"
        );
        assert!(!rbac.allows(&ask("alice", "delete", "changes", "a")));
        assert!(!rbac.allows(&ask("bob", "list", "changes", "a")));
        let mut history = ask("alice", "get", "changes", "a");
        history.subresource = "history".into();
        assert!(!rbac.allows(&history), "subresources are named separately");
        let mut masters = ask("root", "delete", "anything", "");
        masters.groups.push(SYSTEM_MASTERS.into());
        assert!(rbac.allows(&masters));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let mut rbac = Rbac::with_defaults();
        rbac.allow_urls(Subject::user("prometheus"), &["get"], &["/metrics"]);
        let url = |user: &str, path: &str| Attributes {
            user: user.into(),
            groups: vec!["system:authenticated".into()],
            verb: "get".into(),
            path: path.into(),
            ..Attributes::default()
        };
        assert!(rbac.allows(&url("prometheus", "/metrics")));
        assert!(!rbac.allows(&url("alice", "/metrics")));
        assert!(rbac.allows(&url("alice", "/apis/logistis.io/v1alpha1")));
        assert!(!rbac.allows(&url("alice", "/metrics/extra")));
        assert_eq!(
            url("alice", "/metrics").refusal(),
            "User \"alice\" cannot get path \"/metrics\""
        );
        assert_eq!(
            ask("alice", "list", "changes", "b").refusal(),
            "User \"alice\" cannot list resource \"changes\" in API group \"logistis.io\" in the namespace \"b\""
        );
    }
}
