//! `GET /api/v1/plugins`: the active plugin set, each plugin's health, and the outcome of
//! the last reload (a refused set is reported here while the previous one keeps running).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The answer of `GET /api/v1/plugins`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginList {
    /// Bumped each time a new set is swapped in (0 = no set loaded yet).
    pub generation: u64,
    /// The active set, predicates first, in `plugins.yaml` order.
    pub items: Vec<PluginStatus>,
    /// The last load attempt, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<ReloadStatus>,
    /// Set while the last good set (kept in the data dir) runs because the mounted set was
    /// broken at startup: why, and since when it was saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// `predicate` (admission path) or `sink` (durable log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Predicate,
    Sink,
}

/// What happens to the event when a predicate fails (trap, timeout, memory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Capture,
    Skip,
}

/// One plugin of the active set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    pub name: String,
    pub kind: PluginKind,
    /// The `.wasm` file, relative to the plugins directory.
    pub file: String,
    /// `sha256:<hex>` of the `.wasm` file.
    pub digest: String,
    /// `active`; a sink also reports `retrying` while its last delivery failed.
    pub status: String,
    /// The last failure, if any (trap, timeout, memory, delivery error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub loaded_at: DateTime<Utc>,
    /// Compile (or cache load) plus the first instantiation and `configure`, in ms.
    pub load_ms: f64,
    pub on_error: OnError,
    pub deadline_ms: u64,
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Outgoing HTTP granted to these hosts (sinks only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    pub calls: u64,
    pub failures: u64,
    pub traps: u64,
    pub timeouts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkStatus>,
}

/// A sink's position in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkStatus {
    /// The last event delivered (persisted cursor), none before the first delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Time between the newest stored event and the cursor, in seconds.
    pub lag_seconds: f64,
    pub delivered: u64,
}

/// The outcome of one load of the plugins directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    pub time: DateTime<Utc>,
    /// The set was swapped in; when false, the previous set stays active.
    pub ok: bool,
    pub duration_ms: f64,
    /// Every problem found in the refused set (empty when `ok`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}
