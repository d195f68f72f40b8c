//! The session merge (src/protocol/session.rs) on arbitrary `_set` payloads, in both forms
//! (`["_set", key, value]` and `["_set", {...}]`) and any other shape, applied directly and
//! through a connected client `Peer` (which keeps its session as JSON text between every
//! other message, as the driver has an idle connection's compacted). The result must equal a reference merge computed here
//! on our own model (an ordered list of fields): a key sets one field (a missing value
//! sets null), an object sets each of its fields (a repeated key: the last value, at the
//! first position, as JSON.parse does), anything else changes nothing.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::time::Instant;
use uhura::protocol::entropy::Entropy;
use uhura::protocol::json;
use uhura::protocol::peer::{Config, Event, Peer, Role};
use uhura::protocol::session::{self, Session};

#[derive(Arbitrary, Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Int(i32),
    Float(u16, u8),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(Key, J)>),
}

/// Keys from a small set (so merges overlap) or any string.
#[derive(Arbitrary, Debug, Clone)]
enum Key {
    Small(u8),
    Any(String),
}

impl Key {
    fn text(&self) -> String {
        match self {
            Key::Small(n) => ["a", "b", "sessionID", "cookie", "__proto__", "", "é", "1"][usize::from(n % 8)].into(),
            Key::Any(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum SetMsg {
    /// `["_set", key, value]`, or `["_set", key]`.
    KeyForm(Key, Option<J>),
    /// `["_set", {...}]`, fields in order, repeats allowed.
    ObjectForm(Vec<(Key, J)>),
    /// `["_set", <anything>, ...]`
    Other(Vec<J>),
    /// The arguments of a `_set` of the recorded traffic (tests/vectors/).
    Recorded(u8),
}

include!("recorded.rs");

/// The `_set` arguments (after the name) of the recorded traffic.
fn recorded_sets() -> &'static [Vec<Value>] {
    static SETS: std::sync::OnceLock<Vec<Vec<Value>>> = std::sync::OnceLock::new();
    SETS.get_or_init(|| {
        let mut sets = Vec::new();
        for m in recorded_messages() {
            let v: Value = serde_json::from_str(m).unwrap();
            let args = if v.is_array() { v } else { v["args"].clone() };
            if args[0] == "_set" {
                sets.push(args.as_array().unwrap()[1..].to_vec());
            }
        }
        sets
    })
}

fn recorded_set(i: u8) -> &'static [Value] {
    let all = recorded_sets();
    &all[usize::from(i) % all.len()]
}

fn to_text(j: &J, depth: usize, out: &mut String) {
    if depth > 32 {
        out.push_str("null");
        return;
    }
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Int(n) => out.push_str(&n.to_string()),
        J::Float(m, e) => out.push_str(&format!("{m}.5e-{}", e % 20)),
        J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
        J::Arr(v) => {
            out.push('[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                to_text(x, depth + 1, out);
            }
            out.push(']');
        }
        J::Obj(fields) => obj_text(fields, depth, out),
    }
}

fn obj_text(fields: &[(Key, J)], depth: usize, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(&k.text()).unwrap());
        out.push(':');
        to_text(v, depth + 1, out);
    }
    out.push('}');
}

/// `j` as `message_text` writes it at nesting `depth` (deep values are cut there).
fn value(j: &J, depth: usize) -> Value {
    let mut s = String::new();
    to_text(j, depth, &mut s);
    json::parse_value(&s, uhura::protocol::framing::MAX_DEPTH_LIMIT).unwrap()
}

/// The reference: an ordered list of fields.
fn reference_set(model: &mut Vec<(String, Value)>, key: String, v: Value) {
    // The server's resume digest: no `_set` changes it.
    if key == session::RESUME_KEY {
        return;
    }
    match model.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = v,
        None => model.push((key, v)),
    }
}

fn reference_merge(model: &mut Vec<(String, Value)>, m: &SetMsg) {
    match m {
        SetMsg::KeyForm(k, v) => reference_set(model, k.text(), v.as_ref().map_or(Value::Null, |v| value(v, 0))),
        SetMsg::ObjectForm(fields) => {
            for (k, v) in fields {
                reference_set(model, k.text(), value(v, 1));
            }
        }
        SetMsg::Other(v) => match v.first() {
            Some(J::Str(key)) => reference_set(model, key.clone(), v.get(1).map_or(Value::Null, |v| value(v, 0))),
            Some(J::Obj(fields)) => {
                // An object nested deeper than our text limit is written as null there.
                let mut s = String::new();
                obj_text(fields, 0, &mut s);
                let parsed = json::parse_value(&s, uhura::protocol::framing::MAX_DEPTH_LIMIT).unwrap();
                for (k, v) in parsed.as_object().unwrap() {
                    reference_set(model, k.clone(), v.clone());
                }
            }
            _ => {}
        },
        SetMsg::Recorded(i) => match recorded_set(*i) {
            [Value::String(k), rest @ ..] => {
                reference_set(model, k.clone(), rest.first().cloned().unwrap_or(Value::Null))
            }
            [Value::Object(fields), ..] => {
                for (k, v) in fields {
                    reference_set(model, k.clone(), v.clone());
                }
            }
            _ => {}
        },
    }
}

fn message_text(m: &SetMsg) -> String {
    let mut s = String::from("[\"_set\"");
    match m {
        SetMsg::KeyForm(k, v) => {
            s.push(',');
            s.push_str(&serde_json::to_string(&k.text()).unwrap());
            if let Some(v) = v {
                s.push(',');
                to_text(v, 0, &mut s);
            }
        }
        SetMsg::ObjectForm(fields) => {
            s.push(',');
            obj_text(fields, 0, &mut s);
        }
        SetMsg::Other(v) => {
            for x in v {
                s.push(',');
                to_text(x, 0, &mut s);
            }
        }
        SetMsg::Recorded(i) => {
            for x in recorded_set(*i) {
                s.push(',');
                s.push_str(&x.to_string());
            }
        }
    }
    s.push(']');
    s
}

fn seeded(seed: u8) -> Config {
    Config { entropy: Some(Entropy::seeded([seed; 32])), ..Config::default() }
}

fn same(session: &Session, model: &[(String, Value)]) {
    let got: Vec<(&String, &Value)> = session.iter().collect();
    let want: Vec<(&String, &Value)> = model.iter().map(|(k, v)| (k, v)).collect();
    assert_eq!(got, want);
}

fuzz_target!(|msgs: Vec<SetMsg>| {
    let now = Instant::now();
    // A client that completed a handshake with an old (0.1.x) server.
    let mut peer = Peer::new(Role::Client, seeded(1), now);
    peer.handle_open(now);
    peer.handle_receive(b"[\n{\"args\":[\"connect\",{\"objectMode\":true,\"enableAcks\":true}],\"id\":\"c\"}", now);
    assert!(peer.is_ready());
    while peer.poll_event().is_some() {}

    let mut local = Peer::new(Role::Client, seeded(2), now);
    let mut direct = Session::new();
    let mut model: Vec<(String, Value)> = Vec::new();
    for (i, m) in msgs.iter().take(64).enumerate() {
        if i % 2 == 1 {
            // Input drained: the session becomes its text until the next change.
            peer.release_buffers();
            local.release_buffers();
            same(&peer.session(), &model);
        }
        let text = message_text(m);
        reference_merge(&mut model, m);

        // Directly: the arguments after the name.
        let values = json::parse_args(&text, uhura::protocol::framing::MAX_DEPTH_LIMIT).unwrap();
        session::merge(&mut direct, &values[1..]);
        same(&direct, &model);

        // Through the peer, as a received message.
        let mut framed = String::from("\n,\n");
        framed.push_str(&text);
        peer.handle_receive(framed.as_bytes(), now);
        match peer.poll_event() {
            Some(Event::Set(args)) => assert_eq!(args, text),
            other => panic!("expected Set, got {other:?}"),
        }
        same(&peer.session(), &model);

        // And as a local set (the same arguments, without the name).
        let args = format!("[{}", text["[\"_set\"".len()..].trim_start_matches(','));
        local.set(&args).unwrap();
        same(&local.session(), &model);
    }
});
