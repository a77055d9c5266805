//! Logging: `tracing` with a text or JSON formatter; `RUST_LOG` overrides the level.
//! Only `main` installs the subscriber.

use std::fmt::Write as _;

use clap::ValueEnum;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The default filter: our `info`, the storage engine's warnings only (its `info` is per-flush).
pub const DEFAULT_FILTER: &str = "info,fjall=warn,lsm_tree=warn,wasmtime=warn,cranelift=warn";

/// Install the global subscriber (`RUST_LOG` wins over [`DEFAULT_FILTER`]).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// An error and its sources on one line: `outer: inner: innermost`. A source whose text the
/// message before it already quotes (many library errors include their source's text) is
/// not repeated.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut previous = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let current = cause.to_string();
        if !previous.contains(without_os_code(&current)) {
            let _ = write!(text, ": {current}");
            previous = current;
        }
        source = cause.source();
    }
    text
}

/// An I/O error's text without its ` (os error N)` suffix: errors that quote an I/O error
/// by its `Debug` form (fjall's) carry the message without it.
fn without_os_code(text: &str) -> &str {
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Plain(#[source] std::io::Error);

    #[test]
    fn an_io_error_quoted_by_its_debug_form_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("store I/O failed: FjallError: Io({0:?})")]
        struct DebugQuoting(#[source] std::io::Error);
        let io = std::io::Error::from_raw_os_error(28);
        let text = chain(&DebugQuoting(io));
        assert_eq!(text.matches("No space left on device").count(), 1, "{text}");
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        assert_eq!(
            chain(&Quoting(io())),
            "cannot open the store: No such file or directory"
        );
        assert_eq!(
            chain(&Plain(io())),
            "cannot start: No such file or directory"
        );
    }
}
