//! Checks by tools from PyPI, run when they are installed (`scripts/test.sh` installs them)
//! and reported as SKIPPED when not: kubernetes-validate (the Kubernetes OpenAPI schemas,
//! strictly: unknown fields fail) and cel-python (the webhook's matchConditions evaluated on
//! real AdmissionRequests, as the API server does before calling the webhook).

use std::io::Write;
use std::process::{Command, Stdio};

use logistis_e2e::{own_fixtures, reviews_in, shared_fixtures, skipped};
use serde_json::{Value, json};

use super::{Variant, render};

pub(super) fn installed(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// kubernetes-validate on a file; its exit status and output.
pub(super) fn kubernetes_validate(text: &str) -> (bool, String) {
    let mut file = tempfile::NamedTempFile::with_suffix(".yaml").unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .arg(file.path())
        .output()
        .expect("kubernetes-validate runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[test]
fn manifests_pass_the_kubernetes_schemas() {
    if !installed(Command::new("python3").args(["-m", "kubernetes_validate", "--version"])) {
        skipped(
            "manifests_pass_the_kubernetes_schemas",
            "kubernetes-validate is not installed (pip install kubernetes-validate; \
             scripts/test.sh does)",
        );
        return;
    }
    for variant in super::VARIANTS {
        let (ok, report) = kubernetes_validate(&render(variant).text);
        assert!(ok, "{variant:?}:\n{report}");
        // cert-manager's kinds have no schema there: the strict model in deploy.rs covers them.
        for line in report.lines() {
            assert!(
                !line.contains("ERROR")
                    && (!line.contains("Couldn't find schema") || line.contains("cert-manager.io")),
                "{variant:?}: {line}"
            );
        }
    }
    // The validator does reject what the cluster would: a misspelt field.
    let misspelt = render(Variant::Base)
        .text
        .replace("  timeoutSeconds: 2\n", "  timeoutSecond: 2\n");
    assert_ne!(misspelt, render(Variant::Base).text);
    let (ok, report) = kubernetes_validate(&misspelt);
    assert!(!ok, "a misspelt field passed:\n{report}");
}

/// Evaluates each expression on each request with cel-python; `true`/`false` per pair.
const EVALUATE: &str = r#"
import json, sys
import celpy
from celpy import celtypes
data = json.load(sys.stdin)
env = celpy.Environment()
programs = [env.program(env.compile(e)) for e in data["expressions"]]
results = []
for request in data["requests"]:
    activation = {"request": celpy.json_to_cel(request)}
    row = []
    for program in programs:
        value = program.evaluate(activation)
        if not isinstance(value, celtypes.BoolType):
            raise SystemExit("not a bool: %r" % (value,))
        row.append(bool(value))
    results.append(row)
json.dump(results, sys.stdout)
"#;

/// Each CEL expression on each request (with cel-python, as the API server evaluates
/// matchConditions): one row of results per request.
pub(super) fn evaluate<E: serde::Serialize, R: serde::Serialize>(
    expressions: &[E],
    requests: &[R],
) -> Vec<Vec<bool>> {
    let mut child = Command::new("python3")
        .args(["-c", EVALUATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({"expressions": expressions, "requests": requests});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the conditions do not evaluate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Requests for resources that are activity, not change: never sent to the webhook.
const NOISE: [(&str, &str); 10] = [
    ("coordination.k8s.io", "leases"),
    ("coordination.k8s.io", "leasecandidates"),
    ("", "events"),
    ("events.k8s.io", "events"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
];

#[test]
fn match_conditions_drop_the_noise_and_keep_every_change() {
    if !installed(Command::new("python3").args(["-c", "import celpy"])) {
        skipped(
            "match_conditions_drop_the_noise_and_keep_every_change",
            "cel-python is not installed (pip install cel-python; scripts/test.sh does)",
        );
        return;
    }
    let configuration = render(Variant::Base).webhook_configuration();
    let conditions = configuration.webhooks.unwrap()[0]
        .match_conditions
        .clone()
        .unwrap();
    let expressions: Vec<&str> = conditions.iter().map(|c| c.expression.as_str()).collect();

    // Every real request of the fixtures (the shared corpus too, when it is there) is a
    // change to keep; then one request for each noisy resource, and a CRD that happens to be
    // called `events`.
    let mut requests: Vec<Value> = Vec::new();
    let mut dirs = vec![own_fixtures().join("admission")];
    dirs.extend(shared_fixtures().map(|d| d.join("admission")));
    for dir in dirs {
        for (_, review) in reviews_in(&dir) {
            let request = &review["request"];
            if request["resource"]["resource"].is_string() {
                requests.push(request.clone());
            }
        }
    }
    let fixtures = requests.len();
    assert!(fixtures > 5, "the fixtures hold requests");
    let synthetic = |group: &str, resource: &str| {
        json!({
            "uid": "c0000000-0000-0000-0000-000000000000",
            "kind": {"group": group, "version": "v1", "kind": "Any"},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "operation": "UPDATE",
            "userInfo": {"username": "system:node:worker-1"},
        })
    };
    for (group, resource) in NOISE {
        requests.push(synthetic(group, resource));
    }
    requests.push(synthetic("example.com", "events"));
    requests.push(synthetic("coordination.example.com", "leases"));

    let results = evaluate(&expressions, &requests);
    for (request, row) in requests.iter().zip(&results) {
        let resource = &request["resource"];
        let key = (
            resource["group"].as_str().unwrap_or_default(),
            resource["resource"].as_str().unwrap_or_default(),
        );
        let sent = row.iter().all(|&b| b);
        assert_eq!(
            sent,
            !NOISE.contains(&key),
            "{key:?} {}: conditions {row:?}",
            request["operation"]
        );
    }
    eprintln!(
        "matchConditions: {fixtures} fixture requests sent, {} noisy ones dropped",
        NOISE.len()
    );
}
