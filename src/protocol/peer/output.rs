//! The bytes a peer has framed and the driver has not written yet, and the
//! two ways out: `poll_transmit` for a driver that owns the bytes while it
//! writes them (an async writer task), `write_to` for one that writes
//! synchronously and may be cut short (a non-blocking socket), as rustls's
//! `write_tls` does: what was not written stays here.

use super::config::{OUTPUT_HIGH_WATER, READ_HIGH_WATER, READ_LOW_WATER};
use super::event::Direction;
use super::{Peer, Phase};
use crate::protocol::framing::Writer;
use std::io;

pub(super) struct Output {
    writer: Writer,
    buf: Vec<u8>,
    /// Went past `READ_HIGH_WATER` and has not been written down below
    /// `READ_LOW_WATER` since: the peer does not want input.
    backed_up: bool,
}

impl Output {
    pub(super) fn new() -> Self {
        Output { writer: Writer::new(), buf: Vec::new(), backed_up: false }
    }

    /// A new transport: a new stream, nothing of the old one's.
    pub(super) fn reset(&mut self) {
        self.writer = Writer::new();
        self.clear();
    }

    pub(super) fn clear(&mut self) {
        self.buf = Vec::new();
        self.backed_up = false;
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn backed_up(&self) -> bool {
        self.backed_up
    }

    /// Room for more events (below `OUTPUT_HIGH_WATER`).
    pub(super) fn has_room(&self) -> bool {
        self.buf.len() < OUTPUT_HIGH_WATER
    }

    /// One message, framed.
    pub(super) fn frame(&mut self, text: &str) {
        self.writer.write_raw(text, &mut self.buf);
        self.grew();
    }

    /// Bytes outside the framing.
    pub(super) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.grew();
    }

    fn grew(&mut self) {
        if self.buf.len() > READ_HIGH_WATER {
            self.backed_up = true;
        }
    }

    fn shrank(&mut self) {
        if self.buf.len() < READ_LOW_WATER {
            self.backed_up = false;
        }
    }

    /// Moves every byte into `buf`; returns how many.
    fn take_into(&mut self, buf: &mut Vec<u8>) -> usize {
        let n = self.buf.len();
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.buf);
        } else {
            buf.append(&mut self.buf);
        }
        self.shrank();
        n
    }

    /// One `write` of the bytes; keeps what it did not take.
    fn write_to(&mut self, w: &mut dyn io::Write) -> io::Result<usize> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        let n = w.write(&self.buf)?;
        if n == self.buf.len() {
            // All written: free it, an idle connection should not keep the
            // capacity of its last burst (a new one costs one allocation,
            // next to a write's system call).
            self.buf = Vec::new();
        } else {
            self.buf.drain(..n);
        }
        self.shrank();
        Ok(n)
    }
}

impl Peer {
    /// Appends the bytes ready to write to `buf` and returns how many; the
    /// caller owns them from then on (an async writer holds them until they
    /// are written). Lets queued events that waited for room in first, and
    /// again after, so `wants_write` tells whether another call has work.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        self.refill();
        let n = self.output.take_into(buf);
        self.refill();
        n
    }

    /// Writes the bytes ready to write with one `w.write`, as rustls's
    /// `write_tls`: what `w` did not take stays in the peer, ahead of
    /// anything framed later. For a synchronous, possibly non-blocking,
    /// writer: `WouldBlock` comes back as the error, nothing consumed.
    /// Returns the bytes written (0: nothing was ready).
    pub fn write_to(&mut self, w: &mut dyn io::Write) -> io::Result<usize> {
        self.refill();
        let written = self.output.write_to(w);
        self.refill();
        written
    }

    /// Output is ready: `poll_transmit` / `write_to` have bytes to give
    /// (framed already, or queued events there is now room for).
    pub fn wants_write(&self) -> bool {
        self.output.len() > 0 || self.can_refill()
    }

    /// Input is welcome. False while the output is backed up (past 16 MiB
    /// unwritten, until written down below 8 MiB: a peer that sends but
    /// never reads must not grow our acks without bound), and on a server
    /// while a resuming session loads with more than `max_handshake_bytes`
    /// of events held for it. The driver stops reading until it is true
    /// again, which only writing output or `handle_session_loaded` makes it.
    pub fn wants_read(&self) -> bool {
        !self.output.backed_up() && !self.input_paused()
    }

    /// Bytes framed and not yet taken by the driver (diagnostics).
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// Raw bytes onto the wire, outside the framing (`socket.write`).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.output.raw(bytes);
    }

    /// One whole message as the application wrote it (the original's
    /// `_send`): framed now, outside the event queue, so it is neither
    /// acknowledged nor resent. `json` must be one JSON value.
    pub fn send_message(&mut self, json: &str) {
        self.frame(json);
    }

    /// Frames one message for the current transport (nothing while closed).
    pub(super) fn frame(&mut self, text: &str) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.tap(Direction::Sent, text);
        self.output.frame(text);
    }

    /// Shows a message to the wire tap (`DEBUG=uhura:protocol`), with the
    /// resume secret hidden: logs must not hand out the credential.
    pub(super) fn tap(&self, direction: Direction, text: &str) {
        let Some(tap) = self.tap.as_ref().filter(|t| t.looking()) else { return };
        match self.resume_secret.as_deref().filter(|s| text.contains(s)) {
            Some(secret) => tap.see(direction, &text.replace(secret, "<secret>")),
            None => tap.see(direction, text),
        }
    }
}
