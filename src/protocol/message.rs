//! The three message shapes of docs/PROTOCOL.md §2, parsed without touching user
//! arguments: they stay raw JSON text so JavaScript can take them untouched.

use crate::protocol::framing::Shape;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Prefix of an acknowledgement's event name: `{"args":["ack::<id>"]}`.
pub const ACK_PREFIX: &str = "ack::";

/// Name of the session update message (docs/PROTOCOL.md §5).
pub const SET: &str = "_set";
/// Name of the heartbeat message; only sent to peers that negotiated it.
pub const HEARTBEAT: &str = "_uhura_hb";
/// Sent, to peers that negotiated our extensions, right before closing the
/// connection over a protocol error in what the peer sent.
pub const REFUSED: &str = "_uhura_refused";
/// Name of the cumulative ack, `["_uhura_ack","<id>"]`: acknowledges that
/// message and every message sent before it on the connection. Only between
/// peers that negotiated extensions version 2 (docs/PROTOCOL.md §9).
pub const CUMULATIVE_ACK: &str = "_uhura_ack";

/// Default cap on the number of arguments of one event (after its name).
pub const DEFAULT_MAX_ARGS: usize = 4096;

/// One decoded message. `args` is the raw JSON text of the whole argument
/// array, event name first (`["event", 1, {"x": 2}]`).
///
/// Names and ids are decoded for matching only; a string JavaScript accepts
/// but Rust cannot hold (a lone UTF-16 surrogate, `"\ud800"`) reads as U+FFFD
/// there, while `args` keeps the exact text. `id` is the id's raw JSON string
/// literal (quotes included), so an ack echoes exactly what the peer sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// An event: its name, its argument array's text (name first), and
    /// its id when the message carried one.
    Event {
        /// The event name (unescaped).
        name: Cow<'a, str>,
        /// The argument array's exact text, name first.
        args: &'a str,
        /// The id's raw JSON string literal.
        id: Option<&'a str>,
    },
    /// An acknowledgement (`{"args":["ack::<id>"]}`) of one of our messages.
    Ack {
        /// The acknowledged message's id.
        id: Cow<'a, str>,
    },
}

/// A message that is valid JSON but not one of the shapes of docs/PROTOCOL.md §2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError(pub &'static str);

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol violation: {}", self.0)
    }
}

impl std::error::Error for MessageError {}

#[derive(Deserialize)]
struct ObjectShape<'a> {
    #[serde(borrow)]
    args: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// Parses one message as produced by the framing reader (which validated
/// its JSON), with the default argument limit.
pub fn parse(text: &str) -> Result<Incoming<'_>, MessageError> {
    parse_with_limit(text, DEFAULT_MAX_ARGS)
}

/// Parses one message; more than `max_args` arguments after the event name
/// is a protocol error (`maxArgs`, docs/PROTOCOL.md §7), so no event with a
/// million arguments ever reaches JavaScript's `emit.apply`.
pub fn parse_with_limit(text: &str, max_args: usize) -> Result<Incoming<'_>, MessageError> {
    let trimmed = text.trim_start();
    let (args, id) = match trimmed.as_bytes().first() {
        Some(b'[') => (trimmed, None),
        Some(b'{') => object_shape(trimmed)?,
        _ => return Err(MessageError("message is neither an array nor an object")),
    };
    classify(args, id, |args| event_name(args, max_args))
}

/// `parse_with_limit` for a message as the framing reader handed it out
/// (trimmed, its JSON validated), with the [`Shape`] it counted: the
/// argument count is known without a second pass, and the usual object
/// shapes, `{"args":[..]}` and `{"args":[..],"id":"<id>"}`, are split
/// without parsing them. Anything else goes the general way.
pub fn parse_framed(text: &str, shape: Shape, max_args: usize) -> Result<Incoming<'_>, MessageError> {
    parse_framed_counted(text, shape, max_args).map(|(m, _)| m)
}

/// `parse_framed`, and the number of elements of the argument array (the
/// name and its arguments) where the shape told it: for array-shaped
/// messages and the usual object shapes, not for the others.
pub(crate) fn parse_framed_counted(
    text: &str,
    shape: Shape,
    max_args: usize,
) -> Result<(Incoming<'_>, Option<usize>), MessageError> {
    let (args, id, count) = match text.as_bytes().first() {
        Some(b'[') => (text, None, shape.commas),
        Some(b'{') => match split_object(text, shape) {
            Some((args, id)) => (args, id, shape.inner_commas),
            None => {
                let (args, id) = object_shape(text)?;
                return classify(args, id, |args| event_name(args, max_args)).map(|m| (m, None));
            }
        },
        _ => return Err(MessageError("message is neither an array nor an object")),
    };
    let m = classify(args, id, |args| {
        let name = first_string(args)?;
        if count > max_args {
            return Err(MessageError("too many arguments: an event has more arguments than maxArgs"));
        }
        Ok(name)
    })?;
    Ok((m, Some(count + 1)))
}

/// The `args` and `id` of an object-shaped message, by serde_json.
fn object_shape(text: &str) -> Result<(&str, Option<&str>), MessageError> {
    let obj: ObjectShape<'_> =
        serde_json::from_str(text).map_err(|_| MessageError("message object is not {\"args\": [...]}"))?;
    let args = obj.args.ok_or(MessageError("message object has no \"args\" array"))?;
    Ok((args.get(), obj.id.map(|raw| raw.get())))
}

/// Splits `{"args":<value>}` and `{"args":<value>,"id":"<plain id>"}` (no
/// whitespace, no escape in the id) by their ends. The framing reader
/// validated the JSON, so the final `"` before `}` closes the id, the
/// `,"id":"` before it is structural (an opening quote follows `:`, and a
/// key holds no bare quote), and a message with one comma at its top level
/// has no other member.
///
/// When no string of the message holds an escape, the reader's [`Shape`]
/// says where the id's opening quote is (`last_string`: the last string
/// value of the object is the one the `"` before `}` closes), so the id is
/// found without searching for it.
fn split_object(text: &str, shape: Shape) -> Option<(&str, Option<&str>)> {
    const HEAD: &str = "{\"args\":";
    const ID_KEY: &str = ",\"id\":";
    let body = text.strip_prefix(HEAD)?.strip_suffix('}')?;
    let (args, id) = match shape.commas {
        0 => (body, None),
        1 => {
            let before_close = body.strip_suffix('"')?;
            let open = if shape.escapes {
                let open = before_close.rfind('"')?;
                if before_close[open + 1..].contains('\\') {
                    return None;
                }
                open
            } else {
                shape.last_string.checked_sub(HEAD.len())?
            };
            (before_close.get(..open)?.strip_suffix(ID_KEY)?, Some(&body[open..]))
        }
        _ => return None,
    };
    // serde_json's raw value holds no whitespace around the value.
    const WS: [char; 4] = [' ', '\t', '\n', '\r'];
    if args.starts_with(WS) || args.ends_with(WS) {
        return None;
    }
    Some((args, id))
}

/// What the two parsers share once `args` and `id` are split: the shape
/// checks, the event name (by `name_of`), acks, the id's type.
fn classify<'a>(
    args: &'a str,
    id: Option<&'a str>,
    name_of: impl FnOnce(&'a str) -> Result<Cow<'a, str>, MessageError>,
) -> Result<Incoming<'a>, MessageError> {
    if !args.starts_with('[') {
        return Err(MessageError("message \"args\" is not an array"));
    }
    let name = name_of(args)?;
    if let Some(ack) = name.strip_prefix(ACK_PREFIX) {
        return Ok(Incoming::Ack {
            id: match name {
                Cow::Borrowed(b) => Cow::Borrowed(&b[ACK_PREFIX.len()..]),
                Cow::Owned(_) => Cow::Owned(ack.to_owned()),
            },
        });
    }
    let id = match id {
        None | Some("null") => None,
        Some(raw) => {
            if !raw.starts_with('"') {
                return Err(MessageError("message \"id\" is not a string"));
            }
            // The old peers skip the ack when the id is falsy; so do we.
            (raw != "\"\"").then_some(raw)
        }
    };
    Ok(Incoming::Event { name, args, id })
}

/// The first element of a validated JSON array, which must be a string.
fn first_string(args: &str) -> Result<Cow<'_, str>, MessageError> {
    let rest = args[1..].trim_start_matches([' ', '\t', '\n', '\r']);
    if rest.starts_with(']') {
        return Err(MessageError("message has no event name"));
    }
    // The usual name, without escapes, borrowed as it is.
    if let Some(body) = rest.strip_prefix('"') {
        if let Some(end) = body.find(['"', '\\']) {
            if body.as_bytes()[end] == b'"' {
                return Ok(Cow::Borrowed(&body[..end]));
            }
        }
    }
    let mut de = serde_json::Deserializer::from_str(rest);
    match BorrowedOrOwned::deserialize(&mut de) {
        Ok(name) => Ok(name.0),
        Err(_) => Err(MessageError("event name is not a string")),
    }
}

/// Reads the first element of a JSON array, which must be a string, and
/// skips the rest without building values (serde_json skips iteratively, so
/// depth costs no stack), counting the arguments.
///
/// An array too short to hold more than `max_args` arguments is not
/// scanned past its name: the framing reader validated it already, and
/// counting cost a second pass over every message.
fn event_name(args: &str, max_args: usize) -> Result<Cow<'_, str>, MessageError> {
    // `[`, `]`, a name of at least `""`, then a comma and at least one byte per argument.
    if args.len().saturating_sub(4) / 2 <= max_args {
        return first_string(args);
    }
    event_name_counted(args, max_args)
}

/// `event_name` for an array that may hold more than `max_args` arguments.
fn event_name_counted(args: &str, max_args: usize) -> Result<Cow<'_, str>, MessageError> {
    struct NameVisitor(usize);
    impl<'de> serde::de::Visitor<'de> for NameVisitor {
        type Value = Result<Cow<'de, str>, MessageError>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array whose first element is a string")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let Some(name) = seq.next_element::<BorrowedOrOwned<'de>>()?.map(|n| n.0) else {
                return Ok(Err(MessageError("message has no event name")));
            };
            // Counted to the end (the array must be consumed; the size is
            // already bounded by maxMessageSize).
            let mut n = 0usize;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                n += 1;
            }
            if n > self.0 {
                return Ok(Err(MessageError("too many arguments: an event has more arguments than maxArgs")));
            }
            Ok(Ok(name))
        }
    }
    let mut de = serde_json::Deserializer::from_str(args);
    match serde::Deserializer::deserialize_seq(&mut de, NameVisitor(max_args)) {
        Ok(r) => r,
        Err(_) => Err(MessageError("event name is not a string")),
    }
}

/// Decodes a JSON string as JavaScript would, except that a lone surrogate
/// (which a Rust string cannot hold) becomes U+FFFD.
fn lossy(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(b) => match String::from_utf8(b) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

/// The string of a raw JSON string literal (as `Incoming::Event::id` holds it).
pub fn decode_string(raw: &str) -> Option<Cow<'_, str>> {
    // The usual id, without escapes, as it is.
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        // One pass over the bytes (a `contains` of two chars was a second).
        if !inner.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            return Some(Cow::Borrowed(inner));
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    let s = <BorrowedOrOwned<'_> as Deserialize>::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(s.0)
}

/// [`decode_string`] of a string literal in a message the framing reader
/// handed out with `shape` (an id of [`parse_framed`]'s): in a message
/// without escapes, the text between its quotes, without a look at it.
pub fn decode_framed_string(raw: &str, shape: Shape) -> Option<Cow<'_, str>> {
    if shape.escapes {
        return decode_string(raw);
    }
    raw.get(1..raw.len().saturating_sub(1)).map(Cow::Borrowed)
}

/// A string that borrows from the input unless it had escapes. Read as bytes,
/// which serde_json allows to hold lone surrogates (as WTF-8); see `lossy`.
struct BorrowedOrOwned<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedOrOwned<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BorrowedOrOwned<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(BorrowedOrOwned(lossy(Cow::Borrowed(v))))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(BorrowedOrOwned(lossy(Cow::Owned(v.to_vec()))))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Encodes the wire form of an event whose argument array (name first) is
/// already JSON text: array mode sends it as is; object mode wraps it.
pub fn encode_event(args: &str, object_mode: bool, id: Option<&str>, out: &mut String) {
    if !object_mode {
        out.push_str(args);
        return;
    }
    out.push_str("{\"args\":");
    out.push_str(args);
    if let Some(id) = id {
        out.push_str(",\"id\":");
        push_json_string(id, out);
    }
    out.push('}');
}

/// Encodes an object-mode event with one of our ids, `<prefix><seq>`
/// (docs/PROTOCOL.md §9), written in place: `prefix` is hex digits and a
/// dash, which JSON needs no escape for.
pub(crate) fn encode_event_our_id(args: &str, prefix: &str, seq: u64, out: &mut String) {
    out.push_str("{\"args\":");
    out.push_str(args);
    out.push_str(",\"id\":\"");
    out.push_str(prefix);
    out.push_str(itoa::Buffer::new().format(seq));
    out.push_str("\"}");
}

/// Encodes `["<name>"]`, or `["<name>",<arg>]` with `arg` JSON text
/// already: the protocol's own messages (`start`, `connect`, a whole
/// session's `_set`, heartbeats, refusals).
pub(crate) fn encode_call(name: &str, arg: Option<&str>, out: &mut String) {
    out.push('[');
    push_json_string(name, out);
    if let Some(arg) = arg {
        out.push(',');
        out.push_str(arg);
    }
    out.push(']');
}

/// Encodes `["_set","<key>","<value>"]`: one string field of the session.
pub(crate) fn encode_set_string(key: &str, value: &str, out: &mut String) {
    out.push('[');
    push_json_string(SET, out);
    out.push(',');
    push_json_string(key, out);
    out.push(',');
    push_json_string(value, out);
    out.push(']');
}

/// Encodes the `_set` of `set()`'s arguments, `args` being their JSON array
/// text (`["key",value]` or `[{...}]`): the same arguments behind the name,
/// as text, so they go out exactly as the application wrote them.
pub(crate) fn encode_set(args: &str, out: &mut String) {
    let inner = args.trim().strip_prefix('[').unwrap_or(args).trim_start();
    if inner.starts_with(']') {
        encode_call(SET, None, out);
    } else {
        out.push('[');
        push_json_string(SET, out);
        out.push(',');
        out.push_str(inner);
    }
}

/// Encodes `{"args":["ack::<id>"]}`.
pub fn encode_ack(id: &str, out: &mut String) {
    out.push_str("{\"args\":[");
    push_json_string(&format!("{ACK_PREFIX}{id}"), out);
    out.push_str("]}");
}

/// Encodes `{"args":["ack::<id>"]}` from the id's raw JSON string literal
/// (quotes included), byte for byte as the peer wrote it: an id JavaScript
/// holds but Rust cannot (a lone surrogate) is acked exactly.
pub(crate) fn encode_ack_raw(raw_id: &str, out: &mut String) {
    match raw_id.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => {
            out.push_str("{\"args\":[\"");
            out.push_str(ACK_PREFIX);
            out.push_str(inner);
            out.push_str("\"]}");
        }
        None => encode_ack(raw_id, out),
    }
}

/// Encodes `["_uhura_ack",<id>]` from the id's raw JSON string literal, as
/// `encode_ack_raw` does for one message.
pub(crate) fn encode_cumulative_ack_raw(raw_id: &str, out: &mut String) {
    encode_call(CUMULATIVE_ACK, Some(raw_id), out);
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(s: &str, out: &mut String) {
    // serde_json never fails to serialize a str.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_event() {
        let m = parse(r#"["hello",1,[true,null,2.5]]"#).unwrap();
        assert_eq!(m, Incoming::Event { name: "hello".into(), args: r#"["hello",1,[true,null,2.5]]"#, id: None });
    }

    #[test]
    fn object_event_and_ack() {
        let m = parse(r#"{"args":["w\u00e9",{"a":[1]}],"id":"abc"}"#).unwrap();
        assert_eq!(m, Incoming::Event { name: "wé".into(), args: r#"["w\u00e9",{"a":[1]}]"#, id: Some("\"abc\"") });
        assert_eq!(parse(r#"{"args":["ack::x-1"]}"#).unwrap(), Incoming::Ack { id: "x-1".into() });
        assert_eq!(parse(r#"["ack::y"]"#).unwrap(), Incoming::Ack { id: "y".into() });
    }

    #[test]
    fn bad_shapes() {
        for bad in
            [r#"{"args":"notarray"}"#, "null", "1", r#"[1,2]"#, "[]", r#"{"id":"x"}"#, r#"{"args":["e"],"id":5}"#]
        {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn max_args_holds_whether_or_not_the_arguments_are_counted() {
        for max in [0usize, 1, 2, 5, 64] {
            for n in 0..=max + 2 {
                let short = format!("[\"e\"{}]", ",1".repeat(n));
                let spaced = format!("[ \"e\" {}]", " , [1,2,3]".repeat(n));
                for args in [short, spaced] {
                    let r = parse_with_limit(&args, max);
                    if n <= max {
                        assert_eq!(r, Ok(Incoming::Event { name: "e".into(), args: &args, id: None }), "{args}");
                    } else {
                        assert!(r.is_err(), "{args} holds more than {max}");
                    }
                }
            }
        }
        assert_eq!(
            parse(" [ \n\"w\\u00e9\" ]").map(|m| matches!(m, Incoming::Event { name, .. } if name == "wé")),
            Ok(true)
        );
        assert_eq!(parse("[ ]"), Err(MessageError("message has no event name")));
        assert_eq!(parse("[1,\"e\"]"), Err(MessageError("event name is not a string")));
    }

    #[test]
    fn parse_framed_agrees_with_parse() {
        use crate::protocol::framing::{Framed, Reader};
        let texts = [
            r#"["e"]"#,
            r#"["e",1,[2,3],{"a":[4,5]}]"#,
            r#"[ "w\u00e9" , 1 ]"#,
            r#"[1,"e"]"#,
            r#"[]"#,
            r#"{"args":["e",1,[2,3]],"id":"ab-1"}"#,
            r#"{"args":["e"],"id":""}"#,
            r#"{"args":["e"],"id":null}"#,
            r#"{"args":["e"],"id":5}"#,
            r#"{"args":["e"],"id":"a\"b"}"#,
            r#"{"args":["e"],"id":"a\",\"id\":\"b"}"#,
            r#"{"args":["e","x\",\"id\":\"b"]}"#,
            r#"{"args":["e",{"id":"q","x":[1,2]}],"id":"z"}"#,
            r#"{"args":["ack::ab-1"]}"#,
            r#"{"args":"e"}"#,
            r#"{"args":{"a":1,"b":2},"id":"x"}"#,
            r#"{"id":"x","args":["e",1]}"#,
            r#"{"args":["e"],"x":1,"id":"y"}"#,
            r#"{"args":["e"],"args":["f"]}"#,
            r#"{"args":["e"],"id":"x","id":"y"}"#,
            r#"{ "args" : ["e",1] , "id" : "x" }"#,
            r#"{"args":["e",1] ,"id":"x"}"#,
            r#"{"args": ["bye"],"id":"x"}"#,
            r#"{"args": ["bye"]}"#,
            r#"{"args":["e",1]
}"#,
            r#"{"args":["e",1],"id":"x" }"#,
            r#"{"\u0061rgs":["e",1,2],"id":"x"}"#,
            r#"{"x":[1,2,3]}"#,
            r#"{}"#,
        ];
        for max in [0, 1, 2, 4096] {
            for text in texts {
                let mut framed = Framed::default();
                Reader::new(1 << 20).feed_framed(format!("[{text}]").as_bytes(), &mut framed).unwrap();
                let (msg, shape) = framed.iter().next().unwrap();
                assert_eq!(msg, text);
                assert_eq!(parse_framed(msg, shape, max), parse_with_limit(msg, max), "{text} (maxArgs {max})");
            }
        }
    }

    #[test]
    fn encode_round_trip() {
        let mut s = String::new();
        encode_event(r#"["e",1]"#, true, Some("q\"1"), &mut s);
        assert_eq!(s, r#"{"args":["e",1],"id":"q\"1"}"#);
        s.clear();
        encode_event_our_id(r#"["e",1]"#, "0123456789ab-", 42, &mut s);
        let mut via_id = String::new();
        encode_event(r#"["e",1]"#, true, Some("0123456789ab-42"), &mut via_id);
        assert_eq!(s, via_id);
        s.clear();
        encode_ack("q\"1", &mut s);
        assert_eq!(s, r#"{"args":["ack::q\"1"]}"#);
        assert_eq!(parse(&s).unwrap(), Incoming::Ack { id: "q\"1".into() });
    }

    #[test]
    fn protocol_messages() {
        let mut s = String::new();
        encode_call(HEARTBEAT, None, &mut s);
        assert_eq!(s, r#"["_uhura_hb"]"#);
        s.clear();
        encode_call("start", Some(r#"{"objectMode":true}"#), &mut s);
        assert_eq!(s, r#"["start",{"objectMode":true}]"#);
        s.clear();
        encode_set_string("sessionID", "abc", &mut s);
        assert_eq!(s, r#"["_set","sessionID","abc"]"#);
        for (args, wire) in
            [(r#" ["k", 1] "#, r#"["_set","k", 1]"#), ("[ ]", r#"["_set"]"#), (r#"[{"a":1}]"#, r#"["_set",{"a":1}]"#)]
        {
            s.clear();
            encode_set(args, &mut s);
            assert_eq!(s, wire);
        }
    }
}
