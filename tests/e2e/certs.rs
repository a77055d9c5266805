//! `--manage-certs` end to end: the real server against the Kubernetes API stand-in
//! (`logistis_e2e::apiserver`, HTTPS, reached through a kubeconfig in `KUBECONFIG`) holding the
//! empty placeholder Secret and a ValidatingWebhookConfiguration exactly as the manifests ship
//! them, and granting the server's ServiceAccount only what the manifests' Role and
//! ClusterRole grant. The server must fill the Secret, patch the caBundle of its own webhook
//! only, answer over HTTPS a client that trusts nothing but that caBundle, and reuse the
//! stored certificate after a restart; without the Secret it must stop with a message saying
//! what to create.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use logistis_e2e::apiserver::{ApiServer, LOGISTIS_USER, ResourceType, Scope, Subject};
use logistis_e2e::{Server, cargo_bin, own_review};
use serde_json::{Value, json};

const SECRET_PATH: &str = "/api/v1/namespaces/logistis/secrets/logistis-tls";
const CONFIGURATION_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/logistis";
/// What the API server verifies when it calls the webhook through its Service.
const SERVER_NAME: &str = "logistis.logistis.svc";
/// The caBundle of the webhook that calls another Service: must never change.
const OTHER_BUNDLE: &str = "b3RoZXI=";
/// `logistis serve` flags for the placeholder Secret and configuration (defaults otherwise).
const MANAGE_CERTS: [&str; 3] = ["--manage-certs", "--namespace", "logistis"];

/// The Secret as the manifests ship it: type Opaque, no data.
fn placeholder_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "logistis-tls", "namespace": "logistis",
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
        "metadata": {"name": "logistis"},
        "webhooks": [
            hook("other.example.com", json!({"service": {"namespace": "other", "name": "logistis"},
                                             "caBundle": OTHER_BUNDLE})),
            hook("record.logistis.io", json!({"service": {"namespace": "logistis", "name": "logistis",
                                                          "path": "/validate", "port": 443}})),
            hook("url.example.com", json!({"url": "https://hooks.example.com/validate"})),
        ]
    })
}

/// The stand-in with the placeholder objects and the manifests' grants.
struct FakeApi {
    api: ApiServer,
    kubeconfig: PathBuf,
    secrets: ResourceType,
    configurations: ResourceType,
}

impl FakeApi {
    async fn start(secret: Option<Value>) -> Result<FakeApi> {
        let api = ApiServer::start().await?;
        let secrets = api.resource_type("", "secrets");
        let configurations = api.resource_type(
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
        );
        if let Some(secret) = secret {
            api.objects().put(&secrets, secret);
        }
        api.objects().put(&configurations, webhook_configuration());
        // deploy/base/apiservice.yaml, without a caBundle.
        api.register_api_service("logistis.io", "v1alpha1", "logistis", "logistis", None);
        // deploy/base/rbac.yaml: the Role logistis-certs and the ClusterRole logistis-webhook-ca.
        api.rbac(|rbac| {
            let sa = Subject::user(LOGISTIS_USER);
            rbac.allow_names(
                sa.clone(),
                &["get", "update"],
                "",
                &["secrets"],
                &["logistis-tls"],
                Scope::Namespace("logistis".into()),
            )
            .allow_names(
                sa.clone(),
                &["get", "patch"],
                "admissionregistration.k8s.io",
                &["validatingwebhookconfigurations"],
                &["logistis"],
                Scope::Cluster,
            )
            .allow_names(
                sa,
                &["get", "patch"],
                "apiregistration.k8s.io",
                &["apiservices"],
                &["v1alpha1.logistis.io"],
                Scope::Cluster,
            );
        });
        let kubeconfig = api.logistis_kubeconfig()?;
        Ok(FakeApi {
            api,
            kubeconfig,
            secrets,
            configurations,
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
        let secret = self
            .api
            .objects()
            .get(&self.secrets, "logistis", "logistis-tls")?;
        Some(serde_json::from_value(secret).expect("the stand-in holds a valid Secret"))
    }

    fn configuration(&self) -> ValidatingWebhookConfiguration {
        let configuration = self.api.objects().get(&self.configurations, "", "logistis");
        serde_json::from_value(configuration.expect("the stand-in holds the configuration"))
            .expect("the stand-in holds a valid configuration")
    }

    /// Create or delete the ValidatingWebhookConfiguration.
    fn set_configuration(&self, configuration: Option<Value>) {
        match configuration {
            Some(configuration) => {
                self.api.objects().put(&self.configurations, configuration);
            }
            None => {
                self.api
                    .objects()
                    .delete(&self.configurations, "", "logistis");
            }
        }
    }

    /// The APIService's caBundle, decoded.
    fn api_service_bundle(&self) -> Option<Vec<u8>> {
        let t = self
            .api
            .resource_type("apiregistration.k8s.io", "apiservices");
        let service = self.api.objects().get(&t, "", "v1alpha1.logistis.io")?;
        let service: k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService =
            serde_json::from_value(service).expect("a valid APIService");
        Some(service.spec?.ca_bundle?.0)
    }

    fn count(&self, request: &str) -> usize {
        self.api.count(request)
    }

    /// Wait (bounded) until `done` holds for the stand-in's state.
    async fn wait_until(&self, what: &str, done: impl Fn(&FakeApi) -> bool) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done(self) {
            if std::time::Instant::now() >= deadline {
                bail!(
                    "gave up waiting for {what}; requests: {:?}",
                    self.api.requests()
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
    api.wait_until("the APIService caBundle", |api| {
        api.api_service_bundle().is_some()
    })
    .await
    .with_context(|| server.log())?;
    assert_eq!(
        api.api_service_bundle(),
        Some(bundle.clone()),
        "the aggregated API is trusted with the same CA"
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
