//! TLS for both listeners: certificates from files, reloaded when the files change (as
//! cert-manager and Secret mounts rotate them), a self-signed CA and server certificate
//! generated once into the data dir for local use, or a certificate handed over in memory by
//! [`crate::certs`] (`--manage-certs`), so its private key never touches the disk.
//!
//! Reload polls the files' contents rather than relying on inotify: a Secret mount swaps a
//! `..data` symlink, which inotify watchers on the file path routinely miss.
//!
//! Client certificates: a listener may *ask* for one without requiring it
//! ([`server_config_requesting_client_certs`]). The handshake then only proves the client
//! holds the certificate's key; whether the chain is trusted is decided per request against
//! a [`ClientCa`] that can change at runtime (the API server's request-header CA rotates), so
//! a refusal is an HTTP 401/403 with a message rather than a failed handshake — as
//! kube-apiserver's own listeners do (`tls.RequestClientCert`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::UnixTime;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// How often certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key")]
    BadKey {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the private key in {path} is not supported")]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot generate the self-signed certificate")]
    Generate(#[source] rcgen::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// Why a PEM certificate and private key cannot be served (wherever they came from).
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("no PEM certificate")]
    NoCertificate,
    #[error("no usable PEM private key")]
    BadKey(#[source] rustls_pki_types::pem::Error),
    #[error("the private key is not supported")]
    UnsupportedKey(#[source] rustls::Error),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Serves the current certificate to every handshake; swapped atomically on reload.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
    /// `None` for a certificate set in memory ([`CertResolver::from_pem`]).
    paths: Option<CertPaths>,
    digest: std::sync::Mutex<[u8; 32]>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// A servable certificate chain and signing key from PEM.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, PemError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(PemError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(PemError::BadKey)?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(PemError::UnsupportedKey)?;
    Ok(CertifiedKey::new(chain, signing_key))
}

fn certified_key(
    paths: &CertPaths,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, Error> {
    certified_key_from_pem(cert_pem, key_pem).map_err(|error| match error {
        PemError::NoCertificate => Error::NoCertificate {
            path: paths.cert.clone(),
        },
        PemError::BadKey(source) => Error::BadKey {
            path: paths.key.clone(),
            source,
        },
        PemError::UnsupportedKey(source) => Error::UnsupportedKey {
            path: paths.key.clone(),
            source,
        },
    })
}

fn digest(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(cert_pem);
    hasher.update(key_pem);
    hasher.finalize().into()
}

impl CertResolver {
    /// Load the certificate and key; fails if either is unusable.
    pub fn load(paths: CertPaths) -> Result<Arc<CertResolver>, Error> {
        let cert_pem = read(&paths.cert)?;
        let key_pem = read(&paths.key)?;
        let key = certified_key(&paths, &cert_pem, &key_pem)?;
        Ok(Arc::new(CertResolver {
            current: ArcSwap::from_pointee(key),
            digest: std::sync::Mutex::new(digest(&cert_pem, &key_pem)),
            paths: Some(paths),
        }))
    }

    /// Serve a certificate held in memory; replace it later with [`CertResolver::set_pem`].
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertResolver>, PemError> {
        let key = certified_key_from_pem(cert_pem, key_pem)?;
        Ok(Arc::new(CertResolver {
            current: ArcSwap::from_pointee(key),
            digest: std::sync::Mutex::new(digest(cert_pem, key_pem)),
            paths: None,
        }))
    }

    /// Swap in a new in-memory certificate if it differs from the one served; the next
    /// handshake uses it. Returns whether it changed.
    pub fn set_pem(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, PemError> {
        let new_digest = digest(cert_pem, key_pem);
        let mut current = self.digest.lock().unwrap_or_else(|e| e.into_inner());
        if *current == new_digest {
            return Ok(false);
        }
        let key = certified_key_from_pem(cert_pem, key_pem)?;
        self.current.store(Arc::new(key));
        *current = new_digest;
        Ok(true)
    }

    /// Re-read the files; swap in the new certificate if they changed and are valid.
    /// Returns whether a new certificate is now served (never, for one set in memory).
    pub fn reload(&self) -> Result<bool, Error> {
        let Some(paths) = &self.paths else {
            return Ok(false);
        };
        let cert_pem = read(&paths.cert)?;
        let key_pem = read(&paths.key)?;
        let new_digest = digest(&cert_pem, &key_pem);
        let mut current = self.digest.lock().unwrap_or_else(|e| e.into_inner());
        if *current == new_digest {
            return Ok(false);
        }
        let key = certified_key(paths, &cert_pem, &key_pem)?;
        self.current.store(Arc::new(key));
        *current = new_digest;
        Ok(true)
    }

    /// Poll the files until `shutdown`; a broken new pair is logged and the old one kept.
    /// Nothing to poll for a certificate set in memory.
    pub fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(paths) = self.paths.clone() else {
            return;
        };
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(RELOAD_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let resolver = self.clone();
                match tokio::task::spawn_blocking(move || resolver.reload()).await {
                    Ok(Ok(true)) => {
                        tracing::info!(cert = %paths.cert.display(), "TLS certificate reloaded")
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => tracing::warn!(
                        error = %crate::telemetry::chain(&error),
                        "TLS certificate files changed but cannot be used: still serving the previous certificate"
                    ),
                    Err(_) => {}
                }
            }
        });
    }
}

/// A rustls server configuration (ring provider, HTTP/2 and HTTP/1.1) around `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// As [`server_config`], asking every client for a certificate without requiring one.
pub fn server_config_requesting_client_certs(
    resolver: Arc<CertResolver>,
) -> Result<Arc<ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(RequestClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any client certificate chain at the TLS layer (the chain is judged per request by
/// a [`ClientCa`]) but still checks the handshake signature: a client cannot present a
/// certificate whose key it does not hold. No CA hints are sent: Go clients then present
/// their certificate whatever CA the server trusts at the moment.
#[derive(Debug)]
struct RequestClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The client certificate chain a connection presented (end entity first): put in every
/// request's extensions by [`crate::http::serve`].
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// Why a client certificate is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ClientCertError {
    #[error("no client certificate was presented")]
    Missing,
    #[error("the client certificate is not signed by the trusted CA")]
    Untrusted(#[source] rustls::Error),
    #[error("the client certificate has no common name")]
    NoCommonName,
    #[error("the client certificate's common name {name:?} is not among the allowed names")]
    NameNotAllowed { name: String },
}

/// A CA that client certificates must chain to.
#[derive(Debug, Clone)]
pub struct ClientCa {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientCa {
    /// Every certificate in `pem` is a trusted root.
    pub fn from_pem(pem: &[u8]) -> Result<ClientCa, PemError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(PemError::BadKey)?;
            roots.add(cert).map_err(PemError::UnsupportedKey)?;
        }
        if roots.is_empty() {
            return Err(PemError::NoCertificate);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|error| PemError::UnsupportedKey(rustls::Error::General(error.to_string())))?;
        Ok(ClientCa { verifier })
    }

    /// The common name of the presented certificate if it chains to this CA (for client
    /// authentication) and, when `allowed_names` is not empty, is one of them.
    pub fn verify(
        &self,
        peer: Option<&PeerCertificates>,
        allowed_names: &[String],
    ) -> Result<String, ClientCertError> {
        let chain = peer.map(|p| p.0.as_slice()).unwrap_or_default();
        let (end_entity, intermediates) = chain.split_first().ok_or(ClientCertError::Missing)?;
        self.verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map_err(ClientCertError::Untrusted)?;
        let name = common_name(end_entity).ok_or(ClientCertError::NoCommonName)?;
        if !allowed_names.is_empty() && !allowed_names.contains(&name) {
            return Err(ClientCertError::NameNotAllowed { name });
        }
        Ok(name)
    }
}

/// The subject's common name.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// The files of a self-signed setup in `data_dir/tls/`.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    pub ca_cert: PathBuf,
    pub paths: CertPaths,
}

/// Create (once) a CA and a server certificate for localhost in `data_dir/tls/`; later starts
/// reuse them so clients keep trusting the same CA.
pub fn ensure_self_signed(data_dir: &Path) -> Result<SelfSigned, Error> {
    let dir = data_dir.join("tls");
    let files = SelfSigned {
        ca_cert: dir.join("ca.crt"),
        paths: CertPaths {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        },
    };
    if files.ca_cert.exists() && files.paths.cert.exists() && files.paths.key.exists() {
        return Ok(files);
    }
    let write = |path: &Path, contents: &str| {
        std::fs::write(path, contents).map_err(|source| Error::Write {
            path: path.to_owned(),
            source,
        })
    };
    std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
        path: dir.clone(),
        source,
    })?;

    let ca_key = rcgen::KeyPair::generate().map_err(Error::Generate)?;
    let mut ca_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(Error::Generate)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Logistis local CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(Error::Generate)?;

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(["logistis", "logistis.logistis", "logistis.logistis.svc"].map(str::to_owned));
    let server_key = rcgen::KeyPair::generate().map_err(Error::Generate)?;
    let mut params = rcgen::CertificateParams::new(names).map_err(Error::Generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "logistis");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server = params
        .signed_by(&server_key, &ca)
        .map_err(Error::Generate)?;

    write(&files.ca_cert, &ca.pem())?;
    write(&files.paths.cert, &server.pem())?;
    write(&files.paths.key, &server_key.serialize_pem())?;
    restrict_permissions(&files.paths.key);
    Ok(files)
}

/// Private keys are readable by their owner only.
pub fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_created_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_self_signed(dir.path()).unwrap();
        let cert = std::fs::read(&first.paths.cert).unwrap();
        let second = ensure_self_signed(dir.path()).unwrap();
        assert_eq!(cert, std::fs::read(&second.paths.cert).unwrap());
        let resolver = CertResolver::load(first.paths.clone()).unwrap();
        assert!(
            !resolver.reload().unwrap(),
            "unchanged files are not reloaded"
        );
        server_config(resolver).unwrap();
    }

    #[test]
    fn an_in_memory_certificate_is_swapped_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let read = |files: &SelfSigned| {
            (
                std::fs::read(&files.paths.cert).unwrap(),
                std::fs::read(&files.paths.key).unwrap(),
            )
        };
        let (cert, key) = read(&ensure_self_signed(dir.path()).unwrap());
        let resolver = CertResolver::from_pem(&cert, &key).unwrap();
        let before = resolver.current.load_full();
        assert!(!resolver.set_pem(&cert, &key).unwrap());
        assert!(!resolver.reload().unwrap(), "no files to reload");
        assert!(matches!(
            resolver.set_pem(b"garbage", &key),
            Err(PemError::NoCertificate)
        ));
        assert!(Arc::ptr_eq(&before, &resolver.current.load_full()));
        let (cert, key) = read(&ensure_self_signed(&dir.path().join("other")).unwrap());
        assert!(resolver.set_pem(&cert, &key).unwrap());
        assert!(!Arc::ptr_eq(&before, &resolver.current.load_full()));
    }

    #[test]
    fn reload_keeps_the_old_certificate_when_the_new_one_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let files = ensure_self_signed(dir.path()).unwrap();
        let resolver = CertResolver::load(files.paths.clone()).unwrap();
        let before = resolver.current.load_full();
        std::fs::write(&files.paths.cert, "not a certificate").unwrap();
        assert!(matches!(
            resolver.reload(),
            Err(Error::NoCertificate { .. })
        ));
        assert!(Arc::ptr_eq(&before, &resolver.current.load_full()));
        // A new valid pair (from another self-signed setup) is picked up.
        let other = ensure_self_signed(&dir.path().join("other")).unwrap();
        std::fs::copy(&other.paths.cert, &files.paths.cert).unwrap();
        std::fs::copy(&other.paths.key, &files.paths.key).unwrap();
        assert!(resolver.reload().unwrap());
        assert!(!Arc::ptr_eq(&before, &resolver.current.load_full()));
    }
}
