//! The one error type of the Rust API.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The event was dropped before it was acknowledged: the send queue
    /// was over `max_queue_length` or `max_queue_bytes`, or a server let its
    /// dropped session go after `resume_window`. (`ERR_UHURA_DROPPED`)
    Dropped,
    /// No acknowledgement within `ack_timeout`. The event itself stays
    /// queued and may still be delivered. (`ERR_UHURA_ACK_TIMEOUT`)
    AckTimeout,
    /// The connection or client is gone for good (dropped by the
    /// application, or a server-side connection past its resume window).
    /// (`ERR_UHURA_CLOSED`)
    Closed,
    /// A connection attempt failed (`code()` has the OS code, such as
    /// `ECONNREFUSED`), or closed before its handshake completed.
    Connect,
    /// The server could not listen (`code()`: `EADDRINUSE`, `EACCES`, ...).
    Listen,
    /// An argument could not be used: arguments that do not serialize to
    /// JSON, a malformed address, a `set` that would make the session
    /// larger than `max_session_bytes`.
    InvalidInput,
    /// The runtime could not start.
    Runtime,
    /// `Server::send_to`: no connection of the server holds that session.
    /// (`ERR_UHURA_NO_SESSION`)
    NoSession,
}

/// An error of the Rust API: a kind, a message, and the code the Node
/// binding would give the same failure (`err.code`), where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    code: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let code = match kind {
            ErrorKind::Dropped => Some("ERR_UHURA_DROPPED"),
            ErrorKind::AckTimeout => Some("ERR_UHURA_ACK_TIMEOUT"),
            ErrorKind::Closed => Some("ERR_UHURA_CLOSED"),
            ErrorKind::NoSession => Some("ERR_UHURA_NO_SESSION"),
            _ => None,
        };
        Error { kind, message: message.into(), code: code.map(str::to_owned) }
    }

    pub(crate) fn with_code(mut self, code: Option<String>) -> Self {
        if code.is_some() {
            self.code = code;
        }
        self
    }

    pub(crate) fn closed() -> Self {
        Error::new(ErrorKind::Closed, "uhura: the connection is closed")
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, as the Node binding words it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Node's `err.code` for the same failure: `ERR_UHURA_DROPPED`,
    /// `ERR_UHURA_ACK_TIMEOUT`, `ERR_UHURA_CLOSED`, or an OS code such as
    /// `ECONNREFUSED` or `EADDRINUSE`.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} ({code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}
