//! PostgreSQL for the end-to-end tests. `scripts/test.sh` starts throwaway servers and exports
//! their admin URLs: `LOGISTIS_TEST_POSTGRES` (shared: each test makes its own databases) and
//! `LOGISTIS_TEST_POSTGRES_OUTAGE` with `LOGISTIS_TEST_POSTGRES_OUTAGE_CTL` (a script taking
//! `stop|start`, for the one test that stops its database). Without them a test says it is
//! skipped; under CI (`CI` set) it fails instead, since CI must run them.
//!
//! `LOGISTIS_E2E_STORE=postgres` runs every [`crate::Server`] on a fresh database (the same
//! one again for the same data dir, so restart tests restart on their own store): the
//! existing suites then check that both backends give the same answers.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The admin URL of the shared test server, or `None` after saying the test is skipped.
pub fn admin(test: &str) -> Option<String> {
    from_env(test, "LOGISTIS_TEST_POSTGRES")
}

/// The admin URL of the server that may be stopped, and its control script.
pub fn outage(test: &str) -> Option<(String, PathBuf)> {
    let url = from_env(test, "LOGISTIS_TEST_POSTGRES_OUTAGE")?;
    let ctl = from_env(test, "LOGISTIS_TEST_POSTGRES_OUTAGE_CTL")?;
    Some((url, PathBuf::from(ctl)))
}

fn from_env(test: &str, variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {variable} is not set under CI: run the tests with ./scripts/test.sh"
            );
            eprintln!(
                "SKIPPED {test}: no PostgreSQL ({variable} is not set; ./scripts/test.sh starts one)"
            );
            None
        }
    }
}

/// Create database `name` on the server of `admin` (if missing) and return its URL.
pub fn database(admin: &str, name: &str) -> String {
    let output = Command::new("psql")
        .args([admin, "-v", "ON_ERROR_STOP=1", "-qAtc"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql runs (Debian's postgresql-client)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() || stderr.contains("already exists"),
        "CREATE DATABASE {name}: {stderr}"
    );
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    format!("{base}/{name}")
}

/// A fresh database named after `test`.
pub fn fresh_database(admin: &str, test: &str) -> String {
    let name = format!(
        "e2e_{}_{:x}",
        test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id())
    );
    database(admin, &name[..name.len().min(63)])
}

/// With `LOGISTIS_E2E_STORE=postgres`: the database of the server on `data_dir`.
pub fn store_for(data_dir: &Path) -> Option<String> {
    if std::env::var("LOGISTIS_E2E_STORE").ok().as_deref() != Some("postgres") {
        return None;
    }
    let admin = admin("LOGISTIS_E2E_STORE=postgres")?;
    // One database per data dir: a name from its path (FNV-1a), stable across restarts.
    let hash = data_dir
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    Some(database(&admin, &format!("e2e_{hash:016x}")))
}

/// Run one SQL statement on `url` and return its rows (`psql -At`: `|`-separated fields).
pub fn query(url: &str, sql: &str) -> Vec<String> {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
