//! The last plugin set that loaded, kept in the data dir (`DATA_DIR/plugins-last-good/`):
//! its `plugins.yaml` as parsed, every `.wasm` it names, and `digests.json` (the SHA-256 of
//! each file, the generation and the time it was saved).
//!
//! Why: a pod restarted while its ConfigMap holds a broken set would otherwise exit and take
//! the webhook down. At startup a broken mounted set falls back to this copy — loudly: an
//! error line, `fallback` in `GET /api/v1/plugins` and `logistis_plugin_set_fallback 1` —
//! and the next good mounted set replaces it. Saving copies into a temporary directory, checks
//! every digest against the set that loaded, and renames it into place, so a crash mid-save
//! leaves the previous copy whole; a copy whose files no longer match its digests is refused.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::registry::PluginSet;
use super::spec;

const MANIFEST: &str = "digests.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    saved_at: DateTime<Utc>,
    generation: u64,
    plugins_yaml: String,
    /// `(file, digest)` in `plugins.yaml` order.
    files: Vec<(String, String)>,
}

/// Where the last good set is kept.
#[derive(Debug, Clone)]
pub struct LastGood {
    dir: PathBuf,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl LastGood {
    pub fn new(dir: PathBuf) -> LastGood {
        LastGood { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keep `set` (loaded from `source`, whose `plugins.yaml` read `yaml`). Nothing is
    /// written when the saved copy is already this set.
    pub fn save(&self, source: &Path, yaml: &str, set: &PluginSet) -> Result<(), String> {
        let mut files: Vec<(String, String)> = Vec::new();
        let predicates = set.predicates.iter().map(|p| (&p.spec.file, &p.digest));
        let sinks = set.sinks.iter().map(|p| (&p.spec.file, &p.digest));
        for (file, digest) in predicates.chain(sinks) {
            if !files.iter().any(|(f, _)| f == file) {
                files.push((file.clone(), digest.clone()));
            }
        }
        if let Some(saved) = self.manifest()
            && saved.plugins_yaml == yaml
            && saved.files == files
        {
            return Ok(());
        }
        let tmp = self.dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let io = |what: &str, error: std::io::Error| format!("{what}: {error}");
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp.display().to_string(), e))?;
        std::fs::write(tmp.join(spec::FILE_NAME), yaml).map_err(|e| io(spec::FILE_NAME, e))?;
        for (file, digest) in &files {
            let bytes = std::fs::read(source.join(file)).map_err(|e| io(file, e))?;
            // The mounted file may have changed since it loaded: keep only what ran.
            if sha256(&bytes) != *digest {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(format!("{file} changed since it was loaded; not saved"));
            }
            let target = tmp.join(file);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(file, e))?;
            }
            std::fs::write(&target, &bytes).map_err(|e| io(file, e))?;
        }
        let manifest = Manifest {
            saved_at: Utc::now(),
            generation: set.generation,
            plugins_yaml: yaml.to_owned(),
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
        std::fs::write(tmp.join(MANIFEST), json).map_err(|e| io(MANIFEST, e))?;
        let old = self.dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&old);
        if self.dir.exists() {
            std::fs::rename(&self.dir, &old).map_err(|e| io("moving the old copy", e))?;
        }
        std::fs::rename(&tmp, &self.dir).map_err(|e| io("moving the new copy", e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    fn manifest(&self) -> Option<Manifest> {
        let bytes = std::fs::read(self.dir.join(MANIFEST)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The saved copy, checked against its digests: its directory and when it was saved.
    pub fn load(&self) -> Result<(PathBuf, DateTime<Utc>), String> {
        let manifest = self
            .manifest()
            .ok_or_else(|| format!("no last good plugin set in {}", self.dir.display()))?;
        for (file, digest) in &manifest.files {
            let bytes = std::fs::read(self.dir.join(file))
                .map_err(|error| format!("last good set: {file}: {error}"))?;
            if sha256(&bytes) != *digest {
                return Err(format!(
                    "last good set: {file} does not match its digest {digest}"
                ));
            }
        }
        let yaml = std::fs::read_to_string(self.dir.join(spec::FILE_NAME))
            .map_err(|error| format!("last good set: {}: {error}", spec::FILE_NAME))?;
        if yaml != manifest.plugins_yaml {
            return Err(format!(
                "last good set: {} does not match its manifest",
                spec::FILE_NAME
            ));
        }
        Ok((self.dir.clone(), manifest.saved_at))
    }
}
