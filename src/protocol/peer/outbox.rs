//! Outbound events: the queue, the in-flight window of unacknowledged
//! events, ack deadlines, the queue limits, refused events, and the state a
//! server hands from a dropped connection to the one that resumes its
//! session (docs/PROTOCOL.md §4, §9).

use super::arena::{Arena, Span};
use super::config::{MAX_IN_FLIGHT, REFUSALS_BEFORE_DROP};
use super::dedup::parse_our_id;
use super::event::{Event, Notify};
use super::{Peer, Phase, Role};
use crate::protocol::message;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::Instant;

/// An event not yet acknowledged.
#[derive(Debug)]
pub(super) struct Pending {
    pub seq: u64,
    /// Set for events taken over from another server: their original id.
    pub foreign_id: Option<Box<str>>,
    /// Its argument array's text, in the outbox's `args`.
    pub args: Span,
    pub notify: Option<Notify>,
}

#[derive(Debug, Default)]
pub(super) struct Outbox {
    /// `<12 hex>-`: our ids are this and the event's sequence number.
    pub id_prefix: IdPrefix,
    pub next_seq: u64,
    /// Everything else, in a box made on first use and dropped when it is
    /// empty again (`release_idle`): most connections are idle most of the
    /// time, and these are some 150 bytes inline per connection. Reads of
    /// an idle outbox see `IDLE` (`Deref`); writes make the box (`DerefMut`).
    parts: Option<Box<Parts>>,
}

/// The outbox's state while anything is pending.
#[derive(Debug)]
pub(super) struct Parts {
    pub queue: VecDeque<Pending>,
    /// Sent and not yet acknowledged, in sequence order: events go out in
    /// sequence order (the queue is in it), so sending appends.
    pub unacked: VecDeque<Pending>,
    /// The texts of `unacked` and `queue`.
    pub args: Arena,
    /// Ids of events taken over from another server, to their sequence number.
    pub foreign_ids: ForeignIds,
    /// Bytes of JSON held for pending (queued or unacknowledged) events.
    pub pending_bytes: usize,
    /// Ack deadlines of events with callbacks, in send order.
    pub deadlines: VecDeque<(Instant, u64, Notify)>,
    /// The oldest unacknowledged event at the last closes, and how many
    /// closes in a row found it so (see `REFUSALS_BEFORE_DROP`).
    pub suspect: Option<(u64, u32)>,
    /// Something was acknowledged on the current transport. Read only
    /// while `suspect` is set (`note_refusal`), so the box may go without it
    /// when `suspect` is None: it is reset with each new transport.
    pub progressed: bool,
}

/// An idle outbox's parts: what reads see while there is no box.
static IDLE: Parts = Parts::EMPTY;

impl Parts {
    const EMPTY: Parts = Parts {
        queue: VecDeque::new(),
        unacked: VecDeque::new(),
        args: Arena::EMPTY,
        foreign_ids: ForeignIds(None),
        pending_bytes: 0,
        deadlines: VecDeque::new(),
        suspect: None,
        progressed: false,
    };

    /// Nothing pending, nothing remembered that `note_refusal` would read.
    fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.unacked.is_empty()
            && self.deadlines.is_empty()
            && self.suspect.is_none()
            && self.pending_bytes == 0
            && self.foreign_ids.0.is_none()
    }
}

impl Default for Parts {
    fn default() -> Self {
        Parts::EMPTY
    }
}

impl std::ops::Deref for Outbox {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        self.parts.as_deref().unwrap_or(&IDLE)
    }
}

impl std::ops::DerefMut for Outbox {
    fn deref_mut(&mut self) -> &mut Parts {
        self.parts.get_or_insert_with(Box::default)
    }
}

/// The prefix of our message ids, `<12 hex>-`, kept inline: a `String`
/// costs every connection 24 bytes and an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdPrefix([u8; 13]);

impl IdPrefix {
    /// The prefix of the 6 bytes `random`, in hex.
    pub(super) fn new(random: [u8; 6]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut p = [b'-'; 13];
        for (i, b) in random.into_iter().enumerate() {
            p[2 * i] = HEX[usize::from(b >> 4)];
            p[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        IdPrefix(p)
    }

    pub(super) fn as_str(&self) -> &str {
        // Hex digits and '-' only (`new`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Default for IdPrefix {
    fn default() -> Self {
        IdPrefix::new([0; 6])
    }
}

impl std::fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ids of events taken over from another server (a resume, a shared
/// store), to their sequence number: a map only while there are any, as
/// almost no connection has one (a `HashMap` is 48 bytes inline).
#[derive(Debug, Default)]
#[allow(clippy::box_collection, reason = "the box is the point: 8 bytes inline while empty, not 48")]
pub(super) struct ForeignIds(Option<Box<HashMap<String, u64>>>);

impl ForeignIds {
    pub(super) fn get(&self, id: &str) -> Option<u64> {
        self.0.as_ref()?.get(id).copied()
    }

    pub(super) fn contains_key(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn insert(&mut self, id: String, seq: u64) {
        self.0.get_or_insert_with(Box::default).insert(id, seq);
    }

    /// Forgets `id`; the map goes with its last entry.
    pub(super) fn remove(&mut self, id: &str) {
        if let Some(map) = &mut self.0 {
            map.remove(id);
            if map.is_empty() {
                self.0 = None;
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.0 = None;
    }
}

impl Outbox {
    pub(super) fn new(id_prefix: IdPrefix) -> Self {
        Outbox { id_prefix, ..Outbox::default() }
    }

    /// Drops the parts' box if nothing in it is in use (`Parts::is_idle`);
    /// the next event makes it again.
    pub(super) fn release_idle(&mut self) {
        if self.parts.as_ref().is_some_and(|p| p.is_idle()) {
            self.parts = None;
        }
    }

    /// A new transport: nothing acknowledged on it yet.
    pub(super) fn new_transport(&mut self) {
        if let Some(p) = &mut self.parts {
            p.progressed = false;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len() + self.unacked.len()
    }

    /// The id an event is sent with.
    fn id_of(&self, p: &Pending) -> String {
        match &p.foreign_id {
            Some(id) => id.to_string(),
            None => {
                let mut id = String::with_capacity(self.id_prefix.as_str().len() + 12);
                id.push_str(self.id_prefix.as_str());
                let _ = write!(id, "{}", p.seq);
                id
            }
        }
    }

    /// The oldest pending event, taken out: unacknowledged events were sent
    /// before anything still queued.
    fn pop_oldest(&mut self) -> Option<Pending> {
        self.unacked.pop_front().or_else(|| self.queue.pop_front())
    }

    /// A pending event leaves for good (dropped or refused): its bytes and
    /// its foreign id go with it. Returns its id.
    fn forget(&mut self, p: &Pending) -> String {
        self.pending_bytes -= p.args.len();
        if let Some(id) = &p.foreign_id {
            self.foreign_ids.remove(id);
        }
        self.trim();
        self.id_of(p)
    }

    /// Some pending events left: gives back the space of their texts. Only
    /// between calls, when every pending event is in `unacked` or `queue`.
    fn trim(&mut self) {
        let o: &mut Parts = self;
        let oldest = o.unacked.front().or(o.queue.front()).map(|p| p.args);
        if o.args.release_before(oldest, o.pending_bytes) {
            let spans = o.unacked.iter_mut().chain(o.queue.iter_mut()).map(|p| &mut p.args);
            o.args.compact(spans);
        }
    }

    pub(super) fn pending_mut(&mut self, seq: u64) -> Option<&mut Pending> {
        if let Ok(i) = self.unacked.binary_search_by_key(&seq, |p| p.seq) {
            return self.unacked.get_mut(i);
        }
        let i = self.queue.binary_search_by_key(&seq, |p| p.seq).ok()?;
        self.queue.get_mut(i)
    }

    /// The transport closed: unacknowledged events go back to the head of
    /// the queue, in order, to be sent again after the next handshake.
    pub(super) fn requeue_unacked(&mut self) {
        if !self.unacked.is_empty() {
            let mut resend = std::mem::take(&mut self.unacked);
            resend.append(&mut self.queue);
            self.queue = resend;
        }
    }
}

/// A closed server-side peer's outbound state, handed to the connection
/// that resumes its session.
#[derive(Debug, Default)]
pub struct Retained {
    id_prefix: IdPrefix,
    next_seq: u64,
    pending: VecDeque<Pending>,
    args: Arena,
    seen: Vec<(String, u64)>,
    deadlines: VecDeque<(Instant, u64, Notify)>,
    suspect: Option<(u64, u32)>,
}

impl Retained {
    /// Who to tell that these events will never be delivered.
    pub fn notifies(&self) -> Vec<Notify> {
        self.pending.iter().filter_map(|p| p.notify).collect()
    }
}

impl Peer {
    /// An application event; `args` is the JSON array text, name first.
    /// `notify`: whom to tell when it is acknowledged. Returns its sequence
    /// number. Queued until the handshake completes (and while the output is
    /// backed up), within the queue limits.
    pub fn send_event(&mut self, args: &str, notify: Option<Notify>, now: Instant) -> u64 {
        let seq = self.outbox.next_seq;
        self.outbox.next_seq += 1;
        if let (Some(n), Some(t)) = (notify, self.config.ack_timeout) {
            self.outbox.deadlines.push_back((now + t, seq, n));
        }
        if self.config.persist_delivery && self.role == Role::Server {
            let id = format!("{}{seq}", self.outbox.id_prefix);
            self.events.push_back(Event::Persist { id, args: args.to_owned() });
        }
        self.outbox.pending_bytes += args.len();
        let p = Pending { seq, foreign_id: None, args: self.outbox.args.push(args), notify };
        if self.phase == Phase::Ready && self.outbox.queue.is_empty() && self.has_room() {
            self.transmit(p);
        } else {
            self.outbox.queue.push_back(p);
        }
        self.enforce_limits();
        seq
    }

    pub(super) fn has_room(&self) -> bool {
        self.output.has_room() && self.outbox.unacked.len() < MAX_IN_FLIGHT
    }

    /// Events wait in the queue for acks only: the in-flight window is
    /// full. Reading the socket (the acks waiting there) is what lets them
    /// go out.
    pub fn awaits_acks(&self) -> bool {
        !self.outbox.queue.is_empty() && self.outbox.unacked.len() >= MAX_IN_FLIGHT
    }

    /// Queued events could go out now (see `wants_write`).
    pub(super) fn can_refill(&self) -> bool {
        self.phase == Phase::Ready && !self.outbox.queue.is_empty() && self.has_room()
    }

    /// Moves queued events into the output while there is room.
    pub(super) fn refill(&mut self) {
        // An empty queue returns before `queue.pop_front` makes an idle
        // outbox's box.
        if self.phase != Phase::Ready || self.outbox.queue.is_empty() {
            return;
        }
        while self.has_room() {
            let Some(p) = self.outbox.queue.pop_front() else { break };
            self.transmit(p);
        }
    }

    fn transmit(&mut self, p: Pending) {
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let args = self.outbox.args.get(p.args);
        if self.negotiated.object_mode && self.negotiated.enable_acks {
            match &p.foreign_id {
                Some(id) => message::encode_event(args, true, Some(id), &mut text),
                // Written in place: no id string per event.
                None => message::encode_event_our_id(args, self.outbox.id_prefix.as_str(), p.seq, &mut text),
            }
            self.frame(&text);
            debug_assert!(self.outbox.unacked.back().is_none_or(|last| last.seq < p.seq), "sent out of order");
            self.outbox.unacked.push_back(p);
        } else {
            message::encode_event(args, self.negotiated.object_mode, None, &mut text);
            self.frame(&text);
            self.outbox.pending_bytes -= p.args.len();
            self.outbox.trim();
            if let Some(n) = p.notify {
                self.events.push_back(Event::Acked(n));
            }
        }
        self.scratch = text;
    }

    /// Drops the oldest pending events until the rest fit the limits. An
    /// unacknowledged event may still arrive; its callback hears it was
    /// dropped, since nothing will resend it.
    pub(super) fn enforce_limits(&mut self) {
        while self.outbox.len() > self.config.max_queue_length
            || (self.outbox.pending_bytes > self.config.max_queue_bytes && self.outbox.len() > 1)
        {
            let Some(p) = self.outbox.pop_oldest() else { break };
            self.forget_pending(&p);
            self.events.push_back(Event::Dropped { notify: p.notify });
        }
    }

    /// A pending event leaves for good: its persisted copy goes with it.
    fn forget_pending(&mut self, p: &Pending) {
        let id = self.outbox.forget(p);
        if self.config.persist_delivery {
            self.events.push_back(Event::Unpersist { id });
        }
    }

    /// Our sequence number of message `id`: ours by its number, one taken
    /// over from another connection or server through `foreign_ids`.
    fn seq_of(&self, id: &str) -> Option<u64> {
        match id.strip_prefix(self.outbox.id_prefix.as_str()).and_then(|s| s.parse::<u64>().ok()) {
            Some(seq) => Some(seq),
            None => self.outbox.foreign_ids.get(id),
        }
    }

    /// The peer acknowledged message `id`.
    pub(super) fn on_ack(&mut self, id: &str) {
        let Some(seq) = self.seq_of(id) else { return };
        let unacked = &mut self.outbox.unacked;
        if let Some(p) = unacked.binary_search_by_key(&seq, |p| p.seq).ok().and_then(|i| unacked.remove(i)) {
            self.acknowledged(p);
            self.outbox.trim();
        }
    }

    /// The peer acknowledged message `id` and every message sent before it
    /// (`["_uhura_ack",id]`, docs/PROTOCOL.md §9): every unacknowledged
    /// event up to its sequence number, in order. Unacknowledged events
    /// were all sent on the current transport, in sequence order, so the
    /// peer has had each of them. `id` itself may be acknowledged already.
    pub(super) fn on_ack_through(&mut self, id: &str) {
        let Some(seq) = self.seq_of(id) else { return };
        while let Some(p) = self.outbox.unacked.pop_front() {
            if p.seq > seq {
                self.outbox.unacked.push_front(p);
                break;
            }
            self.acknowledged(p);
        }
        // Once for the run, not per event.
        self.outbox.trim();
    }

    /// An unacknowledged event was acknowledged: its callback is told, its
    /// persisted copy (with `persist_delivery`) and its bytes released
    /// (the caller trims the text arena after).
    fn acknowledged(&mut self, p: Pending) {
        self.outbox.progressed = true;
        self.outbox.pending_bytes -= p.args.len();
        if let Some(n) = p.notify {
            self.events.push_back(Event::Acked(n));
        }
        if self.config.persist_delivery {
            self.events.push_back(Event::Unpersist { id: self.outbox.id_of(&p) });
        }
        if let Some(id) = &p.foreign_id {
            self.outbox.foreign_ids.remove(id);
        }
    }

    /// A poison message (one the peer's reader rejects, e.g. too deep for
    /// it) would be resent on every reconnect and block everything behind
    /// it. The peer refusing our input and closing with the same oldest
    /// event unacknowledged, with no ack on the way, `REFUSALS_BEFORE_DROP`
    /// times in a row: drop it. Plain drops (a flaky network, a restarted
    /// server) never count, whatever is in flight.
    pub(super) fn note_refusal(&mut self, refused: bool) {
        let o = &mut self.outbox;
        let Some(oldest) = o.unacked.front().map(|p| p.seq).filter(|_| refused) else {
            if o.progressed {
                o.suspect = None;
            }
            return;
        };
        let count = match o.suspect {
            Some((seq, n)) if seq == oldest && !o.progressed => n + 1,
            _ => 1,
        };
        if count < REFUSALS_BEFORE_DROP {
            o.suspect = Some((oldest, count));
            return;
        }
        o.suspect = None;
        if let Some(p) = o.unacked.pop_front() {
            self.forget_pending(&p);
            self.events.push_back(Event::Refused { notify: p.notify });
        }
    }

    /// Server: after `handle_close`, takes the outbound state for the
    /// connection that resumes this session. The peer keeps nothing pending.
    pub fn take_retained(&mut self) -> Retained {
        let o = &mut self.outbox;
        // The whole box goes: what it held moves on, the rest (the byte
        // count, foreign ids, `progressed`) has no use on a closed peer.
        let parts = o.parts.take().map_or_else(Parts::default, |b| *b);
        Retained {
            id_prefix: o.id_prefix,
            next_seq: o.next_seq,
            pending: parts.queue,
            args: parts.args,
            seen: self.seen.take(),
            deadlines: parts.deadlines,
            suspect: parts.suspect,
        }
    }

    /// Server: continues a resumed session's outbound state. Call before
    /// `handle_session_loaded`, so the resent events follow `connect`.
    pub fn adopt_retained(&mut self, r: Retained) {
        let o = &mut self.outbox;
        // Our own pending events keep the ids they were (or will be) sent
        // with, and move behind the adopted ones with fresh sequence numbers,
        // so both sets stay ordered and never share a key.
        let mut own = std::mem::take(&mut o.unacked);
        own.append(&mut o.queue);
        let own_deadlines = std::mem::take(&mut o.deadlines);
        o.foreign_ids.clear();
        let mut next = o.next_seq.max(r.next_seq);
        let mut renumbered = HashMap::new();
        for p in &mut own {
            let id = o.id_of(p);
            renumbered.insert(p.seq, next);
            p.seq = next;
            next += 1;
            p.foreign_id = Some(id.into());
        }
        o.id_prefix = r.id_prefix;
        o.next_seq = next;
        // One buffer for both sets' texts, in their new order.
        let mut args = Arena::default();
        let mut pending = r.pending;
        for p in &mut pending {
            o.pending_bytes += p.args.len();
            p.args = args.push(r.args.get(p.args));
        }
        for p in &mut own {
            p.args = args.push(o.args.get(p.args));
        }
        o.args = args;
        pending.append(&mut own);
        for p in &pending {
            if let Some(id) = &p.foreign_id {
                o.foreign_ids.insert(id.to_string(), p.seq);
            }
        }
        o.queue = pending;
        o.deadlines = r.deadlines;
        o.suspect = r.suspect;
        o.deadlines
            .extend(own_deadlines.into_iter().filter_map(|(t, seq, n)| renumbered.get(&seq).map(|s| (t, *s, n))));
        o.deadlines.make_contiguous().sort_by_key(|d| d.0);
        for (sender, seq) in r.seen {
            self.seen.note(&sender, seq);
        }
    }

    /// Server: events another server accepted for this session and that were
    /// not acknowledged (from a shared store), and the senders it had seen.
    pub fn adopt_foreign(&mut self, outbox: Vec<(String, String)>, seen: Vec<(String, u64)>) {
        let o = &mut self.outbox;
        for (id, args) in outbox {
            if o.foreign_ids.contains_key(&id) || parse_our_id(&id).is_some_and(|(p, _)| p == o.id_prefix.as_str()) {
                continue;
            }
            let seq = o.next_seq;
            o.next_seq += 1;
            o.foreign_ids.insert(id.clone(), seq);
            o.pending_bytes += args.len();
            let args = o.args.push(&args);
            o.queue.push_back(Pending { seq, foreign_id: Some(id.into()), args, notify: None });
        }
        for (sender, seq) in seen {
            self.seen.note(&sender, seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::entropy::Entropy;
    use crate::protocol::peer::{Config, Peer, Role};

    /// A client and a server peer, both opened, with seeded entropy.
    fn peer_pair(now: Instant) -> (Peer, Peer) {
        let config = |s| Config { entropy: Some(Entropy::seeded([s; 32])), ..Config::default() };
        let (mut client, mut server) =
            (Peer::new(Role::Client, config(1), now), Peer::new(Role::Server, config(2), now));
        client.handle_open(now);
        server.handle_open(now);
        (client, server)
    }

    /// Acks out of order leave gaps in the texts' buffer; the texts still
    /// pending stay intact through the compactions, and a drained outbox
    /// frees the buffer.
    #[test]
    fn pending_texts_survive_acks_in_any_order() {
        let prefix = IdPrefix::new([0x01, 0x23, 0x45, 0x67, 0x89, 0xab]);
        assert_eq!(prefix.as_str(), "0123456789ab-");
        let mut o = Outbox::new(prefix);
        for seq in 0..50_000u64 {
            let text = format!("[\"e\",{seq},\"{}\"]", "x".repeat((seq % 7) as usize));
            o.pending_bytes += text.len();
            let args = o.args.push(&text);
            o.unacked.push_back(Pending { seq, foreign_id: None, args, notify: None });
        }
        // The oldest never acknowledged (a lost ack), every other one is.
        let mut i = 1;
        while i < o.unacked.len() {
            if o.unacked[i].seq % 2 == 1 {
                let p = o.unacked.remove(i).unwrap();
                o.pending_bytes -= p.args.len();
                o.trim();
            } else {
                i += 1;
            }
        }
        for p in &o.unacked {
            let expect = format!("[\"e\",{},\"{}\"]", p.seq, "x".repeat((p.seq % 7) as usize));
            assert_eq!(o.args.get(p.args), expect);
        }
        assert!(o.args.capacity() < 2 * o.pending_bytes + 256 * 1024, "gaps compacted");
        while let Some(p) = o.unacked.pop_front() {
            o.pending_bytes -= p.args.len();
            o.trim();
        }
        assert_eq!(o.args.capacity(), 0, "freed when nothing is pending");
    }

    /// An idle outbox holds no box: not after the handshake, not once its
    /// events are acknowledged; one with pending events keeps it.
    #[test]
    fn idle_outbox_holds_no_box() {
        let now = Instant::now();
        let (mut client, mut server) = peer_pair(now);
        let pump = |client: &mut Peer, server: &mut Peer| {
            for _ in 0..3 {
                Peer::exchange(client, server, now);
                client.release_buffers();
                server.release_buffers();
            }
        };
        pump(&mut client, &mut server);
        assert!(server.is_ready() && server.enable_acks());
        assert!(client.outbox.parts.is_none() && server.outbox.parts.is_none());
        server.send_event(r#"["a"]"#, Some((1, 1)), now);
        server.release_buffers();
        assert_eq!(server.unacked_len(), 1);
        assert!(server.outbox.parts.is_some(), "kept while pending");
        pump(&mut client, &mut server);
        assert_eq!(server.unacked_len(), 0);
        assert!(server.outbox.parts.is_none(), "released once acknowledged");
    }
}
