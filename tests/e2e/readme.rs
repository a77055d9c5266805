//! The README's examples are real: every ```` ```console ```` block of README.md is replayed
//! against a fresh server fed by `logistis demo`, in document order, and its output compared
//! with what the README shows (ages, event ids, times and per-installation Secret hashes
//! aside). `make readme-examples` (this test with `LOGISTIS_UPDATE_README=1`) rewrites the
//! blocks in place from the replay instead, so a change to an output is one command away
//! from the README.
//!
//! A block is a list of `$ COMMAND` lines, each followed by its output (stdout and stderr as
//! a terminal shows them). Commands run in bash in a directory whose `logistis-data` is the
//! server's data dir, with the built `logistis` and `kubectl-blame` first on PATH, no
//! kubeconfig, and the README's addresses (`127.0.0.1:8443`, `127.0.0.1:8081`) pointing at
//! the test's server. `export` lines carry over to the commands after them.

use std::path::{Path, PathBuf};
use std::process::Command;

use logistis_e2e::{Server, cargo_bin, repo_root};

const README_WEBHOOK: &str = "127.0.0.1:8443";
const README_QUERY: &str = "127.0.0.1:8081";
const UPDATE_ENV: &str = "LOGISTIS_UPDATE_README";
/// Settings of the developer's shell that would change what the commands print.
const CLEARED_ENV: &[&str] = &[
    "LOGISTIS_SERVER",
    "LOGISTIS_ALLOW_BACKUP",
    "LOGISTIS_NAMESPACE",
    "LOGISTIS_SERVICE",
    "LOGISTIS_CERTIFICATE_AUTHORITY",
    "LOGISTIS_INSECURE_SKIP_TLS_VERIFY",
    "LOGISTIS_BLAME_TIME",
    "LOGISTIS_BLAME_COLOR",
    "NO_COLOR",
];

/// One ```` ```console ```` block: its line range in the README and its commands.
#[derive(Debug)]
struct Block {
    /// Lines between the fences, exclusive.
    start: usize,
    end: usize,
    commands: Vec<(String, String)>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        if lines[index].trim_end() != "```console" {
            index += 1;
            continue;
        }
        let start = index + 1;
        let mut end = start;
        while end < lines.len() && lines[end].trim_end() != "```" {
            end += 1;
        }
        let mut commands: Vec<(String, String)> = Vec::new();
        for line in &lines[start..end] {
            if let Some(command) = line.strip_prefix("$ ") {
                commands.push((command.to_owned(), String::new()));
            } else if let Some((_, output)) = commands.last_mut() {
                output.push_str(line);
                output.push('\n');
            } else {
                panic!(
                    "README.md line {}: a console block starts with `$ COMMAND`",
                    start + 1
                );
            }
        }
        blocks.push(Block {
            start,
            end,
            commands,
        });
        index = end + 1;
    }
    blocks
}

/// Ages (`4s`, `3m`), event ids, RFC 3339 times and Secret hashes differ from run to run;
/// so does the width of the columns that hold them.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut previous = "";
        let words: Vec<String> = line
            .split_whitespace()
            .map(|word| {
                let after = std::mem::replace(&mut previous, word);
                if after == "\"continue\":" {
                    // A continue token encodes an event id.
                    return "<token>".to_owned();
                }
                let bare = word.trim_matches(|c: char| ",.;()'\"".contains(c));
                if is_age(bare) {
                    word.replace(bare, "<age>")
                } else if bare.len() == 16 && bare.chars().all(|c| c.is_ascii_hexdigit()) {
                    word.replace(bare, "<id>")
                } else if let Some(hash) = word.find("hmac-sha256:") {
                    format!("{}hmac-sha256:<hash>", &word[..hash])
                } else if chrono::DateTime::parse_from_rfc3339(bare).is_ok() {
                    word.replace(bare, "<time>")
                } else {
                    word.to_owned()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

fn is_age(word: &str) -> bool {
    let digits = word.trim_end_matches(['s', 'm', 'h', 'd']);
    word.len() - digits.len() == 1
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// Runs the commands of every block in order; returns the outputs.
fn replay(blocks: &[Block], workdir: &Path, server: &Server) -> Vec<Vec<String>> {
    let bin_dir = cargo_bin("logistis", "logistis")
        .parent()
        .expect("binaries live in a directory")
        .to_owned();
    cargo_bin("kubectl-blame", "kubectl-blame");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let webhook = server
        .webhook_url
        .trim_start_matches("https://")
        .trim_end_matches("/validate")
        .to_owned();
    let query = server.query_url.trim_start_matches("https://").to_owned();
    let mut exports = String::new();
    blocks
        .iter()
        .map(|block| {
            block
                .commands
                .iter()
                .map(|(command, _)| {
                    let shown = command
                        .replace(README_WEBHOOK, &webhook)
                        .replace(README_QUERY, &query);
                    if command.starts_with("export ") {
                        exports.push_str(&shown);
                        exports.push('\n');
                    }
                    let mut run = Command::new("bash");
                    run.arg("-c")
                        .arg(format!("exec 2>&1\n{exports}{shown}"))
                        .current_dir(workdir)
                        .env("LOGISTIS_DEMO_WEBHOOK", &server.webhook_url)
                        .env("PATH", &path)
                        .env("KUBECONFIG", workdir.join("no-kubeconfig"));
                    for name in CLEARED_ENV {
                        run.env_remove(name);
                    }
                    let output = run
                        .output()
                        .unwrap_or_else(|e| panic!("cannot run bash for `{command}`: {e}"));
                    let mut text = String::from_utf8_lossy(&output.stdout)
                        .replace(&webhook, README_WEBHOOK)
                        .replace(&query, README_QUERY);
                    if !text.is_empty() && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text
                })
                .collect()
        })
        .collect()
}

fn rewrite(readme: &str, blocks: &[Block], outputs: &[Vec<String>]) -> String {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = String::new();
    let mut next = 0;
    for (block, outputs) in blocks.iter().zip(outputs) {
        for line in &lines[next..block.start] {
            out.push_str(line);
            out.push('\n');
        }
        for ((command, _), output) in block.commands.iter().zip(outputs) {
            out.push_str("$ ");
            out.push_str(command);
            out.push('\n');
            out.push_str(output);
        }
        next = block.end;
    }
    for line in &lines[next..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn every_console_example_is_what_the_demo_prints() {
    let readme_path: PathBuf = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md is readable");
    let blocks = blocks(&readme);
    assert!(
        blocks.iter().map(|b| b.commands.len()).sum::<usize>() >= 8,
        "the README shows the demo's examples in ```console blocks"
    );
    let workdir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .data_dir(&workdir.path().join("logistis-data"))
        .start()
        .unwrap();
    let outputs = replay(&blocks, workdir.path(), &server);

    if std::env::var_os(UPDATE_ENV).is_some() {
        let updated = rewrite(&readme, &blocks, &outputs);
        std::fs::write(&readme_path, updated).expect("README.md is writable");
        eprintln!(
            "README.md: {} console blocks rewritten from the demo",
            blocks.len()
        );
        return;
    }
    let mut differences = Vec::new();
    for (block, outputs) in blocks.iter().zip(&outputs) {
        for ((command, shown), actual) in block.commands.iter().zip(outputs) {
            if normalize(shown) != normalize(actual) {
                differences.push(format!(
                    "$ {command}\n--- README.md (line {})\n{shown}+++ now\n{actual}",
                    block.start + 1
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "README.md shows outputs that the demo no longer gives; run `make readme-examples` \
         to rewrite them, and review the diff:\n\n{}",
        differences.join("\n")
    );
}

#[test]
fn normalizing_keeps_what_matters_and_drops_what_varies() {
    let shown = "Deployment.apps/web   UPDATE   bob   4s   replace /spec/replicas 5\n\
                 event 0006619152a467c6, 2026-12-01T12:00:00.123456Z hmac-sha256:MosRiQo77Gpz\n";
    let later = "Deployment.apps/web UPDATE bob 12m replace /spec/replicas 5\n\
                 event 00066191aaaaaaaa, 2026-12-02T13:00:00Z hmac-sha256:J9RaSOjjvUKa\n";
    assert_eq!(normalize(shown), normalize(later));
    assert_ne!(
        normalize(shown),
        normalize(&shown.replace("replicas 5", "replicas 6"))
    );
    assert!(!is_age("1.5s") && !is_age("s") && is_age("35m"));
}

#[test]
fn blocks_are_commands_and_their_outputs() {
    let text = "intro\n```console\n$ a\none\ntwo\n$ b\n```\nafter\n```sh\n$ not\n```\n";
    let found = blocks(text);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].commands,
        vec![
            ("a".to_owned(), "one\ntwo\n".to_owned()),
            ("b".to_owned(), String::new())
        ]
    );
    let again = rewrite(text, &found, &[vec!["ONE\n".into(), "B\n".into()]]);
    assert_eq!(
        again,
        "intro\n```console\n$ a\nONE\n$ b\nB\n```\nafter\n```sh\n$ not\n```\n"
    );
}
