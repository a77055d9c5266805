//! The aggregated API `logistis.io/v1alpha1`, served on the query listener for the
//! Kubernetes aggregation layer (an `APIService`, as metrics-server is served):
//!
//! | path under `/apis/logistis.io/v1alpha1` | kube-apiserver authorizes | answers |
//! |---|---|---|
//! | `namespaces/{ns}/changes` | list/watch `changes` in ns | the changes there ([`changes`]) |
//! | `changes` | list/watch `changes` (cluster) | every visible change |
//! | `namespaces/{ns}/changes/{id}`, `changes/{id}` | get `changes` | one change |
//! | `namespaces/{ns}/changes/{Kind.group:name}/{view}` | get `changes/{view}` | history ([`history`]) |
//! | `namespacesummaries` | list `namespacesummaries` | per-namespace overview ([`overview`]) |
//! | `namespaces/{ns}/locks[/{name}]` | create, get, list, watch, delete `locks` in ns | freezes ([`locks`]) |
//! | `locks[/{name}]` | the same at cluster scope | cluster-scope locks; a list/watch: every lock |
//!
//! plus discovery ([`discovery`]). Every handler receives the [`Caller`] that
//! [`authenticate`] put in the request and checks what it reads with it
//! (SubjectAccessReview, cached): lists filter, single reads answer 403 with a `Status`.

pub mod changes;
pub mod discovery;
pub mod history;
pub mod locks;
pub mod overview;
pub mod status;
pub mod table;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use self::status::KubeError;
use super::AppState;
use crate::auth::{Auth, Caller, Question};
use crate::tls::PeerCertificates;

pub const GROUP: &str = "logistis.io";
pub const VERSION: &str = "v1alpha1";
/// The history views (subresources of `changes`) and the kind each answers with.
pub const VIEWS: &[(&str, &str)] = &[
    ("versions", "VersionList"),
    ("diff", "Diff"),
    ("history", "FieldHistory"),
    ("bisect", "BisectAnswer"),
    ("blame", "Blame"),
];

/// What the aggregated handlers share.
#[derive(Debug)]
pub struct Context {
    pub app: AppState,
    /// Ends open watches on shutdown.
    pub shutdown: CancellationToken,
}

/// The routes under `/apis`.
pub fn routes(context: Arc<Context>) -> Router {
    const BASE: &str = "/apis/logistis.io/v1alpha1";
    Router::new()
        .route("/apis", get(discovery::group_list))
        .route("/apis/logistis.io", get(discovery::api_group))
        .route(BASE, get(discovery::resources))
        .route(&format!("{BASE}/changes"), get(changes::cluster_list))
        .route(
            &format!("{BASE}/changes/{{name}}"),
            get(changes::cluster_get),
        )
        .route(
            &format!("{BASE}/changes/{{object}}/{{*rest}}"),
            get(history::cluster),
        )
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/changes"),
            get(changes::namespaced_list),
        )
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/changes/{{name}}"),
            get(changes::namespaced_get),
        )
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/changes/{{object}}/{{*rest}}"),
            get(history::namespaced),
        )
        .route(&format!("{BASE}/namespacesummaries"), get(overview::list))
        .route(
            &format!("{BASE}/locks"),
            get(locks::cluster_list).post(locks::cluster_create),
        )
        .route(
            &format!("{BASE}/locks/{{name}}"),
            get(locks::cluster_get).delete(locks::cluster_delete),
        )
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/locks"),
            get(locks::namespaced_list).post(locks::namespaced_create),
        )
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/locks/{{name}}"),
            get(locks::namespaced_get).delete(locks::namespaced_delete),
        )
        .with_state(context)
}

/// Authenticate every request of the query listener but the probes, and authorize what
/// the aggregated handlers do not: `/metrics` needs `get` on that URL; the plain JSON API
/// (`/api/v1`, for local use) only answers who may read every change and every Secret's.
pub async fn authenticate(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/livez" || path == "/readyz" {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<PeerCertificates>().cloned();
    let caller = match auth.authenticate(request.headers(), peer.as_ref()).await {
        Ok(caller) => caller,
        Err(refusal) => {
            tracing::debug!(%path, reason = %refusal, "request not authenticated");
            return KubeError::unauthorized(&refusal).into_response();
        }
    };
    if auth.is_enabled() && !path.starts_with("/apis") {
        let questions = if path == "/metrics" {
            vec![Question::Url {
                verb: "get".into(),
                path: "/metrics".into(),
            }]
        } else {
            vec![
                Question::resource("list", GROUP, "changes", ""),
                Question::resource("get", "", "secrets", ""),
            ]
        };
        for question in questions {
            match caller.may(&question).await {
                Ok(true) => {}
                Ok(false) => {
                    let mut error = KubeError::forbidden(caller.name(), &question, "");
                    if path != "/metrics" {
                        error.message = format!(
                            "{}; the JSON API under /api/v1 answers only who may read every change — use /apis/logistis.io/v1alpha1",
                            error.message
                        );
                    }
                    return error.into_response();
                }
                Err(error) => return KubeError::authorization_failed(error).into_response(),
            }
        }
    }
    request.extensions_mut().insert::<Caller>(caller);
    next.run(request).await
}
