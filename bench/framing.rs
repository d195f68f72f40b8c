//! Throughput of the stream framing: `cargo bench --no-default-features --bench framing`.
//!
//! Reads one big buffer fed in 64 KiB chunks, and writes the same messages, for small (~40 B)
//! and large (~100 KB) messages. Prints MB/s and messages/s (best of several runs).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use uhura::protocol::framing::{Reader, Writer, DEFAULT_MAX_MESSAGE_SIZE};

const CHUNK: usize = 64 * 1024;
const TARGET_BYTES: usize = 64 * 1024 * 1024;
const RUNS: usize = 7;

fn small_messages() -> Vec<String> {
    let mut v = Vec::new();
    let mut k = 0u64;
    let mut total = 0;
    while total < TARGET_BYTES {
        let m = match k % 3 {
            0 => format!("{{\"args\":[\"ack::{:08x}-6d17-413c-b\"]}}", k),
            1 => format!("[\"_set\",\"k\",{k}]"),
            _ => format!("{{\"args\":[\"ev\",{k},true],\"id\":\"{k:x}\"}}"),
        };
        total += m.len() + 3;
        v.push(m);
        k += 1;
    }
    v
}

/// ~100 KB, mostly one long string with a few escapes and non-ASCII chars.
fn large_string_messages() -> Vec<String> {
    let mut body = String::new();
    while body.len() < 100_000 {
        body.push_str("Lorem ipsum dolor sit amet, consectetur adipiscing elit; héllo ☃ \\\"q\\\" \\n ");
    }
    let n = TARGET_BYTES / body.len();
    (0..n).map(|k| format!("{{\"args\":[\"blob\",\"{body}\"],\"id\":\"{k}\"}}")).collect()
}

/// ~100 KB of nested structure: an array of ~1000 small objects.
fn large_structured_messages() -> Vec<String> {
    let mut items = Vec::new();
    let mut len = 0;
    let mut k = 0;
    while len < 100_000 {
        let it = format!(
            "{{\"id\":{k},\"name\":\"user-{k}\",\"score\":{}.25e-1,\"ok\":true,\"tags\":[\"a\",\"b\",null],\"t\":\"h\\u00e9\"}}",
            k * 7
        );
        len += it.len() + 1;
        items.push(it);
        k += 1;
    }
    let body = items.join(",");
    let n = TARGET_BYTES / body.len();
    (0..n).map(|k| format!("[\"rows\",{k},[{body}]]")).collect()
}

fn best<F: FnMut()>(mut f: F) -> Duration {
    f(); // warm up
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn row(what: &str, bytes: usize, msgs: usize, d: Duration) {
    let s = d.as_secs_f64();
    println!(
        "{what:<34} {:>9.1} MB/s {:>12.0} msg/s   ({} msgs, {:.1} MB, {:.1} ms)",
        bytes as f64 / s / 1e6,
        msgs as f64 / s,
        msgs,
        bytes as f64 / 1e6,
        s * 1e3
    );
}

fn bench(label: &str, msgs: &[String]) {
    let mut stream = Vec::new();
    let mut w = Writer::new();
    for m in msgs {
        w.write_raw(m, &mut stream);
    }
    let avg = stream.len() / msgs.len();

    // reader, 64 KiB chunks; the consumer takes the messages after each chunk
    let mut out = Vec::new();
    let mut r = Reader::new(DEFAULT_MAX_MESSAGE_SIZE);
    for c in stream.chunks(CHUNK) {
        r.feed(c, &mut out).unwrap();
    }
    assert!(out == msgs, "read back differs");
    let mut count = 0;
    let d = best(|| {
        count = 0;
        let mut r = Reader::new(DEFAULT_MAX_MESSAGE_SIZE);
        for c in stream.chunks(CHUNK) {
            r.feed(c, &mut out).unwrap();
            count += out.len();
            for m in out.drain(..) {
                black_box(m);
            }
        }
    });
    assert_eq!(count, msgs.len());
    row(&format!("read  {label} (~{avg} B)"), stream.len(), msgs.len(), d);

    // writer
    let mut buf = Vec::with_capacity(stream.len());
    let d = best(|| {
        buf.clear();
        let mut w = Writer::new();
        for m in msgs {
            w.write_raw(black_box(m), &mut buf);
        }
        black_box(&buf);
    });
    assert_eq!(buf, stream);
    row(&format!("write {label} (~{avg} B)"), stream.len(), msgs.len(), d);

    // reference: serde_json validating the same text in one piece
    let mut closed = stream.clone();
    closed.extend_from_slice(b"\n]");
    let d = best(|| {
        let v: Vec<IgnoredAny> = serde_json::from_slice(black_box(&closed)).unwrap();
        black_box(v);
    });
    row(&format!("(ref) serde_json IgnoredAny {label}"), closed.len(), msgs.len(), d);
}

fn main() {
    println!("uhura framing, 64 KiB chunks, best of {RUNS}");
    bench("small", &small_messages());
    bench("large/string", &large_string_messages());
    bench("large/struct", &large_structured_messages());
}
