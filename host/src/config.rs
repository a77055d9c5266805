//! Configuration: the `logistis serve` flags (each also a `LOGISTIS_*` environment variable
//! and a key of the optional YAML file given with `--config`) become validated [`Settings`].
//!
//! Precedence: flag or environment variable, then the config file, then the default. Every
//! value is checked before any socket is bound; a bad one is one clear line and exit code 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::admission::Policy;
use crate::certs::CertSettings;
use crate::confirm::{ConfirmSettings, ResourcePattern};
use crate::plugins::PluginSettings;
use crate::store::{BackendSettings, Durability, StoreSettings};
use crate::telemetry::LogFormat;

pub const DEFAULT_DATA_DIR: &str = "./logistis-data";
pub const DEFAULT_WEBHOOK_LISTEN: &str = "0.0.0.0:8443";
pub const DEFAULT_QUERY_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_MAX_VERSIONS: u32 = 100;
pub const DEFAULT_RETENTION: &str = "30d";
pub const DEFAULT_STORE_COMMIT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_OUTBOX_MAX_BYTES: u64 = 1 << 30;
/// The API server sends at most ~3 MiB objects (etcd's limit is 1.5 MiB per object, and a
/// review carries two); 16 MiB leaves room without letting one request exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Review bodies held at once: ~18 reviews as large as the API server sends (an object
/// and its old object at etcd's 1.5 MiB each, plus the envelope), or 4 at --max-body-size,
/// so that parsing them stays well inside the pod's 1 GiB limit.
pub const DEFAULT_INFLIGHT_BODY_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_CERT_SECRET: &str = "logistis-tls";
pub const DEFAULT_SERVICE: &str = "logistis";
pub const DEFAULT_WEBHOOK_CONFIGURATION: &str = "logistis";
/// Where a pod finds its own namespace (the service account mount).
pub const SERVICE_ACCOUNT_NAMESPACE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Who may read the query listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryAuth {
    /// nobody is asked who they are: only allowed on a loopback address
    #[default]
    None,
    /// authentication and RBAC delegated to the Kubernetes API server (front-proxy
    /// certificates, TokenReview, SubjectAccessReview), as an aggregated API server does
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityArg {
    /// fsync (group commit) before the webhook answers
    Sync,
    /// answer once written to the OS; fsync in the background
    Async,
}

/// `logistis serve`: run the webhook and the query API.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeArgs {
    /// YAML file with any of these settings (keys as the flag names, e.g. `data-dir`)
    #[arg(long, env = "LOGISTIS_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Directory of the embedded store, the Secret hashing key and generated certificates
    /// [default: ./logistis-data]
    #[arg(long, env = "LOGISTIS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address of the webhook listener (HTTPS, POST /validate) [default: 0.0.0.0:8443]
    #[arg(long, env = "LOGISTIS_WEBHOOK_LISTEN", value_name = "ADDR")]
    pub webhook_listen: Option<SocketAddr>,

    /// Address of the query API, health and metrics listener [default: 127.0.0.1:8081]
    #[arg(long, env = "LOGISTIS_QUERY_LISTEN", value_name = "ADDR")]
    pub query_listen: Option<SocketAddr>,

    /// Authentication of the query listener: `kubernetes` (required on any non-loopback
    /// address) or `none` [default: none]
    #[arg(long, env = "LOGISTIS_QUERY_AUTH", value_enum, value_name = "MODE")]
    pub query_auth: Option<QueryAuth>,

    /// PEM CA that must have signed the client certificate of whoever posts reviews (the
    /// API server, configured with an AdmissionConfiguration kubeconfig); others get 401/403
    #[arg(long, env = "LOGISTIS_WEBHOOK_CLIENT_CA", value_name = "FILE")]
    pub webhook_client_ca: Option<PathBuf>,

    /// Common names accepted in that client certificate (comma-separated; empty: any name
    /// the CA signed)
    #[arg(
        long,
        env = "LOGISTIS_WEBHOOK_CLIENT_ALLOWED_NAMES",
        value_name = "NAMES",
        value_delimiter = ',',
        requires = "webhook_client_ca"
    )]
    pub webhook_client_allowed_names: Vec<String>,

    /// Serve the query listener over plain HTTP (only allowed on a loopback address)
    #[arg(long, env = "LOGISTIS_QUERY_PLAIN_HTTP")]
    pub query_plain_http: bool,

    /// PEM certificate (chain) for both listeners; reloaded when the file changes
    #[arg(
        long,
        env = "LOGISTIS_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert; reloaded when the file changes
    #[arg(
        long,
        env = "LOGISTIS_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Generate a local CA and certificate in DATA_DIR/tls (for trying Logistis out)
    #[arg(long, env = "LOGISTIS_SELF_SIGNED", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub self_signed: bool,

    /// In a cluster: keep a CA and the serving certificate in a Kubernetes Secret (renewed
    /// before expiry) and the webhook configuration's caBundle up to date
    #[arg(
        long,
        env = "LOGISTIS_MANAGE_CERTS",
        conflicts_with_all = ["tls_cert", "tls_key", "self_signed"]
    )]
    pub manage_certs: bool,

    /// Namespace of the certificate Secret and of the Service (with --manage-certs)
    /// [default: the pod's own namespace]
    #[arg(long, env = "LOGISTIS_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,

    /// The Secret holding the CA and serving certificate; must exist, may be empty
    /// (with --manage-certs) [default: logistis-tls]
    #[arg(long, env = "LOGISTIS_CERT_SECRET", value_name = "NAME")]
    pub cert_secret: Option<String>,

    /// The Service in front of the webhook: the certificate is for NAME, NAME.NS, NAME.NS.svc
    /// and NAME.NS.svc.cluster.local (with --manage-certs) [default: logistis]
    #[arg(long, env = "LOGISTIS_SERVICE", value_name = "NAME")]
    pub service: Option<String>,

    /// The ValidatingWebhookConfiguration whose webhooks calling the Service get the caBundle
    /// (with --manage-certs) [default: logistis]
    #[arg(long, env = "LOGISTIS_WEBHOOK_CONFIGURATION", value_name = "NAME")]
    pub webhook_configuration: Option<String>,

    /// When an event is durable before the webhook answers [default: sync]
    #[arg(long, env = "LOGISTIS_DURABILITY", value_enum)]
    pub durability: Option<DurabilityArg>,

    /// Versions kept per object, 0 = unlimited [default: 100]
    #[arg(long, env = "LOGISTIS_MAX_VERSIONS_PER_OBJECT", value_name = "N")]
    pub max_versions_per_object: Option<u32>,

    /// Remove events older than this (e.g. 30d, 12h; 0 = keep forever) [default: 30d]
    #[arg(long, env = "LOGISTIS_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,

    /// Remove the oldest events while the store is larger than this (e.g. 10Gi, 500M)
    #[arg(long, env = "LOGISTIS_MAX_STORE_SIZE", value_name = "BYTES")]
    pub max_store_size: Option<String>,

    /// Memory for the store's block cache, memtables and delta bases together (e.g. 32Mi,
    /// 256Mi; at least 4Mi) [default: 32Mi]
    #[arg(long, env = "LOGISTIS_STORE_MEMORY", value_name = "BYTES")]
    pub store_memory: Option<String>,
    /// Where events are stored: `embedded` (fjall in DATA_DIR/store) or a PostgreSQL-protocol
    /// database, `postgres://USER@HOST:PORT/DB?sslmode=verify-full` (PostgreSQL, CockroachDB,
    /// YugabyteDB), which several replicas and clusters can share [default: embedded]
    #[arg(long, env = "LOGISTIS_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// File holding the database password (e.g. a mounted Secret); or set
    /// LOGISTIS_STORE_PASSWORD
    #[arg(long, env = "LOGISTIS_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,

    /// The database password (environment only: never a flag on a command line)
    #[arg(skip)]
    #[serde(skip)]
    pub store_password: Option<String>,

    /// PEM CA that signed the database's certificate (as libpq's sslrootcert)
    #[arg(long, env = "LOGISTIS_STORE_CA_FILE", value_name = "FILE")]
    pub store_ca_file: Option<PathBuf>,

    /// With a database: a group commit slower than this goes to the local outbox, so the
    /// webhook answers in time while the database is slow or away [default: 2s]
    #[arg(long, env = "LOGISTIS_STORE_COMMIT_TIMEOUT", value_name = "DURATION")]
    pub store_commit_timeout: Option<String>,

    /// With a database: the local outbox (DATA_DIR/store/outbox) holds at most this much
    /// [default: 1Gi]
    #[arg(long, env = "LOGISTIS_OUTBOX_MAX_SIZE", value_name = "BYTES")]
    pub outbox_max_size: Option<String>,

    /// This cluster's name, stamped on every event: clusters sharing one database are told
    /// apart by it (and `kubectl blame --cluster NAME` filters on it)
    #[arg(long, env = "LOGISTIS_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,

    /// Record dry-run requests (flagged `dryRun: true`); skipped by default
    #[arg(long, env = "LOGISTIS_RECORD_DRY_RUN")]
    pub record_dry_run: bool,

    /// Record UPDATEs that change only status, resourceVersion, generation or managedFields
    #[arg(long, env = "LOGISTIS_RECORD_NOISE")]
    pub record_noise: bool,

    /// Serve GET /api/v1/backup on the query listener (the whole history, for `logistis store
    /// backup`); off by default
    #[arg(long, env = "LOGISTIS_ALLOW_BACKUP")]
    pub allow_backup: bool,

    /// Largest accepted AdmissionReview body (e.g. 16Mi) [default: 16Mi]
    #[arg(long, env = "LOGISTIS_MAX_BODY_SIZE", value_name = "BYTES")]
    pub max_body_size: Option<String>,

    /// Directory with plugins.yaml and the plugin .wasm files (reloaded on change)
    #[arg(long, env = "LOGISTIS_PLUGINS_DIR", value_name = "DIR")]
    pub plugins_dir: Option<PathBuf>,

    /// Where compiled plugins are cached, keyed by content hash; may be shared by several
    /// servers [default: DATA_DIR/plugin-cache]
    #[arg(long, env = "LOGISTIS_PLUGINS_CACHE_DIR", value_name = "DIR")]
    pub plugins_cache_dir: Option<PathBuf>,

    /// Longest a review's predicate chain may take from the review's arrival; past it the
    /// plugin set's top-level on-error decides. Keep it below the webhook's timeoutSeconds
    /// (2 s in the shipped manifests) minus the time to store and answer [default: 1500ms]
    #[arg(long, env = "LOGISTIS_PLUGIN_CHAIN_TIMEOUT", value_name = "DURATION")]
    pub plugin_chain_timeout: Option<String>,

    /// Linear memory all plugin instances may hold together (e.g. 512Mi); a growth or a new
    /// instance past it fails that call [default: half the container's memory limit, else
    /// 512Mi]
    #[arg(long, env = "LOGISTIS_PLUGIN_MEMORY_BUDGET", value_name = "BYTES")]
    pub plugin_memory_budget: Option<String>,

    /// Open connections per listener; past it new connections are closed at once
    /// [default: 1024]
    #[arg(long, env = "LOGISTIS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// A new connection must send its first request, and an HTTP/1.1 request its whole head,
    /// within this [default: 10s]
    #[arg(long, env = "LOGISTIS_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    pub header_read_timeout: Option<String>,

    /// A connection silent both ways for this long is closed [default: 90s]
    #[arg(long, env = "LOGISTIS_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,

    /// Bytes of review bodies the webhook holds at once, across all requests; a review that
    /// does not fit waits (up to 1 s) and is then answered 503 [default: 64Mi]
    #[arg(long, env = "LOGISTIS_MAX_INFLIGHT_BODIES", value_name = "BYTES")]
    pub max_inflight_bodies: Option<String>,

    /// Log format [default: text]
    #[arg(long, env = "LOGISTIS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Confirm every recorded change against the cluster with a watch (needs list and watch
    /// RBAC): events become confirmed or phantom, unreviewed changes are recorded as observed
    #[arg(long, env = "LOGISTIS_CONFIRM")]
    pub confirm: bool,

    /// A pending change no watch event matched this long after the watch caught up past it
    /// is a phantom (e.g. 5s, 500ms) [default: 5s]
    #[arg(long, env = "LOGISTIS_CONFIRM_DEADLINE", value_name = "DURATION")]
    pub confirm_deadline: Option<String>,

    /// Watch only these resources, RESOURCE[.GROUP] with * globs, comma-separated
    /// (e.g. deployments.apps,*.example.com) [default: every listable resource]
    #[arg(long, env = "LOGISTIS_CONFIRM_INCLUDE", value_name = "PATTERNS")]
    pub confirm_include: Option<String>,

    /// Never watch these resources (RESOURCE[.GROUP] patterns, comma-separated); leases,
    /// events and access reviews are always left out
    #[arg(long, env = "LOGISTIS_CONFIRM_EXCLUDE", value_name = "PATTERNS")]
    pub confirm_exclude: Option<String>,

    /// Namespaces whose objects are not confirmed, comma-separated (those the webhook's
    /// namespaceSelector leaves out, e.g. logistis)
    #[arg(
        long,
        env = "LOGISTIS_CONFIRM_EXCLUDE_NAMESPACES",
        value_name = "NAMESPACES"
    )]
    pub confirm_exclude_namespaces: Option<String>,

    /// Objects compared per second while catching up after a (re)list, so a large
    /// cluster's first list does not starve the webhook [default: 1000]
    #[arg(long, env = "LOGISTIS_CONFIRM_CATCHUP_RATE", value_name = "N")]
    pub confirm_catchup_rate: Option<u32>,

    /// Benchmarking only: parse and answer reviews, record nothing
    #[arg(long, env = "LOGISTIS_ANSWER_ONLY", hide = true)]
    pub answer_only: bool,

    /// Benchmarking only: build every event and hand it to the store writer, which answers
    /// without writing it (a flag only: no environment variable, no config key)
    #[arg(long, hide = true, conflicts_with = "answer_only")]
    #[serde(skip)]
    pub discard_events: bool,
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    SelfSigned,
    /// `--manage-certs`: kept in a Kubernetes Secret by [`crate::certs`].
    Managed(CertSettings),
}

/// `--webhook-client-ca`: who may post reviews.
#[derive(Debug, Clone)]
pub struct WebhookClientAuth {
    pub ca: crate::tls::ClientCa,
    pub ca_path: PathBuf,
    pub allowed_names: Vec<String>,
}

/// Validated settings for `serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub webhook_listen: SocketAddr,
    pub query_listen: SocketAddr,
    pub query_plain_http: bool,
    pub query_auth: QueryAuth,
    pub webhook_client: Option<WebhookClientAuth>,
    pub tls: TlsSource,
    pub store: StoreSettings,
    pub policy: Policy,
    pub max_body_bytes: usize,
    pub plugins: PluginSettings,
    pub log_format: LogFormat,
    pub answer_only: bool,
    /// `--confirm`: the watch against the cluster, when on.
    pub confirm: Option<ConfirmSettings>,
    /// Timeouts and cap of open connections, the same on both listeners.
    pub connections: crate::http::serve::ConnectionLimits,
    /// Bytes of review bodies held at once by the webhook.
    pub inflight_body_bytes: usize,
    /// `GET /api/v1/backup` answers (`--allow-backup`).
    pub allow_backup: bool,
}

/// A setting that cannot be used; the message names the flag and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    ParseFile {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

impl ServeArgs {
    /// Fill what the flags left unset from the config file.
    fn merge(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config,
            data_dir: self.data_dir.or(file.data_dir),
            webhook_listen: self.webhook_listen.or(file.webhook_listen),
            query_listen: self.query_listen.or(file.query_listen),
            query_plain_http: self.query_plain_http || file.query_plain_http,
            query_auth: self.query_auth.or(file.query_auth),
            webhook_client_ca: self.webhook_client_ca.or(file.webhook_client_ca),
            webhook_client_allowed_names: if self.webhook_client_allowed_names.is_empty() {
                file.webhook_client_allowed_names
            } else {
                self.webhook_client_allowed_names
            },
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            self_signed: self.self_signed || file.self_signed,
            manage_certs: self.manage_certs || file.manage_certs,
            namespace: self.namespace.or(file.namespace),
            cert_secret: self.cert_secret.or(file.cert_secret),
            service: self.service.or(file.service),
            webhook_configuration: self.webhook_configuration.or(file.webhook_configuration),
            durability: self.durability.or(file.durability),
            max_versions_per_object: self
                .max_versions_per_object
                .or(file.max_versions_per_object),
            retention: self.retention.or(file.retention),
            max_store_size: self.max_store_size.or(file.max_store_size),
            store_memory: self.store_memory.or(file.store_memory),
            store: self.store.or(file.store),
            store_password_file: self.store_password_file.or(file.store_password_file),
            store_password: self.store_password,
            store_ca_file: self.store_ca_file.or(file.store_ca_file),
            store_commit_timeout: self.store_commit_timeout.or(file.store_commit_timeout),
            outbox_max_size: self.outbox_max_size.or(file.outbox_max_size),
            cluster: self.cluster.or(file.cluster),
            record_dry_run: self.record_dry_run || file.record_dry_run,
            record_noise: self.record_noise || file.record_noise,
            allow_backup: self.allow_backup || file.allow_backup,
            max_body_size: self.max_body_size.or(file.max_body_size),
            plugins_dir: self.plugins_dir.or(file.plugins_dir),
            plugins_cache_dir: self.plugins_cache_dir.or(file.plugins_cache_dir),
            plugin_chain_timeout: self.plugin_chain_timeout.or(file.plugin_chain_timeout),
            plugin_memory_budget: self.plugin_memory_budget.or(file.plugin_memory_budget),
            max_connections: self.max_connections.or(file.max_connections),
            header_read_timeout: self.header_read_timeout.or(file.header_read_timeout),
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            max_inflight_bodies: self.max_inflight_bodies.or(file.max_inflight_bodies),
            log_format: self.log_format.or(file.log_format),
            answer_only: self.answer_only || file.answer_only,
            confirm: self.confirm || file.confirm,
            confirm_deadline: self.confirm_deadline.or(file.confirm_deadline),
            confirm_include: self.confirm_include.or(file.confirm_include),
            confirm_exclude: self.confirm_exclude.or(file.confirm_exclude),
            confirm_exclude_namespaces: self
                .confirm_exclude_namespaces
                .or(file.confirm_exclude_namespaces),
            confirm_catchup_rate: self.confirm_catchup_rate.or(file.confirm_catchup_rate),
            discard_events: self.discard_events,
        }
    }

    /// Read the config file (if any), merge, and validate everything.
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let args = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
                let file: ServeArgs =
                    serde_yaml::from_str(&text).map_err(|source| ConfigError::ParseFile {
                        path: path.clone(),
                        source,
                    })?;
                self.merge(file)
            }
            None => self,
        };
        args.validate()
    }

    fn validate(self) -> Result<Settings, ConfigError> {
        let confirm = self.confirm_settings()?;
        if self.manage_certs
            && (self.tls_cert.is_some() || self.tls_key.is_some() || self.self_signed)
        {
            return Err(invalid(
                "--manage-certs cannot be combined with --tls-cert/--tls-key or --self-signed",
            ));
        }
        let managed = self
            .manage_certs
            .then(|| self.cert_settings(Path::new(SERVICE_ACCOUNT_NAMESPACE)))
            .transpose()?;
        let backend = self.backend()?;
        if confirm.is_some() && matches!(backend, BackendSettings::Postgres(_)) {
            // Statuses live in the embedded store's own keyspaces; with a shared database
            // each replica would confirm (and mark phantoms) on its own.
            return Err(invalid(
                "--confirm needs the embedded store: it cannot be combined with --store postgres://…",
            ));
        }
        let cluster = self.cluster.clone().unwrap_or_default();
        if cluster.len() > 253 || cluster.chars().any(|c| c.is_control()) {
            return Err(invalid(format!(
                "--cluster {cluster:?}: at most 253 printable characters"
            )));
        }
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let webhook_listen = self
            .webhook_listen
            .unwrap_or_else(|| DEFAULT_WEBHOOK_LISTEN.parse().expect("valid default"));
        let query_listen = self
            .query_listen
            .unwrap_or_else(|| DEFAULT_QUERY_LISTEN.parse().expect("valid default"));
        if webhook_listen == query_listen && webhook_listen.port() != 0 {
            return Err(invalid(format!(
                "--webhook-listen and --query-listen are both {webhook_listen}: give them different ports"
            )));
        }
        if self.query_plain_http && !query_listen.ip().is_loopback() {
            return Err(invalid(format!(
                "--query-plain-http is only allowed on a loopback address, not {query_listen}"
            )));
        }
        let query_auth = self.query_auth.unwrap_or_default();
        if query_auth == QueryAuth::None && !query_listen.ip().is_loopback() {
            return Err(invalid(format!(
                "the query listener {query_listen} is not on loopback: add --query-auth kubernetes (readers authenticated and authorized by the cluster's RBAC) or listen on 127.0.0.1"
            )));
        }
        let webhook_client = match &self.webhook_client_ca {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|error| {
                    invalid(format!("--webhook-client-ca {}: {error}", path.display()))
                })?;
                let ca = crate::tls::ClientCa::from_pem(&pem).map_err(|error| {
                    invalid(format!("--webhook-client-ca {}: {error}", path.display()))
                })?;
                Some(WebhookClientAuth {
                    ca,
                    ca_path: path.clone(),
                    allowed_names: self
                        .webhook_client_allowed_names
                        .iter()
                        .map(|n| n.trim().to_owned())
                        .filter(|n| !n.is_empty())
                        .collect(),
                })
            }
        };
        let tls = if let Some(managed) = managed {
            TlsSource::Managed(managed)
        } else {
            match (self.tls_cert, self.tls_key, self.self_signed) {
                (Some(_), Some(_), true) => {
                    return Err(invalid(
                        "--self-signed cannot be combined with --tls-cert/--tls-key",
                    ));
                }
                (Some(cert), Some(key), false) => {
                    for (flag, path) in [("--tls-cert", &cert), ("--tls-key", &key)] {
                        if !path.is_file() {
                            return Err(invalid(format!(
                                "{flag} {}: no such file",
                                path.display()
                            )));
                        }
                    }
                    TlsSource::Files { cert, key }
                }
                (None, None, true) => TlsSource::SelfSigned,
                (Some(_), None, _) | (None, Some(_), _) => {
                    return Err(invalid("--tls-cert and --tls-key must be given together"));
                }
                (None, None, false) => {
                    return Err(invalid(
                        "the webhook needs TLS: give --tls-cert and --tls-key, --manage-certs in a cluster, or --self-signed for local use",
                    ));
                }
            }
        };
        let retention = parse_retention(self.retention.as_deref().unwrap_or(DEFAULT_RETENTION))?;
        let max_size_bytes = self
            .max_store_size
            .as_deref()
            .map(|text| parse_bytes("--max-store-size", text))
            .transpose()?;
        let memory_budget_bytes = match self.store_memory.as_deref() {
            Some(text) => parse_bytes("--store-memory", text)?,
            None => crate::store::DEFAULT_MEMORY_BUDGET,
        };
        if memory_budget_bytes < 4 << 20 {
            return Err(invalid("--store-memory must be at least 4Mi"));
        }
        let max_body_bytes = match self.max_body_size.as_deref() {
            Some(text) => parse_bytes("--max-body-size", text)?,
            None => DEFAULT_MAX_BODY_BYTES,
        };
        if max_body_bytes < 1024 {
            return Err(invalid("--max-body-size must be at least 1Ki"));
        }
        if let Some(dir) = &self.plugins_dir
            && !dir.is_dir()
        {
            return Err(invalid(format!(
                "--plugins-dir {}: no such directory",
                dir.display()
            )));
        }
        let chain_timeout = match self.plugin_chain_timeout.as_deref() {
            Some(text) => humantime::parse_duration(text)
                .ok()
                .filter(|d| (Duration::from_millis(10)..=Duration::from_secs(30)).contains(d))
                .ok_or_else(|| {
                    invalid(format!(
                        "--plugin-chain-timeout {text:?}: expected a duration between 10ms and 30s, e.g. 1500ms"
                    ))
                })?,
            None => crate::plugins::DEFAULT_CHAIN_TIMEOUT,
        };
        let memory_budget_bytes = match self.plugin_memory_budget.as_deref() {
            Some(text) => parse_bytes("--plugin-memory-budget", text)?,
            None => crate::plugins::budget::default_budget_bytes(),
        };
        if memory_budget_bytes < 1 << 20 {
            return Err(invalid("--plugin-memory-budget must be at least 1Mi"));
        }
        let timeout = |flag: &str, text: Option<&str>, default: Duration| match text {
            Some(text) => humantime::parse_duration(text)
                .ok()
                .filter(|d| (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(d))
                .ok_or_else(|| {
                    invalid(format!(
                        "{flag} {text:?}: expected a duration between 100ms and 1h, e.g. 10s"
                    ))
                }),
            None => Ok(default),
        };
        let connections = crate::http::serve::ConnectionLimits {
            header_read_timeout: timeout(
                "--header-read-timeout",
                self.header_read_timeout.as_deref(),
                crate::http::serve::DEFAULT_HEADER_READ_TIMEOUT,
            )?,
            idle_timeout: timeout(
                "--idle-timeout",
                self.idle_timeout.as_deref(),
                crate::http::serve::DEFAULT_IDLE_TIMEOUT,
            )?,
            max_connections: match self.max_connections {
                Some(0) => return Err(invalid("--max-connections must be at least 1")),
                Some(n) => n,
                None => crate::http::serve::DEFAULT_MAX_CONNECTIONS,
            },
        };
        let inflight_body_bytes = match self.max_inflight_bodies.as_deref() {
            Some(text) => parse_bytes("--max-inflight-bodies", text)?,
            None => DEFAULT_INFLIGHT_BODY_BYTES,
        };
        if inflight_body_bytes < max_body_bytes {
            return Err(invalid(
                "--max-inflight-bodies must be at least --max-body-size (one review must fit)",
            ));
        }
        if let Some(dir) = &self.plugins_cache_dir
            && dir.exists()
            && !dir.is_dir()
        {
            return Err(invalid(format!(
                "--plugins-cache-dir {}: not a directory",
                dir.display()
            )));
        }
        Ok(Settings {
            data_dir: data_dir.clone(),
            webhook_listen,
            query_listen,
            query_plain_http: self.query_plain_http,
            query_auth,
            webhook_client,
            tls,
            store: StoreSettings {
                durability: match self.durability.unwrap_or(DurabilityArg::Sync) {
                    _ if self.discard_events => Durability::Discard,
                    DurabilityArg::Sync => Durability::Sync,
                    DurabilityArg::Async => Durability::Async,
                },
                max_versions_per_object: self
                    .max_versions_per_object
                    .unwrap_or(DEFAULT_MAX_VERSIONS),
                retention,
                max_size_bytes,
                memory_budget_bytes,
                backend,
                cluster,
                ..StoreSettings::default()
            },
            policy: Policy {
                record_dry_run: self.record_dry_run,
                record_noise: self.record_noise,
            },
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
            plugins: PluginSettings {
                dir: self.plugins_dir,
                // Compiled plugins, keyed by content hash: a restart does not recompile.
                cache_dir: Some(
                    self.plugins_cache_dir
                        .unwrap_or_else(|| data_dir.join("plugin-cache")),
                ),
                chain_timeout,
                memory_budget_bytes,
                last_good_dir: Some(data_dir.join("plugins-last-good")),
                ..PluginSettings::default()
            },
            log_format: self.log_format.unwrap_or_default(),
            answer_only: self.answer_only,
            confirm,
            connections,
            inflight_body_bytes: usize::try_from(inflight_body_bytes).unwrap_or(usize::MAX),
            allow_backup: self.allow_backup,
        })
    }

    /// The `--confirm*` flags; `None` when `--confirm` is off (the others are still checked).
    fn confirm_settings(&self) -> Result<Option<ConfirmSettings>, ConfigError> {
        let patterns = |flag: &str, text: &Option<String>| {
            text.as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    ResourcePattern::parse(p).map_err(|error| invalid(format!("{flag} {error}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let deadline = match self.confirm_deadline.as_deref() {
            None => crate::confirm::DEFAULT_DEADLINE,
            Some(text) => humantime::parse_duration(text.trim())
                .ok()
                .filter(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(3600))
                .ok_or_else(|| {
                    invalid(format!(
                        "--confirm-deadline {text:?}: expected a duration from 100ms to 1h (e.g. 5s)"
                    ))
                })?,
        };
        let catchup_rate = self
            .confirm_catchup_rate
            .unwrap_or(crate::confirm::DEFAULT_CATCHUP_RATE);
        if catchup_rate == 0 {
            return Err(invalid(
                "--confirm-catchup-rate must be at least 1 object per second",
            ));
        }
        let settings = ConfirmSettings {
            deadline,
            include: patterns("--confirm-include", &self.confirm_include)?,
            exclude: patterns("--confirm-exclude", &self.confirm_exclude)?,
            exclude_namespaces: self
                .confirm_exclude_namespaces
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|ns| !ns.is_empty())
                .map(str::to_owned)
                .collect(),
            catchup_rate,
            ..ConfirmSettings::default()
        };
        Ok(self.confirm.then_some(settings))
    }
}

impl ServeArgs {
    /// `--store` and its companions.
    fn backend(&self) -> Result<BackendSettings, ConfigError> {
        let url = match self.store.as_deref().map(str::trim) {
            None | Some("" | "embedded") => return Ok(BackendSettings::Embedded),
            Some(url) => url,
        };
        let password = match &self.store_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| invalid(format!("--store-password-file {}: {e}", path.display())))?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            ),
            None => self
                .store_password
                .clone()
                .or_else(|| std::env::var("LOGISTIS_STORE_PASSWORD").ok()),
        };
        let commit_timeout = match self.store_commit_timeout.as_deref() {
            None => DEFAULT_STORE_COMMIT_TIMEOUT,
            Some(text) => humantime::parse_duration(text.trim())
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    invalid(format!(
                        "--store-commit-timeout {text:?}: expected a duration such as 2s or 500ms"
                    ))
                })?,
        };
        let outbox_max_bytes = match self.outbox_max_size.as_deref() {
            None => DEFAULT_OUTBOX_MAX_BYTES,
            Some(text) => parse_bytes("--outbox-max-size", text)?,
        };
        crate::store::postgres_settings(
            url,
            password,
            self.store_ca_file.clone(),
            commit_timeout,
            outbox_max_bytes,
        )
        .map(BackendSettings::Postgres)
        .map_err(invalid)
    }

    /// The `--manage-certs` objects; the namespace defaults to the pod's own, read from
    /// `service_account_namespace`.
    fn cert_settings(&self, service_account_namespace: &Path) -> Result<CertSettings, ConfigError> {
        let namespace = match &self.namespace {
            Some(namespace) => namespace.clone(),
            None => std::fs::read_to_string(service_account_namespace)
                .map(|text| text.trim().to_owned())
                .ok()
                .filter(|text| !text.is_empty())
                .ok_or_else(|| {
                    invalid(format!(
                        "--manage-certs needs --namespace: not running in a pod ({} is not readable)",
                        service_account_namespace.display()
                    ))
                })?,
        };
        let or_default = |value: &Option<String>, default: &str| {
            value.clone().unwrap_or_else(|| default.to_owned())
        };
        let settings = CertSettings {
            namespace,
            secret: or_default(&self.cert_secret, DEFAULT_CERT_SECRET),
            service: or_default(&self.service, DEFAULT_SERVICE),
            webhook_configuration: or_default(
                &self.webhook_configuration,
                DEFAULT_WEBHOOK_CONFIGURATION,
            ),
        };
        check_dns_label("--namespace", &settings.namespace)?;
        check_dns_label("--service", &settings.service)?;
        check_dns_subdomain("--cert-secret", &settings.secret)?;
        check_dns_subdomain("--webhook-configuration", &settings.webhook_configuration)?;
        Ok(settings)
    }
}

/// A Kubernetes object name of the RFC 1123 label kind (namespaces, Services): lower-case
/// letters, digits and `-`, starting and ending with a letter or digit, at most 63.
fn check_dns_label(flag: &str, value: &str) -> Result<(), ConfigError> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = !value.is_empty()
        && value.len() <= 63
        && value.chars().all(|c| alphanumeric(c) || c == '-')
        && value.starts_with(alphanumeric)
        && value.ends_with(alphanumeric);
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{flag} {value:?}: not a valid name (lower-case letters, digits and '-', at most 63)"
        )))
    }
}

/// A Kubernetes object name of the RFC 1123 subdomain kind (Secrets, webhook
/// configurations): dot-separated labels, at most 253 in all.
fn check_dns_subdomain(flag: &str, value: &str) -> Result<(), ConfigError> {
    if value.len() > 253
        || value
            .split('.')
            .any(|label| check_dns_label(flag, label).is_err())
    {
        return Err(invalid(format!(
            "{flag} {value:?}: not a valid name (lower-case letters, digits, '-' and '.', at most 253)"
        )));
    }
    Ok(())
}

/// `30d`, `12h`, `90m`; `0` keeps events forever.
fn parse_retention(text: &str) -> Result<Option<Duration>, ConfigError> {
    if text.trim() == "0" {
        return Ok(None);
    }
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(format!(
            "--retention {text:?}: {e} (use e.g. 30d, 12h, or 0 for forever)"
        ))
    })?;
    if duration < Duration::from_secs(60) {
        return Err(invalid(format!("--retention {text:?} is under a minute")));
    }
    Ok(Some(duration))
}

/// `1048576`, `500M`, `10Gi` (K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024).
pub fn parse_bytes(flag: &str, text: &str) -> Result<u64, ConfigError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(invalid(format!(
                "{flag} {text:?}: unknown unit {suffix:?} (use e.g. 1048576, 500M, 10Gi)"
            )));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            invalid(format!(
                "{flag} {text:?}: expected a positive size such as 500M or 10Gi"
            ))
        })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            self_signed: true,
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = args().into_settings().unwrap();
        assert_eq!(settings.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(settings.webhook_listen.to_string(), DEFAULT_WEBHOOK_LISTEN);
        assert_eq!(settings.query_listen.to_string(), DEFAULT_QUERY_LISTEN);
        assert_eq!(settings.store.max_versions_per_object, 100);
        assert_eq!(
            settings.store.retention,
            Some(Duration::from_secs(30 * 86400))
        );
        assert_eq!(settings.store.durability, Durability::Sync);
        assert_eq!(settings.max_body_bytes, 16 << 20);
    }

    #[rstest]
    #[case("0", None)]
    #[case("30d", Some(30 * 86400))]
    #[case("12h", Some(12 * 3600))]
    fn retention_values(#[case] text: &str, #[case] seconds: Option<u64>) {
        assert_eq!(
            parse_retention(text).unwrap(),
            seconds.map(Duration::from_secs)
        );
    }

    #[rstest]
    #[case("1048576", 1 << 20)]
    #[case("500M", 500_000_000)]
    #[case("10Gi", 10 << 30)]
    fn byte_sizes(#[case] text: &str, #[case] bytes: u64) {
        assert_eq!(parse_bytes("--x", text).unwrap(), bytes);
    }

    #[rstest]
    #[case("10Q")]
    #[case("-1")]
    #[case("0")]
    #[case("")]
    fn bad_byte_sizes(#[case] text: &str) {
        assert!(parse_bytes("--x", text).is_err());
    }

    #[test]
    fn tls_is_required_and_plain_http_only_on_loopback() {
        let error = ServeArgs::default()
            .into_settings()
            .unwrap_err()
            .to_string();
        assert!(error.contains("--self-signed"), "{error}");
        let error = ServeArgs {
            query_plain_http: true,
            query_listen: Some("0.0.0.0:8081".parse().unwrap()),
            ..args()
        }
        .into_settings()
        .unwrap_err()
        .to_string();
        assert!(error.contains("loopback"), "{error}");
    }

    #[test]
    fn confirm_is_off_by_default_and_its_flags_are_checked() {
        assert!(args().into_settings().unwrap().confirm.is_none());
        let settings = ServeArgs {
            confirm: true,
            confirm_deadline: Some("2s".into()),
            confirm_include: Some("deployments.apps, *.example.com".into()),
            confirm_exclude_namespaces: Some("logistis,kube-system".into()),
            ..args()
        }
        .into_settings()
        .unwrap()
        .confirm
        .unwrap();
        assert_eq!(settings.deadline, Duration::from_secs(2));
        assert_eq!(settings.include.len(), 2);
        assert_eq!(settings.exclude_namespaces, ["logistis", "kube-system"]);
        for (args, flag) in [
            (
                ServeArgs {
                    confirm_deadline: Some("soon".into()),
                    ..args()
                },
                "--confirm-deadline",
            ),
            (
                ServeArgs {
                    confirm_exclude: Some("Deployments.apps".into()),
                    ..args()
                },
                "--confirm-exclude",
            ),
            (
                ServeArgs {
                    confirm_catchup_rate: Some(0),
                    ..args()
                },
                "--confirm-catchup-rate",
            ),
        ] {
            let error = args.into_settings().unwrap_err().to_string();
            assert!(error.contains(flag), "{error}");
        }
    }

    #[test]
    fn discarding_events_is_a_flag_only() {
        let settings = ServeArgs {
            discard_events: true,
            durability: Some(DurabilityArg::Sync),
            ..args()
        }
        .into_settings()
        .unwrap();
        assert_eq!(settings.store.durability, Durability::Discard);
        // Never from a config file: a benchmarking switch must not hide in a deployment.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logistis.yaml");
        std::fs::write(&path, "discard-events: true\n").unwrap();
        let error = ServeArgs {
            config: Some(path),
            ..args()
        }
        .into_settings()
        .unwrap_err();
        let error = crate::telemetry::chain(&error);
        assert!(error.contains("unknown field `discard-events`"), "{error}");
    }

    #[test]
    fn the_config_file_fills_what_flags_leave_unset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logistis.yaml");
        std::fs::write(
            &path,
            "durability: async\nretention: 7d\nmax-versions-per-object: 5\n",
        )
        .unwrap();
        let settings = ServeArgs {
            config: Some(path.clone()),
            max_versions_per_object: Some(9),
            ..args()
        }
        .into_settings()
        .unwrap();
        assert_eq!(settings.store.durability, Durability::Async);
        assert_eq!(
            settings.store.retention,
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(settings.store.max_versions_per_object, 9, "the flag wins");

        std::fs::write(&path, "no-such-setting: 1\n").unwrap();
        let error = ServeArgs {
            config: Some(path),
            ..args()
        }
        .into_settings()
        .unwrap_err();
        assert!(matches!(error, ConfigError::ParseFile { .. }));
    }

    fn managed() -> ServeArgs {
        ServeArgs {
            manage_certs: true,
            namespace: Some("logistis".into()),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn manage_certs_has_the_documented_defaults() {
        let settings = managed().into_settings().unwrap();
        let TlsSource::Managed(certs) = settings.tls else {
            panic!("expected managed certificates, got {:?}", settings.tls);
        };
        assert_eq!(
            certs,
            CertSettings {
                namespace: "logistis".into(),
                secret: DEFAULT_CERT_SECRET.into(),
                service: DEFAULT_SERVICE.into(),
                webhook_configuration: DEFAULT_WEBHOOK_CONFIGURATION.into(),
            }
        );
    }

    #[test]
    fn manage_certs_takes_the_pods_namespace_or_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("namespace");
        let args = ServeArgs {
            namespace: None,
            ..managed()
        };
        let error = args.cert_settings(&file).unwrap_err().to_string();
        assert!(error.contains("--namespace"), "{error}");
        std::fs::write(&file, "audit\n").unwrap();
        assert_eq!(args.cert_settings(&file).unwrap().namespace, "audit");
        let flag_wins = ServeArgs {
            namespace: Some("other".into()),
            ..managed()
        };
        assert_eq!(flag_wins.cert_settings(&file).unwrap().namespace, "other");
    }

    #[rstest]
    #[case(ServeArgs { self_signed: true, ..managed() }, "--self-signed")]
    #[case(ServeArgs { namespace: Some("Logistis".into()), ..managed() }, "--namespace")]
    #[case(ServeArgs { service: Some("-svc".into()), ..managed() }, "--service")]
    #[case(ServeArgs { cert_secret: Some("tls..secret".into()), ..managed() }, "--cert-secret")]
    #[case(ServeArgs { webhook_configuration: Some("a_b".into()), ..managed() }, "--webhook-configuration")]
    fn manage_certs_rejects_conflicts_and_bad_names(#[case] args: ServeArgs, #[case] flag: &str) {
        let error = args.into_settings().unwrap_err().to_string();
        assert!(error.contains(flag), "{error}");
    }

    #[test]
    fn dotted_names_are_fine_where_kubernetes_allows_them() {
        let args = ServeArgs {
            cert_secret: Some("logistis.tls".into()),
            webhook_configuration: Some("logistis.example.com".into()),
            ..managed()
        };
        assert!(args.into_settings().is_ok());
    }

    #[test]
    fn the_config_file_can_turn_on_manage_certs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logistis.yaml");
        std::fs::write(
            &path,
            "manage-certs: true\nnamespace: audit\ncert-secret: audit-tls\nservice: recorder\nwebhook-configuration: recorder\n",
        )
        .unwrap();
        let settings = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .into_settings()
        .unwrap();
        let TlsSource::Managed(certs) = settings.tls else {
            panic!("expected managed certificates");
        };
        assert_eq!(certs.secret_ref(), "audit/audit-tls");
        assert_eq!(certs.server_name(), "recorder.audit.svc");
        assert_eq!(certs.webhook_configuration, "recorder");
    }

    #[test]
    fn the_plugin_cache_defaults_to_the_data_dir_and_may_be_shared() {
        let settings = args().into_settings().unwrap();
        assert_eq!(
            settings.plugins.cache_dir,
            Some(PathBuf::from(DEFAULT_DATA_DIR).join("plugin-cache"))
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logistis.yaml");
        std::fs::write(&path, "plugins-cache-dir: /var/cache/logistis\n").unwrap();
        let settings = ServeArgs {
            config: Some(path),
            ..args()
        }
        .into_settings()
        .unwrap();
        assert_eq!(
            settings.plugins.cache_dir,
            Some(PathBuf::from("/var/cache/logistis"))
        );

        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let error = ServeArgs {
            plugins_cache_dir: Some(file),
            ..args()
        }
        .into_settings()
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("--plugins-cache-dir") && error.contains("not a directory"),
            "{error}"
        );
    }
}
