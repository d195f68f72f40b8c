//! The shared key/value session (docs/PROTOCOL.md §5) and session ids.

use serde_json::{Map, Value};

pub type Session = Map<String, Value>;

/// Length and alphabet of the ids the old server makes with `uid2(24)`.
pub const SESSION_ID_LEN: usize = 24;
const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh session id: 24 characters of `[A-Za-z0-9]` from the OS CSPRNG.
/// Bytes of 248 and above are rejected so each character is uniform
/// (248 = 4 * 62; a plain `% 62` would favour the first 8 characters).
pub fn new_session_id() -> String {
    let mut id = String::with_capacity(SESSION_ID_LEN);
    let mut buf = [0u8; 32];
    while id.len() < SESSION_ID_LEN {
        fill_random(&mut buf);
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

pub fn fill_random(buf: &mut [u8]) {
    // getrandom only fails when the OS has no entropy source at all; there is
    // no meaningful fallback for session ids, so that is a fatal condition.
    getrandom::fill(buf).expect("the OS random number generator is unavailable");
}

/// Applies the arguments of a `_set` message (after the name) the way the old
/// peers do: `[key, value]` sets one field (a missing value becomes null),
/// `[{...}]` merges fields, anything else changes nothing.
pub fn merge(session: &mut Session, args: &[Value]) {
    match args.first() {
        Some(Value::String(key)) => {
            session.insert(key.clone(), args.get(1).cloned().unwrap_or(Value::Null));
        }
        Some(Value::Object(fields)) => {
            for (k, v) in fields {
                session.insert(k.clone(), v.clone());
            }
        }
        _ => {}
    }
}

/// Parses JSON text into a `Value`, accepting every object key as `JSON.parse` does.
///
/// `serde_json`'s own `Value` parser cannot be used for peer or application data: with
/// the `raw_value` feature this crate enables, it reads an object whose first key is
/// `$serde_json::private::RawValue` as an embedded raw value, so it rejects most such
/// objects and turns `{"$serde_json::private::RawValue":"[1]"}` into `[1]` (found by
/// fuzzing the session merge). This parser reads keys as plain strings.
pub fn parse_value(text: &str) -> serde_json::Result<Value> {
    serde_json::from_str::<PlainValue>(text).map(|v| v.0)
}

/// [`parse_value`] for bytes.
pub fn parse_value_slice(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice::<PlainValue>(bytes).map(|v| v.0)
}

/// [`parse_value`] for a JSON array (of message arguments).
pub fn parse_array(text: &str) -> serde_json::Result<Vec<Value>> {
    serde_json::from_str::<Vec<PlainValue>>(text).map(|v| v.into_iter().map(|v| v.0).collect())
}

/// A `Value` built by our own visitor (see [`parse_value`]); numbers, strings and
/// floats are handled as `serde_json`'s `Value` handles them.
struct PlainValue(Value);

impl<'de> serde::Deserialize<'de> for PlainValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PlainValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<PlainValue, E> {
                Ok(PlainValue(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<PlainValue, E> {
                Ok(PlainValue(Value::from(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<PlainValue, E> {
                Ok(PlainValue(Value::from(n)))
            }
            fn visit_f64<E>(self, n: f64) -> Result<PlainValue, E> {
                Ok(PlainValue(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)))
            }
            fn visit_str<E>(self, s: &str) -> Result<PlainValue, E> {
                Ok(PlainValue(Value::String(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<PlainValue, E> {
                Ok(PlainValue(Value::String(s)))
            }
            fn visit_unit<E>(self) -> Result<PlainValue, E> {
                Ok(PlainValue(Value::Null))
            }
            fn visit_none<E>(self) -> Result<PlainValue, E> {
                Ok(PlainValue(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PlainValue, A::Error> {
                let mut v = Vec::new();
                while let Some(PlainValue(x)) = seq.next_element()? {
                    v.push(x);
                }
                Ok(PlainValue(Value::Array(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PlainValue, A::Error> {
                let mut m = Map::new();
                while let Some((k, PlainValue(v))) = map.next_entry::<String, PlainValue>()? {
                    m.insert(k, v);
                }
                Ok(PlainValue(Value::Object(m)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `cookie` field the 0.1.x server puts in every stored session
/// (connect's default Cookie); old clients carry it, so we store and send it too.
pub fn default_cookie() -> Value {
    serde_json::json!({"originalMaxAge": null, "expires": null, "httpOnly": true, "path": "/"})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_well_formed_and_distinct() {
        let a = new_session_id();
        let b = new_session_id();
        assert!(is_well_formed_id(&a) && is_well_formed_id(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn id_characters_are_roughly_uniform() {
        let mut counts = [0u32; 62];
        for _ in 0..2000 {
            for b in new_session_id().bytes() {
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
    fn parse_value_takes_any_key() {
        let key = "$serde_json::private::RawValue";
        let text = format!(r#"[{{"{key}":{{"a":1}}}},{{"{key}":"[1]"}},1.5,-2,18446744073709551615,"s",null]"#);
        let v = parse_array(&text).unwrap();
        assert_eq!(v[0], Value::Object(Map::from_iter([(key.to_owned(), json!({"a": 1}))])));
        assert_eq!(v[1], Value::Object(Map::from_iter([(key.to_owned(), json!("[1]"))])));
        assert_eq!(v[2..], [json!(1.5), json!(-2), json!(u64::MAX), json!("s"), Value::Null]);
        assert_eq!(parse_value(r#"{"b":1,"a":2,"b":3}"#).unwrap().to_string(), r#"{"b":3,"a":2}"#);
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
