//! The history of one object: `GET /api/v1/objects/{group}/{kind}/{namespace}/{name}/…` —
//! `versions`, `versions/{n}`, `diff`, `history`, `bisect`, `blame`. `core` is the empty
//! group and `_` the namespace of cluster-scoped objects; `kind` is case-insensitive.
//!
//! Each handler checks its parameters, then does one blocking job: read the object's events
//! (one range scan of the object index, never the whole store) and answer with the pure
//! [`crate::history`] functions, whose CPU work stays off the async workers too.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use logistis_api::{
    BisectAnswer, Blame, Diff, FieldHistory, ObjectRef, VersionDetail, VersionList,
};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, blocking};
use super::query::parse_query;
use crate::history::{self, FieldPath, Timeline};
use crate::store::ObjectKey;

/// The routes, to be merged into the query router.
pub fn routes() -> Router<AppState> {
    const BASE: &str = "/api/v1/objects/{group}/{kind}/{namespace}/{name}";
    Router::new()
        .route(&format!("{BASE}/versions"), get(versions))
        .route(&format!("{BASE}/versions/{{version}}"), get(version))
        .route(&format!("{BASE}/diff"), get(diff))
        .route(&format!("{BASE}/history"), get(field_history))
        .route(&format!("{BASE}/bisect"), get(bisect))
        .route(&format!("{BASE}/blame"), get(blame))
}

/// The object path segments.
#[derive(Debug, Deserialize)]
struct ObjectPath {
    group: String,
    kind: String,
    namespace: String,
    name: String,
}

impl ObjectPath {
    fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            group: if self.group == "core" {
                String::new()
            } else {
                self.group.clone()
            },
            kind: self.kind.clone(),
            namespace: if self.namespace == "_" {
                String::new()
            } else {
                self.namespace.clone()
            },
            name: self.name.clone(),
        }
    }
}

/// The object path segments and a version number (no `flatten`: axum's path deserializer
/// does not promise to support it).
#[derive(Debug, Deserialize)]
struct VersionPath {
    group: String,
    kind: String,
    namespace: String,
    name: String,
    version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffParams {
    from: Option<String>,
    to: Option<String>,
    path: Option<String>,
    #[serde(rename = "includePhantoms")]
    include_phantoms: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    path: String,
    #[serde(rename = "includePhantoms")]
    include_phantoms: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BisectParams {
    path: String,
    value: String,
    #[serde(rename = "includePhantoms")]
    include_phantoms: Option<String>,
}

impl From<history::Error> for ApiError {
    fn from(error: history::Error) -> Self {
        use history::Error;
        match error {
            Error::NoVersions | Error::NoSuchVersion { .. } | Error::NeverMatched { .. } => {
                ApiError::not_found(error.to_string())
            }
            Error::InvalidPath(_) => ApiError::bad_request(error.to_string()),
            Error::Yaml { .. } | Error::Json(_) => ApiError::internal(error),
            Error::Stopped => ApiError::Unavailable(super::error::over_budget()),
        }
    }
}

/// `kind.group namespace/name`, as messages name the object.
fn describe(object: &ObjectRef) -> String {
    let mut text = object.kind.clone();
    if !object.group.is_empty() {
        text.push('.');
        text.push_str(&object.group);
    }
    text.push(' ');
    if !object.namespace.is_empty() {
        text.push_str(&object.namespace);
        text.push('/');
    }
    text.push_str(&object.name);
    text
}

/// Read the object's events and answer with `answer`, off the async workers. An object with
/// no stored event, and none removed by retention, is unknown: 404.
async fn with_timeline<T, F>(
    state: &AppState,
    object: ObjectRef,
    include_phantoms: bool,
    answer: F,
) -> Result<Json<T>, ApiError>
where
    F: FnOnce(&Timeline) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let store = state.store.clone();
    blocking(move || {
        let key = ObjectKey {
            group: object.group.clone(),
            kind: object.kind.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
        };
        let (events, trimmed) = store.object_events(&key)?;
        if events.is_empty() && trimmed == 0 {
            return Err(ApiError::not_found(format!(
                "no recorded history for {}",
                describe(&object)
            )));
        }
        answer(&Timeline::build_with_phantoms(
            object,
            events,
            trimmed,
            include_phantoms,
        ))
        .map(Json)
    })
    .await
}

fn parse_version(param: &str, text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{param}={text:?}: expected a version number")))
}

fn parse_path(text: &str) -> Result<FieldPath, ApiError> {
    FieldPath::parse(text).map_err(|error| ApiError::bad_request(error.to_string()))
}

/// Reject any query parameter on endpoints that take none: a typo should not be ignored.
fn no_params(query: Option<&str>) -> Result<(), ApiError> {
    let params: HashMap<String, String> = parse_query(query)?;
    match params.keys().next() {
        Some(name) => Err(ApiError::bad_request(format!(
            "unknown query parameter {name:?}"
        ))),
        None => Ok(()),
    }
}

/// `includePhantoms` alone: phantoms (changes the cluster never made) are left out of
/// history answers unless it is `true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PhantomParams {
    include_phantoms: Option<String>,
}

fn parse_include_phantoms(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "includePhantoms={other:?}: expected true or false"
        ))),
    }
}

fn include_phantoms_only(query: Option<&str>) -> Result<bool, ApiError> {
    let params: PhantomParams = parse_query(query)?;
    parse_include_phantoms(params.include_phantoms.as_deref())
}

async fn versions(
    State(state): State<AppState>,
    Path(path): Path<ObjectPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<VersionList>, ApiError> {
    let include_phantoms = include_phantoms_only(query.as_deref())?;
    with_timeline(&state, path.object_ref(), include_phantoms, |timeline| {
        Ok(timeline.list())
    })
    .await
}

async fn version(
    State(state): State<AppState>,
    Path(path): Path<VersionPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<VersionDetail>, ApiError> {
    let include_phantoms = include_phantoms_only(query.as_deref())?;
    let number = parse_version("version", &path.version)?;
    let object = ObjectPath {
        group: path.group,
        kind: path.kind,
        namespace: path.namespace,
        name: path.name,
    };
    with_timeline(
        &state,
        object.object_ref(),
        include_phantoms,
        move |timeline| {
            let version = timeline.get(number)?;
            Ok(VersionDetail {
                object_ref: timeline.object.clone(),
                summary: version.summary.clone(),
                object: version.object.clone(),
            })
        },
    )
    .await
}

async fn diff(
    State(state): State<AppState>,
    Path(path): Path<ObjectPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<Diff>, ApiError> {
    let params: DiffParams = parse_query(query.as_deref())?;
    let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
    let from = non_empty(params.from)
        .map(|t| parse_version("from", &t))
        .transpose()?;
    let to = non_empty(params.to)
        .map(|t| parse_version("to", &t))
        .transpose()?;
    let field = non_empty(params.path).map(|t| parse_path(&t)).transpose()?;
    let include_phantoms = parse_include_phantoms(params.include_phantoms.as_deref())?;
    with_timeline(
        &state,
        path.object_ref(),
        include_phantoms,
        move |timeline| Ok(history::diff::diff(timeline, from, to, field.as_ref())?),
    )
    .await
}

async fn field_history(
    State(state): State<AppState>,
    Path(path): Path<ObjectPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<FieldHistory>, ApiError> {
    let params: HistoryParams = parse_query(query.as_deref())?;
    let field = parse_path(&params.path)?;
    let include_phantoms = parse_include_phantoms(params.include_phantoms.as_deref())?;
    with_timeline(
        &state,
        path.object_ref(),
        include_phantoms,
        move |timeline| Ok(history::field::history(timeline, &field)),
    )
    .await
}

async fn bisect(
    State(state): State<AppState>,
    Path(path): Path<ObjectPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<BisectAnswer>, ApiError> {
    let params: BisectParams = parse_query(query.as_deref())?;
    let field = parse_path(&params.path)?;
    let include_phantoms = parse_include_phantoms(params.include_phantoms.as_deref())?;
    with_timeline(
        &state,
        path.object_ref(),
        include_phantoms,
        move |timeline| Ok(history::field::bisect(timeline, &field, &params.value)?),
    )
    .await
}

async fn blame(
    State(state): State<AppState>,
    Path(path): Path<ObjectPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<Blame>, ApiError> {
    no_params(query.as_deref())?;
    // Never with phantoms: a line is credited only to a change that happened.
    with_timeline(&state, path.object_ref(), false, |timeline| {
        Ok(history::blame::blame(timeline)?)
    })
    .await
}
