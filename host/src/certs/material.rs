//! The contents of the certificate Secret: four PEM values under the keys cert-manager and
//! `kubernetes.io/tls` Secrets use, so existing tooling (and people) can read them.
//! `ca.crt` may hold more than one CA during a rotation: the current one first, then the
//! previous ones that are still valid; it is exactly what goes into the caBundle.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";

/// The PEM values of the Secret; empty when absent (the placeholder has no data at all).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Material {
    /// The CA bundle: current CA first, then previous CAs still valid.
    pub ca_crt: Vec<u8>,
    pub ca_key: Vec<u8>,
    /// The serving certificate (leaf only: the API server trusts the CA directly).
    pub tls_crt: Vec<u8>,
    pub tls_key: Vec<u8>,
}

/// Keys never reach a log line, even by `{:?}`.
impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("ca_crt_bytes", &self.ca_crt.len())
            .field("ca_key", &"[elided]")
            .field("tls_crt_bytes", &self.tls_crt.len())
            .field("tls_key", &"[elided]")
            .finish()
    }
}

impl Material {
    /// Read the four keys of a Secret's `data`; other keys are ignored.
    pub fn from_data(data: Option<&BTreeMap<String, ByteString>>) -> Material {
        let value = |key: &str| {
            data.and_then(|data| data.get(key))
                .map(|bytes| bytes.0.clone())
                .unwrap_or_default()
        };
        Material {
            ca_crt: value(CA_CERT_KEY),
            ca_key: value(CA_KEY_KEY),
            tls_crt: value(TLS_CERT_KEY),
            tls_key: value(TLS_KEY_KEY),
        }
    }

    /// Write the four keys into `data`, keeping any other keys someone put there.
    pub fn write_into(&self, data: &mut BTreeMap<String, ByteString>) {
        for (key, value) in [
            (CA_CERT_KEY, &self.ca_crt),
            (CA_KEY_KEY, &self.ca_key),
            (TLS_CERT_KEY, &self.tls_crt),
            (TLS_KEY_KEY, &self.tls_key),
        ] {
            data.insert(key.to_owned(), ByteString(value.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_secret_data_and_keeps_foreign_keys() {
        let material = Material {
            ca_crt: b"ca cert".to_vec(),
            ca_key: b"ca key".to_vec(),
            tls_crt: b"tls cert".to_vec(),
            tls_key: b"tls key".to_vec(),
        };
        let mut data = BTreeMap::from([("note".to_owned(), ByteString(b"kept".to_vec()))]);
        material.write_into(&mut data);
        assert_eq!(data.len(), 5);
        assert_eq!(data["note"].0, b"kept");
        assert_eq!(Material::from_data(Some(&data)), material);
        assert_eq!(Material::from_data(None), Material::default());
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let material = Material {
            ca_key: b"SECRET-CA-KEY".to_vec(),
            tls_key: b"SECRET-TLS-KEY".to_vec(),
            ..Material::default()
        };
        let text = format!("{material:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
