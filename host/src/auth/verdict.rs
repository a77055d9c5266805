//! What a handler receives: the [`Caller`] (who, and a way to ask what they may do) and the
//! [`Visibility`] it computes for reads — which namespaces' changes, whether cluster-scoped
//! objects' changes, and where Secrets' changes too. Handlers filter with it; `store` only
//! ever sees the filters.

use std::collections::BTreeSet;

use super::{Auth, Error, Question, User};

/// The API group of Logistis' aggregated API and the resource rights are asked about.
pub const GROUP: &str = "logistis.io";
pub const CHANGES: &str = "changes";

/// An authenticated caller (or anyone, when authentication is off).
#[derive(Debug, Clone)]
pub struct Caller {
    auth: Auth,
    user: Option<User>,
}

/// Which changes a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    /// Every namespace and cluster-scoped objects.
    pub cluster: bool,
    /// The namespaces allowed when not `cluster`.
    pub namespaces: BTreeSet<String>,
    /// Secrets' changes everywhere visible.
    pub secrets_everywhere: bool,
    /// The namespaces whose Secrets' changes are visible when not `secrets_everywhere`.
    pub secrets_in: BTreeSet<String>,
}

impl Visibility {
    pub fn everything() -> Visibility {
        Visibility {
            cluster: true,
            namespaces: BTreeSet::new(),
            secrets_everywhere: true,
            secrets_in: BTreeSet::new(),
        }
    }

    /// Whether a change of an object in `namespace` ("" = cluster-scoped) is visible;
    /// `secret` for a core `Secret`.
    pub fn allows(&self, namespace: &str, secret: bool) -> bool {
        let namespace_visible = if namespace.is_empty() {
            self.cluster
        } else {
            self.cluster || self.namespaces.contains(namespace)
        };
        namespace_visible
            && (!secret || self.secrets_everywhere || self.secrets_in.contains(namespace))
    }

    /// Whether a namespace's changes are visible at all.
    pub fn namespace(&self, namespace: &str) -> bool {
        self.allows(namespace, false)
    }
}

/// Whether the object is a core `Secret` (their changes need `get secrets` too).
pub fn is_secret(group: &str, kind: &str) -> bool {
    group.is_empty() && kind.eq_ignore_ascii_case("secret")
}

impl Caller {
    pub fn new(auth: Auth, user: User) -> Caller {
        Caller {
            auth,
            user: Some(user),
        }
    }

    /// Anyone, with every right (authentication off).
    pub fn unrestricted() -> Caller {
        Caller {
            auth: Auth::disabled(),
            user: None,
        }
    }

    /// The user, when authenticated.
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// For logs: the user name, or `anonymous (authentication off)`.
    pub fn name(&self) -> &str {
        self.user
            .as_ref()
            .map_or("anonymous (authentication off)", |u| u.name.as_str())
    }

    pub async fn may(&self, question: &Question) -> Result<bool, Error> {
        match &self.user {
            None => Ok(true),
            Some(user) => self.auth.allowed(user, question).await,
        }
    }

    /// `verb` on changes in `namespace` ("" = cluster scope).
    pub async fn may_changes(&self, verb: &str, namespace: &str) -> Result<bool, Error> {
        self.may(&Question::resource(verb, GROUP, CHANGES, namespace))
            .await
    }

    /// Whether a change of one object may be read with `verb`: changes in its namespace (at
    /// cluster scope for cluster-scoped objects) and, for a Secret, `get secrets` there.
    /// `Err(question)` names what is missing.
    pub async fn may_read_object(
        &self,
        verb: &str,
        namespace: &str,
        secret: bool,
    ) -> Result<Result<(), Question>, Error> {
        let changes = Question::resource(verb, GROUP, CHANGES, namespace);
        if !self.may(&changes).await? {
            return Ok(Err(changes));
        }
        if secret {
            let secrets = Question::resource("get", "", "secrets", namespace);
            if !self.may(&secrets).await? {
                return Ok(Err(secrets));
            }
        }
        Ok(Ok(()))
    }

    /// Which of `candidates` (namespaces) the caller may `verb` changes in: one cluster-scope
    /// question first, then one per namespace (cached); the same for Secrets.
    pub async fn visibility(
        &self,
        verb: &str,
        candidates: impl IntoIterator<Item = String>,
    ) -> Result<Visibility, Error> {
        if self.user.is_none() {
            return Ok(Visibility::everything());
        }
        let candidates: BTreeSet<String> =
            candidates.into_iter().filter(|ns| !ns.is_empty()).collect();
        let cluster = self.may_changes(verb, "").await?;
        let mut namespaces = BTreeSet::new();
        if !cluster {
            for namespace in &candidates {
                if self.may_changes(verb, namespace).await? {
                    namespaces.insert(namespace.clone());
                }
            }
        }
        let visible: Vec<&String> = if cluster {
            candidates.iter().collect()
        } else {
            namespaces.iter().collect()
        };
        let secrets_everywhere = self
            .may(&Question::resource("get", "", "secrets", ""))
            .await?;
        let mut secrets_in = BTreeSet::new();
        if !secrets_everywhere {
            for namespace in visible {
                if self
                    .may(&Question::resource("get", "", "secrets", namespace))
                    .await?
                {
                    secrets_in.insert(namespace.clone());
                }
            }
        }
        Ok(Visibility {
            cluster,
            namespaces,
            secrets_everywhere,
            secrets_in,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_needs_the_namespace_and_for_secrets_the_secret_right() {
        let visibility = Visibility {
            cluster: false,
            namespaces: ["a".to_owned(), "c".to_owned()].into(),
            secrets_everywhere: false,
            secrets_in: ["c".to_owned()].into(),
        };
        assert!(visibility.allows("a", false));
        assert!(!visibility.allows("a", true), "no get secrets in a");
        assert!(visibility.allows("c", true));
        assert!(!visibility.allows("b", false));
        assert!(
            !visibility.allows("", false),
            "cluster-scoped needs cluster scope"
        );
        assert!(Visibility::everything().allows("", true));
        assert!(is_secret("", "Secret") && !is_secret("example.com", "Secret"));
    }
}
