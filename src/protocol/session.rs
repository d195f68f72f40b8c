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
    // Rebuilt rather than cloned: a cloned `preserve_order` map keeps room
    // for as many entries as its hash table could hold (7 for the default
    // cookie's 4, ~350 bytes more per connection); collected, it has 4.
    let mut cookie = match template {
        Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        other => other.clone(),
    };
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
