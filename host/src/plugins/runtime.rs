//! One loaded plugin: its compiled component, pre-linked (`InstancePre`), and a small pool
//! of live instances reused across calls.
//!
//! Why reuse: a fresh instance per call costs ~35 µs for a Rust component and ~1 ms for a
//! Python one, a call on a live instance 3-35 µs (see `docs/plugins.md` for our figures).
//! Why it is safe: an instance that trapped, ran out of time, fuel or memory is dropped,
//! never returned to the pool, and an instance is retired after [`MAX_CALLS_PER_INSTANCE`]
//! calls, or as soon as its memory has grown past [`RETIRE_AT_MEMORY_FRACTION`] of its cap,
//! so slow leaks and growing garbage-collected heaps (JavaScript, Python) never reach the cap
//! in the middle of an event. Each instance lives in its own
//! `Store`, so one plugin's state never reaches another's.
//!
//! Limits per call: `deadline-ms` of running time (epoch ticks counted while the call runs,
//! see [`bindings::CallClock`], so a neighbour hogging the cores cannot make a quick plugin
//! miss its deadline), a
//! wall-clock limit (the review's ceiling for predicates, `deadline-ms` for a sink's
//! delivery, which mostly waits on the network), fuel, and memory: `memory-mb` per
//! instance within the [`MemoryBudget`] of all instances.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use logistis_api::plugins::PluginKind;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::Error;
use super::bindings::{self, CapturedRequests, Expired, MemoryExceeded, StoreState, WitEvent};
use super::budget::MemoryBudget;
use super::spec::PluginSpec;

/// Retire an instance after this many calls (bounds what a leaking guest can hoard).
pub const MAX_CALLS_PER_INSTANCE: u64 = 10_000;
/// Retire a healthy instance once its memory passes this share of the cap (in quarters).
pub const RETIRE_AT_MEMORY_FRACTION: (u64, u64) = (3, 4);
/// Idle instances kept per plugin: about the number of threads calling at once.
const MAX_IDLE: usize = 8;
/// `configure` runs once per instance, off the request path for the first one; give it
/// room for a Python or JavaScript guest to initialise.
const CONFIGURE_DEADLINE: Duration = Duration::from_secs(2);
/// At most one failure line per plugin in this interval (the rest are counted in the
/// next line and in the metrics; backtraces are at debug level).
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How a call failed. Each ends the instance it happened in.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("deadline of {deadline_ms} ms exceeded")]
    Timeout { deadline_ms: u64 },
    #[error("stopped at the review's time ceiling (--plugin-chain-timeout)")]
    Ceiling,
    #[error("fuel budget exhausted")]
    Fuel,
    #[error("memory limit of {limit_bytes} bytes exceeded")]
    Memory { limit_bytes: u64 },
    #[error("the memory budget of all plugins ({budget_bytes} bytes) is used up")]
    MemoryBudget { budget_bytes: u64 },
    /// `message` is one line (the trap code or the first line of the error); the source
    /// carries the guest backtrace.
    #[error("trapped: {message}")]
    Trap {
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("rejected its config: {message}")]
    Rejected { message: String },
}

impl CallError {
    /// The metric label of this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            CallError::Timeout { .. } => "timeout",
            CallError::Ceiling => "ceiling",
            CallError::Fuel => "fuel",
            CallError::Memory { .. } => "memory",
            CallError::MemoryBudget { .. } => "memory_budget",
            CallError::Trap { .. } => "trap",
            CallError::Rejected { .. } => "rejected",
        }
    }
}

/// Counters shown in the status; `/metrics` has the same, labelled.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    /// Events a sink delivered.
    pub delivered: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    log_gate: Mutex<LogGate>,
}

#[derive(Debug, Default)]
struct LogGate {
    last: Option<Instant>,
    suppressed: u64,
}

impl Counters {
    pub fn record_failure(&self, error: &CallError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        match error {
            CallError::Timeout { .. } | CallError::Ceiling => {
                self.timeouts.fetch_add(1, Ordering::Relaxed)
            }
            _ => self.traps.fetch_add(1, Ordering::Relaxed),
        };
        // One line: the status is no place for a guest backtrace.
        self.set_error(&error.to_string());
    }

    /// Whether a failure may be logged now (at most once per [`FAILURE_LOG_INTERVAL`]);
    /// `Some(n)`: yes, and `n` failures were not logged since the last line.
    pub fn may_log_failure(&self, now: Instant) -> Option<u64> {
        let mut gate = self.log_gate.lock().unwrap_or_else(|e| e.into_inner());
        match gate.last {
            Some(last) if now.duration_since(last) < FAILURE_LOG_INTERVAL => {
                gate.suppressed += 1;
                None
            }
            _ => {
                gate.last = Some(now);
                Some(std::mem::take(&mut gate.suppressed))
            }
        }
    }

    pub fn set_error(&self, message: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.to_owned());
    }

    pub fn clear_error(&self) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// `error: cause: cause`, for logs and status.
pub struct DisplayChain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// The bindings of one world, seen generically: how to pre-link and instantiate it and
/// call its `configure`.
pub trait World: Sized + Send + 'static {
    type Pre: Clone + Send + Sync + 'static;
    fn link(linker: &mut Linker<StoreState>) -> wasmtime::Result<()>;
    fn pre(linker: &Linker<StoreState>, component: &Component) -> wasmtime::Result<Self::Pre>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self>;
    fn configure(
        &self,
        store: &mut Store<StoreState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>>;
}

impl World for bindings::predicate::Predicate {
    type Pre = bindings::predicate::PredicatePre<StoreState>;

    fn link(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
        // WASI without capabilities (the context grants none): Rust, Python and JS guests
        // import it for their runtimes even when they use nothing.
        wasmtime_wasi::p2::add_to_linker_sync(linker)?;
        bindings::predicate::Predicate::add_to_linker::<StoreState, bindings::Host>(
            linker,
            |state| state,
        )
    }

    fn pre(linker: &Linker<StoreState>, component: &Component) -> wasmtime::Result<Self::Pre> {
        bindings::predicate::PredicatePre::new(linker.instantiate_pre(component)?)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }

    fn configure(
        &self,
        store: &mut Store<StoreState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        self.call_configure(store, config)
    }
}

impl World for bindings::sink::Sink {
    type Pre = bindings::sink::SinkPre<StoreState>;

    fn link(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_sync(linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)?;
        bindings::sink::Sink::add_to_linker::<StoreState, bindings::Host>(linker, |state| state)
    }

    fn pre(linker: &Linker<StoreState>, component: &Component) -> wasmtime::Result<Self::Pre> {
        bindings::sink::SinkPre::new(linker.instantiate_pre(component)?)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }

    fn configure(
        &self,
        store: &mut Store<StoreState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        self.call_configure(store, config)
    }
}

/// A live instance.
pub struct Live<W> {
    pub store: Store<StoreState>,
    pub bindings: W,
    calls: u64,
}

impl<W> Live<W> {
    /// Limit the next call to `cpu` of running time and never past `wall`.
    pub fn arm(&mut self, cpu: Duration, wall: Option<Instant>) {
        self.store.set_epoch_deadline(1);
        self.store.data_mut().clock.start(cpu, wall);
    }
}

/// A loaded plugin of world `W`.
pub struct Plugin<W: World> {
    pub spec: PluginSpec,
    pub digest: String,
    pub loaded_at: DateTime<Utc>,
    pub load_time: Duration,
    pub counters: Counters,
    name: Arc<str>,
    hosts: Arc<[String]>,
    engine: Engine,
    budget: Arc<MemoryBudget>,
    component: Component,
    pre: W::Pre,
    idle: Mutex<Vec<Live<W>>>,
    /// `logistis plugin run`: a sink's HTTP requests are recorded here, not sent.
    capture: Option<CapturedRequests>,
}

impl<W: World> std::fmt::Debug for Plugin<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.spec.name)
            .field("digest", &self.digest)
            .finish()
    }
}

impl<W: World> Plugin<W> {
    /// The plugin's name in `plugins.yaml`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Link `component` for world `W` and create (and configure) the first instance, so a
    /// bad config is refused now, at load time, not on the first event. With `capture`,
    /// outgoing HTTP requests are recorded there instead of sent (`logistis plugin run`).
    pub fn load(
        engine: &Engine,
        budget: &Arc<MemoryBudget>,
        spec: PluginSpec,
        digest: String,
        component: Component,
        started: Instant,
        capture: Option<CapturedRequests>,
    ) -> Result<Self, Error> {
        let mut linker = Linker::new(engine);
        let link_error = |source: wasmtime::Error| Error::Link {
            plugin: spec.name.clone(),
            source: source.into_boxed_dyn_error(),
        };
        W::link(&mut linker).map_err(link_error)?;
        let pre = W::pre(&linker, &component).map_err(link_error)?;
        let plugin = Plugin {
            name: Arc::from(spec.name.as_str()),
            hosts: spec.allowed_hosts.clone().into(),
            spec,
            digest,
            loaded_at: Utc::now(),
            load_time: Duration::ZERO,
            counters: Counters::default(),
            engine: engine.clone(),
            budget: budget.clone(),
            component,
            pre,
            idle: Mutex::new(Vec::new()),
            capture,
        };
        let first = plugin
            .instantiate(None)
            .map_err(|source| Error::Instantiate {
                plugin: plugin.spec.name.clone(),
                source,
            })?;
        plugin.put_back(first);
        Ok(Plugin {
            load_time: started.elapsed(),
            ..plugin
        })
    }

    /// The compiled component, to reuse when a reload keeps this plugin unchanged.
    pub fn component(&self) -> &Component {
        &self.component
    }

    pub fn kind(&self) -> PluginKind {
        self.spec.kind
    }

    /// A new configured instance; `wall` bounds it when it is made on a request's path.
    pub fn instantiate(&self, wall: Option<Instant>) -> Result<Live<W>, CallError> {
        let state = StoreState::new(
            self.name.clone(),
            self.spec.memory_bytes,
            self.budget.clone(),
            self.hosts.clone(),
            Duration::from_millis(self.spec.deadline_ms),
            self.capture.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // Every tick while guest code runs: has the call used its running time, or reached its
        // wall-clock limit? Keep going one more tick if not.
        store.epoch_deadline_callback(|mut context| {
            Ok(match context.data_mut().clock.tick() {
                None => UpdateDeadline::Continue(1),
                Some(_) => UpdateDeadline::Interrupt,
            })
        });
        store.set_epoch_deadline(1);
        store.data_mut().clock.start(
            CONFIGURE_DEADLINE.max(Duration::from_millis(self.spec.deadline_ms)),
            wall,
        );
        store
            .set_fuel(u64::MAX)
            .map_err(|source| self.classify(source, &store))?;
        let bindings = W::instantiate(&self.pre, &mut store)
            .map_err(|source| self.classify(source, &store))?;
        match bindings.configure(&mut store, &self.spec.config_json) {
            Ok(Ok(())) => Ok(Live {
                store,
                bindings,
                calls: 0,
            }),
            Ok(Err(message)) => Err(CallError::Rejected { message }),
            Err(source) => Err(self.classify(source, &store)),
        }
    }

    /// Run `call` on an idle instance (or a new one) under this plugin's limits, and
    /// never past `wall`. A failed instance is dropped; a healthy one goes back to the
    /// pool.
    pub fn call<R>(
        &self,
        wall: Option<Instant>,
        call: impl FnOnce(&W, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        if wall.is_some_and(|wall| Instant::now() >= wall) {
            self.counters.record_failure(&CallError::Ceiling);
            return Err(CallError::Ceiling);
        }
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut live = match idle {
            Some(live) => live,
            None => self
                .instantiate(wall)
                .inspect_err(|error| self.counters.record_failure(error))?,
        };
        live.arm(Duration::from_millis(self.spec.deadline_ms), wall);
        let fuel = self.spec.fuel.unwrap_or(u64::MAX);
        let result = live
            .store
            .set_fuel(fuel)
            .and_then(|()| call(&live.bindings, &mut live.store));
        match result {
            Ok(value) => {
                live.calls += 1;
                let (numerator, denominator) = RETIRE_AT_MEMORY_FRACTION;
                let grown = live.store.data().limits.high_water as u64
                    > self.spec.memory_bytes / denominator * numerator;
                if live.calls < MAX_CALLS_PER_INSTANCE && !grown {
                    self.put_back(live);
                }
                Ok(value)
            }
            Err(source) => {
                let error = self.classify(source, &live.store);
                self.counters.record_failure(&error);
                Err(error)
            }
        }
    }

    fn put_back(&self, live: Live<W>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(live);
        }
    }

    fn classify(&self, error: wasmtime::Error, store: &Store<StoreState>) -> CallError {
        match store.data().limits.exceeded {
            Some(MemoryExceeded::Instance) => {
                return CallError::Memory {
                    limit_bytes: self.spec.memory_bytes,
                };
            }
            Some(MemoryExceeded::Budget) => {
                return CallError::MemoryBudget {
                    budget_bytes: self.budget.limit(),
                };
            }
            None => {}
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => match store.data().clock.expired {
                Some(Expired::Wall) if self.kind() == PluginKind::Predicate => CallError::Ceiling,
                _ => CallError::Timeout {
                    deadline_ms: self.spec.deadline_ms,
                },
            },
            Some(Trap::OutOfFuel) => CallError::Fuel,
            trap => CallError::Trap {
                message: match trap {
                    Some(trap) => trap.to_string(),
                    None => error.to_string().lines().next().unwrap_or("").to_owned(),
                },
                source: error.into_boxed_dyn_error(),
            },
        }
    }
}

/// Evaluate one event with a predicate, never past `ceiling` (the review's deadline).
pub fn evaluate(
    plugin: &Plugin<bindings::predicate::Predicate>,
    event: &WitEvent,
    ceiling: Option<Instant>,
) -> Result<bindings::Verdict, CallError> {
    plugin.call(ceiling, |bindings, store| {
        bindings.call_evaluate(store, event)
    })
}

/// Deliver one batch with a sink: the outer error is the plugin failing, the inner the
/// sink reporting a delivery failure.
pub fn deliver(
    plugin: &Plugin<bindings::sink::Sink>,
    events: &[WitEvent],
) -> Result<Result<(), String>, CallError> {
    // A delivery mostly waits on the network (not running time): bound its wall time too.
    let wall = Instant::now() + Duration::from_millis(plugin.spec.deadline_ms);
    plugin.call(Some(wall), |bindings, store| {
        bindings.call_deliver(store, events)
    })
}
