//! History query benchmark: `versions`, `diff` and `blame` (plus `history` and `bisect`) of
//! one Deployment with 100 versions, stored among 1M events in a real fjall store, through
//! the real `Store` and the same calls the HTTP handlers make (range scan, rebuild, answer,
//! JSON encoding); TLS and HTTP framing are left out. Prints median and p99 per query.
//!
//! The store is filled by bulk loads (`Store::append_bulk`, which writes sorted tables) so
//! that ten million events take minutes; `LOGISTIS_BENCH_FILL=append` fills it through the
//! append path instead, as a server would. The fill's time is printed.
//!
//! `cargo bench -p logistis --bench history` — `LOGISTIS_BENCH_EVENTS` (default 1000000)
//! and `LOGISTIS_BENCH_RUNS` (default 200) change the sizes; `LOGISTIS_BENCH_DATA_DIR` keeps
//! the filled store there as a server's data dir, and a later run with the same size reuses
//! it instead of filling it again.

// The server's allocator (see `main.rs`), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use logistis::admission::{NewEvent, noise};
use logistis::history::{self, FieldPath, Timeline};
use logistis::store::{Durability, ObjectKey, Store, StoreSettings};
use logistis_api::{Event, EventId, ObjectRef, Operation, ResourceRef, UserInfo};
use serde_json::{Value, json};

const VERSIONS: usize = 100;
/// Appends in flight: enough for the writer's group commit to batch them.
const WINDOW: usize = 4096;
/// Events per bulk load.
const BULK_CHUNK: usize = 200_000;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn resource(kind: &str, resource: &str, namespace: &str, name: &str) -> ResourceRef {
    ResourceRef {
        group: "apps".into(),
        version: "v1".into(),
        kind: kind.into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn new_event(
    operation: Operation,
    user: &str,
    resource: ResourceRef,
    object: Value,
    old: Option<Value>,
) -> NewEvent {
    let patch = match &old {
        Some(old) => {
            serde_json::to_value(json_patch::diff(&noise::strip(old), &noise::strip(&object)))
                .expect("a patch encodes")
        }
        None => json!([{"op": "add", "path": "", "value": noise::strip(&object)}]),
    };
    NewEvent {
        event: Event {
            id: EventId(0),
            cluster: String::new(),
            uid: String::new(),
            time: Utc::now(),
            operation,
            user: UserInfo {
                username: user.into(),
                groups: vec!["system:authenticated".into()],
                ..UserInfo::default()
            },
            resource,
            object_uid: object
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_owned),
            field_manager: Some("kubectl-client-side-apply".into()),
            dry_run: false,
            patch,
            options: None,
            object: Some(object),
            old_object: old,
            status: None,
            confirmation: None,
            observed_by: None,
            denied: None,
        },
        dedupe_key: None,
    }
}

/// A realistic Deployment (about 2 KB of JSON) at step `step` of its history.
fn deployment(step: usize) -> Value {
    let containers: Vec<Value> = (0..1 + step % 3)
        .map(|c| {
            json!({
                "name": format!("c{c}"), "image": format!("registry.example.com/shop/c{c}:1.{}", step / 7),
                "imagePullPolicy": "IfNotPresent",
                "args": ["--listen=:8080", format!("--workers={}", 2 + step % 5), "--log-format=json"],
                "env": [{"name": "MODE", "value": "prod"}, {"name": "REGION", "value": "eu-west-1"}],
                "ports": [{"containerPort": 8080 + c, "protocol": "TCP", "name": "http"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
            })
        })
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "checkout", "namespace": "shop", "uid": "bench-0001",
            "resourceVersion": (1000 + step).to_string(), "generation": step + 1,
            "labels": {"app": "checkout", "team": "payments", "release": format!("r{}", step / 10)},
            "annotations": {"deployment.kubernetes.io/revision": (step / 7).to_string(), "owner": "payments"}
        },
        "spec": {
            "replicas": 2 + step % 4,
            "selector": {"matchLabels": {"app": "checkout"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "checkout", "release": format!("r{}", step / 10)}},
                "spec": {"containers": containers, "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst"}
            }
        },
        "status": {"replicas": 2, "readyReplicas": 2, "observedGeneration": step + 1}
    })
}

/// One of the other objects: small ConfigMaps spread over namespaces.
fn filler(n: usize) -> NewEvent {
    let name = format!("cm-{}", n % 50_000);
    let namespace = format!("ns-{}", n % 200);
    let object = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("u-{}", n % 50_000)},
        "data": {"key": format!("value-{n}")}
    });
    let mut resource = resource("ConfigMap", "configmaps", &namespace, &name);
    resource.group = String::new();
    new_event(
        Operation::Update,
        "system:serviceaccount:ci:deployer",
        resource,
        object,
        None,
    )
}

/// The `n`th of `total` events: the Deployment's next version every `total / VERSIONS`
/// events, a filler otherwise.
struct Events {
    spacing: usize,
    step: usize,
    previous: Option<Value>,
}

impl Events {
    fn new(total: usize) -> Events {
        Events {
            spacing: total / VERSIONS,
            step: 0,
            previous: None,
        }
    }

    fn event(&mut self, n: usize) -> NewEvent {
        if !n.is_multiple_of(self.spacing) || self.step >= VERSIONS {
            return filler(n);
        }
        let step = self.step;
        self.step += 1;
        let object = deployment(step);
        let operation = if step == 0 {
            Operation::Create
        } else {
            Operation::Update
        };
        let users = ["alice", "bob", "carol", "system:serviceaccount:ci:deployer"];
        new_event(
            operation,
            users[step % users.len()],
            resource("Deployment", "deployments", "shop", "checkout"),
            object.clone(),
            self.previous.replace(object),
        )
    }
}

/// Through the store's append path, as a server writes: `WINDOW` appends in flight.
fn fill_by_appends(store: &Store, total: usize) -> Result<()> {
    let mut pending = std::collections::VecDeque::with_capacity(WINDOW);
    let mut events = Events::new(total);
    let started = Instant::now();
    for n in 0..total {
        pending.push_back(store.append(Box::new(events.event(n))));
        if pending.len() == WINDOW
            && let Some(receiver) = pending.pop_front()
        {
            receiver.blocking_recv().context("writer stopped")??;
        }
        if n > 0 && n % 200_000 == 0 {
            eprintln!("  {n} events in {:.0?}", started.elapsed());
        }
    }
    for receiver in pending {
        receiver.blocking_recv().context("writer stopped")??;
    }
    Ok(())
}

/// Through the bulk path (`Store::append_bulk`: sorted tables, no journal), `BULK_CHUNK`
/// events at a time; the next chunk is made while the writer stores the last.
fn fill_in_bulk(store: &Store, total: usize) -> Result<()> {
    let mut events = Events::new(total);
    let started = Instant::now();
    let mut in_flight = None;
    let mut n = 0;
    while n < total {
        let end = (n + BULK_CHUNK).min(total);
        let chunk: Vec<NewEvent> = (n..end).map(|n| events.event(n)).collect();
        let receiver = store.append_bulk(chunk);
        if let Some(previous) = in_flight.replace(receiver) {
            wait_for_chunk(previous)?;
        }
        n = end;
        eprintln!("  {n} events in {:.0?}", started.elapsed());
    }
    if let Some(last) = in_flight {
        wait_for_chunk(last)?;
    }
    Ok(())
}

fn wait_for_chunk(
    receiver: tokio::sync::oneshot::Receiver<
        logistis::store::Result<Vec<logistis::store::Result<logistis::store::Appended>>>,
    >,
) -> Result<()> {
    for outcome in receiver.blocking_recv().context("writer stopped")?? {
        outcome?;
    }
    Ok(())
}

/// A query of the bench: its name and a call that returns the encoded answer's size.
type Query<'a> = (&'static str, Box<dyn FnMut() -> Result<usize> + 'a>);

/// Median and p99 of `runs` calls of each query. The queries take turns (one call of each,
/// `runs` times), so a machine that slows down or speeds up during the bench moves them all
/// alike instead of the ones that happened to run at that moment.
fn measure(runs: usize, mut queries: Vec<Query<'_>>) -> Result<()> {
    // LOGISTIS_BENCH_QUERIES=blame,diff runs only those (e.g. under `perf record`).
    if let Ok(only) = std::env::var("LOGISTIS_BENCH_QUERIES") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        queries.retain(|(name, _)| only.contains(name));
        anyhow::ensure!(
            !queries.is_empty(),
            "LOGISTIS_BENCH_QUERIES names none of the queries"
        );
    }
    let mut bytes = Vec::with_capacity(queries.len());
    for (_, query) in &mut queries {
        bytes.push(query()?); // warm the block cache, as a live server's would be
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); queries.len()];
    for _ in 0..runs {
        for ((_, query), times) in queries.iter_mut().zip(&mut times) {
            let started = Instant::now();
            std::hint::black_box(query()?);
            times.push(started.elapsed());
        }
    }
    for (((name, _), mut times), bytes) in queries.into_iter().zip(times).zip(bytes) {
        times.sort();
        let median = times[runs / 2];
        let p99 = times[(runs * 99 / 100).min(runs - 1)];
        println!(
            "{name:<10} {:>10.2} {:>10.2} {:>10}",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            bytes
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let total = env_or("LOGISTIS_BENCH_EVENTS", 1_000_000).max(VERSIONS);
    let runs = env_or("LOGISTIS_BENCH_RUNS", 200).max(1);
    // LOGISTIS_BENCH_DATA_DIR keeps the filled store as a server's data dir (`DIR/store`),
    // e.g. to measure `logistis serve --data-dir DIR` on a store of that size.
    let kept = std::env::var_os("LOGISTIS_BENCH_DATA_DIR").map(std::path::PathBuf::from);
    let temporary = tempfile::tempdir()?;
    let store_dir = match &kept {
        Some(data_dir) => data_dir.join("store"),
        None => temporary.path().to_path_buf(),
    };
    let settings = StoreSettings {
        durability: Durability::Async,
        max_versions_per_object: 0,
        retention: None,
        ..StoreSettings::default()
    };
    // Filled with room for the newest version of every filler object (the writer compresses
    // each against it, and reads it back from the store when it is not in memory), as an
    // import would be given; queried with a server's default settings.
    let filling = StoreSettings {
        memory_budget_bytes: 512 << 20,
        ..settings.clone()
    };
    let store = Store::open(&store_dir, filling)?;
    // LOGISTIS_BENCH_FILL=append fills through the append path instead, as a server writes.
    let by_appends = std::env::var("LOGISTIS_BENCH_FILL").is_ok_and(|v| v == "append");
    let how = if by_appends { "appends" } else { "bulk loads" };
    let stored: u64 = store.namespaces()?.iter().map(|n| n.events).sum();
    if kept.is_some() && stored == total as u64 {
        println!("reusing the {stored} events already in the kept store");
    } else {
        anyhow::ensure!(
            stored == 0,
            "the kept store holds {stored} events, not {total}"
        );
        eprintln!(
            "filling {total} events ({VERSIONS} versions of shop/checkout among them) by {how}"
        );
        let started = Instant::now();
        if by_appends {
            fill_by_appends(&store, total)?;
        } else {
            fill_in_bulk(&store, total)?;
        }
        let fill = started.elapsed();
        println!(
            "filled {total} events by {how} in {:.1} s ({:.0} events/s)",
            fill.as_secs_f64(),
            total as f64 / fill.as_secs_f64()
        );
    }

    store.close();
    // LOGISTIS_BENCH_STORE_MEMORY (bytes) queries with another `--store-memory`.
    let settings = StoreSettings {
        memory_budget_bytes: std::env::var("LOGISTIS_BENCH_STORE_MEMORY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(settings.memory_budget_bytes),
        ..settings
    };
    println!(
        "queried with a store memory budget of {} MiB",
        settings.memory_budget_bytes >> 20
    );
    let store = Store::open(&store_dir, settings)?;

    let key = ObjectKey {
        group: "apps".into(),
        kind: "deployment".into(),
        namespace: "shop".into(),
        name: "checkout".into(),
    };
    let object = ObjectRef {
        group: "apps".into(),
        kind: "deployment".into(),
        namespace: "shop".into(),
        name: "checkout".into(),
    };
    // Exactly what a handler does: one range scan, rebuild, answer, encode.
    let timeline = || -> Result<Timeline> {
        let (events, trimmed) = store.object_events(&key)?;
        Ok(Timeline::build(object.clone(), events, trimmed))
    };
    let check = timeline()?;
    anyhow::ensure!(
        check.versions.len() == VERSIONS,
        "expected {VERSIONS} versions, found {}",
        check.versions.len()
    );
    let image = FieldPath::parse("spec.template.spec.containers[name=c0].image")?;

    println!(
        "history queries, one object with {VERSIONS} versions among {total} events ({runs} runs each)"
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10}",
        "query", "median ms", "p99 ms", "bytes"
    );
    // The two halves of every query, to see where the time goes (`rebuild` includes cloning
    // the events, which a handler does not do: it owns them).
    let (events, trimmed) = store.object_events(&key)?;
    let timeline = &timeline;
    let image = &image;
    measure(
        runs,
        vec![
            ("scan", Box::new(|| Ok(store.object_events(&key)?.0.len()))),
            (
                "rebuild",
                Box::new(|| {
                    Ok(Timeline::build(object.clone(), events.clone(), trimmed)
                        .versions
                        .len())
                }),
            ),
            (
                "versions",
                Box::new(|| Ok(serde_json::to_vec(&timeline()?.list())?.len())),
            ),
            (
                "diff",
                Box::new(|| {
                    let answer = history::diff::diff(&timeline()?, None, None, None)?;
                    Ok(serde_json::to_vec(&answer)?.len())
                }),
            ),
            (
                "diff 1→100",
                Box::new(|| {
                    let answer = history::diff::diff(&timeline()?, Some(1), None, None)?;
                    Ok(serde_json::to_vec(&answer)?.len())
                }),
            ),
            (
                "blame",
                Box::new(|| Ok(serde_json::to_vec(&history::blame::blame(&timeline()?)?)?.len())),
            ),
            (
                "history",
                Box::new(|| {
                    let answer = history::field::history(&timeline()?, image);
                    Ok(serde_json::to_vec(&answer)?.len())
                }),
            ),
            (
                "bisect",
                Box::new(|| {
                    let answer = history::field::bisect(
                        &timeline()?,
                        image,
                        "registry.example.com/shop/c0:1.13",
                    )?;
                    Ok(serde_json::to_vec(&answer)?.len())
                }),
            ),
        ],
    )?;
    store.close();
    Ok(())
}
