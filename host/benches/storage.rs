//! Storage benchmark: bytes on disk per CREATE, UPDATE and DELETE, through the admission
//! layer and the real `Store` on a real fjall directory, as the webhook records them.
//!
//! The replay of issue 12: 400 Deployments of ~4 KB (the fixture Deployment with a
//! `last-applied-configuration`, as `kubectl apply` leaves it), each created, updated 50
//! times (image tag, replica count and one annotation change; the API server's
//! resourceVersion, generation and status move too) and deleted. After each phase the
//! memtables are flushed, so the figures are the steady state of tables on disk, plus what
//! the journals still hold. Sizes are allocated blocks (`du`), the whole store directory.
//!
//! `cargo bench -p logistis --bench storage` — `LOGISTIS_BENCH_OBJECTS` (default 400) and
//! `LOGISTIS_BENCH_UPDATES` (default 50) change the sizes.

// The server's allocator (see `main.rs`), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;
use logistis::admission::{self, AdmissionRequest, KindTable, Outcome, Policy, Redactor};
use logistis::store::{Durability, Store, StoreSettings};
use serde_json::{Value, json};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fixture Deployment (or a stand-in when the fixtures are not there), ~4 KB.
fn template() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/admission/request-only-update-deployment-with-oldobject.json");
    let mut object = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .map(|review| {
            let request = review.get("request").cloned().unwrap_or(review);
            request["object"].clone()
        })
        .unwrap_or_else(|| {
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default", "annotations": {}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                            "ports": [{"containerPort": 80}], "resources": {}}]}}},
                "status": {"replicas": 1}
            })
        });
    let metadata = object["metadata"].as_object_mut().expect("metadata");
    metadata.remove("managedFields");
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"]},
        "spec": object["spec"],
    });
    object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!(format!("{applied}\n"));
    object["metadata"]["labels"] = json!({"app.kubernetes.io/name": "web",
        "app.kubernetes.io/part-of": "shop", "app.kubernetes.io/managed-by": "kubectl"});
    object
}

/// Deployment `n` at update `step`.
fn version(template: &Value, n: usize, step: usize) -> Value {
    let mut object = template.clone();
    let name = format!("web-{n}");
    object["metadata"]["name"] = json!(name);
    object["metadata"]["namespace"] = json!(format!("team-{}", n % 20));
    object["metadata"]["uid"] = json!(format!("6b3a1c2e-{n:04}-4a59-9d7e-0c4a7f3b5d11"));
    object["metadata"]["resourceVersion"] = json!((100_000 + n * 1000 + step * 3).to_string());
    object["metadata"]["generation"] = json!(step + 1);
    object["metadata"]["annotations"]["deploy.example.com/revision"] = json!(format!("r{step}"));
    object["spec"]["replicas"] = json!(1 + step % 5);
    if let Some(container) = object
        .pointer_mut("/spec/template/spec/containers/0")
        .and_then(Value::as_object_mut)
    {
        container.insert(
            "image".into(),
            json!(format!("registry.example.com/shop/web:1.{step}.{n}")),
        );
    }
    object["status"] = json!({"observedGeneration": step + 1, "replicas": 1 + step % 5,
        "updatedReplicas": 1 + step % 5, "readyReplicas": 1 + step % 5});
    object
}

struct Replay {
    store: Store,
    redactor: Redactor,
    kinds: KindTable,
    uid: u64,
    pending:
        Vec<tokio::sync::oneshot::Receiver<logistis::store::Result<logistis::store::Appended>>>,
}

impl Replay {
    fn admit(
        &mut self,
        operation: &str,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<()> {
        let any = object.or(old).context("an object")?;
        self.uid += 1;
        let request = json!({
            "uid": format!("bench-{}", self.uid),
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": any["metadata"]["name"], "namespace": any["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "alice@example.com", "uid": "4f6c-alice",
                "groups": ["platform-team", "system:authenticated"]},
            "object": object, "oldObject": old,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply"},
        });
        let request: AdmissionRequest = serde_json::from_value(request)?;
        match admission::build_event(
            request,
            Utc::now(),
            Policy::default(),
            &self.redactor,
            &self.kinds,
        ) {
            Outcome::Record(event) => self.pending.push(self.store.append(event)),
            other => anyhow::bail!("not recorded: {other:?}"),
        }
        if self.pending.len() >= 256 {
            self.wait()?;
        }
        Ok(())
    }

    fn wait(&mut self) -> Result<()> {
        for receiver in self.pending.drain(..) {
            receiver.blocking_recv().context("writer stopped")??;
        }
        Ok(())
    }
}

/// Bytes allocated under `dir`, and how many of them are journals.
fn du(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let (mut total, mut journals) = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                let bytes = metadata.blocks() * 512;
                total += bytes;
                if entry.path().extension().is_some_and(|e| e == "jnl") {
                    journals += bytes;
                }
            }
        }
    }
    (total, journals)
}

fn main() -> Result<()> {
    let objects = env_or("LOGISTIS_BENCH_OBJECTS", 400).max(1);
    let updates = env_or("LOGISTIS_BENCH_UPDATES", 50).max(1);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store");
    let settings = StoreSettings {
        durability: Durability::Async,
        max_versions_per_object: 0,
        retention: None,
        ..StoreSettings::default()
    };
    let template = template();
    println!(
        "{objects} Deployments of {} bytes (JSON, no managedFields), {updates} updates each",
        serde_json::to_vec(&template)?.len()
    );
    let mut replay = Replay {
        store: Store::open(&path, settings.clone())?,
        redactor: Redactor::new([7; 32]),
        kinds: KindTable::default(),
        uid: 0,
        pending: Vec::new(),
    };
    let mut measured: Vec<Phase> = Vec::new();
    let mut last = Snapshot::of(&replay.store, &path)?;
    let started = Instant::now();
    let mut phase = |name: &'static str, count: usize, replay: &mut Replay| -> Result<()> {
        replay.wait()?;
        replay.store.flush_tables()?;
        let now = Snapshot::of(&replay.store, &path)?;
        measured.push(Phase {
            name,
            count: count as u64,
            before: std::mem::replace(&mut last, now.clone()),
            after: now,
        });
        Ok(())
    };
    for n in 0..objects {
        let object = version(&template, n, 0);
        replay.admit("CREATE", Some(&object), None)?;
    }
    phase("CREATE", objects, &mut replay)?;
    for step in 1..=updates {
        for n in 0..objects {
            let old = version(&template, n, step - 1);
            let new = version(&template, n, step);
            replay.admit("UPDATE", Some(&new), Some(&old))?;
        }
    }
    phase("UPDATE", objects * updates, &mut replay)?;
    for n in 0..objects {
        let old = version(&template, n, updates);
        replay.admit("DELETE", None, Some(&old))?;
    }
    phase("DELETE", objects, &mut replay)?;
    let elapsed = started.elapsed();
    replay.store.close();
    let (reopened, journals) = du(&path);

    // Tables are the steady state: what each event keeps costing. The journal is fjall's
    // write-ahead log, a bounded constant: fjall starts a new one past 64 MB and deletes a
    // sealed one once every keyspace has flushed it, so it holds at most ~64 MB of recent
    // writes (plus sealed journals still being flushed), however large the store.
    println!(
        "{:<8} {:>8} {:>16} {:>16} {:>12} {:>12}",
        "phase", "events", "tables B/event", "whole B/event", "store", "of it journal"
    );
    for phase in &measured {
        println!(
            "{:<8} {:>8} {:>16} {:>16} {:>12} {:>12}",
            phase.name,
            phase.count,
            phase.after.tables().saturating_sub(phase.before.tables()) / phase.count,
            phase.after.total.saturating_sub(phase.before.total) / phase.count,
            phase.after.total,
            phase.after.journals
        );
    }
    let events = (objects * (updates + 2)) as u64;
    println!(
        "all      {events:>8} {:>16} {:>16} {reopened:>12} {journals:>12}  (after closing; {:.1?} to record)",
        reopened.saturating_sub(journals) / events,
        reopened / events,
        elapsed
    );
    let alone: usize = (0..objects.min(50))
        .map(|n| zstd_len(&serde_json::to_vec(&version(&template, n, 0)).unwrap_or_default()))
        .sum::<usize>()
        / objects.min(50);
    println!("one Deployment compressed alone (zstd 3): {alone} bytes");
    print!("tables per keyspace, bytes per event:");
    for phase in &measured {
        print!(" {:>8}", phase.name);
    }
    println!();
    let names: Vec<&str> = measured
        .last()
        .map(|p| p.after.keyspaces.iter().map(|(name, _)| *name).collect())
        .unwrap_or_default();
    for (index, name) in names.iter().enumerate() {
        let row: Vec<u64> = measured
            .iter()
            .map(|p| {
                p.after.keyspaces[index]
                    .1
                    .saturating_sub(p.before.keyspaces[index].1)
                    / p.count
            })
            .collect();
        if row.iter().any(|bytes| *bytes > 0) {
            print!("  {name:<36}");
            for bytes in row {
                print!(" {bytes:>8}");
            }
            println!();
        }
    }
    Ok(())
}

/// The store's size at one moment: the whole directory, its journals, its tables.
#[derive(Clone)]
struct Snapshot {
    total: u64,
    journals: u64,
    keyspaces: Vec<(&'static str, u64)>,
}

impl Snapshot {
    fn of(store: &Store, path: &Path) -> Result<Snapshot> {
        let (total, journals) = du(path);
        Ok(Snapshot {
            total,
            journals,
            keyspaces: store.keyspace_sizes()?,
        })
    }

    fn tables(&self) -> u64 {
        self.keyspaces.iter().map(|(_, bytes)| bytes).sum()
    }
}

struct Phase {
    name: &'static str,
    count: u64,
    before: Snapshot,
    after: Snapshot,
}

/// What one object costs compressed on its own, for comparison with a CREATE.
fn zstd_len(data: &[u8]) -> usize {
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    zstd_safe::compress(&mut out, data, 3).map_or(data.len(), |_| out.len())
}
