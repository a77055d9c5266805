//! `--manage-certs` end to end: the real server against a small fake Kubernetes API (axum on
//! loopback, reached through a kubeconfig in `KUBECONFIG`) that holds the empty placeholder
//! Secret and a ValidatingWebhookConfiguration, exactly as the manifests ship them. The
//! server must fill the Secret, patch the caBundle of its own webhook only, answer over HTTPS
//! a client that trusts nothing but that caBundle, and reuse the stored certificate after a
//! restart; without the Secret it must stop with a message saying what to create.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use logistis_e2e::{Server, cargo_bin, own_review};
use serde_json::{Value, json};

const TOKEN: &str = "certs-e2e-token";
const SECRET_PATH: &str = "/api/v1/namespaces/logistis/secrets/logistis-tls";
const CONFIGURATION_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/logistis";
/// What the API server verifies when it calls the webhook through its Service.
const SERVER_NAME: &str = "logistis.logistis.svc";
/// The caBundle of the webhook that calls another Service: must never change.
const OTHER_BUNDLE: &str = "b3RoZXI=";
/// `logistis serve` flags for the placeholder Secret and configuration (defaults otherwise).
const MANAGE_CERTS: [&str; 3] = ["--manage-certs", "--namespace", "logistis"];

/// The objects of the fake cluster, and every request it answered (`METHOD /path`).
struct Objects {
    secret: Option<Value>,
    configuration: Option<Value>,
    requests: Vec<String>,
    resource_version: u64,
}

#[derive(Clone)]
struct FakeApi {
    objects: Arc<Mutex<Objects>>,
    kubeconfig: PathBuf,
    _dir: Arc<tempfile::TempDir>,
}

fn api_status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "message": message, "reason": reason, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

/// The Secret as the manifests ship it: type Opaque, no data.
fn placeholder_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "logistis-tls", "namespace": "logistis", "resourceVersion": "1",
                        "labels": {"app.kubernetes.io/name": "logistis"}}})
}

/// Our webhook (index 1), one calling a Service of the same name in another namespace, and
/// one calling a URL: only ours may change.
fn webhook_configuration() -> Value {
    let hook = |name: &str, client_config: Value| {
        json!({"name": name, "clientConfig": client_config, "sideEffects": "NoneOnDryRun",
               "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore"})
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "logistis", "resourceVersion": "1"},
        "webhooks": [
            hook("other.example.com", json!({"service": {"namespace": "other", "name": "logistis"},
                                             "caBundle": OTHER_BUNDLE})),
            hook("record.logistis.io", json!({"service": {"namespace": "logistis", "name": "logistis",
                                                          "path": "/validate", "port": 443}})),
            hook("url.example.com", json!({"url": "https://hooks.example.com/validate"})),
        ]
    })
}

/// RFC 6902 `test`, `add` and `replace` on object members: what the server sends. All or
/// nothing, as the API server applies a patch.
fn apply_json_patch(document: &mut Value, operations: &Value) -> Result<(), String> {
    let mut patched = document.clone();
    for operation in operations.as_array().ok_or("a JSON Patch is an array")? {
        let path = operation["path"]
            .as_str()
            .ok_or("an operation needs a path")?;
        match operation["op"].as_str() {
            Some("test") if patched.pointer(path) == Some(&operation["value"]) => {}
            Some("test") => return Err(format!("test failed at {path}")),
            Some("add" | "replace") => {
                let (parent, member) = path.rsplit_once('/').ok_or("bad path")?;
                patched
                    .pointer_mut(parent)
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| format!("no object at {parent}"))?
                    .insert(member.to_owned(), operation["value"].clone());
            }
            other => return Err(format!("unsupported operation {other:?}")),
        }
    }
    *document = patched;
    Ok(())
}

async fn fake_api(State(objects): State<Arc<Mutex<Objects>>>, request: Request) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|value| value == format!("Bearer {TOKEN}").as_str());
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut objects = objects.lock().unwrap();
    objects.requests.push(format!("{method} {path}"));
    if !authorized {
        return api_status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        );
    }
    objects.resource_version += 1;
    let version = objects.resource_version.to_string();
    match (method, path.as_str()) {
        (Method::GET, SECRET_PATH) => match &objects.secret {
            Some(secret) => axum::Json(secret.clone()).into_response(),
            None => api_status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "secrets \"logistis-tls\" not found".into(),
            ),
        },
        (Method::PUT, SECRET_PATH) => {
            let Some(current) = &objects.secret else {
                return api_status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "secrets \"logistis-tls\" not found".into(),
                );
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return api_status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "the object has been modified".into(),
                );
            }
            let mut stored = body;
            stored["metadata"]["resourceVersion"] = json!(version);
            objects.secret = Some(stored.clone());
            axum::Json(stored).into_response()
        }
        (Method::GET | Method::PATCH, CONFIGURATION_PATH) if objects.configuration.is_none() => {
            api_status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "validatingwebhookconfigurations.admissionregistration.k8s.io \"logistis\" not found"
                    .into(),
            )
        }
        (Method::GET, CONFIGURATION_PATH) => {
            axum::Json(objects.configuration.clone()).into_response()
        }
        (Method::PATCH, CONFIGURATION_PATH) => {
            if content_type != "application/json-patch+json" {
                return api_status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    content_type,
                );
            }
            let mut patched = objects.configuration.clone().unwrap_or_default();
            if let Err(message) = apply_json_patch(&mut patched, &body) {
                return api_status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
            }
            patched["metadata"]["resourceVersion"] = json!(version);
            objects.configuration = Some(patched.clone());
            axum::Json(patched).into_response()
        }
        (method, path) => api_status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{method} {path} is not served by this fake"),
        ),
    }
}

impl FakeApi {
    /// Serve the objects on a loopback port and write a kubeconfig that points at it.
    async fn start(secret: Option<Value>) -> Result<FakeApi> {
        let objects = Arc::new(Mutex::new(Objects {
            secret,
            configuration: Some(webhook_configuration()),
            requests: Vec::new(),
            resource_version: 1,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(fake_api)
            .with_state(objects.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        // A kubeconfig is YAML, and YAML reads JSON.
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "logistis", "user": {"token": TOKEN}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "fake", "user": "logistis",
                                                     "namespace": "logistis"}}]
        });
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, serde_json::to_vec_pretty(&kubeconfig)?)?;
        Ok(FakeApi {
            objects,
            kubeconfig: path,
            _dir: Arc::new(dir),
        })
    }

    /// The real server with `--manage-certs`, on a fresh data dir.
    fn start_server(&self) -> Result<Server> {
        Server::builder()
            .own_tls()
            .args(MANAGE_CERTS)
            .env("KUBECONFIG", &self.kubeconfig.display().to_string())
            .start()
    }

    fn secret(&self) -> Option<Secret> {
        let secret = self.objects.lock().unwrap().secret.clone()?;
        Some(serde_json::from_value(secret).expect("the fake holds a valid Secret"))
    }

    fn configuration(&self) -> ValidatingWebhookConfiguration {
        let configuration = self.objects.lock().unwrap().configuration.clone();
        serde_json::from_value(configuration.expect("the fake holds the configuration"))
            .expect("the fake holds a valid configuration")
    }

    /// Create or delete the ValidatingWebhookConfiguration.
    fn set_configuration(&self, configuration: Option<Value>) {
        self.objects.lock().unwrap().configuration = configuration;
    }

    fn requests(&self) -> Vec<String> {
        self.objects.lock().unwrap().requests.clone()
    }

    fn count(&self, request: &str) -> usize {
        self.requests().iter().filter(|r| *r == request).count()
    }

    /// Wait (bounded) until `done` holds for the fake's state.
    async fn wait_until(&self, what: &str, done: impl Fn(&FakeApi) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            if Instant::now() >= deadline {
                bail!(
                    "gave up waiting for {what}; requests: {:?}",
                    self.requests()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

/// The caBundle of webhook `index`, decoded.
fn ca_bundle(configuration: &ValidatingWebhookConfiguration, index: usize) -> Option<Vec<u8>> {
    let webhooks = configuration.webhooks.as_ref()?;
    Some(
        webhooks
            .get(index)?
            .client_config
            .ca_bundle
            .as_ref()?
            .0
            .clone(),
    )
}

fn secret_value(secret: &Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.0.clone())
        .unwrap_or_default()
}

/// The DER of the first certificate in a PEM text (decoded as the API decodes bytes).
fn first_der(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let body: String = text
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    serde_json::from_value::<ByteString>(json!(body))
        .expect("PEM bodies are base64")
        .0
}

/// A client that trusts nothing but `bundle` and reaches `SERVER_NAME` at `address`.
fn client_trusting(bundle: &[u8], address: SocketAddr) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .resolve(SERVER_NAME, address)
        .timeout(Duration::from_secs(60));
    for certificate in reqwest::Certificate::from_pem_bundle(bundle)? {
        builder = builder.add_root_certificate(certificate);
    }
    Ok(builder.build()?)
}

fn address(url: &str) -> Result<SocketAddr> {
    let url = reqwest::Url::parse(url)?;
    let port = url.port().context("the server announced a port")?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// POST a review over HTTPS as the API server would; returns the certificate it was served.
async fn admit_through_service(client: &reqwest::Client, webhook: SocketAddr) -> Result<Vec<u8>> {
    let review = own_review("create-deployment.json");
    let response = client
        .post(format!("https://{SERVER_NAME}:{}/validate", webhook.port()))
        .json(&review)
        .send()
        .await
        .context("HTTPS to the webhook, trusting only the caBundle")?;
    let served = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .context("the TLS session shows the served certificate")?
        .to_vec();
    let status = response.status();
    let answer: Value = response.json().await?;
    if status != 200 || answer["response"]["allowed"] != true {
        bail!("review not allowed ({status}): {answer}");
    }
    Ok(served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_certs_fills_the_secret_patches_the_ca_bundle_and_reuses_it_after_a_restart()
-> Result<()> {
    let api = FakeApi::start(Some(placeholder_secret())).await?;
    let mut server = api.start_server()?;
    // The listeners bind once the Secret is filled; the caBundle follows right after.
    api.wait_until("the caBundle patch", |api| {
        ca_bundle(&api.configuration(), 1).is_some()
    })
    .await
    .with_context(|| server.log())?;

    let secret = api.secret().context("the Secret is still there")?;
    for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(!secret_value(&secret, key).is_empty(), "{key} is empty");
    }
    assert_eq!(secret.type_.as_deref(), Some("Opaque"), "the type is kept");
    assert_eq!(
        secret.metadata.labels.as_ref().map(|labels| labels.len()),
        Some(1),
        "labels are kept"
    );
    let bundle = secret_value(&secret, "ca.crt");
    let configuration = api.configuration();
    assert_eq!(ca_bundle(&configuration, 1), Some(bundle.clone()));
    assert_eq!(
        ca_bundle(&configuration, 0),
        Some(b"other".to_vec()),
        "another Service's webhook is untouched"
    );
    assert_eq!(
        ca_bundle(&configuration, 2),
        None,
        "a URL webhook is untouched"
    );
    assert!(
        !server.data_dir.join("tls").exists(),
        "no certificate or key is written to disk"
    );

    let webhook = address(&server.webhook_url)?;
    let client = client_trusting(&bundle, webhook)?;
    let served = admit_through_service(&client, webhook).await?;
    assert_eq!(
        served,
        first_der(&secret_value(&secret, "tls.crt")),
        "the served certificate is the stored one"
    );
    let metrics = client
        .get(format!(
            "https://{SERVER_NAME}:{}/metrics",
            address(&server.query_url)?.port()
        ))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("logistis_certificate_expiry_timestamp_seconds{certificate=\"serving\"}"),
        "{metrics}"
    );
    assert!(server.terminate()?.success(), "{}", server.log());

    // A restart on a fresh data dir: the certificate comes from the Secret, unchanged.
    let writes_before = (
        api.count(&format!("PUT {SECRET_PATH}")),
        api.count(&format!("PATCH {CONFIGURATION_PATH}")),
    );
    let reads_before = api.count(&format!("GET {CONFIGURATION_PATH}"));
    let second = api.start_server()?;
    api.wait_until("the restarted server's first caBundle check", |api| {
        api.count(&format!("GET {CONFIGURATION_PATH}")) > reads_before
    })
    .await
    .with_context(|| second.log())?;
    let served_again = admit_through_service(&client, address(&second.webhook_url)?).await?;
    assert_eq!(served_again, served, "same certificate, same serial");
    assert_eq!(
        api.secret().map(|s| secret_value(&s, "tls.crt")),
        Some(secret_value(&secret, "tls.crt"))
    );
    assert_eq!(
        (
            api.count(&format!("PUT {SECRET_PATH}")),
            api.count(&format!("PATCH {CONFIGURATION_PATH}")),
        ),
        writes_before,
        "nothing to write: the Secret and the caBundle are current\n{}",
        second.log()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_certs_without_the_secret_says_what_to_create() -> Result<()> {
    let api = FakeApi::start(None).await?;
    let dir = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(cargo_bin("logistis", "logistis"));
    command
        .arg("serve")
        .args(MANAGE_CERTS)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--webhook-listen",
            "127.0.0.1:0",
            "--query-listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &api.kubeconfig)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .context("the server should stop on its own when the Secret is missing")??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the Secret logistis/logistis-tls does not exist")
            && stderr.contains("kubectl -n logistis create secret generic logistis-tls"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("webhook:"),
        "no listener before the certificate"
    );
    assert_eq!(api.count(&format!("PUT {SECRET_PATH}")), 0);
    Ok(())
}

#[test]
fn manage_certs_conflicts_with_other_certificate_sources() {
    for extra in [
        &["--self-signed"][..],
        &["--tls-cert", "a.crt", "--tls-key", "a.key"],
    ] {
        let mut args = vec!["serve"];
        args.extend(MANAGE_CERTS);
        args.extend_from_slice(extra);
        let output = logistis_e2e::run_logistis(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--manage-certs"), "{stderr}");
    }
    let output = logistis_e2e::run_logistis(&["serve", "--manage-certs", "--namespace", "Bad_NS"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--namespace \"Bad_NS\""), "{stderr}");
}

/// Applied in one go, the pod may start before the ValidatingWebhookConfiguration exists:
/// the server serves its certificate anyway and publishes the caBundle as soon as the
/// configuration appears (retried with back-off from 10 s, not at the next scheduled check
/// ten minutes later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_certs_publishes_the_ca_bundle_once_the_configuration_appears() -> Result<()> {
    let api = FakeApi::start(Some(placeholder_secret())).await?;
    api.set_configuration(None);
    let mut server = api.start_server()?;
    api.wait_until("a look for the configuration", |api| {
        api.count(&format!("GET {CONFIGURATION_PATH}")) >= 1
    })
    .await?;
    api.set_configuration(Some(webhook_configuration()));
    api.wait_until("the caBundle", |api| {
        ca_bundle(&api.configuration(), 1).is_some()
    })
    .await?;
    let bundle = ca_bundle(&api.configuration(), 1).expect("just checked");
    let client = client_trusting(&bundle, address(&server.webhook_url)?)?;
    admit_through_service(&client, address(&server.webhook_url)?).await?;
    assert!(server.terminate()?.success());
    assert!(
        server.log().contains("no caBundle published"),
        "{}",
        server.log()
    );
    Ok(())
}
