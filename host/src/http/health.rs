//! Probes, metrics and the plugin status: `/livez` (the process serves), `/readyz` (the store
//! is open and the first plugin set is loaded), `/metrics` (Prometheus text).

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;
use super::error::ApiError;

pub async fn livez() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if !state.store.is_open() {
        return Err(ApiError::Unavailable(
            "the store is not accepting writes".into(),
        ));
    }
    if !state.plugins.is_ready() {
        return Err(ApiError::Unavailable(
            "the first plugin set is not loaded yet".into(),
        ));
    }
    Ok("ok\n")
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    let text = tokio::task::spawn_blocking(move || metrics.render(&store))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `GET /api/v1/store`: the backend, and whether it is degraded (writes going to the local
/// outbox while the database is away) — `/readyz` stays ready then: the webhook still
/// records every review.
pub async fn store(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.store.status())
}

pub async fn plugins(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.plugins.status())
}

pub async fn not_found(OriginalUri(uri): OriginalUri) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(logistis_api::ErrorBody {
            error: format!("no such endpoint: {}", uri.path()),
        }),
    )
}
