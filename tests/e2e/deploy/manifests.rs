//! The settings an operator relies on, asserted on the typed objects of both renders: the
//! webhook, RBAC, the StatefulSet and its security context, the Service, the certificates,
//! the plugin ConfigMap, and that no private key is anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use logistis_e2e::repo_root;
use serde_json::Value;

use super::{
    CERT_SECRET, CONFIGMAP_LIMIT, NAMESPACE, PLUGINS_CONFIGMAP, QUERY_PORT, Render, SERVICE,
    Variant, WEBHOOK_CONFIGURATION, cert_manager, configmap_plugins, container, flags, packaging,
    render, strict,
};

fn flag(flags: &BTreeMap<String, Option<String>>, name: &str) -> String {
    flags
        .get(name)
        .cloned()
        .flatten()
        .unwrap_or_else(|| panic!("--{name}=VALUE is not among the flags {flags:?}"))
}

/// The container port a Service or probe port refers to (by name or number).
fn container_port(container: &Container, port: &IntOrString) -> i32 {
    let ports = container.ports.clone().unwrap_or_default();
    let found = match port {
        IntOrString::Int(number) => ports.iter().find(|p| p.container_port == *number),
        IntOrString::String(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
    };
    found
        .unwrap_or_else(|| panic!("{port:?} is not a port of the container"))
        .container_port
}

fn listen_port(address: &str) -> i32 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} is not HOST:PORT"))
}

#[test]
fn webhook_sends_every_change_but_its_own_namespace_and_never_blocks() {
    for variant in [Variant::Base, Variant::CertManager] {
        let configuration = render(variant).webhook_configuration();
        let webhooks = configuration.webhooks.unwrap_or_default();
        assert_eq!(webhooks.len(), 1, "one webhook");
        let webhook = &webhooks[0];
        assert_eq!(webhook.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(webhook.side_effects, "NoneOnDryRun");
        assert_eq!(webhook.timeout_seconds, Some(2));
        assert_eq!(webhook.admission_review_versions, ["v1"]);
        assert_eq!(webhook.match_policy.as_deref(), Some("Equivalent"));

        let client = &webhook.client_config;
        assert!(client.url.is_none(), "called through the Service");
        assert!(
            client.ca_bundle.is_none(),
            "{variant:?}: the caBundle is written in the cluster, never shipped"
        );
        let service = client.service.as_ref().expect("a service reference");
        assert_eq!(
            (service.namespace.as_str(), service.name.as_str()),
            (NAMESPACE, SERVICE)
        );
        assert_eq!(service.path.as_deref(), Some("/validate"));
        assert_eq!(service.port, Some(443));

        let rules = webhook.rules.clone().unwrap_or_default();
        let everything = rules
            .iter()
            .find(|rule| rule.api_groups.as_deref() == Some(&["*".to_owned()][..]))
            .expect("a rule for every API group");
        assert_eq!(
            everything.api_versions.as_deref(),
            Some(&["*".to_owned()][..])
        );
        assert_eq!(everything.scope.as_deref(), Some("*"));
        assert_eq!(
            everything.operations.clone().unwrap_or_default(),
            ["CREATE", "UPDATE", "DELETE"]
        );
        let resources = everything.resources.clone().unwrap_or_default();
        assert!(
            resources.contains(&"*".to_owned()) && resources.contains(&"*/scale".to_owned()),
            "main resources and the scale subresource: {resources:?}"
        );
        let connect = rules
            .iter()
            .find(|rule| rule.operations.as_deref() == Some(&["CONNECT".to_owned()][..]))
            .expect("a CONNECT rule");
        assert_eq!(connect.api_groups.as_deref(), Some(&[String::new()][..]));
        assert_eq!(
            connect.resources.clone().unwrap_or_default(),
            ["pods/exec", "pods/attach", "pods/portforward"]
        );

        let selector = webhook
            .namespace_selector
            .clone()
            .expect("a namespaceSelector");
        let excluded = selector
            .match_expressions
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.key == "kubernetes.io/metadata.name")
            .expect("a selector on the namespace name");
        assert_eq!(excluded.operator, "NotIn");
        assert_eq!(excluded.values.unwrap_or_default(), [NAMESPACE]);
        assert!(selector.match_labels.is_none());

        let conditions = webhook.match_conditions.clone().unwrap_or_default();
        let names: BTreeSet<&str> = conditions.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), conditions.len(), "condition names are unique");
        assert_eq!(
            names,
            BTreeSet::from(["not-leases", "not-events", "not-reviews"])
        );
        // What they keep and drop is evaluated in `validators` (with a CEL interpreter).
    }
}

/// One rule on one named object.
fn rule(group: &str, resource: &str, name: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        resource_names: Some(vec![name.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// The server's own RBAC: named objects only, nothing created, listed or watched — except
/// the read-only list/watch of confirmation (`deploy/confirm`), checked on its own.
#[test]
fn rbac_is_least_privilege() {
    let base = render(Variant::Base);
    let confirm: ClusterRole = base.get("ClusterRole", "logistis-confirm");
    let confirm_rules = confirm.rules.unwrap_or_default();
    assert_eq!(confirm_rules.len(), 1, "{confirm_rules:?}");
    assert_eq!(confirm_rules[0].verbs, ["list", "watch"], "read-only");
    assert!(confirm_rules[0].resource_names.is_none());
    assert!(confirm_rules[0].non_resource_urls.is_none());
    let binding: ClusterRoleBinding = base.get("ClusterRoleBinding", "logistis-confirm");
    assert_eq!(binding.role_ref.name, "logistis-confirm");
    for variant in [Variant::Base, Variant::CertManager] {
        let render = render(variant);
        for kind in ["Role", "ClusterRole"] {
            // Roles for people are judged below or where they are defined, not as the
            // server's own: the changes viewer, and those aggregated into the cluster's own
            // (`admin`…: deploy/locks.rs); the read-only list/watch of confirmation
            // (`deploy/confirm`) is checked on its own.
            for object in render.of_kind(kind).into_iter().filter(|o| {
                let aggregated = o["metadata"]["labels"].as_object().is_some_and(|l| {
                    l.keys()
                        .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
                });
                o["metadata"]["name"] != "logistis:changes-viewer"
                    && o["metadata"]["name"] != "logistis-confirm"
                    && !aggregated
            }) {
                let rules: Vec<PolicyRule> =
                    serde_json::from_value(object["rules"].clone()).unwrap();
                for rule in &rules {
                    let lists = [
                        &rule.verbs,
                        &rule.api_groups.clone().unwrap_or_default(),
                        &rule.resources.clone().unwrap_or_default(),
                        &rule.resource_names.clone().unwrap_or_default(),
                    ];
                    assert!(
                        lists
                            .iter()
                            .all(|list| !list.iter().any(|v| v.contains('*'))),
                        "{kind} {}: no wildcards ({rule:?})",
                        object["metadata"]["name"]
                    );
                    assert!(
                        rule.resource_names.as_ref().is_some_and(|n| !n.is_empty()),
                        "{kind} {}: every rule names its objects ({rule:?})",
                        object["metadata"]["name"]
                    );
                    assert!(rule.non_resource_urls.is_none());
                    for verb in &rule.verbs {
                        assert!(
                            ["get", "update", "patch"].contains(&verb.as_str()),
                            "{kind} {}: verb {verb} (create/list/watch/delete are never needed)",
                            object["metadata"]["name"]
                        );
                    }
                }
            }
        }
    }

    // --manage-certs: its Secret (get, update; no create, and no patch: the server replaces
    // the Secret with the resourceVersion it read) and its webhook's caBundle.
    let role: Role = base.get("Role", "logistis-certs");
    assert_eq!(
        role.rules.unwrap_or_default(),
        [rule("", "secrets", CERT_SECRET, &["get", "update"])]
    );
    let cluster_role: ClusterRole = base.get("ClusterRole", "logistis-webhook-ca");
    assert_eq!(
        cluster_role.rules.unwrap_or_default(),
        [
            rule(
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                WEBHOOK_CONFIGURATION,
                &["get", "patch"]
            ),
            rule(
                "apiregistration.k8s.io",
                "apiservices",
                "v1alpha1.logistis.io",
                &["get", "patch"]
            )
        ]
    );
    let (pod, _) = container(&base.statefulset());
    let account = pod
        .service_account_name
        .expect("a ServiceAccount of its own");
    let _: ServiceAccount = base.get("ServiceAccount", &account);
    let binding: RoleBinding = base.get("RoleBinding", "logistis-certs");
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, "logistis-certs");
    let subjects = binding.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str()),
        ("ServiceAccount", account.as_str())
    );
    let binding: ClusterRoleBinding = base.get("ClusterRoleBinding", "logistis-webhook-ca");
    assert_eq!(binding.role_ref.name, "logistis-webhook-ca");
    let subjects = binding.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].name, account);
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));

    // The aggregated API: delegated authentication and authorization, bound as
    // metrics-server binds them, in both variants.
    for variant in [Variant::Base, Variant::CertManager] {
        let render = render(variant);
        let delegator: ClusterRoleBinding =
            render.get("ClusterRoleBinding", "logistis:system:auth-delegator");
        assert_eq!(delegator.role_ref.name, "system:auth-delegator");
        assert_eq!(delegator.subjects.unwrap_or_default()[0].name, account);
        let reader: RoleBinding = render.get(
            "RoleBinding",
            "logistis:extension-apiserver-authentication-reader",
        );
        assert_eq!(reader.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(reader.role_ref.kind, "Role");
        assert_eq!(
            reader.role_ref.name,
            "extension-apiserver-authentication-reader"
        );
        assert_eq!(reader.subjects.unwrap_or_default()[0].name, account);

        // For people: the changes, aggregated into view, edit and admin.
        let viewer: ClusterRole = render.get("ClusterRole", "logistis:changes-viewer");
        let labels = viewer.metadata.labels.clone().unwrap_or_default();
        for role in ["view", "edit", "admin"] {
            assert_eq!(
                labels
                    .get(&format!("rbac.authorization.k8s.io/aggregate-to-{role}"))
                    .map(String::as_str),
                Some("true"),
                "aggregated into {role}"
            );
        }
        let rules = viewer.rules.unwrap_or_default();
        assert!(
            rules
                .iter()
                .all(|r| r.api_groups.as_deref() == Some(&["logistis.io".to_owned()][..]))
        );
        assert!(rules.iter().any(|r| {
            r.resources.as_ref().is_some_and(|res| {
                ["changes", "changes/blame", "changes/versions"]
                    .iter()
                    .all(|x| res.iter().any(|r| r == x))
            }) && ["get", "list", "watch"]
                .iter()
                .all(|v| r.verbs.iter().any(|x| x == v))
        }));

        // No role grants the service proxy: it would bypass per-namespace RBAC.
        for kind in ["Role", "ClusterRole"] {
            for object in render.of_kind(kind) {
                let rules: Vec<PolicyRule> =
                    serde_json::from_value(object["rules"].clone()).unwrap_or_default();
                // Reading every resource (confirmation's list and watch) cannot proxy:
                // the proxy subresource is reached with get, create, update and delete.
                for rule in rules.into_iter().filter(|rule| {
                    !rule
                        .verbs
                        .iter()
                        .all(|verb| verb == "list" || verb == "watch")
                }) {
                    assert!(
                        !rule
                            .resources
                            .unwrap_or_default()
                            .iter()
                            .any(|r| r == "services/proxy" || r == "*"),
                        "{kind} {} grants services/proxy",
                        object["metadata"]["name"]
                    );
                }
            }
        }
        let api_service = render.of_kind("APIService");
        assert_eq!(api_service.len(), 1);
        assert_eq!(api_service[0]["spec"]["service"]["port"], 8081);
        assert_eq!(render.of_kind("NetworkPolicy").len(), 1);
    }
}

/// One replica with its volume, probes, resources and a locked-down security context.
#[test]
fn statefulset_runs_one_locked_down_replica() {
    for variant in [Variant::Base, Variant::CertManager] {
        let render = render(variant);
        let statefulset = render.statefulset();
        let spec = statefulset.spec.clone();
        assert_eq!(
            spec.replicas,
            Some(1),
            "fjall is single-process: one replica"
        );
        assert_eq!(spec.service_name.as_deref(), Some(SERVICE));
        let (pod, container) = container(&statefulset);
        let flags = flags(&container);

        // The data dir is the PVC of the claim template.
        let claims = spec.volume_claim_templates.unwrap_or_default();
        assert_eq!(claims.len(), 1, "one volume claim: the store");
        let claim = &claims[0];
        let claim_name = claim.metadata.name.clone().unwrap();
        let claim_spec = claim.spec.clone().unwrap();
        assert_eq!(
            claim_spec.access_modes.unwrap_or_default(),
            ["ReadWriteOnce"]
        );
        assert!(
            claim_spec
                .resources
                .and_then(|r| r.requests)
                .is_some_and(|r| r.contains_key("storage")),
            "the claim requests storage"
        );
        let mounts = container.volume_mounts.clone().unwrap_or_default();
        let data_mount = mounts
            .iter()
            .find(|m| m.name == claim_name)
            .expect("the claim is mounted");
        assert_eq!(data_mount.mount_path, flag(&flags, "data-dir"));

        // Probes on the query listener (HTTPS): the process serves, and is ready.
        let query_port = listen_port(&flag(&flags, "query-listen"));
        for (probe, path) in [
            (&container.startup_probe, "/livez"),
            (&container.liveness_probe, "/livez"),
            (&container.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.clone())
                .unwrap_or_else(|| panic!("an HTTP probe on {path}"));
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
            assert_eq!(container_port(&container, &get.port), query_port);
        }

        let resources = container.resources.clone().expect("resources");
        for (what, values) in [
            ("requests", resources.requests),
            ("limits", resources.limits),
        ] {
            let values = values.unwrap_or_else(|| panic!("no {what}"));
            assert!(
                values.contains_key("cpu") && values.contains_key("memory"),
                "{what}: cpu and memory ({values:?})"
            );
        }

        let pod_security = pod.security_context.clone().expect("a pod securityContext");
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert!(pod_security.run_as_user.is_some_and(|uid| uid > 0));
        assert!(pod_security.run_as_group.is_some_and(|gid| gid > 0));
        assert_eq!(
            pod_security.seccomp_profile.map(|p| p.type_),
            Some("RuntimeDefault".to_owned())
        );
        let security = container
            .security_context
            .clone()
            .expect("a container securityContext");
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_ne!(security.privileged, Some(true));
        assert!(security.run_as_user.is_none_or(|uid| uid > 0));
        let capabilities = security.capabilities.clone().expect("capabilities");
        assert_eq!(capabilities.drop.unwrap_or_default(), ["ALL"]);
        assert!(capabilities.add.unwrap_or_default().is_empty());
        assert_eq!(
            security.seccomp_profile.map(|p| p.type_),
            Some("RuntimeDefault".to_owned())
        );
        assert_ne!(pod.host_network, Some(true));
        assert_ne!(pod.host_pid, Some(true));

        writable_paths_are_volumes(render, &pod, &container);
    }
}

/// A read-only root filesystem: every path the server writes must be a writable volume, and
/// every file it reads (plugins, certificates) must come from one.
fn writable_paths_are_volumes(render: &Render, pod: &PodSpec, container: &Container) {
    let flags = flags(container);
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    let volumes = pod.volumes.clone().unwrap_or_default();
    let mount_of = |path: &str| {
        mounts
            .iter()
            .filter(|m| Path::new(path).starts_with(&m.mount_path))
            .max_by_key(|m| m.mount_path.len())
            .unwrap_or_else(|| panic!("{path} is on the read-only root filesystem"))
            .clone()
    };
    let claim = render
        .statefulset()
        .spec
        .volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect::<Vec<_>>();
    let writable = |path: &str| {
        let mount = mount_of(path);
        assert_ne!(mount.read_only, Some(true), "{path} is read-only");
        let is_volume = claim.contains(&mount.name)
            || volumes
                .iter()
                .any(|v| v.name == mount.name && v.empty_dir.is_some());
        assert!(is_volume, "{path}: neither the PVC nor an emptyDir");
    };
    writable(&flag(&flags, "data-dir"));
    writable(&flag(&flags, "plugins-cache-dir"));
    writable("/tmp");

    let plugins = mount_of(&flag(&flags, "plugins-dir"));
    assert_eq!(plugins.mount_path, flag(&flags, "plugins-dir"));
    assert!(
        plugins.sub_path.is_none(),
        "a subPath mount never sees ConfigMap updates: no hot reload"
    );
    let volume = volumes.iter().find(|v| v.name == plugins.name).unwrap();
    assert_eq!(
        volume.config_map.as_ref().map(|c| c.name.as_str()),
        Some(PLUGINS_CONFIGMAP)
    );

    for name in ["tls-cert", "tls-key"] {
        if let Some(Some(path)) = flags.get(name) {
            let mount = mount_of(path);
            assert_eq!(mount.read_only, Some(true));
            let volume = volumes.iter().find(|v| v.name == mount.name).unwrap();
            assert!(volume.secret.is_some(), "--{name} comes from a Secret");
        }
    }
}

#[test]
fn service_ports_reach_the_listeners() {
    for variant in [Variant::Base, Variant::CertManager] {
        let render = render(variant);
        let service: Service = render.get("Service", SERVICE);
        let statefulset = render.statefulset();
        let (_, container) = container(&statefulset);
        let flags = flags(&container);
        let spec = service.spec.unwrap();
        let template_labels = statefulset
            .spec
            .template
            .metadata
            .clone()
            .and_then(|m| m.labels)
            .unwrap_or_default();
        let selector = spec.selector.clone().expect("a selector");
        assert!(
            selector
                .iter()
                .all(|(k, v)| template_labels.get(k) == Some(v)),
            "the Service selects the server's pods"
        );
        let ports = spec.ports.unwrap_or_default();
        let port = |name: &str| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no port {name}"))
                .clone()
        };
        let webhook = port("webhook");
        assert_eq!(webhook.port, 443);
        let target = webhook.target_port.clone().expect("a target port");
        assert_eq!(container_port(&container, &target), 8443);
        assert_eq!(flag(&flags, "webhook-listen"), "0.0.0.0:8443");

        let query = port(QUERY_PORT);
        let target = query.target_port.clone().expect("a target port");
        // The API server's proxy reaches it on the pod IP: not on loopback.
        let listen = flag(&flags, "query-listen");
        assert_eq!(
            listen,
            format!("0.0.0.0:{}", container_port(&container, &target))
        );
        assert_eq!(ports.len(), 2);
    }
}

/// The server manages its certificates in the base; cert-manager does in the overlay.
#[test]
fn certificates_self_managed_in_the_base_and_by_cert_manager_in_the_overlay() {
    let base = render(Variant::Base);
    let (_, server) = container(&base.statefulset());
    let flags_base = flags(&server);
    assert!(flags_base.contains_key("manage-certs"));
    assert!(!flags_base.contains_key("tls-cert") && !flags_base.contains_key("self-signed"));
    let env = server.env.clone().unwrap_or_default();
    let namespace = env
        .iter()
        .find(|e| e.name == "LOGISTIS_NAMESPACE")
        .expect("--namespace from the downward API");
    assert_eq!(
        namespace
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("metadata.namespace")
    );
    // Defaults of --cert-secret, --service, --webhook-configuration: not repeated as flags.
    let secret: Secret = base.get("Secret", CERT_SECRET);
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert!(
        secret.data.is_none() && secret.string_data.is_none(),
        "the placeholder is empty: the server fills it in the cluster"
    );

    let overlay = render(Variant::CertManager);
    let (pod, container) = container(&overlay.statefulset());
    let flags_overlay = flags(&container);
    assert!(!flags_overlay.contains_key("manage-certs"));
    let cert = flag(&flags_overlay, "tls-cert");
    let key = flag(&flags_overlay, "tls-key");
    assert_eq!(Path::new(&cert).parent(), Path::new(&key).parent());
    assert_ne!(
        pod.automount_service_account_token,
        Some(false),
        "with cert-manager the server still authenticates readers through the API"
    );
    assert!(overlay.find::<Secret>("Secret", CERT_SECRET).is_none());
    assert!(overlay.find::<Role>("Role", "logistis-certs").is_none());
    assert!(
        overlay
            .find::<RoleBinding>("RoleBinding", "logistis-certs")
            .is_none()
    );
    assert!(
        overlay
            .find::<ClusterRoleBinding>("ClusterRoleBinding", "logistis-webhook-ca")
            .is_none()
    );
    assert!(
        overlay
            .find::<ClusterRole>("ClusterRole", "logistis-webhook-ca")
            .is_none()
    );

    // The mounted Secret is the serving Certificate's, for the Service's DNS names, issued by
    // a CA Issuer whose CA certificate comes from a self-signed Issuer.
    let mount = container
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|m| Path::new(&cert).parent() == Some(Path::new(&m.mount_path)))
        .expect("the certificate directory is a mount");
    let secret_name = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == mount.name)
        .and_then(|v| v.secret)
        .and_then(|s| s.secret_name)
        .expect("a Secret volume");
    let configuration = overlay.webhook_configuration();
    let inject = configuration
        .metadata
        .annotations
        .unwrap_or_default()
        .get("cert-manager.io/inject-ca-from")
        .cloned()
        .expect("cainjector's annotation");
    let (namespace, name) = inject.split_once('/').expect("NAMESPACE/CERTIFICATE");
    assert_eq!(namespace, NAMESPACE);
    let serving: cert_manager::Certificate = overlay.get("Certificate", name);
    assert_eq!(serving.spec.secret_name, secret_name);
    let dns_names = serving.spec.dns_names.clone().unwrap_or_default();
    assert!(dns_names.contains(&format!("{SERVICE}.{NAMESPACE}.svc")));
    assert_ne!(serving.spec.is_ca, Some(true));
    let usages = serving.spec.usages.as_deref().unwrap_or_default();
    assert!(usages.contains(&cert_manager::KeyUsage::ServerAuth));
    assert!(hours(&serving.spec.renew_before) < hours(&serving.spec.duration));

    let ca_issuer: cert_manager::Issuer = overlay.get("Issuer", &serving.spec.issuer_ref.name);
    let ca_secret = ca_issuer.spec.ca.expect("a CA issuer").secret_name;
    let ca = overlay
        .of_kind("Certificate")
        .into_iter()
        .map(strict::<cert_manager::Certificate>)
        .find(|c| c.spec.secret_name == ca_secret)
        .expect("a Certificate for the CA");
    assert_eq!(ca.spec.is_ca, Some(true));
    assert!(hours(&ca.spec.duration) > hours(&serving.spec.duration));
    let root: cert_manager::Issuer = overlay.get("Issuer", &ca.spec.issuer_ref.name);
    assert!(root.spec.self_signed.is_some());
}

/// `NNNh` durations (cert-manager takes Go durations; these manifests use hours).
fn hours(duration: &Option<String>) -> u64 {
    let text = duration.as_deref().expect("a duration");
    text.strip_suffix('h')
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("{text:?}: write durations in hours"))
}

#[test]
fn plugin_configmap_ships_the_rust_plugins_under_the_size_limit() {
    let shipped = packaging::shipped_plugin_packages();
    let listed: BTreeSet<String> = configmap_plugins().into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        listed, shipped,
        "the ConfigMap ships every Rust plugin but test-only ones"
    );
    for variant in [Variant::Base, Variant::CertManager] {
        let configmap: ConfigMap = render(variant).get("ConfigMap", PLUGINS_CONFIGMAP);
        let data = configmap.data.clone().unwrap_or_default();
        let binary = configmap.binary_data.clone().unwrap_or_default();
        let files: BTreeSet<&str> = binary.keys().map(String::as_str).collect();
        let expected: BTreeSet<String> = shipped
            .iter()
            .map(|p| format!("{}.wasm", p.trim_start_matches("logistis-plugin-")))
            .collect();
        assert_eq!(files, expected.iter().map(String::as_str).collect());
        for (name, bytes) in &binary {
            assert!(bytes.0.starts_with(b"\0asm"), "{name} is WebAssembly");
        }
        // What the API server counts: data plus the decoded binaryData.
        let size: usize = data.values().map(String::len).sum::<usize>()
            + binary.values().map(|b| b.0.len()).sum::<usize>();
        eprintln!(
            "{variant:?}: plugin ConfigMap {size} bytes of {CONFIGMAP_LIMIT} ({} files)",
            binary.len() + data.len()
        );
        assert!(size < CONFIGMAP_LIMIT, "{size} bytes: over the 1 MiB limit");

        let plugins_yaml = data.get("plugins.yaml").expect("plugins.yaml");
        let set: Value = serde_yaml::from_str(plugins_yaml).unwrap();
        for plugin in ["predicates", "sinks"]
            .iter()
            .flat_map(|list| set[list].as_array().cloned().unwrap_or_default())
        {
            let file = plugin["file"]
                .as_str()
                .expect("every plugin names its file");
            assert!(binary.contains_key(file), "{file} is not in the ConfigMap");
        }
    }
}

#[test]
fn no_private_key_in_the_sources_or_the_renders() {
    fn scan(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                scan(&path, found);
            } else if path.extension().is_none_or(|e| e != "wasm") {
                let bytes = std::fs::read(&path).unwrap();
                if String::from_utf8_lossy(&bytes).contains("PRIVATE KEY") {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    let mut found = Vec::new();
    scan(&repo_root().join("deploy"), &mut found);
    assert!(found.is_empty(), "private keys in {found:?}");
    for variant in [Variant::Base, Variant::CertManager] {
        let render = render(variant);
        assert!(!render.text.contains("PRIVATE KEY"), "{variant:?}");
        for secret in render.of_kind("Secret") {
            assert!(secret.get("data").is_none() && secret.get("stringData").is_none());
        }
    }
}
