//! Stream framing (docs/PROTOCOL.md §1): each direction of a connection is one streaming JSON
//! array whose depth-1 elements are the messages.
//!
//! [`Reader`] is an incremental JSON tokenizer / pushdown state machine in the spirit of the
//! `jsonparse` npm module the old package used. It validates the whole JSON grammar, accepts
//! any chunking, and hands out every depth-1 element of the root array as its exact JSON text.
//! [`Writer`] produces the `[\n<msg>\n,\n<msg>` framing the old writers produce.
//!
//! The reader's state machine is in `reader.rs`, the byte-scanning helpers its hot loops use
//! in `scan.rs`, the writer in `writer.rs`.
//!
//! Sans-IO: no runtime, no sockets, no allocation per byte.

use std::fmt;

mod reader;
mod scan;
mod writer;

pub use reader::{Reader, Suspended};
pub use writer::Writer;

/// What the reader saw of a message's structure while framing it, so the message parser
/// need not scan it again (`message::parse_framed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Commas directly inside the message's own array or object.
    pub commas: usize,
    /// Commas directly inside arrays one level below that (an object message's `args`).
    pub inner_commas: usize,
    /// Offset in the message's text of the opening quote of the last string value directly
    /// inside the message's own array or object (an object message's `id`); 0 if none.
    pub last_string: usize,
    /// Whether a string in the message holds an escape (a `\`).
    pub escapes: bool,
    /// Whether a byte of the message is >= 0x80 (text in a string that is not ASCII).
    pub non_ascii: bool,
}

/// The messages of one or more feeds: their texts back to back in one buffer, with where
/// each ends and its [`Shape`]. Reused across feeds, it allocates nothing per message.
#[derive(Debug, Default)]
pub struct Framed {
    text: String,
    ends: Vec<(usize, Shape)>,
}

impl Framed {
    fn push(&mut self, text: &str, shape: Shape) {
        self.text.push_str(text);
        self.ends.push((self.text.len(), shape));
    }

    /// The messages, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Shape)> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(end, shape)| {
            let text = &self.text[start..end];
            start = end;
            (text, shape)
        })
    }

    /// Forgets the messages, keeping the capacity.
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// Default cap on the size of one message (one depth-1 element), in bytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Default cap on the nesting depth of a message's argument array (the array itself is
/// depth 1; `["e", {"a": [1]}]` has depth 3). See [`Reader::with_limits`].
pub const DEFAULT_MAX_DEPTH: usize = 1000;
/// The highest `maxDepth` accepted (larger settings are lowered to it): session values are
/// serde_json values, whose clone, drop and serialisation recurse, and the engine's threads
/// have 8 MiB of stack.
pub const MAX_DEPTH_LIMIT: usize = 2000;

/// Why a stream was rejected. Once a [`Reader`] returns one, it returns the same error forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Syntax error: `found` is the offending byte (as the old reader showed it: one char,
    /// bytes >= 0x80 read as Latin-1), `position` its absolute offset in the stream (counted
    /// from the first byte ever fed), `state` the tokenizer state it arrived in.
    /// Displays as `Unexpected "." at position 0 in state START`.
    Unexpected {
        /// The offending byte, as one character.
        found: String,
        /// Its offset in the stream.
        position: u64,
        /// The tokenizer state it arrived in.
        state: &'static str,
    },
    /// A single message (one depth-1 element) grew beyond the configured max size (in bytes).
    MessageTooLarge {
        /// The maximum message size, in bytes.
        limit: usize,
    },
    /// A root value that is not an array (e.g. `{` or a bare number/string at depth 0).
    RootNotArray {
        /// Offset of the root value's first byte.
        position: u64,
    },
    /// A depth-1 element that is not an array or an object (e.g. `[1,2]`, `[null]`, `["x"]`).
    BadMessage {
        /// Offset of the element's first byte.
        position: u64,
    },
    /// Bytes that are not valid UTF-8 inside the JSON text (position of the first bad byte).
    InvalidUtf8 {
        /// Offset of the first bad byte.
        position: u64,
    },
    /// A message nested deeper than the configured `maxDepth` (position of the opening
    /// bracket one level too deep).
    TooDeep {
        /// The maximum depth.
        limit: usize,
        /// Offset of the bracket one level too deep.
        position: u64,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Unexpected { found, position, state } => {
                f.write_str("Unexpected ")?;
                write_js_quoted(f, found)?;
                write!(f, " at position {position} in state {state}")
            }
            // The other errors also read `Unexpected ...`, so that applications matching the
            // old reader's error texts treat them alike.
            FrameError::MessageTooLarge { limit } => {
                write!(f, "Unexpected message size: a message is larger than {limit} bytes")
            }
            FrameError::RootNotArray { position } => {
                write!(f, "Unexpected root value at position {position}: not an array")
            }
            FrameError::BadMessage { position } => {
                write!(f, "Unexpected message at position {position}: not an array or an object")
            }
            FrameError::InvalidUtf8 { position } => {
                write!(f, "Unexpected invalid UTF-8 at position {position}")
            }
            FrameError::TooDeep { limit, position } => {
                write!(
                    f,
                    "Unexpected nesting at position {position}: a message is nested deeper than maxDepth ({limit})"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Quote like JavaScript's `JSON.stringify` on a string.
fn write_js_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    use fmt::Write;
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// The error for byte `b` arriving at `position` in tokenizer state `state`.
fn unexpected(b: u8, position: u64, state: &'static str) -> FrameError {
    FrameError::Unexpected { found: char::from(b).to_string(), position, state }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shape() {
        let mut r = Reader::new(100);
        let e = r.feed(b".", &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "Unexpected \".\" at position 0 in state START");
        let e = unexpected(b'\n', 3, "COMMA");
        assert_eq!(e.to_string(), "Unexpected \"\\n\" at position 3 in state COMMA");
    }
}
