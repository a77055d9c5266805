//! The certificate's life in a running server. Before the listeners bind, [`CertManager::start`]
//! fills (or adopts) the Secret, retrying with back-off while the API is unreachable, and
//! builds the resolver that serves it from memory. Once bound, [`CertManager::spawn`] checks
//! at once and then at the next renewal point or every [`CHECK_INTERVAL`], whichever is
//! first: renew what [`plan`] says, patch the caBundle, then swap the served key — caBundle
//! first, so the API server trusts a new CA before it meets a certificate signed by it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::bundle::{BundlePatch, api_service_patch, bundle_patch};
use super::cluster::{Cluster, Write};
use super::inspect;
use super::metrics::CertMetrics;
use super::plan;
use super::{CertSettings, Error, Material};
use crate::telemetry::chain;
use crate::tls::CertResolver;

/// The longest pause between two checks. A check is two GETs; it also puts back a caBundle
/// that a re-apply of the manifests removed.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Guarded writes tried before giving up until the next check.
const WRITE_ATTEMPTS: usize = 3;

/// Exponential back-off between failed attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The pause before the next attempt; doubles up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// The pause until `next_check` (a second late, so the renewal point has passed), at least a
/// second and at most [`CHECK_INTERVAL`].
pub fn wait_until(next_check: SystemTime, now: SystemTime) -> Duration {
    next_check
        .duration_since(now)
        .unwrap_or_default()
        .saturating_add(Duration::from_secs(1))
        .min(CHECK_INTERVAL)
}

/// The Secret's contents after a sync, and when they next need a look.
struct Synced {
    material: Material,
    next_check: SystemTime,
}

/// Read the Secret, renew what needs renewing, write it back guarded by its resourceVersion.
/// On a conflict, read again: what another writer stored is adopted if it is valid.
async fn sync_secret(cluster: &Cluster, settings: &CertSettings) -> Result<Synced, Error> {
    for _ in 0..WRITE_ATTEMPTS {
        let stored = cluster.read_secret().await?;
        let converged =
            plan::converge(&stored.material, settings, SystemTime::now()).map_err(Error::Issue)?;
        if converged.changes.is_empty() {
            return Ok(Synced {
                material: stored.material,
                next_check: converged.next_check,
            });
        }
        for change in &converged.changes {
            tracing::info!(%change, "updating the certificate Secret");
        }
        match cluster.write_secret(stored, &converged.material).await? {
            Write::Done => {
                return Ok(Synced {
                    material: converged.material,
                    next_check: converged.next_check,
                });
            }
            Write::Stale => {
                tracing::info!("the Secret changed since we read it: reading it again");
            }
        }
    }
    Err(Error::Contended {
        object: format!("Secret {}", settings.secret_ref()),
        attempts: WRITE_ATTEMPTS,
    })
}

/// Owns the Secret, the caBundle and the served certificate of one server.
#[derive(Debug)]
pub struct CertManager {
    cluster: Cluster,
    settings: CertSettings,
    resolver: Arc<CertResolver>,
    metrics: CertMetrics,
}

impl CertManager {
    /// Connect, then fill or adopt the Secret. Transient failures (API unreachable, 5xx) are
    /// retried with back-off, each logged with its cause; anything else is returned. `None`
    /// if `shutdown` fires first.
    pub async fn start(
        settings: CertSettings,
        shutdown: &CancellationToken,
    ) -> Result<Option<CertManager>, Error> {
        let span = tracing::info_span!("certificates", secret = %settings.secret_ref());
        async {
            let cluster = Cluster::connect(settings.clone()).await?;
            let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
            let synced = loop {
                match sync_secret(&cluster, &settings).await {
                    Ok(synced) => break synced,
                    Err(error) if error.is_transient() => {
                        let delay = backoff.next_delay();
                        tracing::warn!(
                            error = %chain(&error),
                            retry_in = ?delay,
                            "cannot obtain the serving certificate yet"
                        );
                        tokio::select! {
                            () = shutdown.cancelled() => return Ok(None),
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    Err(error) => return Err(error),
                }
            };
            let material = &synced.material;
            let resolver =
                CertResolver::from_pem(&material.tls_crt, &material.tls_key).map_err(|source| {
                    Error::Install {
                        secret: settings.secret_ref(),
                        source,
                    }
                })?;
            let manager = CertManager {
                cluster,
                settings,
                resolver,
                metrics: CertMetrics::default(),
            };
            manager.observe(material, "serving the certificate from the Secret");
            Ok(Some(manager))
        }
        .instrument(span)
        .await
    }

    /// The resolver for the listeners' TLS configuration.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// Check now (which patches the caBundle right after the listeners bound), then whenever
    /// something is due and at least every [`CHECK_INTERVAL`], until `shutdown`. A failed
    /// check is logged, counted and retried with back-off from 10 s.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut wait = Duration::ZERO;
            let mut backoff = Backoff::new(Duration::from_secs(10), CHECK_INTERVAL);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
                let span =
                    tracing::info_span!("certificate_check", secret = %self.settings.secret_ref());
                wait = match self.check().instrument(span).await {
                    Ok(next_check) => {
                        backoff.reset();
                        wait_until(next_check, SystemTime::now())
                    }
                    Err(error) => {
                        self.metrics.check_failed();
                        let delay = backoff.next_delay();
                        tracing::warn!(
                            secret = %self.settings.secret_ref(),
                            error = %chain(&error),
                            retry_in = ?delay,
                            "certificate check failed; still serving the current certificate"
                        );
                        delay
                    }
                };
            }
        })
    }

    /// One check: the Secret, then the caBundle, then the served key. Returns when the next
    /// one is due.
    async fn check(&self) -> Result<SystemTime, Error> {
        let synced = sync_secret(&self.cluster, &self.settings).await?;
        let published = self.publish(&synced.material.ca_crt).await;
        let published_api = self.publish_api_service(&synced.material.ca_crt).await;
        let changed = self
            .resolver
            .set_pem(&synced.material.tls_crt, &synced.material.tls_key)
            .map_err(|source| Error::Install {
                secret: self.settings.secret_ref(),
                source,
            })?;
        if changed {
            self.observe(&synced.material, "now serving a new certificate");
        }
        published?;
        published_api?;
        Ok(synced.next_check)
    }

    /// Put `bundle` on our webhooks, reading again if the configuration changed under us.
    async fn publish(&self, bundle: &[u8]) -> Result<(), Error> {
        let configuration = &self.settings.webhook_configuration;
        for _ in 0..WRITE_ATTEMPTS {
            let Some(current) = self.cluster.read_configuration().await? else {
                return Err(Error::NotPublished {
                    reason: format!(
                        "the ValidatingWebhookConfiguration {configuration} does not exist (yet)"
                    ),
                });
            };
            let body = match bundle_patch(
                &current,
                &self.settings.namespace,
                &self.settings.service,
                bundle,
            ) {
                BundlePatch::UpToDate => return Ok(()),
                BundlePatch::NoWebhook => {
                    return Err(Error::NotPublished {
                        reason: format!(
                            "no webhook of the ValidatingWebhookConfiguration {configuration} \
                             calls the Service {}/{}",
                            self.settings.namespace, self.settings.service
                        ),
                    });
                }
                BundlePatch::Patch { body, webhooks } => {
                    tracing::debug!(configuration, webhooks, "patching the caBundle");
                    body
                }
            };
            match self.cluster.patch_configuration(&body).await? {
                Write::Done => {
                    tracing::info!(configuration, "caBundle patched");
                    return Ok(());
                }
                Write::Stale => tracing::info!(
                    configuration,
                    "the ValidatingWebhookConfiguration changed since we read it: reading it again"
                ),
            }
        }
        Err(Error::Contended {
            object: format!("ValidatingWebhookConfiguration {configuration}"),
            attempts: WRITE_ATTEMPTS,
        })
    }

    /// Put `bundle` on the aggregated API's APIService, if it exists and calls our Service.
    async fn publish_api_service(&self, bundle: &[u8]) -> Result<(), Error> {
        let name = super::API_SERVICE;
        for _ in 0..WRITE_ATTEMPTS {
            let Some(current) = self.cluster.read_api_service().await? else {
                tracing::debug!(
                    api_service = name,
                    "no APIService: no caBundle to publish there"
                );
                return Ok(());
            };
            let body = match api_service_patch(
                &current,
                &self.settings.namespace,
                &self.settings.service,
                bundle,
            ) {
                BundlePatch::UpToDate => return Ok(()),
                BundlePatch::NoWebhook => {
                    tracing::debug!(api_service = name, "the APIService calls another Service");
                    return Ok(());
                }
                BundlePatch::Patch { body, .. } => body,
            };
            match self.cluster.patch_api_service(&body).await? {
                Write::Done => {
                    tracing::info!(api_service = name, "APIService caBundle patched");
                    return Ok(());
                }
                Write::Stale => tracing::info!(
                    api_service = name,
                    "the APIService changed since we read it: reading it again"
                ),
            }
        }
        Err(Error::Contended {
            object: format!("APIService {name}"),
            attempts: WRITE_ATTEMPTS,
        })
    }

    /// Log what is served and update the expiry gauges.
    fn observe(&self, material: &Material, message: &'static str) {
        let leaf = inspect::parse_certificates(&material.tls_crt).map(|mut all| all.remove(0));
        let ca = inspect::parse_certificates(&material.ca_crt).map(|mut all| all.remove(0));
        if let (Ok(leaf), Ok(ca)) = (leaf, ca) {
            self.metrics.set_expiry(leaf.not_after, ca.not_after);
            tracing::info!(
                serial = %leaf.serial,
                not_after = %chrono::DateTime::<chrono::Utc>::from(leaf.not_after).to_rfc3339(),
                ca_not_after = %chrono::DateTime::<chrono::Utc>::from(ca.not_after).to_rfc3339(),
                "{message}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::testing::at;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn the_next_check_is_just_after_the_due_point_and_never_far_off() {
        let now = at(0);
        assert_eq!(
            wait_until(at(30), now),
            Duration::from_secs(31),
            "a second past the due point"
        );
        assert_eq!(wait_until(at(86_400), now), CHECK_INTERVAL);
        assert_eq!(
            wait_until(now, at(60)),
            Duration::from_secs(1),
            "overdue: soon, not in a busy loop"
        );
    }
}
