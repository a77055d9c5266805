//! The history of one object under the aggregated API, namespaced where it belongs:
//! `…/namespaces/{ns}/changes/{kind}.{group}:{name}/{view}` (cluster-scoped objects:
//! `…/changes/{kind}.{group}:{name}/{view}`), `{view}` one of `versions`, `versions/{n}`,
//! `diff`, `history`, `bisect`, `blame`. kube-apiserver authorizes these as `get` on the
//! subresource `changes/{view}` in the namespace (its RequestInfo reads the object as the
//! name), which the shipped ClusterRole grants with `changes`; Logistis then checks `get
//! changes` there (and `get secrets` for a Secret) and answers exactly as the JSON API's
//! `/api/v1/objects/…` does — the request is handed to those handlers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use super::status::KubeError;
use super::{Context, VIEWS};
use crate::auth::Caller;
use crate::auth::verdict::is_secret;

/// `{kind}.{group}:{name}` (or `{kind}:{name}` for the core group). The kind has no dots
/// and the group no colon, so the first `:` ends the kind and group whatever the name holds.
/// `core` names the core group as in the JSON API's paths; it is read as the empty group
/// here, before any check, so that `Secret.core:x` is a Secret to the authorization too.
pub fn parse_object(object: &str) -> Option<(String, String, String)> {
    let (kind_group, name) = object.split_once(':')?;
    let (kind, group) = kind_group.split_once('.').unwrap_or((kind_group, ""));
    let group = if group == "core" { "" } else { group };
    (!kind.is_empty() && !name.is_empty())
        .then(|| (kind.to_owned(), group.to_owned(), name.to_owned()))
}

async fn answer(
    context: Arc<Context>,
    caller: Caller,
    namespace: String,
    object: String,
    rest: String,
    query: Option<String>,
) -> Result<Response, KubeError> {
    let (kind, group, name) = parse_object(&object).ok_or_else(|| {
        KubeError::bad_request(format!(
            "{object:?}: name the object as KIND.GROUP:NAME (e.g. Deployment.apps:web, ConfigMap:settings)"
        ))
    })?;
    let view = rest.split('/').next().unwrap_or_default();
    if !VIEWS.iter().any(|(v, _)| *v == view) {
        return Err(KubeError::not_found(format!(
            "no such view {view:?} of a change history: use one of versions, diff, history, bisect, blame"
        )));
    }
    if let Err(missing) = caller
        .may_read_object("get", &namespace, is_secret(&group, &kind))
        .await?
    {
        return Err(KubeError::forbidden(caller.name(), &missing, &object));
    }
    let group_segment = if group.is_empty() {
        "core"
    } else {
        group.as_str()
    };
    let namespace_segment = if namespace.is_empty() {
        "_"
    } else {
        namespace.as_str()
    };
    let mut uri =
        format!("/api/v1/objects/{group_segment}/{kind}/{namespace_segment}/{name}/{rest}");
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        uri = format!("{uri}?{query}");
    }
    let request = Request::get(uri)
        .body(Body::empty())
        .map_err(|_| KubeError::bad_request("the object name cannot be used in a path"))?;
    let response = crate::http::objects::routes()
        .with_state(context.app.clone())
        .oneshot(request)
        .await
        .map_err(KubeError::internal)?;
    if response.status().is_success() {
        return Ok(response);
    }
    // The JSON API's error body becomes a Status with the same code.
    let code = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<logistis_api::ErrorBody>(&body)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::BAD_REQUEST => "BadRequest",
        _ => "InternalError",
    };
    Err(KubeError::new(code, reason, message))
}

pub async fn namespaced(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path((namespace, object, rest)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    answer(context, caller.0, namespace, object, rest, query)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn cluster(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path((object, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    answer(context, caller.0, String::new(), object, rest, query)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::parse_object;

    #[test]
    fn object_names_split_at_the_first_colon() {
        let s = |a: &str, b: &str, c: &str| Some((a.to_owned(), b.to_owned(), c.to_owned()));
        assert_eq!(
            parse_object("Deployment.apps:web"),
            s("Deployment", "apps", "web")
        );
        assert_eq!(
            parse_object("ConfigMap:settings.v2"),
            s("ConfigMap", "", "settings.v2")
        );
        assert_eq!(
            parse_object("ClusterRole.rbac.authorization.k8s.io:system:auth-delegator"),
            s(
                "ClusterRole",
                "rbac.authorization.k8s.io",
                "system:auth-delegator"
            )
        );
        assert_eq!(
            parse_object("Secret.core:db"),
            s("Secret", "", "db"),
            "the core group by its JSON API name is still the core group"
        );
        assert_eq!(parse_object("web"), None);
        assert_eq!(parse_object(":web"), None);
    }
}
