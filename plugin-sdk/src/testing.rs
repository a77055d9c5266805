//! Sample events for plugins' native unit tests (`cargo test`, no WebAssembly involved).

use crate::{Event, ObjectRef, Operation, User};

/// An UPDATE of the Deployment `team-a/web` (group `apps`) by `alice@example.com`
/// (groups `system:authenticated` and `devs`) that changed `/spec/replicas` from 2 to 3.
pub fn event() -> Event {
    Event {
        id: String::new(),
        uid: "u-1".into(),
        time: "2026-01-01T00:00:00Z".into(),
        operation: Operation::Update,
        user: User {
            username: "alice@example.com".into(),
            uid: None,
            groups: vec!["system:authenticated".into(), "devs".into()],
            extra: vec![("scopes".into(), vec!["openid".into()])],
        },
        resource: ObjectRef {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            resource: "deployments".into(),
            subresource: String::new(),
            namespace: "team-a".into(),
            name: "web".into(),
        },
        object_uid: None,
        field_manager: Some("kubectl".into()),
        dry_run: false,
        patch: r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#.into(),
        object: Some(r#"{"spec":{"replicas":3}}"#.into()),
        old_object: Some(r#"{"spec":{"replicas":2}}"#.into()),
        options: None,
    }
}
