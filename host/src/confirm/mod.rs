//! Confirmation: the record checked against the cluster itself (`logistis serve --confirm`).
//!
//! A validating webhook sees a change before it is stored, so a recorded change may never
//! happen (denied later, conflicted, forged), and changes made while Logistis is down pass
//! unrecorded. This module watches every resource the webhook covers (found by discovery,
//! filtered by `--confirm-include/--confirm-exclude`) with kube-runtime's `watcher` (list,
//! then watch; relist on 410 Gone; bookmarks; back-off) and compares what it shows with the
//! newest stored events of that object — there is no cache of the cluster, so memory does
//! not grow with it.
//!
//! - [`compare`]: pure — the rules that make an event `confirmed`, `phantom`, or record an
//!   `observed` change.
//! - [`watch`]: one task per resource: the watch stream, catch-up after each (re)list
//!   (objects that changed or vanished while nobody watched become `observed`), rate-bounded.
//! - [`deadline`]: pending events that no watch event matched in time become `phantom`.
//! - [`discovery`]: which resources to watch, and the include/exclude patterns.
//! - [`observed`]: an observed change as an event (user unknown, `managedFields` hint).
//! - [`metrics`]: lag, counts per status, restarts and relists, catch-up work.
//!
//! The webhook calls [`Confirmer::mark`] on every event it records: a change of a watched
//! resource starts `pending`. Every status change goes through the store's writer thread.

pub mod compare;
pub mod deadline;
pub mod discovery;
pub mod metrics;
pub mod observed;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use logistis_api::{Event, Operation, Status};
use tokio_util::sync::CancellationToken;

pub use discovery::ResourcePattern;
pub use metrics::ConfirmMetrics;

use crate::admission::Redactor;
use crate::store::Store;

/// The default `--confirm-deadline`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// The default `--confirm-catchup-rate`: objects compared per second during a (re)list.
pub const DEFAULT_CATCHUP_RATE: u32 = 1000;
/// Objects per list page: what a (re)list holds in memory at once.
pub const LIST_PAGE_SIZE: u32 = 500;
/// How often discovery runs again, to watch resources that appeared (a new CRD).
pub const REDISCOVER_INTERVAL: Duration = Duration::from_secs(60);

/// Validated `--confirm*` settings.
#[derive(Debug, Clone)]
pub struct ConfirmSettings {
    /// A pending event no watch event matched this long after the watch caught up past it
    /// becomes a phantom.
    pub deadline: Duration,
    /// Watch only these resources (empty: every resource discovery finds).
    pub include: Vec<ResourcePattern>,
    /// Never these (in addition to [`discovery::DEFAULT_EXCLUDE`]).
    pub exclude: Vec<ResourcePattern>,
    /// Objects in these namespaces are not compared (the webhook does not see them either).
    pub exclude_namespaces: Vec<String>,
    pub catchup_rate: u32,
    pub page_size: u32,
    pub rediscover_interval: Duration,
}

impl Default for ConfirmSettings {
    fn default() -> Self {
        ConfirmSettings {
            deadline: DEFAULT_DEADLINE,
            include: Vec::new(),
            exclude: Vec::new(),
            exclude_namespaces: Vec::new(),
            catchup_rate: DEFAULT_CATCHUP_RATE,
            page_size: LIST_PAGE_SIZE,
            rediscover_interval: REDISCOVER_INTERVAL,
        }
    }
}

/// A watched resource: `(group, plural)`.
pub type ResourceKey = (String, String);

/// What the other tasks need to know of one resource's watch.
#[derive(Debug)]
pub struct ResourceState {
    pub resource: kube::discovery::ApiResource,
    /// Held while one object of this resource is compared and its verdicts written, so the
    /// watch and the deadline sweep never decide about the same event at once.
    pub lock: tokio::sync::Mutex<()>,
    /// Since when the watch has delivered everything (after a list, and since the last
    /// error); `None` while (re)connecting.
    pub healthy_since: Mutex<Option<DateTime<Utc>>>,
    /// The watch is waiting for the API server: everything sent so far is processed.
    pub idle: AtomicBool,
    /// The last time it was idle.
    pub caught_up_at: Mutex<DateTime<Utc>>,
}

impl ResourceState {
    fn new(resource: kube::discovery::ApiResource) -> ResourceState {
        ResourceState {
            resource,
            lock: tokio::sync::Mutex::new(()),
            healthy_since: Mutex::new(None),
            idle: AtomicBool::new(false),
            caught_up_at: Mutex::new(DateTime::<Utc>::MIN_UTC),
        }
    }

    /// Up to when the watch has certainly delivered everything: `None` while not healthy.
    pub fn caught_up(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let since = (*self.healthy_since.lock().unwrap_or_else(|e| e.into_inner()))?;
        let until = if self.idle.load(Ordering::Acquire) {
            now
        } else {
            *self.caught_up_at.lock().unwrap_or_else(|e| e.into_inner())
        };
        Some((since, until))
    }

    pub(crate) fn set_healthy(&self, healthy: bool, now: DateTime<Utc>) {
        let mut since = self.healthy_since.lock().unwrap_or_else(|e| e.into_inner());
        match (healthy, *since) {
            (true, None) => *since = Some(now),
            (false, _) => *since = None,
            (true, Some(_)) => {}
        }
    }
}

/// The confirmation component: shared by the webhook (to mark events pending) and its own
/// tasks.
#[derive(Debug)]
pub struct Confirmer {
    settings: ConfirmSettings,
    /// The resources being watched; `None` until the first discovery answered (events are
    /// then marked pending optimistically, and unmarked by the sweep if not watched).
    watched: ArcSwap<Option<HashSet<ResourceKey>>>,
    resources: Mutex<HashMap<ResourceKey, Arc<ResourceState>>>,
    /// Resources the server may not list or watch (403): not watched until a restart.
    forbidden: Mutex<HashSet<ResourceKey>>,
    pub metrics: ConfirmMetrics,
}

impl Confirmer {
    pub fn new(settings: ConfirmSettings) -> Confirmer {
        Confirmer {
            settings,
            watched: ArcSwap::from_pointee(None),
            resources: Mutex::new(HashMap::new()),
            forbidden: Mutex::new(HashSet::new()),
            metrics: ConfirmMetrics::default(),
        }
    }

    pub fn settings(&self) -> &ConfirmSettings {
        &self.settings
    }

    /// Whether a change to `(group, resource)` in `namespace` is confirmed by the watch:
    /// `Some(true)` watched, `Some(false)` not, `None` not known yet (before discovery).
    pub fn is_watched(&self, group: &str, resource: &str, namespace: &str) -> Option<bool> {
        if self
            .settings
            .exclude_namespaces
            .iter()
            .any(|ns| ns == namespace)
        {
            return Some(false);
        }
        let watched = self.watched.load();
        let watched = watched.as_ref().as_ref()?;
        Some(watched.contains(&(group.to_owned(), resource.to_owned())))
    }

    /// Called by the webhook before an event is appended: a change of a watched resource
    /// starts `pending`. CONNECT, dry runs and subresources that are not a state of the
    /// object (`pods/eviction`, `pods/binding`) have no status.
    pub fn mark(&self, event: &mut Event) {
        let r = &event.resource;
        let state_change = matches!(
            event.operation,
            Operation::Create | Operation::Update | Operation::Delete
        ) && !event.dry_run
            && (r.subresource.is_empty() || r.subresource == "scale");
        if state_change && self.is_watched(&r.group, &r.resource, &r.namespace) != Some(false) {
            event.status = Some(Status::Pending);
            self.metrics.count(Status::Pending);
        }
    }

    /// The state of one watched resource.
    pub fn resource(&self, key: &ResourceKey) -> Option<Arc<ResourceState>> {
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Start discovery, the watches and the deadline sweep; they run until `shutdown`.
    pub fn spawn(
        self: &Arc<Self>,
        store: Store,
        redactor: Redactor,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let confirmer = self.clone();
        tokio::spawn(async move {
            let context = Arc::new(watch::Context {
                confirmer: confirmer.clone(),
                store,
                redactor,
            });
            tokio::spawn(deadline::run(context.clone(), shutdown.clone()));
            discovery::run(context, shutdown).await;
        })
    }

    /// The server may not list or watch this resource: stop confirming it (changes to it
    /// are recorded without a status) until a restart.
    pub(crate) fn forbid(&self, key: &ResourceKey) {
        self.forbidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let watched = self.watched.load();
        if let Some(watched) = watched.as_ref() {
            let mut watched = watched.clone();
            watched.remove(key);
            self.metrics
                .watched_resources
                .set(i64::try_from(watched.len()).unwrap_or(i64::MAX));
            self.watched.store(Arc::new(Some(watched)));
        }
    }

    /// Install the result of a discovery: start watching what is new, stop what is gone.
    pub(crate) fn set_watched(
        &self,
        found: Vec<kube::discovery::ApiResource>,
    ) -> (Vec<Arc<ResourceState>>, Vec<ResourceKey>) {
        let forbidden = self
            .forbidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let found: Vec<_> = found
            .into_iter()
            .filter(|r| !forbidden.contains(&(r.group.clone(), r.plural.clone())))
            .collect();
        let mut resources = self.resources.lock().unwrap_or_else(|e| e.into_inner());
        let keys: HashSet<ResourceKey> = found
            .iter()
            .map(|r| (r.group.clone(), r.plural.clone()))
            .collect();
        let gone: Vec<ResourceKey> = resources
            .keys()
            .filter(|key| !keys.contains(*key))
            .cloned()
            .collect();
        for key in &gone {
            resources.remove(key);
        }
        let mut started = Vec::new();
        for resource in found {
            let key = (resource.group.clone(), resource.plural.clone());
            if let std::collections::hash_map::Entry::Vacant(entry) = resources.entry(key) {
                let state = Arc::new(ResourceState::new(resource));
                entry.insert(state.clone());
                started.push(state);
            }
        }
        self.metrics
            .watched_resources
            .set(i64::try_from(keys.len()).unwrap_or(i64::MAX));
        self.watched.store(Arc::new(Some(keys)));
        (started, gone)
    }
}
