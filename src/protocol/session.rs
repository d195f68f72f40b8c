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
