//! Diagnostics for the `debug` namespaces (lib/debug.js): `uhura:protocol`
//! (every message sent and received, as the original logs them),
//! `uhura:connection`, `uhura:reconnect` and `uhura:session`.
//!
//! The application says once which namespaces are on (`set`); each site
//! checks one relaxed atomic before doing anything, so with logging off
//! nothing is formatted and nothing crosses into JavaScript. When on, lines
//! travel as `LOG` entries in the ordinary delivery batches, so they reach
//! JavaScript in the order they happened on each connection.

use super::delivery::Delivery;
use super::events::Kind;
use crate::protocol::message::push_json_string;
use crate::protocol::peer::{Direction, Tap, WireTap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A debug namespace; the value is its bit in `set` and its code in `LOG` entries
/// (codes 0 and 1 are `uhura:protocol` received / sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    Protocol = 0,
    Connection = 2,
    Reconnect = 3,
    Session = 4,
}

static PROTOCOL: AtomicBool = AtomicBool::new(false);
static CONNECTION: AtomicBool = AtomicBool::new(false);
static RECONNECT: AtomicBool = AtomicBool::new(false);
static SESSION: AtomicBool = AtomicBool::new(false);

fn flag(ns: Ns) -> &'static AtomicBool {
    match ns {
        Ns::Protocol => &PROTOCOL,
        Ns::Connection => &CONNECTION,
        Ns::Reconnect => &RECONNECT,
        Ns::Session => &SESSION,
    }
}

/// Turns the namespaces on or off: bit 0 protocol, 1 connection, 2 reconnect, 3 session.
pub(crate) fn set(bits: u32) {
    for (i, ns) in [Ns::Protocol, Ns::Connection, Ns::Reconnect, Ns::Session].into_iter().enumerate() {
        flag(ns).store(bits & (1 << i) != 0, Ordering::Relaxed);
    }
}

#[inline]
pub(crate) fn on(ns: Ns) -> bool {
    flag(ns).load(Ordering::Relaxed)
}

/// A log line in the delivery format: `[handle, LOG, code, "text"]`.
fn push(delivery: &Delivery, handle: u32, code: u8, text: &str) {
    delivery.push(|b| {
        let _ = write!(b, "[{handle},{},{code},", Kind::Log);
        push_json_string(text, b);
        b.push(']');
    });
}

/// Logs a line under `ns` (not `Protocol`) for connection or client `handle`;
/// `msg` runs only when the namespace is on.
pub(crate) fn log(delivery: &Delivery, handle: u32, ns: Ns, msg: impl FnOnce() -> String) {
    if on(ns) {
        push(delivery, handle, ns as u8, &msg());
    }
}

/// The tap a link installs in its peer: each message's JSON text becomes a
/// `recv:` / `send:` line, as long as `uhura:protocol` is on.
pub(crate) fn wire_tap(delivery: Arc<Delivery>, handle: u32) -> WireTap {
    Arc::new(ProtocolTap { delivery, handle })
}

struct ProtocolTap {
    delivery: Arc<Delivery>,
    handle: u32,
}

impl Tap for ProtocolTap {
    /// Off, the peer does not even look for the secret to hide (that
    /// search was ~1.4 % of a burst's CPU on each side).
    fn looking(&self) -> bool {
        on(Ns::Protocol)
    }

    fn see(&self, dir: Direction, text: &str) {
        push(&self.delivery, self.handle, if dir == Direction::Received { 0 } else { 1 }, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_only_when_on() {
        let d = Arc::new(Delivery::new(|| {}));
        let tap = wire_tap(d.clone(), 7);
        set(0);
        assert!(!tap.looking());
        log(&d, 7, Ns::Connection, || unreachable!("formatted while off"));
        assert_eq!(d.take(), None);
        set(0b11);
        assert!(tap.looking());
        tap.see(Direction::Received, r#"{"args":["ack::x-1"]}"#);
        tap.see(Direction::Sent, r#"["a","q\"uote"]"#);
        log(&d, 7, Ns::Connection, || "open".into());
        log(&d, 7, Ns::Session, || unreachable!("session is off"));
        set(0);
        let (text, _) = d.take().expect("entries");
        assert_eq!(text, r#"[[7,19,0,"{\"args\":[\"ack::x-1\"]}"],[7,19,1,"[\"a\",\"q\\\"uote\"]"],[7,19,2,"open"]]"#);
    }
}
