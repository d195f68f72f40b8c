//! uhura: the server-to-server event-emitter wire protocol of the `uhura` npm
//! package, as a sans-IO core (`protocol`), a tokio engine (`engine`), a
//! typed Rust API ([`api`]: [`Client`], [`Server`], [`Connection`],
//! [`Event`], re-exported here) and Node.js bindings (`node`, behind the
//! default `node` feature).

pub mod api;
// Reading sockets on Node's loop (`engine::link::external_read` and what
// serves it) has one caller, `node/uv.rs`, which exists on Unix only: on
// other platforms (and with `--cfg uhura_portable`) that code is unused.
#[cfg_attr(not(all(unix, not(uhura_portable))), allow(dead_code))]
pub mod engine;
pub mod protocol;

// The napi macros register exports only outside `cargo test`.
#[cfg(feature = "node")]
#[cfg_attr(test, allow(dead_code))]
mod node;

pub use api::{Ack, Addr, Client, Connection, Error, ErrorKind, Event, IntoAddr, Options, Server, ServerOptions};
