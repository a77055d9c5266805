//! The PostgreSQL-protocol store end to end, on a real PostgreSQL started by
//! `scripts/test.sh`: two replicas with one killed -9 under load, the database stopped for
//! 30 s under load, a sink's lease taken over when its holder dies, two clusters in one
//! database. (The other suites run on PostgreSQL too: `LOGISTIS_E2E_STORE=postgres`.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use logistis_e2e::{Server, ServerBuilder, cargo_bin, own_review, postgres, with_uid};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::plugins::{Receiver, plugins_dir, review, with_plugins};

fn on(url: &str) -> ServerBuilder {
    Server::builder().args(["--store", url])
}

/// `deployment/shop/NAME` UPDATE number `seq` of a chain, uid `UID`: replicas go from
/// `seq + 9` (the fixture's 2 for the first) to `seq + 10`, so no update is a no-op (a no-op
/// is answered but, as noise, not recorded).
fn update(uid: &str, name: &str, seq: u64) -> Value {
    let mut review = with_uid(&own_review("update-deployment-replicas.json"), uid);
    review["request"]["name"] = json!(name);
    review["request"]["object"]["metadata"]["name"] = json!(name);
    review["request"]["oldObject"]["metadata"]["name"] = json!(name);
    review["request"]["object"]["spec"]["replicas"] = json!(seq + 10);
    if seq > 0 {
        review["request"]["oldObject"]["spec"]["replicas"] = json!(seq + 9);
    }
    review
}

/// Every stored event (uid, object name, replicas), oldest first, through the query API.
async fn stored(server: &Server) -> Vec<(String, String, Option<u64>)> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(token) => format!("/api/v1/events?limit=1000&continue={token}"),
            None => "/api/v1/events?limit=1000".to_owned(),
        };
        let page = server.get_ok(&path).await.unwrap();
        for event in page["items"].as_array().unwrap() {
            let replicas = event["patch"]
                .as_array()
                .and_then(|ops| ops.iter().find(|op| op["path"] == "/spec/replicas"))
                .and_then(|op| op["value"].as_u64());
            items.push((
                event["uid"].as_str().unwrap().to_owned(),
                event["resource"]["name"].as_str().unwrap().to_owned(),
                replicas,
            ));
        }
        match page["continue"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    items.reverse();
    items
}

/// Every acknowledged uid is stored, and nothing is stored twice.
fn assert_exactly_once(acknowledged: &BTreeSet<String>, stored: &[(String, String, Option<u64>)]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (uid, _, _) in stored {
        *counts.entry(uid).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|uid| !counts.contains_key(uid.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged reviews are not stored: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

async fn send(client: &reqwest::Client, url: &str, review: &Value) -> bool {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(review).unwrap())
        .send()
        .await;
    match response {
        Ok(response) if response.status() == 200 => response
            .json::<Value>()
            .await
            .is_ok_and(|body| body["response"]["allowed"] == true),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_under_load_store_every_acknowledged_review_once() {
    let test = "two_replicas_one_killed_under_load_store_every_acknowledged_review_once";
    let Some(admin) = postgres::admin(test) else {
        return;
    };
    let url = postgres::fresh_database(&admin, "replicas");
    let survivor = on(&url).start().unwrap();
    let mut victim = on(&url).start().unwrap();
    let targets = Arc::new([
        (survivor.client.clone(), survivor.webhook_url.clone()),
        (victim.client.clone(), victim.webhook_url.clone()),
    ]);
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..8usize {
        let (targets, acknowledged, stop) = (targets.clone(), acknowledged.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            // Bounded even if the kill never came.
            for seq in 0..2_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let uid = format!("w{worker}-{seq}");
                let review = update(&uid, &format!("web-{worker}"), seq as u64);
                // The loadgen spread over both; a failed replica's review is re-sent to the
                // other, as the API server retries another endpoint of the Service.
                let first = (worker + seq) % 2;
                for target in [first, 1 - first] {
                    let (client, url) = &targets[target];
                    if send(client, url, &review).await {
                        acknowledged.lock().await.insert(uid);
                        break;
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged.lock().await.len() < 400 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill9().unwrap();
    let at_kill = acknowledged.lock().await.len();
    while acknowledged.lock().await.len() < at_kill + 400 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(
        acknowledged.len() >= at_kill + 400,
        "the survivor kept answering"
    );
    let stored = stored(&survivor).await;
    assert_exactly_once(&acknowledged, &stored);
    println!(
        "{} reviews acknowledged by two replicas ({at_kill} before the kill -9), {} stored",
        acknowledged.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_for_30_s_under_load_loses_nothing() {
    let test = "the_database_stopped_for_30_s_under_load_loses_nothing";
    let Some((admin, ctl)) = postgres::outage(test) else {
        return;
    };
    let url = postgres::fresh_database(&admin, "outage");
    let server = on(&url)
        .args([
            "--store-commit-timeout",
            "500ms",
            "--max-versions-per-object",
            "0",
        ])
        .start()
        .unwrap();
    let control = |action: &str| {
        let status = std::process::Command::new(&ctl)
            .arg(action)
            .status()
            .unwrap();
        assert!(status.success(), "{} {action}", ctl.display());
    };
    // One object per worker, its replicas counting up: the stored order must be the sent one.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new((server.client.clone(), server.webhook_url.clone()));
    let mut workers = Vec::new();
    for worker in 0..4usize {
        let (target, acknowledged, stop, slowest) = (
            target.clone(),
            acknowledged.clone(),
            stop.clone(),
            slowest.clone(),
        );
        workers.push(tokio::spawn(async move {
            let (client, url) = &*target;
            for seq in 0..10_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let uid = format!("o{worker}-{seq}");
                let started = Instant::now();
                if send(client, url, &update(&uid, &format!("web-{worker}"), seq)).await {
                    acknowledged.lock().await.insert(uid);
                }
                let took = started.elapsed();
                let mut slowest = slowest.lock().await;
                *slowest = (*slowest).max(took);
                drop(slowest);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    control("stop");
    let stopped = Instant::now();
    // The outage: the webhook keeps answering, the store says it is degraded, stays ready.
    let mut degraded_seen = false;
    while stopped.elapsed() < Duration::from_secs(30) {
        let status = server.get_ok("/api/v1/store").await.unwrap();
        if status["degraded"] == true && status["outboxEvents"].as_u64() > Some(0) {
            degraded_seen = true;
            let (code, _) = server.get("/readyz").await.unwrap();
            assert_eq!(code, 200, "still ready while the database is away");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(degraded_seen, "the store said it was degraded");
    let during = acknowledged.lock().await.len();
    let depth = server.metric("logistis_store_outbox_events").await.unwrap();
    assert!(depth > 0.0, "the outbox depth is a metric");
    control("start");
    let restarted = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = server.get_ok("/api/v1/store").await.unwrap();
        if status["degraded"] == false && status["outboxEvents"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = restarted.elapsed();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();
    let stored = stored(&server).await;
    assert_exactly_once(&acknowledged, &stored);
    for worker in 0..4 {
        let name = format!("web-{worker}");
        let replicas: Vec<u64> = stored
            .iter()
            .filter(|(_, object, _)| *object == name)
            .filter_map(|(_, _, replicas)| *replicas)
            .collect();
        assert!(
            replicas.windows(2).all(|w| w[0] < w[1]),
            "{name}: stored out of order: {replicas:?}"
        );
    }
    println!(
        "{} acknowledged ({during} before the database came back), outbox drained {drained:?} after the restart, slowest answer {:?}",
        acknowledged.len(),
        *slowest.lock().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_is_delivered_by_one_replica_and_taken_over_when_it_dies() {
    let test = "a_sink_is_delivered_by_one_replica_and_taken_over_when_it_dies";
    let Some(admin) = postgres::admin(test) else {
        return;
    };
    let url = postgres::fresh_database(&admin, "lease");
    let receiver = Receiver::start(false).await;
    let yaml = format!(
        r#"
sinks:
  - name: audit
    file: webhook.wasm
    allowed-hosts: ["127.0.0.1:{port}"]
    config: {{url: "http://127.0.0.1:{port}/hook"}}
"#,
        port = receiver.port
    );
    let dir = plugins_dir(
        &yaml,
        &[(
            "webhook.wasm",
            &logistis_e2e::plugins::rust_plugin("logistis-plugin-sink-webhook"),
        )],
    );
    let start = || {
        with_plugins(dir.path())
            .args(["--store", &url])
            .start()
            .unwrap()
    };
    let mut replicas = [start(), start()];
    for n in 0..20 {
        replicas[n % 2]
            .admit(&review(&format!("before-{n}"), "shop", "alice"))
            .await
            .unwrap();
    }
    wait_for(&receiver, 20).await;
    let holding = |server: &Server| server.log().contains("this replica holds the sink's lease");
    let holder = match (holding(&replicas[0]), holding(&replicas[1])) {
        (true, false) => 0,
        (false, true) => 1,
        other => panic!("exactly one replica delivers the sink: {other:?}"),
    };
    let killed = Instant::now();
    replicas[holder].kill9().unwrap();
    let survivor = &replicas[1 - holder];
    for n in 0..20 {
        survivor
            .admit(&review(&format!("after-{n}"), "shop", "alice"))
            .await
            .unwrap();
    }
    wait_for(&receiver, 40).await;
    let took_over = killed.elapsed();
    let delivered = receiver.delivered_uids().await;
    let distinct: BTreeSet<&String> = delivered.iter().collect();
    assert_eq!(distinct.len(), 40, "nothing lost: {delivered:?}");
    // In order: the survivor's events arrive in the order they were recorded.
    let after: Vec<&String> = delivered
        .iter()
        .filter(|uid| uid.starts_with("after-"))
        .collect();
    let mut first_seen = Vec::new();
    for uid in after {
        if !first_seen.contains(&uid) {
            first_seen.push(uid);
        }
    }
    let expected: Vec<String> = (0..20).map(|n| format!("after-{n}")).collect();
    assert_eq!(first_seen, expected.iter().collect::<Vec<_>>());
    println!(
        "sink taken over and caught up {took_over:?} after the kill -9; {} deliveries, {} duplicates (at least once)",
        delivered.len(),
        delivered.len() - distinct.len()
    );
}

async fn wait_for(receiver: &Receiver, distinct: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = receiver.delivered_uids().await;
        if delivered.iter().collect::<BTreeSet<_>>().len() >= distinct {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {distinct} delivered: {delivered:?}",
            delivered.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_clusters_share_a_database_and_kubectl_blame_tells_them_apart() {
    let test = "two_clusters_share_a_database_and_kubectl_blame_tells_them_apart";
    let Some(admin) = postgres::admin(test) else {
        return;
    };
    let url = postgres::fresh_database(&admin, "clusters");
    let a = on(&url).args(["--cluster", "a"]).start().unwrap();
    let b = on(&url).args(["--cluster", "b"]).start().unwrap();
    a.admit(&review("in-a", "shop", "alice")).await.unwrap();
    b.admit(&review("in-b", "shop", "bob")).await.unwrap();
    let events = a.get_ok("/api/v1/events?cluster=a").await.unwrap();
    let uids: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, ["in-a"]);
    assert_eq!(events["items"][0]["cluster"], "a");

    let blame = |args: &[&str]| {
        let output = std::process::Command::new(cargo_bin("kubectl-blame", "kubectl-blame"))
            .args(["--server", &a.query_url, "--certificate-authority"])
            .arg(&a.ca_path)
            .args(args)
            .env_remove("LOGISTIS_BLAME_CLUSTER")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kubectl blame {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let only_a = blame(&["--cluster", "a", "-n", "shop"]);
    assert!(
        only_a.contains("in-a") && !only_a.contains("in-b"),
        "{only_a}"
    );
    assert!(
        !only_a.contains("CLUSTER"),
        "one cluster shown: no column\n{only_a}"
    );
    let both = blame(&["-n", "shop"]);
    assert!(both.starts_with("CLUSTER"), "{both}");
    assert!(both.contains("in-a") && both.contains("in-b"), "{both}");
    let overview = blame(&[]);
    assert!(overview.starts_with("CLUSTER   NAMESPACE"), "{overview}");
    let overview_a = blame(&["--cluster", "a"]);
    assert!(
        overview_a.starts_with("NAMESPACE")
            && overview_a.contains("alice")
            && !overview_a.contains("bob"),
        "{overview_a}"
    );
}
