//! The object store of the stand-in: typed collections (registered [`ResourceType`]s) of JSON
//! objects with one cluster-wide `resourceVersion` counter, a bounded history of changes for
//! watches that resume, and the REST verbs kube-apiserver serves for them — get, list (label
//! and field selectors), watch (`ADDED`/`MODIFIED`/`DELETED` lines, `BOOKMARK`s when asked,
//! `410 Gone` with an `Expired` Status for a resourceVersion older than the history), create,
//! update (optimistic concurrency on `metadata.resourceVersion`), patch (JSON patch, merge
//! patch; strategic merge and apply are read as merge patches) and delete.
//!
//! Extension point: a sibling module can serve more behaviour for ordinary resources (paging,
//! admission before a write) by adding routes with [`super::ApiServerBuilder::routes`] and
//! calling [`Objects`] — every write goes through [`Objects::write`], the one place a hook
//! belongs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::requestinfo::RequestInfo;
use super::{ApiState, status};

/// How many changes the store keeps for watches that resume from a resourceVersion.
pub const HISTORY: usize = 1000;

/// A kind of object the store serves, as discovery lists it.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    /// Plural, e.g. `configmaps`; `pods/exec` lists a subresource in discovery only.
    pub resource: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub verbs: Vec<String>,
}

impl ResourceType {
    pub fn new(group: &str, version: &str, resource: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            kind: kind.into(),
            namespaced,
            short_names: Vec::new(),
            verbs: [
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    pub fn short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    pub fn verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|v| (*v).to_owned()).collect();
        self
    }

    /// `v1` or `apps/v1`.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The types every stand-in serves.
pub fn default_types() -> Vec<ResourceType> {
    vec![
        ResourceType::new("", "v1", "namespaces", "Namespace", false).short_names(&["ns"]),
        ResourceType::new("", "v1", "configmaps", "ConfigMap", true).short_names(&["cm"]),
        ResourceType::new("", "v1", "secrets", "Secret", true),
        ResourceType::new("", "v1", "services", "Service", true).short_names(&["svc"]),
        ResourceType::new("", "v1", "pods", "Pod", true).short_names(&["po"]),
        ResourceType::new("", "v1", "pods/exec", "PodExecOptions", true).verbs(&["create", "get"]),
        ResourceType::new("apps", "v1", "deployments", "Deployment", true).short_names(&["deploy"]),
        ResourceType::new(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
        ),
        ResourceType::new(
            "apiregistration.k8s.io",
            "v1",
            "apiservices",
            "APIService",
            false,
        ),
        ResourceType::new(
            "authentication.k8s.io",
            "v1",
            "tokenreviews",
            "TokenReview",
            false,
        )
        .verbs(&["create"]),
        ResourceType::new(
            "authorization.k8s.io",
            "v1",
            "subjectaccessreviews",
            "SubjectAccessReview",
            false,
        )
        .verbs(&["create"]),
    ]
}

/// One change, as a watch reports it.
#[derive(Clone, Debug)]
pub struct Change {
    pub resource_version: u64,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub object: Value,
}

/// Why a write was refused: the HTTP status, the Status reason and message.
#[derive(Debug)]
pub struct Refusal {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: StatusCode, reason: &'static str, message: String) -> Refusal {
        Refusal {
            code,
            reason,
            message,
        }
    }

    pub fn not_found(t: &ResourceType, name: &str) -> Refusal {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(t)),
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        status(self.code, self.reason, &self.message)
    }
}

/// `deployments.apps`, `configmaps`: how kube-apiserver names a resource in messages.
fn qualified(t: &ResourceType) -> String {
    if t.group.is_empty() {
        t.resource.clone()
    } else {
        format!("{}.{}", t.resource, t.group)
    }
}

type Key = (String, String, String, String);

#[derive(Debug)]
struct Inner {
    resource_version: u64,
    types: Vec<ResourceType>,
    items: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    uid: u64,
}

/// The store; shared by the handlers and the test.
#[derive(Debug)]
pub struct Objects {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Change>,
}

fn key(t: &ResourceType, namespace: &str, name: &str) -> Key {
    let namespace = if t.namespaced { namespace } else { "" };
    (
        t.group.clone(),
        t.resource.clone(),
        namespace.to_owned(),
        name.to_owned(),
    )
}

impl Objects {
    pub fn new(types: Vec<ResourceType>) -> Objects {
        Objects {
            inner: Mutex::new(Inner {
                resource_version: 1,
                types,
                items: BTreeMap::new(),
                history: VecDeque::new(),
                uid: 0,
            }),
            changes: broadcast::channel(HISTORY).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serve another type (a CRD, say).
    pub fn register(&self, t: ResourceType) {
        let mut inner = self.lock();
        inner.types.retain(|old| {
            !(old.group == t.group && old.version == t.version && old.resource == t.resource)
        });
        inner.types.push(t);
    }

    pub fn types(&self) -> Vec<ResourceType> {
        self.lock().types.clone()
    }

    /// The type served at `group`/`version`/`resource`.
    pub fn find(&self, group: &str, version: &str, resource: &str) -> Option<ResourceType> {
        self.lock()
            .types
            .iter()
            .find(|t| t.group == group && t.version == version && t.resource == resource)
            .cloned()
    }

    /// The type of `resource` in `group`, any version.
    pub fn find_any(&self, group: &str, resource: &str) -> Option<ResourceType> {
        self.lock()
            .types
            .iter()
            .find(|t| t.group == group && t.resource == resource)
            .cloned()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    pub fn get(&self, t: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        self.lock().items.get(&key(t, namespace, name)).cloned()
    }

    /// Every object of a type (in one namespace, or all when `namespace` is empty).
    pub fn list(&self, t: &ResourceType, namespace: &str) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .items
            .iter()
            .filter(|((g, r, ns, _), _)| {
                *g == t.group && *r == t.resource && (namespace.is_empty() || *ns == namespace)
            })
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.resource_version)
    }

    /// Create or replace an object as the test sets up the cluster (no concurrency check);
    /// returns it as stored.
    pub fn put(&self, t: &ResourceType, object: Value) -> Value {
        self.write(t, object, None)
            .expect("an unconditional write succeeds")
    }

    /// Remove an object; returns it (with the deletion's resourceVersion) if it was there.
    pub fn delete(&self, t: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        let mut inner = self.lock();
        let mut object = inner.items.remove(&key(t, namespace, name))?;
        inner.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(inner.resource_version.to_string());
        self.record(&mut inner, t, "DELETED", object.clone());
        Some(object)
    }

    /// Store `object`: the one write path. With `expected` (`Some("")` = must not exist,
    /// `Some(rv)` = must be at that resourceVersion), a mismatch is a Conflict.
    pub fn write(
        &self,
        t: &ResourceType,
        mut object: Value,
        expected: Option<&str>,
    ) -> Result<Value, Refusal> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return Err(Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{} \"\" is invalid: metadata.name: Required value", t.kind),
            ));
        }
        let mut inner = self.lock();
        let k = key(t, &namespace, &name);
        let current = inner.items.get(&k).cloned();
        match (expected, &current) {
            (Some(""), Some(_)) => {
                return Err(Refusal::new(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", qualified(t)),
                ));
            }
            (Some(rv), Some(current))
                if !rv.is_empty() && current["metadata"]["resourceVersion"] != rv =>
            {
                return Err(Refusal::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        qualified(t)
                    ),
                ));
            }
            (Some(rv), None) if !rv.is_empty() => return Err(Refusal::not_found(t, &name)),
            _ => {}
        }
        inner.resource_version += 1;
        let rv = inner.resource_version;
        object["apiVersion"] = json!(t.group_version());
        object["kind"] = json!(t.kind);
        let metadata = object["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));
        if !t.namespaced {
            metadata.remove("namespace");
        }
        match &current {
            Some(current) => {
                for kept in ["uid", "creationTimestamp"] {
                    if let Some(value) = current["metadata"].get(kept) {
                        metadata.insert(kept.into(), value.clone());
                    }
                }
            }
            None => {
                inner.uid += 1;
                metadata.insert(
                    "uid".into(),
                    json!(format!("00000000-0000-4000-8000-{:012x}", inner.uid)),
                );
                metadata.entry("creationTimestamp").or_insert_with(|| {
                    json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string())
                });
            }
        }
        inner.items.insert(k, object.clone());
        let kind = if current.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(&mut inner, t, kind, object.clone());
        Ok(object)
    }

    fn record(&self, inner: &mut Inner, t: &ResourceType, kind: &'static str, object: Value) {
        let change = Change {
            resource_version: inner.resource_version,
            group: t.group.clone(),
            resource: t.resource.clone(),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            kind,
            object,
        };
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(change.clone());
        // Sent under the lock: a watch that subscribed under it misses nothing, twice nothing.
        let _ = self.changes.send(change);
    }

    /// The changes after `since` that a watch resuming there must replay, and a receiver for
    /// the ones to come; `None` when `since` is older than the history kept (410 Gone).
    pub fn changes_since(&self, since: u64) -> Option<(Vec<Change>, broadcast::Receiver<Change>)> {
        let inner = self.lock();
        let oldest = inner
            .history
            .front()
            .map_or(inner.resource_version, |c| c.resource_version);
        if since + 1 < oldest && inner.history.len() == HISTORY {
            return None;
        }
        let replay = inner
            .history
            .iter()
            .filter(|c| c.resource_version > since)
            .cloned()
            .collect();
        Some((replay, self.changes.subscribe()))
    }

    /// The current objects of a type as `ADDED` changes (a watch without a resourceVersion
    /// starts with them), and a receiver for what follows.
    fn snapshot(
        &self,
        t: &ResourceType,
        namespace: &str,
    ) -> (Vec<Change>, broadcast::Receiver<Change>, u64) {
        let inner = self.lock();
        let changes = inner
            .items
            .iter()
            .filter(|((g, r, ns, _), _)| {
                *g == t.group && *r == t.resource && (namespace.is_empty() || *ns == namespace)
            })
            .map(|((_, _, ns, _), object)| Change {
                resource_version: inner.resource_version,
                group: t.group.clone(),
                resource: t.resource.clone(),
                namespace: ns.clone(),
                kind: "ADDED",
                object: object.clone(),
            })
            .collect();
        (changes, self.changes.subscribe(), inner.resource_version)
    }
}

/// Label and field selectors of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    labels: Vec<(String, Op, String)>,
    fields: Vec<(String, Op, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Equals,
    NotEquals,
    Exists,
    NotExists,
}

fn parse_terms(selector: &str) -> Vec<(String, Op, String)> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                (k.trim().into(), Op::NotEquals, v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k.trim().into(), Op::Equals, v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                (k.trim().into(), Op::NotExists, String::new())
            } else {
                (term.into(), Op::Exists, String::new())
            }
        })
        .collect()
}

impl Selectors {
    pub fn from_query(query: &BTreeMap<String, String>) -> Selectors {
        Selectors {
            labels: parse_terms(query.get("labelSelector").map_or("", String::as_str)),
            fields: parse_terms(query.get("fieldSelector").map_or("", String::as_str)),
        }
    }

    pub fn matches(&self, object: &Value) -> bool {
        let check = |value: Option<&str>, op: Op, wanted: &str| match op {
            Op::Equals => value == Some(wanted),
            Op::NotEquals => value != Some(wanted),
            Op::Exists => value.is_some(),
            Op::NotExists => value.is_none(),
        };
        self.labels
            .iter()
            .all(|(k, op, v)| check(object["metadata"]["labels"][k].as_str(), *op, v))
            && self.fields.iter().all(|(k, op, v)| {
                let pointer = format!("/{}", k.replace('.', "/"));
                check(
                    object
                        .pointer(&pointer)
                        .and_then(Value::as_str)
                        .or(Some("")),
                    *op,
                    v,
                )
            })
    }
}

/// The query of a request as a map (last value wins).
pub fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Serve a resource request for a registered type (`info` parsed from the request).
pub async fn serve(state: Arc<ApiState>, info: RequestInfo, request: Request) -> Response {
    let Some(t) = state
        .objects
        .find(&info.api_group, &info.api_version, &info.resource)
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if !info.subresource.is_empty() {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!(
                "the stand-in does not serve {}/{}",
                t.resource, info.subresource
            ),
        );
    }
    let query = query_map(request.uri().query());
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 8 << 20)
        .await
        .unwrap_or_default();
    let objects = &state.objects;
    let namespace = info.namespace.clone();
    match info.verb.as_str() {
        "get" => match objects.get(&t, &namespace, &info.name) {
            Some(object) => json_response(StatusCode::OK, &object),
            None => Refusal::not_found(&t, &info.name).into_response(),
        },
        "list" => {
            let selectors = Selectors::from_query(&query);
            let (items, rv) = objects.list(&t, &namespace);
            let items: Vec<Value> = items
                .into_iter()
                .filter(|o| selectors.matches(o))
                .map(|mut o| {
                    let map = o.as_object_mut().expect("objects are JSON objects");
                    map.remove("apiVersion");
                    map.remove("kind");
                    o
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"apiVersion": t.group_version(), "kind": format!("{}List", t.kind),
                        "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            )
        }
        "watch" => watch(&state, &t, &namespace, &query),
        "create" => {
            let Some(mut object) = parse_body(&headers, &body) else {
                return bad_body();
            };
            if t.namespaced {
                object["metadata"]["namespace"] = json!(namespace);
            }
            if object["metadata"]["name"]
                .as_str()
                .is_none_or(str::is_empty)
                && let Some(prefix) = object["metadata"]["generateName"].as_str()
            {
                let suffix = objects.resource_version();
                object["metadata"]["name"] = json!(format!("{prefix}{suffix:05x}"));
            }
            match objects.write(&t, object, Some("")) {
                Ok(object) => json_response(StatusCode::CREATED, &object),
                Err(refusal) => refusal.into_response(),
            }
        }
        "update" => {
            let Some(mut object) = parse_body(&headers, &body) else {
                return bad_body();
            };
            if object["metadata"]["name"] != info.name.as_str() {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the name of the object does not match the name on the URL",
                );
            }
            if t.namespaced {
                object["metadata"]["namespace"] = json!(namespace);
            }
            let expected = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if objects.get(&t, &namespace, &info.name).is_none() {
                return Refusal::not_found(&t, &info.name).into_response();
            }
            match objects.write(&t, object, Some(&expected)) {
                Ok(object) => json_response(StatusCode::OK, &object),
                Err(refusal) => refusal.into_response(),
            }
        }
        "patch" => patch(&state, &t, &info, &headers, &body),
        "delete" => match objects.delete(&t, &namespace, &info.name) {
            Some(object) => json_response(StatusCode::OK, &object),
            None => Refusal::not_found(&t, &info.name).into_response(),
        },
        verb => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("the stand-in does not serve {verb} on {}", t.resource),
        ),
    }
}

fn bad_body() -> Response {
    status(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "the body is not a JSON or YAML object",
    )
}

/// JSON, or YAML (kubectl sends YAML for apply).
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Option<Value> {
    let yaml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"));
    let value: Value = if yaml {
        serde_yaml::from_slice(body).ok()?
    } else {
        serde_json::from_slice(body).ok()?
    };
    value.is_object().then_some(value)
}

fn patch(
    state: &ApiState,
    t: &ResourceType,
    info: &RequestInfo,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let current = state.objects.get(t, &info.namespace, &info.name);
    let apply = content_type == "application/apply-patch+yaml";
    let Some(mut object) = current
        .clone()
        .or_else(|| apply.then(|| json!({"metadata": {}})))
    else {
        return Refusal::not_found(t, &info.name).into_response();
    };
    let expected = object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match content_type.as_str() {
        "application/json-patch+json" => {
            let Ok(operations) = serde_json::from_slice::<json_patch::Patch>(body) else {
                return bad_body();
            };
            if let Err(error) = json_patch::patch(&mut object, &operations) {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &error.to_string(),
                );
            }
        }
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/apply-patch+yaml" => {
            let Some(patch) = parse_body(headers, body) else {
                return bad_body();
            };
            json_patch::merge(&mut object, &patch);
        }
        other => {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml ({other})"
                ),
            );
        }
    }
    object["metadata"]["name"] = json!(info.name);
    if t.namespaced {
        object["metadata"]["namespace"] = json!(info.namespace);
    }
    // A patch applies to the version it read: a concurrent write in between is a conflict.
    let expected = if current.is_some() {
        expected
    } else {
        String::new()
    };
    match state.objects.write(t, object, Some(&expected)) {
        Ok(object) => json_response(StatusCode::OK, &object),
        Err(refusal) => refusal.into_response(),
    }
}

/// A watch: replay from the resourceVersion asked for (or the current objects), then follow;
/// bookmarks when asked, end at `timeoutSeconds`.
fn watch(
    state: &ApiState,
    t: &ResourceType,
    namespace: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let selectors = Selectors::from_query(query);
    let since = query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
        .map(|rv| rv.parse::<u64>());
    let (replay, mut receiver, mut last) = match since {
        Some(Err(_)) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "resourceVersion is not a number",
            );
        }
        Some(Ok(since)) => match state.objects.changes_since(since) {
            Some((replay, receiver)) => (replay, receiver, since),
            None => {
                // As kube-apiserver: 200, then one ERROR event carrying the 410 Status.
                let error = json!({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {since}"),
                    "reason": "Expired", "code": 410}});
                return json_response(StatusCode::OK, &error);
            }
        },
        None => state.objects.snapshot(t, namespace),
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(3600), Duration::from_secs);
    let interval = state.bookmark_interval;
    let bookmark_kind = (t.kind.clone(), t.group_version());
    let (t, namespace) = (t.clone(), namespace.to_owned());
    let wanted = move |c: &Change| {
        c.group == t.group
            && c.resource == t.resource
            && (namespace.is_empty() || c.namespace == namespace)
            && selectors.matches(&c.object)
    };
    let line = |kind: &str, object: &Value| {
        Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
    };
    let (tx, body) = super::serve::channel_body();
    tokio::spawn(async move {
        for change in replay.into_iter().filter(|c| wanted(c)) {
            last = last.max(change.resource_version);
            if tx.send(line(change.kind, &change.object)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                _ = ticker.tick(), if bookmarks => {
                    let (kind, api_version) = &bookmark_kind;
                    let object = json!({"kind": kind, "apiVersion": api_version,
                                        "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(line("BOOKMARK", &object)).await.is_err() {
                        return;
                    }
                }
                received = receiver.recv() => match received {
                    Ok(change) => {
                        last = change.resource_version;
                        if wanted(&change) && tx.send(line(change.kind, &change.object)).await.is_err() {
                            return;
                        }
                    }
                    // Too slow to follow: end the watch; the client resumes or relists.
                    Err(_) => return,
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a valid response")
}
