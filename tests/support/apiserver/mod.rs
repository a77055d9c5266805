//! A Kubernetes API server stand-in for the end-to-end tests (no real one can run here),
//! built from the real wire formats (k8s-openapi types) and kube-apiserver's rules:
//!
//! - HTTPS on `127.0.0.1:0` with its own cluster CA; [`ApiServer::kubeconfig`] writes a
//!   kubeconfig (bearer-token user, `certificate-authority-data`) that kubectl, the kube
//!   client and `kubectl blame` read.
//! - Authentication by bearer token ([`User`]s the test adds; anonymous requests get 401),
//!   then authorization of every request from its RequestInfo ([`requestinfo`], a port of
//!   kube-apiserver's) against the test's RBAC table ([`Rbac`]); refusals are `Status` bodies
//!   worded as kube-apiserver words them.
//! - `TokenReview` and `SubjectAccessReview` for a delegating server ([`reviews`]),
//!   answered from the same users and table; counted, so cache tests can see them.
//! - An object store with resourceVersions and get/list/watch/create/update/patch/delete
//!   ([`objects`]), seeded with `kube-system/extension-apiserver-authentication` (the
//!   request-header CA, allowed names and header names); [`ApiServer::rotate_front_proxy_ca`]
//!   rotates it, and a watch sees the change.
//! - The aggregation layer ([`aggregation`]): `APIService` objects route their group version
//!   to a Service endpoint the test names; requests are proxied with the front-proxy client
//!   certificate and `X-Remote-*` headers; discovery ([`discovery`]) lists their groups.
//!
//! Extension point: [`ApiServerBuilder::routes`] merges a router (with [`ApiState`] as its
//! state) in front of the built-in handlers; its handlers run after authentication and
//! authorization and find the [`User`] and [`RequestInfo`] in the request's extensions. A
//! sibling module (list paging, watch details, admission of writes) adds its routes and
//! types there and works on [`ApiState::objects`].

pub mod aggregation;
pub mod discovery;
pub mod objects;
pub mod pki;
pub mod rbac;
pub mod requestinfo;
mod reviews;
pub mod serve;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Status, StatusDetails};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceSpec, ServiceReference,
};
use serde_json::{Value, json};

pub use objects::{Change, Objects, Refusal, ResourceType};
pub use pki::{FRONT_PROXY_CLIENT, Identity, Pki, TestCa};
pub use rbac::{Attributes, Rbac, Rule, RuleKind, Scope, Subject};
pub use requestinfo::RequestInfo;

/// The ServiceAccount Logistis runs as in the shipped manifests.
pub const LOGISTIS_USER: &str = "system:serviceaccount:logistis:logistis";
/// Its token in the stand-in.
pub const LOGISTIS_TOKEN: &str = "logistis-service-account-token";
/// `kube-system/extension-apiserver-authentication`.
pub const AUTHENTICATION_NAMESPACE: &str = "kube-system";
pub const AUTHENTICATION_CONFIGMAP: &str = "extension-apiserver-authentication";
/// How often a watch that allows bookmarks gets one, unless the builder says otherwise.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// An authenticated user, as a bearer token identifies it.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub uid: String,
    /// Always includes `system:authenticated`.
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    pub token: String,
}

impl User {
    pub fn new(name: &str, token: &str) -> User {
        User {
            name: name.into(),
            uid: format!("uid-{name}"),
            groups: vec!["system:authenticated".into()],
            extra: BTreeMap::new(),
            token: token.into(),
        }
    }

    /// A ServiceAccount's user and groups.
    pub fn service_account(namespace: &str, name: &str, token: &str) -> User {
        User::new(&format!("system:serviceaccount:{namespace}:{name}"), token).groups(&[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{namespace}"),
        ])
    }

    pub fn groups(mut self, groups: &[&str]) -> User {
        for group in groups {
            if !self.groups.iter().any(|g| g == group) {
                self.groups
                    .insert(self.groups.len() - 1, (*group).to_owned());
            }
        }
        self
    }

    pub fn extra(mut self, key: &str, values: &[&str]) -> User {
        self.extra
            .insert(key.into(), values.iter().map(|v| (*v).to_owned()).collect());
        self
    }
}

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The authenticated user, if any.
    pub user: Option<String>,
    pub status: u16,
}

/// Shared by every handler and the test.
#[derive(Debug)]
pub struct ApiState {
    pub objects: Objects,
    pub bookmark_interval: Duration,
    rbac: Mutex<Rbac>,
    users: Mutex<Vec<User>>,
    pki: Mutex<Pki>,
    endpoints: Mutex<BTreeMap<(String, String), SocketAddr>>,
    seen: Mutex<Vec<Seen>>,
    reviews: Mutex<BTreeMap<String, usize>>,
    decisions: Mutex<Vec<(Attributes, bool)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ApiState {
    pub fn rbac(&self) -> MutexGuard<'_, Rbac> {
        lock(&self.rbac)
    }

    pub fn user_by_token(&self, token: &str) -> Option<User> {
        if token.is_empty() {
            return None;
        }
        lock(&self.users).iter().find(|u| u.token == token).cloned()
    }

    pub fn front_proxy_identity(&self) -> Identity {
        lock(&self.pki).front_proxy_client.clone()
    }

    pub fn service_endpoint(&self, namespace: &str, name: &str) -> Option<SocketAddr> {
        lock(&self.endpoints)
            .get(&(namespace.to_owned(), name.to_owned()))
            .copied()
    }

    fn count_review(&self, kind: &str) {
        *lock(&self.reviews).entry(kind.to_owned()).or_default() += 1;
    }

    fn record_decision(&self, attributes: Attributes, allowed: bool) {
        lock(&self.decisions).push((attributes, allowed));
    }

    /// The `extension-apiserver-authentication` ConfigMap for the current PKI.
    fn authentication_configmap(&self, allowed_names: &[String]) -> Value {
        let pki = lock(&self.pki);
        let list = |items: &[&str]| serde_json::to_string(items).expect("strings serialize");
        let names = serde_json::to_string(allowed_names).expect("strings serialize");
        let data = BTreeMap::from([
            ("client-ca-file".to_owned(), pki.cluster_ca.pem()),
            ("requestheader-allowed-names".to_owned(), names),
            (
                "requestheader-client-ca-file".to_owned(),
                pki.front_proxy_ca.pem(),
            ),
            (
                "requestheader-extra-headers-prefix".to_owned(),
                list(&["X-Remote-Extra-"]),
            ),
            (
                "requestheader-group-headers".to_owned(),
                list(&["X-Remote-Group"]),
            ),
            (
                "requestheader-username-headers".to_owned(),
                list(&["X-Remote-User"]),
            ),
        ]);
        let configmap = ConfigMap {
            metadata: ObjectMeta {
                name: Some(AUTHENTICATION_CONFIGMAP.into()),
                namespace: Some(AUTHENTICATION_NAMESPACE.into()),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        };
        serde_json::to_value(configmap).expect("a ConfigMap serializes")
    }

    fn configmaps(&self) -> ResourceType {
        self.objects
            .find("", "v1", "configmaps")
            .expect("configmaps are a default type")
    }

    /// The allowed names in the ConfigMap now.
    fn allowed_names(&self) -> Vec<String> {
        self.objects
            .get(
                &self.configmaps(),
                AUTHENTICATION_NAMESPACE,
                AUTHENTICATION_CONFIGMAP,
            )
            .and_then(|cm| {
                serde_json::from_str(cm["data"]["requestheader-allowed-names"].as_str()?).ok()
            })
            .unwrap_or_default()
    }
}

/// A `Status` failure body, as kube-apiserver sends it.
pub fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    status_with_details(code, reason, message, None)
}

fn status_with_details(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<StatusDetails>,
) -> Response {
    let body = Status {
        code: Some(code.as_u16().into()),
        details,
        message: Some(message.into()),
        reason: Some(reason.into()),
        status: Some("Failure".into()),
        ..Status::default()
    };
    (code, axum::Json(body)).into_response()
}

/// The 403 kube-apiserver answers for a refused request.
pub fn forbidden(attributes: &Attributes) -> Response {
    let message = if attributes.resource_request {
        let qualified = if attributes.group.is_empty() {
            attributes.resource.clone()
        } else {
            format!("{}.{}", attributes.resource, attributes.group)
        };
        let named = if attributes.name.is_empty() {
            qualified
        } else {
            format!("{qualified} \"{}\"", attributes.name)
        };
        format!("{named} is forbidden: {}", attributes.refusal())
    } else {
        format!("forbidden: {}", attributes.refusal())
    };
    let details = attributes.resource_request.then(|| StatusDetails {
        group: Some(attributes.group.clone()),
        kind: Some(attributes.resource.clone()),
        name: (!attributes.name.is_empty()).then(|| attributes.name.clone()),
        ..StatusDetails::default()
    });
    status_with_details(
        StatusCode::FORBIDDEN,
        "Forbidden",
        message.as_str(),
        details,
    )
}

/// Authenticate (bearer token), authorize (RequestInfo against the table), record.
async fn authenticate(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let index = {
        let mut seen = lock(&state.seen);
        seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            user: None,
            status: 0,
        });
        seen.len() - 1
    };
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let response = match state.user_by_token(&token) {
        None => status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"),
        Some(user) => {
            lock(&state.seen)[index].user = Some(user.name.clone());
            let info = RequestInfo::parse(&method, &path, &query);
            let attributes = Attributes::of_request(&user.name, &user.groups, &info);
            if state.rbac().allows(&attributes) {
                request.extensions_mut().insert(user);
                request.extensions_mut().insert(info);
                next.run(request).await
            } else {
                forbidden(&attributes)
            }
        }
    };
    lock(&state.seen)[index].status = response.status().as_u16();
    response
}

/// Everything not routed explicitly: discovery, aggregated group versions, objects.
async fn dispatch(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let info = request
        .extensions()
        .get::<RequestInfo>()
        .cloned()
        .unwrap_or_default();
    if let ["apis", group, version, ..] = parts.as_slice()
        && let Some(service) = aggregation::find(&state, group, version)
    {
        let user = request
            .extensions()
            .get::<User>()
            .cloned()
            .expect("authenticated before dispatch");
        return aggregation::proxy(state.clone(), service, user, request).await;
    }
    match parts.as_slice() {
        ["version"] => axum::Json(json!({
            "major": "1", "minor": "34", "gitVersion": "v1.34.0-stand-in",
            "platform": "linux/amd64"}))
        .into_response(),
        ["api"] => discovery::api_versions(),
        ["api", "v1"] => discovery::resources(&state, "", "v1"),
        ["apis"] => discovery::group_list(&state),
        ["apis", group] => discovery::group(&state, group),
        ["apis", group, version] => discovery::resources(&state, group, version),
        _ if info.is_resource_request => objects::serve(state.clone(), info, request).await,
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// Options for [`ApiServer`].
#[derive(Default)]
pub struct ApiServerBuilder {
    routes: Vec<Router<Arc<ApiState>>>,
    types: Vec<ResourceType>,
    bookmark_interval: Option<Duration>,
}

impl ApiServerBuilder {
    /// Serve these routes too (after authentication and authorization, before the built-in
    /// handlers).
    pub fn routes(mut self, router: Router<Arc<ApiState>>) -> Self {
        self.routes.push(router);
        self
    }

    /// Serve (and list in discovery) another type.
    pub fn resource_type(mut self, t: ResourceType) -> Self {
        self.types.push(t);
        self
    }

    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = Some(interval);
        self
    }

    pub async fn start(self) -> Result<ApiServer> {
        let pki = Pki::new()?;
        let tls = serve::tls_config(&pki.serving)?;
        let mut types = objects::default_types();
        types.extend(self.types);
        let mut rbac = Rbac::with_defaults();
        rbac.auth_delegator(Subject::user(LOGISTIS_USER))
            .authentication_reader(Subject::user(LOGISTIS_USER));
        let state = Arc::new(ApiState {
            objects: Objects::new(types),
            bookmark_interval: self.bookmark_interval.unwrap_or(BOOKMARK_INTERVAL),
            rbac: Mutex::new(rbac),
            users: Mutex::new(vec![User::service_account(
                "logistis",
                "logistis",
                LOGISTIS_TOKEN,
            )]),
            pki: Mutex::new(pki),
            endpoints: Mutex::default(),
            seen: Mutex::default(),
            reviews: Mutex::default(),
            decisions: Mutex::default(),
        });
        let configmap = state.authentication_configmap(&[FRONT_PROXY_CLIENT.to_owned()]);
        state.objects.put(&state.configmaps(), configmap);

        let mut router = Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                post(reviews::token_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(reviews::subject_access_review),
            );
        for routes in self.routes {
            router = router.merge(routes);
        }
        let router = router
            .fallback(dispatch)
            .layer(middleware::from_fn_with_state(state.clone(), authenticate))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}", listener.local_addr()?);
        let task = tokio::spawn(serve::serve(listener, router, tls));
        Ok(ApiServer {
            url,
            state,
            dir: tempfile::tempdir()?,
            task,
        })
    }
}

/// A running stand-in; stops when dropped.
pub struct ApiServer {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<ApiState>,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    pub fn builder() -> ApiServerBuilder {
        ApiServerBuilder::default()
    }

    /// A stand-in with the defaults.
    pub async fn start() -> Result<ApiServer> {
        ApiServerBuilder::default().start().await
    }

    pub fn state(&self) -> &Arc<ApiState> {
        &self.state
    }

    pub fn objects(&self) -> &Objects {
        &self.state.objects
    }

    /// The type of `resource` in `group` ("" for core); panics if not served.
    pub fn resource_type(&self, group: &str, resource: &str) -> ResourceType {
        self.objects()
            .find_any(group, resource)
            .unwrap_or_else(|| panic!("the stand-in serves no {resource} in {group:?}"))
    }

    /// Authenticate this user by its token from now on.
    pub fn add_user(&self, user: User) {
        let mut users = lock(&self.state.users);
        users.retain(|u| u.token != user.token);
        users.push(user);
    }

    /// Change the RBAC table.
    pub fn rbac(&self, change: impl FnOnce(&mut Rbac)) {
        change(&mut self.state.rbac());
    }

    /// The cluster CA (what kubeconfigs trust), PEM.
    pub fn ca_pem(&self) -> String {
        lock(&self.state.pki).cluster_ca.pem()
    }

    /// The request-header (front-proxy) CA now, PEM.
    pub fn front_proxy_ca_pem(&self) -> String {
        lock(&self.state.pki).front_proxy_ca.pem()
    }

    /// The client certificate the aggregation layer presents now.
    pub fn front_proxy_identity(&self) -> Identity {
        self.state.front_proxy_identity()
    }

    /// A client certificate signed by the current request-header CA under another common
    /// name (one `requestheader-allowed-names` need not list).
    pub fn front_proxy_client_named(&self, common_name: &str) -> Result<Identity> {
        lock(&self.state.pki)
            .front_proxy_ca
            .client(common_name, &[])
    }

    /// A new request-header CA and front-proxy client certificate (named `client_name`),
    /// published in the ConfigMap (a watch sees it MODIFIED).
    pub fn rotate_front_proxy_ca(&self, client_name: &str) -> Result<()> {
        lock(&self.state.pki).rotate_front_proxy(client_name)?;
        let mut names = self.state.allowed_names();
        if !names.iter().any(|n| n == client_name) {
            names.push(client_name.to_owned());
        }
        self.publish_authentication(&names);
        Ok(())
    }

    /// Set `requestheader-allowed-names` (empty: any name signed by the CA).
    pub fn set_allowed_names(&self, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        self.publish_authentication(&names);
    }

    fn publish_authentication(&self, names: &[String]) {
        let configmap = self.state.authentication_configmap(names);
        self.state.objects.put(&self.state.configmaps(), configmap);
    }

    /// Where the Service `namespace/name` listens (what its Endpoints would say).
    pub fn set_service_endpoint(&self, namespace: &str, name: &str, address: SocketAddr) {
        lock(&self.state.endpoints).insert((namespace.into(), name.into()), address);
    }

    /// Create the APIService `{version}.{group}` backed by the Service `namespace/name`
    /// (port 443), trusting `ca_bundle` (PEM) — as the manifests plus a caBundle make it.
    pub fn register_api_service(
        &self,
        group: &str,
        version: &str,
        namespace: &str,
        name: &str,
        ca_bundle: Option<&[u8]>,
    ) {
        let service = APIService {
            metadata: ObjectMeta {
                name: Some(format!("{version}.{group}")),
                ..ObjectMeta::default()
            },
            spec: Some(APIServiceSpec {
                group: Some(group.into()),
                version: Some(version.into()),
                group_priority_minimum: 100,
                version_priority: 100,
                ca_bundle: ca_bundle.map(|b| k8s_openapi::ByteString(b.to_vec())),
                service: Some(ServiceReference {
                    namespace: Some(namespace.into()),
                    name: Some(name.into()),
                    port: Some(443),
                }),
                insecure_skip_tls_verify: None,
            }),
            status: None,
        };
        let t = self.resource_type("apiregistration.k8s.io", "apiservices");
        self.objects().put(
            &t,
            serde_json::to_value(service).expect("an APIService serializes"),
        );
    }

    /// Write a kubeconfig for the user with this token (context namespace `namespace`).
    pub fn kubeconfig(&self, token: &str, namespace: &str) -> Result<PathBuf> {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        // A kubeconfig is YAML, and YAML reads JSON.
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in",
                          "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "stand-in",
                          "context": {"cluster": "stand-in", "user": "user", "namespace": namespace}}]
        });
        let name: String = token
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-{name}-{namespace}"));
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        Ok(path)
    }

    /// The kubeconfig Logistis runs with (its ServiceAccount, namespace `logistis`).
    pub fn logistis_kubeconfig(&self) -> Result<PathBuf> {
        self.kubeconfig(LOGISTIS_TOKEN, "logistis")
    }

    /// A client that trusts the stand-in and sends this bearer token.
    pub fn client(&self, token: &str) -> Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {token}").parse()?);
        Ok(reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem().as_bytes())?)
            .default_headers(headers)
            .timeout(Duration::from_secs(60))
            .build()?)
    }

    /// Every request so far as `METHOD /path`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state.seen)
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    /// How many requests were exactly `METHOD /path`.
    pub fn count(&self, request: &str) -> usize {
        self.requests().iter().filter(|r| *r == request).count()
    }

    /// Every request so far, in full.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    /// How many `tokenreviews` or `subjectaccessreviews` were answered.
    pub fn reviews(&self, kind: &str) -> usize {
        lock(&self.state.reviews).get(kind).copied().unwrap_or(0)
    }

    /// Every SubjectAccessReview answered: the question and the answer.
    pub fn decisions(&self) -> Vec<(Attributes, bool)> {
        lock(&self.state.decisions).clone()
    }

    /// Wait (bounded, 60 s) until `done` holds.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&ApiServer) -> bool) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done(self) {
            if std::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "gave up waiting for {what}; requests: {:?}",
                    self.requests()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}
