//! Time: ack deadlines, the handshake timeout, heartbeats out and the
//! peer's silence (docs/PROTOCOL.md §9). The driver asks `poll_timeout`
//! when to call `handle_timeout`.

use super::event::Event;
use super::{Peer, Phase, ReaderCell};
use crate::protocol::message::{self, HEARTBEAT};
use std::time::{Duration, Instant};

/// How long input must stay quiet after it drained before the peer's
/// scratch buffers are let go (`Peer::release_due`). A burst drains its
/// socket every few hundred microseconds: releasing at each drain made the
/// reader, the received messages' buffer and the event queue anew (and
/// regrew them) for every read. An idle connection still holds none of them
/// a moment after its last input.
const BUFFER_LINGER: Duration = Duration::from_millis(100);

/// When things last happened on the current transport.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// Something arrived.
    pub last_rx: Instant,
    /// The last heartbeat went out.
    pub last_tx: Instant,
    /// The transport opened.
    pub opened_at: Instant,
}

impl Clock {
    pub(super) fn new(now: Instant) -> Self {
        Clock { last_rx: now, last_tx: now, opened_at: now }
    }
}

impl Peer {
    /// When `handle_timeout` next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.outbox.deadlines.front().map(|d| d.0);
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if self.handshaking() {
            consider(self.clock.opened_at + self.config.handshake_timeout);
        }
        if self.buffers_linger {
            consider(self.clock.last_rx + BUFFER_LINGER);
        }
        if self.phase == Phase::Ready && self.negotiated.extended() {
            if let Some(hb) = self.config.heartbeat_interval {
                consider(self.clock.last_tx + hb);
            }
            if let Some(peer_hb) = self.negotiated.peer_heartbeat {
                consider(self.clock.last_rx + self.silence_limit(peer_hb));
            }
        }
        next
    }

    /// Acts on what is due at `now`: ack callbacks time out, a handshake
    /// that took too long or a silent peer fails the transport, a heartbeat
    /// goes out.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, seq, notify)) = self.outbox.deadlines.front() {
            if deadline > now {
                break;
            }
            self.outbox.deadlines.pop_front();
            if let Some(p) = self.outbox.pending_mut(seq) {
                if p.notify.take().is_some() {
                    self.events.push_back(Event::AckTimeout(notify));
                }
            }
        }
        if self.handshaking() && now.duration_since(self.clock.opened_at) >= self.config.handshake_timeout {
            let waited = self.config.handshake_timeout.as_millis();
            self.fail(format!("handshake timeout: the peer did not complete the handshake within {waited} ms"));
            return;
        }
        if self.phase != Phase::Ready || !self.negotiated.extended() {
            return;
        }
        if let Some(peer_hb) = self.negotiated.peer_heartbeat {
            let limit = self.silence_limit(peer_hb);
            if now.duration_since(self.clock.last_rx) >= limit {
                self.fail(format!("heartbeat timeout: nothing received for {} ms", limit.as_millis()));
                return;
            }
        }
        // One tiny message per interval, busy or not: simpler than tracking
        // idleness, and negligible next to real traffic.
        if let Some(hb) = self.config.heartbeat_interval {
            if now.duration_since(self.clock.last_tx) >= hb {
                self.clock.last_tx = now;
                let mut text = std::mem::take(&mut self.scratch);
                text.clear();
                message::encode_call(HEARTBEAT, None, &mut text);
                self.frame(&text);
                self.scratch = text;
            }
        }
    }

    /// The driver read all there was: the scratch buffers stay for more
    /// input, and are due for release (`release_due`, at the latest
    /// [`poll_timeout`](Self::poll_timeout)) once none has come for
    /// `BUFFER_LINGER`. Returns whether they were not lingering already, so
    /// the driver's timer may need the new deadline.
    pub fn input_drained(&mut self) -> bool {
        !std::mem::replace(&mut self.buffers_linger, true)
    }

    /// Bytes received on the current transport.
    pub fn bytes_received(&self) -> u64 {
        match &self.reader {
            ReaderCell::Reading(r) => r.consumed(),
            ReaderCell::Between(at) => at.consumed(),
        }
    }

    /// Whether the driver should call [`release_buffers`](Self::release_buffers)
    /// now: input drained and nothing arrived for `BUFFER_LINGER` since.
    pub fn release_due(&self, now: Instant) -> bool {
        self.buffers_linger && now.saturating_duration_since(self.clock.last_rx) >= BUFFER_LINGER
    }

    /// Waiting for the other side's half of the handshake.
    fn handshaking(&self) -> bool {
        matches!(self.phase, Phase::AwaitingConnect | Phase::AwaitingStart)
    }

    /// A peer that sends heartbeats every `peer_hb` is dead after our
    /// timeout, and never sooner than three of its intervals.
    fn silence_limit(&self, peer_hb: Duration) -> Duration {
        self.config.heartbeat_timeout.max(peer_hb * 3)
    }
}

#[cfg(test)]
mod tests {
    use super::BUFFER_LINGER;
    use crate::protocol::entropy::Entropy;
    use crate::protocol::peer::{Config, Peer, Role};
    use std::time::{Duration, Instant};

    /// A drained read keeps the scratch buffers while input keeps coming
    /// (a burst), and they are due for release, with a deadline in
    /// `poll_timeout`, once input has been quiet for `BUFFER_LINGER`.
    #[test]
    fn buffers_linger_after_drained_input() {
        let t0 = Instant::now();
        let config =
            |s| Config { entropy: Some(Entropy::seeded([s; 32])), heartbeat_interval: None, ..Config::default() };
        let (mut client, mut server) = (Peer::new(Role::Client, config(1), t0), Peer::new(Role::Server, config(2), t0));
        client.handle_open(t0);
        server.handle_open(t0);
        for _ in 0..3 {
            Peer::exchange(&mut client, &mut server, t0);
        }
        assert!(server.is_ready());
        let handshake = server.bytes_received();
        assert!(handshake > 0);
        server.release_buffers();
        assert_eq!(server.bytes_received(), handshake, "kept while suspended");
        assert!(!server.release_due(t0 + BUFFER_LINGER), "nothing to release");

        let ms = |n| t0 + Duration::from_millis(n);
        client.send_event(r#"["a",1]"#, None, ms(10));
        Peer::exchange(&mut client, &mut server, ms(10));
        assert!(server.input_drained(), "newly lingering");
        assert!(server.received.is_some(), "kept at the drain");
        assert!(server.poll_timeout().is_some_and(|t| t <= ms(10) + BUFFER_LINGER));
        // More of the burst, drained again: still kept, the deadline moves.
        client.send_event(r#"["a",2]"#, None, ms(60));
        Peer::exchange(&mut client, &mut server, ms(60));
        assert!(!server.input_drained(), "already lingering");
        assert!(!server.release_due(ms(10) + BUFFER_LINGER), "input came since");
        assert!(server.received.is_some());
        assert!(server.release_due(ms(60) + BUFFER_LINGER));
        server.release_buffers();
        assert!(server.received.is_none(), "released once quiet");
        assert!(!server.release_due(ms(60) + 2 * BUFFER_LINGER), "until input drains again");
        assert_eq!(server.poll_timeout(), None, "no deadline left (no heartbeats here)");
        // Traffic resumes after the release: the next read works as ever.
        client.send_event(r#"["a",3]"#, None, ms(300));
        let mut b = Vec::new();
        client.poll_transmit(&mut b);
        server.handle_receive(&b, ms(300));
        let mut got = Vec::new();
        while let Some(ev) = server.poll_event() {
            if let crate::protocol::peer::Event::Message(args) = ev {
                got.push(args);
            }
        }
        assert_eq!(got, [r#"["a",3]"#]);
    }
}
