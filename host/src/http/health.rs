//! Probes, metrics and the plugin status: `/livez` (the process serves), `/readyz` (the store
//! is open and accepts writes, and the first plugin set is loaded), `/metrics` (Prometheus
//! text). The webhook listener's `/readyz` never fails on the store — the webhook answers
//! whatever the disk does — but says `degraded` while writes fail.

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
    if let Some(reason) = not_writing(&state) {
        return Err(ApiError::Unavailable(reason));
    }
    if !state.plugins.is_ready() {
        return Err(ApiError::Unavailable(
            "the first plugin set is not loaded yet".into(),
        ));
    }
    Ok("ok\n")
}

/// Why the store refuses writes, while it does.
fn not_writing(state: &AppState) -> Option<String> {
    let health = state.store.health();
    (!health.accepts_writes()).then(|| {
        let reason = health.reason().unwrap_or_default();
        format!("the store is not accepting writes: {reason}")
    })
}

/// The webhook listener's `/readyz`: 200 while the process answers reviews, with
/// `degraded: …` while the store refuses writes (reviews are then answered, not recorded).
pub async fn webhook_readyz(State(state): State<AppState>) -> Result<String, ApiError> {
    if !state.store.is_open() {
        return Err(ApiError::Unavailable("the store is closed".into()));
    }
    if !state.plugins.is_ready() {
        return Err(ApiError::Unavailable(
            "the first plugin set is not loaded yet".into(),
        ));
    }
    Ok(match not_writing(&state) {
        Some(reason) => format!("degraded: {reason}\n"),
        None => "ok\n".to_owned(),
    })
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    let text = tokio::task::spawn_blocking(move || metrics.render(&store))
        .await
        .unwrap_or_default();
    // What prometheus-client writes: OpenMetrics (counters' samples end in `_total`, the
    // family names do not, and the text ends in `# EOF`), which Prometheus reads as such
    // only when told so.
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// `GET /api/v1/store`: the backend, and whether it is degraded (writes going to the local
/// outbox while the database is away) — `/readyz` stays ready then: the webhook still
/// records every review.
pub async fn store(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.store.store_status())
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
