//! uhura: the server-to-server event-emitter wire protocol of the `uhura` npm
//! package, as a sans-IO core (`protocol`), a tokio engine (`engine`), a
//! typed Rust API ([`api`]: [`Client`], [`Server`], [`Connection`],
//! [`Event`], re-exported here) and Node.js bindings (`node`, behind the
//! default `node` feature).

pub mod api;
pub mod engine;
pub mod protocol;

// The napi macros register exports only outside `cargo test`.
#[cfg(feature = "node")]
#[cfg_attr(test, allow(dead_code))]
mod node;

pub use api::{Ack, Addr, Client, Connection, Error, ErrorKind, Event, IntoAddr, Options, Server, ServerOptions};
