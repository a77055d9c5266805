//! Certificates managed by the server (`--manage-certs`): a private CA and the webhook's
//! serving certificate live in one Kubernetes Secret, are renewed before they expire, and the
//! CA is patched into the `caBundle` of our own ValidatingWebhookConfiguration — no
//! cert-manager, and no private key in any manifest.
//!
//! The modules, pure first:
//! - [`material`]: the four PEM values of the Secret (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`).
//! - [`inspect`]: reading certificates back (validity, names, CA flag, key match, chain).
//! - [`issue`]: generating a CA and a serving certificate, and the lifetimes we choose.
//! - [`plan`]: given the Secret's contents and the time, keep, renew the serving certificate,
//!   rotate the CA or generate everything; then produce the new Secret contents.
//! - [`bundle`]: the JSON Patch that puts the CA bundle on our webhooks and on no others.
//! - [`cluster`]: the only Kubernetes I/O (read/update the Secret, read/patch the webhook
//!   configuration), with RBAC limited to those two objects by name.
//! - [`manager`]: obtain the certificate before the listeners bind, then re-check
//!   periodically and swap the served key without a restart.
//! - [`metrics`]: expiry timestamps and failed checks for `/metrics`.

pub mod bundle;
pub mod cluster;
pub mod inspect;
pub mod issue;
pub mod manager;
pub mod material;
pub mod metrics;
pub mod plan;

#[cfg(test)]
mod testing;

pub use manager::CertManager;
pub use material::Material;

/// Why the certificate could not be obtained, stored, published or served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot find the Kubernetes API (no usable kubeconfig, and not running in a pod)")]
    Connect(#[source] kube::Error),
    #[error(
        "the Secret {namespace}/{name} does not exist: create it empty \
         (`kubectl -n {namespace} create secret generic {name}`; the Logistis manifests include it). \
         Logistis fills it but may not create Secrets itself: RBAC cannot limit `create` to one name"
    )]
    SecretMissing { namespace: String, name: String },
    #[error("cannot {verb} {object}")]
    Api {
        verb: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{object}: {attempts} guarded writes in a row were rejected as stale")]
    Contended { object: String, attempts: usize },
    /// The caBundle has nowhere to go yet: until it does, the API server cannot call the
    /// webhook, so the check is retried soon (with back-off) rather than at the next
    /// scheduled one.
    #[error("no caBundle published: {reason}")]
    NotPublished { reason: String },
    #[error("cannot issue a certificate")]
    Issue(#[source] issue::IssueError),
    #[error("cannot serve the certificate from the Secret {secret}")]
    Install {
        secret: String,
        #[source]
        source: crate::tls::PemError,
    },
}

impl Error {
    /// Worth retrying as it is: the API unreachable, overloaded or failing, or a race. Not:
    /// a missing object, missing permissions, a rejected request — someone has to act.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api { source, .. } => match source {
                kube::Error::Api(status) => {
                    !(400..500).contains(&status.code) || matches!(status.code, 408 | 429)
                }
                _ => true,
            },
            Error::Contended { .. } | Error::NotPublished { .. } => true,
            Error::Connect(_)
            | Error::SecretMissing { .. }
            | Error::Issue(_)
            | Error::Install { .. } => false,
        }
    }
}

/// The APIService of the aggregated API, whose caBundle is kept like the webhook's (when it
/// exists and calls our Service).
pub const API_SERVICE: &str = "v1alpha1.logistis.io";

/// Validated `--manage-certs` settings: which objects hold our certificate and trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSettings {
    /// Namespace of the Secret and the Service.
    pub namespace: String,
    /// The Secret holding `ca.crt`, `ca.key`, `tls.crt`, `tls.key` (created empty by the
    /// manifests; the server fills it).
    pub secret: String,
    /// The Service in front of the webhook; it names the certificate.
    pub service: String,
    /// The ValidatingWebhookConfiguration whose webhooks pointing at the Service get the
    /// caBundle.
    pub webhook_configuration: String,
}

impl CertSettings {
    /// The serving certificate's DNS names: every way a client in the cluster can name the
    /// Service.
    pub fn dns_names(&self) -> Vec<String> {
        let (service, namespace) = (&self.service, &self.namespace);
        vec![
            service.clone(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ]
    }

    /// The name the API server verifies when it calls a webhook through a Service.
    pub fn server_name(&self) -> String {
        format!("{}.{}.svc", self.service, self.namespace)
    }

    /// `namespace/name` of the Secret, for messages.
    pub fn secret_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_names_cover_every_service_form() {
        let settings = testing::settings();
        assert_eq!(
            settings.dns_names(),
            [
                "logistis",
                "logistis.logistis",
                "logistis.logistis.svc",
                "logistis.logistis.svc.cluster.local"
            ]
        );
        assert_eq!(settings.server_name(), "logistis.logistis.svc");
        assert_eq!(settings.secret_ref(), "logistis/logistis-tls");
    }
}
