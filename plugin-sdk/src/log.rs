//! Write to the host's log. The host prefixes every line with the plugin's name; guests
//! have no stdout (WASI stdio is discarded), so this is the only way to say something.

use crate::Level;
use crate::predicate::logistis::plugin::host;

/// Log `message` at `level`. Outside a component (native unit tests) it goes to stderr.
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    host::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    {
        let _ = host::log;
        eprintln!("[{level:?}] {message}");
    }
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}
