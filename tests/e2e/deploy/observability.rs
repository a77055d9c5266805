//! `deploy/observability`, the monitoring component: it renders with the deployment through
//! the real `kubectl kustomize`, the ServiceMonitor scrapes the port and trusts the CA the
//! deployment really has, the alerts pass `promtool check rules` and their own
//! `promtool test rules` cases, and every metric that the alerts and the Grafana dashboard
//! name is one the real server exports (`promtool check metrics` lints that exposition).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use logistis_e2e::plugins::{rust_plugin, shared_cache_dir};
use logistis_e2e::{Server, own_review, repo_root, skipped};
use serde_json::Value;

use super::{CERT_SECRET, NAMESPACE, QUERY_PORT, SERVICE, Variant, checkout, kustomize};
use super::{parse_stream, render};

fn component_dir() -> PathBuf {
    repo_root().join("deploy/observability")
}

/// promtool from `scripts/promtool.sh` (what `scripts/test.sh` exports), or on PATH.
fn promtool() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LOGISTIS_PROMTOOL") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then(|| PathBuf::from("promtool"))
}

fn prometheus_rule() -> Value {
    let text = std::fs::read_to_string(component_dir().join("prometheusrule.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("prometheusrule.yaml is YAML")
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(component_dir().join("logistis-dashboard.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every `logistis_…` metric name in a PromQL expression.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(start) = rest.find("logistis_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        into.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
}

fn alert_exprs() -> Vec<(String, String)> {
    prometheus_rule()["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap().clone())
        .map(|rule| {
            (
                rule["alert"].as_str().unwrap().to_owned(),
                rule["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn dashboard_exprs() -> Vec<(String, String)> {
    dashboard()["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap().to_owned();
            panel["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_component_renders_with_the_deployment_and_scrapes_what_it_serves() {
    let copy = checkout();
    let overlay = copy.path().join("monitored");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources: [../deploy]\ncomponents: [../deploy/observability]\n",
    )
    .unwrap();
    let objects = parse_stream(&kustomize(&overlay));
    let find = |kind: &str, name: &str| -> &Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the monitored deployment"))
    };
    // The deployment is all there, and the component adds three objects.
    assert_eq!(objects.len(), render(Variant::Base).objects.len() + 3);

    let monitor = find("ServiceMonitor", "logistis");
    let service = find("Service", SERVICE);
    assert_eq!(monitor["metadata"]["namespace"], NAMESPACE);
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the ServiceMonitor selects the Service by {key}"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], QUERY_PORT);
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == QUERY_PORT),
        "the Service has the port the ServiceMonitor scrapes"
    );
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(
        endpoint["scheme"], "https",
        "the query port serves TLS only"
    );
    assert_eq!(
        endpoint["tlsConfig"]["serverName"],
        format!("{SERVICE}.{NAMESPACE}.svc"),
        "a name the serving certificate is issued for"
    );
    let ca = &endpoint["tlsConfig"]["ca"]["secret"];
    assert_eq!(
        (&ca["name"], &ca["key"]),
        (&Value::from(CERT_SECRET), &Value::from("ca.crt"))
    );
    find("Secret", CERT_SECRET);

    let rule = find("PrometheusRule", "logistis");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(rule["spec"], prometheus_rule()["spec"]);

    let dashboards = find("ConfigMap", "logistis-grafana-dashboard");
    assert_eq!(dashboards["metadata"]["namespace"], NAMESPACE);
    assert_eq!(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(
        dashboards["data"]["logistis-dashboard.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json, dashboard());
}

#[test]
fn the_dashboard_is_well_formed() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "logistis");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        assert!(!panel["targets"].as_array().unwrap().is_empty());
    }
    let variables: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for (title, expr) in dashboard_exprs() {
        for variable in ["$namespace", "$pod"] {
            if expr.contains(variable) {
                assert!(variables.contains(&variable[1..]), "{title}: {variable}");
            }
        }
    }
}

#[test]
fn the_alerts_pass_promtool_and_their_test_cases() {
    let Some(promtool) = promtool() else {
        skipped(
            "deploy::observability::the_alerts_pass_promtool_and_their_test_cases",
            "promtool is not installed (scripts/promtool.sh fetches Debian's; scripts/test.sh \
             runs it)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let groups = serde_json::json!({"groups": prometheus_rule()["spec"]["groups"]});
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&groups).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        component_dir().join("rules-test.yaml"),
        dir.path().join("rules-test.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "rules-test.yaml"],
    ] {
        let output = Command::new(&promtool)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Every alert has a test case.
    let cases = std::fs::read_to_string(component_dir().join("rules-test.yaml")).unwrap();
    for (alert, _) in alert_exprs() {
        assert!(
            cases.contains(&format!("alertname: {alert}")),
            "rules-test.yaml has no case for {alert}"
        );
    }
}

/// Exported only in some configurations: by the certificate manager (`--manage-certs`), and
/// by the store once the storage engineer's state metric lands (`store_accepting_writes`).
const CONDITIONAL: &[&str] = &[
    "logistis_certificate_expiry_timestamp_seconds",
    "logistis_certificate_check_errors_total",
    "logistis_store_accepting_writes",
];

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_name_is_exported() {
    // A server with a predicate and a sink, which has answered a review and a query: the
    // per-plugin, per-sink and per-route series exist from then on.
    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(
        plugins.path().join("plugins.yaml"),
        "predicates:\n  - name: users\n    file: users.wasm\n    deadline-ms: 1000\n\
         sinks:\n  - name: audit-log\n    file: log.wasm\n",
    )
    .unwrap();
    for (file, package) in [
        ("users.wasm", "logistis-plugin-users"),
        ("log.wasm", "logistis-plugin-sink-log"),
    ] {
        std::fs::copy(rust_plugin(package), plugins.path().join(file)).unwrap();
    }
    let server = Server::builder()
        .arg("--plugins-dir")
        .arg(plugins.path().to_str().unwrap())
        .env(
            "LOGISTIS_PLUGINS_CACHE_DIR",
            shared_cache_dir().to_str().unwrap(),
        )
        .start()
        .unwrap();
    server
        .admit(&own_review("create-deployment.json"))
        .await
        .unwrap();
    server.get_ok("/api/v1/events").await.unwrap();
    let text = server.metrics().await.unwrap();
    let mut exported = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                exported.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    exported.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                exported.insert(name.to_owned());
            }
        }
    }
    assert!(exported.contains("logistis_admission_request_duration_seconds_bucket"));

    let mut named = BTreeSet::new();
    for (_, expr) in alert_exprs().into_iter().chain(dashboard_exprs()) {
        metric_names(&expr, &mut named);
    }
    let missing: Vec<&String> = named
        .iter()
        .filter(|name| !exported.contains(*name) && !CONDITIONAL.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the alerts or the dashboard name metrics the server does not export: {missing:?}"
    );

    if let Some(promtool) = promtool() {
        use std::io::Write;
        let mut lint = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        lint.stdin
            .take()
            .unwrap()
            .write_all(classic_text(&text).as_bytes())
            .unwrap();
        let output = lint.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The server's OpenMetrics as the classic text format `promtool check metrics` reads: a
/// counter family `x` with samples `x_total` becomes the family `x_total`, and `# EOF` goes.
fn classic_text(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::new();
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[test]
fn openmetrics_counters_become_classic_families() {
    let text = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total 3\n# TYPE c gauge\nc 1\n# EOF\n";
    assert_eq!(
        classic_text(text),
        "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total 3\n# TYPE c gauge\nc 1\n"
    );
}

#[test]
fn metric_names_are_found_in_expressions() {
    let mut names = BTreeSet::new();
    metric_names(
        "sum(rate(logistis_a_total{x=\"y\"}[5m])) / logistis_b_bucket{le=\"1\"}",
        &mut names,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["logistis_a_total", "logistis_b_bucket"]
    );
}
