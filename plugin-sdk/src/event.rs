//! The common questions a plugin asks about an [`Event`], as methods: who (user glob,
//! group glob), where (namespace list), what (operation, kind, group, subresource) and
//! which fields changed (from the RFC 6902 patch).

use serde_json::Value;

use crate::glob;
use crate::{Event, Operation};

impl Operation {
    /// The API server's spelling: `CREATE`, `UPDATE`, `DELETE`, `CONNECT` or the verbatim
    /// other value.
    pub fn as_str(&self) -> &str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
            Operation::Other(other) => other,
        }
    }
}

impl Event {
    /// The user name matches one of the globs (`system:serviceaccount:*`).
    pub fn user_matches<S: AsRef<str>>(&self, patterns: &[S]) -> bool {
        glob::matches_any(patterns, &self.user.username)
    }

    /// One of the user's groups matches one of the globs.
    pub fn group_matches<S: AsRef<str>>(&self, patterns: &[S]) -> bool {
        self.user
            .groups
            .iter()
            .any(|group| glob::matches_any(patterns, group))
    }

    /// One of the `userInfo.extra` values under `key` matches one of the globs.
    pub fn extra_matches<S: AsRef<str>>(&self, key: &str, patterns: &[S]) -> bool {
        self.user
            .extra
            .iter()
            .filter(|(name, _)| name == key)
            .flat_map(|(_, values)| values)
            .any(|value| glob::matches_any(patterns, value))
    }

    /// The namespace matches one of the globs. Cluster-scoped objects have the empty
    /// namespace, which only `""` or `*` match.
    pub fn namespace_in<S: AsRef<str>>(&self, patterns: &[S]) -> bool {
        glob::matches_any(patterns, &self.resource.namespace)
    }

    /// The operation is `name` (case-insensitive: `update`, `UPDATE`).
    pub fn operation_is(&self, name: &str) -> bool {
        self.operation.as_str().eq_ignore_ascii_case(name)
    }

    /// The kind is `kind`: a bare kind (`Deployment`, any group), a qualified one
    /// (`Deployment.apps`; the core group is `Pod.` or just `Pod`), the plural resource
    /// (`deployments`) or a glob over the bare kind (`*Binding`). Case-insensitive.
    pub fn kind_is(&self, kind: &str) -> bool {
        let resource = &self.resource;
        let (bare, group) = match kind.split_once('.') {
            Some((bare, group)) => (bare, Some(group)),
            None => (kind, None),
        };
        if group.is_some_and(|group| !group.eq_ignore_ascii_case(&resource.group)) {
            return false;
        }
        let lower = bare.to_ascii_lowercase();
        glob::matches(&lower, &resource.kind.to_ascii_lowercase())
            || (!resource.resource.is_empty() && lower == resource.resource.to_ascii_lowercase())
    }

    /// The JSON pointers the patch touches (`/spec/replicas`); a CREATE is `""` (all).
    pub fn changed_paths(&self) -> Vec<String> {
        let Ok(Value::Array(operations)) = serde_json::from_str::<Value>(&self.patch) else {
            return Vec::new();
        };
        operations
            .iter()
            .filter_map(|operation| operation.get("path").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// Whether the field at the JSON pointer `path` (`/spec/template`) changed: a patch
    /// operation at that path, inside it, or on one of its ancestors (which replaces it).
    pub fn path_changed(&self, path: &str) -> bool {
        self.changed_paths()
            .iter()
            .any(|changed| pointer_within(changed, path) || pointer_within(path, changed))
    }

    /// The object after the change, parsed (none for DELETE and CONNECT).
    pub fn object_value(&self) -> Option<Value> {
        self.object
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
    }

    /// The object before the change, parsed (none for CREATE).
    pub fn old_object_value(&self) -> Option<Value> {
        self.old_object
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
    }
}

impl Event {
    /// The event as JSON, in the shape of the Logistis query API (`GET /api/v1/events/{id}`):
    /// camelCase fields, the patch and the objects as JSON values. `with_objects = false`
    /// leaves `object`, `oldObject` out (a list entry), which keeps payloads small.
    pub fn to_json(&self, with_objects: bool) -> Value {
        let parse = |text: &Option<String>| {
            text.as_deref()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .unwrap_or(Value::Null)
        };
        let extra: serde_json::Map<String, Value> = self
            .user
            .extra
            .iter()
            .map(|(key, values)| (key.clone(), Value::from(values.clone())))
            .collect();
        let r = &self.resource;
        let mut json = serde_json::json!({
            "id": self.id,
            "uid": self.uid,
            "time": self.time,
            "operation": self.operation.as_str(),
            "user": {
                "username": self.user.username,
                "uid": self.user.uid,
                "groups": self.user.groups,
                "extra": extra,
            },
            "resource": {
                "group": r.group, "version": r.version, "kind": r.kind, "resource": r.resource,
                "subresource": r.subresource, "namespace": r.namespace, "name": r.name,
            },
            "objectUid": self.object_uid,
            "fieldManager": self.field_manager,
            "dryRun": self.dry_run,
            "patch": serde_json::from_str::<Value>(&self.patch).unwrap_or(Value::Null),
        });
        if self.options.is_some() {
            json["options"] = parse(&self.options);
        }
        if with_objects {
            json["object"] = parse(&self.object);
            json["oldObject"] = parse(&self.old_object);
        }
        json
    }
}

/// `inner` is `outer` or below it, comparing whole pointer segments (`/spec/rep` is not
/// within `/spec/replicas`).
fn pointer_within(inner: &str, outer: &str) -> bool {
    inner == outer
        || outer.is_empty()
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use crate::testing::event as sample;

    #[test]
    fn who_where_what() {
        let event = sample();
        assert!(event.user_matches(&["*@example.com"]));
        assert!(!event.user_matches(&["system:*"]));
        assert!(event.group_matches(&["devs"]));
        assert!(event.extra_matches("scopes", &["open*"]));
        assert!(!event.extra_matches("other", &["*"]));
        assert!(event.namespace_in(&["kube-system", "team-*"]));
        assert!(!event.namespace_in(&["kube-*"]));
        assert!(event.operation_is("update"));
        assert!(!event.operation_is("CREATE"));
        for kind in [
            "Deployment",
            "deployment",
            "Deployment.apps",
            "deployments",
            "Deploy*",
        ] {
            assert!(event.kind_is(kind), "{kind}");
        }
        for kind in ["Pod", "Deployment.extensions", "Deployment."] {
            assert!(!event.kind_is(kind), "{kind}");
        }
    }

    #[test]
    fn paths() {
        let mut event = sample();
        assert_eq!(event.changed_paths(), ["/spec/replicas"]);
        assert!(event.path_changed("/spec/replicas"));
        assert!(event.path_changed("/spec"));
        assert!(!event.path_changed("/spec/rep"));
        assert!(!event.path_changed("/metadata/labels"));
        event.patch = r#"[{"op":"add","path":"","value":{}}]"#.into();
        assert!(event.path_changed("/metadata/labels"));
        assert_eq!(event.object_value().unwrap()["spec"]["replicas"], 3);
    }

    #[test]
    fn json_shape() {
        let event = sample();
        let json = event.to_json(false);
        assert_eq!(json["operation"], "UPDATE");
        assert_eq!(json["resource"]["kind"], "Deployment");
        assert_eq!(json["user"]["extra"]["scopes"][0], "openid");
        assert_eq!(json["patch"][0]["path"], "/spec/replicas");
        assert!(json.get("object").is_none());
        assert_eq!(event.to_json(true)["oldObject"]["spec"]["replicas"], 2);
    }
}
