//! Handlers through the router (`oneshot`), on a real store in a temp dir.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
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
        body_budget: Arc::new(super::webhook::BodyBudget::new(256 * 1024)),
        answer_only: false,
        confirm: None,
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
        .create("shop", lock, carol, chrono::Utc::now(), false)
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

/// The query listener with the aggregated API and authentication off (`--query-auth none`).
fn aggregated_router(state: &AppState) -> Router {
    let context = Arc::new(aggregated::Context {
        app: state.clone(),
        shutdown: tokio_util::sync::CancellationToken::new(),
    });
    query_router_with(
        state.clone(),
        aggregated::routes(context),
        crate::auth::Auth::disabled(),
    )
}

/// `method path` with a JSON body and an `Accept` header; the status and the body's bytes.
async fn call(
    router: &Router,
    method: &str,
    path: &str,
    accept: &str,
    body: Option<Value>,
) -> (StatusCode, axum::body::Bytes) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("accept", accept)
        .header("content-type", "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    (
        status,
        to_bytes(response.into_body(), usize::MAX).await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locks_resource_answers_like_the_kubernetes_api() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let router = aggregated_router(&state);
    const BASE: &str = "/apis/logistis.io/v1alpha1";
    let shop = format!("{BASE}/namespaces/shop/locks");
    let body = |name: &str, spec: Value| {
        serde_json::json!({
            "apiVersion": "logistis.io/v1alpha1", "kind": "Lock",
            "metadata": {"name": name}, "spec": spec,
            // Ignored: who set a lock comes from the request, never from the body.
            "status": {"setBy": {"username": "mallory"}},
        })
    };
    let json = |bytes: &[u8]| -> Value { serde_json::from_slice(bytes).unwrap() };

    // Discovery lists the resource and its verbs.
    let (status, bytes) = call(&router, "GET", BASE, "application/json", None).await;
    assert_eq!(status, StatusCode::OK);
    let resources = json(&bytes);
    let locks = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "locks")
        .expect("discovery lists locks");
    assert_eq!(locks["kind"], "Lock");
    assert_eq!(locks["namespaced"], true);
    assert_eq!(
        locks["verbs"],
        serde_json::json!(["create", "delete", "get", "list", "watch"])
    );

    // Bad locks: 422 naming the field (as `kubectl create` prints it), 400 for a non-lock.
    for (spec, field) in [
        (
            serde_json::json!({"reason": "x", "operations": ["PATCH"]}),
            "spec.operations[0]",
        ),
        (
            serde_json::json!({"reason": "x", "expiresAt": "2001-01-01T00:00:00Z"}),
            "spec.expiresAt",
        ),
        (serde_json::json!({"reason": ""}), "spec.reason"),
    ] {
        let (status, bytes) = call(
            &router,
            "POST",
            &shop,
            "application/json",
            Some(body("bad", spec)),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let answer = json(&bytes);
        assert_eq!(answer["kind"], "Status");
        assert_eq!(answer["reason"], "Invalid");
        assert_eq!(answer["details"]["causes"][0]["field"], field, "{answer}");
    }
    // A cluster-scope lock must name a kind: an empty target is refused.
    let (status, bytes) = call(
        &router,
        "POST",
        &format!("{BASE}/locks"),
        "application/json",
        Some(body("everything", serde_json::json!({"reason": "x"}))),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{}", json(&bytes));
    assert_eq!(
        json(&bytes)["details"]["causes"][0]["field"],
        "spec.target.kind"
    );
    let (status, _) = call(
        &router,
        "POST",
        &shop,
        "application/json",
        Some(serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A dry run answers the lock and stores nothing.
    let good = body(
        "freeze",
        serde_json::json!({"reason": "release", "exceptGroups": ["sre"]}),
    );
    let (status, _) = call(
        &router,
        "POST",
        &format!("{shop}?dryRun=All"),
        "application/json",
        Some(good.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(state.locks.is_empty());

    let (status, bytes) = call(
        &router,
        "POST",
        &shop,
        "application/json",
        Some(good.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let created = json(&bytes);
    assert_eq!(
        created["status"]["setBy"]["username"], "anonymous (authentication off)",
        "{created}"
    );
    assert_eq!(created["metadata"]["namespace"], "shop");
    let (status, bytes) = call(&router, "POST", &shop, "application/json", Some(good)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(json(&bytes)["reason"], "AlreadyExists");

    // `kubectl get locks -A`: a Table whose rows carry the namespace in their metadata.
    let table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (status, bytes) = call(&router, "GET", &format!("{BASE}/locks"), table_accept, None).await;
    assert_eq!(status, StatusCode::OK);
    let table = json(&bytes);
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][0]["name"], "Name");
    let row = &table["rows"][0];
    assert_eq!(row["cells"][0], "freeze");
    assert_eq!(row["cells"][1], "*");
    assert_eq!(row["cells"][3], "group sre");
    assert_eq!(row["cells"][5], "Active");
    assert_eq!(row["object"]["metadata"]["namespace"], "shop");

    let (status, bytes) = call(&router, "GET", &shop, "application/json", None).await;
    assert_eq!(status, StatusCode::OK);
    let list = json(&bytes);
    assert_eq!(list["kind"], "LockList");
    assert_eq!(list["items"][0]["metadata"]["name"], "freeze");
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    // A watch from 0 starts with every lock; from an old version it is told to re-list.
    let (_, bytes) = call(
        &router,
        "GET",
        &format!("{shop}?watch=true&resourceVersion=0&timeoutSeconds=0"),
        "application/json",
        None,
    )
    .await;
    let first = json(bytes.split(|b| *b == b'\n').next().unwrap());
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "freeze");
    let (_, bytes) = call(
        &router,
        "GET",
        &format!("{shop}?watch=true&resourceVersion=1"),
        "application/json",
        None,
    )
    .await;
    let gone = json(bytes.trim_ascii_end());
    assert_eq!(gone["type"], "ERROR");
    assert_eq!(gone["object"]["code"], 410);

    // A watch from the list's version sees the delete.
    let watch = {
        let router = router.clone();
        let path = format!("{shop}?watch=true&resourceVersion={version}&timeoutSeconds=30");
        tokio::spawn(async move {
            let request = Request::get(path).body(Body::empty()).unwrap();
            let response = router.oneshot(request).await.unwrap();
            let mut body = response.into_body().into_data_stream();
            use futures::StreamExt as _;
            let chunk = body.next().await.unwrap().unwrap();
            serde_json::from_slice::<Value>(chunk.trim_ascii_end()).unwrap()
        })
    };
    // The watch subscribes when its request is handled; wait for that, not for a time.
    while state.locks.watchers() == 0 {
        tokio::task::yield_now().await;
    }

    let (status, _) = call(
        &router,
        "GET",
        &format!("{shop}/absent"),
        "application/json",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, bytes) = call(
        &router,
        "GET",
        &format!("{shop}/freeze"),
        "application/json",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&bytes)["spec"]["reason"], "release");
    let (status, _) = call(
        &router,
        "DELETE",
        &format!("{shop}/freeze"),
        "application/json",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let deleted = watch.await.unwrap();
    assert_eq!(deleted["type"], "DELETED");
    assert_eq!(deleted["object"]["metadata"]["name"], "freeze");
    let (status, _) = call(
        &router,
        "DELETE",
        &format!("{shop}/freeze"),
        "application/json",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    state.store.clone().close();
}
