//! The stream framing against the recorded traffic of the old package (tests/vectors).
//! The malformed inputs of docs/PROTOCOL.md §7 are in tests/framing_malformed.rs.

mod common;
use common::{read_all, read_every_chunking, read_ok};
use serde_json::value::RawValue;
use serde_json::Value;
use uhura::protocol::framing::{Reader, Writer, DEFAULT_MAX_MESSAGE_SIZE};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

/// (label, recorded text) for both directions of every vector file.
fn vectors() -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(VECTORS)
        .expect("vectors directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected the recorded vectors, got {files:?}");
    let mut out = Vec::new();
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for dir in ["client_to_server", "server_to_client"] {
            let text = v[dir].as_str().unwrap_or_else(|| panic!("{f:?} {dir}"));
            out.push((format!("{} {dir}", f.display()), text.to_owned()));
        }
    }
    out
}

#[test]
fn vectors_read_in_every_chunking() {
    for (label, text) in vectors() {
        // Independent derivations of the expected messages:
        // 1. literally, by the separators (raw newlines cannot occur inside JSON strings);
        let literal: Vec<&str> = text
            .strip_prefix("[\n")
            .unwrap_or_else(|| panic!("{label}: does not start with [\\n"))
            .split("\n,\n")
            .collect();
        assert_eq!(literal.len(), text.matches("\n,\n").count() + 1);
        assert!(literal.len() >= 5, "{label}");
        for m in &literal {
            assert!(m.starts_with('[') || m.starts_with('{'), "{label}: {m}");
        }
        // 2. by serde_json, closing the array the old peer left open.
        let closed = format!("{text}\n]");
        let raw: Vec<&RawValue> = serde_json::from_str(&closed).unwrap();
        let values: Vec<Value> = serde_json::from_str(&closed).unwrap();
        let raw: Vec<&str> = raw.iter().map(|r| r.get()).collect();
        assert_eq!(raw, literal, "{label}");

        let (msgs, err) = read_every_chunking(text.as_bytes(), DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(err, None, "{label}");
        assert_eq!(msgs, literal, "{label}");
        let parsed: Vec<Value> = msgs.iter().map(|m| serde_json::from_str(m).unwrap()).collect();
        assert_eq!(parsed, values, "{label}");
        // Re-serialized by serde_json, each message gives the same text as the expected value.
        for (m, v) in msgs.iter().zip(&values) {
            let mine: Value = serde_json::from_str(m).unwrap();
            assert_eq!(serde_json::to_string(&mine).unwrap(), serde_json::to_string(v).unwrap(), "{label}");
        }

        // The reader is idle after the last message (array still open).
        let mut r = Reader::new(DEFAULT_MAX_MESSAGE_SIZE);
        let mut out = Vec::new();
        r.feed(text.as_bytes(), &mut out).unwrap();
        assert!(r.is_idle());
        // ... and the closed stream reads the same.
        let (again, err) = read_all(closed.as_bytes());
        assert_eq!(err, None);
        assert_eq!(again, msgs);
    }
}

#[test]
fn vectors_written_byte_for_byte() {
    for (label, text) in vectors() {
        let msgs = read_ok(text.as_bytes());
        let mut w = Writer::new();
        assert!(!w.has_started());
        let mut buf = Vec::new();
        for m in &msgs {
            w.write_raw(m, &mut buf);
            assert!(w.has_started());
        }
        assert_eq!(String::from_utf8(buf.clone()).unwrap(), text, "{label}");
        // A clean end closes the array, and a reader sees the same messages.
        w.finish(&mut buf);
        assert!(buf.ends_with(b"\n]\n"));
        assert!(!w.has_started());
        assert_eq!(read_ok(&buf), msgs);
    }
}

#[test]
fn writer_framing() {
    let mut w = Writer::default();
    let mut buf = Vec::new();
    w.finish(&mut buf);
    assert_eq!(buf, b"[]\n");
    assert_eq!(read_ok(&buf), Vec::<String>::new());

    let mut buf = Vec::new();
    w.write_raw("[\"a\"]", &mut buf);
    w.write_raw("{\"args\":[\"b\"]}", &mut buf);
    w.finish(&mut buf);
    w.write_raw("[\"c\"]", &mut buf);
    assert_eq!(buf, b"[\n[\"a\"]\n,\n{\"args\":[\"b\"]}\n]\n[\n[\"c\"]".as_slice());
    assert_eq!(read_ok(&buf), ["[\"a\"]", "{\"args\":[\"b\"]}", "[\"c\"]"]);
}
