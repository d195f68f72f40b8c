//! Property tests of the stream framing.

mod common;
use common::read_chunks;
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use uhura::protocol::framing::{Framed, Reader, Writer};
use uhura::protocol::message::{decode_framed_string, decode_string, parse_framed, parse_with_limit, Incoming};

// ---- generators ----

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z\"\\\\/\\n\\t\\r\\u{0}-\\u{1f}\\u{7f}é☃😀\\u{2028}\\u{fffd}\\u{10ffff} ]{0,24}",
        // long plain runs exercise the word-at-a-time string scan
        "[a-zA-Z0-9 ]{0,200}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((json_string(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A message: an array or an object at the top.
fn json_message() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(json_value(), 0..6).prop_map(Value::Array),
        prop::collection::vec((json_string(), json_value()), 0..6)
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
    ]
}

/// A message as our peers send it, `{"args":["<name>", ...],"id":"<id>"}`, or with an id of
/// another type, or none.
fn our_message() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        json_string().prop_map(Value::String),
        "[0-9a-f]{12}-[0-9]{1,20}".prop_map(Value::String),
        json_value(),
    ];
    (json_string(), prop::collection::vec(json_value(), 0..4), prop::option::of(id)).prop_map(|(name, rest, id)| {
        let mut args = vec![Value::String(name)];
        args.extend(rest);
        let mut m = Map::new();
        m.insert("args".to_owned(), Value::Array(args));
        if let Some(id) = id {
            m.insert("id".to_owned(), id);
        }
        Value::Object(m)
    })
}

/// Tiny deterministic PRNG so one `u64` drives the rendering style.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, in_16: u64) -> bool {
        self.next() % 16 < in_16
    }
}

/// Serialize `v` as JSON, with random whitespace between tokens and random `\uXXXX`
/// escapes (surrogate pairs for astral chars), when `style` asks for them.
fn render(v: &Value, rng: &mut Rng, fancy: bool, out: &mut String) {
    fn ws(rng: &mut Rng, fancy: bool, out: &mut String) {
        if fancy && rng.chance(4) {
            for _ in 0..=rng.next() % 3 {
                out.push([' ', '\t', '\n', '\r'][(rng.next() % 4) as usize]);
            }
        }
    }
    fn string(s: &str, rng: &mut Rng, fancy: bool, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' if fancy && rng.chance(8) => out.push_str("\\t"),
                '/' if fancy && rng.chance(8) => out.push_str("\\/"),
                c if (c as u32) < 0x20 || (fancy && rng.chance(3)) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        if rng.chance(8) {
                            out.push_str(&format!("\\u{u:04X}"));
                        } else {
                            out.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&v.to_string()),
        Value::String(s) => string(s, rng, fancy, out),
        Value::Array(a) => {
            out.push('[');
            for (k, x) in a.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                ws(rng, fancy, out);
                render(x, rng, fancy, out);
                ws(rng, fancy, out);
            }
            if a.is_empty() {
                ws(rng, fancy, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (k, (key, x)) in m.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                ws(rng, fancy, out);
                string(key, rng, fancy, out);
                ws(rng, fancy, out);
                out.push(':');
                ws(rng, fancy, out);
                render(x, rng, fancy, out);
                ws(rng, fancy, out);
            }
            if m.is_empty() {
                ws(rng, fancy, out);
            }
            out.push('}');
        }
    }
}

/// Cut `data` at the given points (in any order, repeats allowed).
fn chunks<'a>(data: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    at.push(0);
    at.push(data.len());
    at.sort_unstable();
    at.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

fn junk_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        prop::sample::select(b"[]{}\",:0123456789-+.eEtrufalsn \\/\n\t\r\x00\xc3\xa9\xf0\x9f".to_vec()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    /// Duplicate a slice of the stream somewhere else.
    Splice(Index, Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), junk_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<Index>(), junk_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
    ]
}

fn mutate(data: &mut Vec<u8>, muts: &[Mutation]) {
    for m in muts {
        let len = data.len();
        match m {
            Mutation::Replace(i, b) if len > 0 => data[i.index(len)] = *b,
            Mutation::Insert(i, b) => data.insert(i.index(len + 1), *b),
            Mutation::Delete(i) if len > 0 => {
                data.remove(i.index(len));
            }
            Mutation::Splice(a, b, c) if len > 0 => {
                let (a, b) = (a.index(len), b.index(len));
                let piece = data[a.min(b)..a.max(b)].to_vec();
                let at = c.index(len + 1);
                data.splice(at..at, piece);
            }
            _ => {}
        }
    }
}

fn stream(msgs: &[Value], seed: u64, fancy: bool) -> (Vec<String>, Vec<u8>, Writer) {
    let mut rng = Rng(seed | 1);
    let texts: Vec<String> = msgs
        .iter()
        .map(|m| {
            let mut s = String::new();
            render(m, &mut rng, fancy, &mut s);
            s
        })
        .collect();
    let mut w = Writer::new();
    let mut buf = Vec::new();
    for t in &texts {
        w.write_raw(t, &mut buf);
    }
    (texts, buf, w)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// (a) Written with Writer, read back in any chunking: the same messages, byte for byte.
    #[test]
    fn roundtrip(
        msgs in prop::collection::vec(json_message(), 0..8),
        seed in any::<u64>(),
        fancy in any::<bool>(),
        close in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let (texts, mut buf, mut w) = stream(&msgs, seed, fancy);
        if close {
            w.finish(&mut buf);
        }
        let (got, err) = read_chunks(chunks(&buf, &cuts), usize::MAX);
        prop_assert_eq!(err, None);
        prop_assert_eq!(&got, &texts);
        // (serde_json's default float parsing is not exact, so compare to the parsed text.)
        for (g, t) in got.iter().zip(&texts) {
            let v: Value = serde_json::from_str(g).unwrap();
            prop_assert_eq!(&v, &serde_json::from_str::<Value>(t).unwrap());
        }
        // one byte at a time
        let (got1, err1) = read_chunks(buf.chunks(1), usize::MAX);
        prop_assert_eq!((got1, err1), (got, None));
    }

    /// (a') The same through a closed stream followed by a second root array.
    #[test]
    fn roundtrip_two_roots(
        a in prop::collection::vec(json_message(), 0..4),
        b in prop::collection::vec(json_message(), 0..4),
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut w = Writer::new();
        let mut buf = Vec::new();
        let mut want = Vec::new();
        for m in &a {
            let s = serde_json::to_string(m).unwrap();
            w.write_raw(&s, &mut buf);
            want.push(s);
        }
        w.finish(&mut buf);
        let (tb, bb, _) = stream(&b, seed, true);
        buf.extend_from_slice(&bb);
        want.extend(tb);
        let (got, err) = read_chunks(chunks(&buf, &cuts), usize::MAX);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, want);
    }

    /// (b) Random bytes never panic, and the result does not depend on the chunking.
    #[test]
    fn random_bytes(
        data in prop::collection::vec(junk_byte(), 0..400),
        prefix in any::<bool>(),
        max in prop_oneof![Just(usize::MAX), 0usize..64],
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let mut data = data;
        if prefix {
            data.splice(0..0, b"[[".iter().copied());
        }
        let whole = read_chunks([&data[..]], max);
        prop_assert_eq!(read_chunks(chunks(&data, &cuts), max), whole.clone());
        prop_assert_eq!(read_chunks(data.chunks(1), max), whole.clone());
        for m in &whole.0 {
            prop_assert!(serde_json::from_str::<IgnoredAny>(m).is_ok(), "{}", m);
        }
    }

    /// (c) Random mutations of valid streams never panic, the result does not depend on the
    /// chunking, and every message read is valid JSON.
    #[test]
    fn mutated_streams(
        msgs in prop::collection::vec(json_message(), 1..5),
        seed in any::<u64>(),
        muts in prop::collection::vec(mutation(), 1..6),
        max in prop_oneof![Just(usize::MAX), 1usize..200],
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let (_, mut buf, _) = stream(&msgs, seed, true);
        mutate(&mut buf, &muts);
        let whole = read_chunks([&buf[..]], max);
        prop_assert_eq!(read_chunks(chunks(&buf, &cuts), max), whole.clone());
        prop_assert_eq!(read_chunks(buf.chunks(1), max), whole.clone());
        for m in &whole.0 {
            prop_assert!(m.len() <= max);
            prop_assert!(serde_json::from_str::<IgnoredAny>(m).is_ok(), "{}", m);
        }
    }

    /// (c2) A reader suspended between messages after every chunk where it can be (an idle
    /// connection's peer does so when its input drains) and resumed for the next reads the
    /// same messages and fails with the same error, at the same position, as one that never
    /// was; and it can be after a whole valid stream.
    #[test]
    fn suspended_readers_read_on_the_same(
        msgs in prop::collection::vec(json_message(), 1..5),
        seed in any::<u64>(),
        muts in prop::collection::vec(mutation(), 0..4),
        max in prop_oneof![Just(usize::MAX), 1usize..200],
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let (_, mut buf, _) = stream(&msgs, seed, true);
        let valid = muts.is_empty();
        mutate(&mut buf, &muts);
        let want = read_chunks(chunks(&buf, &cuts), max);
        let mut r = Reader::new(max);
        let mut out = Vec::new();
        let mut err = None;
        let mut suspended = 0;
        for c in chunks(&buf, &cuts) {
            if let Err(e) = r.feed(c, &mut out) {
                err = Some(e);
                break;
            }
            if let Some(at) = r.suspend() {
                r = Reader::resume(max, uhura::protocol::framing::DEFAULT_MAX_DEPTH, at);
                suspended += 1;
            }
        }
        prop_assert_eq!((out, err.clone()), want);
        if valid && err.is_none() {
            prop_assert!(r.suspend().is_some(), "a whole stream ends between messages");
            prop_assert!(suspended > 0);
        }
    }

    /// (d) On one (possibly mutated) message, the reader agrees with serde_json about
    /// validity.
    #[test]
    fn agrees_with_serde_json(
        msg in json_message(),
        seed in any::<u64>(),
        muts in prop::collection::vec(mutation(), 0..4),
    ) {
        let mut rng = Rng(seed | 1);
        let mut text = String::new();
        render(&msg, &mut rng, true, &mut text);
        let mut m = text.into_bytes();
        mutate(&mut m, &muts);
        let mut framed = b"[".to_vec();
        framed.extend_from_slice(&m);
        framed.push(b']');
        let (got, err) = read_chunks([&framed[..]], usize::MAX);
        let trimmed = std::str::from_utf8(&m)
            .map(|s| s.trim_matches([' ', '\t', '\n', '\r']).to_owned());
        let mine = err.is_none()
            && got.len() == 1
            && trimmed.as_ref().is_ok_and(|t| *t == got[0]);
        let theirs = trimmed.as_ref().is_ok_and(|t| t.starts_with(['[', '{']))
            && serde_json::from_slice::<IgnoredAny>(&m).is_ok();
        prop_assert_eq!(mine, theirs, "{:?} -> {:?} {:?}", String::from_utf8_lossy(&m), got, err);
    }

    /// (e) Whatever the chunking, the `Shape` of each message tells the truth about it:
    /// whether it holds an escape or a byte >= 0x80, where its last string value
    /// directly inside it starts; and the message parser and id decoding that rely on it
    /// read each message as the general ones do.
    #[test]
    fn shapes_tell_the_truth(
        msgs in prop::collection::vec(prop_oneof![json_message(), our_message()], 1..6),
        seed in any::<u64>(),
        fancy in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let (texts, buf, _) = stream(&msgs, seed, fancy);
        let mut r = Reader::new(usize::MAX);
        let mut framed = Framed::default();
        for c in chunks(&buf, &cuts) {
            r.feed_framed(c, &mut framed).unwrap();
        }
        let got: Vec<_> = framed.iter().collect();
        prop_assert_eq!(got.len(), texts.len());
        for ((text, shape), want) in got.into_iter().zip(&texts) {
            prop_assert_eq!(text, want.as_str());
            prop_assert_eq!(shape.escapes, text.contains('\\'), "{}", text);
            prop_assert_eq!(shape.non_ascii, !text.is_ascii(), "{}", text);
            let values: Vec<&RawValue> = if text.starts_with('[') {
                serde_json::from_str(text).unwrap()
            } else {
                serde_json::from_str::<HashMap<String, &RawValue>>(text).unwrap().into_values().collect()
            };
            let last = values
                .iter()
                .filter(|v| v.get().starts_with('"'))
                .map(|v| v.get().as_ptr() as usize - text.as_ptr() as usize)
                .max()
                .unwrap_or(0);
            prop_assert_eq!(shape.last_string, last, "{}", text);
            for max_args in [0, 2, 4096] {
                let parsed = parse_framed(text, shape, max_args);
                prop_assert_eq!(&parsed, &parse_with_limit(text, max_args), "{}", text);
                if let Ok(Incoming::Event { id: Some(id), .. }) = parsed {
                    prop_assert_eq!(decode_framed_string(id, shape), decode_string(id), "{}", text);
                }
            }
        }
    }
}
