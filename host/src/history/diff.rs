//! Diff between any two versions: an RFC 6902 patch (what a program applies) and a unified
//! diff of the two versions rendered as YAML (what a person reads), optionally restricted to
//! one field.

use logistis_api::Diff;
use serde_json::{Value, json};
use similar::TextDiff;

use super::Error;
use super::path::FieldPath;
use super::versions::{Timeline, Version};

/// Context lines around each hunk, as `diff -u` and `git diff` show by default.
const CONTEXT_LINES: usize = 3;

/// `GET …/diff`: from version `from` to version `to`. `to` defaults to the newest version,
/// `from` to the version listed before `to` (or `to` itself when it is the oldest).
pub fn diff(
    timeline: &Timeline,
    from: Option<u64>,
    to: Option<u64>,
    path: Option<&FieldPath>,
) -> Result<Diff, Error> {
    let to_index = match to {
        Some(number) => timeline.position(number)?,
        None => timeline
            .versions
            .len()
            .checked_sub(1)
            .ok_or(Error::NoVersions)?,
    };
    let from_index = match from {
        Some(number) => timeline.position(number)?,
        None => to_index.saturating_sub(1),
    };
    let (a, b) = (&timeline.versions[from_index], &timeline.versions[to_index]);
    let path = path.filter(|p| !p.is_root());
    let (patch, a_text, b_text) = match path {
        None => (
            serde_json::to_value(json_patch::diff(&a.object, &b.object)).map_err(Error::Json)?,
            yaml(&a.object, a)?,
            yaml(&b.object, b)?,
        ),
        Some(path) => {
            let (a_field, b_field) = (path.resolve(&a.object), path.resolve(&b.object));
            let a_text = a_field
                .as_ref()
                .map_or(Ok(String::new()), |(_, v)| yaml(v, a))?;
            let b_text = b_field
                .as_ref()
                .map_or(Ok(String::new()), |(_, v)| yaml(v, b))?;
            (field_patch(a_field, b_field)?, a_text, b_text)
        }
    };
    let path_label = path.map(|p| format!(" {p}")).unwrap_or_default();
    let unified = TextDiff::from_lines(&a_text, &b_text)
        .unified_diff()
        .context_radius(CONTEXT_LINES)
        .header(
            &format!("v{}{path_label}", a.summary.version),
            &format!("v{}{path_label}", b.summary.version),
        )
        .to_string();
    Ok(Diff {
        object: timeline.object.clone(),
        from: a.summary.clone(),
        to: b.summary.clone(),
        path: path.map(ToString::to_string),
        patch,
        unified,
    })
}

/// The patch for one field, with absolute pointers. When the field sits at the same place in
/// both versions this is the field's own diff; when a `[name=x]` selector found it at
/// different indices, the element is removed from its old place and added at its new one.
fn field_patch(a: Option<(String, &Value)>, b: Option<(String, &Value)>) -> Result<Value, Error> {
    let operations = match (a, b) {
        (Some((a_pointer, a_value)), Some((b_pointer, b_value))) if a_pointer == b_pointer => {
            let mut operations =
                serde_json::to_value(json_patch::diff(a_value, b_value)).map_err(Error::Json)?;
            for operation in operations.as_array_mut().into_iter().flatten() {
                if let Some(Value::String(pointer)) = operation.get_mut("path") {
                    pointer.insert_str(0, &a_pointer);
                }
            }
            return Ok(operations);
        }
        (Some((a_pointer, _)), Some((b_pointer, b_value))) => vec![
            json!({"op": "remove", "path": a_pointer}),
            json!({"op": "add", "path": b_pointer, "value": b_value}),
        ],
        (Some((a_pointer, _)), None) => vec![json!({"op": "remove", "path": a_pointer})],
        (None, Some((b_pointer, b_value))) => {
            vec![json!({"op": "add", "path": b_pointer, "value": b_value})]
        }
        (None, None) => Vec::new(),
    };
    Ok(Value::Array(operations))
}

/// A value as YAML text, as the diff shows it.
pub(super) fn yaml(value: &Value, version: &Version) -> Result<String, Error> {
    serde_yaml::to_string(value).map_err(|source| Error::Yaml {
        version: version.summary.version,
        source,
    })
}

#[cfg(test)]
mod tests {
    use logistis_api::{ObjectRef, Operation};

    use super::*;
    use crate::history::testing::event;

    fn pod(image: &str, extra_label: Option<&str>) -> Value {
        let mut labels = json!({"app": "web"});
        if let Some(label) = extra_label {
            labels[label] = json!("yes");
        }
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u1", "labels": labels},
            "spec": {"containers": [{"name": "sidecar", "image": "envoy"}, {"name": "web", "image": image}]}
        })
    }

    fn timeline() -> Timeline {
        let events = vec![
            event(Operation::Create, Some(pod("nginx:1", None)), None, "alice"),
            event(Operation::Update, Some(pod("nginx:2", None)), None, "bob"),
            event(
                Operation::Update,
                Some(pod("nginx:2", Some("tier"))),
                None,
                "carol",
            ),
        ]
        .into_iter()
        .map(|mut event| {
            event.resource.kind = "Pod".into();
            event
        })
        .collect();
        Timeline::build(ObjectRef::default(), events, 0)
    }

    #[test]
    fn defaults_to_the_last_change() {
        let answer = diff(&timeline(), None, None, None).unwrap();
        assert_eq!((answer.from.version, answer.to.version), (2, 3));
        assert_eq!(
            answer.patch,
            json!([{"op": "add", "path": "/metadata/labels/tier", "value": "yes"}])
        );
        assert!(
            answer.unified.starts_with("--- v2\n+++ v3\n"),
            "{}",
            answer.unified
        );
        assert!(
            answer.unified.contains("\n+    tier: yes\n"),
            "{}",
            answer.unified
        );
    }

    #[test]
    fn any_two_versions_and_the_patch_applies() {
        let timeline = timeline();
        let answer = diff(&timeline, Some(3), Some(1), None).unwrap();
        let mut object = timeline.versions[2].object.clone();
        let patch: json_patch::Patch = serde_json::from_value(answer.patch).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
        assert_eq!(object, timeline.versions[0].object);
    }

    #[test]
    fn restricted_to_one_field() {
        let path = FieldPath::parse("spec.containers[name=web].image").unwrap();
        let answer = diff(&timeline(), Some(1), Some(3), Some(&path)).unwrap();
        assert_eq!(
            answer.patch,
            json!([{"op": "replace", "path": "/spec/containers/1/image", "value": "nginx:2"}])
        );
        assert_eq!(
            answer.path.as_deref(),
            Some("spec.containers[name=web].image")
        );
        assert_eq!(
            answer.unified,
            "--- v1 spec.containers[name=web].image\n+++ v3 spec.containers[name=web].image\n@@ -1 +1 @@\n-nginx:1\n+nginx:2\n"
        );
        let label = FieldPath::parse("/metadata/labels/tier").unwrap();
        let added = diff(&timeline(), Some(1), Some(3), Some(&label)).unwrap();
        assert_eq!(
            added.patch,
            json!([{"op": "add", "path": "/metadata/labels/tier", "value": "yes"}])
        );
    }

    #[test]
    fn identical_versions_have_an_empty_diff() {
        let answer = diff(&timeline(), Some(2), Some(2), None).unwrap();
        assert_eq!(answer.patch, json!([]));
        assert_eq!(answer.unified, "");
    }

    #[test]
    fn unknown_versions_are_errors() {
        assert!(matches!(
            diff(&timeline(), Some(9), None, None),
            Err(Error::NoSuchVersion { version: 9, .. })
        ));
    }
}
