//! The locks parts of the deployment: the `logistis:locks-admin` ClusterRole (aggregated
//! into `admin`, not `edit`) in both kustomizations, and the optional hard-freeze component
//! rendered on top of the base: its second webhook entry, its schema, and its match
//! conditions evaluated by a CEL interpreter (the cluster's machinery is never failed closed).

use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use serde_json::{Value, json};

use super::validators::{evaluate, installed, kubernetes_validate};
use super::{NAMESPACE, Variant, checkout, kustomize, parse_stream, render, strict};

#[test]
fn locks_admin_is_aggregated_into_admin_only() {
    for variant in [Variant::Base, Variant::CertManager] {
        let role: ClusterRole = render(variant).get("ClusterRole", "logistis:locks-admin");
        let labels = role.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get("rbac.authorization.k8s.io/aggregate-to-admin")
                .map(String::as_str),
            Some("true")
        );
        for not in ["edit", "view"] {
            assert!(
                !labels.contains_key(&format!("rbac.authorization.k8s.io/aggregate-to-{not}")),
                "{variant:?}: locks-admin must not reach {not}"
            );
        }
        assert_eq!(
            role.rules.unwrap_or_default(),
            [PolicyRule {
                api_groups: Some(vec!["logistis.io".into()]),
                resources: Some(vec!["locks".into()]),
                verbs: ["get", "list", "watch", "create", "delete"]
                    .map(str::to_owned)
                    .to_vec(),
                ..PolicyRule::default()
            }]
        );
    }
}

/// `deploy/` with the hard-freeze component, rendered from a copy.
fn hard_freeze() -> String {
    let copy = checkout();
    let overlay = copy.path().join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources: [../deploy]\ncomponents: [../deploy/hard-freeze]\n",
    )
    .unwrap();
    kustomize(&overlay)
}

#[test]
fn the_hard_freeze_component_adds_a_fail_closed_entry_for_labelled_namespaces() {
    let text = hard_freeze();
    let objects = parse_stream(&text);
    let configuration: ValidatingWebhookConfiguration = objects
        .iter()
        .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
        .map(strict)
        .expect("the webhook configuration");
    let webhooks = configuration.webhooks.unwrap_or_default();
    assert_eq!(webhooks.len(), 2);
    let (record, freeze) = (&webhooks[0], &webhooks[1]);
    assert_eq!(record.name, "record.logistis.io");
    assert_eq!(
        record.failure_policy.as_deref(),
        Some("Ignore"),
        "unchanged"
    );
    assert_eq!(freeze.name, "freeze.logistis.io");
    assert_eq!(freeze.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(freeze.side_effects, "NoneOnDryRun");
    assert_eq!(freeze.timeout_seconds, Some(2));
    let service = freeze.client_config.service.as_ref().unwrap();
    assert_eq!(
        (
            service.namespace.as_str(),
            service.name.as_str(),
            service.path.as_deref()
        ),
        (NAMESPACE, "logistis", Some("/validate"))
    );
    assert!(freeze.client_config.ca_bundle.is_none());
    let selector = freeze.namespace_selector.clone().unwrap();
    assert_eq!(
        selector
            .match_labels
            .unwrap_or_default()
            .get("logistis.io/hard-freeze")
            .map(String::as_str),
        Some("true")
    );
    for rule in freeze.rules.clone().unwrap_or_default() {
        assert_eq!(rule.scope.as_deref(), Some("Namespaced"), "{rule:?}");
    }

    if installed(Command::new("python3").args(["-m", "kubernetes_validate", "--version"])) {
        let (ok, report) = kubernetes_validate(&text);
        assert!(ok, "{report}");
    } else {
        eprintln!("SKIPPED the hard-freeze schema check: kubernetes-validate is not installed");
    }

    if !installed(Command::new("python3").args(["-c", "import celpy"])) {
        eprintln!("SKIPPED the hard-freeze matchConditions: cel-python is not installed");
        return;
    }
    let expressions: Vec<String> = freeze
        .match_conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.expression)
        .collect();
    let request = |username: &str, groups: &[&str]| {
        json!({
            "uid": "d0000000-0000-0000-0000-000000000000",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "operation": "UPDATE",
            "userInfo": {"username": username, "groups": groups},
        })
    };
    let cases = [
        (
            request("alice@example.com", &["dev", "system:authenticated"]),
            true,
        ),
        (
            request("system:serviceaccount:shop:ci", &["system:serviceaccounts"]),
            true,
        ),
        (request("system:node:worker-1", &["system:nodes"]), false),
        (request("system:kube-controller-manager", &[]), false),
        (request("system:kube-scheduler", &[]), false),
        (
            request(
                "system:serviceaccount:kube-system:replicaset-controller",
                &["system:serviceaccounts"],
            ),
            false,
        ),
    ];
    let requests: Vec<&Value> = cases.iter().map(|(r, _)| r).collect();
    let results = evaluate(&expressions, &requests);
    for ((request, sent), row) in cases.iter().zip(&results) {
        assert_eq!(
            row.iter().all(|&b| b),
            *sent,
            "{}: {row:?}",
            request["userInfo"]["username"]
        );
    }
}
