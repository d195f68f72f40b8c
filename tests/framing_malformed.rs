//! The stream framing against the malformed inputs of docs/PROTOCOL.md §7, and other
//! edge cases: chunking, whitespace, UTF-8, nesting, error texts.

mod common;
use common::{read_all, read_chunks, read_err, read_every_chunking, read_ok};
use serde_json::Value;
use uhura::protocol::framing::{FrameError, Reader, DEFAULT_MAX_MESSAGE_SIZE};

// ---- docs/PROTOCOL.md §7 ----

#[test]
fn table_dot() {
    let e = read_err(b".");
    assert!(e.to_string().starts_with("Unexpected \".\" at position 0"), "{e}");
    assert_eq!(e.to_string(), "Unexpected \".\" at position 0 in state START");
    assert!(matches!(e, FrameError::Unexpected { position: 0, .. }));
}

#[test]
fn table_args_not_array_is_framed() {
    // A well-formed object message; its shape is checked above the framing.
    assert_eq!(read_ok(b"[{\"args\":\"notarray\"}]"), ["{\"args\":\"notarray\"}"]);
}

#[test]
fn table_null_and_numbers_are_bad_messages() {
    assert_eq!(read_err(b"[null]"), FrameError::BadMessage { position: 1 });
    assert_eq!(read_err(b"[1,2]"), FrameError::BadMessage { position: 1 });
    assert_eq!(read_err(b"[\"x\"]"), FrameError::BadMessage { position: 1 });
    assert_eq!(read_err(b"[true]"), FrameError::BadMessage { position: 1 });
    assert_eq!(read_err(b"[-1]"), FrameError::BadMessage { position: 1 });
    // after good messages, at the right absolute position
    let (msgs, e) = read_all(b"[\n[1]\n,\n 7]");
    assert_eq!(msgs, ["[1]"]);
    assert_eq!(e, Some(FrameError::BadMessage { position: 9 }));
}

#[test]
fn table_message_that_never_ends() {
    // Small limit, 1 MB of string content: fails as soon as the limit is passed.
    let limit = 1024;
    let mut r = Reader::new(limit);
    let mut out = Vec::new();
    r.feed(b"[[\"x\",\"", &mut out).unwrap();
    let chunk = vec![b'a'; 256];
    let mut fed = 7;
    let mut failed_at = None;
    for k in 0..4096 {
        match r.feed(&chunk, &mut out) {
            Ok(()) => fed += chunk.len(),
            Err(e) => {
                assert_eq!(e, FrameError::MessageTooLarge { limit });
                failed_at = Some(k);
                break;
            }
        }
    }
    // The message starts at byte 1; byte 1 + 1024 is the first one too many.
    assert_eq!(failed_at, Some(3), "fed {fed}");
    assert!(out.is_empty());
    assert!(e_to_string(r.feed(b"]]", &mut out)).contains("1024"), "poisoned with the same error");

    // Same with one big chunk.
    let mut big = b"[[\"x\",\"".to_vec();
    big.resize(1 << 20, b'a');
    assert_eq!(read_chunks([&big[..]], limit).1, Some(FrameError::MessageTooLarge { limit }));

    // Default limit, 20 MB in 1 MB chunks: fails on the chunk that passes 16 MiB.
    let mut r = Reader::new(DEFAULT_MAX_MESSAGE_SIZE);
    r.feed(b"[[\"x\",\"", &mut out).unwrap();
    let mb = vec![b'a'; 1 << 20];
    let mut failed_at = None;
    for k in 0..20 {
        if let Err(e) = r.feed(&mb, &mut out) {
            assert_eq!(e, FrameError::MessageTooLarge { limit: DEFAULT_MAX_MESSAGE_SIZE });
            failed_at = Some(k);
            break;
        }
    }
    assert_eq!(failed_at, Some(15));
}

fn e_to_string(r: Result<(), FrameError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn limit_is_exact_and_chunking_independent() {
    // `[1234]` is 6 bytes.
    for text in [&b"[[1234]]"[..], b"[ [1234] ]", b"[[1234],[\"ab\"]]"] {
        assert_eq!(read_every_chunking(text, 6).1, None);
        let (msgs, e) = read_every_chunking(text, 5);
        assert!(msgs.is_empty());
        assert_eq!(e, Some(FrameError::MessageTooLarge { limit: 5 }));
    }
    // Whitespace between messages does not count.
    let (msgs, e) = read_every_chunking(b"[[1]      ,        [2]]", 3);
    assert_eq!((msgs, e), (vec!["[1]".into(), "[2]".into()], None));
}

// ---- other cases ----

#[test]
fn several_root_arrays() {
    let want = ["[\"a\",1]", "{\"args\":[\"b\"]}"];
    for text in [
        &b"[[\"a\",1]]\n[{\"args\":[\"b\"]}]"[..],
        b"[[\"a\",1]][{\"args\":[\"b\"]}]",
        b"[[\"a\",1]]  \r\n\t [{\"args\":[\"b\"]}]\n",
        b"[[\"a\",1]][][{\"args\":[\"b\"]}][]",
    ] {
        assert_eq!(read_every_chunking(text, 1000), (want.map(String::from).to_vec(), None));
    }
}

#[test]
fn empty_root() {
    for text in [&b"[]"[..], b"[ ]", b" \n[\n]\n", b"[][]"] {
        assert_eq!(read_every_chunking(text, 1000), (vec![], None));
    }
    let mut r = Reader::new(100);
    let mut out = Vec::new();
    assert!(r.is_idle());
    r.feed(b"[", &mut out).unwrap();
    assert!(r.is_idle());
    r.feed(b"[", &mut out).unwrap();
    assert!(!r.is_idle());
    r.feed(b"]", &mut out).unwrap();
    assert!(r.is_idle());
    r.feed(b"]", &mut out).unwrap();
    assert!(r.is_idle());
    assert_eq!(out, ["[]"]);
}

#[test]
fn whitespace_everywhere() {
    let text = b" \t\r\n[ \t\r\n[ \t\r\n1 \t\r\n, \t\r\n{ \t\r\n\"k\" \t\r\n: \t\r\n[ \t\r\n] \t\r\n, \t\r\n\"l\" \t\r\n: \t\r\n-0.5e+3 \t\r\n} \t\r\n, \t\r\ntrue \t\r\n] \t\r\n, \t\r\n{ \t\r\n} \t\r\n] \t\r\n";
    let (msgs, e) = read_every_chunking(text, 1000);
    assert_eq!(e, None);
    assert_eq!(
        msgs,
        [
            "[ \t\r\n1 \t\r\n, \t\r\n{ \t\r\n\"k\" \t\r\n: \t\r\n[ \t\r\n] \t\r\n, \t\r\n\"l\" \t\r\n: \t\r\n-0.5e+3 \t\r\n} \t\r\n, \t\r\ntrue \t\r\n]",
            "{ \t\r\n}"
        ]
    );
    let v: Value = serde_json::from_str(&msgs[0]).unwrap();
    assert_eq!(v, serde_json::json!([1, {"k": [], "l": -500.0}, true]));
    // Other bytes are not whitespace.
    for ws in [&b"\x0b"[..], b"\x0c", b"\xc2\xa0", b"\x00"] {
        let mut t = b"[[1,".to_vec();
        t.extend_from_slice(ws);
        t.extend_from_slice(b"2]]");
        let e = read_err(&t);
        assert!(matches!(e, FrameError::Unexpected { position: 4, .. }), "{e}");
    }
}

#[test]
fn unicode_escape_split_everywhere() {
    let text = "[[\"caf\\u00e9\",\"\\ud83d\\ude00\",\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]]";
    let (msgs, e) = read_every_chunking(text.as_bytes(), 1000);
    assert_eq!(e, None);
    assert_eq!(msgs, [&text[1..text.len() - 1]]);
    let v: Value = serde_json::from_str(&msgs[0]).unwrap();
    assert_eq!(v, serde_json::json!(["café", "😀", "\"\\/\u{8}\u{c}\n\r\t"]));
}

#[test]
fn multibyte_utf8_split_everywhere() {
    let text = "[[\"é\",\"☃\",\"😀\",{\"😀\":\"x😀y\"}]]";
    let (msgs, e) = read_every_chunking(text.as_bytes(), 1000);
    assert_eq!(e, None);
    assert_eq!(msgs, [&text[1..text.len() - 1]]);
    // 4-byte emoji alone, split inside it
    let text = "[[\"😀\"]]".as_bytes();
    for a in 0..text.len() {
        for b in a..text.len() {
            let (msgs, e) = read_chunks([&text[..a], &text[a..b], &text[b..]], 100);
            assert_eq!((msgs, e), (vec!["[\"😀\"]".to_string()], None));
        }
    }
}

#[test]
fn invalid_utf8() {
    // bad continuation, truncated sequence, lone continuation, overlong, surrogate, > U+10FFFF
    for (bad, at) in [
        (&b"\xc3\x28"[..], 0),
        (b"\xe2\x98", 0),
        (b"ab\x80", 2),
        (b"\xc0\xaf", 0),
        (b"\xed\xa0\x80", 0),
        (b"\xf4\x90\x80\x80", 0),
        (b"\xff", 0),
    ] {
        let mut t = b"[[\"x\"]\n,\n[\"".to_vec();
        t.extend_from_slice(bad);
        t.extend_from_slice(b"\"]]");
        let (msgs, e) = read_every_chunking(&t, 1000);
        assert_eq!(msgs, ["[\"x\"]"]);
        assert_eq!(e, Some(FrameError::InvalidUtf8 { position: 11 + at }));
    }
    // Outside strings a high byte is a syntax error.
    assert!(matches!(read_err(b"[[1,\xc3\xa9]]"), FrameError::Unexpected { position: 4, .. }));
}

#[test]
fn root_not_array() {
    assert_eq!(read_err(b"{}"), FrameError::RootNotArray { position: 0 });
    assert_eq!(read_err(b"  {\"a\":1}"), FrameError::RootNotArray { position: 2 });
    assert_eq!(read_err(b"1"), FrameError::RootNotArray { position: 0 });
    assert_eq!(read_err(b"\"x\""), FrameError::RootNotArray { position: 0 });
    assert_eq!(read_err(b"null"), FrameError::RootNotArray { position: 0 });
    assert_eq!(read_err(b"[[1]]\n{}"), FrameError::RootNotArray { position: 6 });
}

#[test]
fn trailing_garbage_after_root() {
    for (text, pos) in [(&b"[[1]]x"[..], 5), (b"[[1]] ]", 6), (b"[[1]],[[2]]", 5), (b"[[1]]\n:", 6)] {
        let (msgs, e) = read_every_chunking(text, 100);
        assert_eq!(msgs, ["[1]"]);
        match e {
            Some(FrameError::Unexpected { position, state, .. }) => {
                assert_eq!((position, state), (pos, "START"))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn syntax_errors() {
    for (text, pos) in [
        (&b"]"[..], 0),
        (b"[,", 1),
        (b"[[1],]", 5),
        (b"[[1] [2]]", 5),
        (b"[[1,]]", 4),
        (b"[[,1]]", 2),
        (b"[[1}]", 3),
        (b"[{\"a\":1]]", 7),
        (b"[{\"a\" 1}]", 6),
        (b"[{\"a\":}]", 6),
        (b"[{1:2}]", 2),
        (b"[{\"a\":1,}]", 8),
        (b"[[01]]", 3),
        (b"[[1.]]", 4),
        (b"[[.5]]", 2),
        (b"[[1e]]", 4),
        (b"[[1e+]]", 5),
        (b"[[-]]", 3),
        (b"[[+1]]", 2),
        (b"[[tru]]", 5),
        (b"[[nul1]]", 5),
        (b"[[falsy]]", 6),
        (b"[[truex]]", 6),
        (b"[[\"a\\x\"]]", 5),
        (b"[[\"\\u12g4\"]]", 7),
        (b"[[\"a\nb\"]]", 4),
        (b"[[\"\x00\"]]", 3),
        (b"[[\"\x1f\"]]", 3),
        (b"[[NaN]]", 2),
        (b"[['a']]", 2),
    ] {
        let (msgs, e) = read_every_chunking(text, 100);
        assert!(msgs.len() <= 1);
        match e {
            Some(FrameError::Unexpected { position, found, .. }) => {
                assert_eq!(position, pos, "{}", String::from_utf8_lossy(text));
                assert_eq!(found, char::from(text[pos as usize]).to_string());
            }
            other => panic!("{}: {other:?}", String::from_utf8_lossy(text)),
        }
    }
}

#[test]
fn valid_scalars_inside_messages() {
    let text = br#"[[0,-0,1,-1,12.5e-3,0.0,1E9,1e+2,-0.0e0,true,false,null,"",{},[],{"":""},"\u0000\uFFFF"]]"#;
    let (msgs, e) = read_every_chunking(text, 1000);
    assert_eq!(e, None);
    assert_eq!(msgs, [std::str::from_utf8(&text[1..text.len() - 1]).unwrap()]);
    serde_json::from_str::<Value>(&msgs[0]).unwrap();
}

#[test]
fn error_position_counts_across_chunks() {
    let mut r = Reader::new(100);
    let mut out = Vec::new();
    r.feed(b"[\n[\"a\"]\n", &mut out).unwrap();
    r.feed(b",\n[\"b\"", &mut out).unwrap();
    r.feed(b"]\n", &mut out).unwrap();
    assert_eq!(out, ["[\"a\"]", "[\"b\"]"]);
    let e = r.feed(b",\n[\"c\"]\n,\n?", &mut out).unwrap_err();
    assert_eq!(out, ["[\"a\"]", "[\"b\"]", "[\"c\"]"]);
    assert_eq!(e.to_string(), "Unexpected \"?\" at position 26 in state VALUE");
    assert_eq!(r.feed(b"", &mut out), Err(e));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let mut deep = b"[".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    let e = read_err(&deep);
    assert!(e.to_string().starts_with("Unexpected nesting at position 1001"), "{e}");
    // maxDepth (1000) levels inside the root are fine.
    let mut ok = b"[".to_vec();
    ok.extend(std::iter::repeat_n(b'[', 1000));
    ok.extend(std::iter::repeat_n(b']', 1001));
    assert_eq!(read_ok(&ok).len(), 1);
    let mut objs = b"[".to_vec();
    objs.extend(std::iter::repeat_n(&b"{\"a\":"[..], 100_000).flatten());
    assert!(read_err(&objs).to_string().starts_with("Unexpected nesting"));
}

#[test]
fn messages_before_an_error_in_the_same_chunk_are_kept() {
    let (msgs, e) = read_all(b"[[1],{\"a\":[2]},[3]}");
    assert_eq!(msgs, ["[1]", "{\"a\":[2]}", "[3]"]);
    assert!(matches!(e, Some(FrameError::Unexpected { position: 18, .. })));
}

#[test]
fn display_texts() {
    let cases = [
        (&b"["[..], &b"\x01"[..], "Unexpected \"\\u0001\" at position 1 in state VALUE"),
        (b"[[\"", b"\t", "Unexpected \"\\t\" at position 3 in state STRING1"),
        (b"[[1", b"\"", "Unexpected \"\\\"\" at position 3 in state COMMA"),
        (b"[[1", b"\\", "Unexpected \"\\\\\" at position 3 in state COMMA"),
        (b"[[", b"\xc3", "Unexpected \"\u{c3}\" at position 2 in state VALUE"),
    ];
    for (a, b, want) in cases {
        let (_, e) = read_chunks([a, b], 100);
        assert_eq!(e.unwrap().to_string(), want);
    }
    // Every error reads `Unexpected ...` (docs/PROTOCOL.md §7).
    for (e, want) in [
        (FrameError::MessageTooLarge { limit: 5 }, "Unexpected message size: a message is larger than 5 bytes"),
        (read_err(b" {}"), "Unexpected root value at position 1: not an array"),
        (read_err(b"[null]"), "Unexpected message at position 1: not an array or an object"),
        (read_err(b"[[\"\xff\"]]"), "Unexpected invalid UTF-8 at position 3"),
    ] {
        assert_eq!(e.to_string(), want);
    }
}
