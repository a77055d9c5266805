//! Reaching the Logistis query API: through the Kubernetes API server's service proxy with the
//! user's kubeconfig (so exec, OIDC and client-certificate auth and RBAC all apply), or
//! directly with `--server URL`. Both routes use one kube `Client`: for `--server` it is built
//! from an in-memory kubeconfig, so the CA file and `insecure-skip-tls-verify` mean exactly
//! what they mean to kubectl. Every error says which route was tried.

use std::path::PathBuf;
use std::time::Duration;

use http::{Request, StatusCode, header};
use kube::client::Body;
use kube::config::{
    Cluster, Context, KubeConfigOptions, Kubeconfig, KubeconfigError, NamedCluster, NamedContext,
};
use serde::de::DeserializeOwned;

use crate::cli::ConnectionArgs;

/// The name of the service port that serves the query API (the deploy manifests name it).
pub const QUERY_PORT_NAME: &str = "query";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not load the kubeconfig{}", context_suffix(.context))]
    Kubeconfig {
        context: Option<String>,
        #[source]
        source: KubeconfigError,
    },
    #[error("could not read the kubeconfig {}", .path.display())]
    KubeconfigFile {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error("invalid --server {url:?}")]
    ServerUrl {
        url: String,
        #[source]
        source: KubeconfigError,
    },
    #[error("could not set up the HTTP client for {how}")]
    Client {
        how: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid request path {uri:?}")]
    Request {
        uri: String,
        #[source]
        source: http::Error,
    },
    #[error("could not reach the Logistis query API {how}")]
    Unreachable {
        how: String,
        #[source]
        source: kube::Error,
    },
    /// The API server answered for the proxy (no such service, forbidden, service down).
    #[error("the Kubernetes API refused the request {how}: {status}: {message}{}", proxy_hint(*.status))]
    Proxy {
        how: String,
        status: StatusCode,
        message: String,
    },
    /// The query API answered with an error (`{"error": "..."}`).
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    #[error("unexpected answer from the query API for {path}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

fn context_suffix(context: &Option<String>) -> String {
    context
        .as_ref()
        .map(|c| format!(" (context {c:?})"))
        .unwrap_or_default()
}

fn proxy_hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => {
            " (is Logistis installed there? see --logistis-namespace and --logistis-service)"
        }
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
            " (reading history needs `get` on services/proxy in the Logistis namespace)"
        }
        _ => "",
    }
}

/// Everything the commands need to talk to: the query API, and the Kubernetes API when a
/// kubeconfig is at hand (for discovery and the default namespace).
pub struct Connection {
    pub query: QueryClient,
    pub kube: Option<kube::Client>,
    /// Why there is no `kube` client, for messages.
    pub kube_error: Option<String>,
    /// The kubeconfig context's namespace (`default` without one), as kubectl uses it.
    pub default_namespace: String,
}

impl Connection {
    /// Builds the clients. Nothing is sent yet.
    pub async fn new(args: &ConnectionArgs) -> Result<Connection, Error> {
        let timeout = (!args.request_timeout.is_zero()).then_some(args.request_timeout);
        let kube_config = load_kubeconfig(args, timeout).await;
        match &args.server {
            Some(url) => {
                let how = format!("directly at {url}");
                let config = direct_config(url, args, timeout).await?;
                let client = kube::Client::try_from(config).map_err(|source| Error::Client {
                    how: how.clone(),
                    source,
                })?;
                let (kube, kube_error, default_namespace) = match kube_config {
                    Ok(config) => {
                        let namespace = config.default_namespace.clone();
                        match kube::Client::try_from(config) {
                            Ok(client) => (Some(client), None, namespace),
                            Err(error) => (None, Some(error_chain(&error)), namespace),
                        }
                    }
                    Err(error) => (None, Some(error_chain(&error)), "default".to_owned()),
                };
                Ok(Connection {
                    query: QueryClient {
                        client,
                        prefix: "/api/v1".to_owned(),
                        how,
                    },
                    kube,
                    kube_error,
                    default_namespace,
                })
            }
            None => {
                let config = kube_config?;
                let how = format!(
                    "through the Kubernetes API at {} (service proxy to {}/{}, port {})",
                    config.cluster_url,
                    args.logistis_namespace,
                    args.logistis_service,
                    QUERY_PORT_NAME
                );
                let default_namespace = config.default_namespace.clone();
                let client = kube::Client::try_from(config).map_err(|source| Error::Client {
                    how: how.clone(),
                    source,
                })?;
                Ok(Connection {
                    query: QueryClient {
                        client: client.clone(),
                        prefix: proxy_prefix(&args.logistis_namespace, &args.logistis_service),
                        how,
                    },
                    kube: Some(client),
                    kube_error: None,
                    default_namespace,
                })
            }
        }
    }
}

impl Connection {
    /// The client for the aggregated API's paths (`/apis/logistis.io/...`): the API server
    /// with the kubeconfig, or the server itself with `--server`.
    pub fn api_client(&self) -> &kube::Client {
        // Through the proxy, the query client is the API server's client already.
        &self.query.client
    }
}

/// `/api/v1/namespaces/{ns}/services/https:{service}:query/proxy/api/v1`: the API server
/// proxies to the service's `query` port over HTTPS (the query API serves TLS only).
pub fn proxy_prefix(namespace: &str, service: &str) -> String {
    format!(
        "/api/v1/namespaces/{}/services/https:{}:{QUERY_PORT_NAME}/proxy/api/v1",
        encode(namespace),
        encode(service)
    )
}

/// The user's kubeconfig (`--kubeconfig`, else KUBECONFIG or ~/.kube/config, else the
/// in-cluster service account), as kubectl would pick it.
async fn load_kubeconfig(
    args: &ConnectionArgs,
    timeout: Option<Duration>,
) -> Result<kube::Config, Error> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let kubeconfig_error = |source| Error::Kubeconfig {
        context: args.context.clone(),
        source,
    };
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|source| Error::KubeconfigFile {
                path: path.clone(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(kubeconfig_error)?
        }
        None => match kube::Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            Err(error) if args.context.is_none() => {
                kube::Config::incluster().map_err(|_| kubeconfig_error(error))?
            }
            Err(error) => return Err(kubeconfig_error(error)),
        },
    };
    config.read_timeout = timeout;
    Ok(config)
}

/// A one-cluster kubeconfig for `--server`, without credentials.
async fn direct_config(
    url: &str,
    args: &ConnectionArgs,
    timeout: Option<Duration>,
) -> Result<kube::Config, Error> {
    let cluster = Cluster {
        server: Some(url.to_owned()),
        certificate_authority: args
            .certificate_authority
            .as_ref()
            .map(|path| path.to_string_lossy().into_owned()),
        insecure_skip_tls_verify: Some(args.insecure_skip_tls_verify),
        ..Cluster::default()
    };
    let kubeconfig = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "logistis".to_owned(),
            cluster: Some(cluster),
            ..NamedCluster::default()
        }],
        contexts: vec![NamedContext {
            name: "logistis".to_owned(),
            context: Some(Context {
                cluster: "logistis".to_owned(),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some("logistis".to_owned()),
        ..Kubeconfig::default()
    };
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|source| Error::ServerUrl {
                url: url.to_owned(),
                source,
            })?;
    config.read_timeout = timeout;
    Ok(config)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The query API, at a path prefix that ends in `/api/v1`.
#[derive(Clone)]
pub struct QueryClient {
    client: kube::Client,
    prefix: String,
    how: String,
}

impl QueryClient {
    /// GET `{prefix}{path}?{query}` and decode the JSON answer. `path` must already be
    /// encoded (see [`encode`]); query values are encoded here, empty ones left out.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Error> {
        let uri = format!("{}{path}{}", self.prefix, query_string(query));
        let request = Request::get(&uri)
            .header(header::ACCEPT, "application/json")
            .body(Body::empty())
            .map_err(|source| Error::Request {
                uri: uri.clone(),
                source,
            })?;
        let unreachable = |source| Error::Unreachable {
            how: self.how.clone(),
            source,
        };
        let response = self.client.send(request).await.map_err(unreachable)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|source| Error::Decode {
                path: path.to_owned(),
                source,
            });
        }
        Err(self.failure(status, &body))
    }

    /// Tells the query API's own errors (`{"error": ...}`) from the API server's (a
    /// `Status` about the proxy) and from anything else in the way.
    fn failure(&self, status: StatusCode, body: &[u8]) -> Error {
        if let Ok(answer) = serde_json::from_slice::<logistis_api::ErrorBody>(body) {
            return Error::Api {
                status,
                message: answer.error,
            };
        }
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no message").to_owned()
                } else {
                    text.chars().take(300).collect()
                }
            });
        Error::Proxy {
            how: self.how.clone(),
            status,
            message,
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for path segments and
/// query values alike.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `?a=1&b=x%20y`, empty values left out; empty when nothing is left.
pub fn query_string(query: &[(&str, String)]) -> String {
    let parts: Vec<String> = query
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}", encode(value)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_prefix_names_the_https_query_port() {
        assert_eq!(
            proxy_prefix("logistis", "logistis"),
            "/api/v1/namespaces/logistis/services/https:logistis:query/proxy/api/v1"
        );
    }

    #[test]
    fn query_values_and_segments_are_encoded() {
        assert_eq!(
            encode("spec.containers[0].image"),
            "spec.containers%5B0%5D.image"
        );
        assert_eq!(
            encode("system:serviceaccount:a b"),
            "system%3Aserviceaccount%3Aa%20b"
        );
        assert_eq!(encode("ünï"), "%C3%BCn%C3%AF");
        let query = [
            ("kind", "Deployment".to_owned()),
            ("user", String::new()),
            ("since", "2024-05-01T10:00:00+02:00".to_owned()),
        ];
        assert_eq!(
            query_string(&query),
            "?kind=Deployment&since=2024-05-01T10%3A00%3A00%2B02%3A00"
        );
        assert_eq!(query_string(&[("user", String::new())]), "");
    }

    #[test]
    fn proxy_errors_carry_a_hint() {
        let error = Error::Proxy {
            how: "through the Kubernetes API at https://k8s".into(),
            status: StatusCode::NOT_FOUND,
            message: "services \"logistis\" not found".into(),
        };
        let text = error.to_string();
        assert!(text.contains("--logistis-namespace"), "{text}");
        assert!(text.contains("https://k8s"), "{text}");
    }
}
