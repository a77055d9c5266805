//! Exactness: a sequence of real-looking changes goes through the real admission layer (the
//! events are what the store would hold), and every rebuilt version must equal the object
//! that was posted, noise stripped; every diff between two versions must turn one into the
//! other. Runs on a hand-written Deployment always, and on the shared admission fixtures
//! when they are present (`../shared/fixtures/admission` from the repository root).

use std::path::PathBuf;

use chrono::DateTime;
use logistis_api::{Event, EventId, ObjectRef};
use serde_json::{Value, json};

use super::path::FieldPath;
use super::versions::Timeline;
use super::{blame, diff, field};
use crate::admission::{self, AdmissionRequest, KindTable, Outcome, Policy, Redactor, noise};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/admission")
}

/// Report a part that did not run: on stderr, and in the skip log `scripts/test.sh` lists
/// after the test runner's summary (`LOGISTIS_SKIPPED_LOG`, as in the e2e tests' `skipped`).
fn skipped(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("LOGISTIS_SKIPPED_LOG") {
        use std::io::Write;
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(log, "{test}: {reason}");
        }
    }
}

/// A fixture file's request (the files hold either a whole review or the bare request).
fn fixture_request(name: &str) -> Option<Value> {
    let path = fixtures_dir().join(name);
    let Ok(text) = std::fs::read_to_string(&path) else {
        skipped(
            &format!("history::tests (fixture {name})"),
            &format!("{} is absent (the real-payload corpus)", path.display()),
        );
        return None;
    };
    let value: Value = serde_json::from_str(&text).expect("fixture is JSON");
    Some(value.get("request").cloned().unwrap_or(value))
}

/// Feeds requests through the admission layer, as the webhook does, collecting the events
/// it would store and the objects that were posted.
struct Cluster {
    redactor: Redactor,
    kinds: KindTable,
    events: Vec<Event>,
    /// The posted object after each recorded event.
    posted: Vec<Value>,
    current: Value,
    next_id: u64,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            redactor: Redactor::new([7; 32]),
            kinds: KindTable::default(),
            events: Vec::new(),
            posted: Vec::new(),
            current: Value::Null,
            next_id: 1_750_000_000_000_000,
        }
    }

    fn admit(&mut self, request: Value) -> bool {
        let request: AdmissionRequest = serde_json::from_value(request).expect("request shape");
        let time = DateTime::from_timestamp_micros(self.next_id as i64).expect("time");
        match admission::build_event(
            request,
            time,
            Policy::default(),
            &self.redactor,
            &self.kinds,
        ) {
            Outcome::Record(new) => {
                let mut event = new.event;
                event.id = EventId(self.next_id);
                self.next_id += 1;
                self.events.push(event);
                true
            }
            Outcome::SkippedDryRun | Outcome::SkippedNoise => false,
        }
    }

    fn request(
        &self,
        operation: &str,
        user: &str,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Value {
        let name = self.current["metadata"]["name"].clone();
        let namespace = self.current["metadata"]["namespace"].clone();
        json!({
            "uid": format!("req-{}", self.next_id),
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": name, "namespace": namespace, "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object, "oldObject": old,
        })
    }

    fn create(&mut self, object: Value, user: &str) {
        self.current = object.clone();
        let request = self.request("CREATE", user, Some(&object), None);
        assert!(self.admit(request));
        self.posted.push(object);
    }

    /// An UPDATE through the main resource: `change` edits the spec the user posts; the
    /// API server's bookkeeping (resourceVersion, generation, status) moves too, as it does.
    fn update(&mut self, user: &str, change: impl FnOnce(&mut Value)) {
        let old = self.current.clone();
        let mut new = old.clone();
        change(&mut new);
        bump_bookkeeping(&mut new);
        let request = self.request("UPDATE", user, Some(&new), Some(&old));
        self.current = new.clone();
        assert!(self.admit(request), "a real change is recorded");
        self.posted.push(new);
    }

    /// A status-only write: noise, which admission does not record.
    fn status_update(&mut self) {
        let old = self.current.clone();
        let mut new = old.clone();
        bump_bookkeeping(&mut new);
        let mut request = self.request(
            "UPDATE",
            "system:serviceaccount:kube-system:deployment-controller",
            Some(&new),
            Some(&old),
        );
        request["subResource"] = json!("status");
        self.current = new;
        assert!(!self.admit(request), "noise is not recorded");
    }

    /// `kubectl scale`: a `deployments/scale` UPDATE carrying autoscaling/v1 Scales.
    fn scale(&mut self, user: &str, replicas: u64) {
        let scale = |object: &Value, replicas: &Value| {
            json!({
                "apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
                             "resourceVersion": object["metadata"]["resourceVersion"]},
                "spec": {"replicas": replicas},
                "status": {"replicas": object["status"]["replicas"]}
            })
        };
        let old_scale = scale(&self.current, &self.current["spec"]["replicas"]);
        let mut new = self.current.clone();
        new["spec"]["replicas"] = json!(replicas);
        bump_bookkeeping(&mut new);
        let mut request = self.request(
            "UPDATE",
            user,
            Some(&scale(&new, &json!(replicas))),
            Some(&old_scale),
        );
        request["subResource"] = json!("scale");
        request["kind"] = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
        self.current = new.clone();
        assert!(self.admit(request));
        self.posted.push(new);
    }

    fn delete(&mut self, user: &str) {
        let old = self.current.clone();
        let request = self.request("DELETE", user, None, Some(&old));
        assert!(self.admit(request));
        self.posted.push(old);
    }
}

fn bump_bookkeeping(object: &mut Value) {
    let metadata = &mut object["metadata"];
    let version: u64 = metadata["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    metadata["resourceVersion"] = json!((version + 1).to_string());
    metadata["generation"] = json!(metadata["generation"].as_u64().unwrap_or(1) + 1);
    object["status"]["observedGeneration"] = metadata["generation"].clone();
}

fn containers(object: &mut Value) -> &mut Vec<Value> {
    object["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("a Deployment has containers")
}

/// The changes the issue names, on any Deployment with at least one container.
fn replay(base: Value) -> Cluster {
    let mut cluster = Cluster::new();
    cluster.create(base, "alice");
    cluster.status_update();
    cluster.scale(
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        3,
    );
    cluster.update("bob", |d| containers(d)[0]["image"] = json!("nginx:1.27.3"));
    cluster.update("carol", |d| {
        d["metadata"]["labels"]["tier"] = json!("frontend");
        d["spec"]["template"]["metadata"]["labels"]["release"] = json!("v2");
    });
    cluster.update("dave", |d| {
        d["metadata"]["annotations"]
            .as_object_mut()
            .expect("annotations")
            .retain(|key, _| key.starts_with("kubectl.kubernetes.io/"));
    });
    cluster.update("erin", |d| {
        containers(d).push(json!({
            "name": "log-shipper", "image": "fluent/fluent-bit:3.1",
            "args": ["--verbose", "--flush=5"], "resources": {}
        }));
    });
    cluster.scale("frank", 0);
    // List elements removed: the first container (every later index shifts) and one arg.
    cluster.update("grace", |d| {
        containers(d).remove(0);
        containers(d)[0]["args"]
            .as_array_mut()
            .expect("args")
            .remove(0);
    });
    cluster.delete("heidi");
    let mut again = cluster.posted[0].clone();
    again["metadata"]["uid"] = json!("recreated-uid");
    cluster.create(again, "ivan");
    cluster
}

fn hand_written_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop", "uid": "0b6c1a2e-1f4e-4a59-9d7e-0c4a7f3b5d11",
            "resourceVersion": "4711", "generation": 1, "creationTimestamp": "2026-01-02T10:00:00Z",
            "labels": {"app": "web"},
            "annotations": {"team": "checkout", "kubectl.kubernetes.io/last-applied-configuration": "{}\n"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx:1.27",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "MODE", "value": "prod"}]
                }]}
            }
        },
        "status": {"replicas": 2, "readyReplicas": 2}
    })
}

/// The fixture Deployment (the object of a real UPDATE review), made into a fresh object.
fn fixture_deployment() -> Option<Value> {
    let request = fixture_request("request-only-update-deployment-with-oldobject.json")?;
    let mut object = request["object"].clone();
    object["metadata"].as_object_mut()?.remove("managedFields");
    object["metadata"]["uid"] = json!("5f0e6b1c-fixture");
    object["metadata"]["labels"] = json!({"app": "nginx"});
    Some(object)
}

fn check_exact(cluster: &Cluster) {
    let timeline = Timeline::build(ObjectRef::default(), cluster.events.clone(), 0);
    assert_eq!(timeline.versions.len(), cluster.posted.len());
    for (version, posted) in timeline.versions.iter().zip(&cluster.posted) {
        assert_eq!(
            version.object,
            noise::strip(posted),
            "version {} ({}) is the posted object",
            version.summary.version,
            version.summary.summary
        );
    }
    for a in &timeline.versions {
        for b in &timeline.versions {
            let answer = diff::diff(
                &timeline,
                Some(a.summary.version),
                Some(b.summary.version),
                None,
            )
            .unwrap();
            let patch: json_patch::Patch = serde_json::from_value(answer.patch).unwrap();
            let mut object = a.object.clone();
            json_patch::patch(&mut object, &patch).unwrap();
            assert_eq!(
                object, b.object,
                "diff v{} → v{}",
                a.summary.version, b.summary.version
            );
        }
    }
}

#[test]
fn versions_are_the_posted_objects_and_diffs_are_exact() {
    let cluster = replay(hand_written_deployment());
    check_exact(&cluster);

    let timeline = Timeline::build(ObjectRef::default(), cluster.events.clone(), 0);
    let list = timeline.list();
    let summaries: Vec<(&str, &str)> = list
        .items
        .iter()
        .map(|v| (v.user.username.as_str(), v.summary.as_str()))
        .collect();
    assert_eq!(summaries[0], ("alice", "created"));
    assert_eq!(summaries[1].1, "spec.replicas");
    assert_eq!(
        summaries[2],
        ("bob", "spec.template.spec.containers[0].image")
    );
    assert_eq!(summaries[4], ("dave", "metadata.annotations.team"));
    assert_eq!(summaries[8], ("heidi", "deleted"));
    assert_eq!(summaries[9], ("ivan", "created"));
    assert_eq!(list.generations.len(), 2);
    assert_eq!(
        list.generations[1].object_uid.as_deref(),
        Some("recreated-uid")
    );

    // Who set replicas to 0, and who introduced the image?
    let replicas = FieldPath::parse("spec.replicas").unwrap();
    assert_eq!(
        field::bisect(&timeline, &replicas, "0")
            .unwrap()
            .version
            .user
            .username,
        "frank"
    );
    let image = FieldPath::parse("spec.template.spec.containers[name=web].image").unwrap();
    let changes = field::history(&timeline, &image);
    let who: Vec<&str> = changes
        .items
        .iter()
        .map(|c| c.user.username.as_str())
        .collect();
    assert_eq!(who, ["alice", "bob", "grace", "ivan"]);
}

#[test]
fn blame_of_the_first_generation_follows_moved_list_elements() {
    let mut cluster = replay(hand_written_deployment());
    // Stop before the DELETE: blame the live object at the end of generation 1.
    cluster.events.truncate(cluster.events.len() - 2);
    let timeline = Timeline::build(ObjectRef::default(), cluster.events, 0);
    let answer = blame::blame(&timeline).unwrap();
    let text: String = answer
        .lines
        .iter()
        .map(|l| format!("{}\n", l.line))
        .collect();
    assert_eq!(
        serde_yaml::from_str::<Value>(&text).unwrap(),
        timeline.versions.last().unwrap().object
    );
    let owner = |needle: &str| {
        answer
            .lines
            .iter()
            .find(|l| l.line.trim() == needle)
            .map(|l| l.user.username.as_str())
            .unwrap_or_else(|| panic!("no line {needle:?} in\n{text}"))
    };
    assert_eq!(owner("replicas: 0"), "frank");
    assert_eq!(owner("tier: frontend"), "carol");
    assert_eq!(owner("release: v2"), "carol");
    assert_eq!(owner("app: web"), "alice");
    // The sidecar moved from index 1 to 0 when grace removed `web`: its lines stay erin's.
    assert_eq!(owner("image: fluent/fluent-bit:3.1"), "erin");
    assert_eq!(owner("name: log-shipper"), "erin");
    assert_eq!(owner("- --flush=5"), "erin");
}

#[test]
fn the_fixture_deployment_replays_exactly() {
    let Some(base) = fixture_deployment() else {
        return;
    };
    check_exact(&replay(base));
}

#[test]
fn blame_text_is_serde_yaml_for_every_fixture_object() {
    let Ok(entries) = std::fs::read_dir(fixtures_dir()) else {
        skipped(
            "history::tests::blame_text_is_serde_yaml_for_every_fixture_object",
            &format!(
                "{} is absent (the real-payload corpus)",
                fixtures_dir().display()
            ),
        );
        return;
    };
    let mut checked = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(request) = fixture_request(&name) else {
            continue;
        };
        for object in [&request["object"], &request["oldObject"]] {
            if !object.is_object() {
                continue;
            }
            let mut event = super::testing::event(
                logistis_api::Operation::Create,
                Some(object.clone()),
                None,
                "u",
            );
            event.resource.kind = object["kind"].as_str().unwrap_or("").to_owned();
            let timeline = Timeline::build(ObjectRef::default(), vec![event], 0);
            let Ok(answer) = blame::blame(&timeline) else {
                continue;
            };
            let text: String = answer
                .lines
                .iter()
                .map(|l| format!("{}\n", l.line))
                .collect();
            assert_eq!(
                text,
                serde_yaml::to_string(&timeline.versions[0].object).unwrap(),
                "{name}"
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} fixture objects were checked");
}
