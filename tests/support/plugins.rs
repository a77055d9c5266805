//! Building the plugins of this repository for the tests: Rust plugins with cargo for
//! `wasm32-wasip2`, the Python one with componentize-py, the JavaScript one with jco.
//! Each is built once per test process. A missing toolchain fails loudly, naming the
//! script that installs it (`scripts/plugin-toolchains.sh`), rather than skipping.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::repo_root;

/// Every Rust plugin package, built together (one cargo invocation).
pub const RUST_PLUGINS: [&str; 7] = [
    "logistis-plugin-users",
    "logistis-plugin-namespaces",
    "logistis-plugin-resources",
    "logistis-plugin-sink-log",
    "logistis-plugin-sink-webhook",
    "logistis-plugin-sink-slack",
    "logistis-plugin-misbehave",
];

const HINT: &str = "run scripts/plugin-toolchains.sh to install the plugin toolchains";

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}); {HINT}"));
    assert!(
        output.status.success(),
        "{what} failed ({HINT}):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The component of a Rust plugin package (`logistis-plugin-users`).
pub fn rust_plugin(package: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.current_dir(repo_root()).args([
            "build",
            "--quiet",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
        ]);
        for package in RUST_PLUGINS {
            command.args(["-p", package]);
        }
        run(
            &mut command,
            "cargo build --target wasm32-wasip2 (the Rust plugins)",
        );
    });
    let path = wasm_dir().join(format!("{}.wasm", package.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn wasm_dir() -> PathBuf {
    // The test binary lives in <target>/debug/deps: the target dir is two levels up.
    crate::target_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .join("wasm32-wasip2/plugin")
}

/// A compiled-component cache shared by every server the tests start
/// (`--plugins-cache-dir`): each component is compiled once per target dir, not once per
/// test — a Python or JavaScript component takes seconds to compile, milliseconds to load.
pub fn shared_cache_dir() -> PathBuf {
    let dir = wasm_dir().join("compiled-cache");
    std::fs::create_dir_all(&dir).expect("create the compiled plugin cache dir");
    dir
}

/// Where built foreign-language plugins go (inside the target dir, never the sources).
fn out_dir() -> PathBuf {
    let dir = wasm_dir().join("foreign");
    std::fs::create_dir_all(&dir).expect("create the plugin output dir");
    dir
}

/// The Python predicate (`plugins/predicate-python`), built with componentize-py.
pub fn python_plugin() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = &*built {
        return path.clone();
    }
    let source = repo_root().join("plugins/predicate-python");
    let out = out_dir().join("predicate_python.wasm");
    if is_fresh(&out, &[source.join("app.py")]) {
        *built = Some(out.clone());
        return out;
    }
    run(
        Command::new("componentize-py")
            .current_dir(&source)
            .arg("-d")
            .arg(repo_root().join("wit"))
            .args(["-w", "predicate", "componentize", "app", "-o"])
            .arg(&out),
        "componentize-py",
    );
    *built = Some(out.clone());
    out
}

/// The JavaScript predicate (`plugins/predicate-js`), built with jco (componentize-js).
pub fn js_plugin() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = &*built {
        return path.clone();
    }
    let source = repo_root().join("plugins/predicate-js");
    let jco = source.join("node_modules/.bin/jco");
    assert!(jco.is_file(), "{} is missing; {HINT}", jco.display());
    let out = out_dir().join("predicate_js.wasm");
    if is_fresh(&out, &[source.join("app.js"), source.join("package.json")]) {
        *built = Some(out.clone());
        return out;
    }
    run(
        Command::new(&jco)
            .current_dir(&source)
            .args(["componentize", "app.js", "--wit"])
            .arg(repo_root().join("wit"))
            .args(["--world-name", "predicate", "-d", "all", "-o"])
            .arg(&out),
        "jco componentize",
    );
    *built = Some(out.clone());
    out
}

/// Whether `out` is newer than `sources` and the WIT package. componentize-py and jco do
/// not build byte-identical components twice, so rebuilding unchanged sources would also
/// defeat the compiled cache (keyed by content) and cost a compile of tens of seconds.
fn is_fresh(out: &Path, sources: &[PathBuf]) -> bool {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let Some(built) = modified(out) else {
        return false;
    };
    let wit = std::fs::read_dir(repo_root().join("wit"))
        .map(|dir| dir.flatten().map(|entry| entry.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    sources
        .iter()
        .chain(&wit)
        .all(|source| modified(source).is_some_and(|time| time <= built))
}

/// A plugins directory laid out as a ConfigMap mount: `..<version>/` holds the files,
/// `..data` points at it, and each visible name is a symlink through `..data`. Updates
/// write a new version directory and swap `..data` with one rename, as the kubelet does.
pub struct ConfigMapDir {
    dir: tempfile::TempDir,
    version: u32,
}

impl ConfigMapDir {
    /// An empty mount (no `plugins.yaml` yet).
    pub fn new() -> ConfigMapDir {
        ConfigMapDir {
            dir: tempfile::tempdir().expect("tempdir"),
            version: 0,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Publish a new content atomically: `files` are (name, bytes) pairs.
    pub fn publish(&mut self, files: &[(&str, Vec<u8>)]) {
        self.version += 1;
        let root = self.dir.path();
        let version_dir = root.join(format!(
            "..2026_01_01_00_00_{:02}.{}",
            self.version,
            std::process::id()
        ));
        std::fs::create_dir(&version_dir).unwrap();
        for (name, bytes) in files {
            std::fs::write(version_dir.join(name), bytes).unwrap();
        }
        // The kubelet's swap: a new symlink beside `..data`, renamed over it (atomic).
        let tmp = root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(version_dir.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
        for (name, _) in files {
            let link = root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
    }
}

impl Default for ConfigMapDir {
    fn default() -> Self {
        ConfigMapDir::new()
    }
}
