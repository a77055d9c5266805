//! List answers: a page of events with its `continue` token, and the namespace overview.

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// `GET /api/v1/events`: newest first. `continue` is absent on the last page; pass it back
/// unchanged (with the same filters) to get the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventList {
    pub items: Vec<Event>,
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// One row of `GET /api/v1/namespaces`. `namespace` is empty for cluster-scoped objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSummary {
    /// The cluster of these events (`--cluster`); empty when unnamed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    pub namespace: String,
    /// Events currently stored for this namespace.
    pub events: u64,
    /// The newest of them (without its objects).
    pub latest: Option<Event>,
}

/// `GET /api/v1/namespaces`: every namespace with at least one stored event, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceList {
    pub items: Vec<NamespaceSummary>,
}
