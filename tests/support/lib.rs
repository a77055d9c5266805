//! Shared helpers for the end-to-end tests: start the real `logistis` binary on free ports
//! over real HTTPS (`--self-signed`), talk to it with a client that trusts its CA, and load
//! AdmissionReview fixtures — the real corpus from `../shared/fixtures` when it is there,
//! and the repository's own hand-written ones always.
//!
//! Child processes are killed when their [`Server`] is dropped, so a failing test never
//! leaves a server behind.

pub mod apiserver;
pub mod plugins;
pub mod postgres;

/// The cluster side of the Kubernetes API stand-in (objects, list, watch, reviews posted to
/// Logistis). It joins the shared core in `apiserver/` once that is in place.
#[path = "apiserver/cluster.rs"]
pub mod cluster;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The shared corpus (`../shared/fixtures` beside the clone), if present.
pub fn shared_fixtures() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/fixtures");
    dir.is_dir().then_some(dir)
}

/// The file `scripts/test.sh` collects skips in (one line each), to list them after the
/// test runner's summary, which would otherwise swallow them with the test's output.
pub const SKIPPED_LOG_ENV: &str = "LOGISTIS_SKIPPED_LOG";

/// Report that (part of) a test did not run, and why: on stderr, and in the skip log when
/// `scripts/test.sh` runs the suite.
pub fn skipped(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os(SKIPPED_LOG_ENV) {
        use std::io::Write;
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(log, "{test}: {reason}");
        }
    }
}

/// Say clearly that a corpus test had nothing to run on.
pub fn skip_without_corpus(test: &str) -> Option<PathBuf> {
    let dir = shared_fixtures();
    if dir.is_none() {
        skipped(
            test,
            "../shared/fixtures is not beside the repository (the real-payload corpus); the \
             hand-written fixtures still ran",
        );
    }
    dir
}

/// The repository's own fixtures.
pub fn own_fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// The target directory holding the binaries (`target/debug`), next to the test executable.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/debug/deps/e2e-hash → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps")
        .to_owned()
}

/// The path of a workspace binary, building its package once if it is missing or stale.
pub fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let path = target_dir().join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    if !built.iter().any(|b| b == bin) {
        // `cargo test` builds only this package's dependencies, not other packages' binaries:
        // build (or confirm up to date) the one we need. Cargo releases its lock while tests run.
        // With the whole workspace's features, as `scripts/test.sh` builds them: `-p {package}`
        // (or `--bin {bin}`) unifies features differently and rebuilds wasmtime from scratch.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet", "--workspace", "--bins"]);
        if target_dir().file_name().is_some_and(|p| p == "release") {
            command.arg("--release");
        }
        let status = command
            .current_dir(repo_root())
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {bin} ({package}): {e}"));
        assert!(
            status.success(),
            "building {bin} failed: see the cargo output above"
        );
        built.push(bin.to_owned());
    }
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Wrap a bare AdmissionRequest (the `request-only-*` fixtures) into a v1 AdmissionReview.
pub fn wrap_request(request: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// Load a fixture file as a full AdmissionReview.
pub fn load_review(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if value.get("request").is_some() {
        value
    } else {
        wrap_request(value)
    }
}

/// Every `*.json` review in a directory, by file name.
pub fn reviews_in(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, load_review(&path))
        })
        .collect()
}

/// A hand-written fixture from `tests/fixtures/admission/`.
pub fn own_review(name: &str) -> Value {
    load_review(&own_fixtures().join("admission").join(name))
}

/// A running `logistis serve`.
pub struct Server {
    child: Option<Child>,
    pub webhook_url: String,
    pub query_url: String,
    pub data_dir: PathBuf,
    pub ca_path: PathBuf,
    pub log_path: PathBuf,
    pub client: reqwest::Client,
    _owned_dir: Option<tempfile::TempDir>,
}

/// Options for starting a server.
#[derive(Default)]
pub struct ServerBuilder {
    args: Vec<String>,
    data_dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    own_tls: bool,
}

impl ServerBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Start without `--self-signed`: the arguments choose the certificate (e.g.
    /// `--manage-certs`). [`Server::client`] then trusts no CA; the test builds its own.
    pub fn own_tls(mut self) -> Self {
        self.own_tls = true;
        self
    }

    /// Use this data dir (kept after the server stops, for restart tests).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    pub fn start(self) -> Result<Server> {
        let (owned, data_dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let dir = tempfile::tempdir()?;
                let path = dir.path().join("data");
                (Some(dir), path)
            }
        };
        std::fs::create_dir_all(&data_dir)?;
        let log_path = data_dir.with_extension(format!("log.{}", std::process::id()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut command = Command::new(cargo_bin("logistis", "logistis"));
        command.arg("serve");
        if !self
            .args
            .iter()
            .any(|a| a == "--store" || a.starts_with("--store="))
            && let Some(url) = postgres::store_for(&data_dir)
        {
            command.arg("--store").arg(url);
        }
        if !self.own_tls {
            command.arg("--self-signed");
        }
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "--webhook-listen",
                "127.0.0.1:0",
                "--query-listen",
                "127.0.0.1:0",
            ])
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("LOGISTIS_TEST_LOG")
                    .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
            )
            .envs(self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().context("cannot start logistis")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut webhook_url = None;
        let mut query_url = None;
        let mut ca_path = data_dir.join("tls/ca.crt");
        while webhook_url.is_none() || query_url.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    bail!("logistis did not announce its listeners; its log:\n{log}");
                }
            };
            if let Some(url) = line.strip_prefix("webhook: ") {
                webhook_url = Some(url.to_owned());
            } else if let Some(url) = line.strip_prefix("query: ") {
                query_url = Some(url.to_owned());
            } else if let Some(path) = line.strip_prefix("ca: ") {
                ca_path = PathBuf::from(path);
            }
        }
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if !self.own_tls {
            let ca = std::fs::read(&ca_path)
                .with_context(|| format!("reading {}", ca_path.display()))?;
            client = client.add_root_certificate(reqwest::Certificate::from_pem(&ca)?);
        }
        let client = client.build()?;
        Ok(Server {
            child: Some(child),
            webhook_url: webhook_url.unwrap(),
            query_url: query_url.unwrap(),
            data_dir,
            ca_path,
            log_path,
            client,
            _owned_dir: owned,
        })
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// A server with default settings on a fresh data dir.
    pub fn start() -> Result<Server> {
        ServerBuilder::default().start()
    }

    /// POST a review (any JSON) to `/validate`.
    pub async fn post_review(&self, review: &Value) -> Result<reqwest::Response> {
        Ok(self
            .client
            .post(&self.webhook_url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(review)?)
            .send()
            .await?)
    }

    /// POST a review and insist on `allowed: true` for its uid; returns the answer.
    pub async fn admit(&self, review: &Value) -> Result<Value> {
        let response = self.post_review(review).await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status != 200 || body["response"]["allowed"] != true {
            bail!("review not allowed ({status}): {body}");
        }
        let uid = review["request"]["uid"].as_str().unwrap_or("");
        if body["response"]["uid"] != uid {
            bail!(
                "answer carries uid {} instead of {uid}",
                body["response"]["uid"]
            );
        }
        Ok(body)
    }

    /// GET a query path (e.g. `/api/v1/events?kind=Pod`), returning status and JSON body.
    pub async fn get(&self, path_and_query: &str) -> Result<(u16, Value)> {
        let response = self
            .client
            .get(format!("{}{path_and_query}", self.query_url))
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// GET that must succeed with 200.
    pub async fn get_ok(&self, path_and_query: &str) -> Result<Value> {
        let (status, body) = self.get(path_and_query).await?;
        if status != 200 {
            bail!("GET {path_and_query}: {status} {body}");
        }
        Ok(body)
    }

    /// GET a path until `done` holds for its answer (retention and sinks work beside the
    /// writer); returns the last answer. Bounded: 10 s, then the caller's assertions speak.
    pub async fn get_until(
        &self,
        path_and_query: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self.get_ok(path_and_query).await?;
            if done(&answer) || std::time::Instant::now() >= deadline {
                return Ok(answer);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Six UPDATEs of `shop/web` (uids `ret-0`..`ret-5`, replicas 10..15), for retention tests.
    pub async fn admit_six_updates(&self) -> Result<()> {
        let base = own_review("update-deployment-replicas.json");
        for n in 0..6 {
            let mut review = with_uid(&base, &format!("ret-{n}"));
            review["request"]["object"]["spec"]["replicas"] = json!(10 + n);
            self.admit(&review).await?;
        }
        Ok(())
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .client
            .get(format!("{}/metrics", self.query_url))
            .send()
            .await?
            .text()
            .await?)
    }

    /// The value of one metric sample line (`name{labels}`), or 0 when absent.
    pub async fn metric(&self, sample: &str) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .find_map(|line| {
                line.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Send a signal with the system `kill` (no unsafe code here), then reap the process.
    fn signal_and_wait(&mut self, signal: &str) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("server already stopped")?;
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} failed");
        }
        Ok(child.wait()?)
    }

    /// SIGTERM: graceful shutdown; returns the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        self.signal_and_wait("-TERM")
    }

    /// SIGKILL: the process dies on the spot (no flush, no goodbye).
    pub fn kill9(&mut self) -> Result<()> {
        self.signal_and_wait("-KILL").map(drop)
    }

    /// The server's log so far (for assertions and failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Run `logistis` with arguments and capture its output (for flag validation tests).
pub fn run_logistis(args: &[&str]) -> std::process::Output {
    Command::new(cargo_bin("logistis", "logistis"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("logistis runs")
}

/// Give a review a fresh uid (and optionally a new object name), for load and history tests.
pub fn with_uid(review: &Value, uid: &str) -> Value {
    let mut review = review.clone();
    review["request"]["uid"] = json!(uid);
    review
}

/// Posts the `logistis demo` history to `server` (the real command), insisting on success.
pub fn post_demo(server: &Server) {
    let output = Command::new(cargo_bin("logistis", "logistis"))
        .args([
            "demo",
            "--webhook",
            &server.webhook_url,
            "--certificate-authority",
        ])
        .arg(&server.ca_path)
        .stdin(Stdio::null())
        .output()
        .expect("logistis demo runs");
    assert!(
        output.status.success(),
        "logistis demo failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
