//! One recorded change: the event as the server stores it and the query API returns it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A time-ordered event id: microseconds since the Unix epoch at which the server recorded
/// the event, bumped by one when two events fall in the same microsecond. Rendered as 16
/// lowercase hex digits, so the string order is the time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u64);

impl EventId {
    /// The big-endian bytes, as used in store keys (byte order = time order).
    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// The time this id was allocated at (microsecond precision).
    pub fn timestamp(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(i64::try_from(self.0).ok()?)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The text was not 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEventIdError(String);

impl fmt::Display for ParseEventIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid event id {:?}: expected 16 hex digits", self.0)
    }
}

impl std::error::Error for ParseEventIdError {}

impl FromStr for EventId {
    type Err = ParseEventIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(ParseEventIdError(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(EventId)
            .map_err(|_| ParseEventIdError(s.to_owned()))
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The admission operation. Anything else the API server sends is kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
    Other(String),
}

impl Operation {
    pub fn as_str(&self) -> &str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
            Operation::Other(other) => other,
        }
    }

    /// Case-insensitive parse; unknown names become [`Operation::Other`] (upper-cased).
    pub fn parse(text: &str) -> Operation {
        match text.to_ascii_uppercase().as_str() {
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            "CONNECT" => Operation::Connect,
            other => Operation::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Operation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Operation::parse(&text))
    }
}

/// Who made the request: the API server's `userInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What was changed. `namespace` is empty for cluster-scoped objects; `subresource` is empty
/// for the main resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subresource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
}

impl ResourceRef {
    /// `kind/name` or `kind.group/name`, as kubectl prints it.
    pub fn display_key(&self) -> String {
        let mut key = self.kind.clone();
        if !self.group.is_empty() {
            key.push('.');
            key.push_str(&self.group);
        }
        key.push('/');
        key.push_str(&self.name);
        if !self.subresource.is_empty() {
            key.push('/');
            key.push_str(&self.subresource);
        }
        key
    }
}

/// Whether the cluster confirmed a recorded change (the watch of `logistis serve --confirm`).
///
/// - `pending`: recorded from a review, not yet seen by the watch;
/// - `confirmed`: the watch showed the object reaching exactly that state (a DELETE: the
///   object gone), at [`Confirmation::resource_version`];
/// - `phantom`: it never happened — the watch showed the object moving to another state
///   instead, or the confirmation deadline passed without a matching watch event (denied
///   after admission, a conflict, a forged review);
/// - `observed`: a change the watch saw that no review explains (Logistis was down, the
///   review was excluded or came another way); the user is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Confirmed,
    Phantom,
    Observed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Confirmed,
        Status::Phantom,
        Status::Observed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
            Status::Phantom => "phantom",
            Status::Observed => "observed",
        }
    }

    /// Case-insensitive parse of a status name.
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How and when a status was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Confirmation {
    /// `confirmed`: the resourceVersion the change landed as; `phantom`: the one that showed
    /// another state (absent when the deadline passed); `observed`: the one it was seen at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// When the status was decided (UTC).
    pub time: DateTime<Utc>,
    /// Why, in a few words (`deadline passed`, `the object reached another state`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// For an `observed` change: the newest `managedFields` entry of the object as seen — the
/// best available hint of who made it (the field manager and when it wrote).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagerHint {
    pub manager: String,
    /// `Apply` or `Update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

/// One recorded change.
///
/// `object` and `oldObject` are redacted (Secret values are keyed hashes) and carry no
/// `metadata.managedFields`. They are present on `GET /api/v1/events/{id}` and omitted from
/// lists, where `patch` says what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: EventId,
    /// The cluster the event came from (`--cluster`); empty when the server has no name.
    /// Several clusters can share one PostgreSQL-protocol store.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// The AdmissionReview request `uid`.
    pub uid: String,
    /// When the server received the request (UTC, RFC 3339, microseconds).
    pub time: DateTime<Utc>,
    pub operation: Operation,
    pub user: UserInfo,
    pub resource: ResourceRef,
    /// `metadata.uid` of the object: tells a re-created object (same name) from the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_manager: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// RFC 6902 patch from the object before to the object after, noise left out.
    /// CREATE: one `add` of the whole object at `""`; DELETE and CONNECT: empty.
    #[serde(default)]
    pub patch: serde_json::Value,
    /// For CONNECT: the connect options (for `pods/exec`: container, command, tty...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<serde_json::Value>,
    /// Whether the cluster confirmed it; absent when it is not confirmed by a watch
    /// (recorded with `--confirm` off, or not a change of a watched resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// How the status was decided (absent while `pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Confirmation>,
    /// `observed` changes only: who probably made it, from `managedFields`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_by: Option<ManagerHint>,
    /// Present when a lock denied the request: the event records the attempt, and the
    /// change did not happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<crate::lock::Denial>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_round_trips_and_sorts_as_text() {
        let a = EventId(1_700_000_000_000_000);
        let b = EventId(1_700_000_000_000_001);
        assert_eq!(a.to_string().parse::<EventId>().unwrap(), a);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().len(), 16);
        assert!("xyz".parse::<EventId>().is_err());
        assert!("000000000000000g".parse::<EventId>().is_err());
    }

    #[test]
    fn operation_keeps_unknown_values() {
        assert_eq!(Operation::parse("update"), Operation::Update);
        assert_eq!(Operation::parse("patch").as_str(), "PATCH");
        let json = serde_json::to_string(&Operation::Connect).unwrap();
        assert_eq!(json, "\"CONNECT\"");
    }

    #[test]
    fn statuses_parse_and_serialise_lower_case() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, status.as_str());
        }
        assert_eq!(Status::parse("Phantom"), Some(Status::Phantom));
        assert_eq!(Status::parse("maybe"), None);
    }

    #[test]
    fn display_key_names_group_and_subresource() {
        let r = ResourceRef {
            group: "apps".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            subresource: "scale".into(),
            ..ResourceRef::default()
        };
        assert_eq!(r.display_key(), "Deployment.apps/web/scale");
    }
}
