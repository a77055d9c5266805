//! The JSON types of the Logistis query API (`/api/v1/...`).
//!
//! This crate is serde-only on purpose: the server (`logistis`) serialises these types and
//! `kubectl-blame` deserialises them, and the CLI must never link wasmtime or fjall.
//!
//! - [`event`]: one recorded change — who, what, when and the RFC 6902 patch.
//! - [`list`]: list answers with their `continue` tokens, and the per-namespace overview.
//! - [`history`]: one object's versions, diffs, field history, bisect and line blame.
//! - [`error`]: the body of every 4xx/5xx answer.
//! - [`lock`]: locks (`locks.logistis.io`) and the denial an attempt's event carries.
//! - [`plugins`]: the plugin set and its health (`GET /api/v1/plugins`).

pub mod error;
pub mod event;
pub mod history;
pub mod list;
pub mod lock;
pub mod plugins;

pub use error::ErrorBody;
pub use event::{
    Confirmation, Event, EventId, ManagerHint, Operation, ParseEventIdError, ResourceRef, Status,
    UserInfo,
};
pub use history::{
    BisectAnswer, Blame, BlameLine, Diff, FieldChange, FieldHistory, GenerationSummary, ObjectRef,
    VersionDetail, VersionList, VersionSummary,
};
pub use list::{EventList, NamespaceList, NamespaceSummary};
