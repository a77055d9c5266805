//! Hot reload of the plugins directory, laid out exactly as a ConfigMap mount (`..data`
//! symlink swapped atomically): a new set is swapped in under concurrent load with zero
//! failed requests, and a broken set is refused while the active one keeps working.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use logistis_e2e::plugins::{ConfigMapDir, rust_plugin};
use logistis_e2e::*;

use crate::plugins::{review, stored_uids, with_plugins};

/// A generous deadline (the default is 5 ms): a debug build under load must not turn a
/// verdict into a timeout here.
fn namespaces_yaml(excluded: &str) -> Vec<u8> {
    format!(
        "predicates:\n  - name: namespaces\n    file: namespaces.wasm\n    deadline-ms: 1000\n    config: {{exclude: [\"{excluded}\"]}}\n"
    )
    .into_bytes()
}

/// Wait until `/api/v1/plugins` satisfies `check` (polling a condition, up to 60 s).
async fn wait_for_status(
    server: &Server,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..1200 {
        let status = server.get_ok("/api/v1/plugins").await.unwrap();
        if check(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}; log:\n{}", server.log());
}

#[tokio::test]
async fn configmap_swap_reloads_under_load_and_a_broken_set_is_refused() {
    let namespaces = std::fs::read(rust_plugin("logistis-plugin-namespaces")).unwrap();
    let misbehave = std::fs::read(rust_plugin("logistis-plugin-misbehave")).unwrap();
    let mut mount = ConfigMapDir::new();
    mount.publish(&[
        ("plugins.yaml", namespaces_yaml("skip-a")),
        ("namespaces.wasm", namespaces.clone()),
    ]);
    let server = Arc::new(with_plugins(mount.path()).start().unwrap());
    let status = server.get_ok("/api/v1/plugins").await.unwrap();
    assert_eq!(status["generation"], 1);

    // Concurrent load for the whole test: every answer must be an allowed review.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (server, stop, sent, failed) =
            (server.clone(), stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let review = review(&format!("load-{worker}-{n}"), "busy", "alice");
                if server.admit(&review).await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    server
        .admit(&review("a-before", "skip-a", "alice"))
        .await
        .unwrap();
    server
        .admit(&review("b-before", "skip-b", "alice"))
        .await
        .unwrap();

    // A new version of the ConfigMap: `..data` now points at a set that skips skip-b.
    mount.publish(&[
        ("plugins.yaml", namespaces_yaml("skip-b")),
        ("namespaces.wasm", namespaces.clone()),
    ]);
    let status = wait_for_status(&server, "generation 2", |s| s["generation"] == 2).await;
    assert_eq!(status["lastReload"]["ok"], true);
    server
        .admit(&review("a-after", "skip-a", "alice"))
        .await
        .unwrap();
    server
        .admit(&review("b-after", "skip-b", "alice"))
        .await
        .unwrap();

    // A broken version: one plugin rejects its config, one file is not a component.
    let broken = "predicates:
  - {name: namespaces, file: namespaces.wasm, config: {exclude: [everything]}}
  - {name: grumpy, file: misbehave.wasm, config: {configure: reject}}
  - {name: garbage, file: garbage.wasm}
";
    mount.publish(&[
        ("plugins.yaml", broken.as_bytes().to_vec()),
        ("namespaces.wasm", namespaces),
        ("misbehave.wasm", misbehave),
        ("garbage.wasm", b"not wasm at all".to_vec()),
    ]);
    let status = wait_for_status(&server, "the refused reload", |s| {
        s["lastReload"]["ok"] == false
    })
    .await;
    assert_eq!(status["generation"], 2, "the active set stays");
    let errors = status["lastReload"]["errors"].to_string();
    assert!(
        errors.contains("grumpy") && errors.contains("rejected on purpose"),
        "{errors}"
    );
    assert!(
        errors.contains("garbage") && errors.contains("not a valid component"),
        "{errors}"
    );
    server
        .admit(&review("b-during-broken", "skip-b", "alice"))
        .await
        .unwrap();
    server
        .admit(&review("everything", "everything", "alice"))
        .await
        .unwrap();
    assert_eq!(
        server
            .metric("logistis_plugin_reloads_total{result=\"error\"}")
            .await
            .unwrap(),
        1.0
    );
    assert_eq!(
        server
            .metric("logistis_plugin_set_generation")
            .await
            .unwrap(),
        2.0
    );
    assert!(server.log().contains("the new plugin set was refused"));

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(sent.load(Ordering::Relaxed) > 0);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no admission request failed during reloads"
    );

    let mut stored = std::collections::BTreeSet::new();
    for namespace in ["skip-a", "skip-b", "everything"] {
        stored.extend(stored_uids(&server, Some(namespace)).await);
    }
    for uid in ["b-before", "a-after", "everything"] {
        assert!(stored.contains(uid), "{uid} should be stored");
    }
    for uid in ["a-before", "b-after", "b-during-broken"] {
        assert!(!stored.contains(uid), "{uid} should be skipped");
    }
}
