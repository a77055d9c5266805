//! Plugins built from this repository, run by the real server: the shipped predicates on
//! real fixtures, misbehaving (test-only) plugins that never fail a request, a webhook sink
//! delivering to a local HTTP server with retries and an allow-list, and the Python and
//! JavaScript predicates against the same WIT.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use logistis_e2e::plugins::{js_plugin, python_plugin, rust_plugin, shared_cache_dir};
use logistis_e2e::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// A plugins directory with `plugins.yaml` and the named components copied in.
pub fn plugins_dir(yaml: &str, components: &[(&str, &Path)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugins.yaml"), yaml).unwrap();
    for (name, path) in components {
        std::fs::copy(path, dir.path().join(name)).unwrap();
    }
    dir
}

/// The Deployment CREATE fixture, moved to `namespace`, made by `user`, with `uid`.
pub fn review(uid: &str, namespace: &str, user: &str) -> Value {
    let mut review = with_uid(&own_review("create-deployment.json"), uid);
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    review["request"]["name"] = json!(uid);
    review["request"]["object"]["metadata"]["name"] = json!(uid);
    review["request"]["userInfo"]["username"] = json!(user);
    review
}

/// The uids of the stored events (of one namespace).
pub async fn stored_uids(server: &Server, namespace: Option<&str>) -> BTreeSet<String> {
    let filter = namespace.map_or(String::new(), |ns| format!("&namespace={ns}"));
    let page = server
        .get_ok(&format!("/api/v1/events?limit=1000{filter}"))
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["uid"].as_str().unwrap().to_owned())
        .collect()
}

fn set(uids: &[&str]) -> BTreeSet<String> {
    uids.iter().map(|s| s.to_string()).collect()
}

/// A server builder with `dir` as its plugins directory and the tests' shared compiled
/// cache (so a component is compiled once per test run, not once per server).
pub fn with_plugins(dir: &Path) -> ServerBuilder {
    Server::builder()
        .arg("--plugins-dir")
        .arg(dir.to_str().unwrap())
        .env(
            "LOGISTIS_PLUGINS_CACHE_DIR",
            shared_cache_dir().to_str().unwrap(),
        )
}

fn start_with(dir: &Path) -> Server {
    with_plugins(dir).start().unwrap()
}

#[tokio::test]
async fn shipped_predicates_decide_what_is_stored() {
    let yaml = r#"
predicates:
  - name: users
    file: users.wasm
    deadline-ms: 1000
    config: {exclude: {users: ["system:serviceaccount:kube-system:*"]}}
  - name: namespaces
    file: namespaces.wasm
    deadline-ms: 1000
    config: {exclude: ["kube-*"]}
  - name: resources
    file: resources.wasm
    deadline-ms: 1000
    config: {exclude: [{subresources: ["scale"]}, {kinds: ["Secret"]}]}
"#;
    // Generous deadlines (the default is 5 ms): a debug build on a busy machine must not
    // turn a verdict into a timeout. Deadlines are tested with the looping plugin.
    let dir = plugins_dir(
        yaml,
        &[
            ("users.wasm", &rust_plugin("logistis-plugin-users")),
            (
                "namespaces.wasm",
                &rust_plugin("logistis-plugin-namespaces"),
            ),
            ("resources.wasm", &rust_plugin("logistis-plugin-resources")),
        ],
    );
    let server = start_with(dir.path());
    server
        .admit(&review("kept", "shop", "alice@example.com"))
        .await
        .unwrap();
    server
        .admit(&review(
            "by-controller",
            "shop",
            "system:serviceaccount:kube-system:deployment-controller",
        ))
        .await
        .unwrap();
    server
        .admit(&review(
            "in-kube-public",
            "kube-public",
            "alice@example.com",
        ))
        .await
        .unwrap();
    // Real fixtures: a scale subresource and a Secret are excluded by the resources rules.
    let scale = own_review("scale-deployment-subresource.json");
    let secret = own_review("create-secret.json");
    let deployment_update = own_review("update-deployment-image.json");
    for fixture in [&scale, &secret, &deployment_update] {
        server.admit(fixture).await.unwrap();
    }
    let stored = stored_uids(&server, None).await;
    let update_uid = deployment_update["request"]["uid"].as_str().unwrap();
    assert_eq!(stored, set(&["kept", update_uid]), "log: {}", server.log());
    assert_eq!(
        server
            .metric("logistis_admission_reviews_total{outcome=\"skipped_by_plugin\"}")
            .await
            .unwrap(),
        4.0
    );
    let status = server.get_ok("/api/v1/plugins").await.unwrap();
    let names: Vec<&str> = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users", "namespaces", "resources"]);
    for plugin in status["items"].as_array().unwrap() {
        assert_eq!(plugin["status"], "active");
        assert!(plugin["digest"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(plugin["failures"], 0);
    }
    // The chain stops at the first skip: `users` saw all six, `resources` only four.
    assert_eq!(status["items"][0]["calls"], 6);
    assert_eq!(status["items"][2]["calls"], 4);
}

#[tokio::test]
async fn looping_trapping_and_hoarding_plugins_never_fail_a_request() {
    let yaml = r#"
predicates:
  - name: looper
    file: misbehave.wasm
    deadline-ms: 5
    config: {evaluate: loop, namespace: chaos-loop}
  - name: trapper
    file: misbehave.wasm
    on-error: skip
    deadline-ms: 1000
    config: {evaluate: trap, namespace: chaos-trap}
  - name: hoarder
    file: misbehave.wasm
    memory-mb: 16
    deadline-ms: 1000
    config: {evaluate: alloc, namespace: chaos-alloc}
  - name: burner
    file: misbehave.wasm
    fuel: 100000
    deadline-ms: 1000
    config: {evaluate: loop, namespace: chaos-fuel}
"#;
    let dir = plugins_dir(
        yaml,
        &[("misbehave.wasm", &rust_plugin("logistis-plugin-misbehave"))],
    );
    let server = start_with(dir.path());
    for round in 0..3 {
        for namespace in [
            "chaos-loop",
            "chaos-trap",
            "chaos-alloc",
            "chaos-fuel",
            "calm",
        ] {
            server
                .admit(&review(&format!("{namespace}-{round}"), namespace, "alice"))
                .await
                .unwrap();
        }
    }
    let stored = stored_uids(&server, None).await;
    let expected: BTreeSet<String> = ["chaos-loop", "chaos-alloc", "chaos-fuel", "calm"]
        .iter()
        .flat_map(|ns| (0..3).map(move |round| format!("{ns}-{round}")))
        .collect();
    // on-error capture (the default) keeps the event; the trapper's on-error skip drops it.
    assert_eq!(stored, expected);
    let status = server.get_ok("/api/v1/plugins").await.unwrap();
    let plugin = |name: &str| {
        status["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(plugin("looper")["timeouts"], 3);
    assert_eq!(plugin("trapper")["traps"], 3);
    assert!(
        plugin("hoarder")["error"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{status}"
    );
    assert!(
        plugin("burner")["error"].as_str().unwrap().contains("fuel"),
        "{status}"
    );
    for (name, reason) in [
        ("looper", "timeout"),
        ("trapper", "trap"),
        ("hoarder", "memory"),
        ("burner", "fuel"),
    ] {
        let sample =
            format!("logistis_plugin_failures_total{{plugin=\"{name}\",reason=\"{reason}\"}}");
        assert_eq!(server.metric(&sample).await.unwrap(), 3.0, "{sample}");
    }
    let log = server.log();
    assert!(
        log.contains("predicate failed") && log.contains("looper"),
        "{log}"
    );
}

/// A tiny HTTP/1.1 receiver: records each POST body, answers 503 while `down`.
pub struct Receiver {
    pub port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
    pub attempts: Arc<std::sync::atomic::AtomicU64>,
    pub down: Arc<AtomicBool>,
}

impl Receiver {
    pub async fn start(down: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(down));
        let (b, a, d) = (bodies.clone(), attempts.clone(), down.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (bodies, attempts, down) = (b.clone(), a.clone(), d.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (header_end, length) = loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                            break (end + 4, length);
                        }
                    };
                    while buffer.len() < header_end + length {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                    }
                    attempts.fetch_add(1, Ordering::SeqCst);
                    let status = if down.load(Ordering::SeqCst) {
                        "503 Service Unavailable"
                    } else {
                        let body: Value =
                            serde_json::from_slice(&buffer[header_end..header_end + length])
                                .unwrap();
                        bodies.lock().await.push(body);
                        "200 OK"
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Receiver {
            port,
            bodies,
            attempts,
            down,
        }
    }

    pub async fn delivered_uids(&self) -> Vec<String> {
        let bodies = self.bodies.lock().await;
        bodies
            .iter()
            .flat_map(|body| body["events"].as_array().unwrap().clone())
            .map(|event| event["uid"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Poll `check` every 50 ms for up to 60 s: waiting on a condition, not sleeping a guess.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// [`eventually`], and on a timeout the server's log in the message: a wait that fails once
/// in many full-suite runs must say what the server was doing.
pub(crate) async fn eventually_logged<F, Fut>(what: &str, server: &Server, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = std::panic::AssertUnwindSafe(eventually(what, check));
    if let Err(panic) = futures::FutureExt::catch_unwind(waited).await {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| format!("timed out waiting for: {what}"));
        panic!(
            "{message}\nthe server's log, last lines:\n{}",
            tail.join("\n")
        );
    }
}

#[tokio::test]
async fn webhook_sink_retries_until_delivered_and_refuses_unlisted_hosts() {
    let receiver = Receiver::start(true).await;
    let forbidden = Receiver::start(false).await;
    let yaml = format!(
        r#"
sinks:
  - name: audit
    file: webhook.wasm
    allowed-hosts: ["127.0.0.1:{port}"]
    batch: 2
    config: {{url: "http://127.0.0.1:{port}/hook", headers: {{X-Token: secret}}, objects: false}}
  - name: sneaky
    file: webhook.wasm
    allowed-hosts: ["audit.example.com"]
    config: {{url: "http://127.0.0.1:{forbidden}/steal"}}
"#,
        port = receiver.port,
        forbidden = forbidden.port
    );
    let dir = plugins_dir(
        &yaml,
        &[("webhook.wasm", &rust_plugin("logistis-plugin-sink-webhook"))],
    );
    let server = start_with(dir.path());
    for uid in ["one", "two", "three"] {
        server.admit(&review(uid, "shop", "alice")).await.unwrap();
    }
    // The receiver is down: the sink fails and retries; nothing is lost meanwhile.
    eventually("two failed attempts", || async {
        receiver.attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    let status = server.get_ok("/api/v1/plugins").await.unwrap();
    let audit = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "audit")
        .unwrap();
    assert_eq!(audit["status"], "retrying", "{status}");
    assert!(audit["error"].as_str().unwrap().contains("503"), "{status}");

    receiver.down.store(false, Ordering::SeqCst);
    eventually_logged("all three delivered", &server, || async {
        receiver.delivered_uids().await.len() >= 3
    })
    .await;
    assert_eq!(receiver.delivered_uids().await, ["one", "two", "three"]);
    let bodies = receiver.bodies.lock().await.clone();
    // batch: 2 → two deliveries, in log order, in the query API's event shape.
    assert_eq!(bodies.len(), 2);
    let first = &bodies[0]["events"][0];
    assert_eq!(first["operation"], "CREATE");
    assert_eq!(first["resource"]["kind"], "Deployment");
    assert_eq!(first["resource"]["namespace"], "shop");
    assert_eq!(first["user"]["username"], "alice");
    assert_eq!(first["patch"][0]["op"], "add");
    assert!(first.get("object").is_none(), "objects: false");
    let ids: Vec<&str> = bodies
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap())
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);

    eventually("the failures and the lag are in /metrics", || async {
        server
            .metric("logistis_sink_failures_total{plugin=\"audit\"}")
            .await
            .unwrap()
            >= 2.0
            && server
                .metric("logistis_sink_delivered_events_total{plugin=\"audit\"}")
                .await
                .unwrap()
                == 3.0
    })
    .await;

    // The sink whose destination is not on its allow-list never reaches it.
    eventually("the sneaky sink was refused", || async {
        let status = server.get_ok("/api/v1/plugins").await.unwrap();
        let sneaky = status["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "sneaky")
            .unwrap()
            .clone();
        let refused = sneaky["error"]
            .as_str()
            .is_some_and(|e| e.contains("HttpRequestDenied"));
        if !refused {
            eprintln!("sneaky: {sneaky}");
        }
        refused
    })
    .await;
    assert_eq!(forbidden.attempts.load(Ordering::SeqCst), 0);
    assert!(server.log().contains("not on its allow-list"));
}

#[tokio::test]
async fn sink_resumes_from_its_cursor_after_a_restart() {
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
        &[("webhook.wasm", &rust_plugin("logistis-plugin-sink-webhook"))],
    );
    let data = tempfile::tempdir().unwrap();
    let start = || {
        with_plugins(dir.path())
            .data_dir(&data.path().join("data"))
            .start()
            .unwrap()
    };
    let mut server = start();
    server
        .admit(&review("before", "shop", "alice"))
        .await
        .unwrap();
    eventually("the first event delivered", || async {
        receiver.delivered_uids().await.len() == 1
    })
    .await;
    server.terminate().unwrap();
    // Down: while the server is stopped, the receiver goes down too; the restarted server
    // must deliver only what is new, once the receiver is back.
    receiver.down.store(true, Ordering::SeqCst);
    let server = start();
    server
        .admit(&review("after", "shop", "alice"))
        .await
        .unwrap();
    eventually("a failed attempt", || async {
        receiver.attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    receiver.down.store(false, Ordering::SeqCst);
    eventually("the second event delivered", || async {
        receiver.delivered_uids().await.len() == 2
    })
    .await;
    assert_eq!(receiver.delivered_uids().await, ["before", "after"]);
}

#[tokio::test]
async fn python_and_javascript_predicates_run_against_the_same_wit() {
    let yaml = r#"
predicates:
  - name: python
    file: python.wasm
    deadline-ms: 50
    memory-mb: 128
    config: {annotation: "logistis.io/ignore"}
  - name: javascript
    file: js.wasm
    deadline-ms: 50
    memory-mb: 128
    config: {fieldManagers: ["noisy-operator"]}
"#;
    let dir = plugins_dir(
        yaml,
        &[("python.wasm", &python_plugin()), ("js.wasm", &js_plugin())],
    );
    let server = start_with(dir.path());
    let mut ignored = review("annotated", "shop", "alice");
    ignored["request"]["object"]["metadata"]["annotations"] = json!({"logistis.io/ignore": "true"});
    server.admit(&ignored).await.unwrap();
    let mut noisy = review("noisy", "shop", "alice");
    noisy["request"]["options"] = json!({"fieldManager": "noisy-operator"});
    server.admit(&noisy).await.unwrap();
    server
        .admit(&review("plain", "shop", "alice"))
        .await
        .unwrap();
    assert_eq!(
        stored_uids(&server, None).await,
        set(&["plain"]),
        "log: {}",
        server.log()
    );
    let log = server.log();
    // Both guests log through the host, prefixed with their plugin name.
    assert!(
        log.contains("python") && log.contains("configured"),
        "{log}"
    );
}

/// The server's JSON log lines written by plugin `name` (through the host's `log` import).
fn plugin_log_lines(server: &Server, name: &str) -> Vec<String> {
    server
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "logistis::plugin" && line["plugin"] == name)
        .filter_map(|line| line["message"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn log_and_slack_sinks_deliver_every_event() {
    let slack = Receiver::start(false).await;
    let yaml = format!(
        r#"
sinks:
  - name: audit-log
    file: log.wasm
  - name: slack
    file: slack.wasm
    allowed-hosts: ["127.0.0.1:{port}"]
    config: {{url: "http://127.0.0.1:{port}/services/T0/B0/X", max-paths: 1}}
"#,
        port = slack.port
    );
    let dir = plugins_dir(
        &yaml,
        &[
            ("log.wasm", &rust_plugin("logistis-plugin-sink-log")),
            ("slack.wasm", &rust_plugin("logistis-plugin-sink-slack")),
        ],
    );
    let server = with_plugins(dir.path())
        .args(["--log-format", "json"])
        .start()
        .unwrap();
    server
        .admit(&review("logged", "shop", "alice@example.com"))
        .await
        .unwrap();
    let update = own_review("update-deployment-image.json");
    server.admit(&update).await.unwrap();
    let update_uid = update["request"]["uid"].as_str().unwrap();

    // log: one JSON line per event, in log order, without the objects (the default).
    eventually("two log lines", || async {
        plugin_log_lines(&server, "audit-log").len() >= 2
    })
    .await;
    let lines: Vec<Value> = plugin_log_lines(&server, "audit-log")
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["uid"], "logged");
    assert_eq!(lines[0]["operation"], "CREATE");
    assert_eq!(lines[0]["user"]["username"], "alice@example.com");
    assert_eq!(lines[1]["uid"], update_uid);
    assert_eq!(lines[1]["resource"]["name"], "web");
    assert!(lines[0]["id"].as_str().unwrap() < lines[1]["id"].as_str().unwrap());
    assert!(
        lines[1].get("object").is_none(),
        "objects: false by default"
    );

    // slack: who, what, where and the changed paths, one line per change.
    let texts = || async {
        let bodies = slack.bodies.lock().await;
        bodies
            .iter()
            .map(|body| body["text"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    eventually("both changes posted to slack", || async {
        texts().await.lines().count() >= 2
    })
    .await;
    let text = texts().await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "*alice@example.com* CREATE `Deployment.apps/logged` in `shop`: (whole object)"
    );
    assert!(
        lines[1].starts_with(
            "*system:serviceaccount:ci:deployer* UPDATE `Deployment.apps/web` in `shop`: /spec/template/spec/containers/0/image"
        ),
        "{text}"
    );
    assert_eq!(lines.len(), 2, "{text}");
    eventually("both counted as delivered", || async {
        server
            .metric("logistis_sink_delivered_events_total{plugin=\"slack\"}")
            .await
            .unwrap()
            == 2.0
            && server
                .metric("logistis_sink_delivered_events_total{plugin=\"audit-log\"}")
                .await
                .unwrap()
                == 2.0
    })
    .await;
}

/// The Python and JavaScript predicates' own native tests (their logic, no WebAssembly):
/// `python3 -m unittest` and `node --test`, the toolchains the plugin build needs anyway.
#[test]
fn python_and_javascript_logic_pass_their_native_tests() {
    let root = repo_root();
    for (dir, program, args) in [
        (
            "plugins/predicate-python",
            "python3",
            &["-m", "unittest", "-v", "test_app"][..],
        ),
        (
            "plugins/predicate-js",
            "node",
            &["--test", "test_app.mjs"][..],
        ),
    ] {
        let output = std::process::Command::new(program)
            .args(args)
            .current_dir(root.join(dir))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}); run scripts/plugin-toolchains.sh")
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{dir}: {program} failed:\n{text}");
        // Each runner names its passing tests: at least one ran.
        assert!(text.contains("ok"), "{dir}: no test ran:\n{text}");
    }
}

/// Write `contents` to `dir/name`; its path, as a string.
fn write_file(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `logistis ARGS`, which must succeed; its stdout and stderr.
fn logistis_ok(args: &[&str]) -> (String, String) {
    let output = run_logistis(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "logistis {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

#[test]
fn plugin_run_prints_a_predicates_verdict_and_a_sinks_request_without_sending_it() {
    let dir = tempfile::tempdir().unwrap();
    let users = rust_plugin("logistis-plugin-users");
    let users = users.to_str().unwrap();
    let config = write_file(
        dir.path(),
        "users.yaml",
        "exclude: {users: [\"system:serviceaccount:*\"]}\n",
    );
    let by_alice = write_file(
        dir.path(),
        "alice.json",
        &review("by-alice", "shop", "alice@example.com").to_string(),
    );
    let by_robot = write_file(
        dir.path(),
        "robot.json",
        &own_review("update-deployment-image.json").to_string(),
    );
    for (review, verdict) in [(&by_alice, "capture"), (&by_robot, "skip")] {
        let (stdout, _) = logistis_ok(&[
            "plugin",
            "run",
            "--deadline-ms",
            "1000",
            "--plugin",
            users,
            "--config",
            &config,
            review,
        ]);
        let answer: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(
            answer,
            json!({"plugin": "logistis_plugin_users", "verdict": verdict})
        );
    }

    // A sink's request is printed, not sent: the host does not even exist.
    let webhook = rust_plugin("logistis-plugin-sink-webhook");
    let config = write_file(
        dir.path(),
        "hook.yaml",
        "url: http://audit.invalid/hook\nheaders: {X-Token: secret}\nobjects: false\n",
    );
    let (stdout, stderr) = logistis_ok(&[
        "plugin",
        "run",
        "--plugin",
        webhook.to_str().unwrap(),
        "--config",
        &config,
        &by_alice,
    ]);
    let (head, body) = stdout.split_once("\n\n").unwrap();
    let mut head = head.lines();
    assert_eq!(head.next(), Some("POST http://audit.invalid/hook"));
    let headers: BTreeSet<&str> = head.collect();
    assert!(headers.contains("x-token: secret"), "{stdout}");
    assert!(
        headers.contains("content-type: application/json"),
        "{stdout}"
    );
    let body: Value = serde_json::from_str(body.trim()).unwrap();
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["uid"], "by-alice");
    assert_eq!(events[0]["user"]["username"], "alice@example.com");
    assert!(events[0].get("object").is_none(), "objects: false");
    assert!(
        stderr.contains("delivered 1 event") && stderr.contains("not sent"),
        "{stderr}"
    );

    // The log sink delivers to the log (stderr), one JSON line, and says so.
    let log = rust_plugin("logistis-plugin-sink-log");
    let (stdout, stderr) = logistis_ok(&[
        "plugin",
        "run",
        "--plugin",
        log.to_str().unwrap(),
        &by_alice,
    ]);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("\"uid\":\"by-alice\"") && stderr.contains("logistis_plugin_sink_log"),
        "{stderr}"
    );
    assert!(
        stderr.contains("delivered 1 event") && stderr.contains("no HTTP request"),
        "{stderr}"
    );
}

#[test]
fn plugin_bench_prints_the_per_call_cost_of_predicates_and_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let review = write_file(
        dir.path(),
        "review.json",
        &review("bench", "shop", "alice").to_string(),
    );
    let config = write_file(dir.path(), "hook.yaml", "url: http://audit.invalid/hook\n");
    let figure = |stdout: &str, label: &str| -> f64 {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"));
        line.split_whitespace()
            .skip_while(|word| *word != "median")
            .nth(1)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no median in {line:?}"))
    };
    let users = rust_plugin("logistis-plugin-users");
    let (stdout, _) = logistis_ok(&[
        "plugin",
        "bench",
        "--iterations",
        "200",
        "--plugin",
        users.to_str().unwrap(),
        &review,
    ]);
    for label in ["per event", "call only", "fresh inst"] {
        assert!(figure(&stdout, label) > 0.0, "{stdout}");
    }
    assert!(stdout.contains("(200 calls)"), "{stdout}");

    let webhook = rust_plugin("logistis-plugin-sink-webhook");
    let (stdout, _) = logistis_ok(&[
        "plugin",
        "bench",
        "--iterations",
        "200",
        "--batch",
        "10",
        "--plugin",
        webhook.to_str().unwrap(),
        "--config",
        &config,
        &review,
    ]);
    for label in ["per batch", "per event", "fresh inst"] {
        assert!(figure(&stdout, label) > 0.0, "{stdout}");
    }
    assert!(
        stdout.contains("10 event(s) per delivery; HTTP requests captured, not sent"),
        "{stdout}"
    );
}
