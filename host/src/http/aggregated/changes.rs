//! `changes`: the recorded events as a Kubernetes list resource — list (namespaced and
//! across namespaces, `--field-selector`, `limit`/`continue`), get by event id, and watch
//! (`resourceVersion` = event id, `BOOKMARK`s when allowed, `timeoutSeconds`), as JSON or as
//! a server-side Table. Every item is filtered by what the caller may read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use logistis_api::{Event, EventId, Operation};
use serde_json::{Value, json};

use super::status::KubeError;
use super::table::{self, IncludeObject};
use super::{Context, GROUP, VERSION};
use crate::auth::verdict::is_secret;
use crate::auth::{Caller, Question, Visibility};
use crate::http::query::{MAX_LIMIT, decode_continue, encode_continue, parse_time};
use crate::store::{EventFilter, Scan};

/// How often a watch looks for new events.
pub const WATCH_POLL: Duration = Duration::from_millis(200);
/// How often a watch that allows bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
/// A watch without `timeoutSeconds` ends after this (clients re-watch from the last version).
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// A list page examines at most this many pages of the store while filtering.
const MAX_SCANS: usize = 20;

/// The Change object of an event.
pub fn change(event: &Event, with_objects: bool) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    let map = value.as_object_mut().expect("an event is an object");
    if !with_objects {
        map.remove("object");
        map.remove("oldObject");
    }
    let mut metadata = json!({
        "name": event.id.to_string(),
        "uid": event.uid,
        "resourceVersion": event.id.to_string(),
        "creationTimestamp": event.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    if !event.resource.namespace.is_empty() {
        metadata["namespace"] = json!(event.resource.namespace);
    }
    map.insert("apiVersion".into(), json!(format!("{GROUP}/{VERSION}")));
    map.insert("kind".into(), json!("Change"));
    map.insert("metadata".into(), metadata);
    value
}

/// `Deployment.apps/web`, `ConfigMap/settings`, with `/scale` for a subresource.
pub fn object_name(event: &Event) -> String {
    let r = &event.resource;
    let kind = if r.group.is_empty() {
        r.kind.clone()
    } else {
        format!("{}.{}", r.kind, r.group)
    };
    let mut name = format!("{kind}/{}", r.name);
    if !r.subresource.is_empty() {
        name = format!("{name}/{}", r.subresource);
    }
    name
}

fn columns() -> Vec<Value> {
    vec![
        table::column("Name", "string", "name", "The event id (time-ordered)."),
        table::column("Age", "string", "", "When the change was recorded."),
        table::column(
            "Object",
            "string",
            "",
            "The object changed (kind.group/name).",
        ),
        table::column(
            "Operation",
            "string",
            "",
            "CREATE, UPDATE, DELETE or CONNECT.",
        ),
        table::column("User", "string", "", "Who made the change."),
        table::column("Change", "string", "", "The first operation of the patch."),
    ]
}

fn row(event: &Event, include: IncludeObject) -> Value {
    let object = change(event, false);
    table::row(
        vec![
            json!(event.id.to_string()),
            json!(table::age(event.time, Utc::now())),
            json!(object_name(event)),
            json!(event.operation.as_str()),
            json!(event.user.username),
            json!(table::summary(
                event.operation.as_str(),
                &event.patch,
                event.options.as_ref()
            )),
        ],
        include.row_object(&object),
    )
}

/// What `fieldSelector` can select on, and `since`/`until`.
#[derive(Debug, Default)]
struct Selection {
    filter: EventFilter,
    id: Option<EventId>,
}

fn parse_selection(
    params: &HashMap<String, String>,
    path_namespace: Option<&str>,
) -> Result<Selection, KubeError> {
    let mut selection = Selection::default();
    let filter = &mut selection.filter;
    filter.namespace = path_namespace.map(str::to_owned);
    for term in selector_terms(params.get("fieldSelector").map_or("", String::as_str)) {
        let (field, value) = match term {
            Ok(term) => term,
            Err(message) => return Err(KubeError::bad_request(message)),
        };
        let value = value.trim().to_owned();
        match field.as_str() {
            "metadata.name" => {
                selection.id = Some(value.parse().map_err(
                    |e: logistis_api::ParseEventIdError| {
                        KubeError::bad_request(format!("metadata.name={value}: {e}"))
                    },
                )?);
            }
            "metadata.namespace" | "resource.namespace" => match &filter.namespace {
                Some(ns) if *ns != value => {
                    return Err(KubeError::bad_request(format!(
                        "field selector {field}={value} contradicts the namespace {ns} of the path"
                    )));
                }
                _ => filter.namespace = Some(value),
            },
            // `core` for the core group, as in the JSON API and the history paths.
            "resource.group" if value == "core" => filter.group = Some(String::new()),
            "resource.group" => filter.group = Some(value),
            "resource.kind" => filter.kind = Some(value),
            "resource.name" => filter.name = Some(value),
            "user.username" | "user" => filter.user = Some(value),
            "operation" => filter.operation = Some(Operation::parse(&value)),
            other => {
                return Err(KubeError::bad_request(format!(
                    "field label not supported: {other} (supported: metadata.name, metadata.namespace, resource.group, resource.kind, resource.name, user.username, operation)"
                )));
            }
        }
    }
    if filter.name.is_some() && filter.kind.is_none() {
        return Err(KubeError::bad_request(
            "resource.name needs resource.kind: an object is named within its kind",
        ));
    }
    let now = Utc::now();
    for (param, slot) in [
        ("since", &mut filter.since_micros),
        ("until", &mut filter.until_micros),
    ] {
        if let Some(text) = params.get(param).filter(|t| !t.is_empty()) {
            let time = parse_time(param, text, now).map_err(|_| {
                KubeError::bad_request(format!(
                    "{param}={text:?}: expected an RFC 3339 time or a duration (2h)"
                ))
            })?;
            *slot = Some(time.timestamp_micros());
        }
    }
    // Confirmation statuses, comma-separated: a parameter beside the field selector (whose
    // terms commas separate), as `since` and `until` are.
    if let Some(text) = params.get("status").filter(|t| !t.is_empty()) {
        filter.status = Some(
            crate::http::query::parse_statuses(text)
                .map_err(|_| {
                    KubeError::bad_request(format!(
                        "status={text:?}: expected pending, confirmed, phantom or observed (several separated by commas)"
                    ))
                })?,
        );
    }
    if let Some(selector) = params.get("labelSelector").filter(|s| !s.is_empty()) {
        return Err(KubeError::bad_request(format!(
            "labelSelector {selector:?}: changes carry no labels; use --field-selector"
        )));
    }
    Ok(selection)
}

/// The `field=value` (or `field==value`) terms of a field selector, split at unescaped commas
/// and unescaped (`\\`, `\,`, `\=`) as apimachinery's `fields.ParseSelector` does; `!=`
/// and malformed terms are refused with the reason.
fn selector_terms(selector: &str) -> Vec<Result<(String, String), String>> {
    let mut terms = Vec::new();
    let mut field = String::new();
    let mut value: Option<String> = None;
    let mut raw = String::new();
    let mut chars = selector.chars().peekable();
    let mut finish = |field: &mut String, value: &mut Option<String>, raw: &mut String| {
        let term = std::mem::take(raw);
        let name = std::mem::take(field).trim().to_owned();
        match value.take() {
            None if term.trim().is_empty() => {}
            None => terms.push(Err(format!(
                "invalid field selector {term:?}: only field=value is supported"
            ))),
            Some(_) if name.ends_with('!') => terms.push(Err(format!(
                "field selector {term:?}: only = and == are supported"
            ))),
            Some(value) => terms.push(Ok((name, value))),
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars.next().unwrap_or('\\');
                raw.extend(['\\', escaped]);
                match &mut value {
                    Some(value) => value.push(escaped),
                    None => field.push(escaped),
                }
            }
            ',' => finish(&mut field, &mut value, &mut raw),
            '=' if value.is_none() => {
                raw.push('=');
                if chars.peek() == Some(&'=') {
                    chars.next();
                    raw.push('=');
                }
                value = Some(String::new());
            }
            c => {
                raw.push(c);
                match &mut value {
                    Some(value) => value.push(c),
                    None => field.push(c),
                }
            }
        }
    }
    finish(&mut field, &mut value, &mut raw);
    terms
}

fn query_params(query: Option<&str>) -> Result<HashMap<String, String>, KubeError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|error| KubeError::bad_request(format!("invalid query parameters: {error}")))
}

fn matches(event: &Event, selection: &Selection, visibility: &Visibility) -> bool {
    let r = &event.resource;
    visibility.allows(&r.namespace, is_secret(&r.group, &r.kind))
        && selection.id.is_none_or(|id| id == event.id)
}

/// What `caller` may `verb` (list or watch) here: 403 when nothing.
async fn visibility_for(
    context: &Context,
    caller: &Caller,
    verb: &str,
    namespace: Option<&str>,
) -> Result<Visibility, KubeError> {
    let forbidden = |namespace: &str| {
        KubeError::forbidden(
            caller.name(),
            &Question::resource(verb, GROUP, "changes", namespace),
            "",
        )
    };
    match namespace {
        Some(ns) => {
            let visibility = caller.visibility(verb, [ns.to_owned()]).await?;
            if !visibility.namespace(ns) {
                return Err(forbidden(ns));
            }
            Ok(visibility)
        }
        None => {
            let store = context.app.store.clone();
            let namespaces = tokio::task::spawn_blocking(move || store.namespaces())
                .await
                .map_err(KubeError::internal)??;
            let visibility = caller
                .visibility(verb, namespaces.into_iter().map(|n| n.namespace))
                .await?;
            if !visibility.cluster && visibility.namespaces.is_empty() {
                return Err(forbidden(""));
            }
            Ok(visibility)
        }
    }
}

/// `GET …/changes` and `GET …/namespaces/{ns}/changes` (list or watch).
pub async fn list(
    context: &Arc<Context>,
    caller: &Caller,
    namespace: Option<&str>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, KubeError> {
    let params = query_params(query)?;
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = if watching { "watch" } else { "list" };
    let selection = parse_selection(&params, namespace)?;
    let visibility = visibility_for(context, caller, verb, namespace).await?;
    let include = IncludeObject::parse(params.get("includeObject").map(String::as_str))
        .map_err(KubeError::bad_request)?;
    let as_table = table::wants_table(headers);
    if watching {
        return watch(context, &params, selection, visibility, as_table, include);
    }
    let limit = match params.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => MAX_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| KubeError::bad_request(format!("limit={text:?}: expected a number")))?
            .min(MAX_LIMIT),
    };
    let mut before = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(decode_continue(token).map_err(|_| {
            KubeError::new(
                StatusCode::GONE,
                "Expired",
                "the continue token is not valid: start the list again",
            )
        })?),
        None => None,
    };
    let store = context.app.store.clone();
    let resource_version = store
        .last_id()
        .map_or_else(|| "0".to_owned(), |id| id.to_string());
    let (items, next) = tokio::task::spawn_blocking(move || {
        let mut items: Vec<Event> = Vec::new();
        let mut next = None;
        for _ in 0..MAX_SCANS {
            let page = store.list_events(
                &selection.filter,
                Scan {
                    limit: limit - items.len(),
                    before,
                    budget: Scan::DEFAULT_BUDGET,
                },
            )?;
            items.extend(
                page.items
                    .into_iter()
                    .filter(|e| matches(e, &selection, &visibility)),
            );
            next = page.next;
            if items.len() >= limit || next.is_none() {
                break;
            }
            before = next;
        }
        // More may follow the last item returned when the page is full.
        let next = if items.len() >= limit {
            items.last().map(|e| e.id)
        } else {
            next
        };
        Ok::<_, crate::store::Error>((items, next))
    })
    .await
    .map_err(KubeError::internal)??;
    let next = next.map(encode_continue);
    if as_table {
        let rows = items.iter().map(|e| row(e, include)).collect();
        return Ok(Json(table::table(
            Some(&columns()),
            rows,
            &resource_version,
            next,
        ))
        .into_response());
    }
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    Ok(Json(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "ChangeList",
        "metadata": metadata,
        "items": items.iter().map(|e| change(e, false)).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET …/changes/{id}`: one change, with its objects.
pub async fn get(
    context: &Arc<Context>,
    caller: &Caller,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, KubeError> {
    let not_found = || KubeError::not_found(format!("changes.{GROUP} \"{name}\" not found"));
    let id: EventId = name.parse().map_err(|_| not_found())?;
    let store = context.app.store.clone();
    let event = tokio::task::spawn_blocking(move || store.get_event(id))
        .await
        .map_err(KubeError::internal)??
        .filter(|e| e.resource.namespace == namespace)
        .ok_or_else(not_found)?;
    let r = &event.resource;
    if let Err(missing) = caller
        .may_read_object("get", namespace, is_secret(&r.group, &r.kind))
        .await?
    {
        return Err(KubeError::forbidden(caller.name(), &missing, name));
    }
    if table::wants_table(headers) {
        let table = table::table(
            Some(&columns()),
            vec![row(&event, IncludeObject::Metadata)],
            &id.to_string(),
            None,
        );
        return Ok(Json(table).into_response());
    }
    Ok(Json(change(&event, true)).into_response())
}

/// The watch: events after `resourceVersion` (or from now), as they are recorded.
fn watch(
    context: &Arc<Context>,
    params: &HashMap<String, String>,
    selection: Selection,
    visibility: Visibility,
    as_table: bool,
    include: IncludeObject,
) -> Result<Response, KubeError> {
    let store = context.app.store.clone();
    let start = match params
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        Some(version) => version.parse::<EventId>().map_err(|_| {
            KubeError::bad_request(format!("resourceVersion={version:?}: not an event id"))
        })?,
        None => store.last_id().unwrap_or(EventId(0)),
    };
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(WATCH_TIMEOUT, Duration::from_secs);
    let shutdown = context.shutdown.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut cursor = start;
        let mut first_table = true;
        let mut poll = tokio::time::interval(WATCH_POLL);
        let mut bookmark = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
                _ = bookmark.tick(), if bookmarks => {
                    let object = json!({"kind": "Change", "apiVersion": format!("{GROUP}/{VERSION}"),
                                        "metadata": {"resourceVersion": cursor.to_string()}});
                    if tx.send(line("BOOKMARK", &object)).await.is_err() {
                        return;
                    }
                }
                _ = poll.tick() => {
                    if store.last_id().is_none_or(|last| last <= cursor) {
                        continue;
                    }
                    let reader = store.clone();
                    let after = cursor;
                    let Ok(Ok(events)) = tokio::task::spawn_blocking(move || reader.read_log(Some(after), 500)).await else {
                        continue;
                    };
                    for event in events {
                        cursor = cursor.max(event.id);
                        if !selection.filter.matches_event(&event) || !matches(&event, &selection, &visibility) {
                            continue;
                        }
                        let object = if as_table {
                            let columns = first_table.then(columns);
                            first_table = false;
                            table::table(columns.as_deref(), vec![row(&event, include)], &event.id.to_string(), None)
                        } else {
                            change(&event, false)
                        };
                        if tx.send(line("ADDED", &object)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|b| b.map(Ok::<_, std::io::Error>))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a valid response"))
}

fn line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
}

/// Path parameters of a namespaced change.
pub async fn namespaced_get(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    get(&context, &caller, &namespace, &name, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn cluster_get(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    get(&context, &caller, "", &name, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn namespaced_list(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    list(
        &context,
        &caller,
        Some(&namespace),
        &headers,
        query.as_deref(),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn cluster_list(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    list(&context, &caller, None, &headers, query.as_deref())
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(query: &str) -> Result<Selection, KubeError> {
        parse_selection(&query_params(Some(query))?, None)
    }

    #[test]
    fn field_selectors_split_at_unescaped_commas_and_read_core_and_status() {
        let terms = selector_terms(r"user.username=a\,b\=c,resource.kind==Pod,,");
        let terms: Vec<_> = terms.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            terms,
            [
                ("user.username".to_owned(), "a,b=c".to_owned()),
                ("resource.kind".to_owned(), "Pod".to_owned()),
            ]
        );
        assert!(selector_terms("operation!=DELETE")[0].is_err());
        assert!(selector_terms("operation")[0].is_err());
        let chosen = selection(
            "fieldSelector=resource.group%3Dcore%2Cmetadata.namespace%3D&status=confirmed,observed",
        )
        .unwrap();
        assert_eq!(chosen.filter.group.as_deref(), Some(""));
        assert_eq!(chosen.filter.namespace.as_deref(), Some(""));
        assert_eq!(chosen.filter.status.as_ref().map(Vec::len), Some(2));
        assert!(selection("status=lost").is_err());
    }
}
