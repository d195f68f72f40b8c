//! The framing [`Reader`]: an incremental JSON tokenizer.
//!
//! Over 400 lines on purpose: it is one pushdown state machine (`State` and `Reader::run`),
//! whose states hand bytes to each other and must be read together; splitting the match arms
//! across files would hide the transitions.

use super::scan::{has_prefix, is_scalar_start, scan_digits, scan_string};
use super::{unexpected, FrameError, Framed, Shape, DEFAULT_MAX_DEPTH, DEFAULT_MAX_MESSAGE_SIZE};

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

/// Incremental reader of one direction of a connection. See the [framing module docs](super).
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
    /// The current message's separators, counted as the tokenizer passes them.
    shape: Shape,
    /// Bytes fed before the current chunk.
    consumed: u64,
    /// Boxed: ~50 bytes inline in every connection's reader otherwise, for
    /// what almost none ever holds.
    error: Option<Box<FrameError>>,
}

/// A reader between messages, in 16 bytes: what [`Reader::resume`] needs to
/// read on exactly as the reader it came from would have (where it is in
/// the stream, and whether inside the root array). A connection that is
/// idle for long keeps this instead of a whole [`Reader`] (128 bytes and its
/// stack's allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspended {
    state: State,
    in_root: bool,
    consumed: u64,
}

impl Suspended {
    /// Bytes fed before it was suspended (the stream position).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

impl Default for Suspended {
    /// A new stream: what [`Reader::with_limits`] starts from.
    fn default() -> Self {
        Suspended { state: State::Root, in_root: false, consumed: 0 }
    }
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
            shape: Shape::default(),
            consumed: 0,
            error: None,
        }
    }

    /// Feed any chunk. Each complete depth-1 element of the root array is pushed to `out` as
    /// its exact JSON text (leading/trailing whitespace trimmed; interior bytes untouched).
    /// Messages completed before an error in the same chunk are still pushed. After an error
    /// the reader is poisoned: every later feed returns the same error.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), FrameError> {
        let mut framed = Framed::default();
        let res = self.feed_framed(chunk, &mut framed);
        out.extend(framed.iter().map(|(text, _)| text.to_owned()));
        res
    }

    /// [`feed`](Self::feed) into a [`Framed`]: the messages' texts back to back in one
    /// buffer (no allocation per message once its capacity is there), each with its
    /// [`Shape`].
    pub fn feed_framed(&mut self, chunk: &[u8], out: &mut Framed) -> Result<(), FrameError> {
        if let Some(e) = self.error.as_deref() {
            return Err(e.clone());
        }
        match self.run(chunk, out) {
            Ok(()) => {
                self.consumed += chunk.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.error = Some(Box::new(e.clone()));
                self.buf = Vec::new();
                self.stack = Vec::new();
                Err(e)
            }
        }
    }

    /// The reader's state in short, if it is between messages (none in
    /// progress, none buffered, no error): [`resume`](Self::resume) makes a
    /// reader that goes on exactly as this one would.
    pub fn suspend(&self) -> Option<Suspended> {
        // At depth 1 these are the states between two messages; any other
        // (a scalar, a string) is a value in progress.
        let between = matches!(self.state, State::Root | State::ValueOrEnd | State::Value | State::CommaOrEnd);
        (between && self.stack.len() <= 1 && self.buf.is_empty() && self.error.is_none()).then_some(Suspended {
            state: self.state,
            in_root: self.stack.len() == 1,
            consumed: self.consumed,
        })
    }

    /// A reader with these limits that goes on from `at` (see
    /// [`suspend`](Self::suspend)). `shape`, `msg_pos` and the string and
    /// literal fields are set when the next message starts, so need no
    /// keeping.
    pub fn resume(max_message_size: usize, max_depth: usize, at: Suspended) -> Self {
        let mut r = Reader::with_limits(max_message_size, max_depth);
        r.state = at.state;
        if at.in_root {
            r.stack.push(b'[');
        }
        r.consumed = at.consumed;
        r
    }

    /// Bytes fed so far (the stream position).
    pub fn consumed(&self) -> u64 {
        self.consumed
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
    fn emit(&mut self, chunk: &[u8], start: usize, i: usize, out: &mut Framed) -> Result<(), FrameError> {
        let bytes = if self.buf.is_empty() {
            &chunk[start..=i]
        } else {
            self.buf.extend_from_slice(&chunk[..=i]);
            &self.buf[..]
        };
        let text = if self.shape.non_ascii {
            std::str::from_utf8(bytes).map_err(|e| e.valid_up_to())
        } else {
            debug_assert!(bytes.is_ascii());
            // SAFETY: every byte of the message is ASCII, so it is UTF-8. Outside strings the
            // tokenizer accepted ASCII bytes only (each state matches ASCII bytes), and every
            // byte of string content went through `scan_string`, which saw none >= 0x80
            // (`non_ascii` unset). Skipping the check saved ~5 % of a small message's
            // receive path (bench/receive.rs).
            Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
        };
        let pushed = match text {
            Ok(s) => {
                out.push(s, self.shape);
                Ok(())
            }
            Err(valid) => Err(FrameError::InvalidUtf8 { position: self.msg_pos + valid as u64 }),
        };
        if !self.buf.is_empty() {
            // Freed, not kept: a message spanning chunks may have been large.
            self.buf = Vec::new();
        }
        pushed
    }

    fn run(&mut self, chunk: &[u8], out: &mut Framed) -> Result<(), FrameError> {
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
        // An integer from its first digit (1-9, at `i`): its digits in one scan; a
        // fraction or exponent after them goes on byte by byte (`NumInt`).
        macro_rules! int_digits {
            () => {{
                i += 1;
                i += scan_digits(&chunk[i..end]);
                st = State::NumInt;
                if i < end && !matches!(chunk[i], b'.' | b'e' | b'E') {
                    st = State::CommaOrEnd;
                }
            }};
        }
        // A comma just passed: the separators the message parser needs (`Shape`).
        macro_rules! count_comma {
            () => {
                if depth == 2 {
                    self.shape.commas += 1;
                } else if depth == 3 && top == b'[' {
                    self.shape.inner_commas += 1;
                }
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
                    let (len, high) = scan_string(&chunk[i..end]);
                    i += len;
                    self.shape.non_ascii |= high;
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
                            self.shape.escapes = true;
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
        // A string value from its opening quote (at `i`); one directly inside the message's
        // own array or object is where the parser may find the id (`Shape::last_string`).
        macro_rules! string_value {
            () => {{
                if depth == 2 {
                    self.shape.last_string = (base + i as u64 - self.msg_pos) as usize;
                }
                i += 1;
                self.string_is_key = false;
                string_body!(State::CommaOrEnd);
            }};
        }
        // A key from its opening quote (at `i`), and its `:` if that follows at once: then
        // `st` is `Value`; otherwise it is where the key's scan stopped (`Colon`, or `Str`
        // at the chunk's end).
        macro_rules! key_and_colon {
            () => {{
                i += 1;
                self.string_is_key = true;
                string_body!(State::Colon);
                if st == State::Colon && i < end && chunk[i] == b':' {
                    i += 1;
                    st = State::Value;
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
            if depth >= 2 && matches!(st, State::Value | State::ValueOrEnd | State::CommaOrEnd) {
                // The run of a message's usual tokens (string and integer values, `,`,
                // `"key":`, closing brackets), taken with direct branches: the state
                // dispatch below costs a hard-to-predict indirect jump per token. Each step
                // does what the dispatch would; anything else (whitespace, literals, an
                // opening bracket, a bad byte, the chunk's end) leaves `st` as the dispatch
                // would have it there and goes to the dispatch.
                loop {
                    if st != State::CommaOrEnd {
                        match chunk[i] {
                            b'"' => string_value!(),
                            b'1'..=b'9' => int_digits!(),
                            _ => break,
                        }
                        if st != State::CommaOrEnd || i >= end {
                            break;
                        }
                    }
                    match chunk[i] {
                        b',' => {
                            i += 1;
                            count_comma!();
                            if top == b'[' {
                                st = State::Value;
                            } else if i < end && chunk[i] == b'"' {
                                key_and_colon!();
                                if st != State::Value {
                                    break;
                                }
                            } else {
                                st = State::Key;
                                break;
                            }
                        }
                        b @ (b']' | b'}') if b == top + 2 => {
                            close!();
                            if depth <= 1 {
                                break;
                            }
                        }
                        _ => break,
                    }
                    if i >= end {
                        break;
                    }
                }
                if i >= end {
                    continue;
                }
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
                        count_comma!();
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
                        string_value!();
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
                            self.shape = Shape::default();
                            end = i.saturating_add(max).min(n);
                        }
                        self.stack.push(b);
                        depth += 1;
                        top = b;
                        i += 1;
                        if b == b'[' {
                            st = State::ValueOrEnd;
                        } else if i < end && chunk[i] == b'"' {
                            // Fast path for the usual `{"key":`.
                            key_and_colon!();
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
                    b'1'..=b'9' => int_digits!(),
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
