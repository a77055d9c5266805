//! The deployment, checked without a cluster: the real `kubectl kustomize` renders `deploy/`
//! (the base, where the server manages its certificates, and the cert-manager overlay) from a
//! copy with freshly built plugins; every object must parse into its Kubernetes type with
//! nothing left over; the settings an operator relies on are asserted on the typed objects.
//! `server` runs the real binary with the manifests' flags and plugin ConfigMap; `packaging`
//! checks the Makefile and the Dockerfile; `validators` runs the schema and CEL checks of
//! tools from PyPI when they are installed. The settings themselves are in `manifests`.

mod cert_manager;
mod locks;
mod manifests;
mod observability;
mod packaging;
mod replicas;
mod server;
mod validators;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use logistis_e2e::plugins::rust_plugin;
use logistis_e2e::repo_root;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const NAMESPACE: &str = "logistis";
/// The names the server's certificate flags default to, and that the manifests must use.
const SERVICE: &str = "logistis";
const WEBHOOK_CONFIGURATION: &str = "logistis";
const CERT_SECRET: &str = "logistis-tls";
const PLUGINS_CONFIGMAP: &str = "logistis-plugins";
/// The query port's name: `kubectl blame` asks the API server's proxy for `https:SERVICE:query`.
const QUERY_PORT: &str = "query";
/// What the API server accepts in one ConfigMap (data plus decoded binaryData).
const CONFIGMAP_LIMIT: usize = 1 << 20;

/// The two kustomizations a user applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `deploy/`: the server manages its CA, serving certificate and caBundle.
    Base,
    /// `deploy/cert-manager/`: cert-manager issues, cainjector injects.
    CertManager,
    /// `deploy/replicas/`: a Deployment of several replicas on a PostgreSQL-protocol database.
    Replicas,
}

/// Every kustomization a user applies.
pub const VARIANTS: [Variant; 3] = [Variant::Base, Variant::CertManager, Variant::Replicas];

impl Variant {
    pub fn dir(self) -> &'static str {
        match self {
            Variant::Base => "deploy",
            Variant::CertManager => "deploy/cert-manager",
            Variant::Replicas => "deploy/replicas",
        }
    }
}

/// A copy of what `make deploy` reads (`deploy/`, the Makefile, Cargo.toml) with the shipped
/// plugins freshly built into the ConfigMap's directory: tests never write into the sources.
pub fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_sources(&repo_root().join("deploy"), &dir.path().join("deploy"));
    for file in ["Makefile", "Cargo.toml"] {
        std::fs::copy(repo_root().join(file), dir.path().join(file))
            .unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    for (file, package) in configmap_plugins() {
        let to = dir.path().join("deploy/base").join(&file);
        std::fs::copy(rust_plugin(&package), &to)
            .unwrap_or_else(|e| panic!("copy {package} to {}: {e}", to.display()));
    }
    dir
}

/// Copy a tree of sources, leaving out build products (`*.wasm` from `make plugins`).
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_sources(&path, &target);
        } else if path.extension().is_none_or(|e| e != "wasm") {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The `.wasm` files the plugin ConfigMap is generated from (`plugins/NAME.wasm`, relative to
/// `deploy/base`), each with the package it is built from (`logistis-plugin-NAME`).
pub fn configmap_plugins() -> Vec<(String, String)> {
    let path = repo_root().join("deploy/base/kustomization.yaml");
    let kustomization: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let generator = kustomization["configMapGenerator"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"] == PLUGINS_CONFIGMAP)
        .unwrap_or_else(|| panic!("no configMapGenerator {PLUGINS_CONFIGMAP} in {path:?}"));
    generator["files"]
        .as_array()
        .expect("the generator lists files")
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|file| {
            let name = file.strip_prefix("plugins/")?.strip_suffix(".wasm")?;
            Some((file.to_owned(), format!("logistis-plugin-{name}")))
        })
        .collect()
}

/// `kubectl`, or a failure that says what is missing.
pub fn kubectl() -> Command {
    let probe = Command::new("kubectl")
        .args(["version", "--client"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "kubectl is needed to render the manifests (`kubectl kustomize`); install it"
    );
    Command::new("kubectl")
}

/// `kubectl kustomize DIR` as YAML text.
pub fn kustomize(dir: &Path) -> String {
    let output = kubectl().arg("kustomize").arg(dir).output().unwrap();
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kustomize prints UTF-8")
}

/// The objects of a multi-document YAML stream.
pub fn parse_stream(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("kustomize prints valid YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// One kustomization, rendered.
pub struct Render {
    pub variant: Variant,
    pub text: String,
    pub objects: Vec<Value>,
}

/// Every kustomization, rendered once per test process.
pub fn render(variant: Variant) -> &'static Render {
    static RENDERS: OnceLock<[Render; 3]> = OnceLock::new();
    let renders = RENDERS.get_or_init(|| {
        let copy = checkout();
        VARIANTS.map(|variant| {
            let text = kustomize(&copy.path().join(variant.dir()));
            let objects = parse_stream(&text);
            Render {
                variant,
                text,
                objects,
            }
        })
    });
    &renders[match variant {
        Variant::Base => 0,
        Variant::CertManager => 1,
        Variant::Replicas => 2,
    }]
}

impl Render {
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The one object of this kind and name, parsed strictly.
    pub fn get<T: Serialize + DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        self.find(kind, name).unwrap_or_else(|| {
            panic!(
                "{:?}: no {kind} {name}; objects: {:?}",
                self.variant,
                self.names()
            )
        })
    }

    pub fn find<T: Serialize + DeserializeOwned>(&self, kind: &str, name: &str) -> Option<T> {
        let found: Vec<&Value> = self
            .of_kind(kind)
            .into_iter()
            .filter(|o| o["metadata"]["name"] == name)
            .collect();
        assert!(found.len() <= 1, "{kind} {name} is rendered twice");
        found.first().map(|object| strict(object))
    }

    pub fn names(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect()
    }

    pub fn statefulset(&self) -> StatefulSet {
        self.get("StatefulSet", "logistis")
    }

    pub fn webhook_configuration(&self) -> ValidatingWebhookConfiguration {
        self.get("ValidatingWebhookConfiguration", WEBHOOK_CONFIGURATION)
    }
}

/// Parse into `T` and serialise again: the result must be the input. k8s-openapi ignores
/// fields it does not know, so a misspelt or misplaced field shows up as a difference.
pub fn strict<T: Serialize + DeserializeOwned>(object: &Value) -> T {
    let what = format!("{}/{}", object["kind"], object["metadata"]["name"]);
    let mut object = object.clone();
    // kustomize wraps base64 at 76 columns; the API server (Go's base64) skips the line
    // breaks, the base64 crate under k8s-openapi does not.
    if let Some(binary) = object.get_mut("binaryData").and_then(Value::as_object_mut) {
        for value in binary.values_mut() {
            if let Some(text) = value.as_str() {
                *value = Value::from(text.replace('\n', ""));
            }
        }
    }
    let object = &object;
    let typed: T = serde_json::from_value(object.clone()).unwrap_or_else(|e| {
        panic!(
            "{what} does not parse as {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let again = serde_json::to_value(&typed).unwrap();
    if let Some(difference) = first_difference(object, &again, "") {
        panic!(
            "{what} is not exactly a {}: {difference}",
            std::any::type_name::<T>()
        );
    }
    typed
}

/// Where two JSON values differ, as a path and both sides.
fn first_difference(rendered: &Value, typed: &Value, path: &str) -> Option<String> {
    match (rendered, typed) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|key| {
                let path = format!("{path}/{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_difference(x, y, &path),
                    (Some(_), None) => Some(format!("{path} is not a field of the type")),
                    // An embedded object (a volume claim template) is serialised with its
                    // type's apiVersion and kind, which the rendered one may leave out.
                    (None, Some(_))
                        if !path_is_root(&path) && (key == "apiVersion" || key == "kind") =>
                    {
                        None
                    }
                    (None, _) => Some(format!("{path} appeared when serialised again")),
                }
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}/{i}"))),
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: rendered {a}, typed {b}")),
    }
}

fn path_is_root(path: &str) -> bool {
    path.matches('/').count() == 1
}

/// Parse any rendered object into its type, by apiVersion and kind.
fn parse_strictly(object: &Value) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    match (api_version, kind) {
        ("v1", "Namespace") => drop(strict::<Namespace>(object)),
        ("v1", "ServiceAccount") => drop(strict::<ServiceAccount>(object)),
        ("v1", "Secret") => drop(strict::<Secret>(object)),
        ("v1", "ConfigMap") => drop(strict::<ConfigMap>(object)),
        ("v1", "Service") => drop(strict::<Service>(object)),
        ("apps/v1", "StatefulSet") => drop(strict::<StatefulSet>(object)),
        ("apps/v1", "Deployment") => drop(strict::<k8s_openapi::api::apps::v1::Deployment>(object)),
        ("policy/v1", "PodDisruptionBudget") => drop(strict::<
            k8s_openapi::api::policy::v1::PodDisruptionBudget,
        >(object)),
        ("rbac.authorization.k8s.io/v1", "Role") => drop(strict::<Role>(object)),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => drop(strict::<RoleBinding>(object)),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => drop(strict::<ClusterRole>(object)),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            drop(strict::<ClusterRoleBinding>(object))
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            drop(strict::<ValidatingWebhookConfiguration>(object))
        }
        ("apiregistration.k8s.io/v1", "APIService") => drop(strict::<APIService>(object)),
        ("networking.k8s.io/v1", "NetworkPolicy") => drop(strict::<NetworkPolicy>(object)),
        ("cert-manager.io/v1", "Certificate") => drop(strict::<cert_manager::Certificate>(object)),
        ("cert-manager.io/v1", "Issuer") => drop(strict::<cert_manager::Issuer>(object)),
        _ => panic!("{api_version} {kind}: not a kind these manifests should contain"),
    }
}
/// The server container of the StatefulSet.
pub fn container(statefulset: &StatefulSet) -> (PodSpec, Container) {
    let pod = statefulset
        .spec
        .template
        .spec
        .clone()
        .expect("the StatefulSet has a pod template");
    assert_eq!(pod.containers.len(), 1, "one container: the server");
    let container = pod.containers[0].clone();
    (pod, container)
}

/// The container's `serve` flags: `--flag=value` (or a bare `--flag`) → value.
pub fn flags(container: &Container) -> BTreeMap<String, Option<String>> {
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "the container runs `logistis serve`"
    );
    args[1..]
        .iter()
        .map(|arg| {
            let flag = arg
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("{arg:?}: write flags as --flag=value"));
            match flag.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (flag.to_owned(), None),
            }
        })
        .collect()
}

#[test]
fn every_object_parses_into_its_kubernetes_type_with_nothing_left_over() {
    for variant in VARIANTS {
        let render = render(variant);
        assert!(!render.objects.is_empty(), "{variant:?} renders nothing");
        for object in &render.objects {
            parse_strictly(object);
            let namespaced = !matches!(
                object["kind"].as_str(),
                Some(
                    "Namespace"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                        | "ValidatingWebhookConfiguration"
                        | "APIService"
                )
            );
            let namespace = object["metadata"]["namespace"].as_str();
            // Reading the request-header CA takes a RoleBinding beside its ConfigMap, as
            // every aggregated API server's does.
            let reads_authentication_config = object["kind"] == "RoleBinding"
                && object["roleRef"]["name"] == "extension-apiserver-authentication-reader";
            if reads_authentication_config {
                assert_eq!(namespace, Some("kube-system"), "{variant:?}");
            } else if namespaced {
                assert_eq!(
                    namespace,
                    Some(NAMESPACE),
                    "{variant:?}: {} is not in the {NAMESPACE} namespace",
                    object["metadata"]["name"]
                );
            } else {
                assert_eq!(
                    namespace, None,
                    "{variant:?}: cluster-scoped with a namespace"
                );
            }
        }
        let namespace: Namespace = render.get("Namespace", NAMESPACE);
        let labels = namespace.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("restricted"),
            "the namespace enforces the restricted Pod Security Standard"
        );
    }
}

/// The strict comparison itself: a misspelt field is found, not silently dropped.
#[test]
fn a_misspelt_field_is_caught_by_the_strict_parse() {
    let mut object = render(Variant::Base)
        .of_kind("ValidatingWebhookConfiguration")
        .remove(0)
        .clone();
    object["webhooks"][0]["timeoutSecond"] = Value::from(2);
    let result = std::panic::catch_unwind(|| strict::<ValidatingWebhookConfiguration>(&object));
    let message = result
        .err()
        .and_then(|e| e.downcast::<String>().ok())
        .expect("a misspelt field fails the parse");
    assert!(
        message.contains("/webhooks/0/timeoutSecond is not a field"),
        "{message}"
    );
}
