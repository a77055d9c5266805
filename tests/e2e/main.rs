//! End-to-end tests: the real `logistis` binary (and `kubectl-blame`, and plugins built from
//! this repository) driven over real HTTPS with real AdmissionReview payloads.
//!
//! One test binary, one module per area. Helpers are in `tests/support`.

mod access;
mod admission;
mod apiserver;
mod backup;
mod certs;
mod cli;
mod completion;
mod confirm;
mod deploy;
mod dist;
mod durability;
mod faults;
mod history;
mod locks;
mod plugins;
mod postgres;
mod query;
mod readme;
mod reload;
mod scaffold;
mod serve;
