//! `plugins.yaml`: the raw file ([`PluginsFile`]) and its validated form ([`SetSpec`]).
//!
//! ```yaml
//! predicates:                 # run in this order; the first `skip` wins
//!   - name: users
//!     file: users.wasm
//!     on-error: capture       # capture (default) | skip
//!     deadline-ms: 5          # default 5
//!     memory-mb: 32           # default 32
//!     fuel: 10000000          # optional instruction budget per call
//!     config: {exclude: {users: ["system:*"]}}
//! sinks:
//!   - name: audit
//!     file: webhook.wasm
//!     allowed-hosts: ["audit.example.com"]
//!     batch: 100              # events per delivery (default 100)
//!     deadline-ms: 10000      # per delivery (default 10000)
//!     deliver: confirmed      # confirmed (default) | recorded
//!     config: {url: "https://audit.example.com/logistis"}
//! ```
//! Validation collects every problem at once, so an operator fixes the file in one go.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use logistis_api::plugins::{OnError, PluginKind};
use serde::Deserialize;

/// The name of the plugin set file inside the plugins directory.
pub const FILE_NAME: &str = "plugins.yaml";

pub const DEFAULT_PREDICATE_DEADLINE_MS: u64 = 5;
pub const DEFAULT_SINK_DEADLINE_MS: u64 = 10_000;
pub const DEFAULT_MEMORY_MB: u64 = 32;
/// Large enough for Python and JavaScript components, which start with ~20 MB of heap.
pub const MAX_MEMORY_MB: u64 = 512;
pub const MAX_DEADLINE_MS: u64 = 60_000;
pub const DEFAULT_BATCH: usize = 100;

/// Which events a sink receives, with `logistis serve --confirm`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Deliver {
    /// Only what happened: confirmed and observed changes (and those the watch does not
    /// confirm), in log order, each once it is settled; phantoms never.
    #[default]
    Confirmed,
    /// Every recorded change at once, pending ones included (some may turn out phantoms).
    Recorded,
}

/// `plugins.yaml` as written, after type checks.
#[derive(Debug, Default)]
pub struct PluginsFile {
    /// The chain's verdict when a review's ceiling comes before the chain's answer.
    pub on_error: Option<OnError>,
    pub predicates: Vec<PluginConfig>,
    pub sinks: Vec<PluginConfig>,
}

/// One plugin as written in `plugins.yaml`.
#[derive(Debug, Default)]
pub struct PluginConfig {
    pub name: String,
    pub file: String,
    pub config: Option<serde_yaml::Value>,
    pub on_error: Option<OnError>,
    pub deadline_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub fuel: Option<u64>,
    pub allowed_hosts: Vec<String>,
    pub batch: Option<usize>,
    pub deliver: Option<Deliver>,
}

const EMPTY: &str = "is empty: an empty or truncated file would silently drop every filter; \
    write `predicates: []` (or `sinks: []`) for a set without plugins";

/// Read the file's structure, field by field, so that a value of the wrong type is one
/// problem among the others, not the only one reported.
/// Also returns every problem found (none: the file is well-formed).
fn read_file(text: &str) -> (PluginsFile, Vec<String>) {
    let mut file = PluginsFile::default();
    if text.trim().is_empty() {
        return (file, vec![format!("{FILE_NAME} {EMPTY}")]);
    }
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(error) => return (file, vec![format!("{FILE_NAME}: {error}")]),
    };
    let mapping = match value {
        serde_yaml::Value::Mapping(mapping) => mapping,
        // Only comments.
        serde_yaml::Value::Null => return (file, vec![format!("{FILE_NAME} {EMPTY}")]),
        _ => {
            let message =
                format!("{FILE_NAME}: expected a mapping with `predicates` and/or `sinks`");
            return (file, vec![message]);
        }
    };
    let mut errors = Vec::new();
    let mut declared = false;
    for (key, value) in mapping {
        match key.as_str() {
            Some("predicates") => {
                declared = true;
                file.predicates = read_list("predicates", value, &mut errors);
            }
            Some("sinks") => {
                declared = true;
                file.sinks = read_list("sinks", value, &mut errors);
            }
            Some("on-error") => file.on_error = typed(FILE_NAME, "on-error", value, &mut errors),
            _ => errors.push(format!(
                "{FILE_NAME}: unknown key {}: expected predicates, sinks or on-error",
                key_text(&key)
            )),
        }
    }
    if !declared && errors.is_empty() {
        errors.push(format!("{FILE_NAME} {EMPTY}"));
    }
    (file, errors)
}

fn key_text(key: &serde_yaml::Value) -> String {
    serde_yaml::to_string(key).map_or_else(|_| "?".into(), |text| text.trim().to_owned())
}

/// `value` as a `T`, or a problem recorded (and `None`).
fn typed<T: serde::de::DeserializeOwned>(
    at: &str,
    key: &str,
    value: serde_yaml::Value,
    errors: &mut Vec<String>,
) -> Option<T> {
    match serde_yaml::from_value(value) {
        Ok(value) => Some(value),
        Err(error) => {
            errors.push(format!("{at}: {key}: {error}"));
            None
        }
    }
}

fn read_list(
    section: &str,
    value: serde_yaml::Value,
    errors: &mut Vec<String>,
) -> Vec<PluginConfig> {
    let items = match value {
        serde_yaml::Value::Sequence(items) => items,
        _ => {
            errors.push(format!(
                "{FILE_NAME}: {section} must be a list (write `{section}: []` for none)"
            ));
            return Vec::new();
        }
    };
    let mut configs = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let serde_yaml::Value::Mapping(mut fields) = item else {
            errors.push(format!(
                "{section}[{index}]: expected a mapping with name and file"
            ));
            continue;
        };
        let mut at = format!("{section}[{index}]");
        let mut config = PluginConfig::default();
        let mut complete = true;
        match fields
            .remove("name")
            .map(|v| typed::<String>(&at, "name", v, errors))
        {
            Some(Some(name)) => {
                at = format!("plugin {name:?}");
                config.name = name;
            }
            Some(None) => complete = false,
            None => {
                errors.push(format!("{at}: name is missing"));
                complete = false;
            }
        }
        match fields
            .remove("file")
            .map(|v| typed::<String>(&at, "file", v, errors))
        {
            Some(Some(file)) => config.file = file,
            Some(None) => complete = false,
            None => {
                errors.push(format!("{at}: file is missing"));
                complete = false;
            }
        }
        for (key, value) in fields {
            match key.as_str() {
                Some("config") => config.config = Some(value),
                Some("on-error") => config.on_error = typed(&at, "on-error", value, errors),
                Some("deadline-ms") => {
                    config.deadline_ms = typed(&at, "deadline-ms", value, errors)
                }
                Some("memory-mb") => config.memory_mb = typed(&at, "memory-mb", value, errors),
                Some("fuel") => config.fuel = typed(&at, "fuel", value, errors),
                Some("allowed-hosts") => {
                    config.allowed_hosts =
                        typed(&at, "allowed-hosts", value, errors).unwrap_or_default();
                }
                Some("batch") => config.batch = typed(&at, "batch", value, errors),
                Some("deliver") => config.deliver = typed(&at, "deliver", value, errors),
                _ => errors.push(format!(
                    "{at}: unknown key {}: expected name, file, config, on-error, deadline-ms, \
                     memory-mb, fuel, allowed-hosts, batch or deliver",
                    key_text(&key)
                )),
            }
        }
        // A plugin with a type error in another field is still range-checked, so its other
        // problems are reported too (the set is refused either way).
        if complete {
            configs.push(config);
        }
    }
    configs
}

/// A validated plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub name: String,
    pub kind: PluginKind,
    /// As written (relative to the directory), for status.
    pub file: String,
    pub path: PathBuf,
    /// The plugin's `config` as JSON text (`null` when absent).
    pub config_json: String,
    pub on_error: OnError,
    pub deadline_ms: u64,
    pub memory_bytes: u64,
    pub fuel: Option<u64>,
    /// Lower-cased `host` or `host:port` entries.
    pub allowed_hosts: Vec<String>,
    pub batch: usize,
    /// Sinks: which events (see [`Deliver`]).
    pub deliver: Deliver,
}

/// A validated set: predicates in order, then sinks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetSpec {
    pub on_error: OnError,
    pub predicates: Vec<PluginSpec>,
    pub sinks: Vec<PluginSpec>,
}

/// Parse and validate `plugins.yaml` text; `dir` resolves the `.wasm` paths. On failure,
/// every problem found, one message each.
pub fn parse(dir: &Path, text: &str) -> Result<SetSpec, Vec<String>> {
    let (file, mut errors) = read_file(text);
    let mut names = HashSet::new();
    let mut set = SetSpec {
        on_error: file.on_error.unwrap_or_default(),
        ..SetSpec::default()
    };
    for (kind, configs) in [
        (PluginKind::Predicate, file.predicates),
        (PluginKind::Sink, file.sinks),
    ] {
        for config in configs {
            if !names.insert(config.name.clone()) {
                errors.push(format!("plugin {:?}: the name is used twice", config.name));
                continue;
            }
            match validate(dir, kind, config) {
                Ok(spec) if kind == PluginKind::Predicate => set.predicates.push(spec),
                Ok(spec) => set.sinks.push(spec),
                Err(mut problems) => errors.append(&mut problems),
            }
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

fn validate(dir: &Path, kind: PluginKind, config: PluginConfig) -> Result<PluginSpec, Vec<String>> {
    let name = config.name;
    let mut errors = Vec::new();
    let mut problem = |message: String| errors.push(format!("plugin {name:?}: {message}"));

    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        problem("the name must be 1-63 letters, digits, '-' or '_'".into());
    }
    // The file must stay inside the directory: a ConfigMap key, or a path below the mount.
    let relative = Path::new(&config.file);
    if config.file.is_empty()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        problem(format!(
            "file {:?} must be a relative path inside the plugins directory",
            config.file
        ));
    }
    let (default_deadline, on_error_allowed, hosts_allowed) = match kind {
        PluginKind::Predicate => (DEFAULT_PREDICATE_DEADLINE_MS, true, false),
        PluginKind::Sink => (DEFAULT_SINK_DEADLINE_MS, false, true),
    };
    let deadline_ms = config.deadline_ms.unwrap_or(default_deadline);
    if deadline_ms == 0 || deadline_ms > MAX_DEADLINE_MS {
        problem(format!(
            "deadline-ms must be between 1 and {MAX_DEADLINE_MS}"
        ));
    }
    let memory_mb = config.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
    if memory_mb == 0 || memory_mb > MAX_MEMORY_MB {
        problem(format!("memory-mb must be between 1 and {MAX_MEMORY_MB}"));
    }
    if config.fuel == Some(0) {
        problem("fuel must be positive (leave it out for no budget)".into());
    }
    if !on_error_allowed && config.on_error.is_some() {
        problem("on-error applies to predicates only (a failed sink delivery is retried)".into());
    }
    if !hosts_allowed && !config.allowed_hosts.is_empty() {
        problem("allowed-hosts applies to sinks only: predicates get no network".into());
    }
    if kind == PluginKind::Predicate && config.batch.is_some() {
        problem("batch applies to sinks only".into());
    }
    if kind == PluginKind::Predicate && config.deliver.is_some() {
        problem("deliver applies to sinks only".into());
    }
    let batch = config.batch.unwrap_or(DEFAULT_BATCH);
    if batch == 0 || batch > 10_000 {
        problem("batch must be between 1 and 10000".into());
    }
    for host in &config.allowed_hosts {
        if host.is_empty() || host.contains(['/', '*', ' ']) {
            problem(format!(
                "allowed host {host:?} must be a host name or host:port, without scheme or wildcard"
            ));
        }
    }
    let config_json = match config
        .config
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
    {
        Ok(json) => json.unwrap_or_else(|| "null".into()),
        Err(error) => {
            problem(format!("config cannot be expressed as JSON: {error}"));
            String::new()
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PluginSpec {
        name,
        kind,
        path: dir.join(relative),
        file: config.file,
        config_json,
        on_error: config.on_error.unwrap_or_default(),
        deadline_ms,
        memory_bytes: memory_mb * 1024 * 1024,
        fuel: config.fuel,
        allowed_hosts: config
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        batch,
        deliver: config.deliver.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_and_order() {
        let text = r#"
predicates:
  - {name: b, file: b.wasm, config: {x: [1, 2]}}
  - {name: a, file: sub/a.wasm, on-error: skip, deadline-ms: 20, memory-mb: 8, fuel: 1000}
sinks:
  - {name: s, file: s.wasm, allowed-hosts: [Example.com:8080], batch: 5}
"#;
        let set = parse(Path::new("/p"), text).unwrap();
        let names: Vec<_> = set.predicates.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(set.predicates[0].config_json, r#"{"x":[1,2]}"#);
        assert_eq!(set.predicates[0].deadline_ms, DEFAULT_PREDICATE_DEADLINE_MS);
        assert_eq!(set.predicates[0].on_error, OnError::Capture);
        assert_eq!(set.predicates[1].on_error, OnError::Skip);
        assert_eq!(set.predicates[1].memory_bytes, 8 << 20);
        assert_eq!(set.predicates[1].path, Path::new("/p/sub/a.wasm"));
        assert_eq!(set.sinks[0].allowed_hosts, ["example.com:8080"]);
        assert_eq!(set.sinks[0].deadline_ms, DEFAULT_SINK_DEADLINE_MS);
        assert_eq!(set.sinks[0].config_json, "null");
        assert_eq!(
            parse(Path::new("/p"), "predicates: []").unwrap(),
            SetSpec::default()
        );
        assert_eq!(
            parse(Path::new("/p"), "sinks: []\n").unwrap(),
            SetSpec::default()
        );
        let chain = parse(Path::new("/p"), "on-error: skip\npredicates: []").unwrap();
        assert_eq!(chain.on_error, OnError::Skip);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let text = r#"
predicates:
  - {name: a, file: ../a.wasm, allowed-hosts: [x]}
  - {name: a, file: a.wasm}
  - {name: "bad name", file: b.wasm, deadline-ms: 0}
sinks:
  - {name: s, file: /abs.wasm, on-error: skip, allowed-hosts: ["http://x"]}
"#;
        let errors = parse(Path::new("/p"), text).unwrap_err();
        let all = errors.join("\n");
        for expected in [
            "must be a relative path",
            "allowed-hosts applies to sinks only",
            "the name is used twice",
            "the name must be",
            "deadline-ms must be",
            "on-error applies to predicates only",
            "without scheme",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert!(parse(Path::new("/p"), "predicates: [{name: a}]").is_err());
        assert!(parse(Path::new("/p"), "unknown: 1").is_err());
    }

    #[test]
    fn an_empty_file_is_an_error_unless_it_says_no_plugins() {
        // A torn write or an empty ConfigMap key must not silently drop every filter.
        for text in ["", "  \n\t\n", "# only a comment\n", "---\n"] {
            let errors = parse(Path::new("/p"), text).unwrap_err();
            assert!(errors[0].contains("is empty"), "{text:?}: {errors:?}");
            assert!(errors[0].contains("predicates: []"), "{errors:?}");
        }
        assert!(parse(Path::new("/p"), "predicates:\n").unwrap_err()[0].contains("must be a list"));
    }

    #[test]
    fn a_type_error_does_not_hide_the_other_problems() {
        let text = r#"
predicates:
  - {name: a, file: a.wasm, deadline-ms: "fast", memory-mb: 0}
  - {name: b, file: b.wasm, fuel: -1, deadline-ms: 999999, colour: red}
  - {file: c.wasm}
sinks:
  - {name: s, file: s.wasm, batch: 0, allowed-hosts: "x"}
on-error: maybe
"#;
        let all = parse(Path::new("/p"), text).unwrap_err().join("\n");
        for expected in [
            "plugin \"a\": deadline-ms: invalid type: string \"fast\"",
            "plugin \"a\": memory-mb must be between",
            "plugin \"b\": fuel: invalid value",
            "plugin \"b\": deadline-ms must be between",
            "plugin \"b\": unknown key colour",
            "predicates[2]: name is missing",
            "plugin \"s\": allowed-hosts: invalid type",
            "plugin \"s\": batch must be between",
            "plugins.yaml: on-error: unknown variant `maybe`",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }
}
