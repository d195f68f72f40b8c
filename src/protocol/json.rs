//! JSON text to values, as `JSON.parse` reads it (the session's merge and
//! the Rust API need values; events stay raw text).

use serde_json::{Map, Value};

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
