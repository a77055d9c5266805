//! Locks end to end: the real `logistis` behind the Kubernetes API stand-in (its aggregation
//! layer proxies `locks.logistis.io` with front-proxy certificates, its RBAC table answers
//! the server's SubjectAccessReviews), reviews posted to the real webhook, and the real
//! `kubectl-blame` and `kubectl`.
//!
//! Covered: a namespace lock denies alice's UPDATE (HTTP 200, `allowed: false`, a message
//! naming the lock, reason, setter, expiry and exemptions) and records her attempt, while an
//! `sre` member and the cluster's machinery pass; a lock on one Deployment leaves its
//! neighbours alone; RBAC decides who may create a lock; bad locks get 400/422; locks survive
//! a restart; an expired lock stops applying without one; `kubectl blame lock/locks/unlock`
//! and `kubectl get locks`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{SecondsFormat, Utc};
use logistis_e2e::apiserver::{ApiServer, Scope, Subject, User};
use logistis_e2e::{Server, cargo_bin, own_review, target_dir, with_uid};
use serde_json::{Value, json};

const LOCKS: &str = "/apis/logistis.io/v1alpha1/namespaces/shop/locks";

/// The stand-in with Logistis registered as `v1alpha1.logistis.io`, and the test's people:
/// carol may lock `shop`, olga may lock anything, bob may not lock; alice and sam (group
/// `sre`) change things.
struct Cluster {
    api: ApiServer,
    server: Server,
}

impl Cluster {
    async fn start() -> Result<Cluster> {
        let api = ApiServer::start().await?;
        let people: [(&str, &[&str]); 5] = [
            ("carol", &[]),
            ("olga", &[]),
            ("bob", &[]),
            ("alice", &[]),
            ("sam", &["sre"]),
        ];
        for (name, groups) in people {
            api.add_user(User::new(name, &format!("{name}-token")).groups(groups));
        }
        let locker = ["get", "list", "watch", "create", "delete"];
        api.rbac(|rbac| {
            rbac.allow(
                Subject::user("carol"),
                &locker,
                "logistis.io",
                &["locks"],
                Scope::Namespace("shop".into()),
            )
            .allow(
                Subject::user("olga"),
                &locker,
                "logistis.io",
                &["locks"],
                Scope::Cluster,
            )
            .allow(
                Subject::user("olga"),
                &["get", "list", "watch"],
                "logistis.io",
                &["changes"],
                Scope::Cluster,
            );
        });
        let kubeconfig = api.logistis_kubeconfig()?;
        let server = Server::builder()
            .args(["--query-auth", "kubernetes"])
            .env("KUBECONFIG", &kubeconfig.display().to_string())
            .start()?;
        api.set_service_endpoint("logistis", "logistis", address(&server.query_url)?);
        let ca = std::fs::read(&server.ca_path)?;
        api.register_api_service(
            "logistis.io",
            "v1alpha1",
            "logistis",
            "logistis",
            Some(ca.as_slice()),
        );
        let cluster = Cluster { api, server };
        // Ready once the server has read the front-proxy CA from the stand-in.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, _) = cluster
                .call("olga", "GET", "/apis/logistis.io/v1alpha1/locks", None)
                .await?;
            if status == 200 {
                return Ok(cluster);
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "the aggregated API never answered ({status}); log:\n{}",
                    cluster.server.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `method path` through the stand-in as `user`.
    async fn call(
        &self,
        user: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let client = self.api.client(&format!("{user}-token"))?;
        let url = format!("{}{path}", self.api.url);
        let request = match method {
            "POST" => client.post(url).json(&body.unwrap_or(Value::Null)),
            "DELETE" => client.delete(url),
            _ => client.get(url),
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

fn address(url: &str) -> Result<SocketAddr> {
    url.trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("{url} is not https://ADDRESS"))
}

/// A Lock body; `status` is what a forger would send (the server ignores it).
fn lock(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "logistis.io/v1alpha1", "kind": "Lock",
        "metadata": {"name": name}, "spec": spec,
        "status": {"setBy": {"username": "mallory"}},
    })
}

/// `update-deployment-image.json` as `user` (with `groups`), on Deployment `name`.
fn update_by(user: &str, groups: &[&str], name: &str, uid: &str) -> Value {
    let mut review = with_uid(&own_review("update-deployment-image.json"), uid);
    review["request"]["userInfo"] = json!({"username": user, "groups": groups});
    review["request"]["name"] = json!(name);
    review["request"]["object"]["metadata"]["name"] = json!(name);
    review["request"]["oldObject"]["metadata"]["name"] = json!(name);
    review
}

/// The webhook's answer to `review`: HTTP 200 always, and the AdmissionResponse.
async fn answer(server: &Server, review: &Value) -> Result<Value> {
    let response = server.post_review(review).await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if status != 200 {
        bail!("the webhook answered {status}: {body}");
    }
    Ok(body["response"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_lock_denies_alice_records_her_attempt_and_lets_sre_through() -> Result<()> {
    let cluster = Cluster::start().await?;
    let until =
        (Utc::now() + chrono::Duration::hours(2)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (status, created) = cluster
        .call(
            "carol",
            "POST",
            LOCKS,
            Some(lock(
                "release",
                json!({"exceptGroups": ["sre"], "reason": "release 4.2", "expiresAt": until}),
            )),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["status"]["setBy"]["username"], "carol",
        "from the request, not the body"
    );
    assert_eq!(created["status"]["phase"], "Active");

    let denied = answer(&cluster.server, &update_by("alice", &[], "web", "alice-1")).await?;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["uid"], "alice-1");
    assert_eq!(denied["status"]["code"], 403);
    let message = denied["status"]["message"].as_str().unwrap_or_default();
    let until_part = format!("until {until}");
    for part in [
        "Deployment.apps/web in namespace shop is locked by lock shop/release",
        "(release 4.2)",
        "set by carol",
        until_part.as_str(),
        "exempt: group sre",
        "system:nodes",
        "kubectl blame unlock release -n shop",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }

    // An sre member passes, and so does the cluster's own machinery (not named by the lock).
    let sam = answer(&cluster.server, &update_by("sam", &["sre"], "web", "sam-1")).await?;
    assert_eq!(sam["allowed"], true, "{sam}");
    let controller = update_by(
        "system:serviceaccount:kube-system:deployment-controller",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
        ],
        "web",
        "controller-1",
    );
    assert_eq!(answer(&cluster.server, &controller).await?["allowed"], true);

    // The attempt is recorded, with the denial, through the aggregated API.
    let (status, changes) = cluster
        .call(
            "olga",
            "GET",
            "/apis/logistis.io/v1alpha1/namespaces/shop/changes",
            None,
        )
        .await?;
    assert_eq!(status, 200, "{changes}");
    let items = changes["items"].as_array().context("a change list")?;
    let attempt = items
        .iter()
        .find(|c| c["user"]["username"] == "alice")
        .with_context(|| format!("alice's attempt is recorded: {changes}"))?;
    assert_eq!(attempt["denied"]["lock"], "shop/release");
    assert_eq!(attempt["denied"]["message"], message);
    assert_eq!(attempt["denied"]["setBy"], "carol");
    let sams = items
        .iter()
        .find(|c| c["user"]["username"] == "sam")
        .context("sam's change is recorded")?;
    assert!(sams.get("denied").is_none(), "{sams}");

    // Unlocked, alice passes.
    let (status, _) = cluster
        .call("carol", "DELETE", &format!("{LOCKS}/release"), None)
        .await?;
    assert_eq!(status, 200);
    let alice = answer(&cluster.server, &update_by("alice", &[], "web", "alice-2")).await?;
    assert_eq!(alice["allowed"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_on_one_deployment_leaves_its_neighbours_alone() -> Result<()> {
    let cluster = Cluster::start().await?;
    let (status, body) = cluster
        .call(
            "carol",
            "POST",
            LOCKS,
            Some(lock(
                "web-only",
                json!({"target": {"group": "apps", "kind": "Deployment", "name": "web"},
                       "reason": "incident 1234"}),
            )),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let web = answer(&cluster.server, &update_by("alice", &[], "web", "web-1")).await?;
    assert_eq!(web["allowed"], false, "{web}");
    let api = answer(&cluster.server, &update_by("alice", &[], "api", "api-1")).await?;
    assert_eq!(api["allowed"], true, "a neighbour: {api}");
    let configmap = with_uid(&own_review("create-configmap-dry-run.json"), "cm-1");
    assert_eq!(answer(&cluster.server, &configmap).await?["allowed"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_decides_who_may_lock_and_bad_locks_are_refused() -> Result<()> {
    let cluster = Cluster::start().await?;
    let body = lock("freeze", json!({"reason": "release"}));
    // bob has no `create locks`: refused by the API server's RBAC...
    let (status, refusal) = cluster
        .call("bob", "POST", LOCKS, Some(body.clone()))
        .await?;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(refusal["reason"], "Forbidden");
    // ...and by Logistis' own SubjectAccessReview when he reaches it with his token.
    let direct = cluster
        .server
        .client
        .post(format!("{}{LOCKS}", cluster.server.query_url))
        .bearer_auth("bob-token")
        .json(&body)
        .send()
        .await?;
    assert_eq!(direct.status(), 403);
    let refusal: Value = direct.json().await?;
    assert_eq!(
        refusal["message"],
        r#"locks.logistis.io is forbidden: User "bob" cannot create resource "locks" in API group "logistis.io" in the namespace "shop""#
    );
    assert!(
        cluster
            .api
            .decisions()
            .iter()
            .any(|(asked, allowed)| !allowed && asked.user == "bob" && asked.resource == "locks"),
        "Logistis asked the cluster about bob"
    );
    // carol may lock shop but not another namespace, nor cluster-scoped objects.
    let (status, _) = cluster
        .call(
            "carol",
            "POST",
            "/apis/logistis.io/v1alpha1/namespaces/bank/locks",
            Some(body.clone()),
        )
        .await?;
    assert_eq!(status, 403);
    let nodes = lock(
        "nodes",
        json!({"target": {"kind": "Node"}, "reason": "maintenance"}),
    );
    let (status, _) = cluster
        .call(
            "carol",
            "POST",
            "/apis/logistis.io/v1alpha1/locks",
            Some(nodes.clone()),
        )
        .await?;
    assert_eq!(status, 403);
    let (status, created) = cluster
        .call(
            "olga",
            "POST",
            "/apis/logistis.io/v1alpha1/locks",
            Some(nodes),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["metadata"].get("namespace"), None, "cluster scope");
    let (status, created) = cluster.call("carol", "POST", LOCKS, Some(body)).await?;
    assert_eq!(status, 201, "{created}");

    // Bad locks: 422 with the field and the reason; not a lock at all: 400.
    let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    for (spec, field, why) in [
        (
            json!({"reason": "x", "operations": ["PATCH"]}),
            "spec.operations[0]",
            "unknown operation",
        ),
        (
            json!({"reason": "x", "expiresAt": past}),
            "spec.expiresAt",
            "in the past",
        ),
        (json!({"reason": ""}), "spec.reason", "required"),
    ] {
        let (status, answer) = cluster
            .call("carol", "POST", LOCKS, Some(lock("bad", spec)))
            .await?;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["kind"], "Status");
        assert_eq!(answer["reason"], "Invalid");
        assert_eq!(answer["details"]["causes"][0]["field"], field);
        assert!(
            answer["message"].as_str().unwrap_or_default().contains(why),
            "{answer}"
        );
    }
    let (status, answer) = cluster
        .call(
            "olga",
            "POST",
            "/apis/logistis.io/v1alpha1/locks",
            Some(lock("everything", json!({"reason": "x"}))),
        )
        .await?;
    assert_eq!(status, 422, "an empty cluster-scope target: {answer}");
    assert_eq!(answer["details"]["causes"][0]["field"], "spec.target.kind");
    let (status, answer) = cluster
        .call(
            "carol",
            "POST",
            LOCKS,
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap"})),
        )
        .await?;
    assert_eq!(status, 400, "{answer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_survive_a_restart_and_expired_ones_stop_applying() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut server = Server::builder().data_dir(&data).start()?;
    let create = |server: &Server, name: &str, spec: Value| {
        let request = server
            .client
            .post(format!("{}{LOCKS}", server.query_url))
            .json(&lock(name, spec));
        async move {
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            anyhow::ensure!(status == 201, "{status}: {body}");
            anyhow::Ok(body)
        }
    };
    create(
        &server,
        "kept",
        json!({"target": {"kind": "Deployment", "name": "web"}, "reason": "kept"}),
    )
    .await?;
    let soon = Utc::now() + chrono::Duration::seconds(3);
    create(
        &server,
        "short",
        json!({"target": {"kind": "Deployment", "name": "api"}, "reason": "short",
               "expiresAt": soon.to_rfc3339_opts(SecondsFormat::Millis, true)}),
    )
    .await?;
    let web = answer(&server, &update_by("alice", &[], "web", "w-1")).await?;
    assert_eq!(web["allowed"], false);
    assert!(
        web["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("set by anonymous (authentication off)"),
        "with --query-auth none nobody is authenticated: {web}"
    );
    let api = answer(&server, &update_by("alice", &[], "api", "a-1")).await?;
    assert_eq!(api["allowed"], false);

    assert!(server.terminate()?.success(), "{}", server.log());
    let server = Server::builder().data_dir(&data).start()?;
    let web = answer(&server, &update_by("alice", &[], "web", "w-2")).await?;
    assert_eq!(
        web["allowed"], false,
        "the lock survived the restart: {web}"
    );

    // The short lock stops applying at its expiry, with no restart and no call.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let api = answer(
            &server,
            &update_by("alice", &[], "api", &format!("a-{attempt}x")),
        )
        .await?;
        if api["allowed"] == true {
            assert!(Utc::now() >= soon, "allowed before its expiry");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never expired: {api}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, listed) = server.get(&format!("{LOCKS}/short")).await?;
    assert_eq!(status, 200);
    assert_eq!(listed["status"]["phase"], "Expired");
    Ok(())
}

/// `program args` with this kubeconfig and the target dir first on PATH (for kubectl's
/// plugin lookup); stdout, or the failure with both streams.
async fn run(program: &Path, args: &[&str], kubeconfig: &Path) -> Result<String> {
    let path = format!(
        "{}:{}",
        target_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", path)
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("LOGISTIS_") {
            command.env_remove(key);
        }
    }
    let output = command.output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{} {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
            program.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

fn kubectl() -> PathBuf {
    PathBuf::from("kubectl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_blame_lock_locks_unlock_and_kubectl_get_locks() -> Result<()> {
    let cluster = Cluster::start().await?;
    let olga = cluster.api.kubeconfig("olga-token", "shop")?;
    let blame = cargo_bin("kubectl-blame", "kubectl-blame");

    let created = run(
        &blame,
        &[
            "lock",
            "shop",
            "--except-groups",
            "sre",
            "--for",
            "2h",
            "--reason",
            "release 4.2",
        ],
        &olga,
    )
    .await?;
    assert!(created.starts_with("lock shop/lock-shop-"), "{created}");
    assert!(created.contains("frozen for everyone"), "{created}");
    assert!(created.contains("exempt: group sre"), "{created}");
    assert!(created.contains("system:kube-scheduler"), "{created}");
    assert!(created.contains("set by: olga"), "{created}");
    assert!(created.contains("failurePolicy is Ignore"), "{created}");
    let name = created
        .split_whitespace()
        .nth(1)
        .and_then(|key| key.strip_prefix("shop/"))
        .context("the lock's name")?
        .to_owned();
    let denied = answer(&cluster.server, &update_by("alice", &[], "web", "k-1")).await?;
    assert_eq!(denied["allowed"], false);

    // The plugin through the real kubectl, and kubectl's own table.
    let listed = run(&kubectl(), &["blame", "locks", "-A"], &olga).await?;
    assert!(
        listed.contains("NAMESPACE") && listed.contains(&name) && listed.contains("release 4.2"),
        "{listed}"
    );
    let table = run(&kubectl(), &["get", "locks", "-A"], &olga).await?;
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAMESPACE",
        "NAME",
        "TARGET",
        "APPLIES TO",
        "EXEMPT",
        "SET BY",
    ] {
        assert!(header.contains(column), "{column}: {table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.contains(&name) && l.contains("olga") && l.contains("Active")),
        "{table}"
    );
    let one = run(&kubectl(), &["get", "lock", &name, "-o", "json"], &olga).await?;
    let one: Value = serde_json::from_str(&one)?;
    assert_eq!(one["spec"]["exceptGroups"], json!(["sre"]));

    let unlocked = run(&blame, &["unlock", &name], &olga).await?;
    assert_eq!(unlocked.trim(), format!("lock shop/{name} deleted"));
    let allowed = answer(&cluster.server, &update_by("alice", &[], "web", "k-2")).await?;
    assert_eq!(allowed["allowed"], true);

    // bob may not lock: the refusal is the API server's.
    let bob = cluster.api.kubeconfig("bob-token", "shop")?;
    let refused = run(&blame, &["lock", "shop", "--reason", "mine"], &bob).await;
    let error = refused.expect_err("bob has no create locks").to_string();
    assert!(error.contains("forbidden"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_blame_locks_directly_with_server() -> Result<()> {
    let server = Server::start()?;
    let dir = tempfile::tempdir()?;
    let nothing = dir.path().join("no-kubeconfig");
    let blame = cargo_bin("kubectl-blame", "kubectl-blame");
    let ca = server.ca_path.display().to_string();
    let direct = |command: &str| {
        vec![
            command.to_owned(),
            "--server".to_owned(),
            server.query_url.clone(),
            "--certificate-authority".to_owned(),
            ca.clone(),
        ]
    };
    let mut args = direct("lock");
    args.extend(
        [
            "deploy/web",
            "-n",
            "shop",
            "--operations",
            "UPDATE,DELETE",
            "--name",
            "web",
            "--reason",
            "incident",
        ]
        .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let created = run(&blame, &args, &nothing).await?;
    assert!(
        created.starts_with("lock shop/web created: Deployment.apps/web in namespace shop"),
        "{created}"
    );
    assert!(created.contains("(UPDATE, DELETE)"), "{created}");
    let denied = answer(&server, &update_by("alice", &[], "web", "d-1")).await?;
    assert_eq!(denied["allowed"], false);

    let mut args = direct("locks");
    args.extend(["-n", "shop"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listed = run(&blame, &args, &nothing).await?;
    assert!(
        listed.lines().nth(1).is_some_and(|l| l.starts_with("web ")),
        "{listed}"
    );

    let mut args = direct("unlock");
    args.extend(["web", "-n", "shop"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&blame, &args, &nothing).await?;
    let allowed = answer(&server, &update_by("alice", &[], "web", "d-2")).await?;
    assert_eq!(allowed["allowed"], true);
    Ok(())
}
