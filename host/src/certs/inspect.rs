//! Reading certificates back from PEM: validity, DNS names, the CA flag, whether a private
//! key belongs to a certificate, and whether a client trusting one CA would accept a serving
//! certificate for a name — checked with webpki (through rustls), the same verification a
//! TLS client does, rather than by comparing issuer names.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;

/// Why a PEM value cannot be read as certificates or as a key.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no PEM certificate")]
    NoCertificate,
    #[error("invalid PEM")]
    Pem(#[source] rustls_pki_types::pem::Error),
    #[error("not an X.509 certificate")]
    X509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("the subject alternative names cannot be read")]
    Names(#[source] x509_parser::error::X509Error),
    #[error("a validity date is before 1970")]
    Date,
    #[error("not a PKCS#8 PEM private key")]
    Key(#[source] rcgen::Error),
}

/// What the decisions need to know about one certificate.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub der: CertificateDer<'static>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub is_ca: bool,
    pub dns_names: BTreeSet<String>,
    /// Hex, colon-separated, as `openssl x509 -serial` shows it (for logs).
    pub serial: String,
    public_key: Vec<u8>,
}

impl Certificate {
    /// Whether `now` is inside the validity period (both ends included, as RFC 5280 and
    /// webpki count them).
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The first second at which it is no longer valid.
    pub fn expired_at(&self) -> SystemTime {
        self.not_after + Duration::from_secs(1)
    }

    /// The whole validity period.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// The moment at which less than `1/divisor` of the lifetime is left.
    pub fn renew_at(&self, divisor: u32) -> SystemTime {
        self.not_after - self.lifetime() / divisor
    }

    /// The PEM text of this certificate alone.
    pub fn pem(&self) -> String {
        pem_block(&self.der)
    }
}

fn pem_block(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str("-----END CERTIFICATE-----\n");
    text
}

fn unix(seconds: i64) -> Result<SystemTime, InspectError> {
    let seconds = u64::try_from(seconds).map_err(|_| InspectError::Date)?;
    Ok(UNIX_EPOCH + Duration::from_secs(seconds))
}

fn parse_one(der: CertificateDer<'static>) -> Result<Certificate, InspectError> {
    let (_, x509) = x509_parser::parse_x509_certificate(&der).map_err(InspectError::X509)?;
    let dns_names = x509
        .subject_alternative_name()
        .map_err(InspectError::Names)?
        .map(|extension| {
            extension
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(name) => Some((*name).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Certificate {
        not_before: unix(x509.validity().not_before.timestamp())?,
        not_after: unix(x509.validity().not_after.timestamp())?,
        is_ca: x509.is_ca(),
        dns_names,
        serial: x509.raw_serial_as_string(),
        public_key: x509.public_key().subject_public_key.data.to_vec(),
        der: der.clone(),
    })
}

/// Every certificate in a PEM value, in order; fails on anything unreadable or on none.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<Certificate>, InspectError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .map(|der| parse_one(der.map_err(InspectError::Pem)?))
        .collect::<Result<Vec<_>, _>>()?;
    if certificates.is_empty() {
        return Err(InspectError::NoCertificate);
    }
    Ok(certificates)
}

/// The private key in `key_pem`, if it is one we can sign with.
pub fn parse_key(key_pem: &[u8]) -> Result<rcgen::KeyPair, InspectError> {
    let text = std::str::from_utf8(key_pem)
        .map_err(|_| InspectError::Key(rcgen::Error::CouldNotParseKeyPair))?;
    rcgen::KeyPair::from_pem(text).map_err(InspectError::Key)
}

/// Whether `key_pem` is the private key of `certificate`.
pub fn key_matches(key_pem: &[u8], certificate: &Certificate) -> bool {
    use rcgen::PublicKeyData as _;
    parse_key(key_pem).is_ok_and(|key| key.der_bytes() == certificate.public_key.as_slice())
}

/// Whether a TLS client trusting only `ca` accepts `leaf` as the certificate of
/// `server_name` at `now` (chain, signature, validity, serverAuth usage and name).
pub fn accepted_by(
    leaf: &Certificate,
    ca: &Certificate,
    server_name: &str,
    now: SystemTime,
) -> bool {
    let mut roots = RootCertStore::empty();
    if roots.add(ca.der.clone()).is_err() {
        return false;
    }
    let Ok(name) = ServerName::try_from(server_name.to_owned()) else {
        return false;
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()
    else {
        return false;
    };
    let now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    verifier
        .verify_server_cert(&leaf.der, &[], &name, &[], now)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::testing::{self, at};

    #[test]
    fn reads_back_what_was_issued() {
        let material = testing::material(at(0));
        let cas = parse_certificates(&material.ca_crt).unwrap();
        let leaf = &parse_certificates(&material.tls_crt).unwrap()[0];
        assert_eq!(cas.len(), 1);
        assert!(cas[0].is_ca && !leaf.is_ca);
        assert_eq!(
            leaf.dns_names,
            testing::settings().dns_names().into_iter().collect()
        );
        assert!(key_matches(&material.ca_key, &cas[0]));
        assert!(key_matches(&material.tls_key, leaf));
        assert!(!key_matches(&material.ca_key, leaf));
        assert!(leaf.is_valid_at(at(0)) && leaf.is_valid_at(leaf.not_after));
        assert!(!leaf.is_valid_at(leaf.expired_at()));
        assert!(!leaf.serial.is_empty() && leaf.serial != cas[0].serial);
        assert_eq!(
            parse_certificates(leaf.pem().as_bytes()).unwrap()[0].der,
            leaf.der
        );
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_list() {
        assert!(matches!(
            parse_certificates(b""),
            Err(InspectError::NoCertificate)
        ));
        assert!(matches!(
            parse_certificates(b"not pem at all"),
            Err(InspectError::NoCertificate)
        ));
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_certificates(broken),
            Err(InspectError::X509(_))
        ));
        assert!(
            parse_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
        );
    }

    #[test]
    fn a_client_trusting_only_the_ca_accepts_the_serving_certificate() {
        let material = testing::material(at(0));
        let ca = &parse_certificates(&material.ca_crt).unwrap()[0];
        let leaf = &parse_certificates(&material.tls_crt).unwrap()[0];
        let now = at(3600);
        assert!(accepted_by(leaf, ca, "logistis.logistis.svc", now));
        assert!(accepted_by(
            leaf,
            ca,
            "logistis.logistis.svc.cluster.local",
            now
        ));
        assert!(!accepted_by(leaf, ca, "other.logistis.svc", now));
        assert!(accepted_by(
            leaf,
            ca,
            "logistis.logistis.svc",
            leaf.not_after
        ));
        assert!(!accepted_by(
            leaf,
            ca,
            "logistis.logistis.svc",
            leaf.expired_at()
        ));
        let foreign = testing::material(at(0));
        let foreign_ca = &parse_certificates(&foreign.ca_crt).unwrap()[0];
        assert!(!accepted_by(leaf, foreign_ca, "logistis.logistis.svc", now));
    }
}
