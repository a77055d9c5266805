//! Noise: the fields that change without anyone changing the object — `managedFields`,
//! `resourceVersion`, `generation` and `status`. They are left out of every diff, and an
//! UPDATE that changes nothing else is not a change.

use serde_json::Value;

/// `metadata` fields that are bookkeeping, not intent.
const NOISY_METADATA: [&str; 3] = ["managedFields", "resourceVersion", "generation"];

/// Remove `metadata.managedFields` only: it is large, always server-written, and never needed
/// to rebuild a version. Applied to every stored object.
pub fn drop_managed_fields(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
}

/// A copy of `object` without any noisy field: what diffs and versions are computed on.
pub fn strip(object: &Value) -> Value {
    let mut stripped = object.clone();
    strip_in_place(&mut stripped);
    stripped
}

/// Whether an RFC 6902 operation path touches a noisy field (`/status…`,
/// `/metadata/resourceVersion`, …). Dropping these from a diff of the whole objects gives the
/// diff of their noise-free views, without copying either object.
pub fn is_noise_path(path: &str) -> bool {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    under("/status")
        || NOISY_METADATA
            .iter()
            .any(|field| under(&format!("/metadata/{field}")))
}

/// Remove every noisy field from `object`.
pub fn strip_in_place(object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    map.remove("status");
    if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in NOISY_METADATA {
            metadata.remove(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strips_bookkeeping_but_keeps_intent() {
        let object = json!({
            "metadata": {"name": "a", "resourceVersion": "7", "generation": 3,
                         "managedFields": [{"manager": "kubectl"}], "labels": {"x": "y"}},
            "spec": {"replicas": 2},
            "status": {"readyReplicas": 2}
        });
        assert_eq!(
            strip(&object),
            json!({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"replicas": 2}})
        );
    }

    #[test]
    fn drop_managed_fields_keeps_the_rest() {
        let mut object =
            json!({"metadata": {"name": "a", "managedFields": [], "resourceVersion": "1"}});
        drop_managed_fields(&mut object);
        assert_eq!(
            object,
            json!({"metadata": {"name": "a", "resourceVersion": "1"}})
        );
    }

    #[test]
    fn noise_paths_are_exact_prefixes() {
        for path in [
            "/status",
            "/status/replicas",
            "/metadata/resourceVersion",
            "/metadata/generation",
        ] {
            assert!(is_noise_path(path), "{path}");
        }
        for path in [
            "/statusCode",
            "/metadata/resourceVersions",
            "/spec/status",
            "/metadata/name",
            "",
        ] {
            assert!(!is_noise_path(path), "{path}");
        }
    }

    #[test]
    fn filtering_a_raw_diff_equals_diffing_stripped_objects() {
        let before = json!({"metadata": {"name": "a", "resourceVersion": "1", "generation": 1},
                            "spec": {"replicas": 1, "template": {"x": [1, 2]}}, "status": {"ready": 1}});
        let after = json!({"metadata": {"name": "a", "resourceVersion": "2", "generation": 2, "labels": {"k": "v"}},
                           "spec": {"replicas": 3, "template": {"x": [1]}}});
        let filtered: Vec<_> = json_patch::diff(&before, &after)
            .0
            .into_iter()
            .filter(|op| !is_noise_path(op.path().as_str()))
            .collect();
        assert_eq!(
            filtered,
            json_patch::diff(&strip(&before), &strip(&after)).0
        );
    }

    #[test]
    fn non_objects_are_left_alone() {
        assert_eq!(strip(&json!(null)), json!(null));
        assert_eq!(strip(&json!([1])), json!([1]));
    }
}
