//! What arrives: framing, the message shapes, acks in both directions,
//! duplicates, and each message's meaning (docs/PROTOCOL.md §2-§5, §9).

use super::config::RESERVED_EVENTS;
use super::event::{Direction, Event};
use super::{Peer, Phase, Role};
use crate::protocol::framing::Shape;
use crate::protocol::json;
use crate::protocol::message::{self, Incoming, MessageError, CUMULATIVE_ACK, HEARTBEAT, REFUSED, SET};
use crate::protocol::session::Session;
use serde_json::Value;
use std::time::Instant;

impl Peer {
    /// Bytes received on the current transport.
    pub fn handle_receive(&mut self, bytes: &[u8], now: Instant) {
        if matches!(self.phase, Phase::Failed | Phase::Closed) {
            return;
        }
        self.clock.last_rx = now;
        let mut msgs = self.received.take().unwrap_or_default();
        let framed = self.reader().feed_framed(bytes, &mut msgs);
        for (msg, shape) in msgs.iter() {
            if self.phase == Phase::Failed {
                break;
            }
            let handled = self.handle_message(msg, shape, now);
            // After handling, so a secret the message carried is known and hidden.
            self.tap(Direction::Received, msg);
            if let Err(e) = handled {
                self.refuse_input(e.to_string());
            }
        }
        msgs.clear();
        self.received = Some(msgs);
        if let Err(e) = framed {
            if self.phase != Phase::Failed {
                self.refuse_input(e.to_string());
            }
        }
    }

    /// What the peer sent breaks the protocol or our limits. A peer of ours
    /// is told before the connection closes, so it can tell a refusal from
    /// a network drop (see `note_refusal`).
    fn refuse_input(&mut self, message: String) {
        if self.negotiated.extended() {
            let mut text = String::new();
            message::encode_call(REFUSED, None, &mut text);
            self.frame(&text);
        }
        self.fail(message);
    }

    fn handle_message(&mut self, text: &str, shape: Shape, now: Instant) -> Result<(), MessageError> {
        let (name, args, id, argc) = match message::parse_framed_counted(text, shape, self.config.max_args)? {
            (Incoming::Ack { id }, _) => {
                self.on_ack(&id);
                return Ok(());
            }
            (Incoming::Event { name, args, id }, argc) => (name, args, id, argc),
        };
        let Some(id) = id else {
            // Array-shaped and without an id, as no application event of a
            // peer that negotiated it is: an application's `_uhura_ack`
            // event (object-shaped, with an id) is delivered as any other.
            if name == CUMULATIVE_ACK && self.negotiated.cumulative_acks() {
                let id = second_arg(args, self.config.max_depth)?;
                let id = id.as_str().ok_or(MessageError("_uhura_ack without a message id"))?;
                self.on_ack_through(id);
                return Ok(());
            }
            return self.dispatch(&name, args, argc, now).map(drop);
        };
        if self.negotiated.extended()
            && message::decode_framed_string(id, shape).is_some_and(|id| self.is_duplicate(&id))
        {
            // Taken before; the ack that follows it may have been lost. Its
            // ack waits like a delivery's: the original may still be held
            // (a session loading) or queued for the application, and an ack
            // must never vouch for an event not yet handled.
            self.ack(id, true, true);
            return Ok(());
        }
        let delivered = self.dispatch(&name, args, argc, now)?;
        self.ack(id, delivered, false);
        Ok(())
    }

    /// Server: events wait in `hold` until the handshake completes (the
    /// session may still be loading).
    pub(super) fn holding(&self) -> bool {
        self.role == Role::Server && self.phase != Phase::Ready
    }

    /// Queues `ev` behind the held events while holding, else for the driver.
    pub(super) fn hold_or_emit(&mut self, ev: Event) {
        if self.holding() {
            self.hold.get_or_insert_default().events.push(ev);
        } else {
            self.events.push_back(ev);
        }
    }

    /// Acknowledges a message. With `defer_acks`, the ack of a message
    /// handed to the application (or of a duplicate of one) waits (as
    /// `Event::AckDue`, right behind the message) until the driver knows the
    /// application has handled it, so an ack never vouches for an event
    /// still in a buffer.
    fn ack(&mut self, id: &str, defer: bool, duplicate: bool) {
        if self.config.defer_acks && defer {
            if self.holding() {
                self.hold.get_or_insert_default().events.push(Event::AckDue { id: id.to_owned(), duplicate });
            } else {
                self.events.push_ack_due(id, duplicate);
            }
            return;
        }
        self.write_ack(id);
    }

    /// Writes `{"args":["ack::<id>"]}`; `id` is the raw JSON string literal
    /// of the message's id (as `Event::AckDue` holds it).
    pub fn write_ack(&mut self, id: &str) {
        let mut ack = std::mem::take(&mut self.scratch);
        ack.clear();
        message::encode_ack_raw(id, &mut ack);
        self.frame(&ack);
        self.scratch = ack;
    }

    /// Writes the acks of `Event::AckDue`s, `(id, duplicate)` in the order
    /// the peer reported them, once the application has handled their
    /// events. With a peer that negotiated cumulative acks (extensions 2),
    /// a run of two or more acks of new messages goes out as one
    /// `["_uhura_ack","<last id>"]`: the sender reads it as "that message
    /// and every one sent before it", which holds because messages arrive
    /// in the order they were sent and acks go out in the order they
    /// arrived. A duplicate's ack is written on its own, since it may name
    /// a message whose ack is out already. Otherwise one ack per message,
    /// as `write_ack`.
    pub fn write_acks<'a>(&mut self, acks: impl IntoIterator<Item = (&'a str, bool)>) {
        let cumulative = self.negotiated.cumulative_acks();
        // The last id of the current run of new messages, and its length.
        let mut run: Option<(&str, usize)> = None;
        for (id, duplicate) in acks {
            if cumulative && !duplicate {
                run = Some((id, run.map_or(1, |(_, n)| n + 1)));
                continue;
            }
            if let Some(r) = run.take() {
                self.write_run(r);
            }
            self.write_ack(id);
        }
        if let Some(r) = run {
            self.write_run(r);
        }
    }

    /// One run of `write_acks`: a single ack as it always was, more as one
    /// cumulative ack.
    fn write_run(&mut self, (last, len): (&str, usize)) {
        if len == 1 {
            return self.write_ack(last);
        }
        let mut ack = std::mem::take(&mut self.scratch);
        ack.clear();
        message::encode_cumulative_ack_raw(last, &mut ack);
        self.frame(&ack);
        self.scratch = ack;
    }

    /// Acts on one event; returns whether it went to the application.
    /// `argc`: the elements of `args`, if the parser counted them.
    fn dispatch(&mut self, name: &str, args: &str, argc: Option<usize>, now: Instant) -> Result<bool, MessageError> {
        let extended = self.negotiated.extended();
        match (name, self.role) {
            (HEARTBEAT, _) if extended => {}
            (REFUSED, _) if extended => self.peer_refused = true,
            (SET, _) => {
                // Within the framing's depth rule, so this cannot fail on
                // anything the reader let through (docs/PROTOCOL.md §5).
                let values = json::parse_args(args, self.config.max_depth)
                    .map_err(|_| MessageError("unreadable _set message"))?;
                if let Err(e) = self.merge_session(&values[1..]) {
                    // Refused, not fatal: the connection goes on without it.
                    self.events.push_back(Event::Error(e.to_string()));
                    return Ok(false);
                }
                if self.holding() {
                    // The application meets this connection at `Connected`,
                    // with the merged session; as in the original, sets
                    // before the handshake raise no event.
                    return Ok(false);
                }
                if self.role == Role::Server {
                    self.events.push_back(Event::SaveSession);
                }
                self.events.push_back(Event::Set(args.to_owned()));
            }
            ("start", Role::Server) if self.phase == Phase::AwaitingStart => {
                self.on_start(&second_arg(args, self.config.max_depth)?, now);
            }
            // A 0.0.x server sends bare `["connect"]` (or `["connect", true]`
            // on resume): no config object means array mode without acks.
            ("connect", Role::Client) if self.phase == Phase::AwaitingConnect => {
                self.on_connect(&second_arg(args, self.config.max_depth)?, now);
            }
            ("invalidateSession", Role::Client) => {
                self.session.set(Session::new());
                self.session_replaced();
                self.resume_secret = None;
                self.close_requested = true;
                // Uncounted: the client's own handling of it takes the array.
                self.events.push_message(args, None);
                return Ok(true);
            }
            // Only the server invalidates; a lifecycle name never comes from
            // the network. Acknowledged (so never resent) and ignored.
            ("invalidateSession", Role::Server) => {}
            _ if RESERVED_EVENTS.contains(&name) => {}
            _ if self.holding() => {
                // A resuming 0.1.2 client sends before our `connect`; the
                // application can only take events once it has the connection.
                let (awaiting_start, max) = (self.phase == Phase::AwaitingStart, self.config.max_handshake_bytes);
                let hold = self.hold.get_or_insert_default();
                if awaiting_start && hold.bytes + args.len() > max {
                    return Err(MessageError("more than maxHandshakeBytes of events before the handshake"));
                }
                hold.bytes += args.len();
                hold.events.push(Event::Message(args.to_owned()));
                return Ok(true);
            }
            _ => {
                self.events.push_message(args, argc);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The second element of an argument array (the first argument after the name).
fn second_arg(args: &str, max_depth: usize) -> Result<Value, MessageError> {
    let values = json::parse_args(args, max_depth).map_err(|_| MessageError("unreadable message arguments"))?;
    Ok(values.into_iter().nth(1).unwrap_or(Value::Null))
}
