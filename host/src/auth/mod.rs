//! Who is asking, and may they? The query listener's authentication and authorization,
//! delegated to the Kubernetes API server as an aggregated API server delegates them
//! (k8s.io/apiserver `DelegatingAuthenticationOptions` / `DelegatingAuthorizationOptions`):
//!
//! - [`requestheader`]: requests proxied by the API server's aggregation layer, proven by its
//!   front-proxy client certificate, name the user in request headers; [`follow`] keeps the
//!   CA, allowed names and header names current from
//!   `kube-system/extension-apiserver-authentication`.
//! - [`token`]: bearer tokens, by `TokenReview`.
//! - [`authorize`]: `SubjectAccessReview` per question.
//! - [`cache`]: both kinds of answer are cached briefly, in bounded caches.
//! - [`verdict`]: what handlers receive — a [`Caller`] they ask ("may they list changes in
//!   shop?", "which namespaces may they see?"); the filters they pass down to `store` follow
//!   from the answers, and `store` never learns who is asking.
//!
//! With [`Auth::disabled`] (local use on loopback) every caller may do everything.

pub mod authorize;
pub mod cache;
pub mod follow;
pub mod requestheader;
pub mod token;
pub mod verdict;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::http::{HeaderMap, header};
use tokio_util::sync::CancellationToken;

pub use authorize::Question;
pub use verdict::{Caller, Visibility};

use crate::tls::{ClientCertError, PeerCertificates};

/// How long an authentication or authorization answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// At most this many answers of each kind are kept.
pub const CACHE_CAPACITY: usize = 4096;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build a Kubernetes client for authentication (--query-auth kubernetes)")]
    Connect(#[source] kube::Error),
    #[error("the {review} could not be made")]
    Review {
        review: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// Why a request is not authenticated: the message of its 401.
#[derive(Debug, thiserror::Error)]
pub enum Unauthenticated {
    #[error(
        "no credentials: requests come through the Kubernetes API server (kubectl get --raw /apis/logistis.io/...) or carry a bearer token"
    )]
    NoCredentials,
    #[error("front-proxy headers are not accepted: {0}")]
    NotTheProxy(#[source] ClientCertError),
    #[error(
        "front-proxy authentication is not configured yet (kube-system/extension-apiserver-authentication not read)"
    )]
    ProxyNotConfigured,
    #[error("the front proxy named no user")]
    NoUser,
    #[error("the bearer token is not valid")]
    BadToken,
    #[error("the Kubernetes API could not check the credentials")]
    Unavailable(#[source] Error),
}

#[derive(Debug)]
struct Delegated {
    request_header: Arc<ArcSwapOption<requestheader::RequestHeaderConfig>>,
    tokens: token::Tokens,
    authorizer: authorize::Authorizer,
}

/// The authenticator and authorizer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    delegated: Option<Arc<Delegated>>,
}

impl Auth {
    /// Everyone may do everything (`--query-auth none`, loopback only).
    pub fn disabled() -> Auth {
        Auth { delegated: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.delegated.is_some()
    }

    /// Delegate to the Kubernetes API server of the kubeconfig (or the pod's service
    /// account); follows the request-header ConfigMap until `shutdown`.
    pub async fn kubernetes(shutdown: CancellationToken) -> Result<Auth, Error> {
        let client = kube::Client::try_default().await.map_err(Error::Connect)?;
        let request_header = Arc::new(ArcSwapOption::empty());
        follow::follow(client.clone(), request_header.clone(), shutdown).await;
        Ok(Auth {
            delegated: Some(Arc::new(Delegated {
                request_header,
                tokens: token::Tokens::new(client.clone(), CACHE_CAPACITY),
                authorizer: authorize::Authorizer::new(client, CACHE_CAPACITY),
            })),
        })
    }

    /// Who sent this request. A client certificate from the front proxy makes the headers
    /// believed; otherwise only a bearer token counts, whatever headers came along.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerCertificates>,
    ) -> Result<Caller, Unauthenticated> {
        let Some(delegated) = &self.delegated else {
            return Ok(Caller::unrestricted());
        };
        let mut proxy_refusal = None;
        if peer.is_some() {
            match delegated.request_header.load_full() {
                Some(config) => match config.verify_proxy(peer) {
                    Ok(_) => {
                        let user = config.user(headers).ok_or(Unauthenticated::NoUser)?;
                        return Ok(Caller::new(self.clone(), user));
                    }
                    Err(error) => proxy_refusal = Some(Unauthenticated::NotTheProxy(error)),
                },
                None => proxy_refusal = Some(Unauthenticated::ProxyNotConfigured),
            }
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(proxy_refusal.unwrap_or(Unauthenticated::NoCredentials));
        };
        match delegated.tokens.review(token).await {
            Ok(Some(user)) => Ok(Caller::new(self.clone(), user)),
            Ok(None) => Err(Unauthenticated::BadToken),
            Err(error) => Err(Unauthenticated::Unavailable(error)),
        }
    }

    /// May `user` do what `question` asks? Always yes when disabled.
    pub async fn allowed(&self, user: &User, question: &Question) -> Result<bool, Error> {
        match &self.delegated {
            None => Ok(true),
            Some(delegated) => delegated.authorizer.allowed(user, question).await,
        }
    }
}
