//! `logistis plugin run` and `logistis plugin bench`: a plugin outside the server.
//!
//! `run` replays an AdmissionReview through one plugin, with the same conversion and the
//! same runtime as the webhook, and prints the verdict (predicate) or what the sink
//! delivered: its HTTP requests are captured and printed rather than sent (unless
//! `--send`), its log lines go to stderr. `bench` prints the per-call cost on a reused
//! instance and on a fresh one; a sink is measured with its requests captured, so the
//! figure is the plugin's own cost, not its destination's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use logistis_api::Event;
use logistis_api::plugins::{OnError, PluginKind};
use wasmtime::component::Component;

use super::bindings::{self, CapturedRequests, predicate::Predicate, sink::Sink};
use super::engine::EpochClock;
use super::runtime::{self, Plugin};
use super::spec::{self, PluginSpec};
use crate::admission::{self, KindTable, Outcome, Policy, Redactor};

/// `logistis plugin ...`
#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Replay an AdmissionReview through a plugin; print its verdict or delivered payload
    Run(RunArgs),
    /// Measure a plugin's per-call cost on an AdmissionReview
    Bench(BenchArgs),
    /// Create a predicate plugin project (Rust, Python or JavaScript) that builds and runs
    New(super::scaffold::NewArgs),
}

#[derive(Debug, clap::Args)]
struct PluginOptions {
    /// The plugin component (.wasm)
    #[arg(long, value_name = "FILE.wasm")]
    plugin: PathBuf,
    /// The plugin's config (YAML or JSON: what goes under `config:` in plugins.yaml)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Per-call deadline in milliseconds [default: as in the server, 5 for predicates and
    /// 10000 for sinks; `bench`: 1000, calls are measured, not limited]
    #[arg(long, value_name = "MS")]
    deadline_ms: Option<u64>,
    /// Memory cap in MiB
    #[arg(long, value_name = "MB", default_value_t = spec::DEFAULT_MEMORY_MB)]
    memory_mb: u64,
    /// Hosts a sink may reach (host or host:port), as `allowed-hosts` in plugins.yaml
    #[arg(long = "allow-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// The AdmissionReview (JSON) to replay
    #[arg(value_name = "REVIEW.json")]
    review: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    options: PluginOptions,
    /// Sinks: really send the HTTP requests (by default they are printed, not sent)
    #[arg(long)]
    send: bool,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    #[command(flatten)]
    options: PluginOptions,
    /// Calls to measure (after 100 warm-up calls)
    #[arg(long, default_value_t = 10_000)]
    iterations: u32,
    /// Sinks: events per delivery (copies of the review's event)
    #[arg(long, default_value_t = 1)]
    batch: u32,
}

/// Run `logistis plugin ...`.
pub fn run(args: PluginArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Run(args) => run_once(args),
        Command::Bench(args) => bench(args),
        Command::New(args) => {
            let dir = super::scaffold::run(args)?;
            println!(
                "Created {}: see its README.md (test, `sh build.sh`, `logistis plugin run`).",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The plugin, loaded as whichever world it implements.
enum Loaded {
    Predicate(Plugin<Predicate>),
    Sink(Plugin<Sink>),
}

/// Load the plugin as a predicate, or else as a sink. With `capture`, a sink's requests
/// are recorded there instead of sent. Also returns the compile time and the epoch clock,
/// which must live as long as the plugin is called (deadlines are enforced as in the
/// server).
fn load(
    options: &PluginOptions,
    capture: Option<CapturedRequests>,
) -> anyhow::Result<(Loaded, Duration, EpochClock)> {
    let engine = super::engine::build(None)?;
    let budget = std::sync::Arc::new(super::budget::MemoryBudget::unlimited());
    let clock = EpochClock::start(&engine)?;
    let bytes = std::fs::read(&options.plugin)
        .with_context(|| format!("reading {}", options.plugin.display()))?;
    let config_json = match &options.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let value: serde_yaml::Value = serde_yaml::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            serde_json::to_string(&value)?
        }
        None => "null".into(),
    };
    let started = Instant::now();
    let component = Component::from_binary(&engine, &bytes)
        .map_err(|error| anyhow::anyhow!("{error:#}"))
        .with_context(|| format!("{} is not a valid component", options.plugin.display()))?;
    let compile = started.elapsed();
    let digest = format!(
        "sha256:{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(&bytes)
    );
    let name = options
        .plugin
        .file_stem()
        .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
    let make_spec = |kind: PluginKind| PluginSpec {
        name: name.clone(),
        kind,
        file: options.plugin.display().to_string(),
        path: options.plugin.clone(),
        config_json: config_json.clone(),
        on_error: OnError::Capture,
        deadline_ms: options.deadline_ms.unwrap_or(match kind {
            PluginKind::Predicate => spec::DEFAULT_PREDICATE_DEADLINE_MS,
            PluginKind::Sink => spec::DEFAULT_SINK_DEADLINE_MS,
        }),
        memory_bytes: options.memory_mb * 1024 * 1024,
        fuel: None,
        allowed_hosts: options
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        batch: 1,
        deliver: spec::Deliver::Recorded,
    };
    // The component says which world it implements: try the predicate world first.
    let as_predicate = || {
        Plugin::<Predicate>::load(
            &engine,
            &budget,
            make_spec(PluginKind::Predicate),
            digest.clone(),
            component.clone(),
            started,
            None,
        )
        .map(Loaded::Predicate)
    };
    let as_sink = || {
        Plugin::<Sink>::load(
            &engine,
            &budget,
            make_spec(PluginKind::Sink),
            digest.clone(),
            component.clone(),
            started,
            capture.clone(),
        )
        .map(Loaded::Sink)
    };
    let chain = |error: &super::Error| runtime::DisplayChain(error).to_string();
    let loaded = match as_predicate() {
        Ok(loaded) => loaded,
        Err(predicate @ super::Error::Link { .. }) => match as_sink() {
            Ok(loaded) => loaded,
            Err(sink @ super::Error::Link { .. }) => bail!(
                "{} fits neither world:\n  as a predicate: {}\n  as a sink: {}",
                options.plugin.display(),
                chain(&predicate),
                chain(&sink)
            ),
            Err(other) => bail!("{}", chain(&other)),
        },
        Err(other) => bail!("{}", chain(&other)),
    };
    Ok((loaded, compile, clock))
}

/// The review, through the same admission code as the webhook.
fn event_from_review(path: &Path) -> anyhow::Result<Event> {
    let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, request) =
        admission::review::parse(&body).with_context(|| format!("parsing {}", path.display()))?;
    let policy = Policy {
        record_dry_run: true,
        record_noise: true,
    };
    // A fixed key: `run` shows a plugin's behaviour, not the server's Secret hashes.
    let redactor = Redactor::new([0; 32]);
    match admission::build_event(
        request,
        Utc::now(),
        policy,
        &redactor,
        &KindTable::default(),
    ) {
        Outcome::Record(new_event) => Ok(new_event.event),
        _ => bail!("{}: the review yields no event", path.display()),
    }
}

fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    let event = event_from_review(&args.options.review)?;
    let captured = (!args.send).then(CapturedRequests::default);
    let (loaded, _, _clock) = load(&args.options, captured.clone())?;
    match loaded {
        Loaded::Predicate(plugin) => {
            let verdict = runtime::evaluate(&plugin, &bindings::to_wit(&event, None), None)
                .map_err(|error| anyhow::anyhow!("{}", runtime::DisplayChain(&error)))?;
            let verdict = match verdict {
                bindings::Verdict::Capture => "capture",
                bindings::Verdict::Skip => "skip",
            };
            println!(
                "{}",
                serde_json::json!({"plugin": plugin.spec.name, "verdict": verdict})
            );
            Ok(ExitCode::SUCCESS)
        }
        Loaded::Sink(plugin) => {
            let event = bindings::to_wit(&event, Some(event.id.to_string()));
            let outcome = runtime::deliver(&plugin, std::slice::from_ref(&event))
                .map_err(|error| anyhow::anyhow!("{}", runtime::DisplayChain(&error)))?;
            let requests = captured.as_ref().map(CapturedRequests::take);
            for request in requests.iter().flatten() {
                println!("{request}\n");
            }
            let what = match &requests {
                None => "its HTTP requests were sent (--send)".to_owned(),
                Some(requests) if requests.is_empty() => {
                    "it made no HTTP request (its log lines are on stderr)".to_owned()
                }
                Some(requests) => format!(
                    "{} HTTP request(s) printed above, captured and not sent (--send sends them)",
                    requests.len()
                ),
            };
            match outcome {
                Ok(()) => {
                    eprintln!("{}: delivered 1 event; {what}", plugin.spec.name);
                    Ok(ExitCode::SUCCESS)
                }
                Err(message) => {
                    eprintln!("{}: delivery failed: {message}; {what}", plugin.spec.name);
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}

fn bench(mut args: BenchArgs) -> anyhow::Result<ExitCode> {
    // A call preempted by the OS must not end the measurement.
    args.options.deadline_ms.get_or_insert(BENCH_DEADLINE_MS);
    let event = event_from_review(&args.options.review)?;
    // Sinks are measured without their destination: requests are captured, not sent.
    let captured = CapturedRequests::default();
    let (loaded, compile, _clock) = load(&args.options, Some(captured.clone()))?;
    let object_bytes = event.object.as_ref().map_or(0, |o| o.to_string().len());
    println!("plugin      {}", args.options.plugin.display());
    println!("object      {object_bytes} bytes of JSON");
    match loaded {
        Loaded::Predicate(plugin) => {
            println!(
                "compile     {:.1} ms (load + first instance: {:.1} ms)",
                ms(compile),
                ms(plugin.load_time)
            );
            bench_predicate(&plugin, &event, args.iterations)?;
        }
        Loaded::Sink(plugin) => {
            println!(
                "compile     {:.1} ms (load + first instance: {:.1} ms)",
                ms(compile),
                ms(plugin.load_time)
            );
            bench_sink(&plugin, &event, &captured, &args)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn failed(error: runtime::CallError) -> anyhow::Error {
    anyhow::anyhow!("{}", runtime::DisplayChain(&error))
}

fn bench_predicate(
    plugin: &Plugin<Predicate>,
    event: &Event,
    iterations: u32,
) -> anyhow::Result<()> {
    // 1. The whole per-event cost as the webhook pays it: conversion + call on a reused
    //    instance.
    let mut reused = Vec::with_capacity(iterations as usize);
    for i in 0..(iterations + WARM_UP) {
        let started = Instant::now();
        let wit = bindings::to_wit(event, None);
        runtime::evaluate(plugin, &wit, None).map_err(failed)?;
        if i >= WARM_UP {
            reused.push(started.elapsed());
        }
    }
    // 2. The call alone (the event converted once, as for every predicate after the first).
    let wit = bindings::to_wit(event, None);
    let mut call_only = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        let started = Instant::now();
        runtime::evaluate(plugin, &wit, None).map_err(failed)?;
        call_only.push(started.elapsed());
    }
    // 3. A fresh instance per call (what recycling after a failure costs).
    let mut fresh = Vec::new();
    for _ in 0..fresh_iterations(iterations) {
        let started = Instant::now();
        let mut live = plugin.instantiate(None).map_err(failed)?;
        live.arm(FRESH_DEADLINE, None);
        live.bindings
            .call_evaluate(&mut live.store, &wit)
            .map_err(|error| anyhow::anyhow!("{error:#}"))?;
        drop(live);
        fresh.push(started.elapsed());
    }
    print_line("per event", &mut reused);
    print_line("call only", &mut call_only);
    print_line("fresh inst", &mut fresh);
    Ok(())
}

fn bench_sink(
    plugin: &Plugin<Sink>,
    event: &Event,
    captured: &CapturedRequests,
    args: &BenchArgs,
) -> anyhow::Result<()> {
    let size = args.batch.max(1);
    let batch: Vec<_> = (0..size)
        .map(|i| bindings::to_wit(event, Some(format!("{:016x}", u64::from(i)))))
        .collect();
    let deliver = |batch: &[bindings::WitEvent]| -> anyhow::Result<()> {
        runtime::deliver(plugin, batch)
            .map_err(failed)?
            .map_err(|message| anyhow::anyhow!("delivery failed: {message}"))?;
        // Keep memory flat over thousands of calls.
        captured.take();
        Ok(())
    };
    // 1. One delivery of `batch` events on a reused instance (the sink worker's call).
    let mut reused = Vec::with_capacity(args.iterations as usize);
    for i in 0..(args.iterations + WARM_UP) {
        let started = Instant::now();
        deliver(&batch)?;
        if i >= WARM_UP {
            reused.push(started.elapsed());
        }
    }
    // 2. A fresh instance per delivery.
    let mut fresh = Vec::new();
    for _ in 0..fresh_iterations(args.iterations) {
        let started = Instant::now();
        let mut live = plugin.instantiate(None).map_err(failed)?;
        live.arm(FRESH_DEADLINE, None);
        live.bindings
            .call_deliver(&mut live.store, &batch)
            .map_err(|error| anyhow::anyhow!("{error:#}"))?
            .map_err(|message| anyhow::anyhow!("delivery failed: {message}"))?;
        drop(live);
        captured.take();
        fresh.push(started.elapsed());
    }
    println!("batch       {size} event(s) per delivery; HTTP requests captured, not sent");
    print_line("per batch", &mut reused);
    if size > 1 {
        let mut per_event: Vec<Duration> = reused.iter().map(|d| *d / size).collect();
        print_line("per event", &mut per_event);
    }
    print_line("fresh inst", &mut fresh);
    Ok(())
}

/// `bench`'s default per-call deadline.
const BENCH_DEADLINE_MS: u64 = 1_000;
/// Calls before measuring: the first calls fault in the instance's memory.
const WARM_UP: u32 = 100;
/// The deadline of the fresh-instance calls (1 s): they are measured, not limited.
const FRESH_DEADLINE: Duration = Duration::from_secs(1);

fn fresh_iterations(iterations: u32) -> u32 {
    (iterations / 10).clamp(10, 1000)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn print_line(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{label:<11} median {:>8.1} µs  p99 {:>8.1} µs  ({} calls)",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}
