//! Handlers through the router (`oneshot`), on a real store in a temp dir.

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

use super::*;
use crate::plugins::PluginSettings;
use crate::store::StoreSettings;

fn state(dir: &std::path::Path) -> AppState {
    let store = Store::open(dir, StoreSettings::default()).unwrap();
    AppState {
        plugins: Arc::new(PluginHost::start(&PluginSettings::default(), store.clone()).unwrap()),
        store: store.clone(),
        metrics: Arc::new(Metrics::new()),
        admission: Arc::new(AdmissionContext {
            policy: Policy::default(),
            redactor: Redactor::new([3; 32]),
            kinds: KindTable::default(),
        }),
        locks: Arc::new(crate::locks::Locks::load(store.clone()).unwrap()),
        max_body_bytes: 64 * 1024,
        answer_only: false,
    }
}

/// The newest ten events of the store.
fn first_events(state: &AppState) -> crate::store::Page {
    state
        .store
        .list_events(
            &Default::default(),
            crate::store::Scan {
                limit: 10,
                before: None,
                budget: 100,
            },
        )
        .unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn send(router: Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(body: Vec<u8>, content_type: &str) -> Request<Body> {
    Request::post("/validate")
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_answers_reviews_and_rejects_bad_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let router = webhook_router(state.clone());

    let (status, body) = send(
        router.clone(),
        post(fixture("create-deployment.json"), "application/json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(
        body["response"]["uid"],
        "a1000000-0000-4000-8000-000000000001"
    );
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");

    let (status, body) = send(
        router.clone(),
        post(b"{\"request\":".to_vec(), "application/json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a valid AdmissionReview")
    );

    let (status, body) = send(
        router.clone(),
        post(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "application/json",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("no request"));

    let (status, _) = send(
        router.clone(),
        post(fixture("create-deployment.json"), "text/plain"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = vec![b' '; 65 * 1024];
    let (status, body) = send(
        router.clone(),
        post(huge, "application/json; charset=utf-8"),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("--max-body-size"));

    // The good review was stored; the bad ones changed nothing.
    let page = first_events(&state);
    assert_eq!(page.items.len(), 1);
    state.store.clone().close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let router = query_router(state.clone());
    for (query, needle) in [
        ("limit=5000", "limit"),
        ("since=yesterday", "since"),
        ("name=web", "name needs kind"),
        ("colour=blue", "unknown field"),
        ("continue=%21%21", "continue"),
        ("since=1h&until=2h", "before"),
    ] {
        let (status, body) = send(
            router.clone(),
            Request::get(format!("/api/v1/events?{query}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    let (status, body) = send(
        router.clone(),
        Request::get("/api/v1/events/nothex")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = send(
        router.clone(),
        Request::get("/api/v1/events/0000000000000001")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = send(
        router.clone(),
        Request::get("/api/v2/nothing").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("/api/v2/nothing"));
    let (status, _) = send(router, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    state.store.clone().close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_denies_with_a_message_and_the_attempt_is_recorded() {
    use logistis_api::lock::{Lock, LockUser};
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let router = webhook_router(state.clone());
    let mut lock: Lock = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "freeze"},
        "spec": {"reason": "release 4.2", "exceptGroups": ["sre"]}
    }))
    .unwrap();
    lock.spec.target.kind = "Deployment".into();
    let carol = LockUser {
        username: "carol".into(),
        groups: vec!["sre".into()],
    };
    state
        .locks
        .create("shop", lock, carol, chrono::Utc::now())
        .unwrap();

    let (status, body) = send(
        router.clone(),
        post(fixture("update-deployment-image.json"), "application/json"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a denial is an answer, not an error"
    );
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(body["response"]["status"]["code"], 403);
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("locked by lock shop/freeze (release 4.2), set by carol"),
        "{message}"
    );
    assert!(message.contains("exempt: group sre"), "{message}");

    // Another kind in the namespace is not frozen.
    let (_, body) = send(
        router.clone(),
        post(fixture("connect-pod-exec.json"), "application/json"),
    )
    .await;
    assert_eq!(body["response"]["allowed"], true);

    let page = first_events(&state);
    assert_eq!(page.items.len(), 2);
    let attempt = page
        .items
        .iter()
        .find(|e| e.denied.is_some())
        .expect("the denied attempt is recorded");
    let denial = attempt.denied.as_ref().unwrap();
    assert_eq!(denial.lock, "shop/freeze");
    assert_eq!(denial.message, message);
    assert_eq!(attempt.user.username, "system:serviceaccount:ci:deployer");
    assert!(
        attempt.patch.as_array().is_some_and(|p| !p.is_empty()),
        "what was tried"
    );
    state.store.clone().close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locks_resource_answers_like_the_kubernetes_api() {
    use logistis_api::lock::LockUser;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let carol = || LockUser {
        username: "carol".into(),
        groups: vec!["sre".into()],
    };
    let body = |spec: Value| {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "logistis.io/v1alpha1", "kind": "Lock",
            "metadata": {"name": "freeze"}, "spec": spec,
        }))
        .unwrap()
    };
    let read = |response: axum::response::Response| async move {
        let status = response.status();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, bytes)
    };

    // A bad lock: 422 with the field, as `kubectl create` prints it.
    let bad = body(serde_json::json!({"reason": "x", "operations": ["PATCH"]}));
    let (status, bytes) = read(locks::create(&state, "shop", carol(), &bad).await).await;
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["reason"], "Invalid");
    assert_eq!(
        answer["details"]["causes"][0]["field"],
        "spec.operations[0]"
    );
    let (status, _) = read(locks::create(&state, "shop", carol(), b"{oops").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let good = body(serde_json::json!({"reason": "release", "exceptGroups": ["sre"]}));
    let (status, bytes) = read(locks::create(&state, "shop", carol(), &good).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let created: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(created["status"]["setBy"]["username"], "carol");
    let (status, _) = read(locks::create(&state, "shop", carol(), &good).await).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // `kubectl get locks -A`: a Table whose rows carry the namespace in their metadata.
    let mut headers = HeaderMap::new();
    headers.insert(
        "accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
            .parse()
            .unwrap(),
    );
    let query = locks::ListQuery::default();
    let (status, bytes) = read(locks::list(&state, None, &headers, &query)).await;
    assert_eq!(status, StatusCode::OK);
    let table: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][0]["name"], "Name");
    let row = &table["rows"][0];
    assert_eq!(row["cells"][0], "freeze");
    assert_eq!(row["cells"][1], "*");
    assert_eq!(row["cells"][3], "group sre");
    assert_eq!(row["object"]["metadata"]["namespace"], "shop");

    // A watch from 0 starts with every lock; from an old version it is told to re-list.
    let watch = locks::ListQuery {
        watch: Some("true".into()),
        resource_version: Some("0".into()),
        timeout_seconds: Some(0),
        include_object: None,
    };
    let (_, bytes) = read(locks::list(&state, Some("shop"), &HeaderMap::new(), &watch)).await;
    let first: Value =
        serde_json::from_slice(bytes.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "freeze");
    let old = locks::ListQuery {
        resource_version: Some("1".into()),
        ..watch
    };
    let (_, bytes) = read(locks::list(&state, Some("shop"), &HeaderMap::new(), &old)).await;
    let gone: Value = serde_json::from_slice(bytes.trim_ascii_end()).unwrap();
    assert_eq!(gone["type"], "ERROR");
    assert_eq!(gone["object"]["code"], 410);

    let (status, _) = read(locks::get(
        &state,
        "shop",
        "absent",
        &HeaderMap::new(),
        &query,
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = read(locks::delete(&state, "shop", "freeze").await).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = read(locks::delete(&state, "shop", "freeze").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    state.store.clone().close();
}
