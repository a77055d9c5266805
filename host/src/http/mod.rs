//! HTTP: two listeners, both HTTPS.
//! - the webhook listener: `POST /validate` (plus `/livez`, `/readyz` for probes);
//! - the query listener: the query API under `/api/v1`, `/livez`, `/readyz`, `/metrics`, and
//!   the aggregated Kubernetes API `logistis.io` under `/apis` ([`aggregated`]), every
//!   request but the probes authenticated when `--query-auth kubernetes` is on.
//!
//! Handlers are thin: they parse, call `admission`, `plugins` or `store`, and map errors to
//! [`ApiError`]. [`serve`] owns sockets, TLS and graceful shutdown.

pub mod aggregated;
pub mod backup;
pub mod error;
mod health;
mod objects;
mod query;
pub mod serve;
pub mod webhook;
mod webhook_client;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use error::ApiError;

use crate::admission::{KindTable, Policy, Redactor};
use crate::locks::Locks;
use crate::metrics::Metrics;
use crate::plugins::PluginHost;
use crate::store::Store;

/// What the admission handler needs besides the store.
#[derive(Debug)]
pub struct AdmissionContext {
    pub policy: Policy,
    pub redactor: Redactor,
    pub kinds: KindTable,
}

/// Shared by every handler; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub plugins: Arc<PluginHost>,
    pub metrics: Arc<Metrics>,
    pub admission: Arc<AdmissionContext>,
    /// The locks the webhook enforces.
    pub locks: Arc<Locks>,
    pub max_body_bytes: usize,
    /// Review bodies held at once by the webhook.
    pub body_budget: Arc<webhook::BodyBudget>,
    /// Benchmark mode: answer every review without recording it.
    pub answer_only: bool,
    /// `--confirm`: marks recorded changes of watched resources `pending`.
    pub confirm: Option<Arc<crate::confirm::Confirmer>>,
}

/// The webhook listener's routes.
pub fn webhook_router(state: AppState) -> Router {
    webhook_router_with(state, None)
}

/// The webhook listener's routes; with `client`, `/validate` first requires a client
/// certificate from that CA (and an allowed name).
pub fn webhook_router_with(
    state: AppState,
    client: Option<Arc<crate::config::WebhookClientAuth>>,
) -> Router {
    let validate = post(webhook::validate).layer(middleware::from_fn_with_state(
        (state.clone(), client),
        webhook_client::require,
    ));
    Router::new()
        .route("/validate", validate)
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::webhook_readyz))
        .layer(middleware::from_fn(error::json_errors))
        .with_state(state)
}

/// The query listener's routes (the JSON API only, no authentication).
pub fn query_router(state: AppState) -> Router {
    query_router_with(state, Router::new(), crate::auth::Auth::disabled())
}

/// The query listener's routes with `extra` (the aggregated API) and `auth` in front of
/// everything but the probes.
pub fn query_router_with(state: AppState, extra: Router, auth: crate::auth::Auth) -> Router {
    Router::new()
        .route("/api/v1/events", get(query::list_events))
        .route("/api/v1/events/{id}", get(query::get_event))
        .route("/api/v1/namespaces", get(query::namespaces))
        .merge(objects::routes())
        .route("/api/v1/plugins", get(health::plugins))
        .route("/api/v1/backup", get(backup::backup))
        .route("/api/v1/store", get(health::store))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state.clone())
        .merge(extra)
        .fallback(health::not_found)
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn_with_state(
            auth,
            aggregated::authenticate,
        ))
        .layer(middleware::from_fn_with_state(state, time_queries))
}

/// Record the latency of every query route (by its pattern, never the raw path).
async fn time_queries(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_query(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests;
