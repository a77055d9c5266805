//! The Kubernetes I/O, and nothing else: read and update the one Secret, read and patch the
//! one ValidatingWebhookConfiguration. These are exactly the verbs the RBAC grants, each on
//! one object by `resourceNames` (Secret: get, update; configuration: get, patch).
//!
//! The Secret is updated with its `resourceVersion` (optimistic concurrency): when another
//! writer got there first the API server answers 409 and the caller reads again.

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, PostParams};
use serde_json::Value;

use super::{CertSettings, Error, Material};

/// Recorded in `managedFields` for our writes.
const FIELD_MANAGER: &str = "logistis";

/// The Secret as read, with its contents.
#[derive(Debug, Clone)]
pub struct StoredSecret {
    /// The whole object, sent back on update (keeps labels, annotations, resourceVersion).
    pub secret: Secret,
    pub material: Material,
}

/// How a guarded write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Done,
    /// Someone changed the object since we read it: read again.
    Stale,
}

/// The client and the two objects it may touch.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    secrets: Api<Secret>,
    configurations: Api<ValidatingWebhookConfiguration>,
    api_services: Api<APIService>,
    settings: CertSettings,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

impl Cluster {
    /// A client from KUBECONFIG (or `~/.kube/config`), else the pod's service account.
    pub async fn connect(settings: CertSettings) -> Result<Cluster, Error> {
        let client = kube::Client::try_default().await.map_err(Error::Connect)?;
        Ok(Cluster {
            secrets: Api::namespaced(client.clone(), &settings.namespace),
            configurations: Api::all(client.clone()),
            api_services: Api::all(client.clone()),
            client,
            settings,
        })
    }

    fn secret_object(&self) -> String {
        format!("Secret {}", self.settings.secret_ref())
    }

    fn configuration_object(&self) -> String {
        format!(
            "ValidatingWebhookConfiguration {}",
            self.settings.webhook_configuration
        )
    }

    pub async fn read_secret(&self) -> Result<StoredSecret, Error> {
        match self.secrets.get_opt(&self.settings.secret).await {
            Ok(Some(secret)) => Ok(StoredSecret {
                material: Material::from_data(secret.data.as_ref()),
                secret,
            }),
            Ok(None) => Err(Error::SecretMissing {
                namespace: self.settings.namespace.clone(),
                name: self.settings.secret.clone(),
            }),
            Err(source) => Err(Error::Api {
                verb: "read",
                object: self.secret_object(),
                source,
            }),
        }
    }

    /// Replace the four keys of the Secret as read (`stored.secret`, whose resourceVersion
    /// guards the update).
    pub async fn write_secret(
        &self,
        stored: StoredSecret,
        material: &Material,
    ) -> Result<Write, Error> {
        let mut secret = stored.secret;
        material.write_into(secret.data.get_or_insert_with(Default::default));
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match self
            .secrets
            .replace(&self.settings.secret, &params, &secret)
            .await
        {
            Ok(_) => Ok(Write::Done),
            Err(error) if is_status(&error, 409) => Ok(Write::Stale),
            Err(source) => Err(Error::Api {
                verb: "update",
                object: self.secret_object(),
                source,
            }),
        }
    }

    /// The webhook configuration, or `None` if it does not exist (yet).
    pub async fn read_configuration(
        &self,
    ) -> Result<Option<ValidatingWebhookConfiguration>, Error> {
        self.configurations
            .get_opt(&self.settings.webhook_configuration)
            .await
            .map_err(|source| Error::Api {
                verb: "read",
                object: self.configuration_object(),
                source,
            })
    }

    /// The aggregated API's APIService, or `None` if it does not exist.
    pub async fn read_api_service(&self) -> Result<Option<APIService>, Error> {
        self.api_services
            .get_opt(super::API_SERVICE)
            .await
            .map_err(|source| Error::Api {
                verb: "read",
                object: format!("APIService {}", super::API_SERVICE),
                source,
            })
    }

    /// Send a JSON Patch to the APIService ([`Write::Stale`] on a failed `test`).
    pub async fn patch_api_service(&self, body: &Value) -> Result<Write, Error> {
        use kube::Resource as _;
        let url = format!(
            "{}/{}?fieldManager={FIELD_MANAGER}",
            APIService::url_path(&(), None),
            super::API_SERVICE
        );
        let api_error = |source| Error::Api {
            verb: "patch",
            object: format!("APIService {}", super::API_SERVICE),
            source,
        };
        let request = http::Request::patch(url)
            .header(http::header::CONTENT_TYPE, "application/json-patch+json")
            .body(serde_json::to_vec(body).expect("JSON values always serialize"))
            .map_err(|error| api_error(kube::Error::HttpError(error)))?;
        match self.client.request::<APIService>(request).await {
            Ok(_) => Ok(Write::Done),
            Err(error) if is_status(&error, 422) => Ok(Write::Stale),
            Err(source) => Err(api_error(source)),
        }
    }

    /// Send a JSON Patch to the webhook configuration. A failed `test` operation (422) means
    /// it changed since we read it: [`Write::Stale`].
    pub async fn patch_configuration(&self, body: &Value) -> Result<Write, Error> {
        use kube::Resource as _;
        // kube's typed JSON Patch wants the json-patch crate's type; the body is plain JSON
        // already, so send it as the API expects it.
        let url = format!(
            "{}/{}?fieldManager={FIELD_MANAGER}",
            ValidatingWebhookConfiguration::url_path(&(), None),
            self.settings.webhook_configuration
        );
        let api_error = |source| Error::Api {
            verb: "patch",
            object: self.configuration_object(),
            source,
        };
        let request = http::Request::patch(url)
            .header(http::header::CONTENT_TYPE, "application/json-patch+json")
            .body(serde_json::to_vec(body).expect("JSON values always serialize"))
            .map_err(|error| api_error(kube::Error::HttpError(error)))?;
        match self
            .client
            .request::<ValidatingWebhookConfiguration>(request)
            .await
        {
            Ok(_) => Ok(Write::Done),
            Err(error) if is_status(&error, 422) => Ok(Write::Stale),
            Err(source) => Err(api_error(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::certs::testing::{at, material};
    use rustls_pki_types::pem::PemObject as _;

    /// In a pod the API server is HTTPS with the service account's CA: building the client
    /// must find exactly one rustls crypto provider (a second one enabled by some other
    /// dependency would make this fail at run time, in the cluster only).
    #[tokio::test]
    async fn a_client_for_an_https_api_server_with_its_own_ca_can_be_built() {
        let ca = rustls_pki_types::CertificateDer::from_pem_slice(&material(at(0)).ca_crt)
            .unwrap()
            .to_vec();
        let mut config = kube::Config::new("https://10.96.0.1:443".parse().unwrap());
        config.root_cert = Some(vec![ca]);
        let client = kube::Client::try_from(config);
        assert!(client.is_ok(), "{:?}", client.err());
    }
}
