//! The `logistis` binary: parse flags, install logging, run. Exit codes: 0 after a clean
//! shutdown, 1 when the server fails, 2 for bad flags or settings.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Every admission request allocates and frees a few parsed JSON trees across threads; glibc's
// allocator spent a fifth of the server's CPU on that under load, mimalloc a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use logistis::config::ServeArgs;

/// Logistis: who changed what in your Kubernetes cluster, and when.
#[derive(Debug, Parser)]
#[command(name = "logistis", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the admission webhook and the query API on the embedded store
    Serve(Box<ServeArgs>),
    /// Try a plugin outside the server: replay a review through it, or measure its cost
    Plugin(logistis::plugins::cli::PluginArgs),
    /// Post a scripted history by several users to a running server, to try `kubectl blame`
    Demo(logistis::demo::DemoArgs),
    /// Back up a running server's store, or restore a backup into a new data directory
    Store(logistis::store_commands::StoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Demo(args) => match logistis::demo::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", logistis::telemetry::chain(error.as_ref()));
                ExitCode::FAILURE
            }
        },
        Command::Store(args) => match logistis::store_commands::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", logistis::telemetry::chain(error.as_ref()));
                ExitCode::FAILURE
            }
        },
        Command::Plugin(args) => {
            // Guest log lines go through tracing: show them on stderr.
            logistis::telemetry::init(logistis::telemetry::LogFormat::Text);
            match logistis::plugins::cli::run(args) {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("error: {}", logistis::telemetry::chain(error.as_ref()));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let settings = match args.into_settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {}", logistis::telemetry::chain(&error));
            return ExitCode::from(2);
        }
    };
    logistis::telemetry::init(settings.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let query_scheme = if settings.query_plain_http {
        "http"
    } else {
        "https"
    };
    let result = runtime.block_on(async {
        let shutdown = logistis::shutdown::on_signal();
        logistis::server::run(settings, shutdown, |bound| {
            println!("webhook: https://{}/validate", bound.webhook);
            println!("query: {query_scheme}://{}", bound.query);
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "logistis failed");
            eprintln!("error: {}", logistis::telemetry::chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}
