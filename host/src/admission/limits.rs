//! What is stored must be readable back by every client: limits on the identifying fields
//! and on nesting depth, checked before an event reaches the store.
//!
//! - Names, namespaces, kinds, groups, resources and subresources: at most
//!   [`MAX_NAME_BYTES`]. Kubernetes names are at most 253 bytes and the API server validates
//!   them only after admission, so a longer one is an object that will never exist; store
//!   keys are built from these fields (the engine's key limit is 64 KiB).
//! - The username, each group, each `extra` key and value: at most [`MAX_USER_BYTES`].
//! - Objects, old objects, options and the patch: at most [`MAX_DEPTH`] levels of nesting.
//!   An answer wraps the object in a few more levels (`items[i].object`), and
//!   serde_json — `kubectl blame`, most Rust clients — refuses documents deeper than 128.
//!
//! An event past a limit is **not stored**: the webhook still answers `allowed: true`,
//! counts it (`outcome="over_limits"`) and logs the uid and the reason once. Truncating
//! would store a record of something other than what happened.

use logistis_api::Event;
use serde_json::Value;

pub const MAX_NAME_BYTES: usize = 1024;
pub const MAX_USER_BYTES: usize = 4096;
pub const MAX_DEPTH: usize = 100;

/// Which limit an event is past.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    #[error("{field} is {bytes} bytes (at most {limit})")]
    Length {
        field: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error("{field} is nested deeper than {MAX_DEPTH} levels")]
    Depth { field: &'static str },
}

/// Check `event` against every limit; the first one it is past.
pub fn check(event: &Event) -> Result<(), Exceeded> {
    let r = &event.resource;
    for (field, value) in [
        ("name", &r.name),
        ("namespace", &r.namespace),
        ("kind", &r.kind),
        ("group", &r.group),
        ("version", &r.version),
        ("resource", &r.resource),
        ("subresource", &r.subresource),
    ] {
        length(field, value, MAX_NAME_BYTES)?;
    }
    let user = &event.user;
    length("username", &user.username, MAX_USER_BYTES)?;
    length(
        "user uid",
        user.uid.as_deref().unwrap_or(""),
        MAX_USER_BYTES,
    )?;
    for group in &user.groups {
        length("user group", group, MAX_USER_BYTES)?;
    }
    for (key, values) in &user.extra {
        length("user extra key", key, MAX_USER_BYTES)?;
        for value in values {
            length("user extra value", value, MAX_USER_BYTES)?;
        }
    }
    if let Some(uid) = &event.object_uid {
        length("object uid", uid, MAX_NAME_BYTES)?;
    }
    if let Some(manager) = &event.field_manager {
        length("field manager", manager, MAX_NAME_BYTES)?;
    }
    length("uid", &event.uid, MAX_NAME_BYTES)?;
    // A CREATE's patch holds the object two levels down (`[{"value": …}]`).
    for (field, value, limit) in [
        ("object", event.object.as_ref(), MAX_DEPTH),
        ("oldObject", event.old_object.as_ref(), MAX_DEPTH),
        ("options", event.options.as_ref(), MAX_DEPTH),
        ("patch", Some(&event.patch), MAX_DEPTH + 2),
    ] {
        if value.is_some_and(|value| depth(value) > limit) {
            return Err(Exceeded::Depth { field });
        }
    }
    Ok(())
}

fn length(field: &'static str, value: &str, limit: usize) -> Result<(), Exceeded> {
    if value.len() > limit {
        return Err(Exceeded::Length {
            field,
            bytes: value.len(),
            limit,
        });
    }
    Ok(())
}

/// Levels of nesting (a scalar is 0, `[]` and `{}` are 1), without recursion.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

#[cfg(test)]
mod tests {
    use logistis_api::{EventId, Operation, ResourceRef, UserInfo};
    use serde_json::json;

    use super::*;

    fn event() -> Event {
        Event {
            id: EventId(1),
            cluster: String::new(),
            uid: "u".into(),
            time: chrono::DateTime::UNIX_EPOCH,
            operation: Operation::Create,
            user: UserInfo {
                username: "alice".into(),
                ..UserInfo::default()
            },
            resource: ResourceRef {
                kind: "ConfigMap".into(),
                name: "c".into(),
                namespace: "default".into(),
                ..ResourceRef::default()
            },
            object_uid: None,
            field_manager: None,
            dry_run: false,
            patch: json!([]),
            options: None,
            object: Some(json!({"data": {"a": [1, {"b": null}]}})),
            old_object: None,
            status: None,
            confirmation: None,
            observed_by: None,
            denied: None,
        }
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, _| json!([inner]))
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({"data": {"a": [1, {"b": null}]}})), 4);
        assert_eq!(depth(&nested(500)), 500);
    }

    #[test]
    fn events_past_a_limit_are_refused_with_the_reason() {
        assert_eq!(check(&event()), Ok(()));
        let mut long_name = event();
        long_name.resource.name = "n".repeat(70_000);
        assert!(matches!(
            check(&long_name),
            Err(Exceeded::Length {
                field: "name",
                bytes: 70_000,
                ..
            })
        ));
        let mut long_user = event();
        long_user.user.username = "u".repeat(MAX_USER_BYTES + 1);
        assert!(check(&long_user).is_err());
        // 124 nested arrays: accepted by serde_json on the way in, unreadable on the way out.
        let mut deep = event();
        deep.object = Some(json!({"spec": nested(124)}));
        assert_eq!(check(&deep), Err(Exceeded::Depth { field: "object" }));
        deep.object = Some(json!({"spec": nested(MAX_DEPTH - 1)}));
        assert_eq!(check(&deep), Ok(()));
    }
}
