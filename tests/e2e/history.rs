//! One object's history end to end: reviews go through `/validate` of the real binary, then
//! `/api/v1/objects/...` answers versions, a version, diffs, field history, bisect and blame;
//! re-creation starts a generation, retention says where versions start, bad input is 4xx.

use logistis_e2e::*;
use serde_json::{Value, json};

const WEB: &str = "/api/v1/objects/apps/deployment/shop/web";

fn users(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field]["username"].as_str().unwrap().to_owned())
        .collect()
}

/// create (alice, 2 replicas), replicas → 5 (bob), image 1.4.0 → 1.5.0 (ci), scale → 0 (bob).
async fn four_versions(server: &Server) {
    for name in [
        "create-deployment.json",
        "update-deployment-replicas.json",
        "update-deployment-image.json",
        "update-deployment-status-only.json",
        "scale-deployment-subresource.json",
    ] {
        server.admit(&own_review(name)).await.unwrap();
    }
}

#[tokio::test]
async fn versions_diff_history_bisect_and_blame() {
    let server = Server::start().unwrap();
    four_versions(&server).await;

    let list = server.get_ok(&format!("{WEB}/versions")).await.unwrap();
    assert_eq!(
        list["object"],
        json!({"group": "apps", "kind": "Deployment", "namespace": "shop", "name": "web"})
    );
    assert_eq!(list["firstVersion"], 1);
    assert_eq!(list["trimmedEvents"], 0);
    let numbers: Vec<u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        [1, 2, 3, 4],
        "the status-only update is noise, not a version"
    );
    assert_eq!(
        users(&list["items"], "user"),
        [
            "alice@example.com",
            "bob@example.com",
            "system:serviceaccount:ci:deployer",
            "bob@example.com"
        ]
    );
    assert_eq!(
        list["items"][2]["summary"],
        "spec.template.spec.containers[0].image"
    );
    assert_eq!(list["items"][3]["subresource"], "scale");
    assert_eq!(list["generations"][0]["objectUid"], "d0c5-0001");

    // Version 4 came through the scale subresource: the full Deployment with 0 replicas.
    let v4 = server.get_ok(&format!("{WEB}/versions/4")).await.unwrap();
    assert_eq!(v4["object"]["spec"]["replicas"], 0);
    assert_eq!(v4["object"]["kind"], "Deployment");
    assert_eq!(
        v4["object"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/web:1.5.0"
    );
    assert!(v4["object"].get("status").is_none());
    assert!(v4["object"]["metadata"].get("resourceVersion").is_none());
    assert!(v4["object"]["metadata"].get("managedFields").is_none());

    // Default diff: the last change.
    let last = server.get_ok(&format!("{WEB}/diff")).await.unwrap();
    assert_eq!(
        (
            last["from"]["version"].as_u64(),
            last["to"]["version"].as_u64()
        ),
        (Some(3), Some(4))
    );
    assert_eq!(
        last["patch"],
        json!([{"op": "replace", "path": "/spec/replicas", "value": 0}])
    );
    assert!(
        last["unified"]
            .as_str()
            .unwrap()
            .contains("\n-  replicas: 5\n+  replicas: 0\n"),
        "{last}"
    );
    let image = server
        .get_ok(&format!(
            "{WEB}/diff?from=1&to=4&path=spec.template.spec.containers[0].image"
        ))
        .await
        .unwrap();
    assert_eq!(
        image["patch"],
        json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.example.com/web:1.5.0"}])
    );
    let pointer = server
        .get_ok(&format!(
            "{WEB}/diff?from=1&to=4&path=/spec/template/spec/containers/0/image"
        ))
        .await
        .unwrap();
    assert_eq!(pointer["patch"], image["patch"]);

    let replicas = server
        .get_ok(&format!("{WEB}/history?path=spec.replicas"))
        .await
        .unwrap();
    let changes: Vec<(u64, Value, Value)> = replicas["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["version"].as_u64().unwrap(),
                c["old"].clone(),
                c["new"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (1, Value::Null, json!(2)),
            (2, json!(2), json!(5)),
            (4, json!(5), json!(0))
        ]
    );

    let zero = server
        .get_ok(&format!("{WEB}/bisect?path=spec.replicas&value=0"))
        .await
        .unwrap();
    assert_eq!(zero["version"]["version"], 4);
    assert_eq!(zero["version"]["user"]["username"], "bob@example.com");
    assert_eq!(zero["previous"], 5);
    let (status, body) = server
        .get(&format!("{WEB}/bisect?path=spec.replicas&value=42"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("never had the value"),
        "{body}"
    );

    let blame = server.get_ok(&format!("{WEB}/blame")).await.unwrap();
    assert_eq!(blame["version"], 4);
    let owner = |needle: &str| -> String {
        let lines = blame["lines"].as_array().unwrap();
        let line = lines
            .iter()
            .find(|l| l["line"].as_str().unwrap().trim() == needle)
            .unwrap_or_else(|| panic!("no line {needle:?} in {blame}"));
        line["user"]["username"].as_str().unwrap().to_owned()
    };
    assert_eq!(owner("replicas: 0"), "bob@example.com");
    assert_eq!(
        owner("- image: registry.example.com/web:1.5.0"),
        "system:serviceaccount:ci:deployer"
    );
    assert_eq!(owner("- containerPort: 8080"), "alice@example.com");
    assert_eq!(owner("team: payments"), "alice@example.com");
}

#[tokio::test]
async fn a_recreated_object_starts_a_new_generation() {
    let server = Server::start().unwrap();
    four_versions(&server).await;
    server
        .admit(&own_review("delete-deployment.json"))
        .await
        .unwrap();
    let mut again = with_uid(&own_review("create-deployment.json"), "recreate-1");
    again["request"]["object"]["metadata"]["uid"] = json!("d0c5-0002");
    again["request"]["userInfo"]["username"] = json!("carol@example.com");
    server.admit(&again).await.unwrap();

    // Kind is case-insensitive; the answer names it as recorded.
    let list = server
        .get_ok("/api/v1/objects/apps/DEPLOYMENT/shop/web/versions")
        .await
        .unwrap();
    assert_eq!(list["object"]["kind"], "Deployment");
    let generations = list["generations"].as_array().unwrap();
    assert_eq!(generations.len(), 2);
    assert_eq!(
        (
            &generations[0]["objectUid"],
            &generations[0]["deleted"],
            &generations[0]["lastVersion"]
        ),
        (&json!("d0c5-0001"), &json!(true), &json!(5))
    );
    assert_eq!(
        (
            &generations[1]["objectUid"],
            &generations[1]["firstVersion"]
        ),
        (&json!("d0c5-0002"), &json!(6))
    );
    assert_eq!(list["items"][4]["summary"], "deleted");
    assert_eq!(list["items"][5]["summary"], "created");

    // The deleted generation stays queryable.
    let deleted = server.get_ok(&format!("{WEB}/versions/5")).await.unwrap();
    assert_eq!(deleted["deleted"], true);
    // The object as deleted: the DELETE review's oldObject.
    assert_eq!(deleted["object"]["spec"]["replicas"], 0);
    let across = server
        .get_ok(&format!("{WEB}/diff?from=4&to=6&path=spec.replicas"))
        .await
        .unwrap();
    assert_eq!(
        across["patch"],
        json!([{"op": "replace", "path": "/spec/replicas", "value": 2}])
    );

    // Blame shows the live generation only: everything is carol's re-creation.
    let blame = server.get_ok(&format!("{WEB}/blame")).await.unwrap();
    assert_eq!(blame["generation"], 2);
    assert!(
        blame["lines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["user"]["username"] == "carol@example.com"),
        "{blame}"
    );
}

#[tokio::test]
async fn core_group_and_cluster_scoped_objects() {
    let server = Server::start().unwrap();
    server
        .admit(&own_review("create-namespace.json"))
        .await
        .unwrap();
    let list = server
        .get_ok("/api/v1/objects/core/namespace/_/shop/versions")
        .await
        .unwrap();
    assert_eq!(
        list["object"],
        json!({"group": "", "kind": "Namespace", "namespace": "", "name": "shop"})
    );
    assert_eq!(list["items"][0]["operation"], "CREATE");
    let blame = server
        .get_ok("/api/v1/objects/core/Namespace/_/shop/blame")
        .await
        .unwrap();
    let lines: Vec<&str> = blame["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap().trim())
        .collect();
    assert!(lines.contains(&"- kubernetes"), "{lines:?}");
}

#[tokio::test]
async fn retention_says_where_versions_start() {
    let server = Server::builder()
        .args(["--max-versions-per-object", "3"])
        .start()
        .unwrap();
    server.admit_six_updates().await.unwrap();
    let list = server
        .get_until(&format!("{WEB}/versions"), |list| {
            list["trimmedEvents"] == 3
        })
        .await
        .unwrap();
    assert_eq!(list["trimmedEvents"], 3, "{list}");
    assert_eq!(list["firstVersion"], 4);
    let numbers: Vec<u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [4, 5, 6]);
    assert!(
        list["items"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("retention"),
        "{list}"
    );
    let (status, body) = server.get(&format!("{WEB}/versions/1")).await.unwrap();
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("4..6"), "{body}");
}

#[tokio::test]
async fn bad_requests_are_4xx_with_a_message() {
    let server = Server::start().unwrap();
    four_versions(&server).await;
    for (path, expected) in [
        ("/api/v1/objects/apps/deployment/shop/nope/versions", 404),
        ("/api/v1/objects/apps/deployment/shop/nope/blame", 404),
        (&format!("{WEB}/versions/abc") as &str, 400),
        (&format!("{WEB}/versions/99"), 404),
        (&format!("{WEB}/diff?from=x"), 400),
        (&format!("{WEB}/diff?from=1&to=99"), 404),
        (&format!("{WEB}/diff?path=spec..replicas"), 400),
        (&format!("{WEB}/history"), 400),
        (&format!("{WEB}/bisect?path=spec.replicas"), 400),
        (&format!("{WEB}/versions?bogus=1"), 400),
    ] {
        let (status, body) = server.get(path).await.unwrap();
        assert_eq!(status, expected, "{path}: {body}");
        assert!(
            !body["error"].as_str().unwrap_or("").is_empty(),
            "{path}: {body}"
        );
    }
}
