//! `kubectl-blame`: the kubectl plugin that answers "who changed this?" from the history
//! Logistis records. With the binary on PATH, `kubectl blame ...` runs it.
//!
//! The tour, in the order a command flows:
//! - [`cli`]: clap arguments (`KIND[/NAME]`, `-n`, `-A`, filters, `-o`, history questions).
//! - [`command`]: checks the combination, picks the namespace, asks, prints.
//! - [`kinds`] and [`discovery`]: `deploy`/`deployments`/`Deployment`/`kind.group` to the
//!   kind and group the server records; a built-in table, API discovery for the rest.
//! - [`transport`]: the kube client, through the API server's service proxy with the user's
//!   kubeconfig or directly with `--server`; [`query`]: the endpoints as typed calls.
//! - [`lock`]: `lock`, `locks` and `unlock` — freezes through `locks.logistis.io`.
//! - [`render`]: tables, patches, diffs and the blame view; [`time`] and [`color`]: ages like
//!   `35m`, and colour only where it helps.
//!
//! The query API's types come from `logistis-api`, so this binary never links the server.

mod cli;
mod color;
mod command;
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
    // `lock`, `locks` and `unlock` are commands; any other first word is a KIND.
    let is_lock_command = std::env::args()
        .nth(1)
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
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code(&error))
        }
    }
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
}
