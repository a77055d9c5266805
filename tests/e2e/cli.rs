//! `kubectl-blame` end to end: the real binary against the real `logistis` server over HTTPS
//! (`--server`), fed a scripted history (create, scale, image change, delete) and the real
//! AdmissionReview corpus. Through the Kubernetes API (the aggregated API under RBAC, and
//! found by the real `kubectl` on PATH) it is tested in `access`.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result};
use logistis_e2e::{Server, cargo_bin, reviews_in, skip_without_corpus, with_uid};
use serde_json::{Value, json};

/// Environment variables the CLI reads: cleared so the developer's own settings cannot leak in.
const CLI_ENV: &[&str] = &[
    "LOGISTIS_SERVER",
    "LOGISTIS_CERTIFICATE_AUTHORITY",
    "LOGISTIS_INSECURE_SKIP_TLS_VERIFY",
    "LOGISTIS_BLAME_TIME",
    "LOGISTIS_BLAME_COLOR",
    "NO_COLOR",
];

fn blame_bin() -> PathBuf {
    cargo_bin("kubectl-blame", "kubectl-blame")
}

/// One finished CLI run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn rows(&self) -> Vec<&str> {
        self.stdout.lines().skip(1).collect()
    }
}

/// Runs `program` (kubectl-blame) with a clean environment and the given kubeconfig.
async fn run(program: &Path, args: &[&str], kubeconfig: &Path) -> Run {
    let mut command = tokio::process::Command::new(program);
    command.args(args).env("KUBECONFIG", kubeconfig);
    for name in CLI_ENV {
        command.env_remove(name);
    }
    let output = command
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    Run::from(output)
}

/// The CLI talking to the server directly (`--server`), with no kubeconfig around.
struct Direct {
    bin: PathBuf,
    server_args: Vec<String>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Direct {
    fn new(server: &Server) -> Result<Direct> {
        let dir = tempfile::tempdir()?;
        Ok(Direct {
            bin: blame_bin(),
            server_args: vec![
                "--server".into(),
                server.query_url.clone(),
                "--certificate-authority".into(),
                server.ca_path.display().to_string(),
                "--color".into(),
                "never".into(),
            ],
            kubeconfig: dir.path().join("no-kubeconfig"),
            _dir: dir,
        })
    }

    async fn run(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = self.server_args.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run(&self.bin, &all, &self.kubeconfig).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let result = self.run(args).await;
        assert_eq!(
            result.code, 0,
            "kubectl-blame {args:?}\nstdout:\n{}\nstderr:\n{}",
            result.stdout, result.stderr
        );
        result.stdout
    }
}

// ---------------------------------------------------------------------------------------------
// The scripted history of deployment shop/web.

fn deployment(resource_version: u64, replicas: u64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop", "uid": "7d1c0e55-0000-4000-8000-000000000001",
            "resourceVersion": resource_version.to_string(), "generation": resource_version,
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"app": "web"},
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1"}]
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        },
        "status": {"observedGeneration": resource_version, "replicas": replicas}
    })
}

fn deployment_review(
    uid: &str,
    operation: &str,
    user: &str,
    old: Option<Value>,
    new: Option<Value>,
) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web",
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": new,
            "oldObject": old,
            "dryRun": false,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-edit"}
        }
    })
}

/// create (alice, 1 × nginx:1.25), scale to 3 (bob), image nginx:1.27 (carol).
async fn post_history(server: &Server) -> Result<()> {
    let v1 = deployment(1, 1, "nginx:1.25");
    let v2 = deployment(2, 3, "nginx:1.25");
    let v3 = deployment(3, 3, "nginx:1.27");
    server
        .admit(&deployment_review(
            "web-1",
            "CREATE",
            "alice",
            None,
            Some(v1.clone()),
        ))
        .await?;
    server
        .admit(&deployment_review(
            "web-2",
            "UPDATE",
            "bob",
            Some(v1),
            Some(v2.clone()),
        ))
        .await?;
    server
        .admit(&deployment_review(
            "web-3",
            "UPDATE",
            "carol",
            Some(v2),
            Some(v3),
        ))
        .await?;
    Ok(())
}

async fn post_delete(server: &Server) -> Result<()> {
    let v3 = deployment(3, 3, "nginx:1.27");
    server
        .admit(&deployment_review(
            "web-4",
            "DELETE",
            "dave",
            Some(v3),
            None,
        ))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_of_one_object_in_every_output_format() -> Result<()> {
    let server = Server::start()?;
    post_history(&server).await?;
    let cli = Direct::new(&server)?;

    // The seed's table: KEY, OPERATION, USER, TIME, PATCH, newest first, no noise.
    // Full times: the table is compared with later runs, and relative ages tick between runs.
    let table = cli
        .ok(&["deploy", "web", "-n", "shop", "--time", "full"])
        .await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("KEY") && lines[0].ends_with("PATCH"),
        "{table}"
    );
    for column in ["OPERATION", "USER", "TIME"] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[1].starts_with("Deployment.apps/web") && lines[1].contains("carol"),
        "{table}"
    );
    assert!(
        lines[1].ends_with("replace /spec/template/spec/containers/0/image nginx:1.27"),
        "{table}"
    );
    assert!(
        lines[2].contains("bob") && lines[2].ends_with("replace /spec/replicas 3"),
        "{table}"
    );
    assert!(
        lines[3].contains("CREATE") && lines[3].contains("alice") && lines[3].ends_with("created")
    );
    for noise in ["resourceVersion", "managedFields", "status", "generation"] {
        assert!(!table.contains(noise), "{noise} in {table}");
    }

    // Every spelling of the kind finds the same rows; so does KIND/NAME.
    for kind in [
        "deployment",
        "deployments",
        "Deployment",
        "DEPLOY",
        "deployments.apps",
    ] {
        assert_eq!(
            cli.ok(&[kind, "web", "-n", "shop", "--time", "full"]).await,
            table,
            "{kind}"
        );
    }
    assert_eq!(
        cli.ok(&["deploy/web", "-n", "shop", "--time", "full"])
            .await,
        table
    );

    // -o patch: RFC 6902 per change under a headline.
    let patch = cli.ok(&["deploy/web", "-n", "shop", "-o", "patch"]).await;
    assert!(
        patch.starts_with("# UPDATE Deployment.apps/web in shop by carol"),
        "{patch}"
    );
    assert!(
        patch.contains(r#""path": "/spec/template/spec/containers/0/image""#),
        "{patch}"
    );
    assert!(patch.contains(r#""value": "nginx:1.27""#), "{patch}");

    // -o diff: unified YAML, only what changed, no colour when not on a terminal.
    let diff = cli.ok(&["deploy/web", "-n", "shop", "-o", "diff"]).await;
    assert!(diff.contains("--- a/Deployment.apps/web"), "{diff}");
    assert!(
        has_line(&diff, '-', "image: nginx:1.25") && has_line(&diff, '+', "image: nginx:1.27"),
        "{diff}"
    );
    assert!(
        has_line(&diff, '-', "replicas: 1") && has_line(&diff, '+', "replicas: 3"),
        "{diff}"
    );
    assert!(
        has_line(&diff, '+', "kind: Deployment"),
        "the CREATE adds the manifest: {diff}"
    );
    assert!(!diff.contains('\x1b'), "{diff:?}");
    assert!(
        !changed_lines(&diff)
            .any(|l| l.contains("resourceVersion") || l.contains("observedGeneration")),
        "{diff}"
    );
    let coloured = cli
        .ok(&[
            "deploy/web",
            "-n",
            "shop",
            "-o",
            "diff",
            "--color",
            "always",
        ])
        .await;
    assert!(
        coloured.contains("\x1b[32m+") && coloured.contains("\x1b[31m-"),
        "{coloured:?}"
    );

    // -o json / -o yaml: the server's answer.
    let json: Value =
        serde_json::from_str(&cli.ok(&["deploy/web", "-n", "shop", "-o", "json"]).await)?;
    let operations: Vec<&str> = json["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["UPDATE", "UPDATE", "CREATE"]);
    assert_eq!(json["items"][0]["user"]["username"], "carol");
    let yaml = cli.ok(&["deploy/web", "-n", "shop", "-o", "yaml"]).await;
    assert!(
        yaml.contains("username: bob") && yaml.contains("operation: CREATE"),
        "{yaml}"
    );

    // Filters.
    let run = cli
        .run(&["deploy", "web", "-n", "shop", "--user", "bob"])
        .await;
    let rows = run.rows();
    assert_eq!(rows.len(), 1, "{}", run.stdout);
    assert!(rows[0].contains("bob"));
    let run = cli
        .run(&["deploy", "-n", "shop", "--operation", "create"])
        .await;
    assert!(
        run.rows().len() == 1 && run.rows()[0].contains("CREATE"),
        "{}",
        run.stdout
    );
    let run = cli
        .run(&["deploy", "web", "-n", "shop", "--limit", "1"])
        .await;
    assert_eq!(run.rows().len(), 1, "{}", run.stdout);
    assert!(run.stderr.contains("there are more"), "{}", run.stderr);
    assert_eq!(
        cli.run(&["deploy", "web", "-n", "shop", "--since", "1h"])
            .await
            .rows()
            .len(),
        3
    );
    let run = cli.run(&["deploy", "-n", "shop", "--until", "1h"]).await;
    assert!(run.code == 0 && run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains("No changes found in namespace shop"),
        "{}",
        run.stderr
    );
    let full = cli
        .ok(&["deploy", "web", "-n", "shop", "--time", "full"])
        .await;
    let year = chrono::Utc::now().format("%Y-").to_string();
    assert!(
        full.lines()
            .skip(1)
            .all(|l| l.contains(&year) && l.contains('Z')),
        "{full}"
    );
    // Relative ages by default (`35s`, `2m5s`): digits and units, never a date.
    let relative = cli.ok(&["deploy", "web", "-n", "shop"]).await;
    assert!(
        relative.lines().skip(1).all(|l| {
            let age = l.split_whitespace().nth(3).unwrap_or("");
            age.starts_with(|c: char| c.is_ascii_digit())
                && age
                    .chars()
                    .all(|c| c.is_ascii_digit() || "smhdy".contains(c))
        }),
        "{relative}"
    );

    // Namespace listing and the all-namespaces view.
    let run = cli.run(&["-n", "shop"]).await;
    assert_eq!(run.rows().len(), 3, "{}", run.stdout);
    let all = cli.ok(&["deploy", "-A"]).await;
    assert!(
        all.starts_with("NAMESPACE") && all.lines().nth(1).unwrap().starts_with("shop "),
        "{all}"
    );

    // Then it is deleted.
    post_delete(&server).await?;
    let table = cli.ok(&["deploy", "web", "-n", "shop"]).await;
    let first = table.lines().nth(1).unwrap();
    assert!(
        first.contains("DELETE") && first.contains("dave") && first.ends_with("deleted"),
        "{table}"
    );
    let overview = cli.ok(&[]).await;
    let shop = overview
        .lines()
        .find(|l| l.starts_with("shop "))
        .context("shop row")?;
    let cells: Vec<&str> = shop.split_whitespace().collect();
    assert_eq!(cells[1], "4", "{overview}");
    assert!(
        shop.contains("Deployment.apps/web") && shop.contains("DELETE") && shop.ends_with("dave"),
        "{overview}"
    );
    Ok(())
}

fn changed_lines(diff: &str) -> impl Iterator<Item = &str> {
    diff.lines().filter(|l| {
        (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---")
    })
}

/// A changed line (`+` or `-`) showing `text`, also as a list item (`- text`).
fn has_line(diff: &str, sign: char, text: &str) -> bool {
    changed_lines(diff).any(|line| {
        line.strip_prefix(sign).is_some_and(|rest| {
            let rest = rest.trim();
            rest == text || rest.strip_prefix("- ") == Some(text)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_questions_about_one_object() -> Result<()> {
    let server = Server::start()?;
    post_history(&server).await?;
    let cli = Direct::new(&server)?;

    let versions = cli.ok(&["deploy", "web", "-n", "shop", "--versions"]).await;
    let rows: Vec<&str> = versions.lines().collect();
    assert!(
        rows[0].starts_with("VERSION") && rows[0].contains("CHANGES"),
        "{versions}"
    );
    assert_eq!(rows.len(), 4, "{versions}");
    assert!(
        rows[1].starts_with("1 ") && rows[1].contains("CREATE") && rows[1].contains("alice"),
        "{versions}"
    );
    assert!(
        rows[2].starts_with("2 ") && rows[2].contains("bob") && rows[2].contains("replicas"),
        "{versions}"
    );
    assert!(
        rows[3].starts_with("3 ") && rows[3].contains("carol") && rows[3].contains("image"),
        "{versions}"
    );

    // The newest change by default, any two versions on request, restricted to a field.
    let diff = cli.ok(&["deploy", "web", "-n", "shop", "--diff"]).await;
    assert!(
        has_line(&diff, '-', "image: nginx:1.25") && has_line(&diff, '+', "image: nginx:1.27"),
        "{diff}"
    );
    assert!(!has_line(&diff, '+', "replicas: 3"), "{diff}");
    let diff = cli
        .ok(&["deploy", "web", "-n", "shop", "--diff", "1..3"])
        .await;
    assert!(
        has_line(&diff, '+', "replicas: 3") && has_line(&diff, '+', "image: nginx:1.27"),
        "{diff}"
    );
    let diff = cli
        .ok(&[
            "deploy",
            "web",
            "-n",
            "shop",
            "--diff",
            "1..3",
            "--path",
            "spec.replicas",
        ])
        .await;
    assert!(diff.contains('3') && !diff.contains("nginx"), "{diff}");
    let patch: Value = serde_json::from_str(
        &cli.ok(&[
            "deploy", "web", "-n", "shop", "--diff", "1..2", "-o", "patch",
        ])
        .await,
    )?;
    assert_eq!(
        patch,
        json!([{"op": "replace", "path": "/spec/replicas", "value": 3}])
    );

    // The history of one field, and bisect.
    let history = cli
        .ok(&["deploy", "web", "-n", "shop", "--path", "spec.replicas"])
        .await;
    let rows: Vec<Vec<&str>> = history
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["VERSION", "TIME", "OPERATION", "USER", "OLD", "NEW"],
        "{history}"
    );
    assert_eq!(rows.len(), 3, "{history}");
    assert_eq!(
        (rows[1][0], rows[1][3], rows[1][4], rows[1][5]),
        ("1", "alice", "<none>", "1"),
        "{history}"
    );
    assert_eq!(
        (rows[2][0], rows[2][3], rows[2][4], rows[2][5]),
        ("2", "bob", "1", "3"),
        "{history}"
    );
    let bisect = cli
        .ok(&[
            "deploy",
            "web",
            "-n",
            "shop",
            "--bisect",
            "spec.template.spec.containers[0].image=nginx:1.27",
        ])
        .await;
    assert!(
        bisect.contains("= nginx:1.27 since version 3: UPDATE by carol"),
        "{bisect}"
    );
    assert!(bisect.contains("it was nginx:1.25 before"), "{bisect}");
    let never = cli
        .run(&["deploy", "web", "-n", "shop", "--bisect", "spec.replicas=7"])
        .await;
    assert_eq!(never.code, 1, "{}", never.stderr);
    assert!(never.stderr.starts_with("error: "), "{}", never.stderr);

    // git-blame view: each line with the version, user and time that last set it.
    let blame = cli
        .ok(&["deploy", "web", "-n", "shop", "-o", "blame"])
        .await;
    let line = |text: &str| {
        blame
            .lines()
            .find(|l| l.split_once(" | ").is_some_and(|(_, y)| y.trim() == text))
            .unwrap_or_else(|| panic!("no line {text:?} in\n{blame}"))
    };
    assert!(line("replicas: 3").starts_with("v2  bob "), "{blame}");
    assert!(
        line("- image: nginx:1.27").starts_with("v3  carol "),
        "{blame}"
    );
    assert!(
        line("kind: Deployment").starts_with("v1  alice "),
        "{blame}"
    );
    let bar = blame.lines().next().unwrap().find(" | ").unwrap();
    assert!(
        blame
            .lines()
            .all(|l| l.find(" | ") == Some(bar) || l.ends_with(" |")),
        "{blame}"
    );

    // The object as it was.
    let at = cli.ok(&["deploy", "web", "-n", "shop", "--at", "1"]).await;
    assert!(
        at.contains("replicas: 1") && at.contains("image: nginx:1.25"),
        "{at}"
    );
    let at: Value = serde_json::from_str(
        &cli.ok(&["deploy", "web", "-n", "shop", "--at", "2", "-o", "json"])
            .await,
    )?;
    assert_eq!(at["spec"]["replicas"], 3);

    // Structured answers pass through.
    let list: Value = serde_json::from_str(
        &cli.ok(&["deploy", "web", "-n", "shop", "--versions", "-o", "json"])
            .await,
    )?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3));

    // After the DELETE the blame still answers, and says what it shows.
    post_delete(&server).await?;
    let run = cli
        .run(&["deploy", "web", "-n", "shop", "-o", "blame"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("deleted"), "{}", run.stderr);
    assert!(run.stdout.contains("replicas: 3"), "{}", run.stdout);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors_and_exit_codes() -> Result<()> {
    let server = Server::start()?;
    post_history(&server).await?;
    let cli = Direct::new(&server)?;

    let missing = cli.run(&["deploy", "nosuch", "-n", "shop"]).await;
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains("no changes recorded for Deployment \"nosuch\" in namespace shop"),
        "{}",
        missing.stderr
    );
    let missing = cli
        .run(&["deploy", "nosuch", "-n", "shop", "--versions"])
        .await;
    assert_eq!(missing.code, 1, "{}", missing.stderr);

    let unknown = cli.run(&["wigdets", "-n", "shop"]).await;
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("unknown kind \"wigdets\""),
        "{}",
        unknown.stderr
    );

    let bad_time = cli
        .run(&["deploy", "-n", "shop", "--since", "yesterday"])
        .await;
    assert_eq!(bad_time.code, 2, "{}", bad_time.stderr);
    assert!(
        bad_time.stderr.contains("invalid time \"yesterday\""),
        "{}",
        bad_time.stderr
    );

    let misuse = cli.run(&["deploy", "-n", "shop", "--versions"]).await;
    assert_eq!(misuse.code, 2);
    assert!(
        misuse.stderr.contains("--versions is about one object"),
        "{}",
        misuse.stderr
    );
    let misuse = cli.run(&["deploy", "web", "-A"]).await;
    assert_eq!(misuse.code, 2);

    // Nothing listens on port 1: say how it tried.
    let bin = blame_bin();
    let dir = tempfile::tempdir()?;
    let down = run(
        &bin,
        &["--server", "https://127.0.0.1:1", "deploy", "-n", "shop"],
        &dir.path().join("none"),
    )
    .await;
    assert_eq!(down.code, 3, "{}", down.stderr);
    assert!(
        down.stderr
            .contains("could not reach the Logistis query API directly at https://127.0.0.1:1"),
        "{}",
        down.stderr
    );

    // Without --server and without a kubeconfig there is no way to the server.
    let nowhere = run(&bin, &["deploy", "-n", "shop"], &dir.path().join("none")).await;
    assert_eq!(nowhere.code, 3, "{}", nowhere.stderr);
    assert!(nowhere.stderr.contains("kubeconfig"), "{}", nowhere.stderr);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The real corpus.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_reviews_through_the_cli() -> Result<()> {
    let Some(corpus) = skip_without_corpus("cli::real_reviews_through_the_cli") else {
        return Ok(());
    };
    let server = Server::start()?;
    // Several corpus files share a uid; give each its own so none is taken for a re-send.
    for (index, (name, review)) in reviews_in(&corpus.join("admission"))
        .into_iter()
        .enumerate()
    {
        let response = server
            .post_review(&with_uid(&review, &format!("corpus-{index}")))
            .await?;
        assert_eq!(response.status(), 200, "{name}");
    }
    let cli = Direct::new(&server)?;

    let overview = cli.ok(&[]).await;
    let header: Vec<&str> = overview
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header[..4],
        ["NAMESPACE", "CHANGES", "LAST", "CHANGE"],
        "{overview}"
    );
    let row = |namespace: &str| {
        overview
            .lines()
            .find(|l| l.split_whitespace().next() == Some(namespace))
            .unwrap_or_else(|| panic!("no {namespace} row in\n{overview}"))
            .to_owned()
    };
    assert!(
        row("sample-ns").contains("ConfigMap/sample-cm")
            && row("sample-ns").ends_with("kubernetes-admin"),
        "{overview}"
    );
    // Cluster-scoped objects (and reviews that name no namespace at all) share one row.
    assert!(
        row("(cluster)")
            .split_whitespace()
            .nth(1)
            .is_some_and(|n| n.parse::<u32>().unwrap_or(0) >= 2),
        "{overview}"
    );
    assert!(
        row("colin-coder").contains("Pod/echo-pod")
            && row("colin-coder").ends_with("colin@coder.com"),
        "{overview}"
    );

    let cm = cli.ok(&["cm", "-n", "sample-ns"]).await;
    assert!(
        cm.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("ConfigMap/sample-cm") && l.ends_with("created")),
        "{cm}"
    );
    // Cluster-scoped: no namespace needed, and none is used.
    let ns = cli.ok(&["ns", "one"]).await;
    assert!(
        ns.contains("Namespace/one") && ns.contains("kubernetes-admin"),
        "{ns}"
    );
    let by_sa = cli
        .ok(&[
            "po",
            "-A",
            "--user",
            "system:serviceaccount:kube-system:replicaset-controller",
        ])
        .await;
    assert!(by_sa.starts_with("NAMESPACE"), "{by_sa}");
    let namespaces: Vec<&str> = by_sa
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        namespaces.contains(&"kubewarden") && namespaces.contains(&"test2"),
        "{by_sa}"
    );
    let deploy = cli.ok(&["deployments", "nginx", "-n", "default"]).await;
    for operation in ["CREATE", "UPDATE", "DELETE"] {
        assert!(deploy.contains(operation), "{operation} in {deploy}");
    }
    let exec = cli.ok(&["-A", "--operation", "connect"]).await;
    assert!(
        exec.contains("exec: bin/bash (container some-pod)"),
        "{exec}"
    );

    // Secrets: the diff shows that data is there, never what it is.
    let secret_review = reviews_in(&corpus.join("admission"))
        .into_iter()
        .find(|(name, _)| name == "request-only-create-secret.json")
        .context("secret fixture")?
        .1;
    let diff = cli
        .ok(&["secret", "mysecret2", "-n", "default", "-o", "diff"])
        .await;
    assert!(has_line(&diff, '+', "kind: Secret"), "{diff}");
    for (_, value) in secret_review["request"]["object"]["data"]
        .as_object()
        .context("secret data")?
    {
        let value = value.as_str().context("base64 value")?;
        assert!(!diff.contains(value), "plaintext {value} in\n{diff}");
    }
    Ok(())
}
