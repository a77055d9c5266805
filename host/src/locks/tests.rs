//! The live set on a real store: create, list, delete, reload, and the webhook's question on
//! the repository's hand-written reviews.

use chrono::{Duration, Utc};
use logistis_api::lock::{Lock, LockSpec, LockTarget, LockUser, PHASE_ACTIVE, PHASE_EXPIRED};

use super::*;
use crate::admission::review;
use crate::store::{Store, StoreSettings};

fn open(dir: &std::path::Path) -> (Store, Locks) {
    let store = Store::open(dir, StoreSettings::default()).unwrap();
    let locks = Locks::load(store.clone()).unwrap();
    (store, locks)
}

fn body(name: &str, edit: impl FnOnce(&mut LockSpec)) -> Lock {
    let mut lock: Lock =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    lock.spec.reason = "release 4.2".into();
    edit(&mut lock.spec);
    lock
}

fn carol() -> LockUser {
    LockUser {
        username: "carol@example.com".into(),
        groups: vec!["sre".into()],
    }
}

fn review(name: &str) -> AdmissionRequest {
    let path = format!(
        "{}/../tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    review::parse(&bytes).unwrap().1
}

#[test]
fn a_created_lock_is_answered_with_what_the_server_decided() {
    let dir = tempfile::tempdir().unwrap();
    let (store, locks) = open(dir.path());
    let now = Utc::now();
    let mut asked = body("freeze", |_| {});
    // A body cannot claim who set it.
    asked.status = Some(LockStatus {
        set_by: LockUser {
            username: "mallory".into(),
            groups: vec![],
        },
        ..LockStatus::default()
    });
    let lock = locks.create("shop", asked, carol(), now, false).unwrap();
    let status = lock.status.as_ref().unwrap();
    assert_eq!(status.set_by, carol());
    assert_eq!(status.phase, PHASE_ACTIVE);
    assert_eq!(status.operations, ["CREATE", "UPDATE", "DELETE"]);
    assert_eq!(status.exempt_by_default.len(), DEFAULT_EXEMPT.len());
    assert!(status.enforcement.contains("failurePolicy"));
    assert_eq!(lock.metadata.namespace, "shop");
    assert_eq!(lock.metadata.uid.len(), 36);
    assert!(lock.metadata.creation_timestamp.is_some());
    assert!(!lock.metadata.resource_version.is_empty());

    assert!(matches!(
        locks.create("shop", body("freeze", |_| {}), carol(), now, false),
        Err(Error::AlreadyExists { key }) if key == "shop/freeze"
    ));
    assert!(matches!(
        locks.create(
            "shop",
            body("bad", |s| s.operations = vec!["PATCH".into()]),
            carol(),
            now,
            false,
        ),
        Err(Error::Invalid(_))
    ));
    assert_eq!(locks.len(), 1);
    store.close();
}

#[test]
fn locks_survive_a_restart_and_deletes_too() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    {
        let (store, locks) = open(dir.path());
        locks
            .create("shop", body("freeze", |_| {}), carol(), now, false)
            .unwrap();
        locks
            .create(
                "shop",
                body("web", |s| {
                    s.target = LockTarget {
                        group: Some("apps".into()),
                        kind: "Deployment".into(),
                        name: "web".into(),
                    }
                }),
                carol(),
                now,
                false,
            )
            .unwrap();
        let node = body("nodes", |s| s.target.kind = "Node".into());
        locks.create("", node, carol(), now, false).unwrap();
        locks.delete("shop", "freeze", now).unwrap();
        assert!(matches!(
            locks.delete("shop", "freeze", now),
            Err(Error::NotFound { .. })
        ));
        store.close();
    }
    let (store, locks) = open(dir.path());
    let (all, version) = locks.list(None, now);
    let keys: Vec<String> = all.iter().map(Lock::key).collect();
    assert_eq!(keys, ["nodes", "shop/web"]);
    assert!(version > 0);
    assert_eq!(locks.list(Some(""), now).0.len(), 1);
    assert_eq!(
        locks.get("shop", "web", now).unwrap().spec.target.name,
        "web"
    );
    // The reloaded set enforces.
    let denial = locks
        .check_review(
            &review("update-deployment-image.json"),
            &KindTable::default(),
            now,
        )
        .unwrap();
    assert_eq!(denial.lock, "shop/web");
    // Resource versions keep growing after a restart.
    locks.delete("shop", "web", now).unwrap();
    assert!(locks.resource_version() > version);
    store.close();
}

#[test]
fn the_webhook_question_on_real_reviews() {
    let dir = tempfile::tempdir().unwrap();
    let (store, locks) = open(dir.path());
    let kinds = KindTable::default();
    let now = Utc::now();
    let update = review("update-deployment-image.json");
    let exec = review("connect-pod-exec.json");
    assert!(locks.check_review(&update, &kinds, now).is_none());

    locks
        .create(
            "shop",
            body("freeze", |s| s.except_groups = vec!["sre".into()]),
            carol(),
            now,
            false,
        )
        .unwrap();
    let denial = locks.check_review(&update, &kinds, now).unwrap();
    assert_eq!(denial.lock, "shop/freeze");
    assert!(
        denial
            .message
            .starts_with("Deployment.apps/web in namespace shop is locked by lock shop/freeze"),
        "{}",
        denial.message
    );
    // exec is not frozen by default...
    assert!(locks.check_review(&exec, &kinds, now).is_none());
    // ...but can be: the exec is filed under its Pod.
    locks
        .create(
            "shop",
            body("no-exec", |s| {
                s.operations = vec!["CONNECT".into()];
                s.target.kind = "Pod".into();
            }),
            carol(),
            now,
            false,
        )
        .unwrap();
    let denial = locks.check_review(&exec, &kinds, now).unwrap();
    assert_eq!(denial.lock, "shop/no-exec");
    assert!(
        denial
            .message
            .starts_with("Pod/web-7d9f8-abcde/exec in namespace shop")
    );
    store.close();
}

#[test]
fn an_expired_lock_is_listed_as_expired_and_denies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, locks) = open(dir.path());
    let kinds = KindTable::default();
    let now = Utc::now();
    let until = now + Duration::seconds(60);
    locks
        .create(
            "shop",
            body("short", |s| s.expires_at = Some(until)),
            carol(),
            now,
            false,
        )
        .unwrap();
    let update = review("update-deployment-image.json");
    assert!(locks.check_review(&update, &kinds, now).is_some());
    let later = until + Duration::seconds(1);
    assert!(locks.check_review(&update, &kinds, later).is_none());
    let listed = locks.get("shop", "short", later).unwrap();
    assert_eq!(listed.status.unwrap().phase, PHASE_EXPIRED);
    // Watchers are told once, when the expiry passes, under a new resourceVersion.
    let mut changes = locks.subscribe();
    let before = locks.resource_version();
    assert_eq!(locks.announce_expired(now, until - Duration::seconds(1)), 0);
    assert_eq!(
        locks.announce_expired(until - Duration::seconds(1), later),
        1
    );
    assert_eq!(
        locks.announce_expired(later, later + Duration::seconds(5)),
        0
    );
    let change = changes.try_recv().unwrap();
    assert_eq!(change.change, ChangeType::Modified);
    assert_eq!(change.lock.metadata.name, "short");
    assert!(change.resource_version > before);
    assert!(changes.try_recv().is_err());
    store.close();
}

#[test]
fn watchers_see_creates_and_deletes_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, locks) = open(dir.path());
    let mut changes = locks.subscribe();
    let now = Utc::now();
    locks
        .create("shop", body("a", |_| {}), carol(), now, false)
        .unwrap();
    locks.delete("shop", "a", now).unwrap();
    let first = changes.try_recv().unwrap();
    let second = changes.try_recv().unwrap();
    assert_eq!(first.change, ChangeType::Added);
    assert_eq!(second.change, ChangeType::Deleted);
    assert!(second.resource_version > first.resource_version);
    assert_eq!(second.resource_version, locks.resource_version());
    store.close();
}

#[test]
fn generate_name_and_namespace_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, locks) = open(dir.path());
    let now = Utc::now();
    let mut generated = body("", |_| {});
    generated.metadata.generate_name = "freeze-".into();
    let lock = locks
        .create("shop", generated, carol(), now, false)
        .unwrap();
    assert!(lock.metadata.name.starts_with("freeze-"));
    assert_eq!(lock.metadata.name.len(), "freeze-".len() + 5);
    let mut elsewhere = body("x", |_| {});
    elsewhere.metadata.namespace = "other".into();
    let Err(Error::Invalid(invalid)) = locks.create("shop", elsewhere, carol(), now, false) else {
        panic!("a body for another namespace must be refused");
    };
    assert_eq!(invalid.field, "metadata.namespace");
    store.close();
}
