//! Authorization by `SubjectAccessReview`: may this user do this verb on this resource in
//! this namespace (or on this non-resource URL)? Answers cached for [`super::CACHE_TTL`]
//! (kube-apiserver's delegated authorizer caches allow and deny for 10 s each).

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::cache::TtlCache;
use super::{CACHE_TTL, Error, User};

/// What is asked about (the attributes of a SubjectAccessReview).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Question {
    Resource {
        verb: String,
        group: String,
        resource: String,
        subresource: String,
        /// Empty: cluster scope.
        namespace: String,
        name: String,
    },
    Url {
        verb: String,
        path: String,
    },
}

impl Question {
    /// `verb` on `resource` of `group` in `namespace` ("" = at cluster scope).
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str) -> Question {
        Question::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.into(),
            name: String::new(),
        }
    }

    /// What the refusal says is missing, e.g. `list changes.logistis.io in namespace shop`.
    pub fn describe(&self) -> String {
        match self {
            Question::Resource {
                verb,
                group,
                resource,
                subresource,
                namespace,
                ..
            } => {
                let mut what = resource.clone();
                if !subresource.is_empty() {
                    what = format!("{what}/{subresource}");
                }
                if !group.is_empty() {
                    what = format!("{what}.{group}");
                }
                if namespace.is_empty() {
                    format!("{verb} {what} at cluster scope")
                } else {
                    format!("{verb} {what} in namespace {namespace}")
                }
            }
            Question::Url { verb, path } => format!("{verb} {path}"),
        }
    }
}

type Key = (String, Vec<String>, BTreeMap<String, Vec<String>>, Question);

#[derive(Debug)]
pub struct Authorizer {
    api: Api<SubjectAccessReview>,
    cache: TtlCache<Key, bool>,
}

impl Authorizer {
    pub fn new(client: kube::Client, capacity: usize) -> Authorizer {
        Authorizer {
            api: Api::all(client),
            cache: TtlCache::new(capacity),
        }
    }

    pub async fn allowed(&self, user: &User, question: &Question) -> Result<bool, Error> {
        let key = (
            user.name.clone(),
            user.groups.clone(),
            user.extra.clone(),
            question.clone(),
        );
        if let Some(answer) = self.cache.get(&key, Instant::now()) {
            return Ok(answer);
        }
        let (resource_attributes, non_resource_attributes) = match question {
            Question::Resource {
                verb,
                group,
                resource,
                subresource,
                namespace,
                name,
            } => (
                Some(ResourceAttributes {
                    verb: Some(verb.clone()),
                    group: Some(group.clone()),
                    resource: Some(resource.clone()),
                    subresource: (!subresource.is_empty()).then(|| subresource.clone()),
                    namespace: (!namespace.is_empty()).then(|| namespace.clone()),
                    name: (!name.is_empty()).then(|| name.clone()),
                    ..ResourceAttributes::default()
                }),
                None,
            ),
            Question::Url { verb, path } => (
                None,
                Some(NonResourceAttributes {
                    verb: Some(verb.clone()),
                    path: Some(path.clone()),
                }),
            ),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone().into_iter().collect()),
                resource_attributes,
                non_resource_attributes,
            },
            ..SubjectAccessReview::default()
        };
        let answer = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|source| Error::Review {
                review: "SubjectAccessReview",
                source,
            })?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.cache.insert(key, allowed, CACHE_TTL, Instant::now());
        Ok(allowed)
    }
}
