//! WebAssembly plugins: capture predicates in the admission path, sinks on the durable log.
//!
//! Plugins are components of the WIT package `logistis:plugin@0.1.0` (`wit/`), loaded from
//! `--plugins-dir` (`plugins.yaml` plus `.wasm` files, typically a ConfigMap mount).
//!
//! - [`spec`]: `plugins.yaml` → validated [`spec::SetSpec`].
//! - [`engine`]: the one wasmtime engine (pooling allocator, epoch clock, fuel, disk cache).
//! - [`bindings`]: generated host bindings, per-instance state (no capabilities; HTTP only
//!   to allow-listed hosts, for sinks), event conversion.
//! - [`runtime`]: one loaded plugin — `InstancePre`, a pool of reused instances recycled
//!   after any failure, per-call deadline in running time, memory cap and fuel.
//! - [`budget`]: the memory budget of all instances together.
//! - [`registry`]: load a whole set (all or nothing) and fingerprint the directory.
//! - [`sinks`]: a thread per sink, from a persisted cursor, with retries and back-off.
//! - [`metrics`], [`cli`] (`logistis plugin run|bench`).
//!
//! Data flow: [`PluginHost::start`] loads the first set synchronously (a broken set falls
//! back to the [`last_good`] one, else fails startup with every problem listed) and starts
//! a watcher thread; the watcher
//! polls the directory, loads a changed set off the request path and swaps it in with one
//! atomic pointer store, or keeps the active set and reports the errors. The webhook calls
//! [`PluginHost::evaluate`], which reads the active set without locking.
//!
//! Whatever the plugins do, a review's chain ends by its ceiling (`--plugin-chain-timeout`,
//! measured from when the review arrived): a plugin still running then is interrupted
//! within a tick, the plugins after it do not run, and the set's top-level `on-error`
//! decides (counted in `logistis_plugin_chain_ceiling_total`).

pub mod bindings;
pub mod budget;
pub mod cli;
pub mod engine;
pub mod last_good;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod sinks;
pub mod spec;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::Utc;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use logistis_api::plugins::{
    OnError, PluginKind, PluginList, PluginStatus, ReloadStatus, SinkStatus,
};
use prometheus_client::registry::Registry;

use crate::store::Store;
use registry::{Fingerprint, PluginSet};
use runtime::{CallError, DisplayChain, Plugin};

/// How often the plugins directory is checked for changes.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// The default ceiling of a review's predicate chain: the API server's webhook timeout in
/// the shipped manifests is 2 s, and the answer still has to be stored and sent.
pub const DEFAULT_CHAIN_TIMEOUT: Duration = Duration::from_millis(1500);

/// The verdict of the predicate chain on one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Capture,
    /// Skipped by the named predicate.
    Skip {
        plugin: String,
    },
    /// The review's ceiling came before the chain finished: the set's `on-error` decides.
    Ceiling {
        verdict: OnError,
    },
}

/// Plugin settings from the command line.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Directory holding `plugins.yaml` and the `.wasm` files; `None` = no plugins.
    pub dir: Option<PathBuf>,
    /// Where compiled components are cached (keyed by content hash); `None` = no disk
    /// cache, every start compiles again.
    pub cache_dir: Option<PathBuf>,
    /// How often the directory is checked for changes.
    pub reload_interval: Duration,
    /// The longest a review's predicate chain may take, from the review's arrival.
    pub chain_timeout: Duration,
    /// Bytes of linear memory all plugin instances may hold together.
    pub memory_budget_bytes: u64,
    /// Where the last set that loaded is kept, for a start with a broken mounted set.
    pub last_good_dir: Option<PathBuf>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            dir: None,
            cache_dir: None,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            chain_timeout: DEFAULT_CHAIN_TIMEOUT,
            memory_budget_bytes: budget::DEFAULT_BUDGET_BYTES,
            last_good_dir: None,
        }
    }
}

/// What failed in the plugin host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the WebAssembly engine")]
    Engine {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot start a plugin thread")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {plugin:?} does not fit its world")]
    Link {
        plugin: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("plugin {plugin:?} failed to start")]
    Instantiate {
        plugin: String,
        #[source]
        source: CallError,
    },
    #[error("the plugin set in {dir} cannot be loaded:\n  {}", errors.join("\n  "))]
    Load { dir: PathBuf, errors: Vec<String> },
}

/// Shared between the host handle, the watcher and the status.
struct Shared {
    store: Store,
    engine: Option<wasmtime::Engine>,
    budget: Arc<budget::MemoryBudget>,
    chain_timeout: Duration,
    last_good: Option<last_good::LastGood>,
    /// Why the last good set runs instead of the mounted one.
    fallback: Mutex<Option<String>>,
    active: ArcSwap<PluginSet>,
    last_reload: Mutex<Option<ReloadStatus>>,
    generation: AtomicU64,
    metrics: metrics::Metrics,
    sinks: Mutex<Vec<sinks::Worker>>,
}

impl Shared {
    /// Swap in `set` and restart the sinks on it. Old sink workers finish their batch
    /// (cursor saved) before the new ones start, so no batch is delivered twice by a
    /// reload.
    fn activate(&self, set: PluginSet) -> Result<(), Error> {
        let set = Arc::new(set);
        self.active.store(set.clone());
        self.metrics.generation.set(set.generation as i64);
        self.metrics.initialize(
            set.predicates.iter().map(|plugin| plugin.name()),
            set.sinks.iter().map(|plugin| plugin.name()),
        );
        let mut workers = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        for worker in workers.drain(..) {
            worker.stop();
        }
        for sink in &set.sinks {
            let worker =
                sinks::Worker::start(sink.clone(), self.store.clone(), self.metrics.clone())
                    .map_err(|source| Error::Thread { source })?;
            workers.push(worker);
        }
        Ok(())
    }

    fn lock_fallback(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.fallback.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep a set that loaded from the mounted directory as the last good one.
    fn keep_as_last_good(&self, dir: &std::path::Path, set: &PluginSet) {
        if let Some(last_good) = &self.last_good
            && let Err(error) = last_good.save(dir, &set.yaml, set)
        {
            tracing::warn!(error, dir = %last_good.dir().display(), "cannot keep the plugin set as the last good one");
        }
    }

    /// The mounted set is broken at startup: load the last good one instead, loudly, or
    /// fail with every problem of both.
    fn start_from_last_good(
        &self,
        engine: &wasmtime::Engine,
        errors: Vec<String>,
        dir: &std::path::Path,
    ) -> Result<PluginSet, Error> {
        let load_error = |mut errors: Vec<String>, more: Vec<String>| {
            errors.extend(more);
            Error::Load {
                dir: dir.to_owned(),
                errors,
            }
        };
        let Some(last_good) = &self.last_good else {
            return Err(load_error(errors, Vec::new()));
        };
        let (saved, saved_at) = last_good
            .load()
            .map_err(|problem| load_error(errors.clone(), vec![problem]))?;
        let set = registry::load(engine, &self.budget, &saved, &PluginSet::default(), 1)
            .map_err(|more| load_error(errors.clone(), more))?;
        let message = format!(
            "running the last good plugin set (saved {}) because the mounted set in {} is broken: {}",
            saved_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            dir.display(),
            errors.join("; ")
        );
        tracing::error!(
            errors = errors.join("; "),
            saved_at = %saved_at,
            "THE MOUNTED PLUGIN SET IS BROKEN: running the last good set until it is fixed"
        );
        self.metrics.set_fallback.set(1);
        *self.lock_fallback() = Some(message);
        Ok(set)
    }

    fn record_reload(&self, started: Instant, errors: Vec<String>) {
        let ok = errors.is_empty();
        let result = if ok { "ok" } else { "error" };
        self.metrics
            .reloads
            .get_or_create(&metrics::ReloadLabels { result })
            .inc();
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadStatus {
            time: Utc::now(),
            ok,
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            errors,
        });
    }
}

/// The loaded plugin set, reloaded when its directory changes.
pub struct PluginHost {
    shared: Arc<Shared>,
    stop: Mutex<Option<Sender<()>>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
    _clock: Option<engine::EpochClock>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field(
                "generation",
                &self.shared.generation.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl PluginHost {
    /// Load the first plugin set and start the sinks and the reload watcher. Every
    /// problem of a broken first set is in the error.
    pub fn start(settings: &PluginSettings, store: Store) -> Result<PluginHost, Error> {
        let shared = |engine: Option<wasmtime::Engine>| {
            Arc::new(Shared {
                store,
                engine,
                budget: Arc::new(budget::MemoryBudget::new(settings.memory_budget_bytes)),
                chain_timeout: settings.chain_timeout,
                last_good: settings.last_good_dir.clone().map(last_good::LastGood::new),
                fallback: Mutex::new(None),
                active: ArcSwap::from_pointee(PluginSet::default()),
                last_reload: Mutex::new(None),
                generation: AtomicU64::new(0),
                metrics: metrics::Metrics::default(),
                sinks: Mutex::new(Vec::new()),
            })
        };
        let Some(dir) = settings.dir.clone() else {
            return Ok(PluginHost {
                shared: shared(None),
                stop: Mutex::new(None),
                watcher: Mutex::new(None),
                _clock: None,
            });
        };
        let engine = engine::build(settings.cache_dir.as_deref())?;
        let clock = engine::EpochClock::start(&engine)?;
        let shared = shared(Some(engine.clone()));
        shared
            .metrics
            .memory_budget_bytes
            .set(i64::try_from(settings.memory_budget_bytes).unwrap_or(i64::MAX));

        let fingerprint = Fingerprint::of(&dir);
        let started = Instant::now();
        let set = match registry::load(&engine, &shared.budget, &dir, &PluginSet::default(), 1) {
            Ok(set) => {
                shared.keep_as_last_good(&dir, &set);
                set
            }
            Err(errors) => {
                shared.record_reload(started, errors.clone());
                shared.start_from_last_good(&engine, errors, &dir)?
            }
        };
        log_set("plugin set loaded", &set, started);
        shared.generation.store(1, Ordering::Relaxed);
        shared.activate(set)?;
        shared.record_reload(started, Vec::new());

        let (stop, stopped) = crossbeam_channel::bounded(0);
        let watcher = std::thread::Builder::new()
            .name("plugin-reload".into())
            .spawn({
                let shared = shared.clone();
                let interval = settings.reload_interval;
                move || watch(&shared, &engine, &dir, fingerprint, interval, &stopped)
            })
            .map_err(|source| Error::Thread { source })?;
        Ok(PluginHost {
            shared,
            stop: Mutex::new(Some(stop)),
            watcher: Mutex::new(Some(watcher)),
            _clock: Some(clock),
        })
    }

    /// Whether any predicate is configured (else the webhook need not leave its thread).
    pub fn has_predicates(&self) -> bool {
        !self.shared.active.load().predicates.is_empty()
    }

    /// The longest a review's predicate chain may take, from the review's arrival.
    pub fn chain_timeout(&self) -> Duration {
        self.shared.chain_timeout
    }

    /// What the active set decides for a review whose chain reached its ceiling, counted.
    /// The webhook calls this once per review: when the chain did not answer by the
    /// ceiling, or answered [`Decision::Ceiling`] (which [`PluginHost::evaluate`] does not
    /// count itself, so a chain stopping at the moment the webhook stops waiting for it
    /// counts once).
    pub fn ceiling_decision(&self) -> Decision {
        self.shared.metrics.chain_ceiling.inc();
        self.at_ceiling()
    }

    fn at_ceiling(&self) -> Decision {
        Decision::Ceiling {
            verdict: self.shared.active.load().on_error,
        }
    }

    /// Run the predicate chain (blocking; call it off the async worker threads). Predicates
    /// run in order and the first `skip` wins; a failing predicate counts as its
    /// `on-error` verdict. Nothing runs past `ceiling`: then the set's `on-error` decides
    /// ([`Decision::Ceiling`], counted by the caller). Never fails: the webhook always answers.
    pub fn evaluate(&self, event: &bindings::WitEvent, ceiling: Instant) -> Decision {
        let set = self.shared.active.load();
        if set.predicates.is_empty() {
            return Decision::Capture;
        }
        let metrics = &self.shared.metrics;
        for plugin in &set.predicates {
            let name = plugin.spec.name.as_str();
            let started = Instant::now();
            if started >= ceiling {
                return self.at_ceiling();
            }
            let outcome = runtime::evaluate(plugin, event, Some(ceiling));
            metrics
                .call_seconds
                .get_or_create(&metrics::Metrics::plugin(name))
                .observe(started.elapsed().as_secs_f64());
            let skip = match outcome {
                Ok(verdict) => verdict == bindings::Verdict::Skip,
                Err(error) => {
                    metrics
                        .failures
                        .get_or_create(&metrics::FailureLabels {
                            plugin: name.to_owned(),
                            reason: error.reason(),
                        })
                        .inc();
                    log_failure(plugin, &error, event);
                    if matches!(error, CallError::Ceiling) {
                        return self.at_ceiling();
                    }
                    plugin.spec.on_error == OnError::Skip
                }
            };
            let result = if skip { "skip" } else { "capture" };
            metrics
                .calls
                .get_or_create(&metrics::ResultLabels {
                    plugin: name.to_owned(),
                    result,
                })
                .inc();
            if skip {
                return Decision::Skip {
                    plugin: name.to_owned(),
                };
            }
        }
        Decision::Capture
    }

    /// The first plugin set has been loaded (an empty set counts). `start` loads it before
    /// returning, so a started host is ready.
    pub fn is_ready(&self) -> bool {
        self.shared.engine.is_none() || self.shared.generation.load(Ordering::Relaxed) > 0
    }

    /// Each plugin with its status, for `GET /api/v1/plugins`.
    pub fn status(&self) -> PluginList {
        let set = self.shared.active.load();
        let now = now_micros();
        let mut items: Vec<PluginStatus> = set
            .predicates
            .iter()
            .map(|p| plugin_status(p, None))
            .collect();
        for sink in &set.sinks {
            let cursor = self
                .shared
                .store
                .cursor(&sinks::cursor_name(&sink.spec.name))
                .ok()
                .flatten();
            let sink_status = SinkStatus {
                cursor: cursor.map(|c| c.to_string()),
                lag_seconds: sinks::lag_seconds(&self.shared.store, cursor, now),
                delivered: sink.counters.delivered.load(Ordering::Relaxed),
            };
            items.push(plugin_status(sink, Some(sink_status)));
        }
        PluginList {
            fallback: self.shared.lock_fallback().clone(),
            generation: set.generation,
            items,
            last_reload: self
                .shared
                .last_reload
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Add the plugin metrics to `/metrics`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.shared.metrics.register(registry);
        registry.register_collector(Box::new(Scraped(self.shared.clone())));
    }

    /// Stop the watcher and the sinks (sinks finish their batch and keep their cursors).
    pub fn shutdown(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(watcher) = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = watcher.join();
        }
        let workers =
            std::mem::take(&mut *self.shared.sinks.lock().unwrap_or_else(|e| e.into_inner()));
        for worker in workers {
            worker.stop();
        }
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn now_micros() -> u64 {
    u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0)
}

/// The plugin metrics read at scrape time.
struct Scraped(Arc<Shared>);

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scraped")
    }
}

impl prometheus_client::collector::Collector for Scraped {
    fn encode(
        &self,
        encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let shared = &self.0;
        let now = now_micros();
        let sink_lag_seconds = shared
            .active
            .load()
            .sinks
            .iter()
            .map(|sink| {
                let name = &sink.spec.name;
                let cursor = shared
                    .store
                    .cursor(&sinks::cursor_name(name))
                    .ok()
                    .flatten();
                (name.clone(), sinks::lag_seconds(&shared.store, cursor, now))
            })
            .collect();
        metrics::Snapshot {
            memory_used_bytes: shared.budget.used(),
            sink_lag_seconds,
        }
        .encode(encoder)
    }
}

fn plugin_status<W: runtime::World>(plugin: &Plugin<W>, sink: Option<SinkStatus>) -> PluginStatus {
    let counters = &plugin.counters;
    let error = counters.last_error();
    let status = match (plugin.kind(), &error) {
        (PluginKind::Sink, Some(_)) => "retrying",
        _ => "active",
    };
    PluginStatus {
        name: plugin.spec.name.clone(),
        kind: plugin.kind(),
        file: plugin.spec.file.clone(),
        digest: plugin.digest.clone(),
        status: status.into(),
        error,
        loaded_at: plugin.loaded_at,
        load_ms: plugin.load_time.as_secs_f64() * 1e3,
        on_error: plugin.spec.on_error,
        deadline_ms: plugin.spec.deadline_ms,
        memory_bytes: plugin.spec.memory_bytes,
        fuel: plugin.spec.fuel,
        allowed_hosts: plugin.spec.allowed_hosts.clone(),
        calls: counters.calls.load(Ordering::Relaxed),
        failures: counters.failures.load(Ordering::Relaxed),
        traps: counters.traps.load(Ordering::Relaxed),
        timeouts: counters.timeouts.load(Ordering::Relaxed),
        sink,
    }
}

/// One line per plugin per [`runtime::FAILURE_LOG_INTERVAL`] at most (a looping plugin on
/// a busy cluster fails hundreds of times a second); the full cause chain, with the guest's
/// backtrace, at debug level for every failure.
fn log_failure<W: runtime::World>(
    plugin: &Plugin<W>,
    error: &CallError,
    event: &bindings::WitEvent,
) {
    let name = plugin.spec.name.as_str();
    tracing::debug!(
        plugin = name,
        reason = error.reason(),
        error = %DisplayChain(error),
        uid = event.uid.as_str(),
        "predicate failed"
    );
    if let Some(suppressed) = plugin.counters.may_log_failure(Instant::now()) {
        tracing::warn!(
            plugin = name,
            reason = error.reason(),
            error = %error,
            on_error = ?plugin.spec.on_error,
            uid = event.uid.as_str(),
            suppressed,
            "predicate failed; applying its on-error verdict (further failures of this plugin in the next {}s are counted, not logged)",
            runtime::FAILURE_LOG_INTERVAL.as_secs()
        );
    }
}

fn log_set(message: &str, set: &PluginSet, started: Instant) {
    let names = |plugins: Vec<&str>| plugins.join(",");
    tracing::info!(
        generation = set.generation,
        predicates = names(
            set.predicates
                .iter()
                .map(|p| p.spec.name.as_str())
                .collect()
        ),
        sinks = names(set.sinks.iter().map(|p| p.spec.name.as_str()).collect()),
        millis = started.elapsed().as_secs_f64() * 1e3,
        "{message}"
    );
}

/// The reload loop: poll the fingerprint; on a change, load the new set beside the active
/// one and swap it in, or keep the active one and report why. The request path never
/// waits on any of this.
fn watch(
    shared: &Shared,
    engine: &wasmtime::Engine,
    dir: &std::path::Path,
    mut seen: Fingerprint,
    interval: Duration,
    stopped: &Receiver<()>,
) {
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = Fingerprint::of(dir);
        if now == seen {
            continue;
        }
        seen = now;
        let started = Instant::now();
        let generation = shared.generation.load(Ordering::Relaxed) + 1;
        let active = shared.active.load_full();
        match registry::load(engine, &shared.budget, dir, &active, generation) {
            Ok(set) => {
                log_set("plugin set reloaded", &set, started);
                shared.keep_as_last_good(dir, &set);
                if shared.lock_fallback().take().is_some() {
                    shared.metrics.set_fallback.set(0);
                    tracing::info!(
                        "the mounted plugin set loads again: no longer on the last good set"
                    );
                }
                shared.generation.store(generation, Ordering::Relaxed);
                if let Err(error) = shared.activate(set) {
                    tracing::error!(error = %DisplayChain(&error), "cannot start the sinks of the new plugin set");
                }
                shared.record_reload(started, Vec::new());
            }
            Err(errors) => {
                tracing::error!(
                    errors = errors.join("; "),
                    generation = active.generation,
                    "the new plugin set was refused; the active set stays"
                );
                shared.record_reload(started, errors);
            }
        }
    }
}
