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
        store,
        metrics: Arc::new(Metrics::new()),
        admission: Arc::new(AdmissionContext {
            policy: Policy::default(),
            redactor: Redactor::new([3; 32]),
            kinds: KindTable::default(),
        }),
        max_body_bytes: 64 * 1024,
        body_budget: Arc::new(super::webhook::BodyBudget::new(256 * 1024)),
        answer_only: false,
        confirm: None,
    }
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
    let page = state
        .store
        .list_events(
            &Default::default(),
            crate::store::Scan {
                limit: 10,
                before: None,
                budget: 100,
            },
        )
        .unwrap();
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
