//! `POST /validate`: the admission webhook. Parse once, build the event, ask the predicate
//! chain, append to the store and wait until it is durable, then answer `allowed: true`.
//!
//! Whatever happens after a review parsed — a plugin failure, a store error — the answer is
//! still `allowed: true`: Logistis records, it never blocks the cluster. Only a body that is
//! not a review gets a 4xx, and only a lock a person set gets `allowed: false` (with the
//! attempt recorded as a denied event).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::AppState;
use super::error::ApiError;
use crate::admission::{self, AdmissionResponseReview, Outcome, review};
use crate::metrics::ReviewOutcome;
use crate::plugins::Decision;
use crate::store::Appended;
use logistis_api::plugins::OnError;

pub async fn validate(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    match handle(&state, &headers, body, started).await {
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

/// Bytes of review bodies held at once, across all requests (in KiB permits): 64 clients
/// posting 15 MiB each would otherwise take the pod gigabytes past its limit.
#[derive(Debug)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    limit_bytes: usize,
}

/// How long a review waits for room in the budget before it is answered 503.
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(1);

impl BodyBudget {
    pub fn new(limit_bytes: usize) -> BodyBudget {
        let kib = limit_bytes.div_ceil(1024).min(Semaphore::MAX_PERMITS);
        BodyBudget {
            permits: Arc::new(Semaphore::new(kib)),
            limit_bytes,
        }
    }

    /// Room for `bytes` more, waiting until `deadline`.
    async fn reserve(
        &self,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let acquire = self.permits.clone().acquire_many_owned(kib);
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::Unavailable(format!(
                "too many large reviews in flight (the webhook holds at most {} bytes of bodies, --max-inflight-bodies): retry",
                self.limit_bytes
            ))),
        }
    }
}

/// The body, and its reservation in the budget (held until the review is answered).
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(axum::body::Bytes, OwnedSemaphorePermit), ApiError> {
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
    let deadline = tokio::time::Instant::now() + BODY_BUDGET_WAIT;
    let budget = &state.body_budget;
    // A declared length is reserved at once; a streamed body frame by frame.
    let mut reserved = budget.reserve(declared.unwrap_or(0), deadline).await?;
    let mut room = declared.unwrap_or(0).div_ceil(1024) * 1024;
    let mut body = body;
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::bad_request(format!("cannot read the request body: {error}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limit {
            return Err(too_large());
        }
        if bytes.len() + data.len() > room {
            let more = bytes.len() + data.len() - room;
            let permit = budget.reserve(more, deadline).await?;
            room += permit.num_permits() * 1024;
            reserved.merge(permit);
        }
        bytes.extend_from_slice(&data);
    }
    Ok((bytes.into(), reserved))
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<(AdmissionResponseReview, ReviewOutcome), ApiError> {
    check_content_type(headers)?;
    let (bytes, _reserved) = read_body(state, headers, body).await?;
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
        namespace = clip(request.namespace.as_deref().unwrap_or("")),
        name = clip(request.name.as_deref().unwrap_or("")),
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
    let outcome = record(state, request, started).instrument(span).await;
    Ok((answer, outcome))
}

/// At most 256 bytes of a field for a log line (a hostile review may carry 64 KiB names).
fn clip(text: &str) -> &str {
    let mut end = text.len().min(256);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
    if let Err(exceeded) = admission::limits::check(&event.event) {
        tracing::warn!(reason = %exceeded, "the denied attempt is past a limit on what is stored: not recorded");
        return;
    }
    match state.store.append(event).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::error!(error = %crate::telemetry::chain(&error), "cannot record the denied attempt");
        }
        Err(_) => tracing::error!("the store writer stopped: denied attempt not recorded"),
    }
}

async fn record(
    state: &AppState,
    request: review::AdmissionRequest,
    started: Instant,
) -> ReviewOutcome {
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
    if let Err(exceeded) = admission::limits::check(&new_event.event) {
        // Not stored: everything stored must be readable by every client (see limits).
        tracing::warn!(reason = %exceeded, "the review is past a limit on what is stored: not recorded");
        return ReviewOutcome::OverLimits;
    }
    let new_event = if state.plugins.has_predicates() {
        // The chain's ceiling counts from the review's arrival. The chain stops itself
        // there; the timeout below also covers a chain that never got a thread in time.
        let ceiling = started + state.plugins.chain_timeout();
        let plugins = state.plugins.clone();
        // Converted here, once, so the event itself stays with this task whatever the
        // chain does.
        let wit = crate::plugins::bindings::to_wit(&new_event.event, None);
        let evaluated = tokio::time::timeout_at(
            ceiling.into(),
            tokio::task::spawn_blocking(move || plugins.evaluate(&wit, ceiling)),
        )
        .await;
        let decision = match evaluated {
            Ok(Ok(Decision::Ceiling { .. })) => state.plugins.ceiling_decision(),
            Ok(Ok(decision)) => decision,
            Ok(Err(error)) => {
                tracing::error!(%error, "the predicate chain panicked: event not recorded");
                return ReviewOutcome::StoreError;
            }
            Err(_) => state.plugins.ceiling_decision(),
        };
        match decision {
            Decision::Capture
            | Decision::Ceiling {
                verdict: OnError::Capture,
            } => new_event,
            Decision::Skip { plugin } => {
                tracing::debug!(plugin, "skipped by a capture predicate");
                return ReviewOutcome::SkippedByPlugin;
            }
            Decision::Ceiling {
                verdict: OnError::Skip,
            } => {
                tracing::debug!("the predicate chain reached its ceiling; its on-error is skip");
                return ReviewOutcome::SkippedByPlugin;
            }
        }
    } else {
        new_event
    };
    let mut new_event = new_event;
    if let Some(confirmer) = &state.confirm {
        confirmer.mark(&mut new_event.event);
    }
    match state.store.append(new_event).await {
        Ok(Ok(Appended::Recorded(id))) => {
            tracing::debug!(%id, "recorded");
            ReviewOutcome::Recorded
        }
        Ok(Ok(Appended::Duplicate(id))) => {
            tracing::debug!(%id, "re-sent review: already recorded");
            ReviewOutcome::Deduplicated
        }
        // The store logs once when writes start failing and once when they work again.
        Ok(Err(error @ crate::store::Error::NotWriting(_))) => {
            tracing::debug!(error = %crate::telemetry::chain(&error), "event not recorded");
            ReviewOutcome::StoreError
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

/// `logistis_admission_learned_kinds` and `…_forgotten_kinds_total`, read at scrape time.
#[derive(Debug)]
pub struct KindsCollector(pub Arc<super::AdmissionContext>);

impl prometheus_client::collector::Collector for KindsCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let kinds = &self.0.kinds;
        let learned = ConstGauge::new(i64::try_from(kinds.learned()).unwrap_or(i64::MAX));
        learned.encode(encoder.encode_descriptor(
            "admission_learned_kinds",
            "(group, resource) → Kind pairs learned from reviews (bounded)",
            None,
            learned.metric_type(),
        )?)?;
        let forgotten = ConstCounter::new(kinds.forgotten());
        forgotten.encode(encoder.encode_descriptor(
            "admission_forgotten_kinds",
            "Learned pairs forgotten to stay within the bound",
            None,
            forgotten.metric_type(),
        )?)?;
        Ok(())
    }
}
