//! `logistis serve` as a process: flag validation, health and metrics, plain HTTP only on
//! loopback, certificate rotation without a restart, and graceful shutdown.

use logistis_e2e::*;

#[test]
fn bad_flags_are_one_line_and_exit_2() {
    for (args, needle) in [
        (vec!["serve"], "--self-signed"),
        (
            vec!["serve", "--self-signed", "--retention", "forever-ish"],
            "--retention",
        ),
        (
            vec!["serve", "--self-signed", "--max-store-size", "10Q"],
            "--max-store-size",
        ),
        (
            vec![
                "serve",
                "--self-signed",
                "--query-plain-http",
                "--query-listen",
                "0.0.0.0:8081",
            ],
            "loopback",
        ),
        (
            vec![
                "serve",
                "--self-signed",
                "--plugins-dir",
                "/nonexistent/plugins",
            ],
            "--plugins-dir",
        ),
        (
            vec!["serve", "--self-signed", "--durability", "eventually"],
            "durability",
        ),
        (vec!["serve", "--tls-cert", "cert.pem"], "--tls-key"),
        (
            vec![
                "serve",
                "--self-signed",
                "--config",
                "/nonexistent/logistis.yaml",
            ],
            "config file",
        ),
    ] {
        let output = run_logistis(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing starts");
    }
}

#[tokio::test]
async fn health_metrics_and_shutdown() {
    let mut server = Server::start().unwrap();
    for path in ["/livez", "/readyz"] {
        let (status, _) = server.get(path).await.unwrap();
        assert_eq!(status, 200, "{path}");
    }
    server
        .admit(&own_review("create-deployment.json"))
        .await
        .unwrap();
    let metrics = server.metrics().await.unwrap();
    for name in [
        "logistis_admission_request_duration_seconds_bucket{le=\"0.0001\"}",
        "logistis_admission_reviews_total{outcome=\"recorded\"} 1",
        "logistis_store_size_bytes",
        "logistis_store_memtable_bytes",
        "logistis_store_sealed_memtables",
        "logistis_store_level0_tables",
        "logistis_query_request_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    // Probes are also on the webhook listener (what a kubelet reaches).
    let livez = server.webhook_url.replace("/validate", "/livez");
    assert_eq!(server.client.get(livez).send().await.unwrap().status(), 200);
    assert!(server.terminate().unwrap().success());
    assert!(
        server
            .log()
            .contains("logistis stopped; the store is flushed"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn plain_http_query_listener_on_loopback_when_asked() {
    let server = Server::builder().arg("--query-plain-http").start().unwrap();
    assert!(
        server.query_url.starts_with("http://127.0.0.1:"),
        "{}",
        server.query_url
    );
    let plain = reqwest::Client::new();
    let response = plain
        .get(format!("{}/api/v1/events", server.query_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The webhook stays HTTPS.
    assert!(server.webhook_url.starts_with("https://"));
    let attempt = plain
        .post(server.webhook_url.replace("https://", "http://"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await;
    assert!(
        attempt.is_err() || attempt.unwrap().status() != 200,
        "a plain request to the TLS port never reaches the handler"
    );
}

#[tokio::test]
async fn rotated_certificates_are_served_without_a_restart() {
    // Two independent self-signed setups give two CAs and two server certificates.
    let first = Server::start().unwrap();
    let second = Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::copy(first.data_dir.join("tls/tls.crt"), &cert).unwrap();
    std::fs::copy(first.data_dir.join("tls/tls.key"), &key).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Started by hand: this server uses files, not --self-signed.
    let mut child = std::process::Command::new(cargo_bin("logistis", "logistis"))
        .args([
            "serve",
            "--webhook-listen",
            "127.0.0.1:0",
            "--query-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let query = {
        use std::io::BufRead;
        let mut query = None;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("query: ") {
                query = Some(url.to_owned());
                break;
            }
        }
        query.expect("the server announces its query listener")
    };
    let trusting = |server: &Server| {
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&server.ca_path).unwrap()).unwrap(),
            )
            .build()
            .unwrap()
    };
    let (old_ca, new_ca) = (trusting(&first), trusting(&second));
    let url = format!("{query}/livez");
    assert_eq!(old_ca.get(&url).send().await.unwrap().status(), 200);
    assert!(new_ca.get(&url).send().await.is_err());

    // Rotate: a broken pair is ignored (the old certificate stays), then a good pair wins.
    std::fs::write(&cert, "garbage").unwrap();
    std::fs::copy(second.data_dir.join("tls/tls.key"), &key).unwrap();
    std::fs::copy(second.data_dir.join("tls/tls.crt"), &cert).unwrap();
    let mut rotated = false;
    for _ in 0..100 {
        if new_ca.get(&url).send().await.is_ok() {
            rotated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(rotated, "the new certificate was not picked up within 20 s");
}

/// `logistis-loadgen --rounds` takes turns between the modes, a mode's own server arguments
/// reach its server alone, and the summary sets each mode against `bare` of the same round.
#[test]
fn the_load_generator_takes_turns_and_summarises_the_rounds() {
    let output = std::process::Command::new(cargo_bin("logistis-bench", "logistis-loadgen"))
        .arg("--logistis")
        .arg(cargo_bin("logistis", "logistis"))
        .arg("--fixtures")
        .arg(own_fixtures().join("admission"))
        .args(["-c", "2", "-d", "1s", "--rounds", "2"])
        .args(["--modes", "bare,sync,sync:--answer-only"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (runs, summary) = stdout
        .split_once("summary of 2 rounds")
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    let rows = |label: &str| -> Vec<Vec<&str>> {
        runs.lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|fields| fields.first() == Some(&label) && fields.len() == 9)
            .collect()
    };
    let (bare, sync, flagged) = (rows("bare"), rows("sync"), rows("sync:--answer-only"));
    assert_eq!(
        (bare.len(), sync.len(), flagged.len()),
        (2, 2, 2),
        "{stdout}"
    );
    for row in bare.iter().chain(&sync).chain(&flagged) {
        assert_eq!(row[5], "0", "errors in {row:?}:\n{stdout}");
        assert!(row[1].parse::<f64>().unwrap() > 0.0, "{stdout}");
    }
    // `sync` stored events (bytes per event); the same mode with `--answer-only` stored none,
    // so the argument reached that server, and only it.
    assert!(
        sync.iter().all(|row| row[8].parse::<f64>().is_ok()),
        "{stdout}"
    );
    assert!(
        bare.iter().chain(&flagged).all(|row| row[8] == "-"),
        "{stdout}"
    );
    let round = stdout.find("round 2 of 2").expect(&stdout);
    assert!(stdout.find("round 1 of 2").unwrap() < round, "{stdout}");
    let line = summary
        .lines()
        .find(|l| l.starts_with("sync:--answer-only"))
        .expect(summary);
    assert!(line.trim_end().ends_with('×'), "{summary}");
}

/// The two benchmarking modes of `logistis-loadgen` answer like the real thing and store
/// nothing, and say so in the log.
#[tokio::test]
async fn benchmarking_modes_answer_and_store_nothing() {
    for (flag, warning) in [
        ("--answer-only", "no review is recorded"),
        ("--discard-events", "no event is written"),
    ] {
        let mut server = Server::builder().arg(flag).start().unwrap();
        let review = own_review("create-deployment.json");
        let answer = server.admit(&review).await.unwrap();
        assert_eq!(answer["response"]["allowed"], true, "{flag}");
        assert_eq!(
            answer["response"]["uid"], review["request"]["uid"],
            "{flag}"
        );
        let events = server.get_ok("/api/v1/events").await.unwrap();
        assert_eq!(events["items"], serde_json::json!([]), "{flag}");
        assert!(server.terminate().unwrap().success());
        assert!(server.log().contains(warning), "{flag}: {}", server.log());
    }
}
