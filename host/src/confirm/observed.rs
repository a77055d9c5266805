//! An observed change as an event: what the watch saw that no review explains. The diff is
//! taken from the newest known state (noise left out, exactly as admission diffs), the user
//! is unknown (empty), and the newest `managedFields` entry — field manager, operation,
//! time — is kept as the best available hint of who did it.

use chrono::{DateTime, Utc};
use kube::discovery::ApiResource;
use logistis_api::{
    Confirmation, Event, EventId, ManagerHint, Operation, ResourceRef, Status, UserInfo,
};
use serde_json::{Value, json};

use super::compare::Observed;
use crate::admission::{NewEvent, noise};

/// The newest entry of `metadata.managedFields` (by its `time`), if any.
pub fn manager_hint(object: &Value) -> Option<ManagerHint> {
    let entries = object.pointer("/metadata/managedFields")?.as_array()?;
    let parse_time = |entry: &Value| {
        entry
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let newest = entries
        .iter()
        .filter(|entry| entry.get("manager").and_then(Value::as_str).is_some())
        .max_by_key(|entry| parse_time(entry))?;
    let text = |field: &str| {
        newest
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Some(ManagerHint {
        manager: text("manager").unwrap_or_default(),
        operation: text("operation"),
        time: parse_time(newest),
        subresource: text("subresource"),
    })
}

/// The event recording `change` of `namespace/name`, seen at `resource_version`.
pub fn event(
    resource: &ApiResource,
    namespace: &str,
    name: &str,
    change: Observed,
    resource_version: Option<&str>,
    now: DateTime<Utc>,
) -> NewEvent {
    let Observed {
        operation,
        mut object,
        mut old_object,
    } = change;
    let hint = match operation {
        // The last writer of a deleted object is not who deleted it.
        Operation::Delete => None,
        _ => object.as_ref().and_then(manager_hint),
    };
    for object in [&mut object, &mut old_object].into_iter().flatten() {
        noise::drop_managed_fields(object);
    }
    let patch = match (&operation, &object, &old_object) {
        (Operation::Update, Some(after), Some(before)) => {
            let mut patch = json_patch::diff(before, after);
            patch
                .0
                .retain(|op| !noise::is_noise_path(op.path().as_str()));
            serde_json::to_value(patch).unwrap_or_else(|_| json!([]))
        }
        (Operation::Create, Some(after), _) => {
            json!([{"op": "add", "path": "", "value": noise::strip(after)}])
        }
        _ => json!([]),
    };
    let object_uid = object
        .as_ref()
        .or(old_object.as_ref())
        .and_then(|o| o.pointer("/metadata/uid"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    NewEvent {
        event: Event {
            id: EventId(0),
            // Stamped by the store when appended.
            cluster: String::new(),
            uid: String::new(),
            time: DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now),
            operation,
            user: UserInfo::default(),
            resource: ResourceRef {
                group: resource.group.clone(),
                version: resource.version.clone(),
                kind: resource.kind.clone(),
                resource: resource.plural.clone(),
                subresource: String::new(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            object_uid,
            field_manager: hint.as_ref().map(|h| h.manager.clone()),
            dry_run: false,
            patch,
            options: None,
            object,
            old_object,
            status: Some(Status::Observed),
            confirmation: Some(Confirmation {
                resource_version: resource_version.map(str::to_owned),
                time: now,
                reason: Some("seen by the watch; no review explains it".to_owned()),
            }),
            observed_by: hint,
            denied: None,
        },
        dedupe_key: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_is_the_newest_manager() {
        let object = json!({"metadata": {"managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-01-01T10:00:00Z"},
            {"manager": "kube-controller-manager", "operation": "Update", "time": "2026-01-01T11:00:00Z", "subresource": "status"},
            {"manager": "helm", "operation": "Apply", "time": "2026-01-01T10:30:00Z"}
        ]}});
        let hint = manager_hint(&object).unwrap();
        assert_eq!(hint.manager, "kube-controller-manager");
        assert_eq!(hint.subresource.as_deref(), Some("status"));
        assert_eq!(manager_hint(&json!({"metadata": {}})), None);
    }

    #[test]
    fn an_observed_update_diffs_from_the_known_state_without_noise() {
        let resource = ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
        };
        let change = Observed {
            operation: Operation::Update,
            object: Some(json!({"metadata": {"name": "web", "resourceVersion": "9",
                "managedFields": [{"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-01T10:00:00Z"}]},
                "spec": {"replicas": 4}, "status": {"ready": 1}})),
            old_object: Some(json!({"metadata": {"name": "web"}, "spec": {"replicas": 2}})),
        };
        let new = event(&resource, "shop", "web", change, Some("9"), Utc::now());
        assert_eq!(
            new.event.patch,
            json!([{"op": "replace", "path": "/spec/replicas", "value": 4}])
        );
        assert_eq!(new.event.status, Some(Status::Observed));
        assert_eq!(new.event.user.username, "");
        assert_eq!(new.event.field_manager.as_deref(), Some("kubectl-edit"));
        assert!(
            new.event.object.unwrap()["metadata"]
                .get("managedFields")
                .is_none()
        );
    }
}
