//! `locks`: the freezes of [`crate::locks`] as a Kubernetes resource — create, get, list,
//! watch and delete, answered as kube-apiserver answers (`Lock`/`LockList`, a server-side
//! `Table` for `kubectl get locks`, watch events, `Status` errors: 422 naming the field for a
//! bad lock, 404, 409).
//!
//! Every call is authorized here with the caller's SubjectAccessReview — `create locks` in a
//! namespace to lock it, at cluster scope for a cluster-scope lock — and the lock's
//! `status.setBy` is the authenticated caller, never the body. Paths without
//! `namespaces/{ns}` are the cluster scope: there a create, get or delete is of a
//! cluster-scope lock, and a list or watch is of every lock (as `kubectl get -A` expects).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};
use logistis_api::lock::{
    LOCK_API_VERSION, LOCK_KIND, LOCK_LIST_KIND, ListMeta, Lock, LockList, LockUser,
};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::changes::{BOOKMARK_INTERVAL, WATCH_TIMEOUT};
use super::status::KubeError;
use super::table::{self, IncludeObject};
use super::{Context, GROUP};
use crate::auth::{Caller, Question};
use crate::locks;

/// The resource name in paths, discovery and RBAC.
pub const RESOURCE: &str = "locks";
/// Largest lock body accepted (a lock is a few hundred bytes; the lists are bounded).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// `verb` on locks in `namespace` ("" = cluster scope), on `name` when given: 403 unless
/// the caller's SubjectAccessReview allows it.
async fn authorize(
    caller: &Caller,
    verb: &str,
    namespace: &str,
    name: &str,
) -> Result<(), KubeError> {
    let mut question = Question::resource(verb, GROUP, RESOURCE, namespace);
    if let Question::Resource { name: named, .. } = &mut question {
        name.clone_into(named);
    }
    if caller.may(&question).await? {
        Ok(())
    } else {
        Err(KubeError::forbidden(caller.name(), &question, name))
    }
}

/// Who sets a lock: the authenticated user (with authentication off, the name that says so).
fn set_by(caller: &Caller) -> LockUser {
    match caller.user() {
        Some(user) => LockUser {
            username: user.name.clone(),
            groups: user.groups.clone(),
        },
        None => LockUser {
            username: caller.name().to_owned(),
            groups: Vec::new(),
        },
    }
}

fn params(query: Option<&str>) -> Result<HashMap<String, String>, KubeError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|error| KubeError::bad_request(format!("invalid query parameters: {error}")))
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|v| v == "true" || v == "1")
}

/// `POST …/locks`: create a lock set by the caller.
async fn create(
    context: &Context,
    caller: &Caller,
    namespace: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Response, KubeError> {
    authorize(caller, "create", namespace, "").await?;
    let params = params(query)?;
    let dry_run = match params.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(KubeError::bad_request(format!(
                "dryRun={other:?}: the only value is All"
            )));
        }
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(KubeError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("a lock is at most {MAX_BODY_BYTES} bytes"),
        ));
    }
    let lock: Lock = serde_json::from_slice(body)
        .map_err(|error| KubeError::bad_request(format!("the body is not a Lock: {error}")))?;
    if lock.api_version != LOCK_API_VERSION || lock.kind != LOCK_KIND {
        return Err(KubeError::bad_request(format!(
            "expected apiVersion {LOCK_API_VERSION} and kind {LOCK_KIND}, got {} {}",
            lock.api_version, lock.kind
        )));
    }
    let name = lock.metadata.name.clone();
    let all = context.app.locks.clone();
    let set_by = set_by(caller);
    let owned = namespace.to_owned();
    let created =
        tokio::task::spawn_blocking(move || all.create(&owned, lock, set_by, Utc::now(), dry_run))
            .await
            .map_err(KubeError::internal)?
            .map_err(|error| lock_error(error, &name))?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE …/locks/{name}`: answers the lock as it was (as the API server answers a delete
/// without finalizers). A body (`DeleteOptions`) is accepted and ignored.
async fn delete(
    context: &Context,
    caller: &Caller,
    namespace: &str,
    name: &str,
) -> Result<Response, KubeError> {
    authorize(caller, "delete", namespace, name).await?;
    let all = context.app.locks.clone();
    let (owned_namespace, owned_name) = (namespace.to_owned(), name.to_owned());
    let deleted =
        tokio::task::spawn_blocking(move || all.delete(&owned_namespace, &owned_name, Utc::now()))
            .await
            .map_err(KubeError::internal)?
            .map_err(|error| lock_error(error, name))?;
    Ok(Json(deleted).into_response())
}

/// `GET …/locks/{name}`, as a Lock or a one-row Table.
async fn get(
    context: &Context,
    caller: &Caller,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, KubeError> {
    authorize(caller, "get", namespace, name).await?;
    let include = include_object(&params(query)?)?;
    let now = Utc::now();
    let lock = context
        .app
        .locks
        .get(namespace, name, now)
        .ok_or_else(|| not_found(namespace, name))?;
    if table::wants_table(headers) {
        let rows = vec![row(&lock, include, now)];
        let version = lock.metadata.resource_version.clone();
        return Ok(Json(table::table(Some(&columns()), rows, &version, None)).into_response());
    }
    Ok(Json(lock).into_response())
}

/// `GET …/locks` (one namespace, or every lock with `namespace: None`): a LockList or a
/// Table; with `watch=true`, a stream of watch events.
async fn list(
    context: &Arc<Context>,
    caller: &Caller,
    namespace: Option<&str>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, KubeError> {
    let params = params(query)?;
    let watching = flag(&params, "watch");
    let verb = if watching { "watch" } else { "list" };
    authorize(caller, verb, namespace.unwrap_or(""), "").await?;
    let include = include_object(&params)?;
    let as_table = table::wants_table(headers);
    if watching {
        return Ok(watch(context, namespace, &params, as_table, include));
    }
    let now = Utc::now();
    let (items, resource_version) = context.app.locks.list(namespace, now);
    let resource_version = resource_version.to_string();
    if as_table {
        let rows = items.iter().map(|lock| row(lock, include, now)).collect();
        return Ok(Json(table::table(
            Some(&columns()),
            rows,
            &resource_version,
            None,
        ))
        .into_response());
    }
    Ok(Json(LockList {
        api_version: LOCK_API_VERSION.to_owned(),
        kind: LOCK_LIST_KIND.to_owned(),
        metadata: ListMeta { resource_version },
        items,
    })
    .into_response())
}

fn include_object(params: &HashMap<String, String>) -> Result<IncludeObject, KubeError> {
    IncludeObject::parse(params.get("includeObject").map(String::as_str))
        .map_err(KubeError::bad_request)
}

/// Newline-delimited watch events. From `resourceVersion` absent or `0`: every current lock
/// as ADDED, then changes; from the current version: changes; from an older one: a 410
/// `Expired` event, so the client re-lists (changes are not kept for replay). Ends on
/// `timeoutSeconds`, at shutdown, or when the watcher falls too far behind.
fn watch(
    context: &Arc<Context>,
    namespace: Option<&str>,
    params: &HashMap<String, String>,
    as_table: bool,
    include: IncludeObject,
) -> Response {
    // Subscribe before reading the set: no change falls between the two.
    let mut changes = context.app.locks.subscribe();
    let now = Utc::now();
    let (current, current_version) = context.app.locks.list(namespace, now);
    let mut lines = Vec::new();
    let mut first_table = true;
    let mut object = move |lock: &Lock, now: DateTime<Utc>| {
        if as_table {
            let columns = first_table.then(columns);
            first_table = false;
            let rows = vec![row(lock, include, now)];
            table::table(
                columns.as_deref(),
                rows,
                &lock.metadata.resource_version,
                None,
            )
        } else {
            serde_json::to_value(lock).unwrap_or(Value::Null)
        }
    };
    match params.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => {
            for lock in &current {
                lines.push(line("ADDED", &object(lock, now)));
            }
        }
        Some(asked) => {
            let asked: u64 = asked.parse().unwrap_or(0);
            if asked < current_version {
                let gone = json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "reason": "Expired", "code": 410,
                    "message": format!("too old resource version: {asked} ({current_version})"),
                });
                return watch_response(Body::from(line("ERROR", &gone)));
            }
        }
    }
    let bookmarks = flag(params, "allowWatchBookmarks");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(WATCH_TIMEOUT, Duration::from_secs)
        .min(WATCH_TIMEOUT);
    let namespace = namespace.map(str::to_owned);
    let shutdown = context.shutdown.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        for initial in lines {
            if tx.send(initial).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut version = current_version;
        let mut bookmark = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark.tick().await;
        loop {
            let change = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
                _ = bookmark.tick(), if bookmarks => {
                    let marker = json!({"kind": LOCK_KIND, "apiVersion": LOCK_API_VERSION,
                                        "metadata": {"resourceVersion": version.to_string()}});
                    if tx.send(line("BOOKMARK", &marker)).await.is_err() {
                        return;
                    }
                    continue;
                }
                change = changes.recv() => change,
            };
            let change = match change {
                Ok(change) => change,
                // Fallen behind, or the set is gone: the client re-watches or re-lists.
                Err(RecvError::Lagged(_) | RecvError::Closed) => return,
            };
            version = change.resource_version;
            if namespace
                .as_deref()
                .is_some_and(|ns| ns != change.lock.metadata.namespace)
            {
                continue;
            }
            let now = Utc::now();
            let mut lock = locks::with_phase(&change.lock, now);
            lock.metadata.resource_version = change.resource_version.to_string();
            if tx
                .send(line(change.change.as_str(), &object(&lock, now)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<_, std::io::Error>))
    });
    watch_response(Body::from_stream(stream))
}

fn line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
}

fn watch_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a valid response")
}

/// The columns of `kubectl get locks`: the first eight by default, the rest with `-o wide`.
fn columns() -> Vec<Value> {
    let wide = |mut column: Value| {
        column["priority"] = json!(1);
        column
    };
    vec![
        table::column("Name", "string", "name", "Name of the lock."),
        table::column(
            "Target",
            "string",
            "",
            "What is frozen: * (the whole namespace), Kind, or Kind/name.",
        ),
        table::column("Applies To", "string", "", "Whom the lock applies to."),
        table::column(
            "Exempt",
            "string",
            "",
            "Who is exempt (besides the cluster's own machinery).",
        ),
        table::column("Until", "string", "", "When the lock stops applying."),
        table::column("Status", "string", "", "Active or Expired."),
        table::column("Set By", "string", "", "Who created the lock."),
        table::column("Age", "string", "", "Time since the lock was created."),
        wide(table::column(
            "Operations",
            "string",
            "",
            "Operations denied.",
        )),
        wide(table::column("Reason", "string", "", "Why.")),
    ]
}

fn row(lock: &Lock, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let status = lock.status.clone().unwrap_or_default();
    let object = serde_json::to_value(lock).unwrap_or(Value::Null);
    table::row(
        vec![
            json!(lock.metadata.name),
            json!(lock.spec.target.to_string()),
            json!(lock.spec.applies_to()),
            json!(lock.spec.exempt().unwrap_or_else(|| "<none>".to_owned())),
            json!(lock.spec.expires_at.map_or_else(
                || "<deleted>".to_owned(),
                |at| at.to_rfc3339_opts(SecondsFormat::Secs, true)
            )),
            json!(status.phase),
            json!(status.set_by.username),
            json!(
                lock.metadata
                    .creation_timestamp
                    .map_or_else(|| "<unknown>".to_owned(), |at| table::age(at, now))
            ),
            json!(status.operations.join(",")),
            json!(lock.spec.reason),
        ],
        include.row_object(&object),
    )
}

fn details(name: &str) -> Option<Box<StatusDetails>> {
    Some(Box::new(StatusDetails {
        name: (!name.is_empty()).then(|| name.to_owned()),
        group: Some(GROUP.to_owned()),
        kind: Some(RESOURCE.to_owned()),
        ..StatusDetails::default()
    }))
}

fn not_found(namespace: &str, name: &str) -> KubeError {
    let mut error = KubeError::not_found(format!(
        "locks.{GROUP} {:?} not found",
        logistis_api::lock::lock_key(namespace, name)
    ));
    error.details = details(name);
    error
}

fn lock_error(error: locks::Error, name: &str) -> KubeError {
    match error {
        locks::Error::Invalid(invalid) => {
            let mut answer = KubeError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("Lock.{GROUP} {name:?} is invalid: {invalid}"),
            );
            answer.details = Some(Box::new(StatusDetails {
                name: (!name.is_empty()).then(|| name.to_owned()),
                group: Some(GROUP.to_owned()),
                kind: Some(LOCK_KIND.to_owned()),
                causes: Some(vec![StatusCause {
                    reason: Some("FieldValueInvalid".to_owned()),
                    message: Some(invalid.reason),
                    field: Some(invalid.field),
                }]),
                ..StatusDetails::default()
            }));
            answer
        }
        locks::Error::AlreadyExists { key } => {
            let mut answer = KubeError::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("locks.{GROUP} {key:?} already exists"),
            );
            answer.details = details(name);
            answer
        }
        locks::Error::NotFound { key } => {
            let mut answer = KubeError::not_found(format!("locks.{GROUP} {key:?} not found"));
            answer.details = details(name);
            answer
        }
        error @ locks::Error::TooMany => KubeError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            error.to_string(),
        ),
        error @ (locks::Error::Store(_) | locks::Error::Corrupt { .. }) => {
            KubeError::internal(error)
        }
    }
}

fn answer(result: Result<Response, KubeError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn namespaced_list(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    answer(
        list(
            &context,
            &caller,
            Some(&namespace),
            &headers,
            query.as_deref(),
        )
        .await,
    )
}

pub async fn cluster_list(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    answer(list(&context, &caller, None, &headers, query.as_deref()).await)
}

pub async fn namespaced_create(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path(namespace): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    answer(create(&context, &caller, &namespace, query.as_deref(), &body).await)
}

pub async fn cluster_create(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    answer(create(&context, &caller, "", query.as_deref(), &body).await)
}

pub async fn namespaced_get(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    answer(
        get(
            &context,
            &caller,
            &namespace,
            &name,
            &headers,
            query.as_deref(),
        )
        .await,
    )
}

pub async fn cluster_get(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    answer(get(&context, &caller, "", &name, &headers, query.as_deref()).await)
}

pub async fn namespaced_delete(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    answer(delete(&context, &caller, &namespace, &name).await)
}

pub async fn cluster_delete(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    answer(delete(&context, &caller, "", &name).await)
}
