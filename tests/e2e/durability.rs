//! Durability: everything reads back after a restart, and after `kill -9` under concurrent
//! load every review that was answered is in the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use logistis_e2e::*;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[tokio::test]
async fn everything_reads_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::builder().data_dir(&data).start().unwrap();
    for (_, review) in reviews_in(&own_fixtures().join("admission")) {
        server.admit(&review).await.unwrap();
    }
    let before = server.get_ok("/api/v1/events?limit=1000").await.unwrap();
    let namespaces_before = server.get_ok("/api/v1/namespaces").await.unwrap();
    assert!(
        server.terminate().unwrap().success(),
        "SIGTERM is a clean exit"
    );

    let server = Server::builder().data_dir(&data).start().unwrap();
    let after = server.get_ok("/api/v1/events?limit=1000").await.unwrap();
    assert_eq!(before, after);
    assert_eq!(
        namespaces_before,
        server.get_ok("/api/v1/namespaces").await.unwrap()
    );
    for event in after["items"].as_array().unwrap() {
        let id = event["id"].as_str().unwrap();
        let full = server
            .get_ok(&format!("/api/v1/events/{id}"))
            .await
            .unwrap();
        assert_eq!(full["uid"], event["uid"]);
    }
}

fn review_for(n: usize) -> Value {
    let mut review = own_review("create-deployment.json");
    review["request"]["uid"] = json!(format!("load-{n:06}"));
    review["request"]["name"] = json!(format!("web-{n}"));
    review["request"]["object"]["metadata"]["name"] = json!(format!("web-{n}"));
    review
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::builder().data_dir(&data).start().unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let server_ref = Arc::new((server.client.clone(), server.webhook_url.clone()));
    const WORKERS: usize = 16;
    const KILL_AFTER: usize = 400;
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        let target = server_ref.clone();
        tasks.push(tokio::spawn(async move {
            let (client, url) = &*target;
            // Bounded: at most 10 000 requests per worker even if the kill never came.
            for seq in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let n = worker * 10_000 + seq;
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&review_for(n)).unwrap())
                    .send()
                    .await;
                let Ok(response) = response else { break };
                let Ok(answer) = response.json::<Value>().await else {
                    break;
                };
                if answer["response"]["allowed"] == true {
                    acknowledged.lock().await.push(n);
                }
            }
        }));
    }
    // Kill once enough reviews were answered, with the workers still sending.
    loop {
        if acknowledged.lock().await.len() >= KILL_AFTER {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill9().unwrap();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(acknowledged.len() >= KILL_AFTER);

    let server = Server::builder().data_dir(&data).start().unwrap();
    let mut stored = std::collections::HashSet::new();
    let mut token = String::new();
    loop {
        let page = server
            .get_ok(&format!("/api/v1/events?limit=1000&continue={token}"))
            .await
            .unwrap();
        for event in page["items"].as_array().unwrap() {
            stored.insert(event["uid"].as_str().unwrap().to_owned());
        }
        match page["continue"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|n| !stored.contains(&format!("load-{n:06}")))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!(
        "kill -9 after {} acknowledged reviews: all {} found ({} stored in all)",
        acknowledged.len(),
        acknowledged.len(),
        stored.len()
    );
}
