//! Reaching the Logistis query API: by default through the Kubernetes API server with the
//! user's kubeconfig, as the aggregated API `logistis.io/v1alpha1` (so exec, OIDC and
//! client-certificate auth apply, and the cluster's RBAC decides what the user may read, per
//! namespace); or directly with `--server URL`, the plain JSON API under `/api/v1` (local use:
//! `logistis serve --self-signed`). Both routes use one kube `Client`: for `--server` it is
//! built from an in-memory kubeconfig, so the CA file and `insecure-skip-tls-verify` mean
//! exactly what they mean to kubectl. Every error says which route was tried; a refusal says
//! which permission is missing.

use std::path::PathBuf;
use std::time::Duration;

use http::{Request, StatusCode, header};
use kube::client::Body;
use kube::config::{
    Cluster, Context, KubeConfigOptions, Kubeconfig, KubeconfigError, NamedCluster, NamedContext,
};
use serde::de::DeserializeOwned;

use crate::cli::ConnectionArgs;

/// The aggregated API's group version, served by the APIService `v1alpha1.logistis.io`.
pub const GROUP: &str = "logistis.io";
pub const VERSION: &str = "v1alpha1";
/// Where the aggregated API lives on the Kubernetes API server.
pub const AGGREGATED_PREFIX: &str = "/apis/logistis.io/v1alpha1";
/// Where the plain JSON API lives on a server reached with `--server`.
pub const JSON_PREFIX: &str = "/api/v1";

/// Which of the server's two APIs a [`QueryClient`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/apis/logistis.io/v1alpha1` through the Kubernetes API server (the default).
    Aggregated,
    /// `/api/v1` on the server itself (`--server`).
    Direct,
}

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
    /// The Kubernetes API refused the user's credentials.
    #[error("the credentials were not accepted {how}: {message}")]
    Unauthorized { how: String, message: String },
    /// RBAC refused the request: `permission` names what is missing.
    #[error("{permission}{}", forbidden_hint(.permission))]
    Forbidden { permission: String },
    /// The Kubernetes API does not serve `logistis.io/v1alpha1` (no APIService).
    #[error(
        "{GROUP}/{VERSION} is not served {how}: is Logistis installed? (kubectl get apiservice {VERSION}.{GROUP})"
    )]
    NotServed { how: String },
    /// The API server could not reach Logistis (the APIService is not available).
    #[error(
        "Logistis is not available {how}: {message} (kubectl get apiservice {VERSION}.{GROUP} says why)"
    )]
    Unavailable { how: String, message: String },
    /// The query API answered with an error (`{"error": "..."}`, or a `Status` from the
    /// aggregated API).
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

/// Who grants what was refused: the shipped ClusterRole for Logistis' resources (bound in
/// the namespace, or cluster-wide for what is asked at cluster scope); nothing for other
/// groups' rights (Secrets), which the cluster's own roles grant.
fn forbidden_hint(permission: &str) -> &'static str {
    if !permission.contains(GROUP) {
        ""
    } else if permission.ends_with("at cluster scope") {
        " (the ClusterRole logistis:changes-viewer grants it bound with a ClusterRoleBinding; or name a namespace with -n)"
    } else {
        " (the ClusterRole logistis:changes-viewer grants it, and view, edit and admin include it: ask for a RoleBinding in that namespace)"
    }
}

/// `you may not list changes.logistis.io in namespace shop`, from kube-apiserver's refusal
/// (`… is forbidden: User "u" cannot list resource "changes" in API group "logistis.io" in
/// the namespace "shop"`, or `… at the cluster scope`, or `cannot get path "/x"`). `None`
/// when the message is worded otherwise.
pub fn missing_permission(message: &str) -> Option<String> {
    let rest = &message[message.find("\" cannot ")? + "\" cannot ".len()..];
    let (verb, rest) = rest.split_once(' ')?;
    if let Some(path) = rest.strip_prefix("path ") {
        let path = path.split('"').nth(1)?;
        return Some(format!("you may not {verb} {path}"));
    }
    let rest = rest.strip_prefix("resource \"")?;
    let (resource, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(" in API group \"")?;
    let (group, rest) = rest.split_once('"')?;
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, format!("/{sub}")),
        None => (resource, String::new()),
    };
    let qualified = if group.is_empty() {
        format!("{resource}{subresource}")
    } else {
        format!("{resource}.{group}{subresource}")
    };
    let scope = if let Some(rest) = rest.strip_prefix(" in the namespace \"") {
        format!("in namespace {}", rest.split('"').next()?)
    } else if rest.starts_with(" at the cluster scope") {
        "at cluster scope".to_owned()
    } else {
        return None;
    };
    Some(format!("you may not {verb} {qualified} {scope}"))
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
                        route: Route::Direct,
                        how,
                    },
                    kube,
                    kube_error,
                    default_namespace,
                })
            }
            None => {
                let config = kube_config?;
                let how = format!("through the Kubernetes API at {}", config.cluster_url);
                let default_namespace = config.default_namespace.clone();
                let client = kube::Client::try_from(config).map_err(|source| Error::Client {
                    how: how.clone(),
                    source,
                })?;
                Ok(Connection {
                    query: QueryClient {
                        client: client.clone(),
                        route: Route::Aggregated,
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

/// An error and its causes in one line; a cause whose text an outer error already quotes
/// (kube and hyper errors often do) is not repeated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let current = cause.to_string();
        if !text.contains(&current) {
            text.push_str(": ");
            text.push_str(&current);
        }
        source = cause.source();
    }
    text
}

/// The query API, aggregated or direct.
#[derive(Clone)]
pub struct QueryClient {
    client: kube::Client,
    route: Route,
    how: String,
}

impl QueryClient {
    pub fn route(&self) -> Route {
        self.route
    }

    /// GET `{prefix}{path}?{query}` and decode the JSON answer, the prefix that of the
    /// route's API. `path` must already be encoded (see [`encode`]); query values are
    /// encoded here, empty ones left out.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Error> {
        let prefix = match self.route {
            Route::Aggregated => AGGREGATED_PREFIX,
            Route::Direct => JSON_PREFIX,
        };
        let uri = format!("{prefix}{path}{}", query_string(query));
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

    /// Tells the query API's own errors (`{"error": ...}`) from a Kubernetes `Status` (the
    /// aggregated API's, or the API server's own: credentials, RBAC, no such API) and from
    /// anything else in the way.
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
        let how = self.how.clone();
        match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized { how, message },
            StatusCode::FORBIDDEN => Error::Forbidden {
                permission: missing_permission(&message).unwrap_or(message),
            },
            // kube-apiserver's answer for a path no API serves.
            StatusCode::NOT_FOUND
                if self.route == Route::Aggregated
                    && message == "the server could not find the requested resource" =>
            {
                Error::NotServed { how }
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY
                if self.route == Route::Aggregated =>
            {
                Error::Unavailable { how, message }
            }
            _ => Error::Api { status, message },
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
    fn refusals_name_the_missing_permission() {
        let kube =
            |tail: &str| format!("changes.logistis.io is forbidden: User \"alice\" cannot {tail}");
        assert_eq!(
            missing_permission(&kube(
                "list resource \"changes\" in API group \"logistis.io\" in the namespace \"shop\""
            ))
            .as_deref(),
            Some("you may not list changes.logistis.io in namespace shop")
        );
        assert_eq!(
            missing_permission(&kube(
                "get resource \"changes/blame\" in API group \"logistis.io\" at the cluster scope"
            ))
            .as_deref(),
            Some("you may not get changes.logistis.io/blame at cluster scope")
        );
        assert_eq!(
            missing_permission(&kube(
                "get resource \"secrets\" in API group \"\" in the namespace \"shop\""
            ))
            .as_deref(),
            Some("you may not get secrets in namespace shop")
        );
        assert_eq!(
            missing_permission("forbidden: User \"bob\" cannot get path \"/metrics\"").as_deref(),
            Some("you may not get /metrics")
        );
        assert_eq!(missing_permission("nope"), None);
        let error = Error::Forbidden {
            permission: "you may not list changes.logistis.io in namespace shop".into(),
        };
        assert!(
            error.to_string().contains("logistis:changes-viewer"),
            "{error}"
        );
    }
}
