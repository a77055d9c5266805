//! `logistis store backup` from a running server and `logistis store restore`, end to end:
//! the real binaries over real HTTPS, a real store on disk. A restored data dir serves the
//! same history, with the same Secret hashes, as the server it was taken from; a damaged
//! backup is refused; the endpoint is off unless enabled.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use logistis_e2e::{Server, cargo_bin, own_review, post_demo, with_uid};
use serde_json::Value;

fn logistis(args: &[&str], extra: &[&Path]) -> Output {
    let mut command = Command::new(cargo_bin("logistis", "logistis"));
    command.args(args).args(extra).stdin(Stdio::null());
    for name in [
        "LOGISTIS_SERVER",
        "LOGISTIS_CERTIFICATE_AUTHORITY",
        "LOGISTIS_DATA_DIR",
    ] {
        command.env_remove(name);
    }
    command.output().expect("logistis runs")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Everything a server answers about its history, for comparing two servers.
async fn history(server: &Server) -> (Value, Value, Value) {
    let events = server.get_ok("/api/v1/events?limit=1000").await.unwrap();
    let namespaces = server.get_ok("/api/v1/namespaces").await.unwrap();
    let blame = server
        .get_ok("/api/v1/objects/core/secret/shop/db-credentials/versions/2")
        .await
        .unwrap();
    (events, namespaces, blame)
}

fn backup_args<'a>(server: &'a Server, ca: &'a str, data: &'a str) -> Vec<&'a str> {
    vec![
        "store",
        "backup",
        "--server",
        &server.query_url,
        "--certificate-authority",
        ca,
        "--data-dir",
        data,
    ]
}

#[tokio::test]
async fn a_backup_of_a_running_server_restores_the_same_history() {
    let server = Server::builder().arg("--allow-backup").start().unwrap();
    post_demo(&server);
    let before = history(&server).await;
    let ca = server.ca_path.display().to_string();
    let data = server.data_dir.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.lgb");

    let said = ok(logistis(&backup_args(&server, &ca, &data), &[&file]));
    assert!(said.contains("with the Secret hashing key"), "{said}");
    // The server keeps recording; the backup has what was there when it was taken.
    server
        .admit(&with_uid(
            &own_review("create-namespace.json"),
            "after-backup",
        ))
        .await
        .unwrap();

    let restored_dir = dir.path().join("restored");
    let said = ok(logistis(
        &["store", "restore", "--data-dir"],
        &[&restored_dir, &file],
    ));
    assert!(said.contains("start the server with --data-dir"), "{said}");
    assert_eq!(
        std::fs::read(restored_dir.join("secret-hash.key")).unwrap(),
        std::fs::read(server.data_dir.join("secret-hash.key")).unwrap()
    );
    let restored = Server::builder().data_dir(&restored_dir).start().unwrap();
    assert_eq!(history(&restored).await, before);

    // A data dir directly, and a second restore over it is refused.
    let copy = dir.path().join("copy/");
    let said = ok(logistis(&backup_args(&server, &ca, &data), &[&copy]));
    assert!(said.contains("the data dir"), "{said}");
    let from_dir = Server::builder().data_dir(&copy).start().unwrap();
    let (events, _, _) = history(&from_dir).await;
    assert_eq!(
        events["items"].as_array().unwrap().len(),
        before.0["items"].as_array().unwrap().len() + 1,
        "the second backup has the event recorded after the first"
    );
    drop(from_dir);
    let again = logistis(&["store", "restore", "--data-dir"], &[&copy, &file]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test]
async fn a_damaged_backup_is_refused_and_leaves_nothing_behind() {
    let server = Server::builder().arg("--allow-backup").start().unwrap();
    post_demo(&server);
    let ca = server.ca_path.display().to_string();
    let data = server.data_dir.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.lgb");
    ok(logistis(&backup_args(&server, &ca, &data), &[&file]));
    let bytes = std::fs::read(&file).unwrap();
    let truncated = dir.path().join("truncated.lgb");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

    let target = dir.path().join("restored");
    let refused = logistis(&["store", "restore", "--data-dir"], &[&target, &truncated]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("damaged or incomplete"), "{message}");
    assert!(
        !target.join("store").exists() && !target.join("secret-hash.key").exists(),
        "nothing is left where a server would open it"
    );
    let not_a_backup = logistis(
        &["store", "restore", "--data-dir"],
        &[&target, Path::new("/etc/hostname")],
    );
    assert!(String::from_utf8_lossy(&not_a_backup.stderr).contains("not a Logistis backup"));
}

#[tokio::test]
async fn the_endpoint_is_off_unless_enabled() {
    let server = Server::start().unwrap();
    let (status, body) = server.get("/api/v1/backup").await.unwrap();
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("--allow-backup"),
        "{body}"
    );
    let ca = server.ca_path.display().to_string();
    let data = server.data_dir.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.lgb");
    let refused = logistis(&backup_args(&server, &ca, &data), &[&file]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("HTTP 404") && message.contains("--allow-backup"),
        "{message}"
    );
    assert!(!file.exists());
}
