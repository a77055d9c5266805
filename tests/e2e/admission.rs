//! The webhook end to end: every real review answered and stored as it should be, Secrets
//! never on disk, dedupe, dry-run, noise, and bad bodies.

use logistis_e2e::*;
use serde_json::{Value, json};

/// What the server must do with one review.
#[derive(Debug, PartialEq)]
enum Expect {
    Stored,
    DryRun,
    Noise,
}

/// Dry-run reviews are skipped by default; an UPDATE whose objects differ only in noise too.
fn expectation(review: &Value) -> Expect {
    let request = &review["request"];
    if request["dryRun"] == true {
        return Expect::DryRun;
    }
    if request["operation"] == "UPDATE" {
        let strip = |object: &Value| {
            let mut object = object.clone();
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                for field in ["managedFields", "resourceVersion", "generation"] {
                    metadata.remove(field);
                }
            }
            object
        };
        if !request["oldObject"].is_null()
            && strip(&request["object"]) == strip(&request["oldObject"])
        {
            return Expect::Noise;
        }
    }
    Expect::Stored
}

async fn all_events(server: &Server) -> Vec<Value> {
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .get_ok(&format!("/api/v1/events?limit=1000&continue={token}"))
            .await
            .unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["continue"].as_str() {
            Some(next) => token = next.to_owned(),
            None => return items,
        }
    }
}

/// A re-sent review repeats the uid and what it is about (hand-written corpora reuse uids).
fn identity(review: &Value) -> Option<String> {
    let request = &review["request"];
    let uid = request["uid"].as_str().filter(|u| !u.is_empty())?;
    let object = if request["object"].is_object() {
        &request["object"]
    } else {
        &request["oldObject"]
    };
    Some(format!(
        "{uid}|{}|{}|{}|{}|{}",
        request["operation"],
        request["resource"]["resource"],
        request["subResource"],
        request["namespace"]
            .as_str()
            .or_else(|| object["metadata"]["namespace"].as_str())
            .unwrap_or(""),
        request["name"]
            .as_str()
            .or_else(|| object["metadata"]["name"].as_str())
            .unwrap_or(""),
    ))
}

async fn check_corpus(server: &Server, reviews: &[(String, Value)]) {
    let mut expected_stored = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, review) in reviews {
        let answer = server
            .admit(review)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(
            answer["apiVersion"], review["apiVersion"],
            "{name}: answered in the version asked"
        );
        if expectation(review) == Expect::Stored
            && identity(review).is_none_or(|key| seen.insert(key))
        {
            expected_stored.push((name, review));
        }
    }
    let events = all_events(server).await;
    for (name, review) in &expected_stored {
        let request = &review["request"];
        let object = if request["object"].is_object() {
            &request["object"]
        } else {
            &request["oldObject"]
        };
        let name_in_review = request["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .or_else(|| object["metadata"]["name"].as_str())
            .or_else(|| object["metadata"]["generateName"].as_str())
            .unwrap_or("");
        let event = events
            .iter()
            .find(|e| {
                e["uid"] == request["uid"].as_str().unwrap_or("")
                    && e["resource"]["name"] == name_in_review
            })
            .unwrap_or_else(|| {
                panic!(
                    "{name}: no stored event for uid {} / {name_in_review}",
                    request["uid"]
                )
            });
        let operation = request["operation"].as_str().unwrap().to_ascii_uppercase();
        assert_eq!(event["operation"], operation, "{name}");
        assert_eq!(
            event["user"]["username"],
            request["userInfo"]["username"].as_str().unwrap_or(""),
            "{name}"
        );
        let namespace = request["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .or_else(|| object["metadata"]["namespace"].as_str())
            .unwrap_or("");
        assert_eq!(event["resource"]["namespace"], namespace, "{name}");
        if let Some(manager) = request["options"]["fieldManager"].as_str() {
            assert_eq!(event["fieldManager"], manager, "{name}");
        }
        // The full event carries the objects, without managedFields.
        let full = server
            .get_ok(&format!("/api/v1/events/{}", event["id"].as_str().unwrap()))
            .await
            .unwrap();
        match operation.as_str() {
            "CREATE" => {
                assert!(full["object"].is_object(), "{name}: {full}");
                assert_eq!(full["patch"][0]["op"], "add", "{name}");
            }
            "DELETE" => assert!(full["oldObject"].is_object(), "{name}: {full}"),
            "CONNECT" => assert!(full["options"].is_object(), "{name}: {full}"),
            _ => {}
        }
        assert!(
            full["object"]["metadata"]["managedFields"].is_null(),
            "{name}"
        );
        assert!(
            full["oldObject"]["metadata"]["managedFields"].is_null(),
            "{name}"
        );
    }
    assert_eq!(
        events.len(),
        expected_stored.len(),
        "exactly the expected events are stored"
    );
}

#[tokio::test]
async fn every_hand_written_review_is_answered_and_stored() {
    let server = Server::start().unwrap();
    let reviews = reviews_in(&own_fixtures().join("admission"));
    assert!(reviews.len() >= 10);
    check_corpus(&server, &reviews).await;
    let noise = server
        .metric("logistis_admission_reviews_total{outcome=\"noise\"}")
        .await
        .unwrap();
    let dry_run = server
        .metric("logistis_admission_reviews_total{outcome=\"dry_run\"}")
        .await
        .unwrap();
    assert_eq!((noise, dry_run), (1.0, 1.0));
}

#[tokio::test]
async fn every_real_review_is_answered_and_stored() {
    let Some(corpus) = skip_without_corpus("every_real_review_is_answered_and_stored") else {
        return;
    };
    let server = Server::start().unwrap();
    let reviews = reviews_in(&corpus.join("admission"));
    assert!(reviews.len() >= 30, "the corpus has its reviews");
    check_corpus(&server, &reviews).await;
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

pub(crate) fn occurrences(files: &[std::path::PathBuf], needle: &str) -> Vec<String> {
    files
        .iter()
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[tokio::test]
async fn secret_values_never_reach_the_disk() {
    let mut server = Server::start().unwrap();
    let mut plaintexts = vec![
        "hunter2-plaintext".to_owned(),
        "aHVudGVyMi1wbGFpbnRleHQ=".to_owned(),
        "s3cr3t-token-value".to_owned(),
        "czNjcjN0LXRva2VuLXZhbHVl".to_owned(),
        "correct-horse-battery-staple".to_owned(),
        "Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5LXN0YXBsZQ==".to_owned(),
    ];
    let mut reviews = vec![
        own_review("create-secret.json"),
        own_review("update-secret-password.json"),
    ];
    if let Some(corpus) = skip_without_corpus("secret_values_never_reach_the_disk (real Secret)") {
        let review = load_review(&corpus.join("admission/request-only-create-secret.json"));
        // The review without its secret parts: a decoded value that also appears there (the
        // real Secret's username "admin" is inside "kubernetes-admin") proves nothing.
        let mut public = review.clone();
        public["request"]["object"]["data"] = json!(null);
        public["request"]["object"]["metadata"]["annotations"] = json!(null);
        let public = public.to_string();
        for value in review["request"]["object"]["data"]
            .as_object()
            .unwrap()
            .values()
        {
            let encoded = value.as_str().unwrap().to_owned();
            let decoded = String::from_utf8(base64_decode(&encoded)).unwrap();
            plaintexts.push(encoded);
            if !public.contains(&decoded) {
                plaintexts.push(decoded);
            }
        }
        reviews.push(review);
    }
    for review in &reviews {
        server.admit(review).await.unwrap();
    }
    // The change is still visible, as a change of hash.
    let events = server
        .get_ok("/api/v1/events?namespace=shop&kind=secret&name=db-credentials")
        .await
        .unwrap();
    let update = &events["items"][0];
    assert_eq!(update["operation"], "UPDATE");
    let paths: Vec<&str> = update["patch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/data/password"), "{paths:?}");
    assert!(server.terminate().unwrap().success());

    let mut files = files_under(&server.data_dir);
    // On a database the events are there, not in the data dir: its rows, as text.
    let dump = tempfile::tempdir().unwrap();
    if let Some(url) = logistis_e2e::postgres::store_for(&server.data_dir) {
        let rows = logistis_e2e::postgres::query(
            &url,
            "SELECT name || ' ' || encode(summary, 'escape') || ' ' \
             || coalesce(encode(objects, 'escape'), '') FROM logistis_events",
        );
        let path = dump.path().join("logistis_events.txt");
        std::fs::write(&path, rows.join("\n")).unwrap();
        files.push(path);
    }
    // Positive control: a plain value of the same objects is found, so the scan can see data.
    assert!(
        !occurrences(&files, "db-credentials").is_empty(),
        "the scan must see stored, uncompressed data"
    );
    for plaintext in &plaintexts {
        let found = occurrences(&files, plaintext);
        assert!(found.is_empty(), "{plaintext:?} found in {found:?}");
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

#[tokio::test]
async fn resent_dry_run_and_noise_only_reviews() {
    let server = Server::start().unwrap();
    let create = own_review("create-deployment.json");
    server.admit(&create).await.unwrap();
    server.admit(&create).await.unwrap();
    server
        .admit(&own_review("update-deployment-status-only.json"))
        .await
        .unwrap();
    server
        .admit(&own_review("create-configmap-dry-run.json"))
        .await
        .unwrap();
    let events = server.get_ok("/api/v1/events").await.unwrap();
    assert_eq!(events["items"].as_array().unwrap().len(), 1, "{events}");
    for (outcome, count) in [
        ("recorded", 1.0),
        ("deduplicated", 1.0),
        ("noise", 1.0),
        ("dry_run", 1.0),
    ] {
        let sample = format!("logistis_admission_reviews_total{{outcome=\"{outcome}\"}}");
        assert_eq!(server.metric(&sample).await.unwrap(), count, "{sample}");
    }

    // Asked to, the server records dry runs (flagged) and noise-only updates.
    let server = Server::builder()
        .args(["--record-dry-run", "--record-noise"])
        .start()
        .unwrap();
    server
        .admit(&own_review("create-configmap-dry-run.json"))
        .await
        .unwrap();
    server
        .admit(&own_review("update-deployment-status-only.json"))
        .await
        .unwrap();
    let events = server.get_ok("/api/v1/events").await.unwrap();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{events}");
    assert!(
        items
            .iter()
            .any(|e| e["dryRun"] == true && e["resource"]["kind"] == "ConfigMap")
    );
    assert!(
        items
            .iter()
            .any(|e| e["resource"]["subresource"] == "status" && e["patch"] == json!([]))
    );
}

#[tokio::test]
async fn bad_bodies_get_a_4xx_and_change_nothing() {
    let server = Server::builder()
        .args(["--max-body-size", "64Ki"])
        .start()
        .unwrap();
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"apiVersion\": ".to_vec(),
            "application/json",
            400,
            "not a valid AdmissionReview",
        ),
        (
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "application/json",
            400,
            "no request",
        ),
        (
            "wrong version",
            br#"{"apiVersion":"admission.k8s.io/v2","request":{}}"#.to_vec(),
            "application/json",
            400,
            "unsupported",
        ),
        (
            "a JSON array",
            b"[]".to_vec(),
            "application/json",
            400,
            "expected a JSON object",
        ),
        (
            "YAML",
            b"request: {}".to_vec(),
            "application/yaml",
            415,
            "application/json",
        ),
        (
            "oversized",
            vec![b' '; 100 * 1024],
            "application/json",
            413,
            "limit",
        ),
    ];
    for (what, body, content_type, status, needle) in cases {
        let response = server
            .client
            .post(&server.webhook_url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{what}: {body}"
        );
    }
    // The server is unharmed and still records.
    server
        .admit(&own_review("create-deployment.json"))
        .await
        .unwrap();
    let events = server.get_ok("/api/v1/events").await.unwrap();
    assert_eq!(events["items"].as_array().unwrap().len(), 1);
    let bad = server
        .metric("logistis_admission_reviews_total{outcome=\"bad_request\"}")
        .await
        .unwrap();
    assert_eq!(bad, 6.0);
}
