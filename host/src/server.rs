//! `run`: turn validated settings into a running server and shut it down cleanly.
//!
//! Order: data dir → Secret hashing key → TLS → store → locks → plugins → bind both listeners →
//! serve until the shutdown token fires → drain in-flight requests → stop plugins → flush and
//! close the store. Every step that can fail on bad input fails before a socket is bound.
//!
//! With `--manage-certs` the TLS step obtains the certificate from the cluster (waiting while
//! the API is unreachable); the caBundle is patched right after the listeners bind, so the
//! API server starts calling only once something answers.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admission::{KindTable, Redactor};
use crate::auth::Auth;
use crate::config::{QueryAuth, Settings, TlsSource};
use crate::http::{self, AdmissionContext, AppState};
use crate::locks::Locks;
use crate::metrics::Metrics;
use crate::plugins::PluginHost;
use crate::store::Store;
use crate::{certs, hash_key, tls};

/// The addresses actually bound (useful with port 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub webhook: SocketAddr,
    pub query: SocketAddr,
}

/// Run until `shutdown` is cancelled. `on_bound` is told the listening addresses.
pub async fn run(
    settings: Settings,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create the data dir {}", settings.data_dir.display()))?;
    let key = hash_key::load_or_create(&settings.data_dir)?;

    let mut cert_manager = None;
    let resolver = match &settings.tls {
        TlsSource::Files { cert, key } => tls::CertResolver::load(tls::CertPaths {
            cert: cert.clone(),
            key: key.clone(),
        })?,
        TlsSource::SelfSigned => {
            let files = tls::ensure_self_signed(&settings.data_dir)?;
            println!("ca: {}", files.ca_cert.display());
            tls::CertResolver::load(files.paths)?
        }
        TlsSource::Managed(cert_settings) => {
            let Some(manager) = certs::CertManager::start(cert_settings.clone(), &shutdown)
                .await
                .context("cannot obtain the serving certificate (--manage-certs)")?
            else {
                tracing::info!("stopped before the certificate was obtained");
                return Ok(());
            };
            let resolver = manager.resolver();
            cert_manager = Some(manager);
            resolver
        }
    };
    let tls_config = tls::server_config(resolver.clone())?;
    // A listener that authenticates by client certificate asks for one (without requiring
    // it: the refusal is an HTTP answer with a reason).
    let client_cert_config = tls::server_config_requesting_client_certs(resolver.clone())?;
    let query_authenticated = settings.query_auth == QueryAuth::Kubernetes;
    let auth = if query_authenticated {
        Auth::kubernetes(shutdown.clone())
            .await
            .context("cannot set up --query-auth kubernetes")?
    } else {
        Auth::disabled()
    };

    if settings.answer_only {
        tracing::warn!("--answer-only: benchmarking mode, no review is recorded");
    }
    if settings.store.durability == crate::store::Durability::Discard {
        tracing::warn!("--discard-events: benchmarking mode, no event is written");
    }
    let store_dir = settings.data_dir.join("store");
    let store_settings = settings.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_dir, store_settings))
        .await
        .context("opening the store panicked")??;
    // With a shared database, every replica (and cluster) uses the installation's key.
    let key = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.hash_key(key))
            .await
            .context("reading the Secret hashing key panicked")?
            .context("cannot read the Secret hashing key from the store")?
    };

    let plugins = {
        let plugin_settings = settings.plugins.clone();
        let store = store.clone();
        tokio::task::spawn_blocking(move || PluginHost::start(&plugin_settings, store))
            .await
            .context("loading the plugins panicked")?
            .context("cannot start the plugin host")?
    };
    let locks = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || Locks::load(store))
            .await
            .context("loading the locks panicked")?
            .context("cannot load the locks from the store")?
    };
    if !locks.is_empty() {
        tracing::info!(locks = locks.len(), "locks loaded");
    }
    let mut metrics = Metrics::new();
    plugins.register_metrics(metrics.registry_mut());
    let connection_metrics = http::serve::ConnectionMetrics::default();
    connection_metrics.register(metrics.registry_mut());
    if let Some(manager) = &cert_manager {
        manager.register_metrics(metrics.registry_mut());
    }
    let confirmer = settings.confirm.clone().map(|confirm_settings| {
        let confirmer = Arc::new(crate::confirm::Confirmer::new(confirm_settings));
        confirmer.metrics.register(metrics.registry_mut());
        confirmer
    });

    let admission = Arc::new(AdmissionContext {
        policy: settings.policy,
        redactor: Redactor::new(key),
        kinds: KindTable::default(),
    });
    metrics
        .registry_mut()
        .register_collector(Box::new(http::webhook::KindsCollector(admission.clone())));
    let state = AppState {
        store: store.clone(),
        plugins: Arc::new(plugins),
        metrics: Arc::new(metrics),
        admission,
        locks: Arc::new(locks),
        max_body_bytes: settings.max_body_bytes,
        body_budget: Arc::new(http::webhook::BodyBudget::new(settings.inflight_body_bytes)),
        answer_only: settings.answer_only,
        confirm: confirmer.clone(),
    };

    let webhook_listener = TcpListener::bind(settings.webhook_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--webhook-listen)",
                settings.webhook_listen
            )
        })?;
    let query_listener = TcpListener::bind(settings.query_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--query-listen)",
                settings.query_listen
            )
        })?;
    let bound = Bound {
        webhook: webhook_listener.local_addr()?,
        query: query_listener.local_addr()?,
    };
    let query_auth = if query_authenticated {
        "kubernetes (front-proxy certificates and bearer tokens, RBAC by SubjectAccessReview)"
    } else {
        "none: unauthenticated, loopback only"
    };
    let webhook_clients = settings.webhook_client.as_ref().map_or_else(
        || "anyone who reaches the port".to_owned(),
        |c| format!("client certificates from {}", c.ca_path.display()),
    );
    tracing::info!(
        webhook = %bound.webhook,
        query = %bound.query,
        query_auth,
        webhook_clients = %webhook_clients,
        data_dir = %settings.data_dir.display(),
        durability = ?settings.store.durability,
        store = store.store_status().backend,
        "logistis is serving"
    );
    on_bound(bound);

    resolver.watch(shutdown.clone());
    crate::locks::spawn_maintenance(state.locks.clone(), store.is_shared(), shutdown.clone());
    let confirm_task = confirmer.map(|confirmer| {
        tracing::info!("confirmation by watch is on");
        confirmer.spawn(
            store.clone(),
            state.admission.redactor.clone(),
            shutdown.clone(),
        )
    });
    if let Some(manager) = cert_manager {
        manager.spawn(shutdown.clone());
    }
    let query_tls = (!settings.query_plain_http).then(|| {
        if query_authenticated {
            client_cert_config.clone()
        } else {
            tls_config.clone()
        }
    });
    let webhook_client = settings.webhook_client.clone().map(Arc::new);
    let webhook_tls = if webhook_client.is_some() {
        client_cert_config
    } else {
        tls_config
    };
    let webhook = tokio::spawn(http::serve::serve(
        "webhook",
        webhook_listener,
        http::webhook_router_with(state.clone(), webhook_client),
        Some(webhook_tls),
        settings.connections,
        connection_metrics.clone(),
        shutdown.clone(),
    ));
    let aggregated = http::aggregated::routes(Arc::new(http::aggregated::Context {
        app: state.clone(),
        shutdown: shutdown.clone(),
    }));
    let query = tokio::spawn(http::serve::serve(
        "query",
        query_listener,
        http::query_router_with(state.clone(), aggregated, auth).layer(axum::Extension(
            http::backup::BackupEndpoint {
                enabled: settings.allow_backup,
            },
        )),
        query_tls,
        settings.connections,
        connection_metrics,
        shutdown.clone(),
    ));
    let _ = webhook.await;
    let _ = query.await;
    if let Some(task) = confirm_task {
        // Its tasks stop at the shutdown token; a status write in flight finishes first.
        let _ = task.await;
    }

    state.plugins.shutdown();
    let flushed = tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .context("closing the store panicked")?;
    if flushed {
        tracing::info!("logistis stopped; the store is flushed");
    } else {
        tracing::error!(
            "logistis stopped; the store could NOT be flushed (writes were failing): events answered since the first failure were not recorded"
        );
    }
    Ok(())
}
