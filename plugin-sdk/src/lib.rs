//! The Logistis plugin SDK: write a capture predicate or a sink in a few lines of Rust.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2` against the WIT package
//! `logistis:plugin@0.1.0` (the repository's `wit/`). This crate owns the generated guest
//! bindings, so a plugin only implements [`Predicate`] or [`Sink`] and invokes
//! [`export_predicate!`] or [`export_sink!`]:
//!
//! ```no_run
//! use logistis_plugin_sdk::{Event, Predicate, Verdict};
//!
//! struct SkipKubeSystem;
//!
//! impl Predicate for SkipKubeSystem {
//!     fn configure(_config: &str) -> Result<Self, String> {
//!         Ok(SkipKubeSystem)
//!     }
//!     fn evaluate(&self, event: &Event) -> Verdict {
//!         if event.namespace_in(&["kube-system"]) { Verdict::Skip } else { Verdict::Capture }
//!     }
//! }
//!
//! logistis_plugin_sdk::export_predicate!(SkipKubeSystem);
//! ```
//!
//! Module map: [`predicate`] and [`sink`] are the generated bindings of the two worlds
//! (sharing one set of types); [`event`] adds the common questions as methods on [`Event`]
//! (user glob, namespace list, operation/kind is, path changed); [`glob`] is the matcher
//! they use; [`log`] writes to the host's log; [`config`] parses the plugin's config;
//! [`testing`] has sample events for native unit tests;
//! `http` (feature `http`) posts JSON through `wasi:http` for sinks.
//!
//! The plugin logic is plain Rust over [`Event`], so it is unit-tested natively with
//! `cargo test`; the host functions (log, HTTP) only exist inside a component.

pub mod config;
pub mod event;
pub mod glob;
#[cfg(feature = "http")]
pub mod http;
pub mod log;
pub mod testing;

/// Generated bindings of the `predicate` world.
#[allow(missing_docs, clippy::all)]
pub mod predicate {
    wit_bindgen::generate!({
        path: "../wit",
        world: "predicate",
        pub_export_macro: true,
        export_macro_name: "__export_predicate_world",
        default_bindings_module: "logistis_plugin_sdk::predicate",
    });
}

/// Generated bindings of the `sink` world; its types are the predicate world's.
#[allow(missing_docs, clippy::all)]
pub mod sink {
    wit_bindgen::generate!({
        path: "../wit",
        world: "sink",
        pub_export_macro: true,
        export_macro_name: "__export_sink_world",
        default_bindings_module: "logistis_plugin_sdk::sink",
        with: {
            "logistis:plugin/types@0.1.0": crate::predicate::logistis::plugin::types,
            "logistis:plugin/host@0.1.0": crate::predicate::logistis::plugin::host,
        },
    });
}

pub use predicate::logistis::plugin::types::{Event, Level, ObjectRef, Operation, User, Verdict};

/// A capture predicate. One value is built per component instance by [`configure`] and
/// then asked about every event.
///
/// [`configure`]: Predicate::configure
pub trait Predicate: Sized + Send + Sync + 'static {
    /// Build the predicate from its config (JSON text, `null` when `plugins.yaml` has
    /// none). An error rejects the plugin set at load time, with this message.
    fn configure(config: &str) -> Result<Self, String>;

    /// Capture or skip one event.
    fn evaluate(&self, event: &Event) -> Verdict;
}

/// A sink. Built once per instance by [`configure`], then handed batches of stored
/// events, oldest first. An error makes the host retry the same batch later.
///
/// [`configure`]: Sink::configure
pub trait Sink: Sized + Send + Sync + 'static {
    /// As for [`Predicate::configure`].
    fn configure(config: &str) -> Result<Self, String>;

    /// Deliver a batch; deliveries may be repeated after a failure.
    fn deliver(&self, events: &[Event]) -> Result<(), String>;
}

/// Export a [`Predicate`] implementation as the component's `predicate` world.
#[macro_export]
macro_rules! export_predicate {
    ($plugin:ty) => {
        const _: () = {
            static PLUGIN: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();

            struct Export;

            impl $crate::predicate::Guest for Export {
                fn configure(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    let plugin = <$plugin as $crate::Predicate>::configure(&config)?;
                    PLUGIN
                        .set(plugin)
                        .map_err(|_| ::std::string::String::from("configure called twice"))
                }

                fn evaluate(event: $crate::Event) -> $crate::Verdict {
                    match PLUGIN.get() {
                        Some(plugin) => <$plugin as $crate::Predicate>::evaluate(plugin, &event),
                        // The host always configures first; capturing is the safe answer.
                        None => $crate::Verdict::Capture,
                    }
                }
            }

    $crate::predicate::__export_predicate_world!(Export with_types_in $crate::predicate);
        };
    };
}

/// Export a [`Sink`] implementation as the component's `sink` world.
#[macro_export]
macro_rules! export_sink {
    ($plugin:ty) => {
        const _: () = {
            static PLUGIN: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();

            struct Export;

            impl $crate::sink::Guest for Export {
                fn configure(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    let plugin = <$plugin as $crate::Sink>::configure(&config)?;
                    PLUGIN
                        .set(plugin)
                        .map_err(|_| ::std::string::String::from("configure called twice"))
                }

                fn deliver(
                    events: ::std::vec::Vec<$crate::Event>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    match PLUGIN.get() {
                        Some(plugin) => <$plugin as $crate::Sink>::deliver(plugin, &events),
                        None => Err(::std::string::String::from("sink used before configure")),
                    }
                }
            }

    $crate::sink::__export_sink_world!(Export with_types_in $crate::sink);
        };
    };
}
