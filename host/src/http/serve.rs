//! Serving a router on a socket: accept, TLS handshake (with a deadline, so a silent client
//! cannot hold a task), HTTP/1.1 or HTTP/2, and graceful shutdown — stop accepting, let
//! in-flight requests finish (bounded by [`DRAIN_TIMEOUT`]). The client certificate chain a
//! connection presented, if any, goes into every request's extensions as
//! [`PeerCertificates`] for the handlers that authenticate by it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::tls::PeerCertificates;

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve `router` on `listener` until `shutdown`; TLS when `tls` is given.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(error)) => {
                            tracing::debug!(listener = name, %peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let certificates = tls.get_ref().1.peer_certificates().map(|chain| {
                        PeerCertificates(std::sync::Arc::new(
                            chain.iter().map(|c| c.clone().into_owned()).collect(),
                        ))
                    });
                    let service = TowerToHyperService::new(router.map_request(
                        move |mut request: http::Request<hyper::body::Incoming>| {
                            if let Some(certificates) = &certificates {
                                request.extensions_mut().insert(certificates.clone());
                            }
                            request
                        },
                    ));
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(error) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!(listener = name, %peer, error = %error, "connection ended with an error");
                    }
                }
                None => {
                    let service = TowerToHyperService::new(router);
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(error) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!(listener = name, %peer, error = %error, "connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(listener = name, "in-flight requests did not finish in time");
    }
}
