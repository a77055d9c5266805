//! End-to-end tests: the real `logistis` binary (and `kubectl-blame`, and plugins built from
//! this repository) driven over real HTTPS with real AdmissionReview payloads.
//!
//! One test binary, one module per area. Helpers are in `tests/support`.

mod admission;
mod certs;
mod cli;
mod deploy;
mod durability;
mod history;
mod plugins;
mod postgres;
mod query;
mod reload;
mod serve;
