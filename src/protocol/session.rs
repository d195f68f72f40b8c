//! The shared key/value session (docs/PROTOCOL.md §5) and session ids.

use super::entropy::Entropy;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// A session: JSON fields in insertion order, as JavaScript objects keep them.
pub type Session = Map<String, Value>;

/// Length and alphabet of the ids the old server makes with `uid2(24)`.
pub const SESSION_ID_LEN: usize = 24;
const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh session id: 24 characters of `[A-Za-z0-9]` from `entropy` (in
/// production the OS CSPRNG). Bytes of 248 and above are rejected so each
/// character is uniform (248 = 4 * 62; a plain `% 62` would favour the
/// first 8 characters).
pub(crate) fn new_session_id(entropy: &Entropy) -> String {
    let mut id = String::with_capacity(SESSION_ID_LEN);
    let mut buf = [0u8; 32];
    while id.len() < SESSION_ID_LEN {
        entropy.fill(&mut buf);
        for &b in &buf {
            if b < 248 && id.len() < SESSION_ID_LEN {
                id.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    id
}

/// Whether `id` has the shape of a session id we would issue.
pub fn is_well_formed_id(id: &str) -> bool {
    id.len() == SESSION_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Applies the arguments of a `_set` message (after the name) the way the old
/// peers do: `[key, value]` sets one field (a missing value becomes null),
/// `[{...}]` merges fields, anything else changes nothing. `RESUME_KEY` is
/// the server's own and no `_set` changes it.
pub fn merge(session: &mut Session, args: &[Value]) {
    match args.first() {
        Some(Value::String(key)) if key != RESUME_KEY => {
            session.insert(key.clone(), args.get(1).cloned().unwrap_or(Value::Null));
        }
        Some(Value::Object(fields)) => {
            for (k, v) in fields.iter().filter(|(k, _)| *k != RESUME_KEY) {
                session.insert(k.clone(), v.clone());
            }
        }
        _ => {}
    }
}

/// Where a server keeps, in a session made for one of our clients, the
/// SHA-256 of the session's resume secret (hex). It never leaves the server
/// and its store: the client and the application see the session without it.
pub const RESUME_KEY: &str = "uhura:resume";

/// A new resume secret: as long and as random as a session id.
pub(crate) fn new_resume_secret(entropy: &Entropy) -> String {
    new_session_id(entropy)
}

/// The value `RESUME_KEY` holds for `secret`.
pub(crate) fn resume_digest(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref().iter().fold(
        String::with_capacity(64),
        |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        },
    )
}

/// Whether a client presenting `secret` may resume `stored`. Sessions made
/// by old clients have no secret and resume by id, as in the original;
/// the others need theirs. Compared in constant time.
pub fn may_resume(stored: &Session, secret: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    match stored.get(RESUME_KEY) {
        None => true,
        Some(Value::String(want)) => {
            secret.is_some_and(|s| bool::from(resume_digest(s).as_bytes().ct_eq(want.as_bytes())))
        }
        Some(_) => false,
    }
}

/// `session` as the client and the application may see it.
pub fn public_view(session: &Session) -> Value {
    let mut view = session.clone();
    view.shift_remove(RESUME_KEY);
    Value::Object(view)
}

/// Bytes of `value` as JSON text, counted without building the text.
pub(crate) fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut n, value);
    n.0
}

/// Bytes of one `"key":value` member of the session's JSON, with its comma.
pub fn member_len(key: &str, value: &Value) -> usize {
    // The key is measured as JSON text, escapes included.
    json_len(&Value::String(key.to_owned())) + 1 + json_len(value) + 1
}

/// What changed in a session since it was last saved: a store that can
/// apply changed keys then writes only those.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Changes {
    /// No change.
    #[default]
    Nothing,
    /// These keys were set (`_set` never removes one).
    Keys(Vec<String>),
    /// Replaced, cleared or loaded: only a whole copy will do.
    All,
}

impl Changes {
    /// Notes the keys a `merge(session, args)` sets.
    pub fn note(&mut self, args: &[Value]) {
        let keys: Vec<&String> = match args.first() {
            Some(Value::String(key)) => vec![key],
            Some(Value::Object(fields)) => fields.keys().collect(),
            _ => return,
        };
        match self {
            Changes::All => {}
            Changes::Nothing => *self = Changes::Keys(keys.into_iter().cloned().collect()),
            Changes::Keys(list) => list.extend(keys.into_iter().cloned()),
        }
        // Past this many, a whole copy costs about the same, and stays bounded.
        if matches!(self, Changes::Keys(list) if list.len() > 1024) {
            *self = Changes::All;
        }
    }
}

/// Bytes of the whole session as JSON text (within a byte).
pub fn size(session: &Session) -> usize {
    2 + session.iter().map(|(k, v)| member_len(k, v)).sum::<usize>()
}

/// The session's size after `merge(session, args)`, from its size now
/// (`current`), measuring only the keys the merge changes.
pub(crate) fn size_after_merge(session: &Session, args: &[Value], current: usize) -> usize {
    let change = |current: usize, key: &str, value: &Value| {
        let old = session.get(key).map_or(0, |old| member_len(key, old));
        (current + member_len(key, value)).saturating_sub(old)
    };
    match args.first() {
        Some(Value::String(key)) => change(current, key, args.get(1).unwrap_or(&Value::Null)),
        Some(Value::Object(fields)) => fields.iter().fold(current, |n, (k, v)| change(n, k, v)),
        _ => current,
    }
}

/// Why `parse_value` refused a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON.
    Syntax,
    /// Nested deeper than the limit.
    TooDeep,
}

/// Parses JSON text into a value wherever `JSON.parse` would accept it, within
/// `max_depth` levels of nesting (the outermost array or object is level 1,
/// the rule the framing reader applies to a message's argument array).
///
/// Unlike `serde_json::from_str` it has no recursion limit of 128 and uses no
/// stack per level, and it never refuses what JavaScript accepts:
///
/// * a lone UTF-16 surrogate (`"\ud800"`), which a Rust string cannot hold,
///   becomes U+FFFD;
/// * a number beyond `f64` (`1e400`, which JavaScript reads as `Infinity`)
///   becomes `null`, what `JSON.stringify(Infinity)` writes.
///
/// The session is the only place Rust builds values from the peer's JSON;
/// events stay raw text and reach JavaScript exactly as sent.
pub fn parse_value(text: &str, max_depth: usize) -> Result<Value, ParseError> {
    let b = text.as_bytes();
    let mut p = ValueParser { b, i: 0 };
    // Open containers: an array, or an object and the key of the value being read.
    enum Frame {
        Arr(Vec<Value>),
        Obj(Map<String, Value>, String),
    }
    let mut stack: Vec<Frame> = Vec::new();
    'value: loop {
        // Read one value; containers push a frame and continue with their first element.
        p.ws();
        let mut v = match p.peek().ok_or(ParseError::Syntax)? {
            b'[' | b'{' => {
                if stack.len() >= max_depth {
                    return Err(ParseError::TooDeep);
                }
                let open = p.b[p.i];
                p.i += 1;
                p.ws();
                if open == b'[' {
                    if p.eat(b']') {
                        Value::Array(Vec::new())
                    } else {
                        stack.push(Frame::Arr(Vec::new()));
                        continue 'value;
                    }
                } else if p.eat(b'}') {
                    Value::Object(Map::new())
                } else {
                    let key = p.key()?;
                    stack.push(Frame::Obj(Map::new(), key));
                    continue 'value;
                }
            }
            b'"' => Value::String(p.string()?),
            b't' => p.literal(b"true", Value::Bool(true))?,
            b'f' => p.literal(b"false", Value::Bool(false))?,
            b'n' => p.literal(b"null", Value::Null)?,
            _ => p.number()?,
        };
        // Store it in its container; close containers that end here.
        loop {
            let Some(top) = stack.last_mut() else {
                p.ws();
                return if p.i == p.b.len() { Ok(v) } else { Err(ParseError::Syntax) };
            };
            p.ws();
            match top {
                Frame::Arr(items) => {
                    items.push(v);
                    if p.eat(b',') {
                        continue 'value;
                    }
                    if !p.eat(b']') {
                        return Err(ParseError::Syntax);
                    }
                }
                Frame::Obj(map, key) => {
                    map.insert(std::mem::take(key), v);
                    if p.eat(b',') {
                        p.ws();
                        *key = p.key()?;
                        continue 'value;
                    }
                    if !p.eat(b'}') {
                        return Err(ParseError::Syntax);
                    }
                }
            }
            v = match stack.pop() {
                Some(Frame::Arr(items)) => Value::Array(items),
                Some(Frame::Obj(map, _)) => Value::Object(map),
                None => return Err(ParseError::Syntax),
            };
        }
    }
}

/// `parse_value` of an argument array (`["key", value]`, `[{...}]`).
pub fn parse_args(text: &str, max_depth: usize) -> Result<Vec<Value>, ParseError> {
    match parse_value(text, max_depth)? {
        Value::Array(items) => Ok(items),
        _ => Err(ParseError::Syntax),
    }
}

struct ValueParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl ValueParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }
    fn literal(&mut self, lit: &[u8], v: Value) -> Result<Value, ParseError> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(v)
        } else {
            Err(ParseError::Syntax)
        }
    }
    /// An object key and its colon.
    fn key(&mut self) -> Result<String, ParseError> {
        if self.peek() != Some(b'"') {
            return Err(ParseError::Syntax);
        }
        let k = self.string()?;
        self.ws();
        if !self.eat(b':') {
            return Err(ParseError::Syntax);
        }
        Ok(k)
    }
    fn hex4(&mut self) -> Result<u32, ParseError> {
        let h = self.b.get(self.i..self.i + 4).ok_or(ParseError::Syntax)?;
        let h = std::str::from_utf8(h).map_err(|_| ParseError::Syntax)?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(ParseError::Syntax);
        }
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| ParseError::Syntax)
    }
    fn string(&mut self) -> Result<String, ParseError> {
        self.i += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.i;
            while matches!(self.peek(), Some(c) if c != b'"' && c != b'\\' && c >= 0x20) {
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.b[start..self.i]).map_err(|_| ParseError::Syntax)?);
            match self.peek().ok_or(ParseError::Syntax)? {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.i += 1;
                    let c = self.peek().ok_or(ParseError::Syntax)?;
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) && self.b[self.i..].starts_with(b"\\u") {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    // Lone high surrogate; the next escape is read on its own.
                                    self.i = save;
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(c.unwrap_or(char::REPLACEMENT_CHARACTER));
                        }
                        _ => return Err(ParseError::Syntax),
                    }
                }
                _ => return Err(ParseError::Syntax),
            }
        }
    }
    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.i;
        self.eat(b'-');
        let digits = |p: &mut Self| {
            let s = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - s
        };
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(ParseError::Syntax),
        }
        let mut integer = true;
        if self.eat(b'.') {
            integer = false;
            if digits(self) == 0 {
                return Err(ParseError::Syntax);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.i += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if digits(self) == 0 {
                return Err(ParseError::Syntax);
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| ParseError::Syntax)?;
        if integer {
            if let Ok(n) = text.parse::<u64>() {
                return Ok(Value::from(n));
            }
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Value::from(n));
            }
        }
        let f: f64 = text.parse().map_err(|_| ParseError::Syntax)?;
        // Infinite: what JavaScript's JSON.stringify writes for it.
        Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
    }
}

/// The `cookie` field the 0.1.x server puts in every stored session
/// (connect's default Cookie); old clients carry it, so we store and send it too.
pub fn default_cookie() -> Value {
    serde_json::json!({"originalMaxAge": null, "expires": null, "httpOnly": true, "path": "/"})
}

/// Milliseconds since the Unix epoch, from the wall clock.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The cookie's `originalMaxAge` (connect's `maxAge` option, in ms), when it has one.
pub fn cookie_max_age(session: &Session) -> Option<i64> {
    let ms = session.get("cookie")?.get("originalMaxAge")?.as_f64()?;
    ms.is_finite().then_some(ms as i64)
}

/// A new session's cookie from the server's template (the JSON of the
/// configured connect Cookie): with a `maxAge`, it expires `maxAge` from
/// `now_ms`, as the original's `store.generate` builds one per session.
pub(crate) fn new_cookie(template: &Value, now_ms: i64) -> Value {
    let mut cookie = template.clone();
    if let Some(ms) = cookie.get("originalMaxAge").and_then(Value::as_f64).filter(|ms| ms.is_finite()) {
        cookie["expires"] = Value::String(iso_millis(now_ms.saturating_add(ms as i64)));
    }
    cookie
}

/// connect's `session.resetMaxAge()`, done before every save: a cookie with a
/// `maxAge` expires `maxAge` from `now_ms`. Returns that `maxAge`, if any.
pub fn touch_cookie(session: &mut Session, now_ms: i64) -> Option<i64> {
    let ms = cookie_max_age(session)?;
    if let Some(Value::Object(cookie)) = session.get_mut("cookie") {
        cookie.insert("expires".into(), Value::String(iso_millis(now_ms.saturating_add(ms))));
    }
    Some(ms)
}

/// `new Date(ms).toJSON()`: `YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC.
pub(crate) fn iso_millis(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_well_formed_and_distinct() {
        let entropy = Entropy::seeded([3; 32]);
        let a = new_session_id(&entropy);
        let b = new_session_id(&entropy);
        assert!(is_well_formed_id(&a) && is_well_formed_id(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn id_characters_are_roughly_uniform() {
        let mut counts = [0u32; 62];
        let entropy = Entropy::seeded([4; 32]);
        for _ in 0..2000 {
            for b in new_session_id(&entropy).bytes() {
                counts[ALPHABET.iter().position(|&c| c == b).unwrap()] += 1;
            }
        }
        // 48,000 draws: 774 expected per character; a biased modulo would
        // push the first 8 up by ~25%.
        for c in counts {
            assert!((650..900).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn iso_dates_match_javascript() {
        // new Date(ms).toJSON() for each.
        assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_millis(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso_millis(1_735_689_600_123), "2025-01-01T00:00:00.123Z");
        assert_eq!(iso_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn cookies_expire_max_age_after_creation_and_every_touch() {
        let template =
            json!({"originalMaxAge": 3000, "expires": "2000-01-01T00:00:00.000Z", "httpOnly": true, "path": "/"});
        let cookie = new_cookie(&template, 1000);
        assert_eq!(
            cookie,
            json!({"originalMaxAge": 3000, "expires": "1970-01-01T00:00:04.000Z", "httpOnly": true, "path": "/"})
        );
        let mut s = Session::new();
        s.insert("cookie".into(), cookie);
        assert_eq!(touch_cookie(&mut s, 7000), Some(3000));
        assert_eq!(s["cookie"]["expires"], "1970-01-01T00:00:10.000Z");

        // No maxAge: a browser-session cookie, never expiring by itself.
        assert_eq!(new_cookie(&default_cookie(), 1000), default_cookie());
        let mut s = Session::new();
        s.insert("cookie".into(), default_cookie());
        assert_eq!(touch_cookie(&mut s, 1000), None);
        assert_eq!(Value::Object(s.clone())["cookie"], default_cookie());
        assert_eq!(touch_cookie(&mut Session::new(), 1000), None);
    }

    #[test]
    fn parse_value_accepts_what_json_parse_accepts() {
        assert_eq!(
            parse_value(r#"[1, -2.5e3, "a\u00e9\ud83d\ude00", {"k": [true, false, null]}, [], {}]"#, 10),
            Ok(json!([1, -2500.0, "aé😀", {"k": [true, false, null]}, [], {}]))
        );
        assert_eq!(
            parse_value(r#"["\ud800", "\udc00x", "\ud800\u0041"]"#, 10),
            Ok(json!(["\u{fffd}", "\u{fffd}x", "\u{fffd}A"]))
        );
        assert_eq!(
            parse_value("[1e400, -1e400, 18446744073709551616]", 10),
            Ok(json!([null, null, 18446744073709551616.0]))
        );
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse_value(&deep, 5000).is_ok());
        assert_eq!(parse_value(&deep, 4999), Err(ParseError::TooDeep));
        for bad in ["", "[", "[1,]", "{\"a\"}", "[01]", "[1.]", "\"\\x\"", "[\"\u{1}\"]", "[tru]", "[] x", "{\"a\":1,}"]
        {
            assert_eq!(parse_value(bad, 10), Err(ParseError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn changes_note_the_keys_set_until_a_whole_copy_is_cheaper() {
        let mut c = Changes::default();
        c.note(&[json!("a"), json!(1)]);
        c.note(&[json!({"b": 2, "c": 3})]);
        c.note(&[json!(42)]);
        assert_eq!(c, Changes::Keys(vec!["a".into(), "b".into(), "c".into()]));
        for i in 0..1100 {
            c.note(&[json!(format!("k{i}")), json!(i)]);
        }
        assert_eq!(c, Changes::All);
        c.note(&[json!("d"), json!(4)]);
        assert_eq!(c, Changes::All);
    }

    #[test]
    fn parse_value_takes_any_key() {
        // serde_json's own Value parser, with the raw_value feature, reads this
        // key as an embedded raw value (found by fuzzing); ours reads plain keys.
        let key = "$serde_json::private::RawValue";
        let text = format!(r#"[{{"{key}":{{"a":1}}}},{{"{key}":"[1]"}},1.5,-2,18446744073709551615,"s",null]"#);
        let v = parse_args(&text, 10).unwrap();
        assert_eq!(v[0], Value::Object(Map::from_iter([(key.to_owned(), json!({"a": 1}))])));
        assert_eq!(v[1], Value::Object(Map::from_iter([(key.to_owned(), json!("[1]"))])));
        assert_eq!(v[2..], [json!(1.5), json!(-2), json!(u64::MAX), json!("s"), Value::Null]);
        assert_eq!(parse_value(r#"{"b":1,"a":2,"b":3}"#, 10).unwrap().to_string(), r#"{"b":3,"a":2}"#);
    }

    #[test]
    fn merge_forms() {
        let mut s = Session::new();
        merge(&mut s, &[json!("a"), json!(1)]);
        merge(&mut s, &[json!({"b": [2], "a": 3})]);
        merge(&mut s, &[json!("c")]);
        merge(&mut s, &[json!(5)]);
        merge(&mut s, &[]);
        assert_eq!(Value::Object(s), json!({"a": 3, "b": [2], "c": null}));
    }
}
