//! The query API end to end: filters, pagination, single events, the namespace overview,
//! retention by versions, and bad parameters.

use logistis_e2e::*;
use serde_json::{Value, json};

async fn story(server: &Server) {
    for name in [
        "create-namespace.json",
        "create-deployment.json",
        "update-deployment-replicas.json",
        "update-deployment-image.json",
        "scale-deployment-subresource.json",
        "connect-pod-exec.json",
        "create-secret.json",
        "delete-deployment.json",
    ] {
        server.admit(&own_review(name)).await.unwrap();
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["operation"].as_str().unwrap(),
                e["resource"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn filters_select_and_order_newest_first() {
    let server = Server::start().unwrap();
    story(&server).await;
    let web = server
        .get_ok("/api/v1/events?namespace=shop&kind=deployment&name=web")
        .await
        .unwrap();
    assert_eq!(
        names(&web),
        [
            "DELETE web",
            "UPDATE web",
            "UPDATE web",
            "UPDATE web",
            "CREATE web"
        ]
    );
    let web_apps = server
        .get_ok(
            "/api/v1/events?group=apps&kind=Deployment&namespace=shop&name=web&operation=update",
        )
        .await
        .unwrap();
    assert_eq!(web_apps["items"].as_array().unwrap().len(), 3);
    let bob = server
        .get_ok("/api/v1/events?user=bob@example.com")
        .await
        .unwrap();
    assert_eq!(
        names(&bob),
        ["CONNECT web-7d9f8-abcde", "UPDATE web", "UPDATE web"]
    );
    let cluster = server.get_ok("/api/v1/events?namespace=_").await.unwrap();
    assert_eq!(names(&cluster), ["CREATE shop"]);
    let secrets = server.get_ok("/api/v1/events?kind=SECRET").await.unwrap();
    assert_eq!(names(&secrets), ["CREATE db-credentials"]);
    let recent = server.get_ok("/api/v1/events?since=1h").await.unwrap();
    assert_eq!(recent["items"].as_array().unwrap().len(), 8);
    let future = server
        .get_ok("/api/v1/events?since=2099-01-01T00:00:00Z")
        .await
        .unwrap();
    assert!(future["items"].as_array().unwrap().is_empty());
    let past = server
        .get_ok("/api/v1/events?until=2020-01-01T00:00:00Z")
        .await
        .unwrap();
    assert!(past["items"].as_array().unwrap().is_empty());

    // One event, with its objects and the exact patch.
    let scale = &web["items"][1];
    assert_eq!(scale["resource"]["subresource"], "scale");
    let full = server
        .get_ok(&format!("/api/v1/events/{}", scale["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        full["patch"],
        json!([{"op": "replace", "path": "/spec/replicas", "value": 0}])
    );
    assert_eq!(full["object"]["kind"], "Scale");
    assert_eq!(full["user"]["username"], "bob@example.com");
    let time = full["time"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.contains('.'),
        "{time}"
    );

    let namespaces = server.get_ok("/api/v1/namespaces").await.unwrap();
    let shop = namespaces["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == "shop")
        .unwrap();
    assert_eq!(shop["events"], 7);
    assert_eq!(shop["latest"]["operation"], "DELETE");
    assert_eq!(shop["latest"]["user"]["username"], "alice@example.com");
}

#[tokio::test]
async fn pages_cover_everything_once() {
    let server = Server::start().unwrap();
    let base = own_review("create-deployment.json");
    for n in 0..120 {
        let mut review = with_uid(&base, &format!("page-{n}"));
        review["request"]["name"] = json!(format!("web-{n}"));
        server.admit(&review).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(token) => format!("/api/v1/events?limit=50&continue={token}"),
            None => "/api/v1/events?limit=50".to_owned(),
        };
        let page = server.get_ok(&path).await.unwrap();
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["continue"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(sorted, seen, "newest first, no repeats");
    let default = server.get_ok("/api/v1/events").await.unwrap();
    assert_eq!(
        default["items"].as_array().unwrap().len(),
        50,
        "default limit"
    );
}

#[tokio::test]
async fn bad_parameters_are_400_with_a_message() {
    let server = Server::start().unwrap();
    for (query, needle) in [
        ("/api/v1/events?limit=0", "limit"),
        ("/api/v1/events?limit=1001", "limit"),
        ("/api/v1/events?limit=ten", "limit"),
        ("/api/v1/events?since=last-week", "since"),
        ("/api/v1/events?until=soon", "until"),
        ("/api/v1/events?continue=garbage", "continue"),
        ("/api/v1/events?name=web", "kind"),
        ("/api/v1/events?nmespace=shop", "nmespace"),
        ("/api/v1/events/xyz", "event id"),
    ] {
        let (status, body) = server.get(query).await.unwrap();
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    let (status, body) = server.get("/api/v1/events/0000000000000001").await.unwrap();
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn retention_keeps_the_newest_versions_of_each_object() {
    let server = Server::builder()
        .args(["--max-versions-per-object", "3"])
        .start()
        .unwrap();
    server.admit_six_updates().await.unwrap();
    let web = server
        .get_until(
            "/api/v1/events?namespace=shop&kind=Deployment&name=web",
            |web| {
                web["items"]
                    .as_array()
                    .is_some_and(|items| items.len() == 3)
            },
        )
        .await
        .unwrap();
    let uids: Vec<&str> = web["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, ["ret-5", "ret-4", "ret-3"], "{web}");
    let removed = server
        .metric("logistis_store_retention_removed_events_total")
        .await
        .unwrap();
    assert_eq!(removed, 3.0);
}
