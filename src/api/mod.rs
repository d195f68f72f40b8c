//! The Rust API: a Rust program as a first-class uhura peer.
//!
//! [`Client`] connects to any uhura server (this crate's, or the Node
//! packages 0.1.x and 0.0.x); [`Server`] accepts any uhura client and hands
//! out a [`Connection`] per completed handshake. Both sides
//! [`send`](Client::send) events (the future resolves on the peer's ack),
//! share a key/value session ([`set`](Client::set), [`get`](Client::get)),
//! and take what happens, in order, as typed [`Event`]s from
//! [`next_event`](Client::next_event).
//!
//! ```no_run
//! use uhura::{Client, Event, Options, Server, ServerOptions};
//!
//! # async fn run() -> Result<(), uhura::Error> {
//! let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
//! let client = Client::connect(server.local_addr(), Options::default()).await?;
//! let ack = client.send("hello", ("world", 42));
//!
//! let conn = server.accept().await.expect("a connection");
//! assert_eq!(
//!     conn.next_event().await,
//!     Some(Event::Message { name: "hello".into(), args: vec!["world".into(), 42.into()] })
//! );
//! ack.await?; // the server took the event: its ack went out
//! # Ok(())
//! # }
//! ```
//!
//! The futures need no particular executor (they wait on `tokio::sync`
//! primitives), but the API does run its own tokio runtime: one per
//! process, shared by every client and server, started on first use
//! (`UHURA_THREADS` worker threads, default 2), and never shut down.
//!
//! # Delivery guarantee
//!
//! The same as the Node binding's (README, "Delivery"), with "the listeners
//! ran" replaced by "the event was taken by `next_event()`":
//!
//! - **Acks mean taken.** The ack of an event received from the peer is
//!   written only after `next_event()` (or `try_next_event()`) on its
//!   client or connection has returned that event and every event before
//!   it. Under load acks go out per delivery batch, so an ack may wait
//!   for the later events of its batch to be taken too; never the
//!   other way round. An event still waiting in a queue (the process
//!   dies, or the `Connection` is dropped before taking it) is not
//!   acknowledged, and its sender resends it when the session resumes.
//! - **At-least-once, both ways, across drops**; **exactly-once between
//!   peers of this crate** (Node or Rust), which drop resent duplicates;
//!   at-least-once with 0.1.x peers where they ack, at-most-once with 0.0.x.
//!   A `send` future resolves `Ok` once the peer acked; it fails with
//!   [`ErrorKind::Dropped`] if the event was dropped (queue limits, or a
//!   server let the dropped session go), [`ErrorKind::AckTimeout`] past
//!   `ack_timeout` (the event stays queued), [`ErrorKind::Closed`] if the
//!   client was dropped first. While a client is disconnected, its sends
//!   wait in the queue, and their futures with them.
//! - **Order.** Events from one peer arrive in the order it sent them;
//!   sends go out in call order (the event is queued when `send` is called,
//!   not when its future is polled).
//! - **Back-pressure.** Events wait in one queue per client or connection.
//!   Once all queues together hold 8 MiB, the runtime stops taking
//!   events from its connections, and past the engine's own 8 MiB buffer
//!   it stops reading sockets, until queues are drained. The bound is
//!   shared: a connection whose events nobody takes (a `Connection` kept
//!   but never read, or never accepted) eventually holds up delivery to
//!   all of them. Take events, or drop what you will not read.
//!
//! # How it is built
//!
//! The API drives the same engine as the Node binding (`crate::engine`),
//! through typed calls on its links. The engine reports events as entries
//! of one batched buffer; a dispatcher task parses each batch, settles
//! `send` futures at once, and appends the other events of each link, as
//! one group per batch, to that link's queue. Popping the queue releases
//! the link's acks up to the batches fully taken (`Link::release_acks`),
//! link by link, so one slow consumer never holds up another's acks.

mod addr;
mod client;
mod connection;
mod error;
mod event;
mod handle;
mod hub;
mod inbox;
mod options;
mod server;

pub use addr::{Addr, IntoAddr};
pub use client::Client;
pub use connection::Connection;
pub use error::{Error, ErrorKind};
pub use event::Event;
pub use handle::Ack;
pub use options::{Options, ServerOptions};
pub use server::Server;
