//! The demo's history: a week in the life of two namespaces, told as the AdmissionReviews the
//! API server would send. Objects are kept as they are after each step, so every review's
//! `oldObject` is exactly the object the previous review left behind — the story never
//! contradicts itself, and what blame, diffs and field histories say about it agrees.
//!
//! Request uids and object uids are fixed: posting the story twice records it once (a
//! re-sent review is deduplicated by the server).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One review of the story and a line saying what happens in it.
#[derive(Debug, Clone)]
pub struct Step {
    /// `alice@example.com scales Deployment shop/web to 5 replicas`.
    pub what: String,
    pub review: Value,
}

/// Who acts in the story.
#[derive(Debug, Clone, Copy)]
struct User {
    name: &'static str,
    uid: &'static str,
    groups: &'static [&'static str],
}

const ALICE: User = User {
    name: "alice@example.com",
    uid: "4e6f1a2b",
    groups: &["platform", "system:authenticated"],
};
const BOB: User = User {
    name: "bob@example.com",
    uid: "8c2d9e01",
    groups: &["developers", "system:authenticated"],
};
const CAROL: User = User {
    name: "carol@example.com",
    uid: "b7a3c455",
    groups: &["developers", "system:authenticated"],
};
const CI: User = User {
    name: "system:serviceaccount:ci:deployer",
    uid: "0d1e2f30",
    groups: &[
        "system:serviceaccounts",
        "system:serviceaccounts:ci",
        "system:authenticated",
    ],
};
const CONTROLLER: User = User {
    name: "system:serviceaccount:kube-system:deployment-controller",
    uid: "9a8b7c6d",
    groups: &[
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated",
    ],
};

/// The resource type of a story object.
#[derive(Debug, Clone, Copy)]
struct Type {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    resource: &'static str,
}

const NAMESPACE: Type = Type {
    group: "",
    version: "v1",
    kind: "Namespace",
    resource: "namespaces",
};
const DEPLOYMENT: Type = Type {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    resource: "deployments",
};
const SERVICE: Type = Type {
    group: "",
    version: "v1",
    kind: "Service",
    resource: "services",
};
const CONFIG_MAP: Type = Type {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    resource: "configmaps",
};
const SECRET: Type = Type {
    group: "",
    version: "v1",
    kind: "Secret",
    resource: "secrets",
};
const POD: Type = Type {
    group: "",
    version: "v1",
    kind: "Pod",
    resource: "pods",
};

impl Type {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn gvk(&self) -> Value {
        json!({"group": self.group, "version": self.version, "kind": self.kind})
    }

    fn gvr(&self) -> Value {
        json!({"group": self.group, "version": self.version, "resource": self.resource})
    }
}

/// The cluster as the story has left it: objects by (kind, namespace, name).
#[derive(Default)]
struct World {
    objects: BTreeMap<(String, String, String), Value>,
    resource_version: u64,
    steps: Vec<Step>,
}

/// The whole story, in order.
pub fn story() -> Vec<Step> {
    let mut world = World::default();

    world.create(ALICE, NAMESPACE, "", namespace("shop"), "kubectl-create");
    world.create(
        ALICE,
        NAMESPACE,
        "",
        namespace("payments"),
        "kubectl-create",
    );
    world.create(
        ALICE,
        DEPLOYMENT,
        "shop",
        deployment("web", "shop", "registry.example.com/web:1.4.0", 2),
        "kubectl-client-side-apply",
    );
    world.create(
        ALICE,
        SERVICE,
        "shop",
        service("web", "shop"),
        "kubectl-client-side-apply",
    );
    world.create(
        ALICE,
        CONFIG_MAP,
        "shop",
        config_map(
            "web-config",
            "shop",
            &[("LOG_LEVEL", "info"), ("FEATURE_SEARCH", "on")],
        ),
        "kubectl-client-side-apply",
    );
    world.update(BOB, DEPLOYMENT, "shop", "web", "kubectl-edit", |d| {
        d["spec"]["replicas"] = json!(5);
    });
    // The controller's status write: noise, not recorded.
    world.update_status(CONTROLLER, DEPLOYMENT, "shop", "web", |d| {
        d["status"] = json!({"observedGeneration": 2, "replicas": 5, "readyReplicas": 5});
    });
    world.update(
        CI,
        DEPLOYMENT,
        "shop",
        "web",
        "kubectl-client-side-apply",
        |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!("registry.example.com/web:1.5.0");
        },
    );
    world.update(
        CAROL,
        CONFIG_MAP,
        "shop",
        "web-config",
        "kubectl-edit",
        |c| {
            c["data"]["LOG_LEVEL"] = json!("debug");
        },
    );
    world.create(
        ALICE,
        SECRET,
        "shop",
        secret("db-credentials", "shop", "demo-password-1"),
        "kubectl-create",
    );
    world.update(BOB, SECRET, "shop", "db-credentials", "kubectl-edit", |s| {
        s["data"]["password"] = json!(base64("demo-password-2"));
    });
    world.exec(BOB, "shop", "web-7d9f8-x2x4q", "web", &["/bin/sh"]);
    world.scale(BOB, DEPLOYMENT, "shop", "web", 0);
    world.update(
        ALICE,
        DEPLOYMENT,
        "shop",
        "web",
        "kubectl-client-side-apply",
        |d| {
            d["spec"]["replicas"] = json!(3);
        },
    );
    world.create(
        CI,
        DEPLOYMENT,
        "payments",
        deployment("api", "payments", "registry.example.com/api:2.0.1", 2),
        "kubectl-client-side-apply",
    );
    world.create(
        CAROL,
        CONFIG_MAP,
        "payments",
        config_map("api-flags", "payments", &[("NEW_CHECKOUT", "true")]),
        "kubectl-create",
    );
    world.update(
        CI,
        DEPLOYMENT,
        "payments",
        "api",
        "kubectl-client-side-apply",
        |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!("registry.example.com/api:2.0.2");
        },
    );
    world.delete(CAROL, CONFIG_MAP, "payments", "api-flags");
    world.steps
}

impl World {
    fn next_resource_version(&mut self) -> String {
        self.resource_version += 1;
        (1000 + self.resource_version).to_string()
    }

    fn key(ty: Type, namespace: &str, name: &str) -> (String, String, String) {
        (ty.kind.to_owned(), namespace.to_owned(), name.to_owned())
    }

    fn current(&self, ty: Type, namespace: &str, name: &str) -> Value {
        self.objects
            .get(&Self::key(ty, namespace, name))
            .unwrap_or_else(|| {
                panic!(
                    "the story uses {} {namespace}/{name} before creating it",
                    ty.kind
                )
            })
            .clone()
    }

    fn push(&mut self, what: String, request: Value) {
        let uid = format!("de300000-0000-4000-8000-{:012}", self.steps.len() + 1);
        let mut request = request;
        request["uid"] = json!(uid);
        self.steps.push(Step {
            what,
            review: json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": request,
            }),
        });
    }

    fn create(&mut self, user: User, ty: Type, namespace: &str, mut object: Value, manager: &str) {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        object["metadata"]["uid"] = json!(object_uid(ty, namespace, &name));
        object["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        if ty.kind == DEPLOYMENT.kind {
            object["metadata"]["generation"] = json!(1);
        }
        let request = request(
            user,
            ty,
            namespace,
            &name,
            "CREATE",
            "",
            manager,
            "CreateOptions",
        )
        .with("object", object.clone())
        .with("oldObject", Value::Null);
        self.objects.insert(Self::key(ty, namespace, &name), object);
        self.push(
            format!("{} creates {}", user.name, display(ty, namespace, &name)),
            request,
        );
    }

    fn update(
        &mut self,
        user: User,
        ty: Type,
        namespace: &str,
        name: &str,
        manager: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let old = self.current(ty, namespace, name);
        let mut new = old.clone();
        change(&mut new);
        let what = describe_change(&old, &new, ty.kind == SECRET.kind);
        new["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        if ty.kind == DEPLOYMENT.kind && old.get("spec") != new.get("spec") {
            new["metadata"]["generation"] =
                json!(old["metadata"]["generation"].as_u64().unwrap_or(0) + 1);
        }
        let request = request(
            user,
            ty,
            namespace,
            name,
            "UPDATE",
            "",
            manager,
            "UpdateOptions",
        )
        .with("object", new.clone())
        .with("oldObject", old);
        self.objects.insert(Self::key(ty, namespace, name), new);
        self.push(
            format!(
                "{} changes {}: {what}",
                user.name,
                display(ty, namespace, name)
            ),
            request,
        );
    }

    /// A write to the `status` subresource: only status changes, which is noise.
    fn update_status(
        &mut self,
        user: User,
        ty: Type,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let old = self.current(ty, namespace, name);
        let mut new = old.clone();
        change(&mut new);
        new["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        let request = request(
            user,
            ty,
            namespace,
            name,
            "UPDATE",
            "status",
            "",
            "UpdateOptions",
        )
        .with("object", new.clone())
        .with("oldObject", old);
        self.objects.insert(Self::key(ty, namespace, name), new);
        self.push(
            format!(
                "{} updates the status of {} (noise: not recorded)",
                user.name,
                display(ty, namespace, name)
            ),
            request,
        );
    }

    /// `kubectl scale`: the review carries `autoscaling/v1` Scale objects.
    fn scale(&mut self, user: User, ty: Type, namespace: &str, name: &str, replicas: u64) {
        let old = self.current(ty, namespace, name);
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        new["metadata"]["resourceVersion"] = json!(self.next_resource_version());
        new["metadata"]["generation"] =
            json!(old["metadata"]["generation"].as_u64().unwrap_or(0) + 1);
        let scale_of = |object: &Value| {
            json!({
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": object["metadata"]["uid"],
                    "resourceVersion": object["metadata"]["resourceVersion"],
                },
                "spec": {"replicas": object["spec"]["replicas"]},
                "status": {"replicas": old["spec"]["replicas"], "selector": format!("app={name}")},
            })
        };
        let scale = Type {
            group: "autoscaling",
            version: "v1",
            kind: "Scale",
            resource: ty.resource,
        };
        let mut request = request(
            user,
            ty,
            namespace,
            name,
            "UPDATE",
            "scale",
            "",
            "UpdateOptions",
        )
        .with("object", scale_of(&new))
        .with("oldObject", scale_of(&old));
        request["kind"] = scale.gvk();
        request["requestKind"] = scale.gvk();
        let before = old["spec"]["replicas"].clone();
        self.objects.insert(Self::key(ty, namespace, name), new);
        self.push(
            format!(
                "{} scales {} from {before} to {replicas} replicas (kubectl scale)",
                user.name,
                display(ty, namespace, name)
            ),
            request,
        );
    }

    fn delete(&mut self, user: User, ty: Type, namespace: &str, name: &str) {
        let old = self
            .objects
            .remove(&Self::key(ty, namespace, name))
            .unwrap_or_else(|| panic!("the story deletes {namespace}/{name} before creating it"));
        let mut request = request(user, ty, namespace, name, "DELETE", "", "", "DeleteOptions")
            .with("object", Value::Null)
            .with("oldObject", old);
        request["options"]["propagationPolicy"] = json!("Background");
        self.push(
            format!("{} deletes {}", user.name, display(ty, namespace, name)),
            request,
        );
    }

    /// `kubectl exec`: a CONNECT to `pods/exec` with the PodExecOptions.
    fn exec(&mut self, user: User, namespace: &str, pod: &str, container: &str, command: &[&str]) {
        let options = Type {
            group: "",
            version: "v1",
            kind: "PodExecOptions",
            resource: "pods",
        };
        let mut request = request(user, POD, namespace, pod, "CONNECT", "exec", "", "")
            .with(
                "object",
                json!({
                    "kind": "PodExecOptions",
                    "apiVersion": "v1",
                    "stdin": true,
                    "stdout": true,
                    "tty": true,
                    "container": container,
                    "command": command,
                }),
            )
            .with("oldObject", Value::Null)
            .with("options", Value::Null);
        request["kind"] = options.gvk();
        request["requestKind"] = options.gvk();
        self.push(
            format!(
                "{} runs `{}` in pod {namespace}/{pod} (kubectl exec)",
                user.name,
                command.join(" ")
            ),
            request,
        );
    }
}

/// Sets a field and hands the value back, to build requests in one expression.
trait With {
    fn with(self, key: &str, value: Value) -> Self;
}

impl With for Value {
    fn with(mut self, key: &str, value: Value) -> Value {
        self[key] = value;
        self
    }
}

/// The request without its objects and uid.
#[allow(clippy::too_many_arguments)]
fn request(
    user: User,
    ty: Type,
    namespace: &str,
    name: &str,
    operation: &str,
    subresource: &str,
    manager: &str,
    options_kind: &str,
) -> Value {
    let mut request = json!({
        "kind": ty.gvk(),
        "resource": ty.gvr(),
        "requestKind": ty.gvk(),
        "requestResource": ty.gvr(),
        "name": name,
        "operation": operation,
        "userInfo": {"username": user.name, "uid": user.uid, "groups": user.groups},
        "dryRun": false,
    });
    if !namespace.is_empty() {
        request["namespace"] = json!(namespace);
    }
    if !subresource.is_empty() {
        request["subResource"] = json!(subresource);
        request["requestSubResource"] = json!(subresource);
    }
    if !options_kind.is_empty() {
        let mut options = json!({"apiVersion": "meta.k8s.io/v1", "kind": options_kind});
        if !manager.is_empty() {
            options["fieldManager"] = json!(manager);
        }
        request["options"] = options;
    }
    request
}

fn display(ty: Type, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{} {name}", ty.kind)
    } else {
        format!("{} {namespace}/{name}", ty.kind)
    }
}

/// A stable uid per object, so that a second run of the demo is the same history.
fn object_uid(ty: Type, namespace: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}/{namespace}/{name}", ty.kind).as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The fields a change touched, for the demo's own output: `spec.replicas: 2 → 5`.
/// Values are left out for Secrets.
fn describe_change(old: &Value, new: &Value, hide_values: bool) -> String {
    let mut changes = Vec::new();
    diff_leaves("", old, new, hide_values, &mut changes);
    changes.join(", ")
}

fn diff_leaves(path: &str, old: &Value, new: &Value, hide_values: bool, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in b {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff_leaves(
                    &child,
                    a.get(key).unwrap_or(&Value::Null),
                    value,
                    hide_values,
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                diff_leaves(&format!("{path}[{index}]"), x, y, hide_values, out);
            }
        }
        _ if old != new => {
            if hide_values {
                out.push(format!("{path} changed"));
            } else {
                out.push(format!("{path}: {} → {}", shown(old), shown(new)));
            }
        }
        _ => {}
    }
}

/// A value as the demo prints it: strings without their quotes.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn labels(name: &str) -> Value {
    json!({"app": name})
}

fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": NAMESPACE.api_version(),
        "kind": NAMESPACE.kind,
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
    })
}

fn deployment(name: &str, namespace: &str, image: &str, replicas: u64) -> Value {
    json!({
        "apiVersion": DEPLOYMENT.api_version(),
        "kind": DEPLOYMENT.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels(name)},
            "template": {
                "metadata": {"labels": labels(name)},
                "spec": {
                    "containers": [{
                        "name": name,
                        "image": image,
                        "ports": [{"containerPort": 8080}],
                    }],
                },
            },
        },
    })
}

fn service(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": SERVICE.api_version(),
        "kind": SERVICE.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {
            "selector": labels(name),
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    })
}

fn config_map(name: &str, namespace: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(key, value)| ((*key).to_owned(), json!(value)))
        .collect();
    json!({
        "apiVersion": CONFIG_MAP.api_version(),
        "kind": CONFIG_MAP.kind,
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    })
}

fn secret(name: &str, namespace: &str, password: &str) -> Value {
    json!({
        "apiVersion": SECRET.api_version(),
        "kind": SECRET.kind,
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"username": base64("app"), "password": base64(password)},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_old_object_is_what_the_previous_step_left() {
        let steps = story();
        let mut last: BTreeMap<(String, String, String), Value> = BTreeMap::new();
        for step in &steps {
            let request = &step.review["request"];
            let key = (
                request["resource"]["resource"].as_str().unwrap().to_owned(),
                request["namespace"].as_str().unwrap_or_default().to_owned(),
                request["name"].as_str().unwrap().to_owned(),
            );
            let subresource = request["subResource"].as_str().unwrap_or_default();
            if subresource.is_empty() {
                if let Some(before) = last.get(&key) {
                    assert_eq!(&request["oldObject"], before, "{}", step.what);
                } else {
                    assert_eq!(request["oldObject"], Value::Null, "{}", step.what);
                }
                if request["object"].is_null() {
                    last.remove(&key);
                } else {
                    last.insert(key, request["object"].clone());
                }
            } else if subresource == "scale" {
                let before = &last[&key];
                assert_eq!(
                    request["oldObject"]["spec"]["replicas"],
                    before["spec"]["replicas"]
                );
                let mut after = before.clone();
                after["spec"]["replicas"] = request["object"]["spec"]["replicas"].clone();
                after["metadata"]["resourceVersion"] =
                    request["object"]["metadata"]["resourceVersion"].clone();
                after["metadata"]["generation"] =
                    json!(before["metadata"]["generation"].as_u64().unwrap() + 1);
                last.insert(key, after);
            } else if subresource == "status" {
                last.insert(key, request["object"].clone());
            }
        }
    }

    #[test]
    fn uids_are_unique_and_stable() {
        let first: Vec<Value> = story().into_iter().map(|s| s.review).collect();
        let second: Vec<Value> = story().into_iter().map(|s| s.review).collect();
        assert_eq!(first, second);
        let mut uids: Vec<&str> = first
            .iter()
            .map(|r| r["request"]["uid"].as_str().unwrap())
            .collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), first.len());
    }

    #[test]
    fn several_people_act_and_no_secret_value_is_described() {
        let steps = story();
        let users: std::collections::BTreeSet<&str> = steps
            .iter()
            .map(|s| {
                s.review["request"]["userInfo"]["username"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert!(users.len() >= 4, "{users:?}");
        assert!(
            steps
                .iter()
                .all(|s| !s.what.contains(&base64("demo-password-2")))
        );
        let rotation = steps
            .iter()
            .find(|s| s.what.contains("Secret shop/db-credentials:"))
            .unwrap();
        assert!(
            rotation.what.ends_with("data.password changed"),
            "{}",
            rotation.what
        );
    }
}
