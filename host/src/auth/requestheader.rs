//! Front-proxy (request-header) authentication, as k8s.io/apiserver's `headerrequest`
//! authenticator does it: the API server's aggregation layer proves itself with a client
//! certificate signed by the request-header CA (and, when `requestheader-allowed-names` is
//! set, with one of those common names); only then are the user, group and extra headers
//! believed. Everything comes from the `kube-system/extension-apiserver-authentication`
//! ConfigMap, which [`super::follow`] keeps current.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use k8s_openapi::api::core::v1::ConfigMap;

use super::User;
use crate::tls::{ClientCa, ClientCertError, PeerCertificates};

/// The keys of the ConfigMap.
const CA_KEY: &str = "requestheader-client-ca-file";
const ALLOWED_NAMES_KEY: &str = "requestheader-allowed-names";
const USERNAME_KEY: &str = "requestheader-username-headers";
const GROUP_KEY: &str = "requestheader-group-headers";
const EXTRA_KEY: &str = "requestheader-extra-headers-prefix";

/// How front-proxied requests are recognised now.
#[derive(Debug, Clone)]
pub struct RequestHeaderConfig {
    ca: ClientCa,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
}

/// Why the ConfigMap cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    #[error("it has no {CA_KEY}: the API server has no front proxy configured")]
    NoCa,
    #[error("its {CA_KEY} holds no usable certificate")]
    BadCa(#[source] crate::tls::PemError),
    #[error("its {key} is not a JSON list of strings")]
    BadList {
        key: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

fn list(data: &BTreeMap<String, String>, key: &'static str) -> Result<Vec<String>, ConfigMapError> {
    match data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str::<Vec<String>>(text)
            .map(|items| items.into_iter().filter(|i| !i.is_empty()).collect())
            .map_err(|source| ConfigMapError::BadList { key, source }),
    }
}

impl RequestHeaderConfig {
    /// Read the ConfigMap as kube-apiserver publishes it.
    pub fn from_configmap(configmap: &ConfigMap) -> Result<RequestHeaderConfig, ConfigMapError> {
        let empty = BTreeMap::new();
        let data = configmap.data.as_ref().unwrap_or(&empty);
        let ca = data
            .get(CA_KEY)
            .filter(|ca| !ca.trim().is_empty())
            .ok_or(ConfigMapError::NoCa)?;
        Ok(RequestHeaderConfig {
            ca: ClientCa::from_pem(ca.as_bytes()).map_err(ConfigMapError::BadCa)?,
            allowed_names: list(data, ALLOWED_NAMES_KEY)?,
            username_headers: list(data, USERNAME_KEY)?,
            group_headers: list(data, GROUP_KEY)?,
            extra_prefixes: list(data, EXTRA_KEY)?,
        })
    }

    /// Whether the connection's certificate is the front proxy's.
    pub fn verify_proxy(&self, peer: Option<&PeerCertificates>) -> Result<String, ClientCertError> {
        self.ca.verify(peer, &self.allowed_names)
    }

    /// The user the proxy names in the headers (`None` without a username header).
    pub fn user(&self, headers: &HeaderMap) -> Option<User> {
        let name = self.username_headers.iter().find_map(|header| {
            headers
                .get_all(header.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| !v.is_empty())
                .map(str::to_owned)
        })?;
        let groups = self
            .group_headers
            .iter()
            .flat_map(|header| headers.get_all(header.as_str()).iter())
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (header, value) in headers {
            let header = header.as_str();
            let Some(key) = self.extra_prefixes.iter().find_map(|prefix| {
                header
                    .get(..prefix.len())
                    .filter(|head| head.eq_ignore_ascii_case(prefix))
                    .map(|_| &header[prefix.len()..])
            }) else {
                continue;
            };
            if let Ok(value) = value.to_str() {
                extra
                    .entry(unescape(&key.to_ascii_lowercase()))
                    .or_default()
                    .push(value.to_owned());
            }
        }
        Some(User {
            name,
            uid: String::new(),
            groups,
            extra,
        })
    }
}

/// `%XX` unescaping of an extra key (client-go escapes what a header name cannot carry);
/// a malformed escape leaves the key as it is, as `url.PathUnescape` failing does.
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = key
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                None => return key.to_owned(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn config() -> RequestHeaderConfig {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::ensure_self_signed(dir.path()).unwrap();
        let ca = std::fs::read_to_string(files.ca_cert).unwrap();
        let configmap: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "extension-apiserver-authentication"},
            "data": {
                CA_KEY: ca,
                ALLOWED_NAMES_KEY: "[\"front-proxy-client\"]",
                USERNAME_KEY: "[\"X-Remote-User\"]",
                GROUP_KEY: "[\"X-Remote-Group\"]",
                EXTRA_KEY: "[\"X-Remote-Extra-\"]",
            }
        }))
        .unwrap();
        RequestHeaderConfig::from_configmap(&configmap).unwrap()
    }

    #[test]
    fn the_user_comes_from_the_configured_headers() {
        let config = config();
        assert_eq!(config.allowed_names, ["front-proxy-client"]);
        let mut headers = HeaderMap::new();
        headers.insert("x-remote-user", HeaderValue::from_static("alice"));
        headers.append("x-remote-group", HeaderValue::from_static("sre"));
        headers.append(
            "x-remote-group",
            HeaderValue::from_static("system:authenticated"),
        );
        headers.append(
            "x-remote-extra-authentication.kubernetes.io%2fpod-name",
            HeaderValue::from_static("p1"),
        );
        headers.append("x-remote-extra-scopes", HeaderValue::from_static("a"));
        headers.append("x-remote-extra-scopes", HeaderValue::from_static("b"));
        let user = config.user(&headers).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["sre", "system:authenticated"]);
        assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], ["p1"]);
        assert_eq!(user.extra["scopes"], ["a", "b"]);
        assert!(config.user(&HeaderMap::new()).is_none());
        assert!(matches!(
            config.verify_proxy(None),
            Err(ClientCertError::Missing)
        ));
    }

    #[test]
    fn a_configmap_without_a_ca_is_refused_with_the_reason() {
        let configmap = ConfigMap::default();
        let error = RequestHeaderConfig::from_configmap(&configmap).unwrap_err();
        assert!(error.to_string().contains(CA_KEY), "{error}");
        assert_eq!(unescape("a%2Fb"), "a/b");
        assert_eq!(unescape("100%"), "100%");
    }
}
