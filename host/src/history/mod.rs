//! History: one object's stored events become answers — its versions, the diff between any
//! two, the history of one field, bisect and the line blame of its newest manifest. Pure: the
//! caller reads the events (`Store::object_events`, one range scan of the object index) and
//! hands them over; nothing here does IO.
//!
//! - [`versions`]: events → [`Timeline`] of full, noise-stripped versions and generations.
//! - [`path`]: field paths, dotted or JSON pointer, with `[name=x]` list selectors.
//! - [`diff`]: RFC 6902 patch and unified YAML diff between two versions.
//! - [`field`]: the changes of one field, and bisect.
//! - [`blame`]: the newest version as YAML lines, each with the change that last set it.
//! - [`interrupt`]: giving up on an answer nobody waits for any more.

pub mod blame;
pub mod diff;
pub mod field;
pub mod interrupt;
pub mod path;
pub mod versions;

pub use path::{FieldPath, PathError};
pub use versions::{Timeline, Version};

/// What a history question can fail on. Everything but `Yaml` and `Json` is the asker's
/// mistake (a 4xx).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the object has no stored version")]
    NoVersions,
    #[error("no version {version} of this object (stored versions: {range})")]
    NoSuchVersion { version: u64, range: String },
    #[error(transparent)]
    InvalidPath(#[from] PathError),
    #[error("{path} never had the value {value:?} in any stored version")]
    NeverMatched { path: String, value: String },
    #[error("cannot render version {version} as YAML")]
    Yaml {
        version: u64,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("cannot encode a patch")]
    Json(#[source] serde_json::Error),
    /// The client went away or the query's time budget ran out.
    #[error("stopped: the answer took too long or is no longer wanted")]
    Stopped,
}

/// Events for unit tests: the shapes the admission layer stores.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};

    use chrono::DateTime;
    use logistis_api::{Event, EventId, Operation, ResourceRef, UserInfo};
    use serde_json::{Value, json};

    static NEXT_ID: AtomicU64 = AtomicU64::new(1_700_000_000_000_000);

    /// An event on `apps/Deployment default/web` by `user`.
    pub fn event(
        operation: Operation,
        object: Option<Value>,
        old_object: Option<Value>,
        user: &str,
    ) -> Event {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let object_uid = object
            .as_ref()
            .or(old_object.as_ref())
            .and_then(|o| o.pointer("/metadata/uid"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let patch = match (&operation, &object) {
            (Operation::Create, Some(object)) => {
                json!([{"op": "add", "path": "", "value": object}])
            }
            _ => json!([]),
        };
        Event {
            id: EventId(id),
            cluster: String::new(),
            uid: format!("req-{id}"),
            time: DateTime::from_timestamp_micros(id as i64).expect("valid time"),
            operation,
            user: UserInfo {
                username: user.to_owned(),
                ..UserInfo::default()
            },
            resource: ResourceRef {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                resource: "deployments".into(),
                subresource: String::new(),
                namespace: "default".into(),
                name: "web".into(),
            },
            object_uid,
            field_manager: None,
            dry_run: false,
            patch,
            options: None,
            object,
            old_object,
            status: None,
            confirmation: None,
            observed_by: None,
            denied: None,
        }
    }

    /// A `deployments/scale` UPDATE to `replicas` (an autoscaling/v1 Scale, as stored).
    pub fn scale_event(replicas: u64, user: &str) -> Event {
        let scale = |r: u64| {
            let spec = if r == 0 {
                json!({})
            } else {
                json!({"replicas": r})
            };
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": spec})
        };
        let mut event = event(
            Operation::Update,
            Some(scale(replicas)),
            Some(scale(1)),
            user,
        );
        event.resource.subresource = "scale".into();
        event.patch = json!([{"op": "replace", "path": "/spec/replicas", "value": replicas}]);
        event
    }
}

#[cfg(test)]
mod tests;
