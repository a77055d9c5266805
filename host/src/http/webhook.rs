//! `POST /validate`: the admission webhook. Parse once, build the event, ask the predicate
//! chain, append to the store and wait until it is durable, then answer `allowed: true`.
//!
//! Whatever happens after a review parsed — a plugin failure, a store error — the answer is
//! still `allowed: true`: Logistis records, it never blocks the cluster. Only a body that is
//! not a review gets a 4xx, and only a lock a person set gets `allowed: false` (with the
//! attempt recorded as a denied event).

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use tracing::Instrument;

use super::AppState;
use super::error::ApiError;
use crate::admission::{self, AdmissionResponseReview, Outcome, review};
use crate::metrics::ReviewOutcome;
use crate::plugins::Decision;
use crate::store::Appended;

pub async fn validate(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    match handle(&state, &headers, body).await {
        Ok((answer, outcome)) => {
            state
                .metrics
                .observe_admission(started.elapsed().as_secs_f64(), outcome);
            Json(answer).into_response()
        }
        Err(error) => {
            state
                .metrics
                .observe_admission(started.elapsed().as_secs_f64(), ReviewOutcome::BadRequest);
            error.into_response()
        }
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type application/json, got {:?}",
            content_type
        )))
    }
}

async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, ApiError> {
    let limit = state.max_body_bytes;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the AdmissionReview is larger than the {limit}-byte limit (--max-body-size)"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let inner = error.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            too_large()
        } else {
            ApiError::bad_request(format!("cannot read the request body: {inner}"))
        }
    })
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(AdmissionResponseReview, ReviewOutcome), ApiError> {
    check_content_type(headers)?;
    let bytes = read_body(state, headers, body).await?;
    let (api_version, request) = review::parse(&bytes)
        .map_err(|error| ApiError::bad_request(crate::telemetry::chain(&error)))?;
    let answer = AdmissionResponseReview::allow(&api_version, &request.uid);
    if state.answer_only {
        return Ok((answer, ReviewOutcome::AnswerOnly));
    }
    let span = tracing::info_span!(
        "admission",
        uid = %request.uid,
        operation = %request.operation,
        kind = request.kind.as_ref().map_or("", |k| k.kind.as_str()),
        namespace = request.namespace.as_deref().unwrap_or(""),
        name = request.name.as_deref().unwrap_or(""),
    );
    if let Some(denial) = state
        .locks
        .check_review(&request, &state.admission.kinds, Utc::now())
    {
        let answer =
            AdmissionResponseReview::deny(&api_version, &request.uid, denial.message.clone());
        record_denied(state, request, denial).instrument(span).await;
        return Ok((answer, ReviewOutcome::DeniedByLock));
    }
    let outcome = record(state, request).instrument(span).await;
    Ok((answer, outcome))
}

/// Record an attempt a lock denied (see [`crate::locks::attempt_event`]). A store failure
/// is logged; the request stays denied.
async fn record_denied(
    state: &AppState,
    request: review::AdmissionRequest,
    denial: logistis_api::lock::Denial,
) {
    tracing::info!(lock = %denial.lock, "denied by a lock");
    let now = Utc::now();
    let now = chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let context = &state.admission;
    let Some(event) = crate::locks::attempt_event(
        request,
        now,
        context.policy,
        &context.redactor,
        &context.kinds,
        denial,
    ) else {
        return;
    };
    match state.store.append(event).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::error!(error = %crate::telemetry::chain(&error), "cannot record the denied attempt");
        }
        Err(_) => tracing::error!("the store writer stopped: denied attempt not recorded"),
    }
}

async fn record(state: &AppState, request: review::AdmissionRequest) -> ReviewOutcome {
    // Microsecond precision, like the event ids (and what the JSON shows).
    let now = Utc::now();
    let now = chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let outcome = admission::build_event(
        request,
        now,
        state.admission.policy,
        &state.admission.redactor,
        &state.admission.kinds,
    );
    let new_event = match outcome {
        Outcome::Record(new_event) => new_event,
        Outcome::SkippedDryRun => return ReviewOutcome::DryRun,
        Outcome::SkippedNoise => {
            tracing::debug!("noise-only update: not recorded");
            return ReviewOutcome::Noise;
        }
    };
    let new_event = if state.plugins.has_predicates() {
        let plugins = state.plugins.clone();
        let evaluated = tokio::task::spawn_blocking(move || {
            let decision = plugins.evaluate(&new_event.event);
            (decision, new_event)
        })
        .await;
        match evaluated {
            Ok((Decision::Capture, new_event)) => new_event,
            Ok((Decision::Skip { plugin }, _)) => {
                tracing::debug!(plugin, "skipped by a capture predicate");
                return ReviewOutcome::SkippedByPlugin;
            }
            Err(error) => {
                tracing::error!(%error, "the predicate chain panicked: event not recorded");
                return ReviewOutcome::StoreError;
            }
        }
    } else {
        new_event
    };
    match state.store.append(new_event).await {
        Ok(Ok(Appended::Recorded(id))) => {
            tracing::debug!(%id, "recorded");
            ReviewOutcome::Recorded
        }
        Ok(Ok(Appended::Duplicate(id))) => {
            tracing::debug!(%id, "re-sent review: already recorded");
            ReviewOutcome::Deduplicated
        }
        Ok(Err(error)) => {
            tracing::error!(error = %crate::telemetry::chain(&error), "cannot record the event");
            ReviewOutcome::StoreError
        }
        Err(_) => {
            tracing::error!("the store writer stopped: event not recorded");
            ReviewOutcome::StoreError
        }
    }
}
