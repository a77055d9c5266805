//! `logistis plugin new`: each language's project, created outside the repository, passes
//! its own native test, builds with its `build.sh`, and runs with `logistis plugin run` on the
//! sample review — `capture` in `prod-eu`, `skip` once the review is moved to another
//! namespace. The toolchains are the ones `scripts/plugin-toolchains.sh` installs.

use std::path::Path;
use std::process::Command;

use logistis_e2e::{cargo_bin, target_dir};
use serde_json::Value;

fn ok(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e} (scripts/plugin-toolchains.sh installs the toolchains)")
    });
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn verdict(dir: &Path, name: &str, review: &Path) -> String {
    let out = ok(
        Command::new(cargo_bin("logistis", "logistis"))
            .current_dir(dir)
            .args([
                "plugin",
                "run",
                "--plugin",
                &format!("{name}.wasm"),
                "--config",
                "config.yaml",
                // The verdict is checked here, not the speed: a debug build on a busy machine
                // can take an interpreted guest past the default 5 ms.
                "--deadline-ms",
                "1000",
            ])
            .arg(review)
            .env("RUST_LOG", "warn"),
        "logistis plugin run",
    );
    let answer: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    answer["verdict"].as_str().unwrap().to_owned()
}

fn scaffold_builds_and_runs(lang: &str, native_test: &[&str]) {
    let root = tempfile::tempdir().unwrap();
    let name = format!("only-prod-{lang}");
    let dir = root.path().join(&name);
    let said = ok(
        Command::new(cargo_bin("logistis", "logistis"))
            .args(["plugin", "new", &name, "--lang", lang, "--dir"])
            .arg(&dir),
        "logistis plugin new",
    );
    assert!(said.contains("README.md"), "{said}");
    // Built the way its README says, with a cache for the Rust dependencies across runs.
    let cache = target_dir().join("scaffold-target");
    ok(
        Command::new(native_test[0])
            .args(&native_test[1..])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &cache),
        &format!("{lang}: {}", native_test.join(" ")),
    );
    ok(
        Command::new("sh")
            .arg("build.sh")
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &cache),
        &format!("{lang}: sh build.sh"),
    );
    assert_eq!(verdict(&dir, &name, &dir.join("review.json")), "capture");
    let mut review: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("review.json")).unwrap()).unwrap();
    review["request"]["namespace"] = "dev".into();
    let elsewhere = root.path().join("dev.json");
    std::fs::write(&elsewhere, review.to_string()).unwrap();
    assert_eq!(verdict(&dir, &name, &elsewhere), "skip");
}

#[test]
fn a_rust_scaffold_builds_and_runs() {
    scaffold_builds_and_runs("rust", &["cargo", "test", "--quiet"]);
}

#[test]
fn a_python_scaffold_builds_and_runs() {
    scaffold_builds_and_runs("python", &["python3", "-m", "unittest", "test_app"]);
}

#[test]
fn a_javascript_scaffold_builds_and_runs() {
    scaffold_builds_and_runs(
        "js",
        &[
            "sh",
            "-c",
            "npm install --no-audit --no-fund --loglevel=error && npm test",
        ],
    );
}
