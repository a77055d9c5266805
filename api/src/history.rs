//! The history of one object: its versions, the diff between two of them, the history of one
//! field, bisect and the line-by-line blame of its newest manifest.
//!
//! Every answer is about the object addressed as
//! `/api/v1/objects/{group}/{kind}/{namespace}/{name}` (`core` for the empty group, `_` for a
//! cluster-scoped object). Versions are numbered by the position of their event in the
//! object's whole recorded history (1 = the first event ever recorded for that name), so a
//! number keeps its meaning when retention drops older events: the list then starts at
//! `firstVersion` (> 1) and says so in `trimmedEvents`. Events that do not change the object
//! (CONNECT such as `pods/exec`, stored dry-runs) use up a number but are not versions.
//!
//! An object deleted and re-created under the same name starts a new *generation*
//! (`generation` 2, 3, ..., each with its own `objectUid`); numbering continues across
//! generations, so every number names exactly one version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{EventId, Operation, UserInfo};

/// The object an answer is about, as addressed (the kind as it was stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Empty for the core group.
    pub group: String,
    pub kind: String,
    /// Empty for a cluster-scoped object.
    pub namespace: String,
    pub name: String,
}

/// One version: the event that produced it and what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    /// The version number (see the module docs: stable under retention).
    pub version: u64,
    /// 1 for the first incarnation of the name, +1 for each re-creation.
    pub generation: u32,
    /// `metadata.uid` of the object in this generation, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_uid: Option<String>,
    pub event_id: EventId,
    pub time: DateTime<Utc>,
    pub user: UserInfo,
    pub operation: Operation,
    /// The subresource the change came through (`scale`, `status`), empty for the object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_manager: Option<String>,
    /// True for the DELETE that ended a generation; its object is the object as deleted.
    #[serde(default)]
    pub deleted: bool,
    /// Dotted paths of the fields this version changed (compared with the previous version of
    /// the same generation), at most a few dozen; empty for a CREATE.
    #[serde(default)]
    pub changed_paths: Vec<String>,
    /// One line for humans: `created`, `deleted`, `spec.replicas, spec.template...image`.
    pub summary: String,
    /// The event's confirmation status (see [`crate::Status`]); absent when not confirmed
    /// by a watch. Phantoms are versions only with `includePhantoms=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::Status>,
}

/// One generation: a run of versions of the same object uid, from CREATE (or the first
/// retained version) to DELETE (or the newest version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationSummary {
    pub generation: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_uid: Option<String>,
    pub first_version: u64,
    pub last_version: u64,
    /// The generation ended with a DELETE.
    pub deleted: bool,
}

/// `GET …/versions`: every stored version, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionList {
    pub object: ObjectRef,
    /// The number of the oldest version still stored (1 unless retention dropped some).
    pub first_version: u64,
    /// How many older events of this object retention removed; when > 0 the first listed
    /// version is not the CREATE, and the history before it is unknown.
    pub trimmed_events: u64,
    pub generations: Vec<GenerationSummary>,
    pub items: Vec<VersionSummary>,
}

/// `GET …/versions/{n}`: the object as it was at version n, noise stripped and redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionDetail {
    pub object_ref: ObjectRef,
    #[serde(flatten)]
    pub summary: VersionSummary,
    pub object: serde_json::Value,
}

/// `GET …/diff?from=&to=&path=`: from version `from` to version `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub object: ObjectRef,
    pub from: VersionSummary,
    pub to: VersionSummary,
    /// The field the diff is restricted to, in dotted form
    /// (`spec.template.spec.containers[0].image`); absent for the whole object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// RFC 6902 patch that turns version `from` into version `to`. With `path`, only that
    /// field's operations, with absolute pointers: applied to `from` it sets the field as it
    /// is in `to` (when the field's parent exists in `from`).
    pub patch: serde_json::Value,
    /// Unified diff of the two versions (or of the field) rendered as YAML, with
    /// `--- vN` / `+++ vM` headers (followed by the path when restricted); empty when nothing
    /// differs.
    pub unified: String,
}

/// One change of a field in `GET …/history?path=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    pub version: u64,
    pub generation: u32,
    pub event_id: EventId,
    pub time: DateTime<Utc>,
    pub user: UserInfo,
    pub operation: Operation,
    /// The value before this version; absent when the field did not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<serde_json::Value>,
    /// The value at this version; absent when the field was removed (or the object deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<serde_json::Value>,
}

/// `GET …/history?path=`: every version in which the field changed, oldest first. The first
/// stored version counts as a change when it has the field (it set it, as far as we know).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldHistory {
    pub object: ObjectRef,
    /// The field, in dotted form.
    pub path: String,
    pub first_version: u64,
    pub trimmed_events: u64,
    pub items: Vec<FieldChange>,
}

/// `GET …/bisect?path=&value=`: the first version at which the field took the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BisectAnswer {
    pub object: ObjectRef,
    /// The field, in dotted form.
    pub path: String,
    /// The value looked for (a JSON value; a query string that is not JSON is a string).
    pub value: serde_json::Value,
    /// The version that first set it, and who did it.
    pub version: VersionSummary,
    /// The value just before (absent when the field did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<serde_json::Value>,
}

/// One line of `GET …/blame`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlameLine {
    /// The YAML text of the line, without the newline.
    pub line: String,
    /// The version whose change last set what this line shows.
    pub version: u64,
    pub event_id: EventId,
    pub time: DateTime<Utc>,
    pub user: UserInfo,
    pub operation: Operation,
    /// The field this line shows, in dotted form with list indices of the version shown
    /// (`spec.template.spec.containers[0].image`); for `- name: x` the deepest one, `name`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The confirmation status of that change (never `phantom`: blame credits only what
    /// happened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::Status>,
}

/// `GET …/blame`: the newest version (of the newest generation) as YAML, one entry per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blame {
    pub object: ObjectRef,
    /// The version shown.
    pub version: u64,
    pub generation: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_uid: Option<String>,
    /// True when the newest version is a DELETE (the lines show the object as deleted).
    pub deleted: bool,
    pub first_version: u64,
    /// When > 0, lines attributed to `firstVersion` may have been set earlier, by an event
    /// retention removed.
    pub trimmed_events: u64,
    pub lines: Vec<BlameLine>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_camel_case() {
        let list = VersionList {
            object: ObjectRef {
                group: "apps".into(),
                kind: "Deployment".into(),
                namespace: "default".into(),
                name: "web".into(),
            },
            first_version: 3,
            trimmed_events: 2,
            generations: vec![],
            items: vec![],
        };
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(json["firstVersion"], 3);
        assert_eq!(json["trimmedEvents"], 2);
        let back: VersionList = serde_json::from_value(json).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn version_detail_flattens_the_summary() {
        let detail = VersionDetail {
            object_ref: ObjectRef::default(),
            summary: VersionSummary {
                version: 7,
                generation: 1,
                object_uid: Some("u1".into()),
                event_id: EventId(42),
                time: DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap(),
                user: UserInfo::default(),
                operation: Operation::Update,
                subresource: String::new(),
                field_manager: None,
                deleted: false,
                changed_paths: vec!["spec.replicas".into()],
                summary: "spec.replicas".into(),
                status: None,
            },
            object: serde_json::json!({"spec": {"replicas": 2}}),
        };
        let json = serde_json::to_value(&detail).unwrap();
        assert_eq!(json["version"], 7);
        assert_eq!(json["eventId"], "000000000000002a");
        assert_eq!(json["object"]["spec"]["replicas"], 2);
        let back: VersionDetail = serde_json::from_value(json).unwrap();
        assert_eq!(back, detail);
    }
}
