//! Helpers shared by the integration tests. Each test binary uses some of
//! them, so the others are dead code there.
#![allow(dead_code)]

use serde_json::Value;
use std::cell::Cell;
use uhura::protocol::entropy::Entropy;
use uhura::protocol::framing::{FrameError, Reader, DEFAULT_MAX_MESSAGE_SIZE};
use uhura::protocol::peer::{Config, Event, Peer};

/// The default config with a seeded entropy source, so a test's ids are the
/// same on every run. Each call of a test gets the next seed: two peers of
/// one test never share a message-id prefix, as two real ones never do.
pub(crate) fn config() -> Config {
    thread_local!(static NEXT: Cell<u8> = const { Cell::new(0) });
    let n = NEXT.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    Config { entropy: Some(Entropy::seeded([n; 32])), ..Config::default() }
}

/// What the peer wrote since the last call, as message texts. A later take
/// continues the stream: the fresh reader gets its opening bracket.
pub(crate) fn output_texts(peer: &mut Peer) -> Vec<String> {
    let mut out = Vec::new();
    peer.poll_transmit(&mut out);
    if out.starts_with(b"\n,\n") {
        out.splice(..3, *b"[\n");
    }
    let mut msgs = Vec::new();
    Reader::new(1 << 24).feed(&out, &mut msgs).expect("our own output frames cleanly");
    msgs
}

/// Feeds `chunks` in order; returns all messages read and the first error
/// (reading stops there). Also checks that a failed reader stays poisoned:
/// the same error again, nothing more pushed.
pub(crate) fn read_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    max: usize,
) -> (Vec<String>, Option<FrameError>) {
    let mut r = Reader::new(max);
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = r.feed(c, &mut out) {
            let n = out.len();
            assert_eq!(r.feed(b"[[1]]", &mut out), Err(e.clone()));
            assert_eq!(out.len(), n);
            return (out, Some(e));
        }
    }
    (out, None)
}

/// `data` read in one chunk with the default size limit.
pub(crate) fn read_all(data: &[u8]) -> (Vec<String>, Option<FrameError>) {
    read_chunks([data], DEFAULT_MAX_MESSAGE_SIZE)
}

/// The messages of `data`, which must read without an error.
pub(crate) fn read_ok(data: &[u8]) -> Vec<String> {
    let (msgs, err) = read_all(data);
    assert_eq!(err, None, "input {:?}", String::from_utf8_lossy(data));
    msgs
}

/// The error `data` must end in.
pub(crate) fn read_err(data: &[u8]) -> FrameError {
    read_all(data).1.unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(data)))
}

/// The same result for every way of cutting `data` into two chunks, one byte at a time, and
/// all at once; returns that result.
pub(crate) fn read_every_chunking(data: &[u8], max: usize) -> (Vec<String>, Option<FrameError>) {
    let whole = read_chunks([data], max);
    for cut in 0..=data.len() {
        let (a, b) = data.split_at(cut);
        assert_eq!(read_chunks([a, b], max), whole, "cut at {cut}");
    }
    assert_eq!(read_chunks(data.chunks(1), max), whole, "one byte at a time");
    whole
}

/// Everything the peer wrote, as parsed messages.
pub(crate) fn output(peer: &mut Peer) -> Vec<Value> {
    output_texts(peer).iter().map(|m| serde_json::from_str(m).unwrap()).collect()
}

/// Every event the peer has for its driver, in order.
pub(crate) fn events(peer: &mut Peer) -> Vec<Event> {
    std::iter::from_fn(|| peer.poll_event()).collect()
}

/// The ids of object-shaped messages.
pub(crate) fn ids_of(msgs: &[Value]) -> Vec<String> {
    msgs.iter().filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned)).collect()
}
