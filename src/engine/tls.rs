//! Native TLS (rustls). Placeholder until the real implementation lands.

use super::transport::BoxStream;
use std::io;

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub key: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub ca: Vec<Vec<u8>>,
    pub request_cert: bool,
    pub reject_unauthorized: bool,
    pub servername: Option<String>,
}

pub struct TlsAcceptor;
pub struct TlsConnector;

impl TlsAcceptor {
    pub fn new(_o: &TlsOptions) -> Result<Self, String> {
        Err("native TLS is not built yet".into())
    }
    pub async fn accept(&self, _s: BoxStream) -> io::Result<BoxStream> {
        Err(io::Error::other("native TLS is not built yet"))
    }
}

impl TlsConnector {
    pub fn new(_o: &TlsOptions) -> Result<Self, String> {
        Err("native TLS is not built yet".into())
    }
    pub async fn connect(&self, _host: &str, _s: BoxStream) -> io::Result<BoxStream> {
        Err(io::Error::other("native TLS is not built yet"))
    }
}
