//! Serving a router on a socket: accept (up to a cap of open connections), TLS handshake
//! (with a deadline, so a silent client cannot hold a task), HTTP/1.1 or HTTP/2, connections
//! closed when silent, and graceful shutdown — stop accepting, let in-flight requests finish
//! (bounded by [`DRAIN_TIMEOUT`]).
//!
//! What keeps a hostile or broken client from holding sockets (each one a file descriptor
//! and some memory): a connection that has sent nothing since its handshake is closed after
//! the header-read timeout, one that has been silent both ways after the idle timeout, an
//! HTTP/1.1 request head must arrive within the header-read timeout, and HTTP/2
//! connections are pinged (a peer that does not answer is closed). Past the cap, new
//! connections are closed at once (counted) rather than left to exhaust the descriptors.
//!
//! The client certificate chain a connection presented, if any, goes into every request's
//! extensions as [`PeerCertificates`] for the handlers that authenticate by it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::tls::PeerCertificates;

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default: a new connection must send its first request, and an HTTP/1.1 request its
/// whole head, within this.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default: a connection silent both ways for this long is closed. The API server's HTTP/2
/// client pings idle connections every 30 s, so its pooled connections stay open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Default cap of open connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// HTTP/2 keep-alive: ping after this much silence, close if the ping is not answered.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    listener: &'static str,
    reason: &'static str,
}

/// Connection metrics of both listeners.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    open: Family<ListenerLabels, Gauge>,
    rejected: Family<ListenerLabels, Counter>,
    closed: Family<ClosedLabels, Counter>,
}

impl ConnectionMetrics {
    /// Register under `registry` (which carries the `logistis_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_connections",
            "Open connections per listener (TLS handshakes included)",
            self.open.clone(),
        );
        registry.register(
            "http_connections_rejected",
            "Connections closed at once because the listener was at --max-connections",
            self.rejected.clone(),
        );
        registry.register(
            "http_connections_timed_out",
            "Connections closed for silence, by reason: handshake, first_request, idle",
            self.closed.clone(),
        );
    }

    fn closed(&self, listener: &'static str, reason: &'static str) {
        self.closed
            .get_or_create(&ClosedLabels { listener, reason })
            .inc();
    }
}

/// Serve `router` on `listener` until `shutdown`; TLS when `tls` is given.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let labels = ListenerLabels { listener: name };
    let mut last_rejection_log: Option<Instant> = None;
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.rejected.get_or_create(&labels).inc();
            if last_rejection_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                last_rejection_log = Some(Instant::now());
                tracing::warn!(
                    listener = name,
                    max = limits.max_connections,
                    "at the connection cap: new connections are closed (--max-connections)"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let metrics = metrics.clone();
        let open = metrics.open.get_or_create(&labels).clone();
        open.inc();
        tokio::spawn(async move {
            let _slot = slot;
            let activity = Arc::new(Activity::new());
            let stream = Tracked {
                inner: stream,
                activity: activity.clone(),
            };
            match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(error)) => {
                            tracing::debug!(listener = name, %peer, %error, "TLS handshake failed");
                            open.dec();
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                            metrics.closed(name, "handshake");
                            open.dec();
                            return;
                        }
                    };
                    // The handshake's bytes do not count as a request.
                    activity.reset();
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
                    let served = watcher.watch(connection.into_owned());
                    until_silent(served, &activity, limits, name, &metrics, peer).await;
                }
                None => {
                    let service = TowerToHyperService::new(router);
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let served = watcher.watch(connection.into_owned());
                    until_silent(served, &activity, limits, name, &metrics, peer).await;
                }
            }
            open.dec();
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

/// Drive `served` until it ends, or drop it (closing the socket) once the connection has
/// been silent too long: no byte since the handshake within the header-read timeout, or no
/// byte either way within the idle timeout.
async fn until_silent<F, E>(
    served: F,
    activity: &Activity,
    limits: ConnectionLimits,
    name: &'static str,
    metrics: &ConnectionMetrics,
    peer: std::net::SocketAddr,
) where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(served);
    let check = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(check);
    loop {
        tokio::select! {
            result = &mut served => {
                if let Err(error) = result {
                    tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = ticks.tick() => {
                let (limit, reason) = if activity.has_read() {
                    (limits.idle_timeout, "idle")
                } else {
                    (limits.header_read_timeout, "first_request")
                };
                if activity.silent_for() >= limit {
                    tracing::debug!(listener = name, %peer, reason, "closing a silent connection");
                    metrics.closed(name, reason);
                    return;
                }
            }
        }
    }
}

/// When a connection last moved a byte, and whether it has read any.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    last_millis: AtomicU64,
    read_any: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            last_millis: AtomicU64::new(0),
            read_any: AtomicBool::new(false),
        }
    }

    fn now_millis(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self, read: bool) {
        self.last_millis.store(self.now_millis(), Ordering::Relaxed);
        if read {
            self.read_any.store(true, Ordering::Relaxed);
        }
    }

    fn reset(&self) {
        self.last_millis.store(self.now_millis(), Ordering::Relaxed);
        self.read_any.store(false, Ordering::Relaxed);
    }

    fn has_read(&self) -> bool {
        self.read_any.load(Ordering::Relaxed)
    }

    fn silent_for(&self) -> Duration {
        Duration::from_millis(
            self.now_millis()
                .saturating_sub(self.last_millis.load(Ordering::Relaxed)),
        )
    }
}

/// A socket that records its activity.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch(true);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(false);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(false);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
