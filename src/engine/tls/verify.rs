//! The certificate verifiers: webpki plus certificates pinned in `ca` (what OpenSSL takes and
//! webpki alone refuses), and the accept-anything ones of `rejectUnauthorized: false`.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use std::sync::Arc;

/// webpki refused `end_entity` only because it is a CA certificate, and it is
/// one of the certificates the user trusts by name in `ca`.
fn pinned_ca_leaf(e: &rustls::Error, end_entity: &CertificateDer<'_>, pinned: &[CertificateDer<'static>]) -> bool {
    let ca_as_leaf = match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            matches!(inner.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity))
        }
        _ => false,
    };
    ca_as_leaf && pinned.iter().any(|c| c.as_ref() == end_entity.as_ref())
}

/// The handshake-signature checks every verifier here shares, done by the
/// wrapped webpki verifier or straight with the crypto provider.
macro_rules! signature_checks {
    (webpki) => {
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
    };
    (provider) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    };
}

/// The default client verification: webpki, plus certificates pinned in `ca`.
#[derive(Debug)]
pub(super) struct PinnedOrWebPkiServer {
    pub(super) webpki: Arc<WebPkiServerVerifier>,
    pub(super) pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrWebPkiServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(e) if pinned_ca_leaf(&e, end_entity, &self.pinned) => {
                // Trusted as it is; the name must still match.
                rustls::client::verify_server_name(&rustls::server::ParsedCertificate::try_from(end_entity)?, name)?;
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }

    signature_checks!(webpki);
}

/// `requestCert` + `rejectUnauthorized` on a server: webpki, plus
/// certificates pinned in `ca`.
#[derive(Debug)]
pub(super) struct PinnedOrWebPkiClient {
    pub(super) webpki: Arc<dyn ClientCertVerifier>,
    pub(super) pinned: Vec<CertificateDer<'static>>,
}

impl ClientCertVerifier for PinnedOrWebPkiClient {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.webpki.verify_client_cert(end_entity, intermediates, now) {
            Err(e) if pinned_ca_leaf(&e, end_entity, &self.pinned) => Ok(ClientCertVerified::assertion()),
            r => r,
        }
    }

    signature_checks!(webpki);
}

/// `rejectUnauthorized: false` on a client: any server certificate goes.
#[derive(Debug)]
pub(super) struct AcceptAnyServerCert {
    pub(super) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!(provider);
}

/// `requestCert: true, rejectUnauthorized: false` on a server: a client
/// certificate is asked for, and any one, or none, goes.
#[derive(Debug)]
pub(super) struct AcceptAnyClientCert {
    pub(super) provider: Arc<CryptoProvider>,
    pub(super) hints: Vec<DistinguishedName>,
}

impl ClientCertVerifier for AcceptAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    signature_checks!(provider);
}
