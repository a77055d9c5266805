//! `logistis-loadgen`: replays a mix of real AdmissionReviews over HTTPS against the real
//! `logistis` binary, with N concurrent connections, and prints reviews/s and p50/p99/p999
//! latency for three modes in one run:
//! - `bare`: the server only parses and answers (`--answer-only`), the ceiling;
//! - `async`: full pipeline, answered once written to the OS;
//! - `sync`: full pipeline, answered once fsynced (group commit) — the default.
//!
//! And on request (`--modes bare,discard,async,sync`), `discard`: the full pipeline up to
//! the store writer, which answers without writing (`--discard-events`) — what is left of
//! the gap between bare and sync is the store's own cost. `postgres` (with `--postgres
//! ADMIN_URL`): sync mode on a fresh PostgreSQL database (created with `psql`), beside fjall
//! in the same run. Recording modes also print the bytes per stored event: the store
//! directory (journals included) for fjall, the database's growth for PostgreSQL.
//!
//! With `--rate N` the load is open-loop instead: reviews are sent at N per second whatever
//! the answers do, and each latency is measured from the moment the review was *due*, not
//! from when it went out, so a server that stalls is charged for every review it delayed
//! (no coordinated omission).
//!
//! A mode may carry arguments for its own server (`sync:--max-versions-per-object=0`), and
//! `--rounds N` runs the modes N times taking turns, then prints each mode's median and range
//! and its CPU per review over `bare`'s of the same round (see `rounds`).
//!
//! Each review gets a unique uid, so none is deduplicated. The client runs on the same
//! machine as the server: figures are for the pair, which is what one node can sustain. The
//! server CPU time per review (from `/proc`) is also printed: it depends much less on what
//! else the machine is doing than the throughput does.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::Value;

mod rounds;
use rounds::{Mode, Rounds, Row};

/// Load generator for the Logistis webhook.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The logistis binary [default: next to this one]
    #[arg(long, env = "LOGISTIS_BIN")]
    logistis: Option<PathBuf>,
    /// Concurrent connections
    #[arg(long, short = 'c', default_value_t = 16)]
    connections: usize,
    /// Measured time per mode (after a 1 s warm-up)
    #[arg(long, short = 'd', default_value = "10s", value_parser = humantime_duration)]
    duration: Duration,
    /// Directory of AdmissionReviews (`*.json`, bare requests are wrapped)
    /// [default: ../shared/fixtures/admission if present, else tests/fixtures/admission]
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Modes to run, in order: bare, async, sync, and discard (everything but the store write);
    /// `MODE:ARGS` adds server arguments for that mode alone, e.g. sync:--store-memory=256Mi
    #[arg(long, value_delimiter = ',', default_value = "bare,async,sync")]
    modes: Vec<String>,
    /// Run the modes this many times, taking turns, and summarise: medians, ranges, and CPU
    /// per review over bare's of the same round
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Open-loop: send this many reviews per second (latency from the intended send time)
    /// instead of keeping --connections busy
    #[arg(long, value_name = "N")]
    rate: Option<u32>,
    /// Speak HTTP/2 (negotiated by ALPN), as kube-apiserver does with webhooks: requests
    /// share connections instead of opening one per concurrent request
    #[arg(long)]
    http2: bool,
    /// PostgreSQL admin URL for the `postgres` mode: each run creates a fresh database there
    #[arg(long, env = "LOGISTIS_LOADGEN_POSTGRES", value_name = "URL")]
    postgres: Option<String>,
    /// Extra argument for every `logistis serve` (repeat it), e.g. --server-arg=--max-versions-per-object=0
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration {text:?}: use e.g. 500ms, 10s, 1m")),
    }
}

/// A review split around its uid, so each request is two copies and a number.
struct Template {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl Template {
    /// The body of request `n`: this review with the uid `loadgen-{n}`.
    fn body(&self, n: u64) -> Vec<u8> {
        let uid = format!("loadgen-{n}");
        let mut body = Vec::with_capacity(self.prefix.len() + uid.len() + self.suffix.len());
        body.extend_from_slice(&self.prefix);
        body.extend_from_slice(uid.as_bytes());
        body.extend_from_slice(&self.suffix);
        body
    }
}

const UID_MARK: &str = "LOGISTIS-LOADGEN-UID";

fn templates(dir: &Path) -> Result<Vec<Template>> {
    let mut templates = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let mut review: Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        if review.get("request").is_none() {
            review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": review});
        }
        review["request"]["uid"] = Value::String(UID_MARK.into());
        let text = serde_json::to_string(&review)?;
        let (prefix, suffix) = text.split_once(UID_MARK).expect("the mark is in the text");
        templates.push(Template {
            prefix: prefix.as_bytes().to_vec(),
            suffix: suffix.as_bytes().to_vec(),
        });
    }
    if templates.is_empty() {
        bail!("no reviews in {}", dir.display());
    }
    Ok(templates)
}

struct Running {
    child: Child,
    url: String,
    query: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    /// The `postgres` mode's database and its size when the server had started.
    database: Option<(String, u64)>,
}

/// Run one SQL statement with `psql` and return its one value.
fn psql(url: &str, sql: &str) -> Result<String> {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .context("running psql (the postgres mode needs PostgreSQL's client)")?;
    if !output.status.success() {
        bail!("{sql}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn database_size(url: &str) -> Result<u64> {
    psql(url, "SELECT pg_database_size(current_database())")?
        .parse()
        .context("pg_database_size")
}

/// Bytes of a directory tree.
fn tree_size(path: &Path) -> u64 {
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| match entry.metadata() {
                Ok(meta) if meta.is_dir() => tree_size(&entry.path()),
                Ok(meta) => meta.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `idle_connections`: how many open connections the client keeps between requests.
fn start(
    binary: &Path,
    mode: &str,
    idle_connections: usize,
    extra: &[String],
    postgres: Option<&str>,
    http2: bool,
) -> Result<Running> {
    let dir = tempfile::tempdir()?;
    let mut database = None;
    let mut command = Command::new(binary);
    command
        .args([
            "serve",
            "--self-signed",
            "--webhook-listen",
            "127.0.0.1:0",
            "--query-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    match mode {
        "bare" => command.arg("--answer-only"),
        "async" => command.args(["--durability", "async"]),
        "sync" => command.args(["--durability", "sync"]),
        "discard" => command.arg("--discard-events"),
        "postgres" => {
            let Some(admin) = postgres else {
                bail!("the postgres mode needs --postgres ADMIN_URL");
            };
            let name = format!("logistis_loadgen_{}_{}", std::process::id(), rand_suffix());
            psql(admin, &format!("CREATE DATABASE {name}"))?;
            let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
            let url = format!("{base}/{name}");
            database = Some(url.clone());
            command.args(["--durability", "sync", "--store", &url])
        }
        other => bail!("unknown mode {other:?} ({})", rounds::KINDS.join(", ")),
    };
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut url = None;
    let mut query = None;
    let mut ca = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("webhook: ") {
            url = Some(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("ca: ") {
            ca = Some(PathBuf::from(rest));
        } else if let Some(rest) = line.strip_prefix("query: ") {
            query = Some(rest.to_owned());
            break;
        }
    }
    let (Some(url), Some(query), Some(ca)) = (url, query, ca) else {
        bail!("logistis did not announce its listeners");
    };
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?)
        .pool_max_idle_per_host(idle_connections);
    let client = if http2 { client } else { client.http1_only() }.build()?;
    let database = match database {
        Some(url) => {
            let size = database_size(&url)?;
            Some((url, size))
        }
        None => None,
    };
    Ok(Running {
        child,
        url,
        query,
        client,
        dir,
        database,
    })
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

struct Figures {
    /// CPU time of the database's backend processes serving this run, per review, in µs.
    database_cpu_us: Option<f64>,
    /// Stored bytes per recorded event (recording modes).
    bytes_per_event: Option<f64>,
    reviews_per_second: f64,
    /// Server CPU time (user + system) per answered review, in µs.
    server_cpu_us: f64,
    /// Events per group commit (one write batch, one fsync in sync mode), warm-up included.
    events_per_commit: Option<f64>,
    p50: u64,
    p99: u64,
    p999: u64,
    errors: u64,
}

async fn drive(
    running: &Running,
    templates: Arc<Vec<Template>>,
    connections: usize,
    duration: Duration,
) -> Result<Figures> {
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let warm_up = Duration::from_secs(1);
    let start = Instant::now();
    for _ in 0..connections {
        let client = running.client.clone();
        let url = running.url.clone();
        let templates = templates.clone();
        let counter = counter.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            loop {
                let elapsed = start.elapsed();
                if elapsed >= warm_up + duration {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let template = &templates[n as usize % templates.len()];
                let body = template.body(n);
                let sent = Instant::now();
                let ok = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if elapsed < warm_up {
                    continue;
                }
                if ok {
                    histogram.record(sent.elapsed().as_micros() as u64).ok();
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            histogram
        }));
    }
    let pid = running.child.id();
    let database = running.database.as_ref().map(|(url, _)| url.clone());
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep(warm_up).await;
        let database_cpu = database.as_deref().map(backend_cpu);
        cpu_time(pid).map(|cpu| (cpu, database_cpu))
    });
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for task in tasks {
        total.add(task.await?)?;
    }
    let (cpu_start, database_start) = cpu_at_start.await??;
    let cpu = cpu_time(pid)?.saturating_sub(cpu_start);
    let database_cpu_us = match (&running.database, database_start) {
        (Some((url, _)), Some(start)) => {
            let end = backend_cpu(url);
            let spent: Duration = end
                .iter()
                .map(|(pid, cpu)| cpu.saturating_sub(start.get(pid).copied().unwrap_or_default()))
                .sum();
            Some(spent.as_secs_f64() * 1e6 / total.len().max(1) as f64)
        }
        _ => None,
    };
    let events_per_commit = events_per_commit(running).await;
    let bytes_per_event = bytes_per_event(running).await;
    Ok(Figures {
        database_cpu_us,
        bytes_per_event,
        events_per_commit,
        reviews_per_second: total.len() as f64 / duration.as_secs_f64(),
        server_cpu_us: cpu.as_secs_f64() * 1e6 / total.len().max(1) as f64,
        p50: total.value_at_quantile(0.50),
        p99: total.value_at_quantile(0.99),
        p999: total.value_at_quantile(0.999),
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Open-loop load: `rate` reviews per second for `duration` (after a 1 s warm-up), each
/// timed from its intended send time.
///
/// The reviews are paced by a thread of their own sleeping until each one is due
/// (`nanosleep`: tens of µs late at most, where the runtime's timer wheel rounds up to the
/// next millisecond and would add up to 1 ms to every latency), which hands each review to
/// the runtime to send. Connections opened for a burst stay in the pool (see `start`), so a
/// burst does not leave a TLS handshake behind for every review of the next one.
async fn drive_open(
    running: &Running,
    templates: Arc<Vec<Template>>,
    rate: u32,
    duration: Duration,
) -> Result<Figures> {
    let warm_up = Duration::from_secs(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = ((warm_up + duration).as_secs_f64() * f64::from(rate)) as u64;
    let errors = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(std::sync::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let pid = running.child.id();
    let runtime = tokio::runtime::Handle::current();
    let client = running.client.clone();
    let url = running.url.clone();
    let pacer = {
        let errors = errors.clone();
        let histogram = histogram.clone();
        std::thread::Builder::new()
            .name("loadgen-pacer".into())
            .spawn(move || -> Result<_> {
                let start = Instant::now();
                let measured_from = start + warm_up;
                let mut cpu_at_start = None;
                let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
                for n in 0..total {
                    let intended = start + interval * u32::try_from(n).unwrap_or(u32::MAX);
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    if cpu_at_start.is_none() && intended >= measured_from {
                        cpu_at_start = Some(cpu_time(pid)?);
                    }
                    let template = &templates[n as usize % templates.len()];
                    let body = template.body(n);
                    let request = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body);
                    let errors = errors.clone();
                    let histogram = histogram.clone();
                    tasks.push(runtime.spawn(async move {
                        let ok = match request.send().await {
                            Ok(response) => {
                                response.status().is_success() && response.bytes().await.is_ok()
                            }
                            Err(_) => false,
                        };
                        if intended < measured_from {
                            return;
                        }
                        if ok {
                            let latency = intended.elapsed().as_micros() as u64;
                            histogram
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .record(latency)
                                .ok();
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                Ok((tasks, cpu_at_start))
            })?
    };
    let (tasks, cpu_at_start) = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))??;
    for task in tasks {
        task.await?;
    }
    let cpu = cpu_time(pid)?.saturating_sub(cpu_at_start.unwrap_or_default());
    let events_per_commit = events_per_commit(running).await;
    let bytes_per_event = bytes_per_event(running).await;
    let total = histogram.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Figures {
        // The open loop does not sample the database's processes.
        database_cpu_us: None,
        bytes_per_event,
        events_per_commit,
        reviews_per_second: total.len() as f64 / duration.as_secs_f64(),
        server_cpu_us: cpu.as_secs_f64() * 1e6 / total.len().max(1) as f64,
        p50: total.value_at_quantile(0.50),
        p99: total.value_at_quantile(0.99),
        p999: total.value_at_quantile(0.999),
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Stored bytes divided by recorded events: the store directory (fjall: tables and journals),
/// or what the database grew by since the server started (PostgreSQL: tables and indexes).
async fn bytes_per_event(running: &Running) -> Option<f64> {
    let recorded = metric(
        running,
        "logistis_admission_reviews_total{outcome=\"recorded\"}",
    )
    .await?;
    if recorded < 1.0 {
        return None;
    }
    let bytes = match &running.database {
        Some((url, at_start)) => database_size(url).ok()?.saturating_sub(*at_start),
        None => tree_size(&running.dir.path().join("data/store")),
    };
    Some(bytes as f64 / recorded)
}

/// One sample of the server's `/metrics`.
async fn metric(running: &Running, prefix: &str) -> Option<f64> {
    let text = running
        .client
        .get(format!("{}/metrics", running.query))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Recorded events divided by group commits, from the server's `/metrics`.
async fn events_per_commit(running: &Running) -> Option<f64> {
    let text = running
        .client
        .get(format!("{}/metrics", running.query))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |prefix: &str| -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let recorded = value("logistis_admission_reviews_total{outcome=\"recorded\"}")?;
    let commits = value("logistis_store_write_batches_total ")?;
    (commits > 0.0).then(|| recorded / commits)
}

/// CPU time so far of each PostgreSQL backend connected to the run's database (on this
/// machine: the loadgen reads their `/proc`).
fn backend_cpu(url: &str) -> std::collections::HashMap<u32, Duration> {
    psql(
        url,
        "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .unwrap_or_default()
    .split_whitespace()
    .filter_map(|pid| pid.parse().ok())
    .filter_map(|pid| cpu_time(pid).ok().map(|cpu| (pid, cpu)))
    .collect()
}

/// Resident memory of a process now and at its peak, in bytes (`VmRSS`, `VmHWM`).
fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User plus system CPU time of a process so far, from `/proc/PID/stat` (Linux).
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading the CPU time of process {pid}"))?;
    // The command name (field 2) may contain spaces: count fields after its closing ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let total = ticks(11)? + ticks(12)?;
    // USER_HZ is 100 on every Linux architecture that matters here.
    Ok(Duration::from_millis(total * 10))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let fixtures = args.fixtures.clone().unwrap_or_else(|| {
        let shared = root.join("../shared/fixtures/admission");
        if shared.is_dir() {
            shared
        } else {
            root.join("tests/fixtures/admission")
        }
    });
    let binary = match &args.logistis {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("logistis"),
    };
    if !binary.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p logistis) or pass --logistis",
            binary.display()
        );
    }
    let modes = args
        .modes
        .iter()
        .map(|spec| Mode::parse(spec))
        .collect::<Result<Vec<_>>>()?;
    // The mode column fits the longest label (a mode with server arguments is long).
    let width = modes
        .iter()
        .map(|m| m.label.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let templates = Arc::new(templates(&fixtures)?);
    let load = match args.rate {
        Some(rate) => format!("open loop at {rate} reviews/s"),
        None => format!("{} connections", args.connections),
    };
    println!(
        "logistis-loadgen: {} reviews from {}, {load}, {:?} per mode, {} cores",
        templates.len(),
        fixtures.display(),
        args.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<width$} {:>12} {:>10} {:>10} {:>10} {:>8} {:>14} {:>14} {:>12}",
        "mode",
        "reviews/s",
        "p50 µs",
        "p99 µs",
        "p999 µs",
        "errors",
        "server CPU µs",
        "events/commit",
        "bytes/event"
    );
    let mut rounds = Rounds::new(modes.iter().map(|m| m.label.clone()).collect());
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            println!("round {round} of {}", args.rounds);
        }
        let mut rows = Vec::with_capacity(modes.len());
        for mode in &modes {
            let figures = run_mode(&args, &binary, &templates, mode, width).await?;
            rows.push(Some(Row {
                reviews_per_second: figures.reviews_per_second,
                p99_us: figures.p99,
                server_cpu_us: figures.server_cpu_us,
            }));
        }
        rounds.rounds.push(rows);
    }
    let summary = rounds.summary();
    if args.rounds > 1 {
        println!(
            "summary of {} rounds (median, and the range in brackets):",
            args.rounds
        );
        println!(
            "{:<width$} {:>26} {:>26} {:>26} {:>24}",
            "mode", "reviews/s", "p99 µs", "server CPU µs", "CPU × bare, per round"
        );
        for line in &summary {
            println!(
                "{:<width$} {:>26} {:>26} {:>26} {:>24}",
                line.label,
                rounds::show(line.reviews_per_second, 0),
                rounds::show(line.p99_us, 0),
                rounds::show(line.server_cpu_us, 1),
                line.cpu_over_bare
                    .map_or("-".to_owned(), |r| format!("{}×", rounds::show(r, 2)))
            );
        }
    } else {
        for line in summary.iter().filter(|l| l.cpu_over_bare.is_some()) {
            if let Some(ratio) = line.cpu_over_bare {
                println!(
                    "server CPU per review, {} / bare: {:.2}×",
                    line.label, ratio.median
                );
            }
        }
    }
    // Throughput ratios, of the medians: the default modes' comparisons.
    let rate = |name: &str| {
        summary
            .iter()
            .find(|l| l.label == name)
            .map(|l| l.reviews_per_second.median)
    };
    if let (Some(bare), Some(sync)) = (rate("bare"), rate("sync")) {
        println!("sync / bare throughput: {:.0} %", 100.0 * sync / bare);
    }
    if let (Some(sync), Some(postgres)) = (rate("sync"), rate("postgres")) {
        println!(
            "postgres / sync (fjall) throughput: {:.0} %",
            100.0 * postgres / sync
        );
    }
    if let (Some(bare), Some(asynchronous)) = (rate("bare"), rate("async")) {
        println!(
            "async / bare throughput: {:.0} %",
            100.0 * asynchronous / bare
        );
    }
    Ok(())
}

/// Start a server in `mode`, drive it, print its row (and its RSS), stop it.
async fn run_mode(
    args: &Args,
    binary: &Path,
    templates: &Arc<Vec<Template>>,
    mode: &Mode,
    width: usize,
) -> Result<Figures> {
    // The open loop keeps every connection a burst opened: with fewer, each burst
    // would close some and the next one would pay their TLS handshakes again.
    let idle_connections = match args.rate {
        Some(_) => usize::MAX,
        None => args.connections,
    };
    let server_args: Vec<String> = args
        .server_args
        .iter()
        .chain(&mode.server_args)
        .cloned()
        .collect();
    let running = start(
        binary,
        &mode.kind,
        idle_connections,
        &server_args,
        args.postgres.as_deref(),
        args.http2,
    )?;
    let mut figures = match args.rate {
        Some(rate) => drive_open(&running, templates.clone(), rate, args.duration).await?,
        None => drive(&running, templates.clone(), args.connections, args.duration).await?,
    };
    if mode.kind == "discard" {
        // Its events count as recorded but none is written: the store directory's size
        // over them would be the empty store's files, not a cost per event.
        figures.bytes_per_event = None;
    }
    let memory = rss(running.child.id());
    drop(running);
    println!(
        "{:<width$} {:>12.0} {:>10} {:>10} {:>10} {:>8} {:>14.1} {:>14} {:>12}",
        mode.label,
        figures.reviews_per_second,
        figures.p50,
        figures.p99,
        figures.p999,
        figures.errors,
        figures.server_cpu_us,
        figures
            .events_per_commit
            .map_or("-".to_owned(), |n| format!("{n:.1}")),
        figures
            .bytes_per_event
            .map_or("-".to_owned(), |n| format!("{n:.0}"))
    );
    if let Some((now, peak)) = memory {
        println!(
            "{:<width$} server RSS after the run: {:.1} MB (peak {:.1} MB)",
            "",
            now as f64 / 1e6,
            peak as f64 / 1e6
        );
    }
    if let Some(database) = figures.database_cpu_us {
        println!(
            "{:<width$} database CPU per review: {database:.1} µs (its backend processes)",
            ""
        );
    }
    Ok(figures)
}
