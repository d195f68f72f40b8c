//! Inputs the fuzz targets in fuzz/ found that crashed or broke an invariant, kept as
//! plain tests (`cargo test --no-default-features`). See fuzz/README.md.

use uhura::engine::lines::{parse_line, Line, LineError};

/// `Link::write_lines` sliced each line after its first byte, which panics when the line
/// starts with a multi-byte character (`byte index 1 is not a char boundary`). The
/// decoder now splits after the first character and reports an unknown tag.
#[test]
fn line_starting_with_a_multibyte_character() {
    assert_eq!(parse_line("é[\"x\"]"), Err(LineError::UnknownTag('é')));
    assert_eq!(parse_line("\u{1F600}"), Err(LineError::UnknownTag('\u{1F600}')));
    assert_eq!(parse_line("e\u{e9}"), Ok(Line::Event("\u{e9}")));
}

/// serde_json's `Value` parser (with the `raw_value` feature this crate enables) reads an
/// object whose key is `$serde_json::private::RawValue` as an embedded raw value: such a
/// `_set` failed the connection ("unreadable _set message"), a local `set()` of it failed,
/// and a string under that key was merged as if it were the JSON it contains. JSON.parse
/// takes it as an ordinary key. Found by the `session_merge` target.
#[test]
fn set_with_serde_json_raw_value_key() {
    use serde_json::json;
    use std::time::Instant;
    use uhura::protocol::entropy::Entropy;
    use uhura::protocol::peer::{Config, Event, Peer, Role};

    let key = "$serde_json::private::RawValue";
    let now = Instant::now();
    let mut peer =
        Peer::new(Role::Client, Config { entropy: Some(Entropy::seeded([1; 32])), ..Config::default() }, now);
    peer.handle_open(now);
    peer.handle_receive(b"[\n[\"connect\",{\"objectMode\":true,\"enableAcks\":true}]", now);
    assert!(peer.is_ready());
    while peer.poll_event().is_some() {}

    let set = format!("\n,\n[\"_set\",{{\"{key}\":{{\"a\":1}}}}]\n,\n[\"_set\",{{\"{key}\":\"[\\\"k\\\"]\"}}]");
    peer.handle_receive(set.as_bytes(), now);
    assert!(matches!(peer.poll_event(), Some(Event::Set(_))));
    assert!(matches!(peer.poll_event(), Some(Event::Set(_))));
    assert!(!peer.has_failed());
    assert_eq!(peer.session().get(key), Some(&json!("[\"k\"]")));
    assert_eq!(peer.session().get("k"), None);

    peer.set(&format!("[{{\"{key}\":2}}]")).unwrap();
    peer.set(&format!("[\"x\",{{\"{key}\":3}}]")).unwrap();
    assert_eq!(peer.session().get(key), Some(&json!(2)));
    assert_eq!(peer.session().get("x"), Some(&json!({ key: 3 })));
}
