//! `deploy/replicas/`: several replicas on a PostgreSQL-protocol database — a Deployment
//! (not the embedded store's StatefulSet) of 2+ replicas that never all go down in a rolling
//! update, spread by anti-affinity, a PodDisruptionBudget, the database URL and password
//! from a Secret, and the outbox on a volume.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Variant, flags, render};

fn deployment() -> (Deployment, Container) {
    let deployment: Deployment = render(Variant::Replicas).get("Deployment", "logistis");
    let pod = deployment
        .spec
        .template
        .spec
        .clone()
        .expect("a pod template");
    assert_eq!(pod.containers.len(), 1, "one container: the server");
    let container = pod.containers[0].clone();
    (deployment, container)
}

#[test]
fn replicas_run_as_a_deployment_that_never_goes_below_one() {
    let render = render(Variant::Replicas);
    assert!(
        render.of_kind("StatefulSet").is_empty(),
        "the embedded store's StatefulSet is replaced"
    );
    let (deployment, _) = deployment();
    let spec = deployment.spec;
    assert!(spec.replicas.unwrap_or(1) >= 2, "several replicas");
    let rolling = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .expect("a rolling update");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    let pod = spec.template.spec.expect("a pod");
    let anti = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .expect("pod anti-affinity");
    let terms = anti
        .preferred_during_scheduling_ignored_during_execution
        .unwrap_or_default();
    assert!(
        terms
            .iter()
            .any(|t| t.pod_affinity_term.topology_key == "kubernetes.io/hostname"),
        "replicas on different nodes"
    );
    let selector = spec.selector.match_labels.unwrap_or_default();
    let pdb: PodDisruptionBudget = render.get("PodDisruptionBudget", "logistis");
    let pdb = pdb.spec.expect("a spec");
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert_eq!(
        pdb.selector
            .and_then(|s| s.match_labels)
            .unwrap_or_default(),
        selector,
        "the budget covers the server pods"
    );
}

#[test]
fn the_database_comes_from_a_secret_and_the_outbox_has_a_volume() {
    let (deployment, container) = deployment();
    let env = container.env.clone().unwrap_or_default();
    let store = env
        .iter()
        .find(|e| e.name == "LOGISTIS_STORE")
        .expect("LOGISTIS_STORE is set");
    let secret = store
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("the URL comes from a Secret");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("logistis-database", "url")
    );
    let password = env
        .iter()
        .find(|e| e.name == "LOGISTIS_STORE_PASSWORD_FILE")
        .and_then(|e| e.value.clone())
        .expect("the password is a file");
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    let database = mounts
        .iter()
        .find(|m| password.starts_with(&format!("{}/", m.mount_path)))
        .expect("the password file is on a mount");
    let volumes = deployment
        .spec
        .template
        .spec
        .and_then(|p| p.volumes)
        .unwrap_or_default();
    let volume = volumes
        .iter()
        .find(|v| v.name == database.name)
        .expect("the mount's volume");
    assert_eq!(
        volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("logistis-database")
    );
    let flags = flags(&container);
    let data_dir = flags["data-dir"].clone().expect("--data-dir=DIR");
    let data = mounts
        .iter()
        .find(|m| m.mount_path == data_dir)
        .expect("the data dir (outbox) is a volume: the root filesystem is read-only");
    let outbox = volumes.iter().find(|v| v.name == data.name).unwrap();
    let limit = outbox
        .empty_dir
        .as_ref()
        .and_then(|e| e.size_limit.clone())
        .expect("a bounded volume");
    assert_eq!(limit.0, "1Gi");
    assert_eq!(
        flags["outbox-max-size"].as_deref(),
        Some("900Mi"),
        "the outbox stays below its volume"
    );
}
