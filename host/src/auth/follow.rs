//! Follow `kube-system/extension-apiserver-authentication` with kube-runtime's watcher (list,
//! then watch; relist on 410; back-off on errors), so a rotated request-header CA or changed
//! allowed names apply without a restart. A ConfigMap that cannot be used, or is deleted,
//! turns front-proxy authentication off (requests then need a bearer token) and says why.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio_util::sync::CancellationToken;

use super::requestheader::RequestHeaderConfig;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "extension-apiserver-authentication";
/// How long start-up waits for the first read before serving anyway.
pub const FIRST_READ: Duration = Duration::from_secs(10);

fn apply(slot: &ArcSwapOption<RequestHeaderConfig>, configmap: &ConfigMap) {
    match RequestHeaderConfig::from_configmap(configmap) {
        Ok(config) => {
            tracing::info!(
                allowed_names = ?config.allowed_names,
                resource_version = configmap.metadata.resource_version.as_deref().unwrap_or(""),
                "front-proxy authentication: request-header CA loaded from {NAMESPACE}/{NAME}"
            );
            slot.store(Some(Arc::new(config)));
        }
        Err(error) => {
            tracing::warn!(
                error = %error,
                "front-proxy authentication is off: {NAMESPACE}/{NAME} cannot be used"
            );
            slot.store(None);
        }
    }
}

/// Keep `slot` current until `shutdown`; returns once the first list answered (or after
/// [`FIRST_READ`]), the watch going on in the background.
pub async fn follow(
    client: kube::Client,
    slot: Arc<ArcSwapOption<RequestHeaderConfig>>,
    shutdown: CancellationToken,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let config = watcher::Config::default().fields(&format!("metadata.name={NAME}"));
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut first = Some(first_tx);
        let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = stream.next() => event,
            };
            match event {
                None => return,
                Some(Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => {
                    apply(&slot, &cm);
                }
                Some(Ok(watcher::Event::Delete(_))) => {
                    tracing::warn!(
                        "front-proxy authentication is off: {NAMESPACE}/{NAME} was deleted"
                    );
                    slot.store(None);
                }
                Some(Ok(watcher::Event::Init)) => {}
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(first) = first.take() {
                        let _ = first.send(());
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "watching {NAMESPACE}/{NAME} failed; retrying");
                }
            }
        }
    });
    if tokio::time::timeout(FIRST_READ, first_rx).await.is_err() {
        tracing::warn!(
            "{NAMESPACE}/{NAME} not read within {FIRST_READ:?}: front-proxy requests are refused until it is"
        );
    }
}
