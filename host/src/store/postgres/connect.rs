//! Reaching the database: the URL (libpq's `sslmode` and `sslrootcert` are taken here, the
//! rest goes to tokio-postgres), the password from a file or the environment, TLS through
//! rustls with the ring provider (the same stack as the listeners), and a connection pool.
//!
//! `sslmode` as in libpq: `disable`; `prefer` (default) and `require` encrypt without
//! checking the certificate unless a CA file is given, then the chain is checked;
//! `verify-ca` checks the chain against the CA file; `verify-full` also the host name.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::Arc;
use std::task::{Context, Poll};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use super::super::{Error, PostgresSettings, Result, TlsMode};

/// Split libpq's TLS parameters out of a URL's query: tokio-postgres rejects `sslrootcert`
/// and knows no `verify-*` modes. Returns the rest of the URL, the mode and the CA file.
pub fn split_tls_params(
    url: &str,
) -> std::result::Result<(String, Option<TlsMode>, Option<String>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let mut mode = None;
    let mut root = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = Some(TlsMode::parse(value).ok_or_else(|| {
                    format!(
                        "sslmode={value:?}: expected disable, prefer, require, verify-ca or verify-full"
                    )
                })?);
            }
            "sslrootcert" => root = Some(value.to_owned()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, mode, root))
}

/// The pool, with connections made on demand (the database may be away at start).
pub fn pool(settings: &PostgresSettings) -> Result<Pool> {
    let mut config = tokio_postgres::Config::from_str(&settings.url)
        .map_err(|e| Error::Connect(format!("invalid --store URL: {e}")))?;
    if let Some(password) = &settings.password {
        config.password(password.as_bytes());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(settings.commit_timeout);
    }
    config.application_name("logistis");
    config.ssl_mode(match settings.tls {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    });
    let tls = MakeRustls::new(settings)?;
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.pool_size.max(2))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.commit_timeout))
        .create_timeout(Some(settings.commit_timeout))
        .recycle_timeout(Some(settings.commit_timeout))
        .build()
        .map_err(|e| Error::Connect(format!("cannot build the connection pool: {e}")))
}

/// Makes a rustls connection per database connection.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl MakeRustls {
    fn new(settings: &PostgresSettings) -> Result<MakeRustls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &settings.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::Connect(format!("cannot read the CA file {}: {e}", path.display()))
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        Error::Connect(format!("invalid CA file {}: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        Error::Connect(format!("invalid CA file {}: {e}", path.display()))
                    })?;
                }
                if roots.is_empty() {
                    return Err(Error::Connect(format!(
                        "the CA file {} holds no certificate",
                        path.display()
                    )));
                }
                Some(Arc::new(roots))
            }
            None => None,
        };
        let check_name = settings.tls == TlsMode::VerifyFull;
        let verifier: Arc<dyn ServerCertVerifier> = match roots {
            Some(roots) => {
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots,
                    provider.clone(),
                )
                .build()
                .map_err(|e| Error::Connect(format!("invalid CA file: {e}")))?;
                Arc::new(ChainVerifier { webpki, check_name })
            }
            None if matches!(settings.tls, TlsMode::VerifyCa | TlsMode::VerifyFull) => {
                return Err(Error::Connect(
                    "sslmode=verify-ca and verify-full need the database's CA: give --store-ca-file (or sslrootcert=FILE)".into(),
                ));
            }
            None => Arc::new(Unverified {
                provider: provider.clone(),
            }),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Connect(format!("TLS setup failed: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustls {
            config: Arc::new(config),
        })
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            name: ServerName::try_from(domain.to_owned())?,
        })
    }
}

pub struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

/// A TLS connection to the database.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding is optional (`channel_binding=prefer`): none offered.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `verify-ca` / `verify-full`: the chain must lead to the CA file; the name only for full.
#[derive(Debug)]
struct ChainVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a CA: encrypted, not authenticated (as libpq does).
#[derive(Debug)]
struct Unverified {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (url, mode, root) = split_tls_params(
            "postgres://app@db:5432/logistis?sslmode=verify-full&connect_timeout=3&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://app@db:5432/logistis?connect_timeout=3");
        assert_eq!(mode, Some(TlsMode::VerifyFull));
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        let (url, mode, _) = split_tls_params("postgres://db/x?sslmode=disable").unwrap();
        assert_eq!(
            (url.as_str(), mode),
            ("postgres://db/x", Some(TlsMode::Disable))
        );
        assert!(split_tls_params("postgres://db/x?sslmode=sometimes").is_err());
    }
}
