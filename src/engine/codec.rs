//! tokio-util codec over the sans-IO framing in `protocol::framing`.
//!
//! Decoding yields each message's exact JSON text; encoding takes already-serialized JSON.

use std::collections::VecDeque;
use std::{fmt, io};

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::protocol::framing::{FrameError, Reader, Writer, DEFAULT_MAX_MESSAGE_SIZE};

/// A framing error or an I/O error of the underlying transport.
#[derive(Debug)]
pub enum CodecError {
    Frame(FrameError),
    Io(io::Error),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Frame(e) => e.fmt(f),
            CodecError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CodecError::Frame(e) => Some(e),
            CodecError::Io(e) => Some(e),
        }
    }
}

impl From<io::Error> for CodecError {
    fn from(e: io::Error) -> Self {
        CodecError::Io(e)
    }
}

impl From<FrameError> for CodecError {
    fn from(e: FrameError) -> Self {
        CodecError::Frame(e)
    }
}

/// One connection's framing, both directions.
#[derive(Debug)]
pub struct UhuraCodec {
    reader: Reader,
    writer: Writer,
    ready: VecDeque<String>,
    scratch: Vec<String>,
    /// Error met after the messages in `ready`; reported once they are drained.
    error: Option<FrameError>,
}

impl Default for UhuraCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

impl UhuraCodec {
    pub fn new(max_message_size: usize) -> Self {
        UhuraCodec {
            reader: Reader::new(max_message_size),
            writer: Writer::new(),
            ready: VecDeque::new(),
            scratch: Vec::new(),
            error: None,
        }
    }

    /// Append the clean end of the outgoing stream (`\n]\n`) to `dst`.
    pub fn encode_end(&mut self, dst: &mut BytesMut) {
        dst.extend_from_slice(self.writer.end_bytes().as_bytes());
    }

    /// True when no partial incoming message is buffered.
    pub fn is_idle(&self) -> bool {
        self.ready.is_empty() && self.reader.is_idle()
    }

    fn next(&mut self) -> Result<Option<String>, CodecError> {
        if let Some(m) = self.ready.pop_front() {
            return Ok(Some(m));
        }
        match &self.error {
            Some(e) => Err(CodecError::Frame(e.clone())),
            None => Ok(None),
        }
    }
}

impl Decoder for UhuraCodec {
    type Item = String;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<String>, CodecError> {
        if self.ready.is_empty() && self.error.is_none() && !src.is_empty() {
            let chunk = src.split();
            let res = self.reader.feed(&chunk, &mut self.scratch);
            self.ready.extend(self.scratch.drain(..));
            if let Err(e) = res {
                self.error = Some(e);
            }
        }
        self.next()
    }

    /// At end of stream an open root array is normal (old peers never close it), but a
    /// message cut off in the middle is reported as `UnexpectedEof`.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<String>, CodecError> {
        if let Some(m) = self.decode(src)? {
            return Ok(Some(m));
        }
        if !self.reader.is_idle() {
            return Err(CodecError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a message")));
        }
        Ok(None)
    }
}

impl Encoder<&str> for UhuraCodec {
    type Error = CodecError;

    fn encode(&mut self, msg_json: &str, dst: &mut BytesMut) -> Result<(), CodecError> {
        let sep = self.writer.separator();
        dst.reserve(sep.len() + msg_json.len());
        dst.extend_from_slice(sep.as_bytes());
        dst.extend_from_slice(msg_json.as_bytes());
        Ok(())
    }
}

impl Encoder<String> for UhuraCodec {
    type Error = CodecError;

    fn encode(&mut self, msg_json: String, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(msg_json.as_str(), dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_in_pieces_and_error_after_messages() {
        let mut c = UhuraCodec::default();
        let mut src = BytesMut::from(&b"[\n[\"a\"]\n,\n{\"args\":[\"b\"]}\n,\n[\"c"[..]);
        assert_eq!(c.decode(&mut src).unwrap().as_deref(), Some("[\"a\"]"));
        assert_eq!(c.decode(&mut src).unwrap().as_deref(), Some("{\"args\":[\"b\"]}"));
        assert_eq!(c.decode(&mut src).unwrap(), None);
        assert!(!c.is_idle());
        src.extend_from_slice(b"\"]\n,\n[1] x");
        assert_eq!(c.decode(&mut src).unwrap().as_deref(), Some("[\"c\"]"));
        assert_eq!(c.decode(&mut src).unwrap().as_deref(), Some("[1]"));
        let e = c.decode(&mut src).unwrap_err();
        assert!(e.to_string().starts_with("Unexpected \"x\""), "{e}");
        assert!(c.decode(&mut src).is_err());
    }

    #[test]
    fn eof_inside_message() {
        let mut c = UhuraCodec::default();
        let mut src = BytesMut::from(&b"[[1]\n,\n[2"[..]);
        assert_eq!(c.decode_eof(&mut src).unwrap().as_deref(), Some("[1]"));
        assert!(matches!(c.decode_eof(&mut src), Err(CodecError::Io(_))));
        let mut c = UhuraCodec::default();
        let mut src = BytesMut::from(&b"[[1]\n,\n"[..]);
        assert_eq!(c.decode_eof(&mut src).unwrap().as_deref(), Some("[1]"));
        assert_eq!(c.decode_eof(&mut src).unwrap(), None);
    }

    #[test]
    fn encode() {
        let mut c = UhuraCodec::default();
        let mut dst = BytesMut::new();
        c.encode("[\"a\"]", &mut dst).unwrap();
        c.encode(String::from("[\"b\"]"), &mut dst).unwrap();
        c.encode_end(&mut dst);
        assert_eq!(&dst[..], b"[\n[\"a\"]\n,\n[\"b\"]\n]\n");
    }
}
