//! The peer's queue of what to report to its driver. Every message received
//! adds an application event and often an ack due: their texts go into one
//! buffer instead of a `String` each, and [`Peer::next_event`] lends them
//! out (`Peer::poll_event` still hands out owned events).

use super::event::Event;
use super::Peer;
use std::collections::VecDeque;

/// An event for the driver, its text borrowed from the peer's queue.
#[derive(Debug, PartialEq)]
pub enum Polled<'a> {
    /// [`Event::Message`]: the raw JSON of the argument array, name first,
    /// and its number of elements if the parser counted them.
    Message(&'a str, Option<usize>),
    /// [`Event::AckDue`]: the message id's raw JSON string literal.
    AckDue {
        /// The message id's raw JSON string literal.
        id: &'a str,
        /// See [`Event::AckDue`].
        duplicate: bool,
    },
    /// Any other event.
    Event(Event),
}

enum Queued {
    Event(Event),
    /// The next this many bytes of `text`, and the elements they hold if
    /// counted.
    Message(usize, Option<usize>),
    /// The next this many bytes of `text`, and whether of a duplicate.
    AckDue(usize, bool),
}

/// Events in the order they happened. Boxed, and only while it holds
/// something or its buffers are in use: an idle connection keeps 8 bytes
/// here, not 64.
#[derive(Default)]
pub(super) struct Events(Option<Box<Buffers>>);

/// The queue itself; texts in `text`, from `read` on.
#[derive(Default)]
struct Buffers {
    queue: VecDeque<Queued>,
    text: String,
    read: usize,
}

impl Events {
    fn buffers(&mut self) -> &mut Buffers {
        self.0.get_or_insert_with(Box::default)
    }

    pub(super) fn push_back(&mut self, ev: Event) {
        self.buffers().queue.push_back(Queued::Event(ev));
    }

    pub(super) fn extend(&mut self, evs: impl IntoIterator<Item = Event>) {
        self.buffers().queue.extend(evs.into_iter().map(Queued::Event));
    }

    /// An `Event::Message` with this text, of `argc` elements if counted.
    pub(super) fn push_message(&mut self, args: &str, argc: Option<usize>) {
        let b = self.buffers();
        b.push_text(args);
        b.queue.push_back(Queued::Message(args.len(), argc));
    }

    /// An `Event::AckDue` for this id.
    pub(super) fn push_ack_due(&mut self, id: &str, duplicate: bool) {
        let b = self.buffers();
        b.push_text(id);
        b.queue.push_back(Queued::AckDue(id.len(), duplicate));
    }

    /// The oldest event, its text borrowed.
    fn pop(&mut self) -> Option<Polled<'_>> {
        self.0.as_mut()?.pop()
    }

    /// Frees the buffers that hold nothing still queued; all of them, box
    /// and all, once nothing is (see `Buffers::release`).
    fn release(&mut self) {
        if let Some(b) = &mut self.0 {
            if b.queue.is_empty() {
                self.0 = None;
            } else {
                b.release();
            }
        }
    }
}

impl Buffers {
    fn push_text(&mut self, s: &str) {
        if self.read == self.text.len() {
            // Everything lent out was taken: start over at the front.
            self.text.clear();
            self.read = 0;
        }
        self.text.push_str(s);
    }

    fn pop(&mut self) -> Option<Polled<'_>> {
        let (len, ack, argc) = match self.queue.pop_front()? {
            Queued::Event(ev) => return Some(Polled::Event(ev)),
            Queued::Message(len, argc) => (len, None, argc),
            Queued::AckDue(len, duplicate) => (len, Some(duplicate), None),
        };
        let start = self.read;
        self.read += len;
        let text = &self.text[start..self.read];
        Some(match ack {
            None => Polled::Message(text, argc),
            Some(duplicate) => Polled::AckDue { id: text, duplicate },
        })
    }

    /// Frees the text buffer if nothing in it is still queued, and the
    /// queue's own buffer if it is empty (an idle connection's last events,
    /// those of its handshake, left room for four: ~200 bytes).
    fn release(&mut self) {
        if self.read == self.text.len() {
            self.text = String::new();
            self.read = 0;
        }
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
    }
}

impl Peer {
    /// What happened, for the driver to act on, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        Some(match self.events.pop()? {
            Polled::Message(args, _) => Event::Message(args.to_owned()),
            Polled::AckDue { id, duplicate } => Event::AckDue { id: id.to_owned(), duplicate },
            Polled::Event(ev) => ev,
        })
    }

    /// [`poll_event`](Self::poll_event) without copying the text of an
    /// application event or an ack due: the driver's way for the events of
    /// every message received.
    pub fn next_event(&mut self) -> Option<Polled<'_>> {
        self.events.pop()
    }

    /// Frees the queue's buffers when they hold nothing queued (see
    /// `release_buffers`).
    pub(super) fn release_event_text(&mut self) {
        self.events.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_come_out_in_order_and_the_buffer_restarts_when_drained() {
        let mut q = Events::default();
        q.push_message("[\"a\"]", Some(1));
        q.push_back(Event::SaveSession);
        q.push_ack_due("\"x-1\"", true);
        assert_eq!(q.pop(), Some(Polled::Message("[\"a\"]", Some(1))));
        assert_eq!(q.pop(), Some(Polled::Event(Event::SaveSession)));
        q.push_message("[\"b\"]", None);
        assert_eq!(q.pop(), Some(Polled::AckDue { id: "\"x-1\"", duplicate: true }));
        assert_eq!(q.pop(), Some(Polled::Message("[\"b\"]", None)));
        assert_eq!(q.pop(), None);
        q.push_ack_due("\"y\"", false);
        assert_eq!(q.0.as_ref().unwrap().text, "\"y\"", "drained text is dropped on the next push");
        q.release();
        let b = q.0.as_ref().expect("kept while queued");
        assert_eq!(b.text, "\"y\"", "kept while queued");
        assert!(b.queue.capacity() > 0, "kept while queued");
        assert_eq!(q.pop(), Some(Polled::AckDue { id: "\"y\"", duplicate: false }));
        q.release();
        assert!(q.0.is_none(), "nothing queued: no buffers at all");
        assert_eq!(q.pop(), None);
        // Released, it queues again.
        q.push_back(Event::SaveSession);
        q.push_message("[\"c\"]", Some(1));
        assert_eq!(q.pop(), Some(Polled::Event(Event::SaveSession)));
        assert_eq!(q.pop(), Some(Polled::Message("[\"c\"]", Some(1))));
        assert_eq!(q.pop(), None);
    }
}
