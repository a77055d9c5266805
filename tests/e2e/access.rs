//! Access end to end: the real `logistis serve --query-auth kubernetes` behind the Kubernetes
//! API stand-in (`logistis_e2e::apiserver`), which plays kube-apiserver: it authenticates
//! test users by bearer token, authorizes from the test's RBAC table, proxies
//! `/apis/logistis.io/v1alpha1` to Logistis with the front-proxy client certificate and
//! `X-Remote-*` headers, and answers the TokenReviews and SubjectAccessReviews Logistis posts.
//!
//! The history: in namespace `shop` (which alice may read) and `bank` (which she may not) a
//! Deployment `web` created and scaled and a Secret `db-credentials`; and the cluster-scoped
//! Namespace `shop`. Each test checks what readers see through the stand-in (where the API
//! server's own check comes first) and, talking to Logistis directly as the front proxy,
//! that Logistis' own checks hold where the API server's would let a request through.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use logistis_e2e::apiserver::{ApiServer, Identity, ResourceType, Scope, Subject, TestCa, User};
use logistis_e2e::{Server, cargo_bin, own_review, target_dir, with_uid};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const BASE: &str = "/apis/logistis.io/v1alpha1";
/// The namespace alice may read, and the one she may not.
const SHOP: &str = "shop";
const BANK: &str = "bank";

/// Every resource of the shipped `logistis:changes-viewer` role.
const VIEWER_RESOURCES: &[&str] = &[
    "changes",
    "changes/versions",
    "changes/diff",
    "changes/history",
    "changes/bisect",
    "changes/blame",
];

/// The stand-in and Logistis behind it, with the APIService registered.
struct Stack {
    api: ApiServer,
    server: Server,
}

/// A review of `fixture` moved into `namespace` (none: left as it is), with a fresh uid.
fn review(fixture: &str, namespace: Option<&str>, uid: &str) -> Value {
    let mut review = with_uid(&own_review(fixture), uid);
    if let Some(namespace) = namespace {
        let request = &mut review["request"];
        request["namespace"] = json!(namespace);
        for object in ["object", "oldObject"] {
            if request[object].is_object() {
                request[object]["metadata"]["namespace"] = json!(namespace);
            }
        }
    }
    review
}

/// alice reads `shop` (the viewer role bound there) and the overview; carol also reads
/// Secrets in `shop`; ops reads everything (the role bound cluster-wide, and Secrets).
fn users(api: &ApiServer) {
    api.add_user(User::new("alice", "alice-token"));
    api.add_user(User::new("carol", "carol-token"));
    api.add_user(User::new("ops", "ops-token"));
    api.rbac(|rbac| {
        for user in ["alice", "carol"] {
            rbac.allow(
                Subject::user(user),
                &["get", "list", "watch"],
                "logistis.io",
                VIEWER_RESOURCES,
                Scope::Namespace(SHOP.into()),
            )
            .allow(
                Subject::user(user),
                &["list"],
                "logistis.io",
                &["namespacesummaries"],
                Scope::Cluster,
            );
        }
        rbac.allow(
            Subject::user("carol"),
            &["get"],
            "",
            &["secrets"],
            Scope::Namespace(SHOP.into()),
        )
        .allow(
            Subject::user("ops"),
            &["get", "list", "watch"],
            "logistis.io",
            VIEWER_RESOURCES,
            Scope::Cluster,
        )
        .allow(
            Subject::user("ops"),
            &["list"],
            "logistis.io",
            &["namespacesummaries"],
            Scope::Cluster,
        )
        .allow(
            Subject::user("ops"),
            &["get"],
            "",
            &["secrets"],
            Scope::Cluster,
        );
    });
}

impl Stack {
    async fn start() -> Result<Stack> {
        // A custom resource only discovery knows (kubectl blame resolves `wdg` through it).
        let widgets =
            ResourceType::new("example.com", "v1", "widgets", "Widget", true).short_names(&["wdg"]);
        let api = ApiServer::builder().resource_type(widgets).start().await?;
        users(&api);
        let kubeconfig = api.logistis_kubeconfig()?;
        // Starting blocks until the listeners are announced, which needs the stand-in to
        // answer (the request-header ConfigMap is read first): off the runtime's workers.
        let server = tokio::task::spawn_blocking(move || {
            Server::builder()
                .args(["--query-auth", "kubernetes"])
                .env("KUBECONFIG", &kubeconfig.to_string_lossy())
                .start()
        })
        .await??;
        let address: SocketAddr = server
            .query_url
            .trim_start_matches("https://")
            .parse()
            .context("the query URL is https://ADDRESS")?;
        api.set_service_endpoint("logistis", "logistis", address);
        let ca = std::fs::read(&server.ca_path)?;
        api.register_api_service(
            "logistis.io",
            "v1alpha1",
            "logistis",
            "logistis",
            Some(ca.as_slice()),
        );
        let stack = Stack { api, server };
        stack.record_history().await?;
        Ok(stack)
    }

    async fn record_history(&self) -> Result<()> {
        for (namespace, prefix) in [(SHOP, "s"), (BANK, "b")] {
            for (n, fixture) in [
                "create-deployment.json",
                "update-deployment-replicas.json",
                "create-secret.json",
            ]
            .into_iter()
            .enumerate()
            {
                let uid = format!("{prefix}{n}");
                self.server
                    .admit(&review(fixture, Some(namespace), &uid))
                    .await?;
            }
        }
        self.server
            .admit(&review("create-namespace.json", None, "c0"))
            .await?;
        Ok(())
    }

    /// GET through the stand-in as the user with this token.
    async fn get(&self, token: &str, path: &str) -> Result<(u16, Value)> {
        let response = self
            .api
            .client(token)?
            .get(format!("{}{path}", self.api.url))
            .send()
            .await?;
        answer(response).await
    }

    /// A client of Logistis' query listener that trusts its CA, presenting `identity`.
    fn direct_client(&self, identity: Option<&Identity>) -> Result<reqwest::Client> {
        let ca = std::fs::read(&self.server.ca_path)?;
        let mut client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .timeout(Duration::from_secs(60));
        if let Some(identity) = identity {
            client = client.identity(identity.reqwest());
        }
        Ok(client.build()?)
    }

    /// GET straight from Logistis as the aggregation layer would send it for `user`: the
    /// stand-in's front-proxy certificate and the user in `X-Remote-User` (so Logistis' own
    /// checks answer, whatever the API server would have let through).
    async fn as_proxy(&self, user: &str, path: &str) -> Result<(u16, Value)> {
        let identity = self.api.front_proxy_identity();
        let response = self
            .direct_client(Some(&identity))?
            .get(format!("{}{path}", self.server.query_url))
            .header("X-Remote-User", user)
            .header("X-Remote-Group", "system:authenticated")
            .send()
            .await?;
        answer(response).await
    }

    fn kubeconfig(&self, token: &str) -> Result<PathBuf> {
        self.api.kubeconfig(token, SHOP)
    }
}

async fn answer(response: reqwest::Response) -> Result<(u16, Value)> {
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// The namespaces of a ChangeList's items ("" for cluster-scoped objects).
fn namespaces_of(list: &Value) -> Vec<String> {
    items(list)
        .iter()
        .map(|item| {
            item["resource"]["namespace"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn kinds_of(list: &Value) -> Vec<String> {
    items(list)
        .iter()
        .map(|item| item["resource"]["kind"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn assert_forbidden(answer: &(u16, Value), what: &str) {
    assert_eq!(answer.0, 403, "{what}: {}", answer.1);
    assert_eq!(answer.1["kind"], "Status", "{what}: {}", answer.1);
    assert_eq!(answer.1["reason"], "Forbidden", "{what}: {}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_one_namespace_sees_nothing_of_another() -> Result<()> {
    let stack = Stack::start().await?;

    // Lists: alice's namespace, without its Secret; bank refused by the API server.
    let (status, list) = stack
        .get("alice-token", &format!("{BASE}/namespaces/{SHOP}/changes"))
        .await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(namespaces_of(&list), [SHOP, SHOP], "{list}");
    assert!(!kinds_of(&list).contains(&"Secret".to_owned()), "{list}");
    let refused = stack
        .get("alice-token", &format!("{BASE}/namespaces/{BANK}/changes"))
        .await?;
    assert_forbidden(&refused, "bank through the API server");
    // Logistis refuses it too, should the API server let it through.
    let refused = stack
        .as_proxy("alice", &format!("{BASE}/namespaces/{BANK}/changes"))
        .await?;
    assert_forbidden(&refused, "bank from Logistis");
    assert!(
        refused.1["message"].as_str().unwrap_or_default().contains(
            r#"cannot list resource "changes" in API group "logistis.io" in the namespace "bank""#
        ),
        "{}",
        refused.1
    );
    // Across namespaces (the API server would refuse alice; Logistis filters): only shop.
    for query in ["", "?fieldSelector=resource.kind%3DDeployment", "?limit=1"] {
        let (status, list) = stack
            .as_proxy("alice", &format!("{BASE}/changes{query}"))
            .await?;
        assert_eq!(status, 200, "{list}");
        let seen = namespaces_of(&list);
        assert!(
            !seen.is_empty() && seen.iter().all(|ns| ns == SHOP),
            "{query}: {list}"
        );
    }
    // Cluster-scoped changes need the cluster-scope right.
    let (status, list) = stack
        .as_proxy(
            "alice",
            &format!("{BASE}/changes?fieldSelector=metadata.namespace%3D"),
        )
        .await?;
    assert_eq!((status, items(&list).len()), (200, 0), "{list}");
    let (status, list) = stack
        .get(
            "ops-token",
            &format!("{BASE}/changes?fieldSelector=metadata.namespace%3D"),
        )
        .await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(kinds_of(&list), ["Namespace"], "{list}");
    let (_, all) = stack.get("ops-token", &format!("{BASE}/changes")).await?;
    assert_eq!(items(&all).len(), 7, "ops sees everything: {all}");

    // The overview: only shop, its latest change not the Secret alice may not read.
    let (status, overview) = stack
        .get("alice-token", &format!("{BASE}/namespacesummaries"))
        .await?;
    assert_eq!(status, 200, "{overview}");
    let listed: Vec<&Value> = overview["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["namespace"])
        .collect();
    assert_eq!(listed, [SHOP], "{overview}");
    assert!(overview["items"][0]["latest"].is_null(), "{overview}");
    // Nor is the Secret's change counted: as many changes as alice's list of shop shows.
    let (_, visible) = stack
        .get("alice-token", &format!("{BASE}/namespaces/{SHOP}/changes"))
        .await?;
    assert_eq!(
        overview["items"][0]["changes"].as_u64(),
        Some(items(&visible).len() as u64),
        "{overview} {visible}"
    );
    let (_, overview) = stack
        .get("ops-token", &format!("{BASE}/namespacesummaries"))
        .await?;
    assert_eq!(overview["items"].as_array().unwrap().len(), 3, "{overview}");

    // Single changes: bank's by id is refused in bank and not found under shop.
    let bank_id = items(&all)
        .iter()
        .find(|item| item["resource"]["namespace"] == BANK)
        .and_then(|item| item["metadata"]["name"].as_str().map(str::to_owned))
        .context("a bank change")?;
    let refused = stack
        .as_proxy(
            "alice",
            &format!("{BASE}/namespaces/{BANK}/changes/{bank_id}"),
        )
        .await?;
    assert_forbidden(&refused, "bank's change by id");
    let (status, body) = stack
        .get(
            "alice-token",
            &format!("{BASE}/namespaces/{SHOP}/changes/{bank_id}"),
        )
        .await?;
    assert_eq!(status, 404, "{body}");
    assert!(body.get("object").is_none(), "{body}");

    // History views of bank's objects: refused by both; shop's answer.
    for view in ["versions", "diff", "history?path=spec.replicas", "blame"] {
        let path = format!("{BASE}/namespaces/{BANK}/changes/Deployment.apps:web/{view}");
        assert_forbidden(&stack.get("alice-token", &path).await?, &path);
        assert_forbidden(&stack.as_proxy("alice", &path).await?, &path);
        let path = format!("{BASE}/namespaces/{SHOP}/changes/Deployment.apps:web/{view}");
        let (status, body) = stack.get("alice-token", &path).await?;
        assert_eq!(status, 200, "{path}: {body}");
        let text = body.to_string();
        assert!(!text.contains(BANK), "{path}: {body}");
    }

    // A Secret's history needs `get secrets` there: alice lacks it, carol has it.
    let secret = format!("{BASE}/namespaces/{SHOP}/changes/Secret:db-credentials/versions");
    let refused = stack.get("alice-token", &secret).await?;
    assert_forbidden(&refused, "the Secret's history without get secrets");
    assert!(
        refused.1["message"]
            .as_str()
            .unwrap_or_default()
            .contains(r#"cannot get resource "secrets" in API group "" in the namespace "shop""#),
        "{}",
        refused.1
    );
    // However the core group is spelt.
    for spelling in ["Secret.core:db-credentials", "secret:db-credentials"] {
        let path = format!("{BASE}/namespaces/{SHOP}/changes/{spelling}/versions");
        assert_forbidden(&stack.get("alice-token", &path).await?, &path);
    }
    let (status, versions) = stack.get("carol-token", &secret).await?;
    assert_eq!(status, 200, "{versions}");
    let (_, list) = stack
        .get("carol-token", &format!("{BASE}/namespaces/{SHOP}/changes"))
        .await?;
    assert!(kinds_of(&list).contains(&"Secret".to_owned()), "{list}");
    // The cluster-scoped Namespace's history needs the cluster-scope right.
    let namespace = format!("{BASE}/changes/Namespace:shop/versions");
    assert_forbidden(&stack.get("alice-token", &namespace).await?, &namespace);
    assert_forbidden(&stack.as_proxy("alice", &namespace).await?, &namespace);
    let (status, body) = stack.get("ops-token", &namespace).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// Reads a watch to its end (`timeoutSeconds`), recording changes meanwhile.
async fn watch_while(
    stack: &Stack,
    response: reqwest::Response,
    record: &[(&str, Option<&str>, &str)],
) -> Result<Vec<Value>> {
    assert_eq!(response.status(), 200);
    for (fixture, namespace, uid) in record {
        stack
            .server
            .admit(&review(fixture, *namespace, uid))
            .await?;
    }
    let text = response.text().await?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["type"] == "ADDED")
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_streams_only_what_the_reader_may_read() -> Result<()> {
    let stack = Stack::start().await?;
    let later = [
        ("update-deployment-image.json", Some(BANK), "w-bank"),
        ("update-secret-password.json", Some(SHOP), "w-secret"),
        ("delete-deployment.json", Some(BANK), "w-bank-delete"),
        ("update-deployment-image.json", Some(SHOP), "w-shop"),
    ];
    // Across namespaces, straight from Logistis as the front proxy for alice.
    let identity = stack.api.front_proxy_identity();
    let response = stack
        .direct_client(Some(&identity))?
        .get(format!(
            "{}{BASE}/changes?watch=true&timeoutSeconds=5",
            stack.server.query_url
        ))
        .header("X-Remote-User", "alice")
        .send()
        .await?;
    let added = watch_while(&stack, response, &later).await?;
    let uids: Vec<&str> = added
        .iter()
        .map(|e| e["object"]["uid"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(uids, ["w-shop"], "{added:?}");

    // In shop through the stand-in: carol sees the Secret's change too.
    let later = [
        ("update-secret-password.json", Some(SHOP), "w2-secret"),
        ("update-deployment-image.json", Some(BANK), "w2-bank"),
    ];
    let response = stack
        .api
        .client("carol-token")?
        .get(format!(
            "{}{BASE}/namespaces/{SHOP}/changes?watch=1&timeoutSeconds=5",
            stack.api.url
        ))
        .send()
        .await?;
    let added = watch_while(&stack, response, &later).await?;
    let uids: Vec<&str> = added
        .iter()
        .map(|e| e["object"]["uid"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(uids, ["w2-secret"], "{added:?}");
    // And alice may not watch bank at all.
    let refused = stack
        .as_proxy(
            "alice",
            &format!("{BASE}/namespaces/{BANK}/changes?watch=true"),
        )
        .await?;
    assert_forbidden(&refused, "a watch of bank");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_front_proxy_is_believed_and_a_rotated_ca_applies_at_once() -> Result<()> {
    let stack = Stack::start().await?;
    let path = format!("{}{BASE}/namespaces/{BANK}/changes", stack.server.query_url);
    let forged = |client: reqwest::Client| {
        client
            .get(&path)
            .header("X-Remote-User", "ops")
            .header("X-Remote-Group", "system:masters")
            .send()
    };
    // Headers alone, a certificate from another CA, a certificate with a name not allowed.
    let rogue = TestCa::new("front-proxy-ca")?.client("front-proxy-client", &[])?;
    let misnamed = stack.api.front_proxy_client_named("intruder")?;
    for (what, identity) in [
        ("no certificate", None),
        ("another CA", Some(&rogue)),
        ("a name not allowed", Some(&misnamed)),
    ] {
        let (status, body) = answer(forged(stack.direct_client(identity)?).await?).await?;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["reason"], "Unauthorized", "{what}: {body}");
        assert!(!body.to_string().contains("Deployment"), "{what}: {body}");
    }
    // The real proxy's certificate with the same headers is believed: ops reads bank.
    let identity = stack.api.front_proxy_identity();
    let (status, list) = answer(forged(stack.direct_client(Some(&identity))?).await?).await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(namespaces_of(&list), [BANK, BANK, BANK], "{list}");

    // Rotation: the stand-in publishes a new CA and presents a new certificate; Logistis
    // follows the ConfigMap, so the old certificate is refused and the new one believed.
    let old = stack.api.front_proxy_identity();
    stack.api.rotate_front_proxy_ca("front-proxy-client")?;
    let pid = stack.server.pid();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = stack
            .get("alice-token", &format!("{BASE}/namespaces/{SHOP}/changes"))
            .await?;
        if status == 200 {
            assert_eq!(namespaces_of(&body), [SHOP, SHOP], "{body}");
            break;
        }
        assert_eq!(status, 401, "{body}");
        if std::time::Instant::now() > deadline {
            bail!(
                "the rotated CA was not picked up: {body}\n{}",
                stack.server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = answer(forged(stack.direct_client(Some(&old))?).await?).await?;
    assert_eq!(
        status, 401,
        "the old CA's certificate after the rotation: {body}"
    );
    assert_eq!(stack.server.pid(), pid, "no restart");
    assert!(stack.server.log().contains("request-header CA loaded"));

    // Bearer tokens are reviewed (TokenReview) and authorized like any user.
    let client = stack.direct_client(None)?;
    let (status, _) = answer(client.get(&path).bearer_auth("ops-token").send().await?).await?;
    assert_eq!(status, 200);
    let (status, body) = answer(client.get(&path).bearer_auth("alice-token").send().await?).await?;
    assert_forbidden(&(status, body), "alice's token in bank");
    let (status, _) = answer(client.get(&path).bearer_auth("forged").send().await?).await?;
    assert_eq!(status, 401);
    // The probes stay open and say nothing; /metrics needs its URL right.
    let (status, _) = answer(
        client
            .get(format!("{}/livez", stack.server.query_url))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200);
    let (status, _) = answer(
        client
            .get(format!("{}/metrics", stack.server.query_url))
            .bearer_auth("alice-token")
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 403);
    Ok(())
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .expect("kubectl is on PATH")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_kubectl_reads_changes_through_the_api_server() -> Result<()> {
    let stack = Stack::start().await?;
    let alice = stack.kubeconfig("alice-token")?;
    let ops = stack.kubeconfig("ops-token")?;

    let resources = kubectl(&alice, &["api-resources", "--api-group", "logistis.io"]).await;
    assert!(
        text(&resources.stdout).contains("changes"),
        "{}{}",
        text(&resources.stdout),
        text(&resources.stderr)
    );

    // `kubectl get changes -n shop`: the server-side Table, shop's rows only.
    let output = kubectl(&alice, &["get", "changes", "-n", SHOP]).await;
    let table = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "AGE", "OBJECT", "OPERATION", "USER", "CHANGE"],
        "{table}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows.iter().all(|r| r.contains("Deployment.apps/web")),
        "{table}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("bob@example.com") && r.contains("UPDATE")),
        "{table}"
    );
    // The field selector and the refusal, as kubectl prints it.
    let output = kubectl(
        &alice,
        &[
            "get",
            "changes",
            "-n",
            SHOP,
            "--field-selector",
            "operation=UPDATE",
            "-o",
            "json",
        ],
    )
    .await;
    let list: Value =
        serde_json::from_slice(&output.stdout).with_context(|| text(&output.stderr))?;
    assert_eq!(items(&list).len(), 1, "{list}");
    let output = kubectl(&alice, &["get", "changes", "-n", BANK]).await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("Forbidden") && text(&output.stderr).contains("\"bank\""),
        "{}",
        text(&output.stderr)
    );

    // `kubectl get --raw` of a history view.
    let output = kubectl(
        &alice,
        &[
            "get",
            "--raw",
            &format!("{BASE}/namespaces/{SHOP}/changes/Deployment.apps:web/versions"),
        ],
    )
    .await;
    let versions: Value =
        serde_json::from_slice(&output.stdout).with_context(|| text(&output.stderr))?;
    assert_eq!(
        versions["items"].as_array().map(Vec::len),
        Some(2),
        "{versions}"
    );

    // `kubectl get changes -A -w`: the list, then a change recorded meanwhile, bounded.
    let mut watch = tokio::process::Command::new("kubectl")
        .args(["get", "changes", "-A", "-w"])
        .env("KUBECONFIG", &ops)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(watch.stdout.take().context("stdout")?).lines();
    let seen = tokio::time::timeout(Duration::from_secs(60), follow(&mut lines, &stack))
        .await
        .context("kubectl get changes -A -w showed no new change within 60 s")??;
    let _ = watch.kill().await;
    assert!(seen[0].starts_with("NAMESPACE"), "{seen:?}");
    assert_eq!(
        seen.iter().filter(|l| l.starts_with(BANK)).count(),
        4,
        "bank's three changes and the new one: {seen:?}"
    );
    Ok(())
}

/// The lines of `kubectl get changes -A -w` until a change recorded after the initial list
/// shows up.
async fn follow(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stack: &Stack,
) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    let mut recorded = false;
    while let Some(line) = lines.next_line().await? {
        seen.push(line.clone());
        // The header and the seven recorded changes, then one more change.
        if !recorded && seen.len() >= 8 {
            let mut late = review("create-deployment.json", Some(BANK), "late");
            late["request"]["name"] = json!("late");
            late["request"]["object"]["metadata"]["name"] = json!("late");
            stack.server.admit(&late).await?;
            recorded = true;
        }
        if line.contains("Deployment.apps/late") {
            return Ok(seen);
        }
    }
    bail!("the watch ended: {seen:?}")
}

/// Runs kubectl-blame (or, with `path`, kubectl finding it there) with the kubeconfig.
async fn blame(kubeconfig: &Path, args: &[&str], via_kubectl: bool) -> std::process::Output {
    let mut command = if via_kubectl {
        let mut command = tokio::process::Command::new("kubectl");
        command.arg("blame").env(
            "PATH",
            format!(
                "{}:{}",
                target_dir().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        command
    } else {
        tokio::process::Command::new(cargo_bin("kubectl-blame", "kubectl-blame"))
    };
    for variable in [
        "LOGISTIS_SERVER",
        "LOGISTIS_BLAME_COLOR",
        "LOGISTIS_BLAME_TIME",
    ] {
        command.env_remove(variable);
    }
    command
        .args(args)
        .args(["--color", "never"])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .expect("kubectl-blame runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_blame_goes_through_the_aggregated_api_under_rbac() -> Result<()> {
    let stack = Stack::start().await?;
    let alice = stack.kubeconfig("alice-token")?;

    // The context's namespace is shop: the object's changes, its blame, the overview.
    let output = blame(&alice, &["deploy", "web", "--time", "full"], false).await;
    let table = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains("bob@example.com"), "{table}");
    let output = blame(&alice, &["deploy/web", "-o", "blame"], false).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout)
            .lines()
            .any(|l| l.starts_with("v2") && l.contains("bob@example.com")),
        "{}",
        text(&output.stdout)
    );
    let output = blame(&alice, &["deploy", "web", "--versions"], false).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = blame(&alice, &["deploy", "web", "-o", "diff"], false).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("replicas"),
        "{}",
        text(&output.stdout)
    );
    let output = blame(&alice, &[], false).await;
    let overview = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        overview.contains(SHOP) && !overview.contains(BANK),
        "{overview}"
    );
    let output = blame(
        &alice,
        &["-n", SHOP, "--user", "bob@example.com", "-o", "json"],
        false,
    )
    .await;
    let list: Value =
        serde_json::from_slice(&output.stdout).with_context(|| text(&output.stderr))?;
    assert_eq!(items(&list).len(), 1, "{list}");
    assert_eq!(items(&list)[0]["resource"]["namespace"], SHOP, "{list}");
    // The confirmation filter reaches the server (nothing here is confirmed by a watch).
    let output = blame(&alice, &["-n", SHOP, "--status", "confirmed"], false).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    assert!(
        text(&output.stderr).contains("No changes found in namespace shop"),
        "{}",
        text(&output.stderr)
    );
    // Filters without -n ask about the whole cluster; alice may not, so she is shown her
    // context's namespace, and told so.
    let output = blame(&alice, &["--user", "bob@example.com", "-o", "json"], false).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let list: Value =
        serde_json::from_slice(&output.stdout).with_context(|| text(&output.stderr))?;
    assert_eq!(items(&list).len(), 1, "{list}");
    assert_eq!(items(&list)[0]["resource"]["namespace"], SHOP, "{list}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("at cluster scope") && stderr.contains("showing namespace shop"),
        "{stderr}"
    );
    // Across namespaces needs the cluster-wide right, which alice lacks.
    let output = blame(&alice, &["-A", "--user", "bob@example.com"], false).await;
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: you may not list changes.logistis.io at cluster scope")
            && stderr.contains("ClusterRoleBinding"),
        "{stderr}"
    );
    // A custom resource by its short name: only the cluster's discovery knows it.
    let widget = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "widget-1",
            "kind": {"group": "example.com", "version": "v1", "kind": "Widget"},
            "resource": {"group": "example.com", "version": "v1", "resource": "widgets"},
            "name": "gizmo", "namespace": SHOP, "operation": "CREATE",
            "userInfo": {"username": "erin", "groups": ["system:authenticated"]},
            "object": {"apiVersion": "example.com/v1", "kind": "Widget",
                       "metadata": {"name": "gizmo", "namespace": SHOP}, "spec": {"size": 2}},
            "oldObject": null, "dryRun": false
        }
    });
    stack.server.admit(&widget).await?;
    let output = blame(&alice, &["wdg"], false).await;
    let widgets = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        widgets.contains("Widget.example.com/gizmo") && widgets.contains("erin"),
        "{widgets}"
    );
    assert!(
        stack.api.count("GET /apis/example.com/v1") > 0,
        "{:?}",
        stack.api.requests()
    );
    // Every request went to the aggregated API, none to a service proxy.
    let requests = stack.api.requests();
    assert!(
        requests.iter().any(
            |r| r == &format!("GET {BASE}/namespaces/{SHOP}/changes/Deployment.apps:web/blame")
        ),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.contains("/proxy")),
        "{requests:?}"
    );

    // Refusals: one line naming the missing permission, exit status 3.
    let output = blame(&alice, &["deploy", "web", "-n", BANK], false).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: you may not list changes.logistis.io in namespace bank")
            && stderr.contains("RoleBinding in that namespace"),
        "{stderr}"
    );
    let output = blame(&alice, &["secret", "db-credentials", "--versions"], false).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr, "error: you may not get secrets in namespace shop\n");
    let carol = stack.kubeconfig("carol-token")?;
    let output = blame(&carol, &["secret", "db-credentials", "--versions"], false).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = blame(&alice, &["ns", "shop", "--versions"], false).await;
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: you may not get changes.logistis.io/versions at cluster scope"),
        "{stderr}"
    );

    // kubectl finds the plugin on PATH and runs it with the same kubeconfig.
    let direct = blame(&alice, &["deploy", "web", "--time", "full"], false).await;
    let via_kubectl = blame(&alice, &["deploy", "web", "--time", "full"], true).await;
    assert!(
        via_kubectl.status.success(),
        "{}",
        text(&via_kubectl.stderr)
    );
    assert_eq!(text(&via_kubectl.stdout), text(&direct.stdout));

    // Credentials the API server does not accept, and a cluster without the APIService.
    let stranger = stack.kubeconfig("no-such-token")?;
    let output = blame(&stranger, &["deploy", "web"], false).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("credentials were not accepted"), "{stderr}");
    let bare = ApiServer::start().await?;
    bare.add_user(User::new("alice", "alice-token"));
    // Allowed, as a cluster would allow it with the roles installed but no APIService.
    bare.rbac(|rbac| {
        rbac.allow(
            Subject::user("alice"),
            &["list"],
            "logistis.io",
            &["changes"],
            Scope::Namespace(SHOP.into()),
        );
    });
    let output = blame(
        &bare.kubeconfig("alice-token", SHOP)?,
        &["deploy", "web"],
        false,
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("is Logistis installed?") && stderr.contains("v1alpha1.logistis.io"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_without_the_api_servers_certificate_are_refused_and_not_recorded() -> Result<()> {
    let ca = TestCa::new("webhook-client-ca")?;
    let dir = tempfile::tempdir()?;
    let ca_path = dir.path().join("webhook-client-ca.crt");
    std::fs::write(&ca_path, ca.pem())?;
    let server = Server::builder()
        .arg("--webhook-client-ca")
        .arg(ca_path.to_string_lossy())
        .args(["--webhook-client-allowed-names", "kube-apiserver"])
        .start()?;
    let client = |identity: Option<&Identity>| -> Result<reqwest::Client> {
        let server_ca = std::fs::read(&server.ca_path)?;
        let mut client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&server_ca)?)
            .timeout(Duration::from_secs(30));
        if let Some(identity) = identity {
            client = client.identity(identity.reqwest());
        }
        Ok(client.build()?)
    };
    let post = |client: reqwest::Client, uid: &str| {
        let review = review("create-deployment.json", Some(SHOP), uid);
        let url = server.webhook_url.clone();
        async move {
            let body = serde_json::to_vec(&review)?;
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            answer(response).await
        }
    };
    let rogue = TestCa::new("webhook-client-ca")?.client("kube-apiserver", &[])?;
    let misnamed = ca.client("someone", &[])?;
    let apiserver = ca.client("kube-apiserver", &[])?;
    for (what, identity, code, reason) in [
        ("no certificate", None, 401, "missing"),
        ("another CA", Some(&rogue), 401, "untrusted"),
        ("a name not allowed", Some(&misnamed), 403, "name"),
    ] {
        let (status, body) = post(client(identity)?, what).await?;
        assert_eq!(status, code, "{what}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("not recorded"),
            "{what}: {body}"
        );
        let sample = format!("logistis_webhook_client_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(server.metric(&sample).await?, 1.0, "{sample}");
    }
    let events = server.get_ok("/api/v1/events").await?;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(0),
        "{events}"
    );
    // The API server's certificate: answered and recorded.
    let (status, body) = post(client(Some(&apiserver))?, "from-the-api-server").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"]["allowed"], true, "{body}");
    let events = server.get_ok("/api/v1/events").await?;
    let uids: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["uid"])
        .collect();
    assert_eq!(uids, ["from-the-api-server"], "{events}");
    Ok(())
}
