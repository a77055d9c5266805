//! Confirmation by watch, end to end: the real `logistis serve --confirm` against the
//! cluster stand-in (`tests/support/apiserver/cluster.rs`), which posts every change's
//! AdmissionReview to Logistis first, then applies it (or rejects it, or conflicts), and
//! serves list and watch in the real wire format. Each test drives a history through it and
//! checks the status every recorded event ends with.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use logistis_e2e::Server;
use logistis_e2e::cluster::{Admission, CONFIGMAPS, Cluster, DEPLOYMENTS, SECRETS, Served};
use serde_json::{Value, json};

/// The deadline the tests run with: short, so phantoms are decided quickly.
const DEADLINE: &str = "1s";

struct Setup {
    cluster: Cluster,
    served: Served,
    server: Server,
}

async fn start_with(cluster: Cluster, data_dir: Option<&std::path::Path>) -> Result<Setup> {
    let mut cluster = cluster;
    cluster.set_bookmark_interval(Duration::from_millis(200));
    let served = cluster.serve().await?;
    let server = start_server(&served, data_dir)?;
    cluster.set_webhook(
        Some(&server.webhook_url),
        Some(&std::fs::read(&server.ca_path)?),
    )?;
    Ok(Setup {
        cluster,
        served,
        server,
    })
}

impl Setup {
    /// Start the server again on `data` (new ports) and point the cluster's webhook at it,
    /// as the Service in front of a restarted pod does.
    fn restart_on(&mut self, data: &std::path::Path) -> Result<()> {
        self.server = start_server(&self.served, Some(data))?;
        self.cluster.set_webhook(
            Some(&self.server.webhook_url),
            Some(&std::fs::read(&self.server.ca_path)?),
        )
    }
}

fn start_server(served: &Served, data_dir: Option<&std::path::Path>) -> Result<Server> {
    let mut builder = Server::builder()
        .args(["--confirm", "--confirm-deadline", DEADLINE])
        .env("KUBECONFIG", &served.kubeconfig.display().to_string())
        .env(
            "RUST_LOG",
            "debug,fjall=warn,lsm_tree=warn,hyper=info,hyper_util=info,h2=info,rustls=info,tower=info,kube_client=info",
        );
    if let Some(dir) = data_dir {
        builder = builder.data_dir(dir);
    }
    builder.start()
}

fn deployment(name: &str, replicas: u64, image: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
           "spec": {"replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": name, "image": image}]}}}})
}

fn configmap(name: &str, value: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "shop"}, "data": {"key": value}})
}

/// The events of `query` (oldest first), once `done` holds for them; 30 s at most.
async fn events_until(
    server: &Server,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = server.get_ok(&format!("/api/v1/events?{query}")).await?;
        let mut items = answer["items"].as_array().cloned().unwrap_or_default();
        items.reverse();
        if done(&items) {
            return Ok(items);
        }
        if Instant::now() >= deadline {
            bail!(
                "gave up waiting on {query}: {}\nlog:\n{}",
                serde_json::to_string_pretty(&items)?,
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn statuses(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap_or("").to_owned(),
                e["user"]["username"].as_str().unwrap_or("").to_owned(),
                e["status"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect()
}

fn settled(events: &[Value]) -> bool {
    events.iter().all(|e| e["status"] != "pending")
}

/// Create `shop/web` and wait for the watch to confirm it: the watch is up after this.
async fn create_web(setup: &Setup) -> Result<()> {
    setup
        .cluster
        .create(
            &DEPLOYMENTS,
            "alice@example.com",
            "kubectl-client-side-apply",
            deployment("web", 1, "nginx:1.25"),
            Admission::Allow,
        )
        .await?;
    events_until(
        &setup.server,
        "kind=deployment&name=web&namespace=shop",
        |e| e.first().is_some_and(|e| e["status"] == "confirmed"),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_normal_history_is_all_confirmed_with_its_lag() {
    let setup = start_with(Cluster::new(), None).await.unwrap();
    let (cluster, server) = (&setup.cluster, &setup.server);
    create_web(&setup).await.unwrap();
    cluster
        .scale(&DEPLOYMENTS, "shop", "web", "bob@example.com", 3)
        .await
        .unwrap();
    cluster
        .update(
            &DEPLOYMENTS,
            "shop",
            "web",
            "system:serviceaccount:ci:deployer",
            "kubectl-set",
            Admission::Allow,
            |o| o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27"),
        )
        .await
        .unwrap();
    // The controller's status updates are not reviewed (a subresource the webhook does not
    // cover) and are noise: nothing to record.
    cluster.apply_unreviewed(
        &DEPLOYMENTS,
        "shop",
        "web",
        "kube-controller-manager",
        |o| {
            let mut o = o.unwrap();
            o["status"] = json!({"replicas": 3, "readyReplicas": 3});
            Some(o)
        },
    );
    cluster
        .delete(
            &DEPLOYMENTS,
            "shop",
            "web",
            "dave@example.com",
            Admission::Allow,
        )
        .await
        .unwrap();
    let events = events_until(server, "kind=deployment&name=web&namespace=shop", |e| {
        e.len() >= 4 && settled(e)
    })
    .await
    .unwrap();
    assert_eq!(
        statuses(&events),
        [
            (
                "CREATE".into(),
                "alice@example.com".into(),
                "confirmed".into()
            ),
            (
                "UPDATE".into(),
                "bob@example.com".into(),
                "confirmed".into()
            ),
            (
                "UPDATE".into(),
                "system:serviceaccount:ci:deployer".into(),
                "confirmed".into()
            ),
            (
                "DELETE".into(),
                "dave@example.com".into(),
                "confirmed".into()
            ),
        ],
        "{}",
        server.log()
    );
    // Each carries the resourceVersion it landed as, in order.
    let landed: Vec<u64> = events
        .iter()
        .map(|e| {
            e["confirmation"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(landed.windows(2).all(|w| w[0] < w[1]), "{landed:?}");
    assert_eq!(
        server
            .metric("logistis_confirm_lag_seconds_count")
            .await
            .unwrap(),
        4.0
    );
    let confirmed = server
        .get_ok("/api/v1/events?status=confirmed&namespace=shop")
        .await
        .unwrap();
    assert_eq!(confirmed["items"].as_array().unwrap().len(), 4);
    let (status, body) = server.get("/api/v1/events?status=maybe").await.unwrap();
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn denied_and_conflicting_changes_are_phantoms_and_never_blamed() {
    let setup = start_with(Cluster::new(), None).await.unwrap();
    let (cluster, server) = (&setup.cluster, &setup.server);
    create_web(&setup).await.unwrap();
    // A later webhook (or a quota) denies it after Logistis recorded it.
    cluster
        .update(
            &DEPLOYMENTS,
            "shop",
            "web",
            "mallory@example.com",
            "kubectl-edit",
            Admission::Deny,
            |o| o["spec"]["replicas"] = json!(9),
        )
        .await
        .unwrap();
    // Eve's update is reviewed, then Bob's lands first: Eve's conflicts.
    cluster
        .update_conflicting(
            &DEPLOYMENTS,
            "shop",
            "web",
            "eve@example.com",
            |o| o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest"),
            "bob@example.com",
            |o| o["spec"]["replicas"] = json!(2),
        )
        .await
        .unwrap();
    let events = events_until(server, "kind=deployment&name=web&namespace=shop", |e| {
        e.len() >= 4 && settled(e)
    })
    .await
    .unwrap();
    assert_eq!(
        statuses(&events),
        [
            (
                "CREATE".into(),
                "alice@example.com".into(),
                "confirmed".into()
            ),
            (
                "UPDATE".into(),
                "mallory@example.com".into(),
                "phantom".into()
            ),
            ("UPDATE".into(), "eve@example.com".into(), "phantom".into()),
            (
                "UPDATE".into(),
                "bob@example.com".into(),
                "confirmed".into()
            ),
        ],
        "{}",
        server.log()
    );
    const WEB: &str = "/api/v1/objects/apps/deployment/shop/web";
    let blame = server.get_ok(&format!("{WEB}/blame")).await.unwrap();
    let blamed: Vec<&str> = blame["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["user"]["username"].as_str().unwrap())
        .collect();
    assert!(
        blamed
            .iter()
            .all(|u| *u == "alice@example.com" || *u == "bob@example.com"),
        "{blamed:?}"
    );
    assert!(blamed.contains(&"bob@example.com"));
    let image_line = blame["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["line"].as_str().unwrap().contains("image:"))
        .unwrap();
    assert!(image_line["line"].as_str().unwrap().contains("nginx:1.25"));
    // Bisect never names a phantom's author; asked to, it shows what the record claimed.
    let (status, _) = server
        .get(&format!("{WEB}/bisect?path=spec.replicas&value=9"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    let claimed = server
        .get_ok(&format!(
            "{WEB}/bisect?path=spec.replicas&value=9&includePhantoms=true"
        ))
        .await
        .unwrap();
    assert_eq!(
        claimed["version"]["user"]["username"],
        "mallory@example.com"
    );
    assert_eq!(claimed["version"]["status"], "phantom");
    let versions = server.get_ok(&format!("{WEB}/versions")).await.unwrap();
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    let all = server
        .get_ok(&format!("{WEB}/versions?includePhantoms=true"))
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    let phantoms = server
        .get_ok("/api/v1/events?status=phantom")
        .await
        .unwrap();
    assert_eq!(phantoms["items"].as_array().unwrap().len(), 2);
}

/// The observed events of `shop`, oldest first, once there are `count`.
async fn observed(server: &Server, count: usize) -> Vec<Value> {
    events_until(server, "namespace=shop&status=observed", |e| {
        e.len() >= count
    })
    .await
    .unwrap()
}

/// Three changes and one deletion, as [`change_while_away`] makes them, all `observed`
/// with the field manager that made each change as the hint.
fn check_four_observed(events: &[Value]) {
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_owned(),
                e["resource"]["name"].as_str().unwrap().to_owned(),
                e["observedBy"]["manager"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let mut sorted = summary.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("DELETE".into(), "old".into(), String::new()),
            ("UPDATE".into(), "cfg".into(), "helm".into()),
            ("UPDATE".into(), "extra".into(), "kubectl-edit".into()),
            ("UPDATE".into(), "web".into(), "hpa-controller".into()),
        ],
        "{summary:?}"
    );
    for event in events {
        assert_eq!(event["user"]["username"], "", "the user is unknown");
        assert_eq!(event["status"], "observed");
        if event["operation"] == "UPDATE" {
            assert!(event["observedBy"]["time"].is_string(), "{event}");
            assert!(!event["patch"].as_array().unwrap().is_empty(), "{event}");
        }
    }
}

/// `shop/web` and three ConfigMaps, `cfg`, `extra` and `old`, all confirmed.
async fn seed(setup: &Setup) {
    create_web(setup).await.unwrap();
    for name in ["cfg", "extra", "old"] {
        setup
            .cluster
            .create(
                &CONFIGMAPS,
                "alice@example.com",
                "kubectl",
                configmap(name, "v1"),
                Admission::Allow,
            )
            .await
            .unwrap();
    }
    events_until(&setup.server, "namespace=shop&status=confirmed", |e| {
        e.len() >= 4
    })
    .await
    .unwrap();
}

/// web scaled by an HPA and cfg changed by helm (neither reviewed), extra edited and old
/// deleted by carol — reviewed when `reviewed`, which finds no one while Logistis is down.
async fn change_while_away(cluster: &Cluster, reviewed: bool) {
    cluster.apply_unreviewed(&DEPLOYMENTS, "shop", "web", "hpa-controller", |o| {
        let mut o = o.unwrap();
        o["spec"]["replicas"] = json!(4);
        Some(o)
    });
    cluster.apply_unreviewed(&CONFIGMAPS, "shop", "cfg", "helm", |o| {
        let mut o = o.unwrap();
        o["data"]["key"] = json!("v2");
        Some(o)
    });
    if reviewed {
        cluster
            .update(
                &CONFIGMAPS,
                "shop",
                "extra",
                "carol@example.com",
                "kubectl-edit",
                Admission::Allow,
                |o| o["data"]["key"] = json!("v3"),
            )
            .await
            .unwrap();
        cluster
            .delete(
                &CONFIGMAPS,
                "shop",
                "old",
                "carol@example.com",
                Admission::Allow,
            )
            .await
            .unwrap();
    } else {
        cluster.apply_unreviewed(&CONFIGMAPS, "shop", "extra", "kubectl-edit", |o| {
            let mut o = o.unwrap();
            o["data"]["key"] = json!("v3");
            Some(o)
        });
        cluster.apply_unreviewed(&CONFIGMAPS, "shop", "old", "kubectl", |_| None);
    }
}

#[tokio::test]
async fn changes_while_logistis_was_down_are_observed_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut setup = start_with(Cluster::new(), Some(&data)).await.unwrap();
    seed(&setup).await;
    setup.server.terminate().unwrap();
    // While it is down, reviews fail and the API server goes on (failurePolicy Ignore).
    change_while_away(&setup.cluster, true).await;
    let reviews = setup.cluster.reviews();
    assert!(
        reviews.iter().rev().take(2).all(|(_, answered)| !answered),
        "Logistis was down: the reviews found no one: {reviews:?}"
    );
    setup.restart_on(&data).unwrap();
    let events = observed(&setup.server, 4).await;
    check_four_observed(&events);
    assert!(
        setup
            .server
            .metric("logistis_confirm_catchup_objects_total")
            .await
            .unwrap()
            >= 4.0
    );
    // A second restart finds nothing new: the catch-up is idempotent.
    setup.server.terminate().unwrap();
    setup.restart_on(&data).unwrap();
    create_web_again_confirmed(&setup).await;
    let again = setup
        .server
        .get_ok("/api/v1/events?namespace=shop&status=observed")
        .await
        .unwrap();
    assert_eq!(again["items"].as_array().unwrap().len(), 4, "{again}");
}

/// After a restart: wait until the watch is up again (a new change is confirmed).
async fn create_web_again_confirmed(setup: &Setup) {
    setup
        .cluster
        .create(
            &CONFIGMAPS,
            "alice@example.com",
            "kubectl",
            configmap("probe", "v1"),
            Admission::Allow,
        )
        .await
        .unwrap();
    events_until(
        &setup.server,
        "kind=configmap&name=probe&namespace=shop",
        |e| e.first().is_some_and(|e| e["status"] == "confirmed"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn changes_while_the_watch_was_away_are_observed_after_410_gone() {
    let setup = start_with(Cluster::new(), None).await.unwrap();
    seed(&setup).await;
    let relists = "logistis_confirm_relists_total{resource=\"configmaps\"}";
    let relists_before = setup.server.metric(relists).await.unwrap();
    setup.cluster.pause_watches(true);
    change_while_away(&setup.cluster, false).await;
    // The history the watchers would resume from is gone: their resourceVersion is too old.
    setup.cluster.compact();
    setup.cluster.pause_watches(false);
    let events = observed(&setup.server, 4).await;
    check_four_observed(&events);
    let relists_after = setup.server.metric(relists).await.unwrap();
    assert!(
        relists_after > relists_before,
        "{relists_before} → {relists_after}"
    );
    assert!(
        setup
            .server
            .metric("logistis_confirm_watch_restarts_total{resource=\"configmaps\"}")
            .await
            .unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn a_forged_review_ends_phantom() {
    let setup = start_with(Cluster::new(), None).await.unwrap();
    let server = &setup.server;
    create_web(&setup).await.unwrap();
    let current = setup.cluster.get(&DEPLOYMENTS, "shop", "web").unwrap();
    let mut forged_object = current.clone();
    forged_object["spec"]["replicas"] = json!(42);
    // Posted by anyone on the pod network, for a change that never happened.
    let forged = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "forged-1", "operation": "UPDATE",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": "shop", "name": "web",
            "userInfo": {"username": "alice@example.com"},
            "object": forged_object, "oldObject": current}});
    server.admit(&forged).await.unwrap();
    let events = events_until(server, "kind=deployment&name=web&namespace=shop", |e| {
        e.len() >= 2 && settled(e)
    })
    .await
    .unwrap();
    assert_eq!(events[1]["uid"], "forged-1");
    assert_eq!(events[1]["status"], "phantom", "{}", events[1]);
    assert!(
        events[1]["confirmation"]["reason"]
            .as_str()
            .unwrap()
            .contains("deadline")
    );
}

#[tokio::test]
async fn secrets_through_the_watch_leave_no_plaintext() {
    const PLAINTEXTS: [&str; 2] = ["hunter2-watch-only", "s3cr3t-from-the-watch"];
    let setup = start_with(Cluster::new(), None).await.unwrap();
    let (cluster, server) = (&setup.cluster, &setup.server);
    create_web(&setup).await.unwrap();
    let b64 = |text: &str| {
        use base64_like::encode;
        encode(text.as_bytes())
    };
    cluster
        .create(
            &SECRETS,
            "alice@example.com",
            "kubectl",
            json!({"metadata": {"name": "db", "namespace": "shop"}, "type": "Opaque",
                   "data": {"password": b64(PLAINTEXTS[0])}}),
            Admission::Allow,
        )
        .await
        .unwrap();
    // Rotated by another path: only the watch sees the new value.
    cluster.apply_unreviewed(&SECRETS, "shop", "db", "vault-agent", |o| {
        let mut o = o.unwrap();
        o["data"]["password"] = json!(b64(PLAINTEXTS[1]));
        Some(o)
    });
    let events = events_until(server, "kind=secret&namespace=shop", |e| {
        e.len() >= 2 && settled(e)
    })
    .await
    .unwrap();
    assert_eq!(statuses(&events)[0].2, "confirmed", "{events:?}");
    assert_eq!(statuses(&events)[1].2, "observed", "{events:?}");
    let full = server
        .get_ok(&format!(
            "/api/v1/events/{}",
            events[1]["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert!(
        full["object"]["data"]["password"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    let mut leaks = Vec::new();
    let needles: Vec<String> = PLAINTEXTS
        .iter()
        .flat_map(|p| [p.to_string(), b64(p)])
        .collect();
    for entry in walk(&server.data_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        for needle in &needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                leaks.push(format!("{} in {}", needle, entry.display()));
            }
        }
    }
    let log = server.log();
    for needle in &needles {
        if log.contains(needle.as_str()) {
            leaks.push(format!("{needle} in the log"));
        }
    }
    assert!(leaks.is_empty(), "{leaks:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Base64 without a dependency: the Secret `data` encoding.
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// Percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// The benchmark of the confirmation (prints figures; run on its own, in release):
/// `cargo test --release -p logistis-e2e --test e2e -- --ignored confirm::benchmark --nocapture`.
/// 1. Lag: the stand-in applies `RATE` reviewed changes per second (scale updates of 20
///    Deployments, round robin) for `SECONDS`; each event's lag is its confirmation time
///    minus its record time.
/// 2. Throughput: 16 concurrent clients post reviews straight to the webhook for 5 s, with
///    `--confirm` (all marked pending, the watch idle) and without, side by side.
#[tokio::test]
#[ignore = "a benchmark: prints figures, run it on its own"]
async fn benchmark() {
    const RATE: u64 = 100;
    const SECONDS: u64 = 10;
    let setup = start_with(Cluster::new(), None).await.unwrap();
    let (cluster, server) = (&setup.cluster, &setup.server);
    create_web(&setup).await.unwrap();
    for n in 0..20 {
        cluster
            .create(
                &DEPLOYMENTS,
                "alice@example.com",
                "kubectl",
                deployment(&format!("app-{n}"), 1, "nginx:1.25"),
                Admission::Allow,
            )
            .await
            .unwrap();
    }
    let started = Instant::now();
    let total = RATE * SECONDS;
    for i in 0..total {
        let due = started + Duration::from_micros(i * 1_000_000 / RATE);
        tokio::time::sleep_until(due.into()).await;
        let name = format!("app-{}", i % 20);
        cluster
            .update(
                &DEPLOYMENTS,
                "shop",
                &name,
                "bob@example.com",
                "kubectl",
                Admission::Allow,
                |o| o["spec"]["replicas"] = json!(2 + i),
            )
            .await
            .unwrap();
    }
    let applied = started.elapsed();
    let mut lags = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut token: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Wait until nothing is pending, then read every event of the run.
    loop {
        let pending = server
            .get_ok("/api/v1/events?status=pending&limit=1")
            .await
            .unwrap();
        if pending["items"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let mut query = "/api/v1/events?namespace=shop&user=bob@example.com&limit=1000".to_owned();
        if let Some(token) = &token {
            query.push_str(&format!("&continue={token}"));
        }
        let page = server.get_ok(&query).await.unwrap();
        for event in page["items"].as_array().unwrap() {
            let status = event["status"].as_str().unwrap_or("none").to_owned();
            *counts.entry(status.clone()).or_default() += 1;
            if status == "confirmed" {
                let time =
                    |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
                let lag = time(&event["confirmation"]["time"]) - time(&event["time"]);
                lags.push(lag.num_microseconds().unwrap() as f64 / 1000.0);
            }
        }
        match page["continue"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    lags.sort_by(f64::total_cmp);
    println!(
        "lag: {total} changes at {RATE}/s (applied in {:.1} s); statuses {counts:?}; confirmed {:.2} %; lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        applied.as_secs_f64(),
        100.0 * lags.len() as f64 / total as f64,
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN),
    );
    drop(setup);

    // Throughput, side by side: the same reviews, with and without --confirm.
    let served = Cluster::new().serve().await.unwrap();
    let mut figures = Vec::new();
    for round in 0..2 {
        for confirm in [true, false] {
            let mut builder = Server::builder().env("RUST_LOG", "warn");
            if confirm {
                builder = builder
                    .args(["--confirm", "--confirm-deadline", DEADLINE])
                    .env("KUBECONFIG", &served.kubeconfig.display().to_string());
            }
            let server = builder.start().unwrap();
            let review = logistis_e2e::own_review("update-deployment-replicas.json");
            let stop = Instant::now() + Duration::from_secs(5);
            let server = std::sync::Arc::new(server);
            let mut clients = Vec::new();
            for client in 0..16 {
                let server = server.clone();
                let review = review.clone();
                clients.push(tokio::spawn(async move {
                    let mut done = 0u64;
                    while Instant::now() < stop {
                        let mut review =
                            logistis_e2e::with_uid(&review, &format!("bench-{client}-{done}"));
                        review["request"]["object"]["spec"]["replicas"] = json!(done);
                        server.admit(&review).await.unwrap();
                        done += 1;
                    }
                    done
                }));
            }
            let mut reviews = 0;
            for client in clients {
                reviews += client.await.unwrap();
            }
            figures.push((round, confirm, reviews as f64 / 5.0));
        }
    }
    for (round, confirm, rate) in &figures {
        println!(
            "throughput round {round}: --confirm {}: {rate:.0} reviews/s",
            if *confirm { "on " } else { "off" }
        );
    }
}
