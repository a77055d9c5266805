//! The real `logistis` with the arguments, environment and volumes of the rendered
//! StatefulSet, so that a renamed flag or a plugin set the server rejects fails here rather
//! than in a cluster. Each volume mount becomes a directory (the plugin ConfigMap laid out as
//! the kubelet does it, the serving-certificate Secret from a test certificate), the
//! manifests' paths are mapped into those directories (a path outside every mount fails: the
//! root filesystem is read-only) and the listeners move to free loopback ports.
//!
//! The overlay's server must come up, load the shipped plugin set and be ready. The base's
//! `--manage-certs` needs the Kubernetes API, which is not here: it must get past flag and
//! settings validation (exit code 2 is a bad flag or setting) — started with no cluster in
//! reach, it then fails or waits for one, which is its business, not the manifests'.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use logistis_e2e::apiserver::{ApiServer, Scope, Subject, User};
use logistis_e2e::plugins::ConfigMapDir;
use logistis_e2e::{Server, cargo_bin};
use serde_json::Value;

use super::{NAMESPACE, Render, Variant, container, render};

/// The pod's filesystem, as far as the server sees it.
struct Pod {
    root: tempfile::TempDir,
    /// mountPath → the directory standing in for it.
    mounts: Vec<(String, PathBuf)>,
    _configmaps: Vec<ConfigMapDir>,
}

impl Pod {
    /// The local path for a path in the container; it must be on a volume.
    fn map(&self, path: &str) -> PathBuf {
        let (mount, dir) = self
            .mounts
            .iter()
            .filter(|(mount, _)| Path::new(path).starts_with(mount))
            .max_by_key(|(mount, _)| mount.len())
            .unwrap_or_else(|| panic!("{path} is not on a volume (the root is read-only)"));
        let rest = Path::new(path).strip_prefix(mount).unwrap();
        dir.join(rest)
    }
}

/// Directories for the volume mounts of the rendered server container. `tls` holds the
/// files of a serving-certificate Secret (tls.crt, tls.key, ca.crt) when one is mounted.
fn pod(render: &Render, tls: Option<&Path>) -> Pod {
    let statefulset = render.statefulset();
    let (spec, server) = container(&statefulset);
    let claims: Vec<String> = statefulset
        .spec
        .volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let volumes = spec.volumes.unwrap_or_default();
    let root = tempfile::tempdir().unwrap();
    let mut mounts = Vec::new();
    let mut configmaps = Vec::new();
    for mount in server.volume_mounts.unwrap_or_default() {
        let dir = root.path().join(mount.name.as_str());
        let volume = volumes.iter().find(|v| v.name == mount.name);
        match volume {
            None => {
                assert!(
                    claims.contains(&mount.name),
                    "{}: no such volume",
                    mount.name
                );
                std::fs::create_dir_all(&dir).unwrap();
                mounts.push((mount.mount_path, dir));
            }
            Some(volume) if volume.empty_dir.is_some() => {
                std::fs::create_dir_all(&dir).unwrap();
                mounts.push((mount.mount_path, dir));
            }
            Some(volume) if volume.config_map.is_some() => {
                let name = &volume.config_map.as_ref().unwrap().name;
                let configmap: ConfigMap = render.get("ConfigMap", name);
                let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
                let data = configmap.data.clone().unwrap_or_default();
                let binary = configmap.binary_data.clone().unwrap_or_default();
                for (key, value) in &data {
                    files.push((key, value.clone().into_bytes()));
                }
                for (key, value) in &binary {
                    files.push((key, value.0.clone()));
                }
                let mut published = ConfigMapDir::new();
                published.publish(&files);
                mounts.push((mount.mount_path, published.path().to_owned()));
                configmaps.push(published);
            }
            Some(volume) if volume.secret.is_some() => {
                let tls = tls.expect("a certificate for the Secret volume");
                std::fs::create_dir_all(&dir).unwrap();
                for file in ["tls.crt", "tls.key", "ca.crt"] {
                    std::fs::copy(tls.join(file), dir.join(file)).unwrap();
                }
                mounts.push((mount.mount_path, dir));
            }
            Some(volume) => panic!("volume {}: a kind this test does not lay out", volume.name),
        }
    }
    Pod {
        root,
        mounts,
        _configmaps: configmaps,
    }
}

/// What the server printed and how it ended (or that it is serving).
struct Run {
    child: Option<Child>,
    stderr: Vec<String>,
    exit: Option<std::process::ExitStatus>,
    /// A structured log line: logging starts only once the settings are valid.
    logged: bool,
    query: Option<String>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

enum Line {
    Out(String),
    Err(String),
}

/// Start `logistis` as the StatefulSet would, and watch it until it serves, exits, or (with
/// `until_logged`) writes its first structured log line. `cluster` is the kubeconfig of the
/// API server the pod would reach in-cluster (none: no cluster at all).
fn run_as_manifest(render: &Render, pod: &Pod, until_logged: bool, cluster: Option<&Path>) -> Run {
    let (_, server) = container(&render.statefulset());
    let mut args = Vec::new();
    for arg in server.args.clone().unwrap_or_default() {
        let mapped = match arg.split_once('=') {
            Some((flag, _)) if flag == "--webhook-listen" || flag == "--query-listen" => {
                format!("{flag}=127.0.0.1:0")
            }
            Some((flag, value)) if value.starts_with('/') => {
                format!("{flag}={}", pod.map(value).display())
            }
            _ => arg,
        };
        args.push(mapped);
    }
    let mut command = Command::new(cargo_bin("logistis", "logistis"));
    command
        .args(&args)
        .current_dir(pod.root.path())
        // Nothing from this machine: no LOGISTIS_* settings, no cluster but the one given.
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env(
            "KUBECONFIG",
            cluster.map_or_else(|| pod.root.path().join("no-kubeconfig"), Path::to_owned),
        )
        .env("HOME", pod.root.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("LOGISTIS_") {
            command.env_remove(key);
        }
    }
    for env in server.env.clone().unwrap_or_default() {
        let value = match (env.value, env.value_from) {
            (Some(value), None) => value,
            (None, Some(from)) => {
                let field = from.field_ref.expect("only the downward API is used");
                assert_eq!(field.field_path, "metadata.namespace");
                NAMESPACE.to_owned()
            }
            other => panic!("{}: {other:?}", env.name),
        };
        command.env(&env.name, value);
    }
    let mut child = command.spawn().expect("logistis starts");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx_err = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(Line::Out(line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx_err.send(Line::Err(line));
        }
    });
    let mut run = Run {
        child: Some(child),
        stderr: Vec::new(),
        exit: None,
        logged: false,
        query: None,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut webhook = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Line::Out(line)) => {
                webhook |= line.starts_with("webhook: ");
                if let Some(url) = line.strip_prefix("query: ") {
                    run.query = Some(url.to_owned());
                }
                if webhook && run.query.is_some() {
                    return run;
                }
            }
            Ok(Line::Err(line)) => {
                run.logged |= serde_json::from_str::<Value>(&line).is_ok_and(|v| v.is_object());
                run.stderr.push(line);
                if run.logged && until_logged {
                    return run;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                run.exit = run.child.take().and_then(|mut c| c.wait().ok());
                return run;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "logistis neither served, logged nor exited in 120 s:\n{}",
                run.stderr.join("\n")
            ),
        }
    }
}

/// A serving certificate, key and CA, as a Secret volume would hold them.
fn test_certificate(into: &Path) {
    let server = Server::start().expect("a server to make a certificate");
    let tls = server.data_dir.join("tls");
    std::fs::create_dir_all(into).unwrap();
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        std::fs::copy(tls.join(file), into.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", tls.join(file).display()));
    }
}

/// The base's arguments and environment pass the server's validation.
#[test]
fn server_accepts_the_base_flags() {
    let render = render(Variant::Base);
    let pod = pod(render, None);
    let run = run_as_manifest(render, &pod, true, None);
    let code = run.exit.and_then(|s| s.code());
    eprintln!(
        "base flags: served {}, logged {}, exit {code:?}; stderr:\n{}",
        run.query.is_some(),
        run.logged,
        run.stderr.join("\n")
    );
    assert!(
        run.logged || run.query.is_some() || (run.exit.is_some() && code != Some(2)),
        "the server rejected the manifests' flags (exit {code:?}):\n{}",
        run.stderr.join("\n")
    );
}

/// The overlay's server serves with the rendered ConfigMap's plugin set, all of it active.
/// (Two workers: starting the server blocks one while the stand-in answers on the other.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_runs_with_the_overlay_flags_and_the_plugin_configmap() {
    let certs = tempfile::tempdir().unwrap();
    test_certificate(certs.path());
    let render = render(Variant::CertManager);
    let pod = pod(render, Some(certs.path()));
    // The aggregated API's authentication reads the front-proxy CA and reviews tokens and
    // access through the API server: the stand-in plays it.
    let apiserver = ApiServer::start().await.unwrap();
    let kubeconfig = apiserver.logistis_kubeconfig().unwrap();
    // The JSON API answers only whom RBAC lets read every change, Secrets included.
    apiserver.add_user(User::new("ops@example.com", "ops-token"));
    apiserver.rbac(|rbac| {
        rbac.allow(
            Subject::user("ops@example.com"),
            &["list"],
            "logistis.io",
            &["changes"],
            Scope::Cluster,
        )
        .allow(
            Subject::user("ops@example.com"),
            &["get"],
            "",
            &["secrets"],
            Scope::Cluster,
        );
    });
    let run = run_as_manifest(render, &pod, false, Some(&kubeconfig));
    let query = run.query.clone().unwrap_or_else(|| {
        panic!(
            "the server did not serve (exit {:?}):\n{}",
            run.exit,
            run.stderr.join("\n")
        )
    });
    let ca = std::fs::read(certs.path().join("ca.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Ready once the store is open and the first plugin set is loaded (compiled from scratch
    // here: no cache yet).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = client
            .get(format!("{query}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if status.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready: {status:?}\n{}",
            run.stderr.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let plugins: Value = client
        .get(format!("{query}/api/v1/plugins"))
        .bearer_auth("ops-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plugins["lastReload"]["ok"], true, "{plugins:#}");
    let configmap: ConfigMap = render.get("ConfigMap", super::PLUGINS_CONFIGMAP);
    let set: Value =
        serde_yaml::from_str(&configmap.data.unwrap_or_default()["plugins.yaml"]).unwrap();
    let configured: Vec<&Value> = ["predicates", "sinks"]
        .iter()
        .flat_map(|list| set[list].as_array().into_iter().flatten())
        .map(|plugin| &plugin["name"])
        .collect();
    let loaded: Vec<&Value> = plugins["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert_eq!(loaded, configured, "{plugins:#}");
    assert!(
        !loaded.is_empty(),
        "the shipped plugins.yaml enables a plugin"
    );
    for plugin in plugins["items"].as_array().unwrap() {
        assert_eq!(plugin["status"], "active", "{plugin:#}");
    }
}

/// Every `LOGISTIS_*` variable the manifests set is one the server reads (a misspelt one
/// would be silently ignored).
#[test]
fn environment_variables_are_the_servers() {
    let help = Command::new(cargo_bin("logistis", "logistis"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for variant in [Variant::Base, Variant::CertManager] {
        let (_, server) = container(&render(variant).statefulset());
        for env in server.env.unwrap_or_default() {
            if env.name.starts_with("LOGISTIS_") {
                assert!(
                    help.contains(&format!("[env: {}=", env.name)),
                    "{variant:?}: {} is not a setting of `logistis serve`",
                    env.name
                );
            }
        }
    }
}
