//! Shell completion of `kubectl blame`, end to end: the real `kubectl` (1.26+) completing a
//! plugin runs `kubectl_complete-blame` from PATH, which asks `kubectl-blame`, which asks the
//! real server (fed by `logistis demo`) for namespaces and names. Also the scripts of
//! `kubectl blame completion bash|zsh|fish` parse in their shells.

use std::path::{Path, PathBuf};
use std::process::Command;

use logistis_e2e::{Server, cargo_bin, post_demo, repo_root};

/// A directory with kubectl-blame and the shipped kubectl_complete-blame, for PATH.
fn plugin_path(dir: &Path) -> String {
    let blame = cargo_bin("kubectl-blame", "kubectl-blame");
    std::fs::copy(&blame, dir.join("kubectl-blame")).unwrap();
    std::fs::copy(
        repo_root().join("plugins/kubectl-blame/dist/kubectl_complete-blame"),
        dir.join("kubectl_complete-blame"),
    )
    .unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn run(program: &str, args: &[&str], path: &str, server: &Server, home: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .env("LOGISTIS_SERVER", &server.query_url)
        .env("LOGISTIS_CERTIFICATE_AUTHORITY", &server.ca_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn values(answer: &str) -> Vec<String> {
    answer
        .lines()
        .filter(|line| !line.starts_with(':') && !line.is_empty())
        .map(|line| line.split('\t').next().unwrap().to_owned())
        .collect()
}

#[test]
fn kubectl_completes_kinds_namespaces_names_and_flags_through_the_plugin() {
    let server = Server::start().unwrap();
    post_demo(&server);
    let dir = tempfile::tempdir().unwrap();
    let path = plugin_path(dir.path());
    let kubectl = |args: &[&str]| {
        let mut all = vec!["__complete", "blame"];
        all.extend_from_slice(args);
        run("kubectl", &all, &path, &server, dir.path())
    };

    let answer = kubectl(&["-n", ""]);
    assert_eq!(values(&answer), ["payments", "shop"], "{answer}");
    assert!(answer.contains("shop\t11 changes"), "{answer}");
    assert!(answer.trim_end().ends_with(":4"), "{answer}");

    let answer = kubectl(&["-n", "shop", "deploy", ""]);
    assert_eq!(values(&answer), ["web"], "{answer}");
    assert!(
        answer.contains("web\tUPDATE by alice@example.com"),
        "{answer}"
    );
    let answer = kubectl(&["-n", "shop", "cm", "web"]);
    assert_eq!(values(&answer), ["web-config"], "{answer}");
    let answer = kubectl(&["-n", "payments", "deploy/"]);
    assert_eq!(values(&answer), ["deploy/api"], "{answer}");
    // Cluster-scoped kinds need no namespace.
    let answer = kubectl(&["ns", ""]);
    assert_eq!(values(&answer), ["payments", "shop"], "{answer}");

    let answer = kubectl(&["deploy", "web", "-o", "ya"]);
    assert_eq!(values(&answer), ["yaml"], "{answer}");
    let answer = kubectl(&["deploy", "web", "--vers"]);
    assert_eq!(values(&answer), ["--versions"], "{answer}");
    let answer = kubectl(&["secr"]);
    assert_eq!(values(&answer), ["secrets"], "{answer}");

    // The plugin's own `__complete` answers the same, and an unreachable server completes
    // nothing rather than printing an error into the shell.
    let direct = run(
        "kubectl-blame",
        &["__complete", "-n", ""],
        &path,
        &server,
        dir.path(),
    );
    assert_eq!(values(&direct), ["payments", "shop"]);
    let output = Command::new(dir.path().join("kubectl-blame"))
        .args(["__complete", "--server", "https://127.0.0.1:9", "-n", ""])
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), ":4\n");
}

#[test]
fn the_completion_scripts_parse_in_their_shells() {
    let blame = cargo_bin("kubectl-blame", "kubectl-blame");
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")] {
        let output = Command::new(&blame)
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(output.status.success(), "completion {shell}");
        let script: PathBuf = dir.path().join(format!("blame.{shell}"));
        std::fs::write(&script, &output.stdout).unwrap();
        match Command::new(shell).arg(check).arg(&script).output() {
            Ok(parsed) => assert!(
                parsed.status.success(),
                "{shell} {check}:\n{}",
                String::from_utf8_lossy(&parsed.stderr)
            ),
            Err(_) if shell != "bash" => logistis_e2e::skipped(
                &format!("completion::the_completion_scripts_parse_in_their_shells ({shell})"),
                &format!("{shell} is not installed"),
            ),
            Err(error) => panic!("bash: {error}"),
        }
    }
    let unknown = Command::new(&blame)
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}
