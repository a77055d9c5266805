//! `make dist`: the release archives of kubectl-blame, their sums and the krew manifest.
//! Built here with the dev profile (the binary the tests build anyway; `make dist` defaults
//! to release), then checked as krew would: the manifest against krew's own validation rules
//! (krew is not installed here) and a strict model of its fields, every archive against its
//! sha256, and the packed binary run.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use logistis_e2e::{cargo_bin, repo_root, target_dir};
use serde::Deserialize;

/// krew's `index.Plugin` (krew.googlecontainertools.github.com/v1alpha2), every field; an
/// unknown one is an error, as krew's strict decoding makes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Plugin {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    version: String,
    #[serde(default)]
    homepage: String,
    short_description: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    caveats: String,
    platforms: Vec<Platform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Platform {
    selector: Selector,
    uri: String,
    sha256: String,
    bin: String,
    files: Option<Vec<FileOperation>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Selector {
    match_labels: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOperation {
    from: String,
    to: String,
}

/// krew's `ValidatePlugin` (internal/index/validation), rule by rule.
fn krew_validate(file_name: &str, plugin: &Plugin) -> Result<(), String> {
    if plugin.api_version != "krew.googlecontainertools.github.com/v1alpha2" {
        return Err(format!("apiVersion {}", plugin.api_version));
    }
    if plugin.kind != "Plugin" {
        return Err(format!("kind {}", plugin.kind));
    }
    let name = &plugin.metadata.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("unsafe plugin name {name:?}"));
    }
    if file_name != format!("{name}.yaml") {
        return Err(format!(
            "the manifest of {name} must be {name}.yaml, not {file_name}"
        ));
    }
    let spec = &plugin.spec;
    if spec.short_description.is_empty() || spec.short_description.contains(['\r', '\n']) {
        return Err("shortDescription must be one non-empty line".into());
    }
    if spec.platforms.is_empty() {
        return Err("no platform".into());
    }
    let semver = spec
        .version
        .strip_prefix('v')
        .ok_or("version must start with v")?;
    let core = semver.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || p.parse::<u64>().is_err())
    {
        return Err(format!("version {} is not semver", spec.version));
    }
    for platform in &spec.platforms {
        if platform.uri.is_empty() || platform.bin.is_empty() {
            return Err("uri and bin must be set".into());
        }
        if platform.sha256.len() != 64
            || !platform
                .sha256
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(format!(
                "sha256 {:?} is not 64 lower-case hex digits",
                platform.sha256
            ));
        }
        if let Some(files) = &platform.files
            && (files.is_empty() || files.iter().any(|f| f.from.is_empty() || f.to.is_empty()))
        {
            return Err("files must be unset or non-empty with from and to".into());
        }
        let labels = platform
            .selector
            .match_labels
            .as_ref()
            .ok_or("an empty selector")?;
        if labels.is_empty() || labels.keys().any(|k| k != "os" && k != "arch") {
            return Err(format!("selector keys must be os and arch: {labels:?}"));
        }
    }
    Ok(())
}

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn make_dist_builds_archives_that_krew_would_install() {
    // The binary the tests build, in its profile's directory.
    cargo_bin("kubectl-blame", "kubectl-blame");
    let dist = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new("make")
        .current_dir(repo_root())
        .arg("dist")
        .env("DIST_DIR", dist.path())
        .env("DIST_PROFILE", "dev")
        .env("RELEASE_URL", "https://example.com/releases/v9")
        .env("CARGO_TARGET_DIR", target_dir().parent().unwrap())
        .env("CARGO", cargo)
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "make dist:\n{stderr}");

    let version = env!("CARGO_PKG_VERSION");
    let amd64 = dist
        .path()
        .join(format!("kubectl-blame-v{version}-linux-amd64.tar.gz"));
    let arm64 = dist
        .path()
        .join(format!("kubectl-blame-v{version}-linux-arm64.tar.gz"));
    assert!(amd64.is_file(), "{stderr}");
    if !arm64.exists() {
        assert!(
            stderr.contains("skipping linux/arm64"),
            "says why arm64 is missing: {stderr}"
        );
    }

    // SHA256SUMS checks out.
    let check = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dist.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // The archive holds the plugin and the completion executable, and the plugin runs.
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&amd64)
        .output()
        .unwrap();
    let names: BTreeSet<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        names,
        ["kubectl-blame", "kubectl_complete-blame"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    let unpacked = tempfile::tempdir().unwrap();
    let untar = Command::new("tar")
        .arg("-xzf")
        .arg(&amd64)
        .arg("-C")
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(untar.success());
    let ran = Command::new(unpacked.path().join("kubectl-blame"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ran.stdout).contains(version));

    // The manifest: krew's rules, its strict fields, and the sums of the archives built.
    let text = std::fs::read_to_string(dist.path().join("blame.yaml")).unwrap();
    let plugin: Plugin = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    krew_validate("blame.yaml", &plugin).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(plugin.spec.version, format!("v{version}"));
    assert!(!plugin.spec.homepage.is_empty() && !plugin.spec.description.is_empty());
    assert!(plugin.spec.caveats.contains("kubectl_complete-blame"));
    let built = [(&amd64, "amd64"), (&arm64, "arm64")]
        .into_iter()
        .filter(|(path, _)| path.exists())
        .collect::<Vec<_>>();
    assert_eq!(plugin.spec.platforms.len(), built.len(), "{text}");
    for ((archive, arch), platform) in built.iter().zip(&plugin.spec.platforms) {
        let labels = platform.selector.match_labels.as_ref().unwrap();
        assert_eq!(
            (labels["os"].as_str(), labels["arch"].as_str()),
            ("linux", *arch)
        );
        assert_eq!(platform.sha256, sha256(archive));
        let file_name = archive.file_name().unwrap().to_string_lossy();
        assert_eq!(
            platform.uri,
            format!("https://example.com/releases/v9/{file_name}")
        );
        assert_eq!(platform.bin, "kubectl-blame");
    }
    assert!(!text.contains('@'), "every placeholder is filled:\n{text}");

    // The template itself passes once its placeholders are filled with something valid.
    let template =
        std::fs::read_to_string(repo_root().join("plugins/kubectl-blame/dist/blame.yaml"))
            .unwrap()
            .replace("@VERSION@", "1.2.3")
            .replace("@RELEASE_URL@", "https://example.com")
            .replace("@SHA256_linux_amd64@", &"a".repeat(64))
            .replace("@SHA256_linux_arm64@", &"b".repeat(64));
    let plugin: Plugin = serde_yaml::from_str(&template).unwrap();
    krew_validate("blame.yaml", &plugin).unwrap();
    assert_eq!(plugin.spec.platforms.len(), 2);
}

#[test]
fn krew_rules_catch_what_krew_rejects() {
    let good = std::fs::read_to_string(repo_root().join("plugins/kubectl-blame/dist/blame.yaml"))
        .unwrap()
        .replace("@VERSION@", "1.2.3")
        .replace("@RELEASE_URL@", "https://example.com")
        .replace("@SHA256_linux_amd64@", &"a".repeat(64))
        .replace("@SHA256_linux_arm64@", &"b".repeat(64));
    let parse = |text: &str| serde_yaml::from_str::<Plugin>(text).unwrap();
    assert!(krew_validate("blame.yaml", &parse(&good)).is_ok());
    assert!(krew_validate("other.yaml", &parse(&good)).is_err());
    assert!(krew_validate("blame.yaml", &parse(&good.replace(&"a".repeat(64), "abc"))).is_err());
    assert!(krew_validate("blame.yaml", &parse(&good.replace("v1.2.3", "1.2.3"))).is_err());
    assert!(
        krew_validate(
            "blame.yaml",
            &parse(&good.replace("os: linux", "distro: linux"))
        )
        .is_err()
    );
    assert!(serde_yaml::from_str::<Plugin>(&good.replace("  homepage:", "  homePage:")).is_err());
}
