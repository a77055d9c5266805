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
    fn non_objects_are_left_alone() {
        assert_eq!(strip(&json!(null)), json!(null));
        assert_eq!(strip(&json!([1])), json!([1]));
    }
}
