//! Application calls on a link: sends, sets and raw messages, typed as
//! `Write` (what the Rust API builds), and the Node binding's line protocol
//! (`write_lines`, parsed by `engine/lines.rs`) that reduces to the same.

use super::Link;
use crate::engine::delivery::lock;
use crate::engine::lines::{parse_line, Line, Numbering};
use crate::protocol::peer::Notify as PeerNotify;
use std::sync::Arc;
use std::time::Instant;

/// One application call on a link, typed: what the Node binding's lines
/// (`write_lines`) and the Rust API (`crate::api`) both reduce to. The texts
/// are borrowed (from the lines, as they are parsed): the peer copies what
/// it keeps.
pub(crate) enum Write<'a> {
    /// An event: the JSON array text of its arguments, name first, and
    /// whom to tell about its ack.
    Event { args: &'a str, notify: Option<PeerNotify> },
    /// A durable event: `notify` is told its ack's fate, and also, by a
    /// PERSISTED entry, when it is in the store (`persist.rs`).
    Durable { args: &'a str, notify: PeerNotify },
    /// `set`: the JSON array of its arguments.
    Set(&'a str),
    /// One whole message as given, outside the queue (the original's `_send`).
    Raw(&'a str),
}

impl Link {
    /// Applies application calls in order, under one peer lock, then pumps
    /// once. Returns the last `set` error, if any; the other calls still apply.
    pub(crate) fn write<'a, I: IntoIterator<Item = Write<'a>>>(self: &Arc<Self>, ops: I) -> Result<(), String> {
        let mut result = Ok(());
        let now = Instant::now();
        {
            let mut peer = lock(&self.peer);
            // Absorbed into a newer connection of the session after the caller
            // looked this link up: the state lives there now.
            if let Some(next) = self.successor() {
                drop(peer);
                return next.write(ops);
            }
            let mut events = 0;
            for op in ops {
                match op {
                    Write::Event { args, notify } => {
                        peer.send_event(args, notify, now);
                        events += 1;
                    }
                    Write::Durable { args, notify } => {
                        peer.send_event(args, Some(notify), now);
                        // Under the peer lock, as the event's `Persist`: the
                        // pump that stages one stages the other.
                        lock(&self.rare().durable).push(notify);
                    }
                    Write::Set(args) => {
                        if let Err(e) = peer.set(args) {
                            result = Err(e.to_string());
                        }
                    }
                    Write::Raw(message) => peer.send_message(message),
                }
            }
            self.metrics.sent_events(events);
        }
        self.pump();
        result
    }

    /// Sends one event: `args` is the JSON array text of its arguments,
    /// name first. `notify` is told its fate (ACKED, ACK_TIMEOUT or DROPPED).
    pub(crate) fn send_event(self: &Arc<Self>, args: String, notify: Option<PeerNotify>) {
        let _ = self.write([Write::Event { args: &args, notify }]);
    }

    /// `set`: `args` is the JSON array of the arguments (`["key", value]`
    /// or `[{...}]`). Fails if the session would grow past its limit.
    pub(crate) fn set(self: &Arc<Self>, args: String) -> Result<(), String> {
        self.write([Write::Set(&args)])
    }

    /// Applies a batch of API calls that arrived through `caller` (this
    /// link's handle or an alias), one per line: `e<json>` send,
    /// `a<seq><json>` send and report its fate as `seq`, `A<json>` the same
    /// with the number after the batch's last one, `d<seq><json>`
    /// the same, durable, `s<json>` set,
    /// `r<json>` one raw message. This line format is the Node binding's
    /// (index.js); it parses into `Write`s, as the Rust API builds them.
    /// Lines cannot contain newlines: JSON.stringify escapes them.
    pub(crate) fn write_lines(self: &Arc<Self>, caller: u32, lines: &str) -> Result<(), String> {
        let mut malformed = None;
        let mut numbering = Numbering::default();
        let ops = lines.split('\n').filter(|line| !line.is_empty()).filter_map(|line| {
            let write = parse_line(line).and_then(|line| {
                let notify = numbering.of(&line)?.map(|seq| (caller, seq));
                Ok(match line {
                    Line::Event(args) | Line::Acked { args, .. } | Line::AckedNext(args) => {
                        Write::Event { args, notify }
                    }
                    // `of` numbered it with its own `seq`.
                    Line::Durable { seq, args } => Write::Durable { args, notify: (caller, seq) },
                    Line::Set(args) => Write::Set(args),
                    Line::Raw(json) => Write::Raw(json),
                })
            });
            write.map_err(|e| malformed = Some(e.to_string())).ok()
        });
        let result = self.write(ops);
        match malformed {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// Bytes to write to the socket as they are, after the output already
    /// queued (`socket.write()` of the Node binding).
    pub(crate) fn write_raw(self: &Arc<Self>, bytes: &[u8]) {
        lock(&self.peer).write_raw(bytes);
        self.wake_writer();
    }
}
