//! The peer's copy of the session, kept as JSON text while it is not used.
//!
//! A `preserve_order` map of a typical session (its id, the cookie's map of
//! four fields) takes ~1.1 KB of allocations; its JSON text ~200 bytes. An
//! idle connection holds its session for as long as it stays up, and uses
//! it only in the handshake, on `_set` and when something reads it; so the
//! driver compacts it once its input has drained, and it becomes a map again
//! on the next change. A store that keeps sessions as text in the same
//! process (the memory store) holds an equal text: the driver offers it
//! (`share`), and the peer keeps that one instead of its own.

use crate::protocol::json;
use crate::protocol::session::Session;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

/// A session as a map while in use, or as its JSON text.
#[derive(Debug)]
pub(super) enum SessionCell {
    /// Being used (merged into, replaced). Boxed, so the idle form takes
    /// 16 bytes in the peer, not a map's 72.
    Map(Box<Session>),
    /// Compacted: the text `serde_json` wrote for the map, which reads back
    /// into an equal map, in the same order (see `read`); for an empty
    /// session, one empty text all peers share (`empty`). Shared with an
    /// equal copy a store keeps (`share`).
    Text(Arc<str>),
}

impl Default for SessionCell {
    fn default() -> Self {
        SessionCell::Text(empty())
    }
}

impl SessionCell {
    /// The session, parsed from its text if compacted (and left compacted).
    pub(super) fn get(&self) -> Cow<'_, Session> {
        match self {
            SessionCell::Map(map) => Cow::Borrowed(map),
            SessionCell::Text(text) => Cow::Owned(read(text)),
        }
    }

    /// The session as a map, to change it: stays a map until `compact`.
    pub(super) fn get_mut(&mut self) -> &mut Session {
        if let SessionCell::Text(text) = self {
            *self = SessionCell::Map(Box::new(read(text)));
        }
        match self {
            SessionCell::Map(map) => map,
            SessionCell::Text(_) => unreachable!("just made a map"),
        }
    }

    /// Replaces the session.
    pub(super) fn set(&mut self, session: Session) {
        *self = SessionCell::Map(Box::new(session));
    }

    /// The session's JSON text, as `Value::Object(session).to_string()`
    /// writes it.
    pub(super) fn to_json(&self) -> Cow<'_, str> {
        match self {
            SessionCell::Map(map) => Cow::Owned(write(map)),
            SessionCell::Text(text) if text.is_empty() => Cow::Borrowed("{}"),
            SessionCell::Text(text) => Cow::Borrowed(text),
        }
    }

    /// Keeps the session as its text until it is next changed. Returns
    /// whether it made a text now (one worth sharing: not empty).
    pub(super) fn compact(&mut self) -> bool {
        let SessionCell::Map(map) = self else { return false };
        let empty = map.is_empty();
        *self = SessionCell::Text(if empty { self::empty() } else { write(map).into() });
        !empty
    }

    /// Keeps `text` instead of its own copy if that is the same text.
    /// Returns whether it does now.
    pub(super) fn share(&mut self, text: &Arc<str>) -> bool {
        match self {
            SessionCell::Text(own) if !own.is_empty() && **own == **text => {
                if !Arc::ptr_eq(own, text) {
                    *own = text.clone();
                }
                true
            }
            _ => false,
        }
    }
}

/// The text of every empty session: one allocation for the process, not
/// one per peer.
fn empty() -> Arc<str> {
    static EMPTY: OnceLock<Arc<str>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}

fn write(map: &Session) -> String {
    // Serializing a map of strings and values cannot fail.
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

/// The map `text` (one `write` wrote) holds. Our parser, not `serde_json`'s:
/// no recursion limit (a session may nest as deep as `max_depth` allows),
/// and numbers parsed exactly, so every `f64` reads back as itself from the
/// shortest text `serde_json` writes for it (an integer-valued float keeps
/// its `.0`, and stays a float).
fn read(text: &str) -> Session {
    if text.is_empty() {
        return Session::new();
    }
    match json::parse_value(text, usize::MAX) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            debug_assert!(false, "a compacted session's text did not read back: {text}");
            Session::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn map(v: Value) -> Session {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn compacted_sessions_read_back_equal_in_the_same_order() {
        let deep = (0..300).fold(json!("bottom"), |v, _| json!({ "d": [v] }));
        let session = map(json!({
            "z": 1, "cookie": {"originalMaxAge": null, "expires": null, "httpOnly": true, "path": "/"},
            "a": "h\u{e9}llo \u{1F600} \"q\" \\ \n\t\u{1}", "é": [1.5, -0.0, 2500.0, 1e300, 5e-324, 0.1, 1.0e-7],
            "big": u64::MAX, "neg": i64::MIN, "m": {"b": {"c": [null, true, false, {}, []]}, "a": 2},
            "$serde_json::private::RawValue": "[1]", "deep": deep,
        }));
        let mut cell = SessionCell::default();
        cell.set(session.clone());
        let text = cell.to_json().into_owned();
        assert_eq!(text, Value::Object(session.clone()).to_string());
        cell.compact();
        assert!(matches!(cell, SessionCell::Text(_)));
        assert_eq!(cell.to_json(), text);
        let back = cell.get().into_owned();
        assert_eq!(back, session);
        assert!(back.keys().eq(session.keys()), "key order kept");
        assert_eq!(Value::Object(back).to_string(), text);
        // Floats stay floats, with the same bits.
        let floats =
            cell.get()["é"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap().to_bits()).collect::<Vec<_>>();
        let want = [1.5f64, -0.0, 2500.0, 1e300, 5e-324, 0.1, 1.0e-7].map(f64::to_bits);
        assert_eq!(floats, want);
        assert!(cell.get()["é"][2].is_f64());
        assert!(matches!(cell, SessionCell::Text(_)), "reading leaves it compact");

        // A change makes it a map again, ordered as before, new keys last.
        cell.get_mut().insert("a".into(), json!(2));
        cell.get_mut().insert("new".into(), json!({"x": "y"}));
        assert!(matches!(cell, SessionCell::Map(_)));
        let mut want = session;
        want.insert("a".into(), json!(2));
        want.insert("new".into(), json!({"x": "y"}));
        assert!(cell.get().keys().eq(want.keys()));
        assert_eq!(*cell.get(), want);
    }

    #[test]
    fn shares_an_equal_text_and_changes_only_its_own_copy() {
        let session = map(json!({"cookie": {"path": "/"}, "a": 1}));
        let mut cell = SessionCell::default();
        cell.set(session.clone());
        let stored: Arc<str> = cell.to_json().into_owned().into();
        // Not while it is a map, nor a different text.
        assert!(!cell.share(&stored));
        assert!(cell.compact());
        assert!(!cell.share(&Arc::from(r#"{"a":2}"#)));
        assert!(cell.share(&stored));
        assert!(matches!(&cell, SessionCell::Text(t) if Arc::ptr_eq(t, &stored)));
        assert_eq!(Arc::strong_count(&stored), 2);
        assert_eq!(*cell.get(), session);
        // A change makes its own map; the shared text stays as it was.
        cell.get_mut().insert("a".into(), json!(3));
        assert_eq!(Arc::strong_count(&stored), 1);
        assert_eq!(&*stored, r#"{"cookie":{"path":"/"},"a":1}"#);
        assert!(cell.compact());
        assert_eq!(cell.to_json(), r#"{"cookie":{"path":"/"},"a":3}"#);
        assert!(!cell.share(&stored));
        // An empty session has no text to share.
        cell.set(Session::new());
        assert!(!cell.compact());
        assert!(!cell.share(&Arc::from("{}")));
    }

    #[test]
    fn empty_sessions_allocate_nothing() {
        let mut cell = SessionCell::default();
        assert!(matches!(cell, SessionCell::Text(ref t) if Arc::ptr_eq(t, &empty())));
        assert_eq!(cell.to_json(), "{}");
        assert!(cell.get().is_empty());
        cell.get_mut().insert("a".into(), json!(1));
        cell.compact();
        assert_eq!(cell.to_json(), r#"{"a":1}"#);
        cell.set(Session::new());
        cell.compact();
        assert!(matches!(cell, SessionCell::Text(ref t) if Arc::ptr_eq(t, &empty())));
        assert_eq!(cell.to_json(), "{}");
        assert_eq!(*cell.get(), Session::new());
    }
}
