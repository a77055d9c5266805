//! The query API's endpoints as typed calls: paths, parameters and pagination, for both
//! routes. Through the Kubernetes API the aggregated resources answer: `changes` (namespaced,
//! or across namespaces; filters as field selectors), `namespacesummaries`, and the history
//! views as subresources `namespaces/{ns}/changes/{Kind.group:name}/{view}`; directly, the
//! JSON API's `/events`, `/namespaces` and `/objects/…`. Both answer with the same types here.
//! Lists follow `continue` tokens until the requested number of changes is reached, because
//! the server may end a page early (it bounds the work of one request).

use logistis_api::{
    BisectAnswer, Blame, Diff, Event, EventList, FieldHistory, NamespaceList, NamespaceSummary,
    VersionDetail, VersionList,
};
use serde::Deserialize;

use crate::transport::{Error, QueryClient, Route, encode};

/// The server answers at most this many events per page.
pub const MAX_PAGE: usize = 1000;

/// Filters of `GET /events`; `None` and empty strings are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub cluster: Option<String>,
    /// `_` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `core` for the core group.
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub operation: Option<String>,
    /// Confirmation statuses, comma-separated (`confirmed,observed`).
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// 0: everything.
    pub limit: usize,
}

impl EventQuery {
    fn params(
        &self,
        page_size: usize,
        continue_token: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let value = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            ("cluster", value(&self.cluster)),
            ("namespace", value(&self.namespace)),
            ("group", value(&self.group)),
            ("kind", value(&self.kind)),
            ("name", value(&self.name)),
            ("user", value(&self.user)),
            ("operation", value(&self.operation)),
            ("status", value(&self.status)),
            ("since", value(&self.since)),
            ("until", value(&self.until)),
            ("limit", page_size.to_string()),
            ("continue", continue_token.unwrap_or_default().to_owned()),
        ]
    }

    /// The aggregated API's path and parameters: the namespace in the path (`_`, cluster
    /// scope, as `metadata.namespace=`), the object filters as a field selector, the rest as
    /// the parameters the server reads beside it.
    fn aggregated(
        &self,
        page_size: usize,
        continue_token: Option<&str>,
    ) -> (String, Vec<(&'static str, String)>) {
        let mut selector = Vec::new();
        let path = match self.namespace.as_deref() {
            None => "/changes".to_owned(),
            Some("_") => {
                selector.push("metadata.namespace=".to_owned());
                "/changes".to_owned()
            }
            Some(ns) => format!("/namespaces/{}/changes", encode(ns)),
        };
        for (field, value) in [
            ("resource.group", &self.group),
            ("resource.kind", &self.kind),
            ("resource.name", &self.name),
            ("user.username", &self.user),
            ("operation", &self.operation),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                selector.push(format!("{field}={}", escape_selector(value)));
            }
        }
        let value = |v: &Option<String>| v.clone().unwrap_or_default();
        let params = vec![
            ("fieldSelector", selector.join(",")),
            ("status", value(&self.status)),
            ("since", value(&self.since)),
            ("until", value(&self.until)),
            ("limit", page_size.to_string()),
            ("continue", continue_token.unwrap_or_default().to_owned()),
        ];
        (path, params)
    }
}

/// A field selector value with `\`, `,` and `=` escaped, as apimachinery's `EscapeValue`.
fn escape_selector(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A `ChangeList`: Kubernetes list metadata around the events (a `Change` is an event with
/// `apiVersion`, `kind` and `metadata`, which the event type ignores).
#[derive(Deserialize)]
struct ChangeList {
    #[serde(default)]
    metadata: ListMeta,
    items: Vec<Event>,
}

#[derive(Default, Deserialize)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

/// A `NamespaceSummaryList`.
#[derive(Deserialize)]
struct SummaryList {
    items: Vec<Summary>,
}

#[derive(Deserialize)]
struct Summary {
    #[serde(default)]
    cluster: String,
    namespace: String,
    changes: u64,
    latest: Option<Event>,
}

/// One object, addressed as the history endpoints want it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath {
    /// Empty for the core group.
    pub group: String,
    pub kind: String,
    /// Empty for a cluster-scoped object.
    pub namespace: String,
    pub name: String,
}

impl ObjectPath {
    /// The path of the object's history on the route: see [`ObjectPath::json_path`] and
    /// [`ObjectPath::aggregated_path`].
    pub fn path(&self, route: Route) -> String {
        match route {
            Route::Aggregated => self.aggregated_path(),
            Route::Direct => self.json_path(),
        }
    }

    /// `/namespaces/{ns}/changes/{Kind}.{group}:{name}` (`{Kind}:{name}` for the core
    /// group; without the namespace part for a cluster-scoped object). `:` stays as it is:
    /// it is allowed in a path segment, and names (`system:auth-delegator`) carry it.
    pub fn aggregated_path(&self) -> String {
        let kind = if self.group.is_empty() {
            encode(&self.kind)
        } else {
            format!("{}.{}", encode(&self.kind), encode(&self.group))
        };
        let object = format!("{kind}:{}", encode(&self.name).replace("%3A", ":"));
        if self.namespace.is_empty() {
            format!("/changes/{object}")
        } else {
            format!("/namespaces/{}/changes/{object}", encode(&self.namespace))
        }
    }

    /// `/objects/{group}/{kind}/{namespace}/{name}` with `core` and `_` for the empty parts.
    pub fn json_path(&self) -> String {
        let or = |value: &str, empty: &'static str| {
            if value.is_empty() {
                empty.to_owned()
            } else {
                encode(value)
            }
        };
        format!(
            "/objects/{}/{}/{}/{}",
            or(&self.group, "core"),
            encode(&self.kind),
            or(&self.namespace, "_"),
            encode(&self.name)
        )
    }
}

/// Newest first, up to `query.limit` events (all with 0), following `continue` tokens. The
/// answer's `continue` is the server's token when more remain.
pub async fn events(client: &QueryClient, query: &EventQuery) -> Result<EventList, Error> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let remaining = match query.limit {
            0 => MAX_PAGE,
            limit => (limit - items.len()).min(MAX_PAGE),
        };
        let page = match client.route() {
            Route::Direct => {
                client
                    .get::<EventList>("/events", &query.params(remaining, token.as_deref()))
                    .await?
            }
            Route::Aggregated => {
                let (path, params) = query.aggregated(remaining, token.as_deref());
                let list: ChangeList = client.get(&path, &params).await?;
                EventList {
                    items: list.items,
                    continue_token: list.metadata.continue_token.filter(|t| !t.is_empty()),
                }
            }
        };
        items.extend(page.items);
        token = page.continue_token;
        let full = query.limit != 0 && items.len() >= query.limit;
        if full || token.is_none() {
            return Ok(EventList {
                items,
                continue_token: token,
            });
        }
    }
}

/// One event with its objects; `namespace` is the event's (empty: cluster-scoped), where
/// the aggregated API files it.
pub async fn event(
    client: &QueryClient,
    namespace: &str,
    id: logistis_api::EventId,
) -> Result<Event, Error> {
    match client.route() {
        Route::Direct => client.get(&format!("/events/{id}"), &[]).await,
        Route::Aggregated if namespace.is_empty() => {
            client.get(&format!("/changes/{id}"), &[]).await
        }
        Route::Aggregated => {
            let path = format!("/namespaces/{}/changes/{id}", encode(namespace));
            client.get(&path, &[]).await
        }
    }
}

/// The overview; with a cluster, of that cluster only; through the Kubernetes API, of the
/// namespaces the user may read.
pub async fn namespaces(
    client: &QueryClient,
    cluster: Option<&str>,
) -> Result<NamespaceList, Error> {
    match client.route() {
        Route::Direct => {
            let params: Vec<(&str, String)> = cluster
                .map(|c| ("cluster", c.to_owned()))
                .into_iter()
                .collect();
            client.get("/namespaces", &params).await
        }
        Route::Aggregated => {
            let list: SummaryList = client.get("/namespacesummaries", &[]).await?;
            Ok(NamespaceList {
                items: list
                    .items
                    .into_iter()
                    .filter(|s| cluster.is_none_or(|c| c == s.cluster))
                    .map(|s| NamespaceSummary {
                        cluster: s.cluster,
                        namespace: s.namespace,
                        events: s.changes,
                        latest: s.latest,
                    })
                    .collect(),
            })
        }
    }
}

pub async fn versions(client: &QueryClient, object: &ObjectPath) -> Result<VersionList, Error> {
    client
        .get(&format!("{}/versions", object.path(client.route())), &[])
        .await
}

pub async fn version(
    client: &QueryClient,
    object: &ObjectPath,
    number: u64,
) -> Result<VersionDetail, Error> {
    client
        .get(
            &format!("{}/versions/{number}", object.path(client.route())),
            &[],
        )
        .await
}

pub async fn diff(
    client: &QueryClient,
    object: &ObjectPath,
    from: Option<u64>,
    to: Option<u64>,
    field: Option<&str>,
) -> Result<Diff, Error> {
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let params = [
        ("from", number(from)),
        ("to", number(to)),
        ("path", field.unwrap_or_default().to_owned()),
    ];
    client
        .get(&format!("{}/diff", object.path(client.route())), &params)
        .await
}

pub async fn field_history(
    client: &QueryClient,
    object: &ObjectPath,
    field: &str,
) -> Result<FieldHistory, Error> {
    client
        .get(
            &format!("{}/history", object.path(client.route())),
            &[("path", field.to_owned())],
        )
        .await
}

pub async fn bisect(
    client: &QueryClient,
    object: &ObjectPath,
    field: &str,
    value: &str,
) -> Result<BisectAnswer, Error> {
    let params = [("path", field.to_owned()), ("value", value.to_owned())];
    client
        .get(&format!("{}/bisect", object.path(client.route())), &params)
        .await
}

pub async fn blame(client: &QueryClient, object: &ObjectPath) -> Result<Blame, Error> {
    client
        .get(&format!("{}/blame", object.path(client.route())), &[])
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::query_string;

    #[test]
    fn object_paths_spell_out_core_and_cluster_scope() {
        let object = ObjectPath {
            group: String::new(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: "shop".into(),
        };
        assert_eq!(object.json_path(), "/objects/core/Namespace/_/shop");
        assert_eq!(object.aggregated_path(), "/changes/Namespace:shop");
        let object = ObjectPath {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(object.json_path(), "/objects/apps/Deployment/shop/web");
        assert_eq!(
            object.aggregated_path(),
            "/namespaces/shop/changes/Deployment.apps:web"
        );
        let role = ObjectPath {
            group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            namespace: String::new(),
            name: "system:auth-delegator".into(),
        };
        assert_eq!(
            role.aggregated_path(),
            "/changes/ClusterRole.rbac.authorization.k8s.io:system:auth-delegator"
        );
    }

    #[test]
    fn event_queries_leave_out_what_is_not_asked() {
        let query = EventQuery {
            namespace: Some("shop".into()),
            group: Some("core".into()),
            kind: Some("Pod".into()),
            limit: 20,
            ..EventQuery::default()
        };
        assert_eq!(
            query_string(&query.params(20, None)),
            "?namespace=shop&group=core&kind=Pod&limit=20"
        );
        assert_eq!(
            query_string(&query.params(5, Some("djEu"))),
            "?namespace=shop&group=core&kind=Pod&limit=5&continue=djEu"
        );
        let (path, params) = query.aggregated(20, None);
        assert_eq!(path, "/namespaces/shop/changes");
        assert_eq!(
            query_string(&params),
            "?fieldSelector=resource.group%3Dcore%2Cresource.kind%3DPod&limit=20"
        );
        let cluster = EventQuery {
            namespace: Some("_".into()),
            user: Some("a=b".into()),
            ..EventQuery::default()
        };
        let (path, params) = cluster.aggregated(5, Some("djEu"));
        assert_eq!(path, "/changes");
        assert_eq!(
            query_string(&params),
            "?fieldSelector=metadata.namespace%3D%2Cuser.username%3Da%5C%3Db&limit=5&continue=djEu"
        );
    }
}
