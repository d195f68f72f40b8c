//! Time: ack deadlines, the handshake timeout, heartbeats out and the
//! peer's silence (docs/PROTOCOL.md §9). The driver asks `poll_timeout`
//! when to call `handle_timeout`.

use super::event::Event;
use super::{Peer, Phase};
use crate::protocol::message::{self, HEARTBEAT};
use std::time::{Duration, Instant};

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
