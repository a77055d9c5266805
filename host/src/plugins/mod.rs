//! WebAssembly plugins: capture predicates in the admission path, sinks on the durable log.
//!
//! SEAM (issue 5 replaces the internals, keeps these signatures): the webhook calls
//! [`PluginHost::evaluate`] for every event it is about to store; `/readyz` asks
//! [`PluginHost::is_ready`]; `/api/v1/plugins` returns [`PluginHost::status`]; `/metrics`
//! includes what [`PluginHost::register_metrics`] registers. Until a plugin set is configured
//! every event is captured.

use std::path::PathBuf;

use logistis_api::Event;
use prometheus_client::registry::Registry;

use crate::store::Store;

/// The verdict of the predicate chain on one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Capture,
    /// Skipped by the named predicate.
    Skip { plugin: String },
}

/// Plugin settings from the command line.
#[derive(Debug, Clone, Default)]
pub struct PluginSettings {
    /// Directory holding `plugins.yaml` and the `.wasm` files; `None` = no plugins.
    pub dir: Option<PathBuf>,
}

/// The loaded plugin set, reloaded when its directory changes.
#[derive(Debug)]
pub struct PluginHost {
    _store: Store,
}

impl PluginHost {
    /// Load the first plugin set and start the sinks and the reload watcher.
    pub fn start(_settings: &PluginSettings, store: Store) -> anyhow::Result<PluginHost> {
        Ok(PluginHost { _store: store })
    }

    /// Whether any predicate is loaded (the webhook skips the blocking hop when none is).
    pub fn has_predicates(&self) -> bool {
        false
    }

    /// Run the predicate chain (blocking; call it off the async worker threads).
    pub fn evaluate(&self, _event: &Event) -> Decision {
        Decision::Capture
    }

    /// The first plugin set has been loaded (an empty set counts).
    pub fn is_ready(&self) -> bool {
        true
    }

    /// Each plugin with its status, for `GET /api/v1/plugins`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({"items": []})
    }

    /// Add the plugin metrics to `/metrics`.
    pub fn register_metrics(&self, _registry: &mut Registry) {}

    /// Stop the sinks and the watcher (sinks keep their cursors).
    pub fn shutdown(&self) {}
}
