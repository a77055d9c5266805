//! `logistis plugin new NAME --lang rust|python|js`: a predicate plugin project that builds
//! and runs with `logistis plugin run` on the first try, the way `kwctl scaffold` and `cargo
//! generate` spare people the boilerplate. Each project has the plugin (skip changes outside
//! the namespaces named in its config), a native test of its logic, a sample config and
//! AdmissionReview, the WIT it is built against, and a README with the build, test and run
//! commands.
//!
//! A Rust project depends on the SDK by path when this binary was built from a clone that is
//! still there (`--sdk` to choose), else by git; it is its own workspace with its own
//! release profile, so it builds wherever it is put.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The WIT package every plugin is built against, as this binary's host links it.
const WIT: &str = include_str!("../../../wit/types.wit");
const REPOSITORY: &str = "https://github.com/logistis/logistis";
/// The SDK beside this binary's sources, when the clone it was built from is still there.
const SOURCE_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// `logistis plugin new`
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name (letters, digits and `-`): the directory and the component's name
    #[arg(value_name = "NAME")]
    name: String,
    /// The language of the guest
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to create it [default: ./NAME]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Rust: the SDK to depend on, a path or a git URL [default: the clone this binary was
    /// built from, else the repository]
    #[arg(long, value_name = "PATH|URL")]
    sdk: Option<String>,
}

/// Creates the project; returns its directory.
pub fn run(args: NewArgs) -> anyhow::Result<PathBuf> {
    let name = args.name.as_str();
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        bail!("{name:?} is not a plugin name: use letters, digits and `-`, starting with a letter");
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} exists and is not empty", dir.display());
    }
    let files = match args.lang {
        Lang::Rust => rust(name, &sdk_dependency(args.sdk.as_deref())),
        Lang::Python => python(name),
        Lang::Js => js(name),
    };
    for (path, text) in files.into_iter().chain(common(name, args.lang)) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

/// `logistis-plugin-sdk = …` for Cargo.toml.
fn sdk_dependency(sdk: Option<&str>) -> String {
    let path_or_git = |value: &str| {
        if value.contains("://") {
            format!("{{ git = \"{value}\" }}")
        } else {
            let path = std::fs::canonicalize(value).unwrap_or_else(|_| PathBuf::from(value));
            format!("{{ path = {:?} }}", path.display().to_string())
        }
    };
    match sdk {
        Some(value) => path_or_git(value),
        None if Path::new(SOURCE_SDK).join("Cargo.toml").is_file() => path_or_git(SOURCE_SDK),
        None => path_or_git(REPOSITORY),
    }
}

type Files = Vec<(&'static str, String)>;

fn snake(name: &str) -> String {
    name.replace('-', "_")
}

fn rust(name: &str, sdk: &str) -> Files {
    let crate_name = snake(name);
    vec![
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
logistis-plugin-sdk = {sdk}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A workspace of its own, so that it builds wherever it is put.
[workspace]

# Small components: a ConfigMap holds at most 1 MiB.
[profile.release]
opt-level = "s"
lto = true
strip = true
"#
            ),
        ),
        (
            "src/lib.rs",
            format!(
                r##"//! {name}: a Logistis capture predicate. Captures changes in the namespaces its config
//! names (globs) and cluster-scoped objects; skips the rest.
//!
//! ```yaml
//! config: {{namespaces: ["prod-*"]}}
//! ```

use logistis_plugin_sdk::{{Event, Predicate, Verdict}};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {{
    #[serde(default)]
    namespaces: Vec<String>,
}}

pub struct Plugin {{
    namespaces: Vec<String>,
}}

impl Plugin {{
    /// The logic, pure: tested natively with `cargo test`.
    fn verdict(&self, event: &Event) -> Verdict {{
        if event.resource.namespace.is_empty() || event.namespace_in(&self.namespaces) {{
            Verdict::Capture
        }} else {{
            Verdict::Skip
        }}
    }}
}}

impl Predicate for Plugin {{
    fn configure(config: &str) -> Result<Self, String> {{
        let config: Config = logistis_plugin_sdk::config::parse(config)?;
        Ok(Plugin {{
            namespaces: config.namespaces,
        }})
    }}

    fn evaluate(&self, event: &Event) -> Verdict {{
        self.verdict(event)
    }}
}}

logistis_plugin_sdk::export_predicate!(Plugin);

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn captures_only_the_configured_namespaces() {{
        let plugin = Plugin::configure(r#"{{"namespaces": ["prod-*"]}}"#).unwrap();
        let mut event = logistis_plugin_sdk::testing::event();
        event.resource.namespace = "prod-eu".into();
        assert_eq!(plugin.verdict(&event), Verdict::Capture);
        event.resource.namespace = "dev".into();
        assert_eq!(plugin.verdict(&event), Verdict::Skip);
        assert!(Plugin::configure(r#"{{"namespace": []}}"#).is_err());
    }}
}}
"##
            ),
        ),
        (
            "build.sh",
            format!(
                "#!/bin/sh\n# Builds {name}.wasm (needs `rustup target add wasm32-wasip2`).\nset -e\n\
                 cd \"$(dirname \"$0\")\"\ncargo build --release --target wasm32-wasip2\n\
                 cp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{crate_name}.wasm\" {name}.wasm\n"
            ),
        ),
    ]
}

fn python(name: &str) -> Files {
    vec![
        (
            "app.py",
            format!(
                r#""""{name}: a Logistis capture predicate (componentize-py).

Captures changes in the namespaces its config names (globs) and cluster-scoped objects;
skips the rest.  config: {{namespaces: ["prod-*"]}}
"""

from __future__ import annotations

import fnmatch
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types


def parse_config(text: str) -> list[str]:
    config = json.loads(text) if text.strip() else None
    if config is None:
        return []
    if not isinstance(config, dict) or set(config) - {{"namespaces"}}:
        raise ValueError("config accepts only {{namespaces: [globs]}}")
    namespaces = config.get("namespaces", [])
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise ValueError("config.namespaces must be a list of strings")
    return namespaces


def should_capture(namespaces: list[str], namespace: str) -> bool:
    """The logic, pure: tested natively with `python3 -m unittest test_app`."""
    return namespace == "" or any(fnmatch.fnmatchcase(namespace, n) for n in namespaces)


class WitWorld(wit_world.WitWorld):
    namespaces: list[str] = []

    def configure(self, config: str) -> None:
        try:
            WitWorld.namespaces = parse_config(config)
        except ValueError as error:
            raise Err(str(error))
        host.log(types.Level.INFO, f"capturing namespaces {{WitWorld.namespaces}}")

    def evaluate(self, event: types.Event) -> types.Verdict:
        if should_capture(WitWorld.namespaces, event.resource.namespace):
            return types.Verdict.CAPTURE
        return types.Verdict.SKIP
"#
            ),
        ),
        (
            "test_app.py",
            r#"import sys
import types
import unittest

# The generated bindings exist only inside the component: stand in for them natively.
wit_world = types.ModuleType("wit_world")
wit_world.WitWorld = object
imports = types.ModuleType("wit_world.imports")
imports.host = types.SimpleNamespace(log=lambda level, message: None)
imports.types = types.SimpleNamespace()
sys.modules.update({"wit_world": wit_world, "wit_world.imports": imports})
sys.modules["componentize_py_types"] = types.SimpleNamespace(Err=Exception)

import app  # noqa: E402


class Logic(unittest.TestCase):
    def test_captures_only_the_configured_namespaces(self):
        namespaces = app.parse_config('{"namespaces": ["prod-*"]}')
        self.assertTrue(app.should_capture(namespaces, "prod-eu"))
        self.assertFalse(app.should_capture(namespaces, "dev"))
        self.assertTrue(app.should_capture(namespaces, ""))
        with self.assertRaises(ValueError):
            app.parse_config('{"namespace": []}')


if __name__ == "__main__":
    unittest.main()
"#
            .to_owned(),
        ),
        (
            "build.sh",
            format!(
                "#!/bin/sh\n# Builds {name}.wasm (needs `pip install componentize-py==0.25.1`).\nset -e\n\
                 cd \"$(dirname \"$0\")\"\ncomponentize-py -d wit -w predicate componentize app -o {name}.wasm\n"
            ),
        ),
    ]
}

fn js(name: &str) -> Files {
    vec![
        (
            "app.js",
            format!(
                r#"// {name}: a Logistis capture predicate (jco / componentize-js).
//
// Captures changes in the namespaces its config names (globs with `*`) and cluster-scoped
// objects; skips the rest.  config: {{namespaces: ["prod-*"]}}
import {{ log }} from 'logistis:plugin/host@0.1.0';

let namespaces = [];

// The logic, pure: tested natively with `npm test`.
export function parseConfig(text) {{
  const config = JSON.parse(text);
  if (config === null) return [];
  const list = config.namespaces ?? [];
  if (Object.keys(config).some((k) => k !== 'namespaces') || !Array.isArray(list)
      || list.some((n) => typeof n !== 'string')) {{
    throw new Error('config accepts only {{namespaces: [globs]}}');
  }}
  return list;
}}

export function shouldCapture(patterns, namespace) {{
  const glob = (pattern) => {{
    const parts = pattern.split('*');
    if (parts.length === 1) return pattern === namespace;
    const last = parts[parts.length - 1];
    if (!namespace.startsWith(parts[0]) || namespace.length < parts[0].length + last.length) return false;
    let at = parts[0].length;
    for (const middle of parts.slice(1, -1)) {{
      const found = namespace.indexOf(middle, at);
      if (found < 0) return false;
      at = found + middle.length;
    }}
    return namespace.length - at >= last.length && namespace.endsWith(last);
  }};
  return namespace === '' || patterns.some(glob);
}}

export function configure(config) {{
  namespaces = parseConfig(config);
  log('info', `capturing namespaces ${{namespaces.join(', ')}}`);
}}

export function evaluate(event) {{
  return shouldCapture(namespaces, event.resource.namespace) ? 'capture' : 'skip';
}}
"#
            ),
        ),
        (
            "package.json",
            format!(
                r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "jco componentize app.js --wit wit --world-name predicate -d all -o {name}.wasm",
    "test": "node --test test_app.mjs"
  }},
  "devDependencies": {{
    "@bytecodealliance/jco": "1.35.0",
    "@bytecodealliance/componentize-js": "0.23.0"
  }},
  "overrides": {{
    "@bytecodealliance/preview2-shim": "0.25.0"
  }}
}}
"#
            ),
        ),
        (
            "test_app.mjs",
            r#"// The logic, natively: the `logistis:plugin/host` import exists only inside the
// component, so a loader hook stands in for it.
import { register } from 'node:module';
import { test } from 'node:test';
import assert from 'node:assert/strict';

register('data:text/javascript,' + encodeURIComponent(`
  export async function resolve(specifier, context, next) {
    if (specifier.startsWith('logistis:plugin/host')) {
      return { url: 'data:text/javascript,export function log() {}', shortCircuit: true };
    }
    return next(specifier, context);
  }`));
const app = await import('./app.js');

test('captures only the configured namespaces', () => {
  const namespaces = app.parseConfig('{"namespaces": ["prod-*"]}');
  assert.equal(app.shouldCapture(namespaces, 'prod-eu'), true);
  assert.equal(app.shouldCapture(namespaces, 'dev'), false);
  assert.equal(app.shouldCapture(namespaces, ''), true);
  assert.throws(() => app.parseConfig('{"namespace": []}'));
});
"#
            .to_owned(),
        ),
        (
            "build.sh",
            format!(
                "#!/bin/sh\n# Builds {name}.wasm (jco 1.35 and componentize-js 0.23, pinned in package.json).\nset -e\n\
                 cd \"$(dirname \"$0\")\"\n[ -x node_modules/.bin/jco ] || npm install --no-audit --no-fund\nnpm run build\n"
            ),
        ),
    ]
}

/// The WIT, a sample config and review, and the README: the same for every language.
fn common(name: &str, lang: Lang) -> Files {
    let (test, size) = match lang {
        Lang::Rust => ("cargo test", "~100 KB"),
        Lang::Python => ("python3 -m unittest test_app", "~18 MB"),
        Lang::Js => ("npm test", "~12 MB"),
    };
    vec![
        ("wit/types.wit", WIT.to_owned()),
        ("config.yaml", "namespaces: [\"prod-*\"]\n".to_owned()),
        ("review.json", sample_review()),
        (
            "README.md",
            format!(
                r#"# {name}

A Logistis capture predicate: captures changes in the namespaces `config.yaml` names (globs)
and cluster-scoped objects, skips the rest. Created by `logistis plugin new`.

```sh
{test}                                   # the logic, natively
sh build.sh                              # → {name}.wasm ({size})
logistis plugin run --plugin {name}.wasm --config config.yaml review.json
logistis plugin bench --plugin {name}.wasm --config config.yaml review.json
```

`review.json` is a real-looking AdmissionReview (a Deployment created in `prod-eu`): the
verdict is `capture`; change its namespace to see `skip`. To run it in the server, put
`{name}.wasm` in the plugins directory and add it to `plugins.yaml`:

```yaml
predicates:
  - name: {name}
    file: {name}.wasm
    config: {{namespaces: ["prod-*"]}}
```

`wit/types.wit` is the interface the host implements (`logistis:plugin@0.1.0`), documented
inline.
"#
            ),
        ),
    ]
}

/// A CREATE of a Deployment in `prod-eu`, as the API server sends it.
fn sample_review() -> String {
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5c1e3a2b-0000-4000-8000-000000000001",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web",
            "namespace": "prod-eu",
            "operation": "CREATE",
            "userInfo": {"username": "alice@example.com", "groups": ["system:authenticated"]},
            "object": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "prod-eu", "uid": "0d3f-0001"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "registry.example.com/web:1.4.0"}]}
                    }
                }
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "kubectl-create"}
        }
    });
    serde_json::to_string_pretty(&review).expect("JSON") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_a_directory_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let new = |name: &str, lang| NewArgs {
            name: name.into(),
            lang,
            dir: Some(dir.path().join(name)),
            sdk: Some("https://example.com/logistis".into()),
        };
        assert!(run(new("Bad Name", Lang::Rust)).is_err());
        let made = run(new("only-prod", Lang::Rust)).unwrap();
        let manifest = std::fs::read_to_string(made.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("logistis-plugin-sdk = { git = \"https://example.com/logistis\" }")
        );
        assert!(manifest.contains("[workspace]"));
        assert!(made.join("wit/types.wit").is_file() && made.join("review.json").is_file());
        assert!(
            run(new("only-prod", Lang::Rust)).is_err(),
            "not over an existing project"
        );
        for lang in [Lang::Python, Lang::Js] {
            let name = format!("p-{lang:?}").to_lowercase();
            let made = run(new(&name, lang)).unwrap();
            assert!(
                std::fs::read_to_string(made.join("README.md"))
                    .unwrap()
                    .contains("plugin run")
            );
        }
    }

    #[test]
    fn the_sample_review_is_one_the_admission_code_reads() {
        let (api_version, request) = crate::admission::review::parse(sample_review().as_bytes())
            .expect("a valid AdmissionReview");
        assert_eq!(api_version, "admission.k8s.io/v1");
        assert_eq!(request.uid, "5c1e3a2b-0000-4000-8000-000000000001");
        assert_eq!(request.namespace.as_deref(), Some("prod-eu"));
    }
}
