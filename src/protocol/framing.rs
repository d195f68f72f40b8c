//! Stream framing (docs/PROTOCOL.md §1): each direction of a connection is one streaming JSON
//! array whose depth-1 elements are the messages.
//!
//! [`Reader`] is an incremental JSON tokenizer / pushdown state machine in the spirit of the
//! `jsonparse` npm module the old package used. It validates the whole JSON grammar, accepts
//! any chunking, and hands out every depth-1 element of the root array as its exact JSON text.
//! [`Writer`] produces the `[\n<msg>\n,\n<msg>` framing the old writers produce.
//!
//! Sans-IO: no runtime, no sockets, no allocation per byte.

use std::fmt;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Depth 0: before a root array (or after one closed). Expects `[`.
    Root,
    /// Just after `[`: a value or `]`.
    ValueOrEnd,
    /// After `,` in an array or `:` in an object: a value.
    Value,
    /// Just after `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the matching close.
    CommaOrEnd,
    /// Inside a string (`string_is_key` says whether it is an object key).
    Str,
    /// After a backslash in a string.
    StrEscape,
    /// Inside `\uXXXX` (`hex_left` digits to go).
    StrUnicode,
    /// Inside `true` / `false` / `null` (`lit`, `lit_pos`).
    Literal,
    /// After `-`.
    NumMinus,
    /// After a leading `0`.
    NumZero,
    /// In the integer digits.
    NumInt,
    /// After `.`.
    NumDot,
    /// In the fraction digits.
    NumFrac,
    /// After `e` / `E`.
    NumExp,
    /// After the exponent sign.
    NumExpSign,
    /// In the exponent digits.
    NumExpDigits,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Root => "START",
            State::ValueOrEnd | State::Value => "VALUE",
            State::KeyOrEnd | State::Key => "KEY",
            State::Colon => "COLON",
            State::CommaOrEnd => "COMMA",
            State::Str => "STRING1",
            State::StrEscape => "STRING2",
            State::StrUnicode => "STRING3",
            State::Literal => "LITERAL",
            State::NumMinus => "NUMBER1",
            State::NumZero => "NUMBER2",
            State::NumInt => "NUMBER3",
            State::NumDot => "NUMBER4",
            State::NumFrac => "NUMBER5",
            State::NumExp => "NUMBER6",
            State::NumExpSign => "NUMBER7",
            State::NumExpDigits => "NUMBER8",
        }
    }
}

/// First byte of a JSON scalar (string, number, literal).
#[inline]
fn is_scalar_start(b: u8) -> bool {
    matches!(b, b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
}

fn unexpected(b: u8, position: u64, state: &'static str) -> FrameError {
    FrameError::Unexpected { found: char::from(b).to_string(), position, state }
}

fn literal_state_name(lit: &[u8], pos: u8) -> &'static str {
    const TRUE: [&str; 3] = ["TRUE1", "TRUE2", "TRUE3"];
    const FALSE: [&str; 4] = ["FALSE1", "FALSE2", "FALSE3", "FALSE4"];
    const NULL: [&str; 3] = ["NULL1", "NULL2", "NULL3"];
    let idx = usize::from(pos).saturating_sub(1);
    let table: &[&'static str] = match lit.first() {
        Some(b't') => &TRUE,
        Some(b'f') => &FALSE,
        _ => &NULL,
    };
    table.get(idx).copied().unwrap_or("LITERAL")
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte in `s` that ends a run of plain string content: `"`, `\` or a
/// control character (< 0x20); `s.len()` if there is none. Eight bytes at a time.
#[inline]
fn scan_string(s: &[u8]) -> usize {
    let mut i = 0;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let q = x ^ (LO * u64::from(b'"'));
        let bs = x ^ (LO * u64::from(b'\\'));
        // Lowest set bit of each term marks that term's first hit exactly (borrows only
        // propagate upward), so the lowest bit of the union is the first special byte.
        let m = (q.wrapping_sub(LO) & !q) | (bs.wrapping_sub(LO) & !bs) | (x.wrapping_sub(LO * 0x20) & !x);
        let m = m & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    for &b in words.remainder() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

/// `s` starts with `p` (a short literal; avoids a `memcmp` call).
#[inline]
fn has_prefix(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s.iter().zip(p).all(|(a, b)| a == b)
}

/// Length of the run of ASCII digits at the start of `s`.
#[inline]
fn scan_digits(s: &[u8]) -> usize {
    s.iter().position(|b| !b.is_ascii_digit()).unwrap_or(s.len())
}

/// Append `data` to `buf`, growing the allocation geometrically but never past `cap` bytes
/// (unless the data itself needs more, which the caller rules out).
fn append_bounded(buf: &mut Vec<u8>, data: &[u8], cap: usize) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let target = buf.capacity().saturating_mul(2).max(need).min(cap.max(need));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(data);
}

/// Incremental reader of one direction of a connection. See the module docs.
#[derive(Debug)]
pub struct Reader {
    max_message_size: usize,
    /// Deepest nesting allowed in an array-shaped message, counting the root array: the
    /// argument array's depth limit plus one. Object-shaped messages get one more level
    /// (their `args` array sits inside the object).
    max_depth: usize,
    state: State,
    /// `[` or `{` per open container; `stack[0]` is the root array, so a message is in
    /// progress exactly when `stack.len() >= 2`.
    stack: Vec<u8>,
    string_is_key: bool,
    lit: &'static [u8],
    lit_pos: u8,
    hex_left: u8,
    /// Bytes of the current message that arrived in earlier chunks.
    buf: Vec<u8>,
    /// Absolute position of the current message's first byte.
    msg_pos: u64,
    /// Bytes fed before the current chunk.
    consumed: u64,
    error: Option<FrameError>,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

impl Reader {
    /// A reader that rejects any message longer than `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Self::with_limits(max_message_size, DEFAULT_MAX_DEPTH)
    }

    /// A reader that also rejects a message nested deeper than `max_depth`, counted as the
    /// nesting of its argument array (docs/PROTOCOL.md §1): `[..]` messages may nest
    /// `max_depth` levels, `{"args": [..]}` messages one more for the object. The same rule
    /// as `json::parse_args`, so what the framing accepts the session parser accepts.
    pub fn with_limits(max_message_size: usize, max_depth: usize) -> Self {
        Reader {
            max_message_size,
            max_depth: max_depth.max(1).saturating_add(1),
            state: State::Root,
            stack: Vec::with_capacity(16),
            string_is_key: false,
            lit: b"",
            lit_pos: 0,
            hex_left: 0,
            buf: Vec::new(),
            msg_pos: 0,
            consumed: 0,
            error: None,
        }
    }

    /// Feed any chunk. Each complete depth-1 element of the root array is pushed to `out` as
    /// its exact JSON text (leading/trailing whitespace trimmed; interior bytes untouched).
    /// Messages completed before an error in the same chunk are still pushed. After an error
    /// the reader is poisoned: every later feed returns the same error.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), FrameError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.run(chunk, out) {
            Ok(()) => {
                self.consumed += chunk.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.error = Some(e.clone());
                self.buf = Vec::new();
                self.stack = Vec::new();
                Err(e)
            }
        }
    }

    /// True when no partial message is buffered (between messages / between root arrays).
    pub fn is_idle(&self) -> bool {
        self.stack.len() <= 1
    }

    /// Bytes of a partial message held over from earlier chunks, and the
    /// capacity allocated for them: what the max message size bounds (checked
    /// by the `framing` fuzz target).
    pub fn buffered(&self) -> (usize, usize) {
        (self.buf.len(), self.buf.capacity())
    }

    /// The message that ends at `chunk[i]` (it started at `chunk[start]`, or in an earlier
    /// chunk if `buf` is not empty).
    fn emit(&mut self, chunk: &[u8], start: usize, i: usize, out: &mut Vec<String>) -> Result<(), FrameError> {
        let text = if self.buf.is_empty() {
            std::str::from_utf8(&chunk[start..=i]).map(str::to_owned).map_err(|e| e.valid_up_to())
        } else {
            self.buf.reserve_exact(i + 1);
            self.buf.extend_from_slice(&chunk[..=i]);
            String::from_utf8(std::mem::take(&mut self.buf)).map_err(|e| e.utf8_error().valid_up_to())
        };
        match text {
            Ok(s) => {
                out.push(s);
                Ok(())
            }
            Err(valid) => Err(FrameError::InvalidUtf8 { position: self.msg_pos + valid as u64 }),
        }
    }

    fn run(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), FrameError> {
        let n = chunk.len();
        let max = self.max_message_size;
        let base = self.consumed;
        let mut st = self.state;
        let mut i = 0usize;
        // Innermost open container (`[`, `{`, or 0 at depth 0) and depth, mirrored from
        // `self.stack` to keep them in registers.
        let mut top = self.stack.last().copied().unwrap_or(0);
        let mut depth = self.stack.len();
        // Where the current message starts in this chunk (0 if it started earlier).
        let mut start = 0usize;
        // Scanning stops here: the chunk end, or the byte that would make the current
        // message exceed `max`.
        let mut end = if depth >= 2 { (max - self.buf.len()).min(n) } else { n };

        macro_rules! fail {
            ($e:expr) => {{
                self.state = st;
                return Err($e);
            }};
        }
        macro_rules! unexpected {
            ($b:expr) => {
                fail!(unexpected($b, base + i as u64, st.name()))
            };
        }
        // Close the innermost container (the closing byte `chunk[i]` already checked).
        macro_rules! close {
            () => {{
                self.stack.pop();
                depth -= 1;
                top = self.stack.last().copied().unwrap_or(0);
                st = State::CommaOrEnd;
                if depth <= 1 {
                    if depth == 0 {
                        st = State::Root;
                    } else if let Err(e) = self.emit(chunk, start, i, out) {
                        fail!(e);
                    }
                    end = n;
                }
                i += 1;
            }};
        }
        // Scan string content from `i` (just after the opening quote, or where an earlier
        // chunk stopped); on the closing quote go to `$next`. Escapes split across chunks and
        // bad escapes fall back to the byte-wise `StrEscape` / `StrUnicode` states.
        macro_rules! string_body {
            ($next:expr) => {{
                st = State::Str;
                loop {
                    i += scan_string(&chunk[i..end]);
                    if i >= end {
                        break;
                    }
                    match chunk[i] {
                        b'"' => {
                            i += 1;
                            st = $next;
                            break;
                        }
                        b'\\' => {
                            if i + 1 < end
                                && matches!(chunk[i + 1], b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
                            {
                                i += 2;
                            } else if i + 5 < end
                                && chunk[i + 1] == b'u'
                                && chunk[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit)
                            {
                                i += 6;
                            } else {
                                i += 1;
                                st = State::StrEscape;
                                break;
                            }
                        }
                        c => unexpected!(c),
                    }
                }
            }};
        }

        loop {
            if i >= end {
                if end < n {
                    fail!(FrameError::MessageTooLarge { limit: max });
                }
                break;
            }
            let b = chunk[i];
            match st {
                State::Str => {
                    let next = if self.string_is_key { State::Colon } else { State::CommaOrEnd };
                    string_body!(next);
                }
                State::CommaOrEnd => match b {
                    b',' => {
                        i += 1;
                        if top == b'[' {
                            st = State::Value;
                        } else {
                            // Fast path for the usual `,"key"`.
                            if i < end && chunk[i] == b'"' {
                                i += 1;
                                self.string_is_key = true;
                                string_body!(State::Colon);
                            } else {
                                st = State::Key;
                            }
                        }
                    }
                    b']' | b'}' => {
                        if b != top + 2 {
                            // `[` + 2 == `]`, `{` + 2 == `}`
                            unexpected!(b);
                        }
                        close!();
                    }
                    b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                    _ => unexpected!(b),
                },
                State::Value | State::ValueOrEnd => match b {
                    b'"' if depth >= 2 => {
                        i += 1;
                        self.string_is_key = false;
                        string_body!(State::CommaOrEnd);
                    }
                    b'[' | b'{' => {
                        // `stack[1]` is the message's own container: an object adds a level.
                        let limit = self.max_depth + usize::from(depth >= 2 && self.stack[1] == b'{');
                        if depth >= limit {
                            fail!(FrameError::TooDeep { limit: self.max_depth - 1, position: base + i as u64 });
                        }
                        if depth == 1 {
                            start = i;
                            self.msg_pos = base + i as u64;
                            end = i.saturating_add(max).min(n);
                        }
                        self.stack.push(b);
                        depth += 1;
                        top = b;
                        i += 1;
                        if b == b'[' {
                            st = State::ValueOrEnd;
                        } else if i < end && chunk[i] == b'"' {
                            // Fast path for the usual `{"key"`.
                            i += 1;
                            self.string_is_key = true;
                            string_body!(State::Colon);
                        } else {
                            st = State::KeyOrEnd;
                        }
                    }
                    b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                    b']' if st == State::ValueOrEnd => close!(),
                    _ if depth == 1 => {
                        if is_scalar_start(b) {
                            fail!(FrameError::BadMessage { position: base + i as u64 });
                        }
                        unexpected!(b);
                    }
                    b'1'..=b'9' => {
                        i += 1;
                        i += scan_digits(&chunk[i..end]);
                        st = State::NumInt;
                        if i < end && !matches!(chunk[i], b'.' | b'e' | b'E') {
                            st = State::CommaOrEnd;
                        }
                    }
                    b'-' => {
                        st = State::NumMinus;
                        i += 1;
                    }
                    b'0' => {
                        st = State::NumZero;
                        i += 1;
                    }
                    b't' | b'f' | b'n' => {
                        let lit: &'static [u8] = match b {
                            b't' => b"true",
                            b'f' => b"false",
                            _ => b"null",
                        };
                        if has_prefix(&chunk[i..end], lit) {
                            i += lit.len();
                            st = State::CommaOrEnd;
                        } else {
                            self.lit = lit;
                            self.lit_pos = 1;
                            st = State::Literal;
                            i += 1;
                        }
                    }
                    _ => unexpected!(b),
                },
                State::Colon => match b {
                    b':' => {
                        st = State::Value;
                        i += 1;
                    }
                    b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                    _ => unexpected!(b),
                },
                State::KeyOrEnd | State::Key => match b {
                    b'"' => {
                        i += 1;
                        self.string_is_key = true;
                        string_body!(State::Colon);
                    }
                    b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                    b'}' if st == State::KeyOrEnd => close!(),
                    _ => unexpected!(b),
                },
                State::StrEscape => match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        st = State::Str;
                        i += 1;
                    }
                    b'u' => {
                        self.hex_left = 4;
                        st = State::StrUnicode;
                        i += 1;
                    }
                    _ => unexpected!(b),
                },
                State::StrUnicode => {
                    if !b.is_ascii_hexdigit() {
                        fail!(unexpected(
                            b,
                            base + i as u64,
                            ["STRING6", "STRING5", "STRING4", "STRING3"][usize::from(self.hex_left.clamp(1, 4)) - 1]
                        ));
                    }
                    self.hex_left -= 1;
                    if self.hex_left == 0 {
                        st = State::Str;
                    }
                    i += 1;
                }
                State::Literal => {
                    let pos = usize::from(self.lit_pos);
                    if self.lit.get(pos) != Some(&b) {
                        fail!(unexpected(b, base + i as u64, literal_state_name(self.lit, self.lit_pos)));
                    }
                    self.lit_pos += 1;
                    if usize::from(self.lit_pos) == self.lit.len() {
                        st = State::CommaOrEnd;
                    }
                    i += 1;
                }
                State::NumMinus => match b {
                    b'0' => {
                        st = State::NumZero;
                        i += 1;
                    }
                    b'1'..=b'9' => {
                        st = State::NumInt;
                        i += 1;
                    }
                    _ => unexpected!(b),
                },
                State::NumZero | State::NumInt => match b {
                    b'0'..=b'9' if st == State::NumInt => {
                        i += scan_digits(&chunk[i..end]);
                    }
                    b'.' => {
                        st = State::NumDot;
                        i += 1;
                    }
                    b'e' | b'E' => {
                        st = State::NumExp;
                        i += 1;
                    }
                    // The number ended; `b` is the next token.
                    _ => st = State::CommaOrEnd,
                },
                State::NumDot => {
                    if !b.is_ascii_digit() {
                        unexpected!(b);
                    }
                    st = State::NumFrac;
                    i += 1;
                }
                State::NumFrac => match b {
                    b'0'..=b'9' => i += scan_digits(&chunk[i..end]),
                    b'e' | b'E' => {
                        st = State::NumExp;
                        i += 1;
                    }
                    _ => st = State::CommaOrEnd,
                },
                State::NumExp => match b {
                    b'+' | b'-' => {
                        st = State::NumExpSign;
                        i += 1;
                    }
                    b'0'..=b'9' => {
                        st = State::NumExpDigits;
                        i += 1;
                    }
                    _ => unexpected!(b),
                },
                State::NumExpSign => {
                    if !b.is_ascii_digit() {
                        unexpected!(b);
                    }
                    st = State::NumExpDigits;
                    i += 1;
                }
                State::NumExpDigits => {
                    i += scan_digits(&chunk[i..end]);
                    if i < end {
                        st = State::CommaOrEnd;
                    }
                }
                State::Root => match b {
                    b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                    b'[' => {
                        self.stack.push(b'[');
                        depth += 1;
                        top = b'[';
                        st = State::ValueOrEnd;
                        i += 1;
                    }
                    b'{' => fail!(FrameError::RootNotArray { position: base + i as u64 }),
                    _ if is_scalar_start(b) => fail!(FrameError::RootNotArray { position: base + i as u64 }),
                    _ => unexpected!(b),
                },
            }
        }

        self.state = st;
        if depth >= 2 {
            // `end` guarantees this keeps the buffer within `max`.
            append_bounded(&mut self.buf, &chunk[start..n], max);
        }
        Ok(())
    }
}

/// Writes one side's stream: `[\n` before the first message, `\n,\n` before every later one,
/// `\n]\n` at clean end.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    started: bool,
}

impl Writer {
    /// A writer whose root array is not open yet.
    pub fn new() -> Self {
        Writer { started: false }
    }

    /// The bytes that go before the next message (`[\n` for the first one, `\n,\n` after);
    /// marks the stream started. For sinks that are not a `Vec<u8>`.
    pub fn separator(&mut self) -> &'static str {
        if self.started {
            "\n,\n"
        } else {
            self.started = true;
            "[\n"
        }
    }

    /// Append the separator then `msg_json` (already-serialized JSON) to `buf`.
    pub fn write_raw(&mut self, msg_json: &str, buf: &mut Vec<u8>) {
        let sep = self.separator();
        buf.reserve(sep.len() + msg_json.len());
        buf.extend_from_slice(sep.as_bytes());
        buf.extend_from_slice(msg_json.as_bytes());
    }

    /// The bytes that end the stream cleanly: `\n]\n` after messages, `[]\n` if nothing was
    /// written. Resets, so a later write starts a new root array.
    pub fn end_bytes(&mut self) -> &'static str {
        let started = std::mem::replace(&mut self.started, false);
        if started {
            "\n]\n"
        } else {
            "[]\n"
        }
    }

    /// Append `\n]\n` (or `[]\n` if nothing was written) and reset, so a later write starts a
    /// new root array.
    pub fn finish(&mut self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.end_bytes().as_bytes());
    }

    /// Whether the root array was opened (the first message written).
    pub fn has_started(&self) -> bool {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_string_finds_first_special() {
        for len in 0..40 {
            for pos in 0..=len {
                for special in [b'"', b'\\', 0u8, 0x1f] {
                    let mut v = vec![b'a'; len];
                    // mix in high bytes and near-miss values
                    for (k, x) in v.iter_mut().enumerate() {
                        *x = [b'a', 0xff, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x80][k % 8];
                    }
                    if pos < len {
                        v[pos] = special;
                    }
                    assert_eq!(scan_string(&v), pos, "len {len} pos {pos}");
                }
            }
        }
    }

    #[test]
    fn display_shape() {
        let mut r = Reader::new(100);
        let e = r.feed(b".", &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "Unexpected \".\" at position 0 in state START");
        let e = unexpected(b'\n', 3, "COMMA");
        assert_eq!(e.to_string(), "Unexpected \"\\n\" at position 3 in state COMMA");
    }
}
