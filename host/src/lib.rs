//! Logistis records who changed what in a Kubernetes cluster, and when.
//!
//! The tour, in the order an event travels:
//! - [`config`]: `logistis serve` flags, env vars and YAML → validated [`config::Settings`].
//! - [`http`]: the HTTPS listeners. `POST /validate` receives AdmissionReviews; the query
//!   API, health and metrics live on the query listener.
//! - [`admission`]: pure — review → [`logistis_api::Event`]: redact Secrets, strip noise,
//!   RFC 6902 patch, dedupe key.
//! - [`locks`]: freezes a person asked for — the only reason a review is ever denied.
//! - [`plugins`]: WebAssembly capture predicates (in the admission path) and sinks (on the
//!   durable log).
//! - [`store`]: fjall keyspaces, group commit, retention, queries.
//! - [`confirm`]: the watch against the cluster — each event `pending`, then `confirmed`
//!   or `phantom`; changes no review explains recorded as `observed`.
//! - [`tls`] and [`certs`]: the listeners' certificate — from files, self-signed, or managed
//!   by the server itself in a Kubernetes Secret with the webhook's caBundle kept current.
//! - [`auth`]: who is asking on the query listener and what they may read, delegated to the
//!   Kubernetes API server (front-proxy certificates, TokenReview, SubjectAccessReview).
//! - [`server`]: wires them together and shuts them down in order.
//! - [`demo`]: `logistis demo`, a scripted history posted to a running server.
//! - [`store_commands`]: `logistis store backup|restore` (through the server's backup
//!   endpoint, and offline).
//!
//! `http` calls the others; `admission`, `plugins` and `store` never import `http`.

pub mod admission;
pub mod auth;
pub mod certs;
pub mod config;
pub mod confirm;
pub mod demo;
pub mod hash_key;
pub mod history;
pub mod http;
pub mod locks;
pub mod metrics;
pub mod plugins;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod store_commands;
pub mod telemetry;
pub mod tls;
