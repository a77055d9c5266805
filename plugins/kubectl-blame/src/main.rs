//! `kubectl-blame`: the kubectl plugin that answers "who changed this?" from the history
//! Logistis records. With the binary on PATH, `kubectl blame ...` runs it.
//!
//! The tour, in the order a command flows:
//! - [`cli`]: clap arguments (`KIND[/NAME]`, `-n`, `-A`, filters, `-o`, history questions).
//! - [`command`]: checks the combination, picks the namespace, asks, prints.
//! - [`kinds`] and [`discovery`]: `deploy`/`deployments`/`Deployment`/`kind.group` to the
//!   kind and group the server records; a built-in table, API discovery for the rest.
//! - [`transport`]: the kube client, through the API server (the aggregated API) with the user's
//!   kubeconfig or directly with `--server`; [`query`]: the endpoints as typed calls.
//! - [`lock`]: `lock`, `locks` and `unlock` — freezes through `locks.logistis.io`.
//! - [`render`]: tables, patches, diffs and the blame view; [`time`] and [`color`]: ages like
//!   `35m`, and colour only where it helps.
//! - [`completion`]: shell completion, for kubectl's plugin completion
//!   (`kubectl_complete-blame`) and for `kubectl blame completion bash|zsh|fish`.
//!
//! The query API's types come from `logistis-api`, so this binary never links the server.

mod cli;
mod color;
mod command;
mod completion;
mod discovery;
mod kinds;
mod lock;
mod query;
mod render;
mod time;
mod transport;

use std::process::ExitCode;

use clap::Parser;

/// Exit statuses (also in `--help`).
const EXIT_NOT_FOUND: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_FAILURE: u8 = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // kubectl 1.26+ completes `kubectl blame …` by running `kubectl_complete-blame …`: the
    // shipped script runs `kubectl-blame __complete …`, and a copy or link of this binary under
    // that name answers directly.
    let invoked_as = args
        .first()
        .and_then(|arg0| std::path::Path::new(arg0).file_name())
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    if invoked_as.starts_with("kubectl_complete-") {
        return complete(&args[1..]);
    }
    match args.get(1).map(String::as_str) {
        Some("__complete") => return complete(&args[2..]),
        Some("completion") => return completion_script(&args[2..]),
        _ => {}
    }
    // `lock`, `locks` and `unlock` are commands; any other first word is a KIND.
    let is_lock_command = args
        .get(1)
        .is_some_and(|first| lock::SUBCOMMANDS.contains(&first.as_str()));
    let command = if is_lock_command {
        Command::Lock(Box::new(lock::LockCli::parse()))
    } else {
        Command::Blame(Box::new(cli::Cli::parse()))
    };
    // kube's TLS config asks rustls for the process default; name it so that a dependency
    // enabling a second provider cannot make that choice ambiguous.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let outcome = runtime.block_on(async {
        match command {
            Command::Blame(cli) => command::run(*cli).await,
            Command::Lock(cli) => lock::run(*cli).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", message(&error));
            ExitCode::from(exit_code(&error))
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
}

/// Answers a completion request; never fails (an error completes nothing).
fn complete(words: &[String]) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let words = if words.is_empty() {
        vec![String::new()]
    } else {
        words.to_vec()
    };
    let (candidates, directive) = match runtime() {
        Some(runtime) => runtime.block_on(completion::complete(&words)),
        None => (Vec::new(), completion::DIRECTIVE_NO_FILE_COMP),
    };
    print!("{}", completion::render(&candidates, directive));
    ExitCode::SUCCESS
}

/// `kubectl blame completion bash|zsh|fish`.
fn completion_script(args: &[String]) -> ExitCode {
    match args {
        [shell] => match completion::script(shell) {
            Some(script) => {
                print!("{script}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no completion for {shell:?}: use bash, zsh or fish");
                ExitCode::from(EXIT_USAGE)
            }
        },
        _ => {
            eprintln!(
                "usage: kubectl blame completion bash|zsh|fish\n\n\
                 kubectl 1.26 and later complete `kubectl blame` through the executable \
                 kubectl_complete-blame on PATH (in the release archive); this script is for \
                 `kubectl-blame` run on its own: source <(kubectl blame completion bash)"
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The error and its causes on one line, `outer: inner`, without repeating a cause that the
/// message before it already quotes (kube's kubeconfig errors include their source's text,
/// which would otherwise read `No such file or directory (os error 2): No such file or
/// directory (os error 2)`).
fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let current = cause.to_string();
        if !previous.is_empty() && previous.contains(&current) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&current);
        previous = current;
    }
    text
}

enum Command {
    Blame(Box<cli::Cli>),
    Lock(Box<lock::LockCli>),
}

/// Maps the first error in the chain that says what kind of failure this is.
fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(error) = cause.downcast_ref::<transport::Error>() {
            return match error {
                transport::Error::Api { status, .. } if *status == http::StatusCode::NOT_FOUND => {
                    EXIT_NOT_FOUND
                }
                transport::Error::Api { status, .. } if status.is_client_error() => EXIT_USAGE,
                _ => EXIT_FAILURE,
            };
        }
        if let Some(refused) = cause.downcast_ref::<lock::Refused>() {
            return if refused.status == http::StatusCode::NOT_FOUND {
                EXIT_NOT_FOUND
            } else if refused.status.is_client_error() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            };
        }
        if cause.is::<command::NotFound>() {
            return EXIT_NOT_FOUND;
        }
        if cause.is::<command::Usage>()
            || cause.is::<kinds::UnknownKind>()
            || cause.is::<time::InvalidTime>()
            || cause.is::<cli::TargetError>()
        {
            return EXIT_USAGE;
        }
    }
    EXIT_FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_kind_of_failure() {
        let api = |status: u16| {
            anyhow::Error::from(transport::Error::Api {
                status: http::StatusCode::from_u16(status).unwrap(),
                message: "x".into(),
            })
        };
        assert_eq!(exit_code(&api(404)), EXIT_NOT_FOUND);
        assert_eq!(exit_code(&api(400)), EXIT_USAGE);
        assert_eq!(exit_code(&api(500)), EXIT_FAILURE);
        let usage = anyhow::Error::from(command::Usage("x".into())).context("while asking");
        assert_eq!(exit_code(&usage), EXIT_USAGE);
        let missing = anyhow::Error::from(command::NotFound("x".into()));
        assert_eq!(exit_code(&missing), EXIT_NOT_FOUND);
        assert_eq!(exit_code(&anyhow::anyhow!("disk on fire")), EXIT_FAILURE);
    }

    #[test]
    fn messages_do_not_repeat_a_cause_already_quoted() {
        #[derive(Debug, thiserror::Error)]
        #[error("failed to read kubeconfig from 'x': {0}")]
        struct Quoting(#[source] std::io::Error);
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::from(Quoting(io)).context("could not load the kubeconfig");
        assert_eq!(
            message(&error),
            "could not load the kubeconfig: failed to read kubeconfig from 'x': no such file"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&plain), "outer: inner");
    }
}
