//! The host side of `wit/`: generated bindings of both worlds (sharing one set of types),
//! the per-store state every plugin instance gets, and the event conversion.
//!
//! The state grants nothing by default: a WASI context with no files, no environment, no
//! arguments and no sockets (stdio discarded), and a `wasi:http` context whose every
//! request is checked against the sink's allow-list. Predicates are linked without
//! `wasi:http` at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use logistis_api::Event;
use wasmtime::component::{HasData, ResourceTable};
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::budget::MemoryBudget;

/// Bindings of the `predicate` world.
pub mod predicate {
    wasmtime::component::bindgen!({ path: "../wit", world: "predicate" });
}

/// Bindings of the `sink` world; the types and the host interface are the predicate's.
pub mod sink {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sink",
        with: {
            "logistis:plugin/types": super::predicate::logistis::plugin::types,
            "logistis:plugin/host": super::predicate::logistis::plugin::host,
        },
    });
}

pub use predicate::logistis::plugin::types::{
    Event as WitEvent, Level, ObjectRef as WitObjectRef, Operation as WitOperation,
    User as WitUser, Verdict,
};

/// What one plugin instance's `Store` holds.
pub struct StoreState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: AllowList,
    pub(crate) limits: Limits,
    pub(crate) clock: CallClock,
}

impl StoreState {
    pub fn new(
        plugin: Arc<str>,
        memory_bytes: u64,
        budget: Arc<MemoryBudget>,
        allowed_hosts: Arc<[String]>,
        http_timeout: Duration,
        capture: Option<CapturedRequests>,
    ) -> Self {
        StoreState {
            plugin,
            // Nothing inherited: no env, args, preopens, sockets; stdio goes nowhere.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: AllowList {
                hosts: allowed_hosts,
                timeout: http_timeout,
                capture,
            },
            limits: Limits {
                memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
                budget,
                charged: 0,
                exceeded: None,
                high_water: 0,
            },
            clock: CallClock::default(),
        }
    }
}

/// Which time limit ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The plugin's own deadline, in ticks of running time.
    Cpu,
    /// The wall-clock limit: the review's ceiling for a predicate, the delivery deadline
    /// for a sink.
    Wall,
}

/// The limits of the call in progress, checked on every epoch tick (1 ms) while guest code
/// runs; a call shorter than a tick is never interrupted to look.
///
/// The deadline is counted in ticks *the call was running for*: the callback fires once
/// per tick while the guest runs, and a thread that was descheduled for 50 ticks sees one
/// callback when it resumes, not 50 (the next deadline is one tick from the current
/// epoch). So a predicate waiting for a core while a neighbour loops is not charged for
/// the wait; the wall-clock limit still bounds the whole call.
#[derive(Debug, Clone, Default)]
pub struct CallClock {
    ticks_left: u64,
    wall_limit: Option<Instant>,
    pub(crate) expired: Option<Expired>,
}

impl CallClock {
    /// Start a call: `cpu` of running time, and never past `wall`.
    pub fn start(&mut self, cpu: Duration, wall: Option<Instant>) {
        let tick = super::engine::TICK.as_micros().max(1);
        *self = CallClock {
            ticks_left: u64::try_from(cpu.as_micros().div_ceil(tick))
                .unwrap_or(u64::MAX)
                .max(1),
            wall_limit: wall,
            expired: None,
        };
    }

    /// One tick of running time has passed: which limit has been reached, if any (and
    /// remember it).
    pub fn tick(&mut self) -> Option<Expired> {
        self.ticks_left = self.ticks_left.saturating_sub(1);
        if self.wall_limit.is_some_and(|wall| Instant::now() >= wall) {
            self.expired = Some(Expired::Wall);
        } else if self.ticks_left == 0 {
            self.expired = Some(Expired::Cpu);
        }
        self.expired
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// `HasData` for our own interfaces: the host functions see the whole state.
pub struct Host;

impl HasData for Host {
    type Data<'a> = &'a mut StoreState;
}

impl predicate::logistis::plugin::types::Host for StoreState {}

impl predicate::logistis::plugin::host::Host for StoreState {
    fn log(&mut self, level: Level, message: String) {
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "logistis::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "logistis::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "logistis::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "logistis::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "logistis::plugin", plugin, "{message}"),
        }
    }
}

/// Which memory limit a denied growth hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryExceeded {
    /// The plugin's `memory-mb`.
    Instance,
    /// The total of all instances (`--plugin-memory-budget`).
    Budget,
}

/// Memory cap of one instance, and its share of the total budget. A denied growth traps
/// (rather than returning -1 to the guest, which most languages turn into an abort anyway)
/// and is remembered, so the call is reported as "memory" rather than as a generic trap.
/// What the instance was charged is given back when its store is dropped.
pub struct Limits {
    memory_bytes: usize,
    budget: Arc<MemoryBudget>,
    charged: u64,
    pub(crate) exceeded: Option<MemoryExceeded>,
    /// The largest linear memory this instance has grown to.
    pub(crate) high_water: usize,
}

impl Drop for Limits {
    fn drop(&mut self) {
        self.budget.release(self.charged);
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        if desired > self.memory_bytes {
            self.exceeded = Some(MemoryExceeded::Instance);
            wasmtime::bail!("memory limit of {} bytes exceeded", self.memory_bytes);
        }
        let growth = desired.saturating_sub(current) as u64;
        if !self.budget.try_charge(growth) {
            self.exceeded = Some(MemoryExceeded::Budget);
            wasmtime::bail!(
                "the plugins' memory budget of {} bytes is used up",
                self.budget.limit()
            );
        }
        self.charged += growth;
        self.high_water = self.high_water.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        // Tables hold function references; a million is far beyond any real plugin.
        Ok(desired <= 1_000_000)
    }
}

/// `wasi:http` hooks: only the allow-listed hosts, and a deadline on every request
/// (epoch interruption cannot stop a guest blocked in the host on a slow server). With
/// `capture` (`logistis plugin run`), requests are recorded instead of sent.
struct AllowList {
    hosts: Arc<[String]>,
    timeout: Duration,
    capture: Option<CapturedRequests>,
}

impl AllowList {
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let host = host.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let with_port = format!("{host}:{port}");
        self.hosts
            .iter()
            .any(|allowed| *allowed == host || *allowed == with_port)
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for AllowList {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        if let Some(captured) = &self.capture {
            return Box::new(capture(request, captured.clone()));
        }
        if !self.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "plugin request to a host not on its allow-list refused");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let timeout = self.timeout;
        let send =
            Box::into_pin(wasmtime_wasi_http::default_hooks().send_request(request, options, fut));
        Box::new(async move {
            match tokio::time::timeout(timeout, send).await {
                Ok(result) => result,
                Err(_) => Err(wasmtime_wasi_http::Error::HttpResponseTimeout),
            }
        })
    }
}

/// Where `logistis plugin run` puts the requests a sink makes instead of sending them,
/// each as `METHOD URI`, the headers, a blank line and the body.
#[derive(Debug, Clone, Default)]
pub struct CapturedRequests(Arc<std::sync::Mutex<Vec<String>>>);

impl CapturedRequests {
    /// The requests captured so far, emptying the list.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, request: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request);
    }
}

/// Record a request and answer it `200 OK` with an empty body, without sending it.
async fn capture(
    request: http::Request<wasmtime_wasi_http::WasiBody>,
    captured: CapturedRequests,
) -> SendResult {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut text = format!("{} {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&body));
    captured.push(text);
    let empty = http_body_util::Empty::<bytes::Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let response = http::Response::builder()
        .status(200)
        .body(empty)
        .map_err(|error| wasmtime_wasi_http::Error::InternalError(Some(error.to_string())))?;
    let io: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
        Box::new(async { Ok(()) });
    Ok((response, io))
}

/// The event as the guests see it. The objects are serialised here, once per event for
/// the whole chain; guests parse only what they need.
pub fn to_wit(event: &Event, id: Option<String>) -> WitEvent {
    let json = |value: &Option<serde_json::Value>| value.as_ref().map(|v| v.to_string());
    let operation = match &event.operation {
        logistis_api::Operation::Create => WitOperation::Create,
        logistis_api::Operation::Update => WitOperation::Update,
        logistis_api::Operation::Delete => WitOperation::Delete,
        logistis_api::Operation::Connect => WitOperation::Connect,
        logistis_api::Operation::Other(other) => WitOperation::Other(other.clone()),
    };
    let r = &event.resource;
    WitEvent {
        id: id.unwrap_or_default(),
        uid: event.uid.clone(),
        time: event
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        operation,
        user: WitUser {
            username: event.user.username.clone(),
            uid: event.user.uid.clone(),
            groups: event.user.groups.clone(),
            extra: event
                .user
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
        resource: WitObjectRef {
            group: r.group.clone(),
            version: r.version.clone(),
            kind: r.kind.clone(),
            resource: r.resource.clone(),
            subresource: r.subresource.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        },
        object_uid: event.object_uid.clone(),
        field_manager: event.field_manager.clone(),
        dry_run: event.dry_run,
        patch: event.patch.to_string(),
        object: json(&event.object),
        old_object: json(&event.old_object),
        options: json(&event.options),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("https://audit.example.com/hook", true)]
    #[case("https://AUDIT.example.com:8443/hook", true)]
    #[case("http://127.0.0.1:8080/hook", true)]
    #[case("http://127.0.0.1/hook", false)]
    #[case("http://127.0.0.1:8081/hook", false)]
    #[case("https://audit.example.com.evil.test/hook", false)]
    #[case("/relative", false)]
    fn only_listed_hosts_are_allowed(#[case] uri: &str, #[case] allowed: bool) {
        // A bare host allows any port; `host:port` only that port (80/443 by scheme).
        let hooks = AllowList {
            hosts: Arc::from(["audit.example.com".to_owned(), "127.0.0.1:8080".to_owned()]),
            timeout: Duration::from_secs(1),
            capture: None,
        };
        assert_eq!(hooks.allows(&uri.parse().unwrap()), allowed, "{uri}");
    }
}
