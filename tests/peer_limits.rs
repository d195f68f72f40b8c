//! The protocol state machine, driven without I/O, at its limits: malformed
//! input, queue limits, ack and handshake timeouts, output backlog.

mod common;

use common::{config, events};
use std::time::{Duration, Instant};
use uhura::protocol::entropy::Entropy;
use uhura::protocol::peer::{Config, Event, Peer, Role};

#[test]
fn malformed_input_is_an_error_never_a_panic() {
    for bad in [&b"."[..], b"[{\"args\":\"notarray\"}]", b"[null]", b"[1,2]", b"{}", b"[[\"x\"]]]"] {
        let now = Instant::now();
        let mut server = Peer::new(Role::Server, config(), now);
        server.handle_open(now);
        server.handle_receive(bad, now);
        let errors: Vec<_> = events(&mut server).into_iter().filter(|e| matches!(e, Event::Error(_))).collect();
        assert_eq!(errors.len(), 1, "{:?}", String::from_utf8_lossy(bad));
        assert!(server.close_requested());
    }
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, config(), now);
    server.handle_open(now);
    server.handle_receive(b".", now);
    match events(&mut server).pop() {
        Some(Event::Error(m)) => assert!(m.starts_with("Unexpected \".\" at position 0"), "{m}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn queue_limits_drop_the_oldest_and_say_so() {
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, Config { max_queue_length: 3, ..config() }, now);
    for i in 0..5u64 {
        client.send_event(&format!("[\"e\",{i}]"), Some((1, i)), now);
    }
    let evs = events(&mut client);
    assert_eq!(evs, vec![Event::Dropped { notify: Some((1, 0)) }, Event::Dropped { notify: Some((1, 1)) }]);
    assert_eq!(client.queued_len(), 3);

    let mut client = Peer::new(Role::Client, Config { max_queue_bytes: 100, ..config() }, now);
    for _ in 0..10 {
        client.send_event(&format!("[\"e\",\"{}\"]", "x".repeat(40)), None, now);
    }
    assert!(client.pending_bytes() <= 100);
    assert_eq!(events(&mut client).len(), 8);
}

#[test]
fn ack_timeout_releases_the_callback_but_keeps_the_event() {
    let t0 = Instant::now();
    let mut client = Peer::new(Role::Client, Config { ack_timeout: Some(Duration::from_millis(100)), ..config() }, t0);
    client.send_event(r#"["e"]"#, Some((1, 0)), t0);
    assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    client.handle_timeout(t0 + Duration::from_millis(99));
    assert!(events(&mut client).is_empty());
    client.handle_timeout(t0 + Duration::from_millis(100));
    assert_eq!(events(&mut client), vec![Event::AckTimeout((1, 0))]);
    assert_eq!(client.queued_len(), 1);
}

#[test]
fn a_handshake_that_never_completes_times_out() {
    let t0 = Instant::now();
    let config = Config { handshake_timeout: Duration::from_secs(5), ..config() };
    for role in [Role::Client, Role::Server] {
        let mut peer = Peer::new(role, config.clone(), t0);
        peer.handle_open(t0);
        assert_eq!(peer.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        peer.handle_timeout(t0 + Duration::from_secs(4));
        assert!(!peer.has_failed());
        peer.handle_timeout(t0 + Duration::from_secs(5));
        assert!(peer.has_failed(), "{role:?}");
        match events(&mut peer).pop() {
            Some(Event::Error(m)) => assert!(m.starts_with("handshake timeout"), "{m}"),
            e => panic!("{e:?}"),
        }
    }
}

/// `write_to` writes what the writer takes and keeps the rest, in order,
/// ahead of anything framed later; `wants_read` turns false past the
/// output's high water mark and true again once written below its low one.
#[test]
fn write_to_keeps_what_was_not_written_and_backlog_stops_reading() {
    struct Takes(usize, Vec<u8>);
    impl std::io::Write for Takes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = self.0.min(buf.len());
            self.1.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let now = Instant::now();
    let seeded = || Config { entropy: Some(Entropy::seeded([9; 32])), ..Config::default() };
    let (mut a, mut b) = (Peer::new(Role::Client, seeded(), now), Peer::new(Role::Client, seeded(), now));
    assert!(!b.wants_write());
    a.handle_open(now);
    b.handle_open(now);
    assert!(b.wants_write() && b.wants_read());
    let mut whole = Vec::new();
    a.poll_transmit(&mut whole);
    let mut w = Takes(10, Vec::new());
    while b.wants_write() {
        let left = whole.len() - w.1.len();
        assert_eq!(b.write_to(&mut w).unwrap(), left.min(10));
    }
    assert_eq!(w.1, whole);
    // Blocked: nothing taken, nothing lost.
    b.send_message("[\"raw\"]");
    let mut blocked = Takes(0, Vec::new());
    assert_eq!(b.write_to(&mut blocked).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    let mut rest = Vec::new();
    b.poll_transmit(&mut rest);
    assert_eq!(rest, b"\n,\n[\"raw\"]");

    const MIB: usize = 1 << 20;
    b.write_raw(&vec![b' '; 17 * MIB]);
    assert!(!b.wants_read(), "past 16 MiB unwritten");
    b.write_to(&mut Takes(2 * MIB, Vec::new())).unwrap();
    assert!(!b.wants_read(), "15 MiB: still above the low water mark");
    b.write_to(&mut Takes(8 * MIB, Vec::new())).unwrap();
    assert!(b.wants_read(), "7 MiB: below it");
    assert_eq!(b.pending_output(), 7 * MIB);
}
