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
//! `pem.rs` reads keys, certificates and `ca` bundles; `verify.rs` holds the certificate
//! verifiers behind `ca` pinning and `rejectUnauthorized: false`; `stream.rs` the stream
//! type the handshakes give.
//!
//! A leaf: generic over the stream, it knows nothing of the transports or
//! links that use it.

mod pem;
mod stream;
mod verify;

pub use stream::TlsStream;

use pem::{ca_certs, parse_certs, parse_key, roots};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use verify::{AcceptAnyClientCert, AcceptAnyServerCert, PinnedOrWebPkiClient, PinnedOrWebPkiServer};

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
