//! An operator's worst day, outside the store: a looping plugin beside good ones under load,
//! an empty or broken plugin set, a sink receiver that comes back, a flood of silent
//! connections, hostile reviews and queries, and Secrets recognised only by their resource.
//! Each test fails on the code before issue 15.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use logistis_e2e::plugins::rust_plugin;
use logistis_e2e::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admission::{files_under, occurrences};
use crate::plugins::{
    Receiver, eventually, eventually_logged, plugins_dir, review, stored_uids, with_plugins,
};

/// The webhook's own timeout in the shipped manifests.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(2);
/// What a loaded machine may add to the 1 s ceiling. An idle one answers within ~1.05 s
/// (printed); a CI machine busy with the suite's other builds has stalled a round for 1.6 s,
/// which no code of the server can prevent. The ceiling itself is what is checked: without
/// it the answers wait for the looper's 30 s.
const MACHINE_SLACK: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_looping_plugin_neither_delays_answers_nor_changes_its_neighbours_verdicts() {
    // The looper may run 30 s; the chain's ceiling (1 s) stops it. `namespaces` keeps the
    // default 5 ms deadline, which the looper's burning CPU used to make it miss.
    let yaml = r#"
predicates:
  - name: looper
    file: misbehave.wasm
    deadline-ms: 30000
    config: {evaluate: loop, namespace: chaos}
  - name: namespaces
    file: namespaces.wasm
    config: {exclude: ["kube-*"]}
"#;
    let dir = plugins_dir(
        yaml,
        &[
            ("misbehave.wasm", &rust_plugin("logistis-plugin-misbehave")),
            (
                "namespaces.wasm",
                &rust_plugin("logistis-plugin-namespaces"),
            ),
        ],
    );
    let server = Arc::new(
        with_plugins(dir.path())
            .args(["--plugin-chain-timeout", "1s"])
            .start()
            .unwrap(),
    );
    let mut clients = Vec::new();
    for client in 0..6 {
        let server = server.clone();
        clients.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            for n in 0..15 {
                let namespace = ["chaos", "kube-system", "shop"][(client + n) % 3];
                let uid = format!("{namespace}-{client}-{n}");
                let started = Instant::now();
                server
                    .admit(&review(&uid, namespace, "alice"))
                    .await
                    .unwrap();
                slowest = slowest.max(started.elapsed());
            }
            slowest
        }));
    }
    let mut slowest = Duration::ZERO;
    for client in clients {
        slowest = slowest.max(client.await.unwrap());
    }
    println!(
        "slowest answer with a looping neighbour: {slowest:?} (the webhook's timeout: {WEBHOOK_TIMEOUT:?})"
    );
    let ceiling = Duration::from_secs(1);
    assert!(
        slowest < ceiling + MACHINE_SLACK,
        "an answer took {slowest:?}: the chain's ceiling did not end it; log:\n{}",
        server.log()
    );

    let mut stored = BTreeSet::new();
    for namespace in ["chaos", "kube-system", "shop"] {
        stored.extend(stored_uids(&server, Some(namespace)).await);
    }
    let expected: BTreeSet<String> = (0..6)
        .flat_map(|client| (0..15).map(move |n| (client, n)))
        .filter_map(|(client, n)| {
            let namespace = ["chaos", "kube-system", "shop"][(client + n) % 3];
            (namespace != "kube-system").then(|| format!("{namespace}-{client}-{n}"))
        })
        .collect();
    // The good predicate's verdicts are all its own: every kube-system review skipped,
    // every other one kept (the chaos ones by the chain's on-error, capture).
    assert_eq!(stored, expected);
    let failures = |plugin: &str, reason: &str| {
        let sample =
            format!("logistis_plugin_failures_total{{plugin=\"{plugin}\",reason=\"{reason}\"}}");
        let server = server.clone();
        async move { server.metric(&sample).await.unwrap_or(0.0) }
    };
    assert_eq!(failures("namespaces", "timeout").await, 0.0);
    // Every chaos review reaches the ceiling. On a machine with fewer cores than looping
    // calls, a neighbour's review can too while it waits for a core (its on-error verdict,
    // capture, then decides; the verdicts above show it did not change what is stored here).
    let chaos = 30.0;
    let ceilings = failures("looper", "ceiling").await;
    assert!(
        ceilings >= chaos,
        "{ceilings} ceilings for {chaos} chaos reviews"
    );
    let reviews_at_ceiling = server
        .metric("logistis_plugin_chain_ceiling_total")
        .await
        .unwrap();
    assert!(
        reviews_at_ceiling >= chaos,
        "{reviews_at_ceiling} reviews counted at the ceiling"
    );
    // One line per plugin per 10 s, no backtraces at the default level.
    let log = server.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("predicate failed") && l.contains("looper"))
        .count();
    assert!((1..=5).contains(&lines), "{lines} failure lines:\n{log}");
    assert!(!log.contains("wasm backtrace"), "{log}");
}

#[tokio::test]
async fn the_plugins_memory_budget_is_enforced_across_instances() {
    // Each instance may grow to 48 MiB, but all instances together only to 16 MiB: a
    // growth past the total is refused even though the instance is under its own cap.
    let yaml = r#"
predicates:
  - name: hoarder
    file: misbehave.wasm
    memory-mb: 48
    deadline-ms: 1000
    config: {evaluate: alloc, namespace: hungry}
"#;
    let dir = plugins_dir(
        yaml,
        &[("misbehave.wasm", &rust_plugin("logistis-plugin-misbehave"))],
    );
    let server = Arc::new(
        with_plugins(dir.path())
            .args(["--plugin-memory-budget", "16Mi"])
            .start()
            .unwrap(),
    );
    let mut clients = Vec::new();
    for client in 0..4 {
        let server = server.clone();
        clients.push(tokio::spawn(async move {
            for n in 0..3 {
                let uid = format!("hungry-{client}-{n}");
                server
                    .admit(&review(&uid, "hungry", "alice"))
                    .await
                    .unwrap();
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        server
            .metric("logistis_plugin_memory_budget_bytes")
            .await
            .unwrap(),
        (16 << 20) as f64
    );
    let used = server
        .metric("logistis_plugin_memory_used_bytes")
        .await
        .unwrap();
    // Instances that hit the budget trap and are dropped, their memory given back: what is
    // in use now is at most the budget (zero once every instance has trapped).
    assert!((0.0..=(16 << 20) as f64).contains(&used), "{used}");
    let failures = |reason: &str| {
        let sample =
            format!("logistis_plugin_failures_total{{plugin=\"hoarder\",reason=\"{reason}\"}}");
        let server = server.clone();
        async move { server.metric(&sample).await.unwrap_or(0.0) }
    };
    assert_eq!(failures("memory_budget").await, 12.0, "{}", server.log());
    assert_eq!(failures("memory").await, 0.0);
    // Everything was still recorded (on-error capture).
    assert_eq!(stored_uids(&server, Some("hungry")).await.len(), 12);
}

fn namespaces_set(excluded: &str) -> String {
    format!(
        "predicates:\n  - name: namespaces\n    file: namespaces.wasm\n    deadline-ms: 1000\n    config: {{exclude: [\"{excluded}\"]}}\n"
    )
}

#[tokio::test]
async fn an_empty_set_is_refused_and_a_broken_set_at_startup_runs_the_last_good_one() {
    let namespaces = rust_plugin("logistis-plugin-namespaces");
    let dir = plugins_dir("", &[("namespaces.wasm", &namespaces)]);
    let data = tempfile::tempdir().unwrap();
    // A 0-byte plugins.yaml (a torn write, an empty ConfigMap key) and no last good set.
    let error = match with_plugins(dir.path()).data_dir(data.path()).start() {
        Ok(_) => panic!("an empty plugins.yaml must not start as 'no plugins'"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("is empty") && error.contains("predicates: []"),
        "{error}"
    );

    let yaml = dir.path().join("plugins.yaml");
    std::fs::write(&yaml, namespaces_set("skip-me")).unwrap();
    let mut server = with_plugins(dir.path())
        .data_dir(data.path())
        .start()
        .unwrap();
    server
        .admit(&review("first", "skip-me", "alice"))
        .await
        .unwrap();
    assert!(server.terminate().unwrap().success());

    // Restarted while the mounted set is broken: a type error beside range errors, all
    // reported; the last good set (kept in the data dir) runs, loudly.
    std::fs::write(
        &yaml,
        "predicates:\n  - {name: namespaces, file: namespaces.wasm, deadline-ms: soon, memory-mb: 0}\n",
    )
    .unwrap();
    let server = with_plugins(dir.path())
        .data_dir(data.path())
        .start()
        .unwrap();
    let status = server.get_ok("/api/v1/plugins").await.unwrap();
    let fallback = status["fallback"].as_str().unwrap_or_default();
    assert!(fallback.contains("last good plugin set"), "{status}");
    assert!(
        fallback.contains("deadline-ms") && fallback.contains("memory-mb must be"),
        "every problem is reported: {fallback}"
    );
    assert_eq!(
        server.metric("logistis_plugin_set_fallback").await.unwrap(),
        1.0
    );
    assert!(server.log().contains("THE MOUNTED PLUGIN SET IS BROKEN"));
    server
        .admit(&review("second", "skip-me", "alice"))
        .await
        .unwrap();
    server
        .admit(&review("kept", "shop", "alice"))
        .await
        .unwrap();
    let stored = stored_uids(&server, None).await;
    assert!(
        !stored.contains("second"),
        "the last good set still filters"
    );
    assert!(stored.contains("kept"));

    // Fixed: the mounted set replaces the last good one.
    std::fs::write(&yaml, namespaces_set("other")).unwrap();
    eventually("the fixed set is loaded", || async {
        server.metric("logistis_plugin_set_fallback").await.unwrap() == 0.0
    })
    .await;
    let status = server.get_ok("/api/v1/plugins").await.unwrap();
    assert!(status.get("fallback").is_none(), "{status}");
}

#[tokio::test]
async fn a_sink_delivers_within_seconds_of_its_receivers_return_and_its_lag_is_current() {
    let receiver = Receiver::start(true).await;
    let yaml = format!(
        r#"
sinks:
  - name: audit
    file: webhook.wasm
    allowed-hosts: ["127.0.0.1:{port}"]
    config: {{url: "http://127.0.0.1:{port}/hook", objects: false}}
"#,
        port = receiver.port
    );
    let dir = plugins_dir(
        &yaml,
        &[("webhook.wasm", &rust_plugin("logistis-plugin-sink-webhook"))],
    );
    let server = with_plugins(dir.path()).start().unwrap();
    let first_admitted = Instant::now();
    for uid in ["one", "two", "three"] {
        server.admit(&review(uid, "shop", "alice")).await.unwrap();
    }
    // Down long enough for a doubling back-off to reach 12.8 s between attempts.
    eventually("six failed attempts", || async {
        receiver.attempts.load(Ordering::SeqCst) >= 6
    })
    .await;
    // The lag is how long the oldest undelivered event has waited, now — not when the
    // sink last tried.
    let lag = server
        .metric("logistis_sink_lag_seconds{plugin=\"audit\"}")
        .await
        .unwrap();
    let waited = first_admitted.elapsed().as_secs_f64();
    assert!(
        lag >= waited - 1.5 && lag <= waited + 1.0,
        "lag {lag}, waited {waited}"
    );

    receiver.down.store(false, Ordering::SeqCst);
    let back = Instant::now();
    eventually_logged("all three delivered", &server, || async {
        receiver.delivered_uids().await.len() >= 3
    })
    .await;
    let resumed = back.elapsed();
    println!("delivery resumed {resumed:?} after the receiver came back");
    assert!(resumed < Duration::from_secs(6), "{resumed:?}");
    assert_eq!(receiver.delivered_uids().await, ["one", "two", "three"]);
    eventually("no lag once delivered", || async {
        server
            .metric("logistis_sink_lag_seconds{plugin=\"audit\"}")
            .await
            .unwrap()
            == 0.0
    })
    .await;
}

/// A TLS connection to `url`'s host and port, trusting `ca`, offering `alpn`.
async fn tls_connect(
    url: &str,
    ca: &std::path::Path,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let address = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let tcp = tokio::net::TcpStream::connect(&address).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// Whether the server closes `stream` before `deadline` (reads EOF or an error).
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(
    mut stream: S,
    deadline: Duration,
) -> bool {
    let mut buffer = [0u8; 1024];
    let started = Instant::now();
    while started.elapsed() < deadline {
        match tokio::time::timeout(deadline - started.elapsed(), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // HTTP/2 settings, pings or a GOAWAY: keep reading.
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test]
async fn silent_connections_are_closed_and_capped() {
    let server = Server::builder()
        .args([
            "--header-read-timeout",
            "1s",
            "--idle-timeout",
            "2s",
            "--max-connections",
            "70",
        ])
        .start()
        .unwrap();
    let mut silent = Vec::new();
    for kind in 0..60 {
        let mut stream = match kind % 3 {
            // TLS complete, then nothing.
            0 => tls_connect(&server.webhook_url, &server.ca_path, b"http/1.1")
                .await
                .unwrap(),
            // Half an HTTP/1.1 request head.
            1 => {
                let mut s = tls_connect(&server.webhook_url, &server.ca_path, b"http/1.1")
                    .await
                    .unwrap();
                s.write_all(b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-")
                    .await
                    .unwrap();
                s
            }
            // Only the HTTP/2 preface.
            _ => {
                let mut s = tls_connect(&server.webhook_url, &server.ca_path, b"h2")
                    .await
                    .unwrap();
                s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                    .await
                    .unwrap();
                s
            }
        };
        stream.flush().await.unwrap();
        silent.push(stream);
    }
    eventually("60 open connections counted", || async {
        server
            .metric("logistis_http_connections{listener=\"webhook\"}")
            .await
            .unwrap_or(0.0)
            >= 60.0
    })
    .await;
    // Past the cap (70), new connections are closed at once.
    let mut extra = Vec::new();
    for _ in 0..20 {
        let address = server
            .webhook_url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        extra.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    eventually("connections past the cap rejected", || async {
        server
            .metric("logistis_http_connections_rejected_total{listener=\"webhook\"}")
            .await
            .unwrap_or(0.0)
            >= 10.0
    })
    .await;
    drop(extra);
    let closes = silent
        .into_iter()
        .map(|stream| tokio::spawn(closed_by_server(stream, Duration::from_secs(30))));
    let mut closed = 0;
    for close in closes {
        closed += usize::from(close.await.unwrap());
    }
    assert_eq!(
        closed, 60,
        "every silent connection is closed by the server"
    );
    // The webhook still answers.
    server
        .admit(&own_review("create-deployment.json"))
        .await
        .unwrap();
    let timed_out = server
        .metric("logistis_http_connections_timed_out_total{listener=\"webhook\",reason=\"first_request\"}")
        .await
        .unwrap_or(0.0)
        + server
            .metric("logistis_http_connections_timed_out_total{listener=\"webhook\",reason=\"idle\"}")
            .await
            .unwrap_or(0.0);
    assert!(timed_out >= 20.0, "{timed_out}");
}

#[tokio::test]
async fn hostile_queries_get_json_errors_never_a_panic() {
    let server = Server::start().unwrap();
    for (path, status, needle) in [
        ("/api/v1/events?since=1000000years", 400, "out of range"),
        ("/api/v1/events?until=300000years", 400, "out of range"),
        ("/api/v1/objects/core/pod/default/%FF/versions", 400, ""),
    ] {
        let (code, body) = server.get(path).await.unwrap();
        assert_eq!(code, status, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(needle)),
            "{path}: {body}"
        );
    }
    let long = format!("/api/v1/events?user={}", "x".repeat(10_000));
    let (code, body) = server.get(&long).await.unwrap();
    assert_eq!(code, 414, "{body}");
    assert!(body["error"].as_str().is_some(), "{body}");
    let response = server
        .client
        .post(format!("{}/api/v1/events", server.query_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not allowed"),
        "{body}"
    );
    // Still serving.
    assert_eq!(server.get("/api/v1/events").await.unwrap().0, 200);
}

#[tokio::test]
async fn hostile_reviews_cost_only_themselves_and_everything_stored_reads_back() {
    let server = Arc::new(Server::start().unwrap());
    let mut long_name = review("long-name", "shop", "alice");
    long_name["request"]["name"] = json!("n".repeat(70_000));
    long_name["request"]["object"]["metadata"]["name"] = json!("n".repeat(70_000));
    let mut deep = review("deep", "shop", "alice");
    deep["request"]["object"]["spec"]["nested"] =
        (0..118).fold(json!(1), |inner, _| json!([inner]));
    let mut tasks = Vec::new();
    for n in 0..40 {
        let server = server.clone();
        let hostile = match n {
            10 => Some(long_name.clone()),
            20 => Some(deep.clone()),
            _ => None,
        };
        tasks.push(tokio::spawn(async move {
            if let Some(hostile) = hostile {
                server.admit(&hostile).await.unwrap();
            }
            server
                .admit(&review(&format!("good-{n}"), "shop", "alice"))
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Every good review recorded; the two hostile ones counted, not stored; and the list
    // (which nests objects a few levels deeper) parses with serde_json's default limit.
    let stored = stored_uids(&server, Some("shop")).await;
    assert_eq!(stored.len(), 40, "{stored:?}");
    assert!(!stored.contains("long-name") && !stored.contains("deep"));
    assert_eq!(
        server
            .metric("logistis_admission_reviews_total{outcome=\"over_limits\"}")
            .await
            .unwrap(),
        2.0
    );
    let (code, _) = server.get("/api/v1/namespaces").await.unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn secret_annotations_and_secrets_known_only_by_resource_are_hashed() {
    let mut server = Server::start().unwrap();
    let token = "sha256~annotation-token-plaintext";
    let password = "by-resource-password-plaintext";
    let review = wrap_request(json!({
        "uid": "s0000000-0000-4000-8000-000000000001",
        "kind": {"group": "", "version": "v1", "kind": "secret"},
        "resource": {"group": "", "version": "v1", "resource": "secrets"},
        "namespace": "shop", "name": "token", "operation": "CREATE",
        "userInfo": {"username": "alice"},
        "object": {
            "metadata": {"name": "token", "namespace": "shop", "annotations": {
                "openshift.io/token-secret.value": token,
                "kubernetes.io/service-account.name": "builder"
            }},
            "stringData": {"password": password}
        }
    }));
    server.admit(&review).await.unwrap();
    let events = server
        .get_ok("/api/v1/events?namespace=shop")
        .await
        .unwrap();
    let event = &events["items"][0];
    let text = event.to_string();
    assert!(!text.contains("annotation-token-plaintext"), "{text}");
    assert!(!text.contains(password), "{text}");
    assert!(
        text.contains("builder"),
        "known-harmless annotations stay readable"
    );
    assert!(server.terminate().unwrap().success());
    let files = files_under(&server.data_dir);
    for plaintext in ["annotation-token-plaintext", password] {
        let found = occurrences(&files, plaintext);
        assert!(found.is_empty(), "{plaintext:?} found in {found:?}");
    }
}
