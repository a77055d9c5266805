//! The query API's endpoints as typed calls: paths, parameters and pagination. Lists follow
//! `continue` tokens until the requested number of changes is reached, because the server may
//! end a page early (it bounds the work of one request).

use logistis_api::{
    BisectAnswer, Blame, Diff, Event, EventList, FieldHistory, NamespaceList, VersionDetail,
    VersionList,
};

use crate::transport::{Error, QueryClient, encode};

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
    /// `/objects/{group}/{kind}/{namespace}/{name}` with `core` and `_` for the empty parts.
    pub fn path(&self) -> String {
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
        let page: EventList = client
            .get("/events", &query.params(remaining, token.as_deref()))
            .await?;
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

/// One event with its objects.
pub async fn event(client: &QueryClient, id: logistis_api::EventId) -> Result<Event, Error> {
    client.get(&format!("/events/{id}"), &[]).await
}

/// The overview; with a cluster, of that cluster only.
pub async fn namespaces(
    client: &QueryClient,
    cluster: Option<&str>,
) -> Result<NamespaceList, Error> {
    let params: Vec<(&str, String)> = cluster
        .map(|c| ("cluster", c.to_owned()))
        .into_iter()
        .collect();
    client.get("/namespaces", &params).await
}

pub async fn versions(client: &QueryClient, object: &ObjectPath) -> Result<VersionList, Error> {
    client
        .get(&format!("{}/versions", object.path()), &[])
        .await
}

pub async fn version(
    client: &QueryClient,
    object: &ObjectPath,
    number: u64,
) -> Result<VersionDetail, Error> {
    client
        .get(&format!("{}/versions/{number}", object.path()), &[])
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
        .get(&format!("{}/diff", object.path()), &params)
        .await
}

pub async fn field_history(
    client: &QueryClient,
    object: &ObjectPath,
    field: &str,
) -> Result<FieldHistory, Error> {
    client
        .get(
            &format!("{}/history", object.path()),
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
        .get(&format!("{}/bisect", object.path()), &params)
        .await
}

pub async fn blame(client: &QueryClient, object: &ObjectPath) -> Result<Blame, Error> {
    client.get(&format!("{}/blame", object.path()), &[]).await
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
        assert_eq!(object.path(), "/objects/core/Namespace/_/shop");
        let object = ObjectPath {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(object.path(), "/objects/apps/Deployment/shop/web");
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
    }
}
