//! The Kubernetes API stand-in itself (`logistis_e2e::apiserver`), through the real `kubectl`
//! and raw HTTPS: bearer-token authentication, RBAC refusals worded as kube-apiserver words
//! them, discovery, the `extension-apiserver-authentication` ConfigMap and a watch that sees
//! its rotation, and the aggregation layer's proxy (front-proxy headers set by the stand-in,
//! never by the client). The Logistis tests build on these behaviours.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::HeaderMap;
use logistis_e2e::apiserver::{
    AUTHENTICATION_CONFIGMAP, ApiServer, Scope, Subject, TestCa, User, serve,
};
use serde_json::{Value, json};

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("kubectl is on PATH")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_what_rbac_allows_and_hears_why_not() -> Result<()> {
    let api = ApiServer::start().await?;
    api.add_user(User::new("alice", "alice-token"));
    api.add_user(User::new("bob", "bob-token"));
    api.rbac(|rbac| {
        rbac.authentication_reader(Subject::user("alice"));
    });
    let alice = api.kubeconfig("alice-token", "kube-system")?;
    let output = kubectl(
        &alice,
        &["get", "configmap", AUTHENTICATION_CONFIGMAP, "-o", "json"],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let configmap: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(
        configmap["data"]["requestheader-client-ca-file"],
        api.front_proxy_ca_pem().as_str()
    );
    assert_eq!(
        configmap["data"]["requestheader-allowed-names"],
        r#"["front-proxy-client"]"#
    );

    let bob = api.kubeconfig("bob-token", "kube-system")?;
    let output = kubectl(&bob, &["get", "configmaps"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(r#"configmaps is forbidden: User "bob" cannot list resource "configmaps" in API group "" in the namespace "kube-system""#),
        "{stderr}"
    );
    let nobody = api.kubeconfig("wrong-token", "default")?;
    let output = kubectl(&nobody, &["get", "--raw", "/api"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Unauthorized"));

    let output = kubectl(&bob, &["api-resources", "--api-group", "apps"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("deployments") && stdout.contains("deploy"),
        "{stdout}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_the_request_header_ca_rotate() -> Result<()> {
    let api = ApiServer::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .await?;
    let client = api.client(logistis_e2e::apiserver::LOGISTIS_TOKEN)?;
    let list: Value = client
        .get(format!(
            "{}/api/v1/namespaces/kube-system/configmaps?fieldSelector=metadata.name%3D{AUTHENTICATION_CONFIGMAP}",
            api.url
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .context("a list version")?;
    let response = client
        .get(format!(
            "{}/api/v1/namespaces/kube-system/configmaps?fieldSelector=metadata.name%3D{AUTHENTICATION_CONFIGMAP}&watch=true&allowWatchBookmarks=true&resourceVersion={version}",
            api.url
        ))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let old = api.front_proxy_ca_pem();
    api.rotate_front_proxy_ca("front-proxy-client")?;
    let mut response = response;
    let mut buffer = Vec::new();
    let mut types = Vec::new();
    let modified = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = response.chunk().await? {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let event: Value = serde_json::from_slice(&line)?;
                types.push(event["type"].as_str().unwrap_or_default().to_owned());
                if event["type"] == "MODIFIED" {
                    return anyhow::Ok(event);
                }
            }
        }
        anyhow::bail!("the watch ended")
    })
    .await??;
    let new = modified["object"]["data"]["requestheader-client-ca-file"]
        .as_str()
        .unwrap_or_default();
    assert_ne!(new, old);
    assert_eq!(new, api.front_proxy_ca_pem());

    Ok(())
}

/// Answers every request with the headers it received.
async fn echo(headers: HeaderMap) -> axum::Json<Value> {
    let mut seen: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    axum::Json(json!(seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregation_layer_authorizes_then_proxies_with_front_proxy_headers() -> Result<()> {
    let api = ApiServer::start().await?;
    api.add_user(
        User::new("alice", "alice-token")
            .groups(&["sre"])
            .extra("authentication.kubernetes.io/pod-name", &["p1", "p2"]),
    );
    api.add_user(User::new("bob", "bob-token"));
    api.rbac(|rbac| {
        rbac.allow(
            Subject::group("sre"),
            &["list"],
            "echo.io",
            &["things"],
            Scope::Namespace("a".into()),
        );
    });
    // The backend: HTTPS with a certificate for echo.test.svc from its own CA.
    let backend_ca = TestCa::new("echo-ca")?;
    let tls = serve::tls_config(&backend_ca.server(&["echo.test.svc"])?)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let router = axum::Router::new().fallback(echo);
    let backend = tokio::spawn(serve::serve(listener, router, tls));
    api.set_service_endpoint("test", "echo", address);
    api.register_api_service(
        "echo.io",
        "v1",
        "test",
        "echo",
        Some(backend_ca.pem().as_bytes()),
    );

    let path = format!("{}/apis/echo.io/v1/namespaces/a/things", api.url);
    let forged = api
        .client("alice-token")?
        .get(&path)
        .header("X-Remote-User", "system:admin")
        .header("X-Remote-Group", "system:masters")
        .header("Impersonate-User", "root")
        .send()
        .await?;
    assert_eq!(forged.status(), 200);
    let headers: Vec<(String, String)> = forged.json().await?;
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("x-remote-user"), ["alice"]);
    assert_eq!(values("x-remote-group"), ["sre", "system:authenticated"]);
    assert_eq!(
        values("x-remote-extra-authentication.kubernetes.io%2fpod-name"),
        ["p1", "p2"]
    );
    assert!(values("authorization").is_empty() && values("impersonate-user").is_empty());

    // Not allowed in b, nor bob anywhere: kube-apiserver's 403, and nothing reaches the backend.
    let refused = api
        .client("alice-token")?
        .get(format!("{}/apis/echo.io/v1/namespaces/b/things", api.url))
        .send()
        .await?;
    assert_eq!(refused.status(), 403);
    let status: Value = refused.json().await?;
    assert_eq!(
        status["message"],
        r#"things.echo.io is forbidden: User "alice" cannot list resource "things" in API group "echo.io" in the namespace "b""#
    );
    assert_eq!(status["reason"], "Forbidden");
    let bob = api.kubeconfig("bob-token", "a")?;
    let output = kubectl(
        &bob,
        &["get", "--raw", "/apis/echo.io/v1/namespaces/a/things"],
    )
    .await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("forbidden"));
    // Discovery lists the group of the APIService.
    let output = kubectl(&bob, &["get", "--raw", "/apis"]).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("\"echo.io\""));
    backend.abort();
    Ok(())
}
