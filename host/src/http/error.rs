//! `ApiError`: the one error type of every handler. Bad input is a 4xx whose JSON body says
//! what to fix; anything internal is logged once with its cause chain and answered with a
//! generic 500, so internals never leak to clients. [`json_errors`] gives the answers axum
//! makes on its own (405, extractor 400s, …) the same JSON shape, and [`blocking`] runs a
//! query's work within its time budget, stopping it when the client goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use logistis_api::ErrorBody;

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    Unavailable(String),
    /// A stored record that cannot be read: a 500 that names it.
    Damaged(String),
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound(message.into())
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(error: crate::store::Error) -> Self {
        use crate::store::Error;
        match error {
            // Named in the answer: the client learns which event cannot be read (and the
            // rest of the store still answers).
            Error::Corrupt { .. } | Error::Decode { .. } => {
                tracing::error!(error = %crate::telemetry::chain(&error), "a stored event cannot be read");
                ApiError::Damaged(error.to_string())
            }
            Error::Reopening => ApiError::Unavailable(error.to_string()),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            ApiError::PayloadTooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, message),
            ApiError::UnsupportedMediaType(message) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
            }
            ApiError::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, message),
            ApiError::Damaged(message) => (StatusCode::INTERNAL_SERVER_ERROR, message),
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(ErrorBody { error: message })).into_response()
    }
}

/// The server-side time budget of one query: past it the work is stopped and the client
/// told so (503), rather than computing for a client that has long given up.
pub const QUERY_BUDGET: Duration = Duration::from_secs(10);

/// The message of a query stopped at its budget.
pub fn over_budget() -> String {
    format!(
        "the query did not finish within the server's {} s budget and was stopped: narrow it (a kind, namespace or object, since/until, a smaller limit)",
        QUERY_BUDGET.as_secs()
    )
}

/// Sets the flag when dropped: the handler's future is dropped when the client goes away.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Run a blocking store read off the async worker threads, within [`QUERY_BUDGET`]. The
/// work can see (through [`crate::history::interrupt`]) that the client went away or the
/// budget ran out, and stop.
pub async fn blocking<T, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(cancelled.clone());
    let deadline = Instant::now() + QUERY_BUDGET;
    let task = tokio::task::spawn_blocking(move || {
        let _scope = crate::history::interrupt::Scope::enter(deadline, cancelled);
        work()
    });
    match tokio::time::timeout_at(deadline.into(), task).await {
        Ok(joined) => joined.map_err(ApiError::internal)?,
        Err(_) => Err(ApiError::Unavailable(over_budget())),
    }
}

/// Longest request target accepted (path and query); longer ones get a JSON 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Every error answer is a JSON `{"error": …}`: what axum's extractors and router answer on
/// their own (405 with an empty body, 400 in plain text, …) is rewritten, keeping the
/// status and headers such as `Allow`. Request targets over [`MAX_URI_BYTES`] are answered
/// 414 here, in JSON.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target_len > MAX_URI_BYTES {
        return (
            StatusCode::URI_TOO_LONG,
            Json(ErrorBody {
                error: format!(
                    "the request target is {target_len} bytes; at most {MAX_URI_BYTES} are accepted"
                ),
            }),
        )
            .into_response();
    }
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if allowed.is_empty() {
            format!("method {method} is not allowed here")
        } else {
            format!("method {method} is not allowed here (allowed: {allowed})")
        }
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let body = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}
