//! `logistis plugin run` and `logistis plugin bench`: a plugin outside the server.
//!
//! `run` replays an AdmissionReview through one plugin, with the same conversion and the
//! same runtime as the webhook, and prints the verdict (predicate) or what the sink
//! delivered: its HTTP requests are captured and printed rather than sent (unless
//! `--send`), its log lines go to stderr. `bench` prints the per-call cost.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use logistis_api::Event;
use logistis_api::plugins::{OnError, PluginKind};
use wasmtime::component::Component;

use super::bindings::{self, predicate::Predicate, sink::Sink};
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
}

#[derive(Debug, clap::Args)]
struct PluginOptions {
    /// The plugin component (.wasm)
    #[arg(long, value_name = "FILE.wasm")]
    plugin: PathBuf,
    /// The plugin's config (YAML or JSON: what goes under `config:` in plugins.yaml)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Per-call deadline in milliseconds [default: 5 for predicates, 10000 for sinks]
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
}

/// Run `logistis plugin ...`.
pub fn run(args: PluginArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Run(args) => run_once(args),
        Command::Bench(args) => bench(args),
    }
}

/// The plugin, loaded as whichever world it implements.
enum Loaded {
    Predicate(Plugin<Predicate>),
    Sink(Plugin<Sink>),
}

fn load(options: &PluginOptions, kind_hint: Option<PluginKind>) -> anyhow::Result<(Loaded, Duration)> {
    let engine = super::engine::build(None)?;
    // Keep the clock running for the process: the deadline is enforced as in the server.
    std::mem::forget(super::engine::EpochClock::start(&engine)?);
    let bytes = std::fs::read(&options.plugin).with_context(|| format!("reading {}", options.plugin.display()))?;
    let config_json = match &options.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let value: serde_yaml::Value =
                serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            serde_json::to_string(&value)?
        }
        None => "null".into(),
    };
    let started = Instant::now();
    let component = Component::from_binary(&engine, &bytes)
        .map_err(|error| anyhow::anyhow!("{error:#}"))
        .with_context(|| format!("{} is not a valid component", options.plugin.display()))?;
    let compile = started.elapsed();
    let digest = format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
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
        allowed_hosts: options.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        batch: 1,
    };
    // The component says which world it implements: try the predicate world first.
    let as_predicate = || {
        Plugin::<Predicate>::load(&engine, make_spec(PluginKind::Predicate), digest.clone(), component.clone(), started)
            .map(Loaded::Predicate)
    };
    let as_sink = || {
        Plugin::<Sink>::load(&engine, make_spec(PluginKind::Sink), digest.clone(), component.clone(), started)
            .map(Loaded::Sink)
    };
    let loaded = match kind_hint {
        Some(PluginKind::Sink) => as_sink(),
        _ => as_predicate().or_else(|predicate_error| match predicate_error {
            super::Error::Link { .. } => as_sink(),
            other => Err(other),
        }),
    };
    let loaded = loaded.map_err(|error| anyhow::anyhow!("{}", runtime::DisplayChain(&error)))?;
    Ok((loaded, compile))
}

/// The review, through the same admission code as the webhook.
fn event_from_review(path: &Path) -> anyhow::Result<Event> {
    let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, request) = admission::review::parse(&body).with_context(|| format!("parsing {}", path.display()))?;
    let policy = Policy {
        record_dry_run: true,
        record_noise: true,
    };
    // A fixed key: `run` shows a plugin's behaviour, not the server's Secret hashes.
    let redactor = Redactor::new([0; 32]);
    match admission::build_event(request, Utc::now(), policy, &redactor, &KindTable::default()) {
        Outcome::Record(new_event) => Ok(new_event.event),
        _ => bail!("{}: the review yields no event", path.display()),
    }
}

fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    let event = event_from_review(&args.options.review)?;
    let (loaded, _) = load(&args.options, None)?;
    match loaded {
        Loaded::Predicate(plugin) => {
            let verdict = runtime::evaluate(&plugin, &bindings::to_wit(&event, None))
                .map_err(|error| anyhow::anyhow!("{}", runtime::DisplayChain(&error)))?;
            let verdict = match verdict {
                bindings::Verdict::Capture => "capture",
                bindings::Verdict::Skip => "skip",
            };
            println!("{}", serde_json::json!({"plugin": plugin.spec.name, "verdict": verdict}));
            Ok(ExitCode::SUCCESS)
        }
        Loaded::Sink(plugin) => {
            if !args.send {
                bindings::capture_requests(true);
            }
            let event = bindings::to_wit(&event, Some(event.id.to_string()));
            let outcome = runtime::deliver(&plugin, std::slice::from_ref(&event))
                .map_err(|error| anyhow::anyhow!("{}", runtime::DisplayChain(&error)))?;
            for request in bindings::captured_requests() {
                println!("{}", request);
            }
            match outcome {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(message) => {
                    eprintln!("delivery failed: {message}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let event = event_from_review(&args.options.review)?;
    let (loaded, compile) = load(&args.options, None)?;
    let Loaded::Predicate(plugin) = loaded else {
        bail!("bench measures predicates (sinks' cost is dominated by their destination)");
    };
    let plugin = Arc::new(plugin);
    let object_bytes = event.object.as_ref().map_or(0, |o| o.to_string().len());

    // 1. The whole per-event cost as the webhook pays it: conversion + call on a reused
    //    instance.
    let mut reused = Vec::with_capacity(args.iterations as usize);
    for i in 0..(args.iterations + 100) {
        let started = Instant::now();
        let wit = bindings::to_wit(&event, None);
        runtime::evaluate(&plugin, &wit).map_err(|error| anyhow::anyhow!("{}", runtime::DisplayChain(&error)))?;
        if i >= 100 {
            reused.push(started.elapsed());
        }
    }
    // 2. The call alone (the event converted once).
    let wit = bindings::to_wit(&event, None);
    let mut call_only = Vec::with_capacity(args.iterations as usize);
    for _ in 0..args.iterations {
        let started = Instant::now();
        runtime::evaluate(&plugin, &wit).map_err(|error| anyhow::anyhow!("{}", runtime::DisplayChain(&error)))?;
        call_only.push(started.elapsed());
    }
    // 3. A fresh instance per call (what recycling after a failure costs).
    let fresh_iterations = (args.iterations / 10).clamp(10, 1000);
    let mut fresh = Vec::with_capacity(fresh_iterations as usize);
    for _ in 0..fresh_iterations {
        let started = Instant::now();
        let mut live = plugin.instantiate().map_err(|error| anyhow::anyhow!("{}", runtime::DisplayChain(&error)))?;
        live.store.set_epoch_deadline(1_000);
        live.bindings
            .call_evaluate(&mut live.store, &wit)
            .map_err(|error| anyhow::anyhow!("{error:#}"))?;
        drop(live);
        fresh.push(started.elapsed());
    }
    println!("plugin      {}", args.options.plugin.display());
    println!("object      {object_bytes} bytes of JSON");
    println!("compile     {:.1} ms (load + first instance: {:.1} ms)", ms(compile), ms(plugin.load_time));
    print_line("per event", &mut reused);
    print_line("call only", &mut call_only);
    print_line("fresh inst", &mut fresh);
    Ok(ExitCode::SUCCESS)
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
