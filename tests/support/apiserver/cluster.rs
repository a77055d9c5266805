//! The cluster side of the Kubernetes API stand-in: objects with resourceVersions, discovery
//! of ordinary resources, list and watch in the real wire format, and — for every change a
//! test applies — the AdmissionReview posted to Logistis first, exactly as kube-apiserver
//! does, then the change applied (or rejected after admission, or conflicting).
//!
//! Wire format, as kube-apiserver serves it:
//! - discovery: `/api` (APIVersions), `/apis` (APIGroupList), `/api/v1` and
//!   `/apis/{group}/{version}` (APIResourceList with verbs);
//! - list: `…/{plural}` and `…/namespaces/{ns}/{plural}` with `limit`/`continue`, items in
//!   key order, `metadata.resourceVersion` the list's revision; a `continue` token from
//!   before a compaction is `410 Gone` with a `Status` body (reason `Expired`);
//! - watch (`watch=true`): newline-delimited `{"type":"ADDED|MODIFIED|DELETED","object":…}`
//!   from `resourceVersion`, `BOOKMARK`s every [`Cluster::set_bookmark_interval`] when
//!   `allowWatchBookmarks=true`, and for a resourceVersion older than the last compaction
//!   one `{"type":"ERROR","object":{Status 410 Expired}}` line, as the real server sends.
//!
//! A test drives changes with [`Cluster::create`], [`Cluster::update`], [`Cluster::scale`],
//! [`Cluster::delete`] (reviewed), their `Admission::Deny` variants (reviewed, then
//! rejected, as a later webhook or a quota would), [`Cluster::update_conflicting`] (another
//! write lands between admission and storage), and [`Cluster::apply_unreviewed`] (a change
//! the webhook never saw). [`Cluster::compact`] and [`Cluster::drop_watches`] make a watcher
//! reconnect into a `410 Gone`.
//!
//! [`Cluster::router`] is an `axum::Router` to merge into the shared API server core; until
//! then [`Cluster::serve`] serves it on plain HTTP with its own kubeconfig.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A resource type the stand-in serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub const DEPLOYMENTS: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    plural: "deployments",
    namespaced: true,
};
pub const CONFIGMAPS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    namespaced: true,
};
pub const SECRETS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    namespaced: true,
};
pub const NAMESPACES: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    namespaced: false,
};
/// Leases: served (and listable) but left out by Logistis' default exclusions.
pub const LEASES: ResourceType = ResourceType {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    namespaced: true,
};

/// Every type the stand-in serves.
pub const TYPES: [ResourceType; 5] = [DEPLOYMENTS, CONFIGMAPS, SECRETS, NAMESPACES, LEASES];

/// What happens after the review was posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Applied (the normal case).
    Allow,
    /// Rejected after admission (a later webhook, a quota): the review was sent, nothing
    /// changes.
    Deny,
}

/// One stored change, for watches.
#[derive(Debug, Clone)]
struct Change {
    revision: u64,
    resource: usize,
    namespace: String,
    kind: &'static str,
    object: Value,
}

struct Objects {
    revision: u64,
    /// Watches from below this revision get 410 Gone.
    compacted: u64,
    /// (type index, namespace, name) → object.
    objects: BTreeMap<(usize, String, String), Value>,
    history: Vec<Change>,
    webhook: Option<String>,
    /// Reviews posted, and whether Logistis answered.
    reviews: Vec<(String, bool)>,
}

/// The stand-in cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    objects: Arc<Mutex<Objects>>,
    changes: broadcast::Sender<Change>,
    /// Bumped by [`Cluster::drop_watches`]: every open watch ends.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    bookmark_ms: Arc<AtomicU64>,
    /// While set, watch requests are refused (503): the watchers are disconnected.
    watches_paused: Arc<std::sync::atomic::AtomicBool>,
    client: reqwest::Client,
    uid: Arc<AtomicU64>,
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message.into(), "reason": reason, "code": code.as_u16()})
}

fn status_response(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    (code, axum::Json(status(code, reason, message))).into_response()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parsed resource path: `/api/v1[/namespaces/NS]/PLURAL[/NAME]`,
/// `/apis/G/V[/namespaces/NS]/PLURAL[/NAME]`.
struct ResourcePath {
    resource: usize,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<ResourcePath> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (plural, namespace, name) = match rest {
        // `/api/v1/namespaces/NS` is the Namespace NS itself.
        ["namespaces", ns] => ("namespaces", None, Some((*ns).to_owned())),
        ["namespaces", ns, plural] => (*plural, Some((*ns).to_owned()), None),
        ["namespaces", ns, plural, name] => {
            (*plural, Some((*ns).to_owned()), Some((*name).to_owned()))
        }
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, None, Some((*name).to_owned())),
        _ => return None,
    };
    let resource = TYPES
        .iter()
        .position(|t| t.plural == plural && t.group == group && t.version == version)?;
    Some(ResourcePath {
        resource,
        namespace,
        name,
    })
}

impl Cluster {
    pub fn new() -> Cluster {
        let (changes, _) = broadcast::channel(4096);
        Cluster {
            objects: Arc::new(Mutex::new(Objects {
                revision: 100,
                compacted: 0,
                objects: BTreeMap::new(),
                history: Vec::new(),
                webhook: None,
                reviews: Vec::new(),
            })),
            changes,
            generation: Arc::new(tokio::sync::watch::channel(0).0),
            bookmark_ms: Arc::new(AtomicU64::new(1000)),
            watches_paused: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            client: reqwest::Client::new(),
            uid: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Post reviews to this webhook URL, trusting `ca` (PEM); `None`: call no webhook.
    pub fn set_webhook(&mut self, url: Option<&str>, ca: Option<&[u8]>) -> Result<()> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(ca) = ca {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(ca)?);
        }
        self.client = builder.build()?;
        self.objects.lock().unwrap().webhook = url.map(str::to_owned);
        Ok(())
    }

    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.bookmark_ms.store(
            u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Reviews posted so far: (uid, whether Logistis answered allowed).
    pub fn reviews(&self) -> Vec<(String, bool)> {
        self.objects.lock().unwrap().reviews.clone()
    }

    /// The current revision (the resourceVersion of the newest write).
    pub fn revision(&self) -> u64 {
        self.objects.lock().unwrap().revision
    }

    /// Forget the change history: a watch from an older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        let mut objects = self.objects.lock().unwrap();
        objects.compacted = objects.revision;
        objects.history.clear();
    }

    /// End every open watch; watchers reconnect from their last resourceVersion.
    pub fn drop_watches(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Disconnect every watcher and refuse new watches (503) until resumed: what a watcher
    /// sees while the API server (or the network to it) is away.
    pub fn pause_watches(&self, paused: bool) {
        self.watches_paused.store(paused, Ordering::SeqCst);
        if paused {
            self.drop_watches();
        }
    }

    /// The object as stored, if it exists.
    pub fn get(&self, resource: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        let index = TYPES.iter().position(|t| t == resource)?;
        self.objects
            .lock()
            .unwrap()
            .objects
            .get(&(index, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    fn next_uid(&self) -> String {
        format!(
            "00000000-0000-4000-8000-{:012x}",
            self.uid.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// POST the review, as kube-apiserver does (`failurePolicy: Ignore`: an unreachable
    /// webhook is skipped). Returns the request uid.
    #[allow(clippy::too_many_arguments)]
    async fn review(
        &self,
        resource: &ResourceType,
        operation: &str,
        subresource: Option<&str>,
        user: &str,
        object: Option<&Value>,
        old_object: Option<&Value>,
        namespace: &str,
        name: &str,
    ) -> String {
        let uid = self.next_uid();
        let webhook = self.objects.lock().unwrap().webhook.clone();
        let Some(url) = webhook else {
            return uid;
        };
        let (kind, request_resource) = match subresource {
            Some("scale") => (
                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
                json!({"group": resource.group, "version": resource.version, "resource": resource.plural}),
            ),
            _ => (
                json!({"group": resource.group, "version": resource.version, "kind": resource.kind}),
                json!({"group": resource.group, "version": resource.version, "resource": resource.plural}),
            ),
        };
        let options_kind = match operation {
            "CREATE" => "CreateOptions",
            "UPDATE" => "UpdateOptions",
            _ => "DeleteOptions",
        };
        let mut request = json!({
            "uid": uid,
            "kind": kind, "resource": request_resource,
            "requestKind": kind, "requestResource": request_resource,
            "namespace": namespace, "name": name,
            "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object.cloned().unwrap_or(Value::Null),
            "oldObject": old_object.cloned().unwrap_or(Value::Null),
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind},
        });
        if let Some(subresource) = subresource {
            request["subResource"] = json!(subresource);
        }
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
        let answered = match self.client.post(&url).json(&review).send().await {
            Ok(response) => response
                .json::<Value>()
                .await
                .is_ok_and(|body| body["response"]["allowed"] == true),
            Err(_) => false,
        };
        self.objects
            .lock()
            .unwrap()
            .reviews
            .push((uid.clone(), answered));
        uid
    }

    /// Store `object` as the new state (or remove it), bump the revision, tell the watches.
    fn persist(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        object: Option<Value>,
    ) -> Value {
        let index = TYPES
            .iter()
            .position(|t| t == resource)
            .expect("a served type");
        let mut objects = self.objects.lock().unwrap();
        objects.revision += 1;
        let revision = objects.revision;
        let key = (index, namespace.to_owned(), name.to_owned());
        let (kind, stored) = match object {
            Some(mut object) => {
                object["metadata"]["resourceVersion"] = json!(revision.to_string());
                let kind = if objects.objects.contains_key(&key) {
                    "MODIFIED"
                } else {
                    "ADDED"
                };
                objects.objects.insert(key, object.clone());
                (kind, object)
            }
            None => {
                let mut last = objects.objects.remove(&key).unwrap_or_default();
                last["metadata"]["resourceVersion"] = json!(revision.to_string());
                ("DELETED", last)
            }
        };
        let change = Change {
            revision,
            resource: index,
            namespace: namespace.to_owned(),
            kind,
            object: stored.clone(),
        };
        objects.history.push(change.clone());
        let _ = self.changes.send(change);
        stored
    }

    fn managed_fields(user_manager: &str, api_version: &str, subresource: Option<&str>) -> Value {
        let mut entry = json!({"manager": user_manager, "operation": "Update",
                               "apiVersion": api_version, "time": now_rfc3339(),
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}});
        if let Some(subresource) = subresource {
            entry["subresource"] = json!(subresource);
        }
        json!([entry])
    }

    /// Create `object` (its `metadata.namespace`/`name`) as `user` through field manager
    /// `manager`: review, then store.
    pub async fn create(
        &self,
        resource: &ResourceType,
        user: &str,
        manager: &str,
        object: Value,
        admission: Admission,
    ) -> Result<Option<Value>> {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .context("the object needs a name")?
            .to_owned();
        if self.get(resource, &namespace, &name).is_some() {
            bail!("{} {namespace}/{name} already exists", resource.kind);
        }
        let mut object = object;
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        // What kube-apiserver fills before validating admission (BeforeCreate).
        object["metadata"]["uid"] = json!(self.next_uid());
        object["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        object["metadata"]["generation"] = json!(1);
        object["metadata"]["managedFields"] =
            Self::managed_fields(manager, &resource.api_version(), None);
        self.review(
            resource,
            "CREATE",
            None,
            user,
            Some(&object),
            None,
            &namespace,
            &name,
        )
        .await;
        if admission == Admission::Deny {
            return Ok(None);
        }
        Ok(Some(self.persist(
            resource,
            &namespace,
            &name,
            Some(object),
        )))
    }

    /// The object after `change` is applied to the current one, as an update would send it.
    fn updated(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        manager: &str,
        subresource: Option<&str>,
        change: impl FnOnce(&mut Value),
    ) -> Result<(Value, Value)> {
        let current = self
            .get(resource, namespace, name)
            .with_context(|| format!("{} {namespace}/{name} does not exist", resource.kind))?;
        let mut next = current.clone();
        change(&mut next);
        let generation = current["metadata"]["generation"].as_u64().unwrap_or(1);
        if next.get("spec") != current.get("spec") {
            next["metadata"]["generation"] = json!(generation + 1);
        }
        next["metadata"]["managedFields"] =
            Self::managed_fields(manager, &resource.api_version(), subresource);
        Ok((current, next))
    }

    /// Update the object with `change`: review, then store.
    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        user: &str,
        manager: &str,
        admission: Admission,
        change: impl FnOnce(&mut Value),
    ) -> Result<Option<Value>> {
        let (current, next) = self.updated(resource, namespace, name, manager, None, change)?;
        self.review(
            resource,
            "UPDATE",
            None,
            user,
            Some(&next),
            Some(&current),
            namespace,
            name,
        )
        .await;
        if admission == Admission::Deny {
            return Ok(None);
        }
        Ok(Some(self.persist(resource, namespace, name, Some(next))))
    }

    /// An update whose review is sent, but before it is stored `racer` updates the object
    /// (reviewed too): the first one fails with 409 Conflict, as an update carrying the
    /// resourceVersion it read does. Returns the object as the racer left it.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_conflicting(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        user: &str,
        change: impl FnOnce(&mut Value),
        racer: &str,
        racing_change: impl FnOnce(&mut Value),
    ) -> Result<Value> {
        let (current, next) =
            self.updated(resource, namespace, name, "kubectl-edit", None, change)?;
        self.review(
            resource,
            "UPDATE",
            None,
            user,
            Some(&next),
            Some(&current),
            namespace,
            name,
        )
        .await;
        let stored = self
            .update(
                resource,
                namespace,
                name,
                racer,
                "kubectl-edit",
                Admission::Allow,
                racing_change,
            )
            .await?
            .context("the racing update is applied")?;
        // The first update now conflicts: nothing of it is stored.
        Ok(stored)
    }

    /// `kubectl scale`: the `scale` subresource, reviewed with `autoscaling/v1 Scale`s.
    pub async fn scale(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        user: &str,
        replicas: u64,
    ) -> Result<Value> {
        let (current, next) =
            self.updated(resource, namespace, name, "kubectl", Some("scale"), |o| {
                o["spec"]["replicas"] = json!(replicas)
            })?;
        let scale = |object: &Value, replicas: &Value| {
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                   "metadata": {"name": name, "namespace": namespace,
                                "uid": object["metadata"]["uid"],
                                "resourceVersion": current["metadata"]["resourceVersion"]},
                   "spec": {"replicas": replicas}})
        };
        self.review(
            resource,
            "UPDATE",
            Some("scale"),
            user,
            Some(&scale(&next, &json!(replicas))),
            Some(&scale(&current, &current["spec"]["replicas"])),
            namespace,
            name,
        )
        .await;
        Ok(self.persist(resource, namespace, name, Some(next)))
    }

    /// Delete: review (oldObject = the object), then remove.
    pub async fn delete(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        user: &str,
        admission: Admission,
    ) -> Result<()> {
        let current = self
            .get(resource, namespace, name)
            .with_context(|| format!("{} {namespace}/{name} does not exist", resource.kind))?;
        self.review(
            resource,
            "DELETE",
            None,
            user,
            None,
            Some(&current),
            namespace,
            name,
        )
        .await;
        if admission == Admission::Allow {
            self.persist(resource, namespace, name, None);
        }
        Ok(())
    }

    /// A change no webhook sees (Logistis down, excluded, another path): `change` returns
    /// the new object, or `None` to delete it. `manager` goes into managedFields.
    pub fn apply_unreviewed(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        manager: &str,
        change: impl FnOnce(Option<Value>) -> Option<Value>,
    ) -> Option<Value> {
        let current = self.get(resource, namespace, name);
        let existed = current.is_some();
        let mut next = change(current.clone());
        if let Some(next) = &mut next {
            next["apiVersion"] = json!(resource.api_version());
            next["kind"] = json!(resource.kind);
            next["metadata"]["name"] = json!(name);
            if resource.namespaced {
                next["metadata"]["namespace"] = json!(namespace);
            }
            if !existed {
                next["metadata"]["uid"] = json!(self.next_uid());
                next["metadata"]["creationTimestamp"] = json!(now_rfc3339());
            }
            if next.pointer("/metadata/managedFields").is_none()
                || current.as_ref().and_then(|c| c.get("spec")) != next.get("spec")
                || current.as_ref().and_then(|c| c.get("data")) != next.get("data")
            {
                next["metadata"]["managedFields"] =
                    Self::managed_fields(manager, &resource.api_version(), None);
            }
        }
        if next.is_none() && !existed {
            return None;
        }
        Some(self.persist(resource, namespace, name, next))
    }

    /// The routes: discovery, list and watch of [`TYPES`]; everything else 404 with a
    /// `Status`.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(handle)
            .with_state(self.clone())
    }

    /// Serve [`Cluster::router`] on plain HTTP on loopback and write a kubeconfig for it.
    pub async fn serve(&self) -> Result<Served> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": url}}],
            "users": [{"name": "logistis", "user": {"token": "confirm-e2e"}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "logistis"}}]
        });
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, serde_json::to_vec_pretty(&kubeconfig)?)?;
        Ok(Served {
            url,
            kubeconfig: path,
            _dir: dir,
            task,
        })
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

/// A served stand-in: stops when dropped.
pub struct Served {
    pub url: String,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn discovery(path: &str) -> Option<Value> {
    let resources = |group: &str, version: &str| {
        let list: Vec<Value> = TYPES
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .map(|t| {
                json!({"name": t.plural, "singularName": t.kind.to_ascii_lowercase(),
                       "namespaced": t.namespaced, "kind": t.kind,
                       "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
            })
            .collect();
        let group_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
               "resources": list})
    };
    match path.trim_end_matches('/') {
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
                              "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        "/apis" => {
            let mut groups: Vec<&str> = TYPES
                .iter()
                .map(|t| t.group)
                .filter(|g| !g.is_empty())
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|g| {
                    let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
                    json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        "/api/v1" => Some(resources("", "v1")),
        other => {
            let parts: Vec<&str> = other.trim_matches('/').split('/').collect();
            match parts.as_slice() {
                ["apis", group, version] if TYPES.iter().any(|t| t.group == *group) => {
                    Some(resources(group, version))
                }
                _ => None,
            }
        }
    }
}

async fn handle(State(cluster): State<Cluster>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(request.uri().query().unwrap_or("")).unwrap_or_default();
    if request.method() != Method::GET {
        return status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "{} {path}: the stand-in changes objects only through its test API",
                request.method()
            ),
        );
    }
    if let Some(document) = discovery(&path) {
        return axum::Json(document).into_response();
    }
    let Some(target) = parse_path(&path) else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        );
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if watch {
        if cluster.watches_paused.load(Ordering::SeqCst) {
            return status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the stand-in is refusing watches",
            );
        }
        return watch_response(&cluster, &target, &query);
    }
    let objects = cluster.objects.lock().unwrap();
    let resource = &TYPES[target.resource];
    if let Some(name) = &target.name {
        let namespace = target.namespace.clone().unwrap_or_default();
        return match objects
            .objects
            .get(&(target.resource, namespace, name.clone()))
        {
            Some(object) => axum::Json(object.clone()).into_response(),
            None => status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} \"{name}\" not found", resource.plural),
            ),
        };
    }
    // A list, in key order, paged by `limit`/`continue`.
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let (list_revision, after) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let Some((revision, key)) = token
                .split_once(':')
                .and_then(|(r, k)| Some((r.parse::<u64>().ok()?, k.to_owned())))
            else {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "invalid continue token",
                );
            };
            if revision < objects.compacted {
                return status_response(
                    StatusCode::GONE,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                );
            }
            (revision, Some(key))
        }
        None => (objects.revision, None),
    };
    let items: Vec<(String, Value)> = objects
        .objects
        .iter()
        .filter(|((index, namespace, _), _)| {
            *index == target.resource && target.namespace.as_ref().is_none_or(|ns| ns == namespace)
        })
        .map(|((_, namespace, name), object)| (format!("{namespace}/{name}"), object.clone()))
        .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
        .collect();
    let (page, more) = match limit {
        Some(limit) if items.len() > limit => (&items[..limit], true),
        _ => (&items[..], false),
    };
    let mut metadata = json!({"resourceVersion": list_revision.to_string()});
    if more && let Some((key, _)) = page.last() {
        metadata["continue"] = json!(format!("{list_revision}:{key}"));
    }
    axum::Json(json!({
        "kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": page.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn line(kind: &str, object: &Value) -> bytes::Bytes {
    let mut text = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
    text.push(b'\n');
    text.into()
}

fn watch_response(
    cluster: &Cluster,
    target: &ResourcePath,
    query: &BTreeMap<String, String>,
) -> Response {
    let resource = target.resource;
    let namespace = target.namespace.clone();
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(290), Duration::from_secs);
    let from = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse::<u64>().ok())
        .unwrap_or(0);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1024);
    let relevant = move |change: &Change| {
        change.resource == resource && namespace.as_ref().is_none_or(|ns| *ns == change.namespace)
    };
    // Backlog and subscription under one lock: no change falls between them.
    let (backlog, mut live, gone, mut revision) = {
        let objects = cluster.objects.lock().unwrap();
        let gone = from != 0 && from < objects.compacted;
        let backlog: Vec<Change> = objects
            .history
            .iter()
            .filter(|c| c.revision > from && relevant(c))
            .cloned()
            .collect();
        (backlog, cluster.changes.subscribe(), gone, objects.revision)
    };
    let mut generation = cluster.generation.subscribe();
    // Set before a pause ends the streams: nothing is delivered once it is, even by a stream
    // that has not yet seen its end (what a watcher sees of an API server that went away).
    let paused = cluster.watches_paused.clone();
    let bookmark_every = Duration::from_millis(cluster.bookmark_ms.load(Ordering::Relaxed).max(10));
    let kind = TYPES[resource].kind;
    let api_version = TYPES[resource].api_version();
    tokio::spawn(async move {
        if gone {
            let expired = status(
                StatusCode::GONE,
                "Expired",
                format!("too old resource version: {from} (compacted)"),
            );
            let _ = tx.send(line("ERROR", &expired)).await;
            return;
        }
        let mut last = from;
        for change in backlog {
            last = change.revision;
            if tx.send(line(change.kind, &change.object)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = generation.changed() => return,
                () = &mut deadline => return,
                _ = ticker.tick(), if bookmarks => {
                    if paused.load(Ordering::SeqCst) {
                        return;
                    }
                    let mark = json!({"kind": kind, "apiVersion": api_version,
                                      "metadata": {"resourceVersion": revision.max(last).to_string()}});
                    if tx.send(line("BOOKMARK", &mark)).await.is_err() {
                        return;
                    }
                }
                change = live.recv() => match change {
                    Ok(change) => {
                        revision = change.revision;
                        if change.revision <= last || !relevant(&change) {
                            continue;
                        }
                        if paused.load(Ordering::SeqCst) {
                            return;
                        }
                        last = change.revision;
                        if tx.send(line(change.kind, &change.object)).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    });
    let stream =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|b| b.map(Ok::<_, Infallible>)));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("a valid response")
}
