//! Loading a plugin set from the plugins directory, and noticing when it changed.
//!
//! A load reads `plugins.yaml`, hashes every `.wasm` (SHA-256: the digest in the status),
//! compiles what is new — a plugin whose digest is unchanged reuses the compiled component
//! of the active set, and wasmtime's disk cache makes recompiling known bytes cheap — and
//! instantiates and configures each plugin once. Every problem is collected: the set is
//! all or nothing.
//!
//! Change detection polls a fingerprint of the directory: each visible entry's name, the
//! path it resolves to through symlinks, its size and modification time. A ConfigMap
//! update swaps the `..data` symlink, which changes every resolved path at once, so one
//! poll sees the whole new set (never a mix), and a plain edit changes size or mtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use logistis_api::plugins::OnError;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{predicate::Predicate, sink::Sink};
use super::budget::MemoryBudget;
use super::runtime::Plugin;
use super::spec::{self, PluginSpec};

/// A loaded, configured set, swapped in as a whole.
#[derive(Debug, Default)]
pub struct PluginSet {
    pub generation: u64,
    /// The verdict when a review's chain reaches its ceiling.
    pub on_error: OnError,
    /// `plugins.yaml` as it was read (kept as the last good set).
    pub yaml: String,
    pub predicates: Vec<Arc<Plugin<Predicate>>>,
    pub sinks: Vec<Arc<Plugin<Sink>>>,
}

impl PluginSet {
    /// Compiled components by digest, to reuse in the next load.
    fn components(&self) -> HashMap<String, Component> {
        let predicates = self
            .predicates
            .iter()
            .map(|p| (p.digest.clone(), p.component().clone()));
        let sinks = self
            .sinks
            .iter()
            .map(|p| (p.digest.clone(), p.component().clone()));
        predicates.chain(sinks).collect()
    }
}

/// Load the set in `dir`. `previous` lends its compiled components. On failure, every
/// problem found, one message each.
pub fn load(
    engine: &Engine,
    budget: &Arc<MemoryBudget>,
    dir: &Path,
    previous: &PluginSet,
    generation: u64,
) -> Result<PluginSet, Vec<String>> {
    let file = dir.join(spec::FILE_NAME);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        // Like an empty file: a missing ConfigMap key must not drop every filter.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(vec![format!(
                "{}: no such file (write `predicates: []` there for a set without plugins)",
                file.display()
            )]);
        }
        Err(error) => return Err(vec![format!("{}: {error}", file.display())]),
    };
    let set_spec = spec::parse(dir, &text)?;
    let components = previous.components();
    let mut errors = Vec::new();
    let mut set = PluginSet {
        generation,
        on_error: set_spec.on_error,
        yaml: text,
        ..PluginSet::default()
    };
    for spec in set_spec.predicates {
        match load_one(engine, budget, spec, &components) {
            Ok(plugin) => set.predicates.push(Arc::new(plugin)),
            Err(error) => errors.push(error),
        }
    }
    for spec in set_spec.sinks {
        match load_one(engine, budget, spec, &components) {
            Ok(plugin) => set.sinks.push(Arc::new(plugin)),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

fn load_one<W: super::runtime::World>(
    engine: &Engine,
    budget: &Arc<MemoryBudget>,
    spec: PluginSpec,
    components: &HashMap<String, Component>,
) -> Result<Plugin<W>, String> {
    let started = Instant::now();
    let name = spec.name.clone();
    let bytes = std::fs::read(&spec.path)
        .map_err(|error| format!("plugin {name:?}: {}: {error}", spec.file))?;
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    let component = match components.get(&digest) {
        Some(component) => component.clone(),
        None => Component::from_binary(engine, &bytes).map_err(|error| {
            format!(
                "plugin {name:?}: {} is not a valid component: {error:#}",
                spec.file
            )
        })?,
    };
    Plugin::load(engine, budget, spec, digest, component, started, None)
        .map_err(|error| format!("{}", super::runtime::DisplayChain(&error)))
}

/// What the directory looked like; a different value means "reload".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<(String, PathBuf, u64, Option<SystemTime>)>);

impl Fingerprint {
    pub fn of(dir: &Path) -> Fingerprint {
        let mut entries = Vec::new();
        if let Ok(read) = std::fs::read_dir(dir) {
            for entry in read.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // `..data` and `..2026_…` are the ConfigMap's machinery; the visible names
                // resolve through them, which is what we record.
                if name.starts_with("..") {
                    continue;
                }
                let path = entry.path();
                let resolved = std::fs::canonicalize(&path).unwrap_or(path.clone());
                let (len, modified) = match std::fs::metadata(&path) {
                    Ok(meta) => (meta.len(), meta.modified().ok()),
                    Err(_) => (0, None),
                };
                // Subdirectories too (`file: python/predicate.wasm`).
                if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                    for (sub, resolved, len, modified) in Fingerprint::of(&path).0 {
                        entries.push((format!("{name}/{sub}"), resolved, len, modified));
                    }
                }
                entries.push((name, resolved, len, modified));
            }
        }
        entries.sort();
        Fingerprint(entries)
    }
}
