//! The query API: `GET /api/v1/events`, `/api/v1/events/{id}`, `/api/v1/namespaces` (each
//! takes `cluster=NAME` to keep one cluster's events, when several share a database).
//! Thin handlers: parse and check parameters (400 with a message), then one blocking store
//! read off the async workers.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use logistis_api::{Event, EventId, EventList, NamespaceList, Operation, Status};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, blocking};
use crate::store::{EventFilter, Scan};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    cluster: Option<String>,
    namespace: Option<String>,
    group: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    user: Option<String>,
    operation: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// `confirmed`, `pending`, `phantom`, `observed`, or several separated by commas.
    status: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

/// Parse a query string into `T`, with a 400 that names the bad parameter.
pub fn parse_query<T: serde::de::DeserializeOwned>(query: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|error| ApiError::bad_request(format!("invalid query parameters: {error}")))
}

/// The earliest time a query may name: event ids are microseconds since 1970, so nothing
/// is older, and every later time converts to an id without overflow.
fn earliest() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

/// `2h`, `30m`, `7d` (that long ago) or an RFC 3339 time, from 1970 to the year 9999.
pub fn parse_time(param: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let out_of_range = || {
        ApiError::bad_request(format!(
            "{param}={text:?}: out of range (from 1970-01-01T00:00:00Z, durations up to the time since then)"
        ))
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        let time = time.with_timezone(&Utc);
        if time < earliest() {
            return Err(out_of_range());
        }
        return Ok(time);
    }
    if let Ok(duration) = humantime::parse_duration(text) {
        // `now - duration` panics on overflow (`since=1000000years`): check first.
        return chrono::Duration::from_std(duration)
            .ok()
            .and_then(|duration| now.checked_sub_signed(duration))
            .filter(|time| *time >= earliest())
            .ok_or_else(out_of_range);
    }
    Err(ApiError::bad_request(format!(
        "{param}={text:?}: expected an RFC 3339 time (2026-01-02T15:04:05Z) or a duration (2h, 30m, 7d)"
    )))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// `confirmed` or `confirmed,observed`: the statuses an answer keeps.
pub fn parse_statuses(text: &str) -> Result<Vec<Status>, ApiError> {
    text.split(',')
        .map(|name| {
            Status::parse(name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "status={name:?}: expected pending, confirmed, phantom or observed (several separated by commas)"
                ))
            })
        })
        .collect()
}

pub fn encode_continue(id: EventId) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1.{id}"))
}

pub fn decode_continue(token: &str) -> Result<EventId, ApiError> {
    let bad = || {
        ApiError::bad_request("invalid continue token: pass back the one from the previous page")
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix("v1.")
        .and_then(|id| id.parse().ok())
        .ok_or_else(bad)
}

pub async fn list_events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<EventList>, ApiError> {
    let params: EventsParams = parse_query(query.as_deref())?;
    let now = Utc::now();
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit={text:?}: expected a number from 1 to {MAX_LIMIT}"
                )));
            }
        },
    };
    let time = |param: &str, value: Option<String>| {
        non_empty(value)
            .map(|text| parse_time(param, &text, now).map(|t| t.timestamp_micros()))
            .transpose()
    };
    let since_micros = time("since", params.since)?;
    let until_micros = time("until", params.until)?;
    if let (Some(since), Some(until)) = (since_micros, until_micros)
        && since >= until
    {
        return Err(ApiError::bad_request("since must be before until"));
    }
    let name = non_empty(params.name);
    let kind = non_empty(params.kind);
    if name.is_some() && kind.is_none() {
        return Err(ApiError::bad_request(
            "name needs kind: an object is named within its kind",
        ));
    }
    let status = non_empty(params.status)
        .map(|text| parse_statuses(&text))
        .transpose()?;
    let filter = EventFilter {
        cluster: non_empty(params.cluster),
        // `_` stands for cluster-scoped objects, as in the object paths.
        namespace: non_empty(params.namespace).map(|ns| if ns == "_" { String::new() } else { ns }),
        group: params
            .group
            .map(|g| if g == "core" { String::new() } else { g }),
        kind,
        name,
        user: non_empty(params.user),
        operation: non_empty(params.operation).map(|op| Operation::parse(&op)),
        since_micros,
        until_micros,
        status,
    };
    let before = non_empty(params.continue_token)
        .map(|token| decode_continue(&token))
        .transpose()?;
    let store = state.store.clone();
    let page = blocking(move || {
        store
            .list_events(
                &filter,
                Scan {
                    limit,
                    before,
                    budget: Scan::DEFAULT_BUDGET,
                },
            )
            .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(EventList {
        items: page.items,
        continue_token: page.next.map(encode_continue),
    }))
}

pub async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    let id: EventId = id
        .parse()
        .map_err(|error: logistis_api::ParseEventIdError| {
            ApiError::bad_request(error.to_string())
        })?;
    let store = state.store.clone();
    let event = blocking(move || store.get_event(id).map_err(ApiError::from)).await?;
    event
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no event {id}")))
}

pub async fn namespaces(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<NamespaceList>, ApiError> {
    let params: HashMap<String, String> = parse_query(query.as_deref())?;
    let cluster = params.get("cluster").filter(|c| !c.is_empty()).cloned();
    let store = state.store.clone();
    let mut items = blocking(move || store.namespaces().map_err(ApiError::from)).await?;
    if let Some(cluster) = cluster {
        items.retain(|summary| summary.cluster == cluster);
    }
    Ok(Json(NamespaceList { items }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = encode_continue(EventId(42));
        assert_eq!(decode_continue(&token).unwrap(), EventId(42));
        assert!(decode_continue("bm9wZQ").is_err());
        assert!(decode_continue("!!").is_err());
    }

    #[test]
    fn times_take_rfc3339_or_a_duration() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_time("since", "2h", now).unwrap(),
            DateTime::parse_from_rfc3339("2026-01-02T10:00:00Z").unwrap()
        );
        assert_eq!(
            parse_time("since", "2026-01-01T00:00:00+01:00", now).unwrap(),
            DateTime::parse_from_rfc3339("2025-12-31T23:00:00Z").unwrap()
        );
        assert!(parse_time("since", "yesterday", now).is_err());
        // Past what chrono can subtract (it used to panic the handler), or before 1970.
        for text in [
            "1000000years",
            "300000years",
            "100years",
            "1969-12-31T23:59:59Z",
        ] {
            let error = parse_time("since", text, now).unwrap_err();
            assert!(
                matches!(&error, ApiError::BadRequest(m) if m.contains("out of range")),
                "{text}: {error:?}"
            );
        }
        assert!(parse_time("until", "9999-12-31T23:59:59Z", now).is_ok());
    }
}
