//! The `locks` resource of the aggregated API (`logistis.io/v1alpha1`): create, get, list,
//! watch and delete, answered as the Kubernetes API answers — `Lock`/`LockList` objects, a
//! server-side `Table` for `kubectl get locks`, watch events, and `Status` errors (422 with
//! the field for a bad lock, 404, 409).
//!
//! Who may call what is decided before these functions run (RBAC through the aggregated
//! API's authorization); they receive the authenticated user, who becomes the lock's
//! `status.setBy`. A lock in no namespace (paths without `namespaces/{ns}`) is a
//! cluster-scope lock.
//!
//! Not routed yet: the routes go under the aggregated API's authentication and authorization
//! (issue 10), never on an unauthenticated listener — a lock must record who set it.
#![cfg_attr(not(test), allow(dead_code))]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hyper::body::Frame;
use logistis_api::lock::{
    LOCK_API_VERSION, LOCK_LIST_KIND, ListMeta, Lock, LockList, LockUser, PHASE_EXPIRED,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::locks;

/// The resource name in paths, discovery and RBAC.
pub const RESOURCE: &str = "locks";
/// The API group.
pub const GROUP: &str = "logistis.io";
/// Longest a watch stays open unless the client asks for less (kube-apiserver picks
/// 30–60 min at random; clients re-watch).
const MAX_WATCH: Duration = Duration::from_secs(30 * 60);

/// The query parameters of get, list and watch that matter here; others (`fieldManager`,
/// `allowWatchBookmarks`, …) are accepted and ignored, as the API server does.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(default)]
    pub watch: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub include_object: Option<String>,
}

impl ListQuery {
    pub fn is_watch(&self) -> bool {
        matches!(self.watch.as_deref(), Some("true" | "1"))
    }
}

/// `POST …/locks`: create a lock set by `set_by`.
pub async fn create(state: &AppState, namespace: &str, set_by: LockUser, body: &[u8]) -> Response {
    let lock: Lock = match serde_json::from_slice(body) {
        Ok(lock) => lock,
        Err(error) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body is not a Lock: {error}"),
                None,
            );
        }
    };
    if lock.api_version != LOCK_API_VERSION || lock.kind != logistis_api::lock::LOCK_KIND {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "expected apiVersion {LOCK_API_VERSION} and kind Lock, got {} {}",
                lock.api_version, lock.kind
            ),
            None,
        );
    }
    let name = lock.metadata.name.clone();
    let all = state.locks.clone();
    let namespace_owned = namespace.to_owned();
    let created =
        tokio::task::spawn_blocking(move || all.create(&namespace_owned, lock, set_by, Utc::now()))
            .await;
    match created {
        Ok(Ok(lock)) => (StatusCode::CREATED, Json(lock)).into_response(),
        Ok(Err(error)) => lock_error(&error, &name),
        Err(_) => internal("creating the lock panicked"),
    }
}

/// `DELETE …/locks/{name}`: answers the lock as it was (as the API server answers a delete
/// without finalizers).
pub async fn delete(state: &AppState, namespace: &str, name: &str) -> Response {
    let all = state.locks.clone();
    let (namespace_owned, name_owned) = (namespace.to_owned(), name.to_owned());
    let deleted =
        tokio::task::spawn_blocking(move || all.delete(&namespace_owned, &name_owned, Utc::now()))
            .await;
    match deleted {
        Ok(Ok(lock)) => Json(lock).into_response(),
        Ok(Err(error)) => lock_error(&error, name),
        Err(_) => internal("deleting the lock panicked"),
    }
}

/// `GET …/locks/{name}`, as a Lock or a one-row Table.
pub fn get(
    state: &AppState,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    query: &ListQuery,
) -> Response {
    let now = Utc::now();
    match state.locks.get(namespace, name, now) {
        Some(lock) if wants_table(headers) => {
            let rv = lock.metadata.resource_version.clone();
            Json(table(&[lock], &rv, query, now)).into_response()
        }
        Some(lock) => Json(lock).into_response(),
        None => not_found(namespace, name),
    }
}

/// `GET …/locks` (one namespace, or every one with `namespace: None`): a LockList or a
/// Table; with `watch=true`, a stream of watch events.
pub fn list(
    state: &AppState,
    namespace: Option<&str>,
    headers: &HeaderMap,
    query: &ListQuery,
) -> Response {
    if query.is_watch() {
        return watch(state, namespace, headers, query);
    }
    let now = Utc::now();
    let (items, resource_version) = state.locks.list(namespace, now);
    let resource_version = resource_version.to_string();
    if wants_table(headers) {
        return Json(table(&items, &resource_version, query, now)).into_response();
    }
    Json(LockList {
        api_version: LOCK_API_VERSION.to_owned(),
        kind: LOCK_LIST_KIND.to_owned(),
        metadata: ListMeta { resource_version },
        items,
    })
    .into_response()
}

/// Newline-delimited watch events. From `resourceVersion` absent or `0`: every current lock
/// as ADDED, then changes; from the current version: changes; from an older one: a 410
/// `Expired` event, so the client re-lists (changes are not kept for replay).
fn watch(
    state: &AppState,
    namespace: Option<&str>,
    headers: &HeaderMap,
    query: &ListQuery,
) -> Response {
    let as_table = wants_table(headers);
    // Subscribe before reading the set: no change falls between the two.
    let changes = state.locks.subscribe();
    let now = Utc::now();
    let (current, current_version) = state.locks.list(namespace, now);
    let mut initial: Vec<String> = Vec::new();
    match query.resource_version.as_deref().unwrap_or("") {
        "" | "0" => {
            for lock in &current {
                initial.push(watch_line("ADDED", lock, as_table, query, now));
            }
        }
        asked => {
            let asked: u64 = asked.parse().unwrap_or(0);
            if asked < current_version {
                let gone = status_value(
                    StatusCode::GONE,
                    "Expired",
                    format!("too old resource version: {asked} ({current_version})"),
                    None,
                );
                let line = json!({"type": "ERROR", "object": gone}).to_string() + "\n";
                return watch_response(Body::from(line));
            }
        }
    }
    let timeout = query
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(MAX_WATCH)
        .min(MAX_WATCH);
    let watcher = Watcher {
        initial: initial.into_iter(),
        changes,
        namespace: namespace.map(str::to_owned),
        as_table,
        query: ListQuery {
            include_object: query.include_object.clone(),
            ..ListQuery::default()
        },
        deadline: tokio::time::Instant::now() + timeout,
    };
    watch_response(Body::new(WatchBody {
        watcher: Some(watcher),
        pending: None,
    }))
}

type NextLine = Pin<Box<dyn Future<Output = (Watcher, Option<String>)> + Send>>;

/// A watch as an HTTP body: one frame per watch event, ending when the watcher does.
struct WatchBody {
    watcher: Option<Watcher>,
    pending: Option<NextLine>,
}

impl hyper::body::Body for WatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(pending) = &mut this.pending {
                let Poll::Ready((watcher, line)) = pending.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                this.pending = None;
                return match line {
                    Some(line) => {
                        this.watcher = Some(watcher);
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))))
                    }
                    None => Poll::Ready(None),
                };
            }
            let Some(mut watcher) = this.watcher.take() else {
                return Poll::Ready(None);
            };
            this.pending = Some(Box::pin(async move {
                let line = watcher.next().await;
                (watcher, line)
            }));
        }
    }
}

/// One open watch: the initial lines, then the changes of its namespace until the deadline.
struct Watcher {
    initial: std::vec::IntoIter<String>,
    changes: tokio::sync::broadcast::Receiver<locks::Change>,
    namespace: Option<String>,
    as_table: bool,
    query: ListQuery,
    deadline: tokio::time::Instant,
}

impl Watcher {
    async fn next(&mut self) -> Option<String> {
        if let Some(line) = self.initial.next() {
            return Some(line);
        }
        loop {
            let change = match tokio::time::timeout_at(self.deadline, self.changes.recv()).await {
                Ok(Ok(change)) => change,
                // Timed out, or fallen behind: end the watch; the client re-watches or
                // re-lists.
                Ok(Err(_)) | Err(_) => return None,
            };
            if self
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != change.lock.metadata.namespace)
            {
                continue;
            }
            let now = Utc::now();
            let mut lock = locks::with_phase(&change.lock, now);
            lock.metadata.resource_version = change.resource_version.to_string();
            return Some(watch_line(
                change.change.as_str(),
                &lock,
                self.as_table,
                &self.query,
                now,
            ));
        }
    }
}

fn watch_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn watch_line(
    kind: &str,
    lock: &Lock,
    as_table: bool,
    query: &ListQuery,
    now: DateTime<Utc>,
) -> String {
    let object = if as_table {
        table(
            std::slice::from_ref(lock),
            &lock.metadata.resource_version,
            query,
            now,
        )
    } else {
        serde_json::to_value(lock).unwrap_or(Value::Null)
    };
    json!({"type": kind, "object": object}).to_string() + "\n"
}

/// Whether the client asked for a `meta.k8s.io/v1` Table (`kubectl get` does).
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=Table")
                && params
                    .iter()
                    .all(|p| !p.starts_with("g=") || *p == "g=meta.k8s.io")
        })
}

/// The Table of `kubectl get locks`: priority-0 columns by default, the rest with `-o wide`.
pub fn table(
    locks: &[Lock],
    resource_version: &str,
    query: &ListQuery,
    now: DateTime<Utc>,
) -> Value {
    let column = |name: &str, kind: &str, format: &str, description: &str, priority: u8| json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority});
    let columns = vec![
        column("Name", "string", "name", "Name of the lock", 0),
        column(
            "Target",
            "string",
            "",
            "What is frozen: * (the whole namespace), Kind, or Kind/name",
            0,
        ),
        column("Applies To", "string", "", "Whom the lock applies to", 0),
        column(
            "Exempt",
            "string",
            "",
            "Who is exempt (besides the cluster's own machinery)",
            0,
        ),
        column("Until", "string", "", "When the lock stops applying", 0),
        column("Status", "string", "", "Active or Expired", 0),
        column("Set By", "string", "", "Who created the lock", 0),
        column("Age", "string", "", "Time since the lock was created", 0),
        column("Operations", "string", "", "Operations denied", 1),
        column("Reason", "string", "", "Why", 1),
    ];
    let rows: Vec<Value> = locks
        .iter()
        .map(|lock| {
            let status = lock.status.clone().unwrap_or_default();
            let cells = json!([
                lock.metadata.name,
                lock.spec.target.to_string(),
                lock.spec.applies_to(),
                lock.spec.exempt().unwrap_or_else(|| "<none>".to_owned()),
                lock.spec.expires_at.map_or_else(
                    || "<deleted>".to_owned(),
                    |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                if status.phase.is_empty() {
                    PHASE_EXPIRED.to_owned()
                } else {
                    status.phase.clone()
                },
                status.set_by.username,
                lock.metadata
                    .creation_timestamp
                    .map_or_else(|| "<unknown>".to_owned(), |at| age(now - at)),
                status.operations.join(","),
                lock.spec.reason,
            ]);
            let object = match query.include_object.as_deref() {
                Some("None") => Value::Null,
                Some("Object") => serde_json::to_value(lock).unwrap_or(Value::Null),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": serde_json::to_value(&lock.metadata).unwrap_or(Value::Null),
                }),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// kubectl's short ages: `45s`, `12m`, `5h`, `3d`.
fn age(elapsed: chrono::TimeDelta) -> String {
    let seconds = elapsed.num_seconds().max(0);
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7200 => format!("{}m", seconds / 60),
        7200..172_800 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

fn lock_error(error: &locks::Error, name: &str) -> Response {
    match error {
        locks::Error::Invalid(invalid) => {
            let details = json!({
                "name": name,
                "group": GROUP,
                "kind": "Lock",
                "causes": [{
                    "reason": "FieldValueInvalid",
                    "message": invalid.reason,
                    "field": invalid.field,
                }],
            });
            status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("Lock.logistis.io {name:?} is invalid: {invalid}"),
                Some(details),
            )
        }
        locks::Error::AlreadyExists { key } => status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("locks.logistis.io {key:?} already exists"),
            Some(json!({"name": name, "group": GROUP, "kind": RESOURCE})),
        ),
        locks::Error::NotFound { key } => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("locks.logistis.io {key:?} not found"),
            Some(json!({"name": name, "group": GROUP, "kind": RESOURCE})),
        ),
        locks::Error::TooMany => status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            error.to_string(),
            None,
        ),
        locks::Error::Store(_) | locks::Error::Corrupt { .. } => {
            tracing::error!(error = %crate::telemetry::chain(error), "lock operation failed");
            internal("the lock could not be stored")
        }
    }
}

fn not_found(namespace: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "locks.logistis.io {:?} not found",
            logistis_api::lock::lock_key(namespace, name)
        ),
        Some(json!({"name": name, "group": GROUP, "kind": RESOURCE})),
    )
}

fn internal(message: &str) -> Response {
    status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        message.to_owned(),
        None,
    )
}

/// A `meta/v1` Status body.
fn status_value(code: StatusCode, reason: &str, message: String, details: Option<Value>) -> Value {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    body
}

fn status(code: StatusCode, reason: &str, message: String, details: Option<Value>) -> Response {
    (code, Json(status_value(code, reason, message, details))).into_response()
}
