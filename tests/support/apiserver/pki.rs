//! Certificates for the stand-in: a CA for its own serving certificate (trusted through the
//! kubeconfig's `certificate-authority-data`), the front-proxy CA and its client certificate
//! (`front-proxy-client`, as kubeadm names it) that the aggregation layer presents to
//! Logistis, and [`TestCa`] for tests that need other CAs and client certificates (a
//! certificate from the wrong CA, an API server client certificate for the webhook).

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The name kubeadm gives the aggregation layer's client certificate; the default
/// `requestheader-allowed-names`.
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Identity {
    /// Certificate then key, as `reqwest::Identity::from_pem` reads them.
    pub fn pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// A reqwest identity presenting this certificate.
    pub fn reqwest(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(self.pem().as_bytes()).expect("a generated identity parses")
    }
}

/// A certificate authority that issues client and server certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed CA called `common_name`.
    pub fn new(common_name: &str) -> Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate (extended key usage clientAuth) with this common name and
    /// organizations (how Kubernetes reads groups from a client certificate).
    pub fn client(&self, common_name: &str, organizations: &[&str]) -> Result<Identity> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for organization in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *organization);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(params)
    }

    /// A serving certificate for these DNS names and IP addresses.
    pub fn server(&self, names: &[&str]) -> Result<Identity> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<Identity> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The stand-in's certificates.
#[derive(Debug)]
pub struct Pki {
    /// Signs the stand-in's serving certificate (the cluster CA of the kubeconfig).
    pub cluster_ca: TestCa,
    pub serving: Identity,
    /// `requestheader-client-ca-file`: signs the aggregation layer's client certificate.
    pub front_proxy_ca: TestCa,
    /// What the aggregation layer presents when it proxies to an APIService.
    pub front_proxy_client: Identity,
}

impl Pki {
    pub fn new() -> Result<Pki> {
        let cluster_ca = TestCa::new("kubernetes")?;
        let serving = cluster_ca.server(&["127.0.0.1", "localhost", "kubernetes.default.svc"])?;
        let front_proxy_ca = TestCa::new("front-proxy-ca")?;
        let front_proxy_client = front_proxy_ca.client(FRONT_PROXY_CLIENT, &[])?;
        Ok(Pki {
            cluster_ca,
            serving,
            front_proxy_ca,
            front_proxy_client,
        })
    }

    /// A new front-proxy CA and client certificate (named `client_name`), as when a cluster
    /// rotates its request-header CA.
    pub fn rotate_front_proxy(&mut self, client_name: &str) -> Result<()> {
        self.front_proxy_ca = TestCa::new("front-proxy-ca")?;
        self.front_proxy_client = self.front_proxy_ca.client(client_name, &[])?;
        Ok(())
    }
}
