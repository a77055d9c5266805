//! Generating the CA and the serving certificate (ECDSA P-256, rcgen), and the lifetimes.
//!
//! Why these lifetimes: the CA signs nothing but our own serving certificate and its key
//! sits beside that one in the same Secret, so a very long CA life buys no safety, only a
//! rotation path that never runs and so is never known to work. Five years, rotated when a
//! third is left (~20 months), keeps the old CA in the caBundle longer than any serving
//! certificate it signed can live (one year). The serving certificate is renewed when a third
//! of its year is left (~4 months): months for someone to notice a renewal that keeps failing
//! (log, `logistis_certificate_check_errors`) before anything breaks. Both start five minutes
//! in the past so an API server whose clock is a little behind ours accepts them at once.

use std::time::{Duration, SystemTime};

use super::inspect::{self, Certificate, InspectError};

const DAY: Duration = Duration::from_secs(24 * 3600);
/// How long a CA is valid.
pub const CA_LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// How long a serving certificate is valid (at most: never past its CA).
pub const SERVING_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Renew when less than `1/RENEW_DIVISOR` of a certificate's lifetime is left.
pub const RENEW_DIVISOR: u32 = 3;
/// Validity starts this long before issuance (clock skew between us and API servers).
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot generate a key or certificate")]
    Generate(#[source] rcgen::Error),
    #[error("cannot read the CA back")]
    Ca(#[source] InspectError),
}

fn validity(params: &mut rcgen::CertificateParams, now: SystemTime, not_after: SystemTime) {
    params.not_before = (now - BACKDATE).into();
    params.not_after = not_after.into();
}

/// A new CA valid from (about) `now` for [`CA_LIFETIME`]. Its name carries the issue date so
/// the old and the new CA of a rotation are told apart in the caBundle and in `openssl` output.
pub fn new_ca(now: SystemTime) -> Result<Issued, IssueError> {
    let key = rcgen::KeyPair::generate().map_err(IssueError::Generate)?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(IssueError::Generate)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let issued_on = chrono::DateTime::<chrono::Utc>::from(now).format("%Y-%m-%d %H:%M:%S");
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Logistis webhook CA {issued_on}"),
    );
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, now + CA_LIFETIME);
    let certificate = params.self_signed(&key).map_err(IssueError::Generate)?;
    Ok(Issued {
        cert_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate for `names`, signed by `ca` (whose private key is `ca_key_pem`),
/// valid for [`SERVING_LIFETIME`] or until the CA expires, whichever is first.
pub fn new_serving(
    ca: &Certificate,
    ca_key_pem: &[u8],
    names: &[String],
    now: SystemTime,
) -> Result<Issued, IssueError> {
    let ca_key = inspect::parse_key(ca_key_pem).map_err(IssueError::Ca)?;
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca.der, ca_key).map_err(IssueError::Generate)?;
    let key = rcgen::KeyPair::generate().map_err(IssueError::Generate)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(IssueError::Generate)?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.clone());
    }
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, (now + SERVING_LIFETIME).min(ca.not_after));
    let certificate = params
        .signed_by(&key, &issuer)
        .map_err(IssueError::Generate)?;
    Ok(Issued {
        cert_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Parse a CA we just issued (the decisions work on parsed certificates).
pub fn parse_ca(issued: &Issued) -> Result<Certificate, IssueError> {
    inspect::parse_certificates(issued.cert_pem.as_bytes())
        .map(|mut all| all.remove(0))
        .map_err(IssueError::Ca)
}

/// Lifetimes in whole days, for log lines.
pub fn days(duration: Duration) -> u64 {
    duration.as_secs() / DAY.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::testing::{at, names};

    #[test]
    fn the_ca_is_a_ca_and_the_serving_certificate_chains_to_it() {
        let now = at(0);
        let ca = new_ca(now).unwrap();
        let ca_cert = parse_ca(&ca).unwrap();
        assert!(ca_cert.is_ca);
        assert!(inspect::key_matches(ca.key_pem.as_bytes(), &ca_cert));
        assert_eq!(ca_cert.not_before, now - BACKDATE);
        assert_eq!(ca_cert.not_after, now + CA_LIFETIME);

        let serving = new_serving(&ca_cert, ca.key_pem.as_bytes(), &names(), now).unwrap();
        let leaf = &inspect::parse_certificates(serving.cert_pem.as_bytes()).unwrap()[0];
        assert!(!leaf.is_ca);
        assert_eq!(leaf.dns_names, names().into_iter().collect());
        assert_eq!(leaf.not_after, now + SERVING_LIFETIME);
        assert!(inspect::key_matches(serving.key_pem.as_bytes(), leaf));
        assert!(inspect::accepted_by(
            leaf,
            &ca_cert,
            "logistis.logistis.svc",
            now
        ));
        assert!(!format!("{serving:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn a_serving_certificate_never_outlives_its_ca() {
        let ca = new_ca(at(0)).unwrap();
        let ca_cert = parse_ca(&ca).unwrap();
        let late = ca_cert.not_after - 30 * DAY;
        let serving = new_serving(&ca_cert, ca.key_pem.as_bytes(), &names(), late).unwrap();
        let leaf = &inspect::parse_certificates(serving.cert_pem.as_bytes()).unwrap()[0];
        assert_eq!(leaf.not_after, ca_cert.not_after);
    }

    #[test]
    fn signing_needs_the_ca_key() {
        let ca_cert = parse_ca(&new_ca(at(0)).unwrap()).unwrap();
        let error = new_serving(&ca_cert, b"garbage", &names(), at(0)).unwrap_err();
        assert!(matches!(error, IssueError::Ca(_)), "{error}");
    }

    #[test]
    fn the_lifetimes_keep_the_old_ca_longer_than_its_last_serving_certificate() {
        // At the CA's rotation point a third of its life is left: more than any serving
        // certificate it signed just before can still run.
        assert!(CA_LIFETIME / RENEW_DIVISOR > SERVING_LIFETIME);
        assert_eq!(days(CA_LIFETIME), 1825);
    }
}
