//! Event building on the repository's hand-written reviews.

use chrono::Utc;
use logistis_api::Operation;
use serde_json::{Value, json};

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn build(name: &str, policy: Policy) -> Outcome {
    build_body(&fixture(name), policy)
}

/// Build the event of a review given as bytes.
fn build_body(body: &[u8], policy: Policy) -> Outcome {
    let (_, request) = review::parse(body).unwrap();
    build_event(
        request,
        Utc::now(),
        policy,
        &Redactor::new([1; 32]),
        &KindTable::default(),
    )
}

fn recorded(name: &str) -> NewEvent {
    recorded_body(&fixture(name))
}

fn recorded_body(body: &[u8]) -> NewEvent {
    match build_body(body, Policy::default()) {
        Outcome::Record(event) => *event,
        other => panic!("expected a recorded event, got {other:?}"),
    }
}

#[test]
fn create_records_who_what_and_the_whole_object() {
    let new = recorded("create-deployment.json");
    let e = &new.event;
    assert_eq!(e.operation, Operation::Create);
    assert_eq!(e.user.username, "alice@example.com");
    assert_eq!(e.user.extra["scopes.example.com/team"], ["payments"]);
    assert_eq!(
        (e.resource.group.as_str(), e.resource.kind.as_str()),
        ("apps", "Deployment")
    );
    assert_eq!(
        (e.resource.namespace.as_str(), e.resource.name.as_str()),
        ("shop", "web")
    );
    assert_eq!(
        e.field_manager.as_deref(),
        Some("kubectl-client-side-apply")
    );
    assert_eq!(e.object_uid.as_deref(), Some("d0c5-0001"));
    assert!(new.dedupe_key.is_some());
    let object = e.object.as_ref().unwrap();
    assert!(
        object.pointer("/metadata/managedFields").is_none(),
        "managedFields are dropped"
    );
    assert_eq!(e.patch[0]["op"], "add");
    assert_eq!(e.patch[0]["path"], "");
    assert!(
        e.patch[0]["value"].get("status").is_none(),
        "the patch is noise-free"
    );
}

#[test]
fn update_patch_names_only_the_real_change() {
    let e = recorded("update-deployment-replicas.json").event;
    assert_eq!(
        e.patch,
        json!([{"op": "replace", "path": "/spec/replicas", "value": 5}])
    );
    assert_eq!(e.field_manager.as_deref(), Some("kubectl-edit"));
}

#[test]
fn status_only_update_is_noise_unless_asked() {
    assert!(matches!(
        build("update-deployment-status-only.json", Policy::default()),
        Outcome::SkippedNoise
    ));
    let policy = Policy {
        record_noise: true,
        ..Policy::default()
    };
    match build("update-deployment-status-only.json", policy) {
        Outcome::Record(e) => assert_eq!(e.event.patch, json!([])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn scale_subresource_is_filed_under_the_deployment() {
    let e = recorded("scale-deployment-subresource.json").event;
    assert_eq!(e.resource.kind, "Deployment");
    assert_eq!(e.resource.group, "apps");
    assert_eq!(e.resource.subresource, "scale");
    assert_eq!(
        e.patch,
        json!([{"op": "replace", "path": "/spec/replicas", "value": 0}])
    );
}

#[test]
fn delete_keeps_the_old_object_and_connect_keeps_the_options() {
    let e = recorded("delete-deployment.json").event;
    assert_eq!(e.operation, Operation::Delete);
    assert!(e.object.is_none() && e.old_object.is_some());
    assert_eq!(e.patch, json!([]));

    let e = recorded("connect-pod-exec.json").event;
    assert_eq!(e.operation, Operation::Connect);
    assert_eq!(
        (e.resource.kind.as_str(), e.resource.subresource.as_str()),
        ("Pod", "exec")
    );
    assert_eq!(e.options.as_ref().unwrap()["command"], json!(["/bin/sh"]));
    assert!(e.object.is_none());
}

#[test]
fn secrets_never_leave_in_clear() {
    for name in ["create-secret.json", "update-secret-password.json"] {
        let e = recorded(name).event;
        let text = serde_json::to_string(&e).unwrap();
        for plaintext in [
            "hunter2-plaintext",
            "aHVudGVyMi1wbGFpbnRleHQ=",
            "s3cr3t-token-value",
            "czNjcjN0LXRva2VuLXZhbHVl",
            "correct-horse-battery-staple",
            "Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5LXN0YXBsZQ==",
        ] {
            assert!(!text.contains(plaintext), "{name}: {plaintext} leaked");
        }
    }
    // A rotated password is visible as a change of its hash.
    let e = recorded("update-secret-password.json").event;
    let paths: Vec<&str> = e
        .patch
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/data/password"), "{paths:?}");
}

#[test]
fn dry_run_is_skipped_unless_asked_and_then_flagged() {
    assert!(matches!(
        build("create-configmap-dry-run.json", Policy::default()),
        Outcome::SkippedDryRun
    ));
    let policy = Policy {
        record_dry_run: true,
        ..Policy::default()
    };
    match build("create-configmap-dry-run.json", policy) {
        Outcome::Record(e) => assert!(e.event.dry_run),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cluster_scoped_and_generate_name() {
    let e = recorded("create-namespace.json").event;
    assert_eq!(
        (e.resource.namespace.as_str(), e.resource.name.as_str()),
        ("", "shop")
    );
    let e = recorded("v1beta1-create-pod-generate-name.json").event;
    assert_eq!(e.resource.name, "web-7d9f8-");
}

#[test]
fn dedupe_key_follows_uid_and_identity() {
    let a = recorded("create-deployment.json").dedupe_key;
    assert_eq!(
        a,
        recorded("create-deployment.json").dedupe_key,
        "a re-sent review"
    );
    let mut body: Value = serde_json::from_slice(&fixture("create-deployment.json")).unwrap();
    body["request"]["name"] = json!("other");
    let other = recorded_body(&serde_json::to_vec(&body).unwrap());
    assert_ne!(
        a, other.dedupe_key,
        "same uid, different object: not a re-send"
    );
}

#[test]
fn a_review_without_kind_takes_it_from_the_object() {
    let body = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{
        "operation":"UPDATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{}}}}"#;
    let e = recorded_body(body);
    assert_eq!(
        (
            e.event.resource.kind.as_str(),
            e.event.resource.version.as_str()
        ),
        ("Pod", "v1")
    );
    assert!(e.dedupe_key.is_none(), "no uid, nothing to dedupe on");
}
