//! Reading the PEM of `key`, `cert` and `ca`, with errors that name the option.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

pub(super) fn parse_certs(pem_text: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in `{what}`: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in `{what}` (expected PEM: -----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

pub(super) fn parse_key(pem_text: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
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
pub(super) fn ca_certs(ca: &[Vec<u8>]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for bundle in ca {
        certs.extend(parse_certs(bundle, "ca")?);
    }
    Ok(certs)
}

/// `ca` bundles, or the default (Mozilla) roots when there are none.
pub(super) fn roots(ca: &[Vec<u8>]) -> Result<RootCertStore, String> {
    if ca.is_empty() {
        return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
    }
    let mut store = RootCertStore::empty();
    for cert in ca_certs(ca)? {
        store.add(cert).map_err(|e| format!("bad certificate in `ca`: {e}"))?;
    }
    Ok(store)
}
