//! The three message shapes of docs/PROTOCOL.md §2, parsed without touching user
//! arguments: they stay raw JSON text so JavaScript can take them untouched.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Prefix of an acknowledgement's event name: `{"args":["ack::<id>"]}`.
pub const ACK_PREFIX: &str = "ack::";

/// One decoded message. `args` is the raw JSON text of the whole argument
/// array, event name first (`["event", 1, {"x": 2}]`).
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Event { name: Cow<'a, str>, args: &'a str, id: Option<Cow<'a, str>> },
    Ack { id: Cow<'a, str> },
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

/// Parses one message as produced by the framing reader.
pub fn parse(text: &str) -> Result<Incoming<'_>, MessageError> {
    let trimmed = text.trim_start();
    let (args, id) = match trimmed.as_bytes().first() {
        Some(b'[') => (trimmed, None),
        Some(b'{') => {
            let obj: ObjectShape<'_> =
                serde_json::from_str(trimmed).map_err(|_| MessageError("message object is not {\"args\": [...]}"))?;
            let args = obj.args.ok_or(MessageError("message object has no \"args\" array"))?;
            (args.get(), obj.id.map(|raw| raw.get()))
        }
        _ => return Err(MessageError("message is neither an array nor an object")),
    };
    if !args.starts_with('[') {
        return Err(MessageError("message \"args\" is not an array"));
    }
    let name = event_name(args)?;
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
            let id: Cow<'_, str> =
                serde_json::from_str(raw).map_err(|_| MessageError("message \"id\" is not a string"))?;
            // The old peers skip the ack when the id is falsy; so do we.
            (!id.is_empty()).then_some(id)
        }
    };
    Ok(Incoming::Event { name, args, id })
}

/// Reads the first element of a JSON array, which must be a string, and
/// skips the rest without building values.
fn event_name(args: &str) -> Result<Cow<'_, str>, MessageError> {
    struct NameVisitor;
    impl<'de> serde::de::Visitor<'de> for NameVisitor {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array whose first element is a string")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let name = seq.next_element::<BorrowedOrOwned<'de>>()?.map(|n| n.0);
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(name)
        }
    }
    let mut de = serde_json::Deserializer::from_str(args);
    match serde::Deserializer::deserialize_seq(&mut de, NameVisitor) {
        Ok(Some(name)) => Ok(name),
        Ok(None) => Err(MessageError("message has no event name")),
        Err(_) => Err(MessageError("event name is not a string")),
    }
}

/// A string that borrows from the input unless it had escapes.
struct BorrowedOrOwned<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedOrOwned<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BorrowedOrOwned<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedOrOwned(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedOrOwned(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
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

/// Encodes `{"args":["ack::<id>"]}`.
pub fn encode_ack(id: &str, out: &mut String) {
    out.push_str("{\"args\":[");
    push_json_string(&format!("{ACK_PREFIX}{id}"), out);
    out.push_str("]}");
}

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
        assert_eq!(m, Incoming::Event { name: "wé".into(), args: r#"["w\u00e9",{"a":[1]}]"#, id: Some("abc".into()) });
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
    fn encode_round_trip() {
        let mut s = String::new();
        encode_event(r#"["e",1]"#, true, Some("q\"1"), &mut s);
        assert_eq!(s, r#"{"args":["e",1],"id":"q\"1"}"#);
        s.clear();
        encode_ack("q\"1", &mut s);
        assert_eq!(s, r#"{"args":["ack::q\"1"]}"#);
        assert_eq!(parse(&s).unwrap(), Incoming::Ack { id: "q\"1".into() });
    }
}
