//! Native TLS over any byte stream, with rustls (ring provider) and Node's
//! option names and defaults:
//!
//! * a client verifies the server against `ca` (or the Mozilla roots of
//!   `webpki-roots` when `ca` is empty) and the host name it connected to, or
//!   `servername`; an IP address is checked against the certificate's IP
//!   SANs. With `reject_unauthorized == false` any certificate is taken (the
//!   handshake signatures are still checked, so the peer does hold the key).
//! * a server with `request_cert` asks for a client certificate; with
//!   `reject_unauthorized` too it requires one that chains to `ca`, without
//!   it any certificate, or none, is taken.
//!
//! Handshake failures come back as `io::Error`s whose text is rustls's reason
//! ("invalid peer certificate: UnknownIssuer", "received fatal alert: …").
//! A certificate listed in `ca` itself is taken as the peer's certificate
//! even when it is marked as a CA (what a bare `openssl req -x509` makes), as
//! OpenSSL does; webpki alone refuses such a leaf (`CaUsedAsEndEntity`).
//!
//! A peer that closes its socket without a TLS `close_notify` ends the stream
//! like a plain EOF, as in Node, rather than raising an error.
//!
//! A socket under TLS must never be written directly: those bytes would
//! bypass the encryption. So securing a socket takes its direct-write
//! handle away (`accept` and `connect` clear `direct`), here and nowhere else.
//!
//! A leaf: generic over the stream, it knows nothing of the transports or
//! links that use it.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// TLS settings with Node's names (`key`, `cert`, `ca`, `requestCert`,
/// `rejectUnauthorized`, `servername`), for either side.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: Option<Vec<u8>>,
    /// PEM certificate chain, leaf first.
    pub cert: Option<Vec<u8>>,
    /// PEM bundles of trusted CAs; empty means the default roots (clients).
    pub ca: Vec<Vec<u8>>,
    /// Server: ask clients for a certificate.
    pub request_cert: bool,
    /// Client: verify the server. Server with `request_cert`: require a
    /// valid client certificate.
    pub reject_unauthorized: bool,
    /// Client: the name to send (SNI) and verify; default the host.
    pub servername: Option<String>,
}

/// Server side: wraps accepted streams.
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
}

impl TlsAcceptor {
    /// A server-side configuration; fails on unreadable keys or certificates.
    pub fn new(o: &TlsOptions) -> Result<Self, String> {
        let provider = provider();
        let (Some(key), Some(cert)) = (&o.key, &o.cert) else {
            return Err("a TLS server needs both `key` and `cert`".into());
        };
        let chain = parse_certs(cert, "cert")?;
        let key = parse_key(key)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if !o.request_cert {
            builder.with_no_client_auth()
        } else if o.reject_unauthorized {
            let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&o.ca)?), provider.clone())
                .build()
                .map_err(|e| format!("bad `ca` for client verification: {e}"))?;
            builder.with_client_cert_verifier(Arc::new(PinnedOrWebPkiClient { webpki, pinned: ca_certs(&o.ca)? }))
        } else {
            // Ask, with the CA names as hints, but take whatever comes.
            let hints = if o.ca.is_empty() { Vec::new() } else { roots(&o.ca)?.subjects() };
            builder.with_client_cert_verifier(Arc::new(AcceptAnyClientCert { provider: provider.clone(), hints }))
        };
        let config = builder.with_single_cert(chain, key).map_err(key_cert_error)?;
        Ok(TlsAcceptor { inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)) })
    }

    /// The server handshake over an accepted `stream`. `direct`, the
    /// socket's handle for writing to it directly, is cleared at once: from
    /// now on every byte goes through TLS.
    pub fn accept<S, D>(&self, stream: S, direct: &mut Option<D>) -> impl Future<Output = io::Result<TlsStream<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        *direct = None;
        let handshake = self.inner.accept(stream);
        async move {
            let tls = handshake.await.map_err(handshake_error)?;
            Ok(TlsStream(tls.into()))
        }
    }
}

/// Client side: wraps connected streams.
pub struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    servername: Option<String>,
    verify: bool,
}

impl TlsConnector {
    /// A client-side configuration (`ca`, else the web PKI roots); fails on
    /// unreadable certificates.
    pub fn new(o: &TlsOptions) -> Result<Self, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if o.reject_unauthorized {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(&o.ca)?), provider.clone())
                .build()
                .map_err(|e| format!("bad `ca`: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedOrWebPkiServer { webpki, pinned: ca_certs(&o.ca)? }))
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { provider: provider.clone() }))
        };
        let config = match (&o.key, &o.cert) {
            (Some(key), Some(cert)) => {
                let chain = parse_certs(cert, "cert")?;
                builder.with_client_auth_cert(chain, parse_key(key)?).map_err(key_cert_error)?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err("`key` given without `cert`".into()),
            (None, Some(_)) => return Err("`cert` given without `key`".into()),
        };
        let servername = o.servername.clone().filter(|s| !s.is_empty());
        if let Some(name) = &servername {
            server_name(name).map_err(|e| e.to_string())?;
        }
        Ok(TlsConnector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
            servername,
            verify: o.reject_unauthorized,
        })
    }

    /// The client handshake over `stream`; `host` is what was connected
    /// to. `direct`, the socket's handle for writing to it directly, is
    /// cleared at once: from now on every byte goes through TLS.
    pub fn connect<S, D>(
        &self,
        host: &str,
        stream: S,
        direct: &mut Option<D>,
    ) -> impl Future<Output = io::Result<TlsStream<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        *direct = None;
        let name = match server_name(self.servername.as_deref().unwrap_or(host)) {
            Ok(name) => Ok(name),
            // Nothing is verified, so a name rustls cannot use (say `my_host`)
            // only means no SNI is sent.
            Err(_) if !self.verify => Ok(ServerName::IpAddress(IpAddr::from([0, 0, 0, 0]).into())),
            Err(e) => Err(e),
        };
        let handshake = name.map(|name| self.inner.connect(name, stream));
        async move {
            let tls = handshake?.await.map_err(handshake_error)?;
            Ok(TlsStream(tls.into()))
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An IP address (bare or in brackets) or a DNS name.
fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_owned())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid TLS server name {host:?}")))
}

/// Handshake errors keep rustls's text; their kind is `InvalidData` (a TLS
/// failure) unless the socket itself failed.
fn handshake_error(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            io::Error::new(io::ErrorKind::ConnectionReset, "socket closed before the TLS handshake finished")
        }
        _ => e,
    }
}

fn key_cert_error(e: rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "`key` does not match the (first) certificate in `cert`".into()
        }
        e => format!("bad `key` / `cert`: {e}"),
    }
}

fn parse_certs(pem_text: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in `{what}`: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in `{what}` (expected PEM: -----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

fn parse_key(pem_text: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    match PrivateKeyDer::from_pem_slice(pem_text) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) if contains(pem_text, b"ENCRYPTED") => {
            Err("encrypted private keys (`passphrase`) are not supported in `key`".into())
        }
        Err(pem::Error::NoItemsFound) => {
            Err("no private key found in `key` (expected PEM: PKCS#8, PKCS#1 RSA or SEC1 EC)".into())
        }
        Err(e) => Err(format!("bad PEM in `key`: {e}")),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every certificate of the `ca` bundles.
fn ca_certs(ca: &[Vec<u8>]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for bundle in ca {
        certs.extend(parse_certs(bundle, "ca")?);
    }
    Ok(certs)
}

/// `ca` bundles, or the default (Mozilla) roots when there are none.
fn roots(ca: &[Vec<u8>]) -> Result<RootCertStore, String> {
    if ca.is_empty() {
        return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
    }
    let mut store = RootCertStore::empty();
    for cert in ca_certs(ca)? {
        store.add(cert).map_err(|e| format!("bad certificate in `ca`: {e}"))?;
    }
    Ok(store)
}

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

/// The default client verification: webpki, plus certificates pinned in `ca`.
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

#[derive(Debug)]
struct PinnedOrWebPkiServer {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
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
struct PinnedOrWebPkiClient {
    webpki: Arc<dyn ClientCertVerifier>,
    pinned: Vec<CertificateDer<'static>>,
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
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
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
struct AcceptAnyClientCert {
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
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

/// A TLS stream (either side) whose reader treats a close without
/// `close_notify` as the end of the stream, as Node does (old peers often
/// just destroy their sockets).
pub struct TlsStream<S>(tokio_rustls::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            r => r,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
