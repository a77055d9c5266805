//! One resource's watch: kube-runtime's `watcher` (a paged list, then a watch from its
//! resourceVersion; on 410 Gone a new list; bookmarks; exponential back-off on errors), each
//! object compared with the store as it comes.
//!
//! After every list — the first one at start, and one after each 410 Gone — the listed
//! objects are compared like watch events (so what changed while nobody watched is recorded
//! as `observed`), and then every stored object of the kind that the list did not contain
//! and whose newest known state is not a deletion is recorded as an `observed` deletion.
//! That catch-up is bounded: pages of `LIST_PAGE_SIZE` objects, at most
//! `--confirm-catchup-rate` objects compared per second, and memory for the list of names
//! seen (8 bytes per object, freed when the list is done).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use logistis_api::{Event, Operation, Status};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::compare::{self, Seen};
use super::{Confirmer, ResourceState, metrics::ConfirmMetrics, observed};
use crate::admission::{Redactor, redact};
use crate::store::{EventFilter, ObjectKey, Scan, Store};

/// At most this many of an object's newest events are compared (its pending ones and the
/// state before them): a long run of phantoms must not make one comparison unbounded.
const MAX_TAIL: usize = 200;

/// What every watch task shares.
#[derive(Debug)]
pub struct Context {
    pub confirmer: Arc<Confirmer>,
    pub store: Store,
    pub redactor: Redactor,
}

/// An object as the API server sent it: the JSON untouched (so it compares with what the
/// reviews carried byte for byte), and the few metadata fields the watcher needs.
#[derive(Clone)]
pub struct RawObject {
    metadata: ObjectMeta,
    pub value: Value,
}

// Never print the object: a Secret arrives in clear.
impl std::fmt::Debug for RawObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawObject")
            .field("namespace", &self.metadata.namespace)
            .field("name", &self.metadata.name)
            .field("resourceVersion", &self.metadata.resource_version)
            .finish_non_exhaustive()
    }
}

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let text = |field: &str| {
            value
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let metadata = ObjectMeta {
            name: text("name"),
            namespace: text("namespace"),
            resource_version: text("resourceVersion"),
            uid: text("uid"),
            ..ObjectMeta::default()
        };
        Ok(RawObject { metadata, value })
    }
}

impl kube::Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Paces the catch-up: at most `rate` objects per second.
struct Pace {
    rate: u32,
    started: Instant,
    done: u64,
}

impl Pace {
    fn new(rate: u32) -> Pace {
        Pace {
            rate: rate.max(1),
            started: Instant::now(),
            done: 0,
        }
    }

    async fn one(&mut self) {
        self.done += 1;
        let due = Duration::from_secs_f64(self.done as f64 / f64::from(self.rate));
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

fn name_hash(namespace: &str, name: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    namespace.hash(&mut hasher);
    name.hash(&mut hasher);
    hasher.finish()
}

/// Watch one resource until `shutdown` (or until discovery aborts the task).
pub async fn run(
    context: Arc<Context>,
    state: Arc<ResourceState>,
    client: kube::Client,
    shutdown: CancellationToken,
) {
    let resource = state.resource.clone();
    let labels = ConfirmMetrics::resource(&resource);
    let metrics = context.confirmer.metrics.clone();
    let api: Api<RawObject> = Api::all_with(client, &resource);
    let config = watcher::Config::default().page_size(context.confirmer.settings().page_size);
    let stream = watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    // Names seen by the current list, for the catch-up of vanished objects.
    let mut listed: Option<HashSet<u64>> = None;
    let mut pace = Pace::new(context.confirmer.settings().catchup_rate);
    loop {
        let item = match stream.next().now_or_never() {
            Some(item) => item,
            None => {
                // Nothing buffered: every event sent so far has been handled.
                state.idle.store(true, Ordering::Release);
                let item = tokio::select! {
                    () = shutdown.cancelled() => return,
                    item = stream.next() => item,
                };
                *state.caught_up_at.lock().unwrap_or_else(|e| e.into_inner()) = Utc::now();
                state.idle.store(false, Ordering::Release);
                item
            }
        };
        let Some(item) = item else {
            return;
        };
        match item {
            Ok(watcher::Event::Init) => {
                metrics.relists.get_or_create(&labels).inc();
                state.set_healthy(false, Utc::now());
                listed = Some(HashSet::new());
                pace = Pace::new(context.confirmer.settings().catchup_rate);
                tracing::debug!(resource = labels.resource, "confirmation: listing");
            }
            Ok(watcher::Event::InitApply(object)) => {
                if let Some(listed) = &mut listed {
                    listed.insert(name_hash(
                        object.metadata.namespace.as_deref().unwrap_or(""),
                        object.metadata.name.as_deref().unwrap_or(""),
                    ));
                }
                metrics.catchup_objects.inc();
                handle(&context, &state, object, false).await;
                pace.one().await;
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(listed) = listed.take() {
                    catch_up_vanished(&context, &state, &listed, &mut pace).await;
                }
                state.set_healthy(true, Utc::now());
                tracing::debug!(
                    resource = labels.resource,
                    "confirmation: list compared, watching"
                );
            }
            Ok(watcher::Event::Apply(object)) => {
                state.set_healthy(true, Utc::now());
                handle(&context, &state, object, false).await;
            }
            Ok(watcher::Event::Delete(object)) => {
                state.set_healthy(true, Utc::now());
                handle(&context, &state, object, true).await;
            }
            Err(error) if forbidden(&error) => {
                tracing::warn!(
                    resource = labels.resource,
                    "confirmation: the server may not list or watch this resource (403); its changes are recorded unconfirmed (grant list and watch, or leave it out with --confirm-exclude)"
                );
                state.set_healthy(false, Utc::now());
                context
                    .confirmer
                    .forbid(&(resource.group.clone(), resource.plural.clone()));
                return;
            }
            Err(error) => {
                metrics.restarts.get_or_create(&labels).inc();
                state.set_healthy(false, Utc::now());
                tracing::warn!(
                    resource = labels.resource,
                    error = %crate::telemetry::chain(&error),
                    "confirmation: watch failed; retrying with back-off"
                );
            }
        }
    }
}

/// A 403 on the list or the watch: RBAC does not grant it.
fn forbidden(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 403,
        watcher::Error::WatchError(status) => status.code == 403,
        _ => false,
    }
}

/// Redact a Secret before anything looks at it, exactly as admission does.
fn redacted(context: &Context, resource: &ApiResource, mut object: Value) -> Value {
    if redact::is_secret(
        &resource.group,
        &resource.kind,
        (&resource.group, &resource.plural),
        Some(&object),
    ) {
        context.redactor.redact_secret(&mut object);
    }
    object
}

/// Compare one object (present, or gone when `deleted`) and write what follows.
async fn handle(context: &Arc<Context>, state: &ResourceState, object: RawObject, deleted: bool) {
    let resource = &state.resource;
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let Some(name) = object.metadata.name.clone() else {
        return;
    };
    if context
        .confirmer
        .settings()
        .exclude_namespaces
        .contains(&namespace)
    {
        return;
    }
    let resource_version = object.metadata.resource_version.clone();
    let value = redacted(context, resource, object.value);
    let seen = if deleted {
        Seen::Gone { last: Some(value) }
    } else {
        Seen::Present { object: value }
    };
    let _guard = state.lock.lock().await;
    decide(
        context,
        resource,
        &namespace,
        &name,
        &seen,
        resource_version,
    )
    .await;
}

/// Read the object's tail, compare, write the verdicts and the observed changes.
async fn decide(
    context: &Arc<Context>,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
    seen: &Seen,
    resource_version: Option<String>,
) {
    let key = ObjectKey {
        group: resource.group.clone(),
        kind: resource.kind.clone(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let store = context.store.clone();
    let tail = match tokio::task::spawn_blocking(move || read_tail(&store, &key)).await {
        Ok(Ok(tail)) => tail,
        Ok(Err(error)) => {
            tracing::error!(error = %crate::telemetry::chain(&error), namespace, name, "confirmation: cannot read the object's events");
            return;
        }
        Err(_) => return,
    };
    let times: Vec<(logistis_api::EventId, chrono::DateTime<Utc>)> =
        tail.iter().map(|e| (e.id, e.time)).collect();
    let now = Utc::now();
    let decision = compare::compare(tail, seen, resource_version.as_deref(), now);
    if decision.is_empty() {
        return;
    }
    let metrics = &context.confirmer.metrics;
    for update in &decision.updates {
        let Some(record) = &update.record else {
            continue;
        };
        metrics.count(record.status);
        if record.status == Status::Confirmed
            && let Some((_, time)) = times.iter().find(|(id, _)| *id == update.id)
        {
            let lag = (now - *time).to_std().unwrap_or_default();
            metrics.lag.observe(lag.as_secs_f64());
        }
        tracing::debug!(id = %update.id, status = %record.status, namespace, name, "confirmation: status");
    }
    if !decision.updates.is_empty() {
        match context.store.set_statuses(decision.updates).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(error = %crate::telemetry::chain(&error), "confirmation: cannot store statuses");
            }
            Err(_) => tracing::error!("confirmation: the store writer stopped"),
        }
    }
    for change in decision.observed {
        let operation = change.operation.clone();
        let event = observed::event(
            resource,
            namespace,
            name,
            change,
            resource_version.as_deref(),
            Utc::now(),
        );
        match context.store.append(Box::new(event)).await {
            Ok(Ok(appended)) => {
                metrics.count(Status::Observed);
                tracing::info!(?appended, %operation, resource = super::metrics::discovery_name(resource), namespace, name, "confirmation: observed a change no review explains");
            }
            Ok(Err(error)) => {
                tracing::error!(error = %crate::telemetry::chain(&error), "confirmation: cannot record an observed change");
            }
            Err(_) => tracing::error!("confirmation: the store writer stopped"),
        }
    }
}

/// Whether an event holds a whole state of the object that is known to have happened
/// (not pending, not phantom): the newest such one ends the tail, so every pending event
/// after it is in the comparison.
fn is_anchor(event: &Event) -> bool {
    !matches!(event.status, Some(Status::Phantom | Status::Pending))
        && !event.dry_run
        && match event.operation {
            Operation::Create | Operation::Delete => event.resource.subresource.is_empty(),
            Operation::Update => event.resource.subresource.is_empty(),
            _ => false,
        }
}

/// The object's newest events, oldest first, with their objects: back to the newest anchor
/// (or [`MAX_TAIL`] events). Through the store's public reads: the object index, newest
/// first, then each event.
pub fn read_tail(store: &Store, key: &ObjectKey) -> crate::store::Result<Vec<Event>> {
    let filter = EventFilter {
        group: Some(key.group.clone()),
        kind: Some(key.kind.clone()),
        namespace: Some(key.namespace.clone()),
        name: Some(key.name.clone()),
        ..EventFilter::default()
    };
    let mut ids = Vec::new();
    let mut before = None;
    'pages: loop {
        let page = store.list_events(
            &filter,
            Scan {
                limit: 16,
                before,
                budget: Scan::DEFAULT_BUDGET,
            },
        )?;
        for event in &page.items {
            ids.push(event.id);
            if is_anchor(event) || ids.len() >= MAX_TAIL {
                break 'pages;
            }
        }
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    let mut events = Vec::with_capacity(ids.len());
    for id in ids.into_iter().rev() {
        if let Some(event) = store.get_event(id)? {
            events.push(event);
        }
    }
    Ok(events)
}

/// After a list: every stored object of the kind that the list did not show, whose newest
/// known state is alive, was deleted while nobody watched.
async fn catch_up_vanished(
    context: &Arc<Context>,
    state: &ResourceState,
    listed: &HashSet<u64>,
    pace: &mut Pace,
) {
    let resource = &state.resource;
    let mut after: Option<(String, String)> = None;
    loop {
        let store = context.store.clone();
        let (group, kind) = (resource.group.clone(), resource.kind.clone());
        let cursor = after.clone();
        let page = tokio::task::spawn_blocking(move || {
            store.object_names(
                &group,
                &kind,
                cursor
                    .as_ref()
                    .map(|(ns, name)| (ns.as_str(), name.as_str())),
                500,
            )
        })
        .await;
        let names = match page {
            Ok(Ok(names)) => names,
            Ok(Err(error)) => {
                tracing::error!(error = %crate::telemetry::chain(&error), "confirmation: cannot list stored objects");
                return;
            }
            Err(_) => return,
        };
        let Some(last) = names.last().cloned() else {
            return;
        };
        for (namespace, name) in names {
            if listed.contains(&name_hash(&namespace, &name))
                || context
                    .confirmer
                    .settings()
                    .exclude_namespaces
                    .contains(&namespace)
            {
                continue;
            }
            context.confirmer.metrics.catchup_objects.inc();
            let _guard = state.lock.lock().await;
            decide(
                context,
                resource,
                &namespace,
                &name,
                &Seen::Gone { last: None },
                None,
            )
            .await;
            drop(_guard);
            pace.one().await;
        }
        after = Some(last);
    }
}
