//! The framing reader (src/protocol/framing/) on arbitrary bytes in arbitrary chunkings.
//!
//! Input: `[size selector][split count][split count × 2 bytes of split points][stream...]`.
//! The stream is fed whole, in the fuzzer's chunks, and (when short) byte by byte.
//! Asserted: no panic; the same messages and the same error for every chunking, and when
//! the reader is suspended between messages after every chunk and resumed (as an idle
//! connection's peer does); every
//! message is a trimmed `[...]` / `{...}` of at most the max size that appears verbatim in the
//! stream, in order, with the same `Shape` whatever the chunking, and `message::parse_framed`
//! reads it as `message::parse_with_limit` does (and `decode_framed_string` an id as
//! `decode_string`); the held-over buffer never exceeds the max
//! size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uhura::protocol::framing::{FrameError, Framed, Reader, Shape};
use uhura::protocol::message::{decode_framed_string, decode_string, parse_framed, parse_with_limit, Incoming};

struct Run {
    msgs: Vec<(String, Shape)>,
    err: Option<FrameError>,
}

/// With `suspend`, the reader is suspended after every chunk where it can be and resumed
/// for the next.
fn run(stream: &[u8], cuts: &[usize], max: usize, suspend: bool) -> Run {
    let mut r = Reader::new(max);
    let mut framed = Framed::default();
    let mut err = None;
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
        if to < from {
            continue;
        }
        let res = r.feed_framed(&stream[from..to], &mut framed);
        from = to;
        let (len, cap) = r.buffered();
        assert!(len <= max, "buffered {len} bytes > max {max}");
        // Growth is geometric but capped at the max message size.
        assert!(cap <= max.max(64), "buffer capacity {cap} > max {max}");
        if let Err(e) = res {
            // Poisoned: the same error forever.
            assert_eq!(r.feed(b"[]", &mut Vec::new()), Err(e.clone()));
            err = Some(e);
            break;
        }
        if let Some(at) = r.suspend().filter(|_| suspend) {
            r = Reader::resume(max, uhura::protocol::framing::DEFAULT_MAX_DEPTH, at);
        }
    }
    let msgs = framed.iter().map(|(m, shape)| (m.to_owned(), shape)).collect();
    Run { msgs, err }
}

fn check_messages(stream: &[u8], msgs: &[(String, Shape)], max: usize) {
    let mut cursor = 0;
    for (m, shape) in msgs {
        // The one-pass parse of a framed message agrees with the general one.
        for max_args in [0, 1, 3, 4096] {
            let parsed = parse_framed(m, *shape, max_args);
            assert_eq!(parsed, parse_with_limit(m, max_args), "{m:?} ({shape:?})");
            // The id as the reader's shape lets it be read, without a look.
            if let Ok(Incoming::Event { id: Some(id), .. }) = parsed {
                assert_eq!(decode_framed_string(id, *shape), decode_string(id), "{m:?} ({shape:?})");
            }
        }
        let b = m.as_bytes();
        assert!(b.len() <= max, "message of {} bytes > max {max}", b.len());
        assert!(
            (b.first() == Some(&b'[') && b.last() == Some(&b']'))
                || (b.first() == Some(&b'{') && b.last() == Some(&b'}')),
            "not an array or object: {m:?}"
        );
        // Exact text: it appears in the stream, after the previous message.
        let at = stream[cursor..]
            .windows(b.len())
            .position(|w| w == b)
            .unwrap_or_else(|| panic!("message {m:?} is not in the stream after offset {cursor}"));
        cursor += at + b.len();
        // The reader validated the JSON grammar: serde_json must agree, except where the
        // two deliberately differ (JSON.parse accepts these; tracked separately).
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(m) {
            let s = e.to_string();
            let known = s.contains("surrogate") || s.contains("out of range") || s.contains("recursion limit");
            assert!(known, "reader accepted {m:?} but serde_json says {s}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = match data[0] % 4 {
        0 => 1 + usize::from(data[0] / 4), // 1..=64: exercises the size limit
        1 => 256,
        2 => 4096,
        _ => uhura::protocol::framing::DEFAULT_MAX_MESSAGE_SIZE,
    };
    let nsplits = usize::from(data[1] % 16);
    let rest = &data[2..];
    if rest.len() < nsplits * 2 {
        return;
    }
    let (split_bytes, stream) = rest.split_at(nsplits * 2);
    let mut cuts: Vec<usize> = split_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = run(stream, &[], max, false);
    check_messages(stream, &whole.msgs, max);

    let chunked = run(stream, &cuts, max, false);
    assert_eq!(whole.msgs, chunked.msgs, "messages differ with cuts {cuts:?}");
    assert_eq!(whole.err, chunked.err, "errors differ with cuts {cuts:?}");
    let suspended = run(stream, &cuts, max, true);
    assert_eq!(whole.msgs, suspended.msgs, "messages differ suspended, cuts {cuts:?}");
    assert_eq!(whole.err, suspended.err, "errors differ suspended, cuts {cuts:?}");

    if stream.len() <= 512 {
        let every: Vec<usize> = (1..stream.len()).collect();
        let bytewise = run(stream, &every, max, true);
        assert_eq!(whole.msgs, bytewise.msgs, "messages differ byte by byte (suspended)");
        assert_eq!(whole.err, bytewise.err, "errors differ byte by byte (suspended)");
    }
});
