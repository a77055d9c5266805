//! Lock check benchmark: the webhook's question "does a lock deny this review?" on a real
//! parsed AdmissionReview (the Deployment image update of `tests/fixtures/admission`),
//! against a real lock set loaded from a real store. Prints nanoseconds per check (median
//! and p99 of batches), beside the cost of parsing the same review for scale.
//!
//! `cargo bench -p logistis --bench locks` — `LOGISTIS_BENCH_LOCKS` (default 1000) changes
//! the number of locks.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{Duration, Utc};
use logistis::admission::{KindTable, review};
use logistis::locks::Locks;
use logistis::store::{Store, StoreSettings};
use logistis_api::lock::{Lock, LockSpec, LockTarget, LockUser};

/// Checks per timed batch: one check is ~100 ns, far below the clock's resolution.
const BATCH: usize = 1000;
const BATCHES: usize = 2000;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn lock(name: String, spec: LockSpec) -> Lock {
    let mut lock: Lock = serde_json::from_value(serde_json::json!({})).expect("empty lock");
    lock.metadata.name = name;
    lock.spec = spec;
    lock
}

fn spec(target: LockTarget, users: Vec<String>) -> LockSpec {
    LockSpec {
        target,
        users,
        except_groups: vec!["sre".into()],
        reason: "benchmark".into(),
        expires_at: Some(Utc::now() + Duration::hours(1)),
        ..LockSpec::default()
    }
}

fn kind(kind: &str, name: &str) -> LockTarget {
    LockTarget {
        group: None,
        kind: kind.into(),
        name: name.into(),
    }
}

/// A lock set and where its locks are.
struct Scenario {
    name: &'static str,
    locks: Vec<(String, Lock)>,
    /// Whether the review is denied.
    denies: bool,
}

fn scenarios(count: usize) -> Vec<Scenario> {
    let kinds = [
        "Deployment",
        "ConfigMap",
        "Secret",
        "Service",
        "StatefulSet",
    ];
    // Spread as a cluster would have them: over many namespaces, a mix of namespace, kind
    // and object locks, ten of them in the review's namespace `shop` on other objects.
    let mut spread = Vec::new();
    for i in 0..count {
        let (namespace, target) = if i < 10 {
            (
                "shop".to_owned(),
                kind(kinds[i % kinds.len()], &format!("other-{i}")),
            )
        } else {
            let namespace = format!("team-{}", i % 200);
            let target = match i % 3 {
                0 => LockTarget::default(),
                1 => kind(kinds[i % kinds.len()], ""),
                _ => kind(kinds[i % kinds.len()], &format!("app-{i}")),
            };
            (namespace, target)
        };
        spread.push((namespace, lock(format!("lock-{i}"), spec(target, vec![]))));
    }
    // Every lock on an object of `shop`, none on `web`: one hash lookup finds none.
    let objects = (0..count)
        .map(|i| {
            let target = kind("Deployment", &format!("app-{i}"));
            (
                "shop".to_owned(),
                lock(format!("lock-{i}"), spec(target, vec![])),
            )
        })
        .collect();
    // The worst case: every lock freezes all of `shop`, each for other users, so each one
    // is looked at and none applies.
    let worst = (0..count)
        .map(|i| {
            let spec = spec(LockTarget::default(), vec![format!("user-{i}")]);
            ("shop".to_owned(), lock(format!("lock-{i}"), spec))
        })
        .collect();
    // `shop` frozen for everyone (the review is denied, message built).
    let mut denied = Vec::new();
    for i in 0..count.saturating_sub(1) {
        let target = kind("ConfigMap", &format!("cm-{i}"));
        denied.push((
            format!("team-{}", i % 200),
            lock(format!("lock-{i}"), spec(target, vec![])),
        ));
    }
    denied.push((
        "shop".to_owned(),
        lock("freeze".into(), spec(LockTarget::default(), vec![])),
    ));
    vec![
        Scenario {
            name: "no locks",
            locks: Vec::new(),
            denies: false,
        },
        Scenario {
            name: "spread over 200 namespaces, 10 in shop",
            locks: spread,
            denies: false,
        },
        Scenario {
            name: "all on other objects of shop",
            locks: objects,
            denies: false,
        },
        Scenario {
            name: "worst: all freeze shop for other users",
            locks: worst,
            denies: false,
        },
        Scenario {
            name: "denied: shop frozen (message built)",
            locks: denied,
            denies: true,
        },
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Nanoseconds per call: median and p99 over batches.
fn measure(mut call: impl FnMut()) -> (f64, f64) {
    for _ in 0..BATCH * 10 {
        call();
    }
    let mut samples: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..BATCH {
                call();
            }
            started.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn main() -> Result<()> {
    let count = env_or("LOGISTIS_BENCH_LOCKS", 1000);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/admission/update-deployment-image.json"
    );
    let body = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    let (_, request) = review::parse(&body)?;
    let kinds = KindTable::default();
    let creator = LockUser {
        username: "bench".into(),
        groups: vec![],
    };

    let (parse_median, parse_p99) = measure(|| {
        std::hint::black_box(review::parse(std::hint::black_box(&body)).ok());
    });
    println!("parsing the review itself: median {parse_median:.0} ns, p99 {parse_p99:.0} ns");
    println!("lock check per review ({count} locks where not said otherwise):");
    for scenario in scenarios(count) {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path(), StoreSettings::default())?;
        let locks = Locks::load(store.clone())?;
        let now = Utc::now();
        for (namespace, lock) in scenario.locks {
            locks.create(&namespace, lock, creator.clone(), now, false)?;
        }
        let denied = locks.check_review(&request, &kinds, Utc::now()).is_some();
        anyhow::ensure!(
            denied == scenario.denies,
            "{}: expected denied = {}",
            scenario.name,
            scenario.denies
        );
        let (median, p99) = measure(|| {
            let now = Utc::now();
            std::hint::black_box(locks.check_review(std::hint::black_box(&request), &kinds, now));
        });
        println!(
            "  {:<42} {:>5} locks: median {median:>6.0} ns, p99 {p99:>6.0} ns",
            scenario.name,
            locks.len()
        );
        drop(locks);
        store.close();
    }
    Ok(())
}
