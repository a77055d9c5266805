//! The Makefile and the Dockerfile. There is no Docker engine here, so the Dockerfile is read,
//! not built: its stages, build arguments, `--locked` builds, non-root user and plugin list.
//! The Makefile runs for real on a copy of the repository (`make -n`, and the generated
//! overlay rendered by `kubectl kustomize`), with settings from a `.local/Makefile`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use logistis_e2e::repo_root;
use serde_json::Value;

use super::{Variant, checkout, container, kustomize, parse_stream};

/// The Rust plugins we ship: the workspace's `cdylib` packages under `plugins/`, without the
/// test-only ones (`plugins/testing/`).
pub fn shipped_plugin_packages() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let plugins = repo_root().join("plugins");
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|package| {
            let manifest = Path::new(package["manifest_path"].as_str().unwrap());
            manifest.starts_with(&plugins) && !manifest.starts_with(plugins.join("testing"))
        })
        .filter(|package| {
            package["targets"].as_array().unwrap().iter().any(|target| {
                target["crate_types"]
                    .as_array()
                    .is_some_and(|types| types.iter().any(|t| t == "cdylib"))
            })
        })
        .map(|package| package["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `NAME` of each `logistis-plugin-NAME`, in a stable order.
fn plugin_names() -> BTreeSet<String> {
    shipped_plugin_packages()
        .iter()
        .map(|p| p.trim_start_matches("logistis-plugin-").to_owned())
        .collect()
}

/// The commands `make -n` prints, with runs of blanks (from empty variables) made one.
fn make(dir: &Path, args: &[&str]) -> String {
    let mut command = Command::new("make");
    command.current_dir(dir).args(args);
    // The settings under test come from .local/Makefile, not from the environment (cargo
    // sets CARGO for the tests, a parent make MAKEFLAGS).
    for variable in [
        "IMAGE_REPO",
        "IMAGE_TAG",
        "BASEIMAGE",
        "RUNIMAGE",
        "DOCKER_BUILD_ARGS",
        "DOCKER",
        "KUBECTL",
        "KUBECTL_APPLY_ARGS",
        "CARGO",
        "DEPLOY_DIR",
        "MAKEFLAGS",
        "MAKELEVEL",
    ] {
        command.env_remove(variable);
    }
    let output = command.output().expect("make runs (install GNU make)");
    assert!(
        output.status.success(),
        "make {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

const LOCAL_MAKEFILE: &str = "\
IMAGE_REPO = registry.example.com/platform/logistis
IMAGE_TAG = 1.2.3-rc.1
BASEIMAGE = registry.example.com/base/rust:1.95
RUNIMAGE = registry.example.com/base/cc:nonroot
DOCKER_BUILD_ARGS = --pull --label team=platform
";

#[test]
fn local_makefile_sets_the_image_and_build_args() {
    let copy = checkout();
    let root = copy.path();
    // The example is tracked: it must at least be valid for make.
    std::fs::create_dir_all(root.join(".local")).unwrap();
    std::fs::copy(
        repo_root().join(".local/Makefile.example"),
        root.join(".local/Makefile"),
    )
    .expect("the tracked .local/Makefile.example");
    let example = make(root, &["-n", "image"]);
    assert!(
        example.contains("registry.example.com/platform/logistis:"),
        "{example}"
    );

    std::fs::write(root.join(".local/Makefile"), LOCAL_MAKEFILE).unwrap();
    let image = make(root, &["-n", "image"]);
    assert!(
        image.lines().any(|line| line
            == "docker build --build-arg BASEIMAGE=registry.example.com/base/rust:1.95 \
                --build-arg RUNIMAGE=registry.example.com/base/cc:nonroot \
                --pull --label team=platform -t registry.example.com/platform/logistis:1.2.3-rc.1 ."),
        "{image}"
    );
    let push = make(root, &["-n", "push"]);
    assert!(
        push.lines()
            .any(|line| line == "docker push registry.example.com/platform/logistis:1.2.3-rc.1"),
        "{push}"
    );
    // The command line still wins over .local/Makefile.
    let image = make(root, &["-n", "image", "IMAGE_TAG=override"]);
    assert!(
        image.contains("-t registry.example.com/platform/logistis:override ."),
        "{image}"
    );

    let deploy = make(root, &["-n", "deploy"]);
    let cargo = deploy
        .lines()
        .find(|line| line.starts_with("cargo build"))
        .expect("make deploy builds the plugins");
    assert!(cargo.contains("--locked") && cargo.contains("--target wasm32-wasip2"));
    for name in plugin_names() {
        assert!(
            cargo.contains(&format!("-p logistis-plugin-{name}")),
            "{cargo}"
        );
    }
    assert!(
        deploy.contains("newName: registry.example.com/platform/logistis"),
        "{deploy}"
    );
    assert!(deploy.contains("newTag: \"1.2.3-rc.1\""), "{deploy}");
    assert!(
        deploy
            .lines()
            .any(|line| line == "kubectl apply --server-side -k .local/deploy"),
        "{deploy}"
    );
    let undeploy = make(root, &["-n", "undeploy"]);
    assert!(undeploy.contains("kubectl delete --ignore-not-found -k .local/deploy"));
}

/// `make deploy`'s generated overlay (under the gitignored .local/) is a kustomization that
/// kustomize accepts, builds on deploy/ (or DEPLOY_DIR) and only changes the image.
#[test]
fn make_deploy_overlay_sets_the_image_without_editing_tracked_files() {
    let copy = checkout();
    let root = copy.path();
    std::fs::create_dir_all(root.join(".local")).unwrap();
    std::fs::write(root.join(".local/Makefile"), LOCAL_MAKEFILE).unwrap();
    let tracked = std::fs::read_to_string(root.join("deploy/base/statefulset.yaml")).unwrap();

    for variant in [Variant::Base, Variant::CertManager] {
        let setting = format!("DEPLOY_DIR={}", variant.dir());
        make(root, &[".local/deploy/kustomization.yaml", &setting]);
        let objects = parse_stream(&kustomize(&root.join(".local/deploy")));
        let reference = super::render(variant);
        assert_eq!(objects.len(), reference.objects.len(), "{variant:?}");
        let statefulset = objects
            .iter()
            .find(|o| o["kind"] == "StatefulSet")
            .expect("a StatefulSet");
        let (_, server) = container(&super::strict(statefulset));
        assert_eq!(
            server.image.as_deref(),
            Some("registry.example.com/platform/logistis:1.2.3-rc.1")
        );
        // Nothing else differs from rendering the kustomization directly.
        let mut with_default_image = statefulset.clone();
        with_default_image["spec"]["template"]["spec"]["containers"][0]["image"] = reference
            .objects
            .iter()
            .find(|o| o["kind"] == "StatefulSet")
            .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone();
        for (ours, theirs) in objects.iter().zip(&reference.objects) {
            let ours = if ours["kind"] == "StatefulSet" {
                &with_default_image
            } else {
                ours
            };
            assert_eq!(ours, theirs, "{variant:?}: {}", theirs["metadata"]["name"]);
        }
    }
    assert_eq!(
        std::fs::read_to_string(root.join("deploy/base/statefulset.yaml")).unwrap(),
        tracked
    );
}

/// Without settings, `make` builds and deploys the image the manifests name, tagged with the
/// workspace version.
#[test]
fn makefile_defaults_match_the_manifests() {
    let copy = checkout();
    let image = make(copy.path(), &["-n", "image"]);
    let statefulset = super::render(Variant::Base).statefulset();
    let (_, server) = container(&statefulset);
    let manifest_image = server.image.expect("an image");
    assert!(
        image
            .lines()
            .any(|line| line == format!("docker build -t {manifest_image} .")),
        "{image}"
    );
    let version = std::fs::read_to_string(repo_root().join("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|line| {
            line.strip_prefix("version = \"")?
                .strip_suffix('"')
                .map(String::from)
        })
        .expect("the workspace version");
    assert!(
        manifest_image.ends_with(&format!(":{version}")),
        "{manifest_image}"
    );
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    let plugins: BTreeSet<String> = makefile
        .lines()
        .find_map(|line| line.strip_prefix("PLUGINS := "))
        .expect("PLUGINS in the Makefile")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(plugins, plugin_names());
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                instructions.push((keyword.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    instructions
}

#[test]
fn dockerfile_builds_on_given_images_locked_and_runs_as_non_root() {
    let instructions = dockerfile();
    let first_from = instructions
        .iter()
        .position(|(k, _)| k == "FROM")
        .expect("a FROM");
    let global_args: Vec<&str> = instructions[..first_from]
        .iter()
        .filter(|(k, _)| k == "ARG")
        .map(|(_, v)| v.as_str())
        .collect();
    for name in ["BASEIMAGE", "RUNIMAGE"] {
        assert!(
            global_args.iter().any(|a| a
                .strip_prefix(name)
                .is_some_and(|r| r.starts_with("=") && r.len() > 1)),
            "ARG {name}=<default> before the first FROM: {global_args:?}"
        );
    }
    let stages: Vec<&str> = instructions
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(stages, ["${BASEIMAGE} AS build", "${RUNIMAGE}"]);

    let runs: Vec<&str> = instructions
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, v)| v.as_str())
        .collect();
    let builds: Vec<&str> = runs
        .iter()
        .flat_map(|run| run.split(';'))
        .map(str::trim)
        .filter(|command| command.starts_with("cargo build"))
        .collect();
    assert_eq!(builds.len(), 2, "the server and the plugins: {builds:?}");
    for build in &builds {
        assert!(build.contains("--locked"), "{build}");
    }
    assert!(builds[0].contains("--release -p logistis"), "{}", builds[0]);
    assert!(
        builds[1].contains("--profile plugin --target wasm32-wasip2"),
        "{}",
        builds[1]
    );
    let plugins: BTreeSet<String> = instructions
        .iter()
        .filter(|(k, _)| k == "ARG")
        .find_map(|(_, v)| v.strip_prefix("PLUGINS="))
        .expect("ARG PLUGINS")
        .trim_matches('"')
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        plugins,
        plugin_names(),
        "ARG PLUGINS lists the shipped plugins"
    );

    // The runtime stage: only what was built, a numeric non-root user, the binary first.
    let runtime = &instructions[instructions.iter().rposition(|(k, _)| k == "FROM").unwrap()..];
    assert!(
        runtime.iter().all(|(k, _)| k != "RUN"),
        "no shell needed at run time"
    );
    let argument = |keyword: &str| {
        runtime
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {keyword} in the runtime stage"))
    };
    let user = argument("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER (the kubelet checks runAsNonRoot on numbers)");
    assert!(uid > 0, "USER {user} is root");
    let statefulset = super::render(Variant::Base).statefulset();
    let (pod, _) = container(&statefulset);
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_user),
        Some(i64::from(uid)),
        "the manifests run as the image's user"
    );
    assert_eq!(argument("ENTRYPOINT"), r#"["/usr/local/bin/logistis"]"#);
    for (keyword, value) in runtime {
        if keyword == "COPY" {
            assert!(value.starts_with("--from=build "), "COPY {value}");
        }
    }

    // The build context leaves out build output and local data.
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    for entry in ["target/", ".git/", ".local/", "logistis-data/"] {
        assert!(ignore.lines().any(|l| l == entry), ".dockerignore: {entry}");
    }
}

/// The README's way to add a plugin without editing tracked files: a kustomization under
/// `.local/` merging a component and a `plugins.yaml` into the ConfigMap, deployed with
/// `DEPLOY_DIR`. The kustomization is taken from the README itself.
#[test]
fn readme_local_overlay_adds_a_plugin_to_the_configmap() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let marker = "# .local/plugins/kustomization.yaml";
    let start = readme
        .find(marker)
        .expect("the README shows .local/plugins/kustomization.yaml");
    let indent = readme[..start].rsplit('\n').next().unwrap().len();
    let kustomization: String = readme[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.trim() != "```")
        .map(|line| format!("{}\n", line.get(indent..).unwrap_or_default()))
        .collect();

    let copy = checkout();
    let root = copy.path();
    let overlay = root.join(".local/plugins");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(overlay.join("kustomization.yaml"), &kustomization).unwrap();
    let component = logistis_e2e::plugins::rust_plugin("logistis-plugin-namespaces");
    std::fs::copy(component, overlay.join("only-prod.wasm")).unwrap();
    let plugins_yaml = "predicates:\n  - name: only-prod\n    file: only-prod.wasm\n    \
                        config: {include: [\"prod-*\"]}\n";
    std::fs::write(overlay.join("plugins.yaml"), plugins_yaml).unwrap();

    make(
        root,
        &[
            ".local/deploy/kustomization.yaml",
            "DEPLOY_DIR=.local/plugins",
        ],
    );
    let objects = parse_stream(&kustomize(&root.join(".local/deploy")));
    let configmap: k8s_openapi::api::core::v1::ConfigMap = super::strict(
        objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap")
            .expect("the plugin ConfigMap"),
    );
    // The same name, so the mounted volume (and hot reload) is the one the server has.
    assert_eq!(configmap.metadata.name.as_deref(), Some("logistis-plugins"));
    assert_eq!(
        configmap.data.unwrap_or_default()["plugins.yaml"],
        plugins_yaml
    );
    let files: BTreeSet<String> = configmap
        .binary_data
        .unwrap_or_default()
        .into_keys()
        .collect();
    let mut expected: BTreeSet<String> =
        plugin_names().iter().map(|n| format!("{n}.wasm")).collect();
    expected.insert("only-prod.wasm".into());
    assert_eq!(files, expected);
}

/// A `kubectl` stand-in for the make targets: `delete -k DIR` renders DIR with the real
/// `kubectl kustomize` (what a real delete does first) and logs the call; nothing reaches a
/// cluster.
fn kubectl_stand_in(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("kubectl-stand-in");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$@\" >> \"$0.log\"\n\
         if [ \"$1\" = delete ]; then shift; while [ \"$1\" != -k ]; do shift; done; \
         exec kubectl kustomize \"$2\" > /dev/null; fi\nexec kubectl \"$@\"\n",
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions).unwrap();
    script
}

/// `make undeploy` deletes what `make deploy` applied without building a plugin: the
/// plugins that are not there are rendered from placeholders, which are removed again.
#[test]
fn make_undeploy_needs_no_plugins_built() {
    let copy = checkout();
    let root = copy.path();
    for name in plugin_names() {
        std::fs::remove_file(root.join(format!("deploy/base/plugins/{name}.wasm"))).unwrap();
    }
    let kubectl = kubectl_stand_in(root);
    let output = Command::new("make")
        .current_dir(root)
        .args(["undeploy", "CARGO=false"])
        .arg(format!("KUBECTL={}", kubectl.display()))
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "make undeploy:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let log = std::fs::read_to_string(kubectl.with_extension("log")).unwrap_or_default();
    assert_eq!(log.trim(), "delete --ignore-not-found -k .local/deploy");
    for name in plugin_names() {
        assert!(
            !root
                .join(format!("deploy/base/plugins/{name}.wasm"))
                .exists(),
            "the placeholder for {name} is removed"
        );
    }
}

/// `make manifests | head` ends quietly: the closed pipe is not reported as an error.
#[test]
fn make_manifests_into_a_closed_pipe_ends_quietly() {
    let copy = checkout();
    let root = copy.path();
    // `make plugins` copies from the cargo target dir: point it at the freshly built ones.
    let target = root.join("built");
    let plugin_dir = target.join("wasm32-wasip2/plugin");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    for name in plugin_names() {
        std::fs::copy(
            root.join(format!("deploy/base/plugins/{name}.wasm")),
            plugin_dir.join(format!("logistis_plugin_{}.wasm", name.replace('-', "_"))),
        )
        .unwrap();
    }
    let output = Command::new("bash")
        .current_dir(root)
        .arg("-c")
        .arg(format!(
            "make manifests CARGO=true TARGET_DIR={} | head -n 2; exit ${{PIPESTATUS[0]}}",
            target.display()
        ))
        .env_remove("MAKEFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "make failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "make manifests | head printed: {stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
}
