//! Where to connect or listen: [`Addr`] and the conversions into it.

use super::error::{Error, ErrorKind};
use crate::engine::Endpoint;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// A TCP address (a host name or IP and a port) or a Unix socket path.
///
/// Anything that implements [`IntoAddr`] can be given instead:
/// `"127.0.0.1:5555"`, `"[::1]:5555"`, `"localhost:5555"`, a
/// [`SocketAddr`], `("host", port)`, or a [`Path`] / [`PathBuf`] for a Unix
/// socket.
///
/// ```
/// use uhura::{Addr, IntoAddr};
/// assert_eq!("127.0.0.1:5555".into_addr().unwrap(), Addr::tcp("127.0.0.1", 5555));
/// assert_eq!("[::1]:80".into_addr().unwrap(), Addr::tcp("::1", 80));
/// assert_eq!(std::path::Path::new("/tmp/u.sock").into_addr().unwrap(), Addr::unix("/tmp/u.sock"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    /// A host name or IP address and a port (`0` when listening: any free port).
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A Unix domain socket. On Unix only: elsewhere binding or connecting
    /// to one fails with `ErrorKind::Unsupported`.
    Unix(PathBuf),
}

impl Addr {
    /// A TCP address.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Addr::Tcp { host: host.into(), port }
    }

    /// A Unix socket path.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Addr::Unix(path.into())
    }

    /// The socket address, when this is TCP with an IP address (not a name).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Addr::Tcp { host, port } => host.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, *port)),
            Addr::Unix(_) => None,
        }
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        match self {
            Addr::Tcp { host, port } => {
                Endpoint::Tcp { host: Some(host.clone()).filter(|h| !h.is_empty()), port: *port }
            }
            Addr::Unix(path) => Endpoint::Unix { path: path.clone() },
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Addr::Tcp { host, port } => write!(f, "{host}:{port}"),
            Addr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Conversion into an [`Addr`], for [`Client::connect`](crate::Client::connect)
/// and [`Server::bind`](crate::Server::bind). Strings are parsed as
/// `host:port` (`[v6]:port` for IPv6) and fail with
/// [`ErrorKind::InvalidInput`]; paths are Unix sockets.
pub trait IntoAddr {
    /// Converts, or says why the address is malformed.
    fn into_addr(self) -> Result<Addr, Error>;
}

impl IntoAddr for Addr {
    fn into_addr(self) -> Result<Addr, Error> {
        Ok(self)
    }
}

impl IntoAddr for &Addr {
    fn into_addr(self) -> Result<Addr, Error> {
        Ok(self.clone())
    }
}

impl IntoAddr for &str {
    fn into_addr(self) -> Result<Addr, Error> {
        let bad = || Error::new(ErrorKind::InvalidInput, format!("uhura: {self:?} is not a host:port address"));
        let (host, port) = self.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        Ok(Addr::tcp(host, port))
    }
}

impl IntoAddr for String {
    fn into_addr(self) -> Result<Addr, Error> {
        self.as_str().into_addr()
    }
}

impl IntoAddr for &String {
    fn into_addr(self) -> Result<Addr, Error> {
        self.as_str().into_addr()
    }
}

impl IntoAddr for SocketAddr {
    fn into_addr(self) -> Result<Addr, Error> {
        Ok(Addr::tcp(self.ip().to_string(), self.port()))
    }
}

impl IntoAddr for (&str, u16) {
    fn into_addr(self) -> Result<Addr, Error> {
        Ok(Addr::tcp(self.0, self.1))
    }
}

impl IntoAddr for (IpAddr, u16) {
    fn into_addr(self) -> Result<Addr, Error> {
        SocketAddr::from(self).into_addr()
    }
}

impl IntoAddr for &Path {
    fn into_addr(self) -> Result<Addr, Error> {
        Ok(Addr::unix(self))
    }
}

impl IntoAddr for PathBuf {
    fn into_addr(self) -> Result<Addr, Error> {
        Ok(Addr::Unix(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_parse_as_host_and_port() {
        assert_eq!("localhost:1".into_addr().unwrap(), Addr::tcp("localhost", 1));
        assert_eq!("[::1]:2".into_addr().unwrap().socket_addr(), Some("[::1]:2".parse().unwrap()));
        for bad in ["nohost", "h:99999", "::1:5", "[::1:5", "h:"] {
            assert_eq!(bad.into_addr().unwrap_err().kind(), ErrorKind::InvalidInput, "{bad}");
        }
        assert_eq!(Addr::tcp("::1", 3).to_string(), "[::1]:3");
    }
}
