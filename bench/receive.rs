//! CPU per received message in the sans-IO receive path of a server:
//! `cargo bench --no-default-features --bench receive`.
//!
//! A server `Peer` (acks deferred, as the engine runs it) after a handshake
//! with a client of ours takes a stream of the messages our client sends in
//! a burst, `{"args":["e",<n>,"<payload>"],"id":"<12 hex>-<seq>"}`, in
//! chunks of the sizes a burst's reads have; after each chunk it is drained
//! as `Link::pump` drains it (message texts copied out, acks due collected
//! and written with `write_acks`, the output taken). Prints ns per message
//! (the least thread CPU time of several runs), for A/B runs of the framing reader, the message
//! parser, duplicate suppression and the event queue.

use std::hint::black_box;
use std::time::{Duration, Instant};

use uhura::protocol::entropy::Entropy;
use uhura::protocol::peer::{Config, Peer, Polled, Role};

const MESSAGES: u64 = 200_000;
const RUNS: usize = 25;

fn stream() -> Vec<u8> {
    let mut s = Vec::new();
    for seq in 1..=MESSAGES {
        let payload = format!("payload-{:017}", seq * 7919);
        s.extend_from_slice(
            format!("\n,\n{{\"args\":[\"e\",{seq},\"{payload}\"],\"id\":\"0123456789ab-{seq}\"}}").as_bytes(),
        );
    }
    s
}

/// A server that completed a handshake with a client of ours.
fn server(now: Instant) -> Peer {
    let config = Config { defer_acks: true, entropy: Some(Entropy::seeded([7; 32])), ..Config::default() };
    let mut p = Peer::new(Role::Server, config, now);
    p.handle_open(now);
    p.handle_receive(b"[\n[\"_set\",{}]\n,\n[\"start\",{\"objectMode\":true,\"enableAcks\":true,\"uhura\":2}]", now);
    while p.poll_event().is_some() {}
    p.handle_session_loaded(None, now);
    while p.poll_event().is_some() {}
    let mut out = Vec::new();
    p.poll_transmit(&mut out);
    assert!(p.is_ready(), "handshake completed");
    p
}

/// Feeds `stream` in `chunk`-byte reads, draining after each; returns the
/// messages delivered.
fn run(stream: &[u8], chunk: usize) -> u64 {
    let now = Instant::now();
    let mut p = server(now);
    let mut delivered = String::new();
    let mut acks: Vec<(usize, usize, bool)> = Vec::new();
    let mut ack_text = String::new();
    let mut out = Vec::new();
    let mut count = 0;
    for c in stream.chunks(chunk) {
        p.handle_receive(c, now);
        delivered.clear();
        acks.clear();
        ack_text.clear();
        while let Some(ev) = p.next_event() {
            match ev {
                Polled::Message(args, _) => {
                    delivered.push_str(args);
                    count += 1;
                }
                Polled::AckDue { id, duplicate } => {
                    acks.push((ack_text.len(), id.len(), duplicate));
                    ack_text.push_str(id);
                }
                Polled::Event(e) => panic!("unexpected event {e:?}"),
            }
        }
        black_box(&delivered);
        p.write_acks(acks.iter().map(|&(at, len, dup)| (&ack_text[at..at + len], dup)));
        out.clear();
        p.poll_transmit(&mut out);
        black_box(&out);
    }
    assert!(!p.has_failed());
    count
}

/// `UHURA_BENCH_QUICK=1`: one run each, for counting instructions, which a
/// busy machine does not disturb: `valgrind --tool=callgrind
/// --toggle-collect='receive::run' <the bench binary>`, then the count
/// divided by 3 × `MESSAGES`.
fn quick() -> bool {
    std::env::var_os("UHURA_BENCH_QUICK").is_some()
}

/// This thread's CPU time: unlike the wall clock, it does not count the
/// time other processes of a busy machine have the CPU.
#[cfg(unix)]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Elsewhere, the wall clock since the first call.
#[cfg(not(unix))]
fn thread_cpu() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

fn best<F: FnMut()>(mut f: F) -> Duration {
    if quick() {
        let t = thread_cpu();
        f();
        return thread_cpu() - t;
    }
    f(); // warm up
    (0..RUNS)
        .map(|_| {
            let t = thread_cpu();
            f();
            thread_cpu() - t
        })
        .min()
        .unwrap()
}

fn main() {
    let s = stream();
    println!(
        "uhura receive path, server, {} messages of ~{} B, least CPU time of {} runs",
        MESSAGES,
        s.len() as u64 / MESSAGES,
        if quick() { 1 } else { RUNS }
    );
    for chunk in [64 * 1024, 8 * 1024, 1024] {
        let mut n = 0;
        let d = best(|| n = run(&s, chunk));
        assert_eq!(n, MESSAGES);
        println!("chunks of {:>6} B: {:>7.1} ns/message", chunk, d.as_nanos() as f64 / MESSAGES as f64);
    }
}
