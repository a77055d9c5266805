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

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use logistis_api::plugins::PluginKind;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

use super::Error;
use super::bindings::{self, CapturedRequests, StoreState, WitEvent};
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

/// How a call failed. Each ends the instance it happened in.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("deadline of {deadline_ms} ms exceeded")]
    Timeout { deadline_ms: u64 },
    #[error("fuel budget exhausted")]
    Fuel,
    #[error("memory limit of {limit_bytes} bytes exceeded")]
    Memory { limit_bytes: u64 },
    #[error("trapped")]
    Trap {
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
            CallError::Fuel => "fuel",
            CallError::Memory { .. } => "memory",
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
}

impl Counters {
    pub fn record_failure(&self, error: &CallError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        match error {
            CallError::Timeout { .. } => self.timeouts.fetch_add(1, Ordering::Relaxed),
            _ => self.traps.fetch_add(1, Ordering::Relaxed),
        };
        self.set_error(&DisplayChain(error).to_string());
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
    /// Link `component` for world `W` and create (and configure) the first instance, so a
    /// bad config is refused now, at load time, not on the first event. With `capture`,
    /// outgoing HTTP requests are recorded there instead of sent (`logistis plugin run`).
    pub fn load(
        engine: &Engine,
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
            component,
            pre,
            idle: Mutex::new(Vec::new()),
            capture,
        };
        let first = plugin.instantiate().map_err(|source| Error::Instantiate {
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

    /// A new configured instance.
    pub fn instantiate(&self) -> Result<Live<W>, CallError> {
        let state = StoreState::new(
            self.name.clone(),
            self.spec.memory_bytes,
            self.hosts.clone(),
            Duration::from_millis(self.spec.deadline_ms),
            self.capture.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        let configure_ticks =
            ticks(CONFIGURE_DEADLINE.max(Duration::from_millis(self.spec.deadline_ms)));
        store.set_epoch_deadline(configure_ticks);
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

    /// Run `call` on an idle instance (or a new one) under this plugin's limits. A failed
    /// instance is dropped; a healthy one goes back to the pool.
    pub fn call<R>(
        &self,
        call: impl FnOnce(&W, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut live = match idle {
            Some(live) => live,
            None => self
                .instantiate()
                .inspect_err(|error| self.counters.record_failure(error))?,
        };
        live.store
            .set_epoch_deadline(ticks(Duration::from_millis(self.spec.deadline_ms)));
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
        if store.data().limits.exceeded {
            return CallError::Memory {
                limit_bytes: self.spec.memory_bytes,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout {
                deadline_ms: self.spec.deadline_ms,
            },
            Some(Trap::OutOfFuel) => CallError::Fuel,
            _ => CallError::Trap {
                source: error.into_boxed_dyn_error(),
            },
        }
    }
}

/// Epoch ticks for a deadline, at least one.
fn ticks(deadline: Duration) -> u64 {
    let tick = super::engine::TICK.as_micros().max(1);
    u64::try_from(deadline.as_micros().div_ceil(tick))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Evaluate one event with a predicate.
pub fn evaluate(
    plugin: &Plugin<bindings::predicate::Predicate>,
    event: &WitEvent,
) -> Result<bindings::Verdict, CallError> {
    plugin.call(|bindings, store| bindings.call_evaluate(store, event))
}

/// Deliver one batch with a sink: the outer error is the plugin failing, the inner the
/// sink reporting a delivery failure.
pub fn deliver(
    plugin: &Plugin<bindings::sink::Sink>,
    events: &[WitEvent],
) -> Result<Result<(), String>, CallError> {
    plugin.call(|bindings, store| bindings.call_deliver(store, events))
}
