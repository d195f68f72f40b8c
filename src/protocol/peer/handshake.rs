//! The handshake (docs/PROTOCOL.md §3): the client's `_set` and `start`,
//! the server's session lookup, new session or resume, and its `connect`.

use super::event::Event;
use super::negotiate::Negotiated;
use super::{Peer, Phase};
use crate::protocol::message::{self, SET};
use crate::protocol::session::{self, Session};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

impl Peer {
    /// Client: opens the handshake on a new transport: our copy of the
    /// session, then `start` with what we ask for.
    pub(super) fn send_start(&mut self) {
        let mut text = String::new();
        message::encode_call(SET, Some(&self.session.to_json()), &mut text);
        self.frame(&text);
        text.clear();
        let config = Negotiated::start_config(&self.config, self.resume_secret.as_deref());
        message::encode_call("start", Some(&config), &mut text);
        self.frame(&text);
    }

    /// Server: the client's `start` (its config object, or `Value::Null`).
    pub(super) fn on_start(&mut self, config: &Value, now: Instant) {
        let (negotiated, resume) = Negotiated::from_start(config, &self.config);
        if negotiated.extended() {
            self.resume_secret = resume.map(str::to_owned);
        }
        self.negotiated = negotiated;
        match self.session.get_mut().get("sessionID") {
            Some(Value::String(id)) if !id.is_empty() => {
                let id = id.clone();
                self.phase = Phase::LoadingSession;
                self.events.push_back(Event::LoadSession(id));
            }
            _ => self.start_new_session(now),
        }
    }

    /// Client: the server's `connect` (its config object, or `Value::Null`
    /// from a 0.0.x server).
    pub(super) fn on_connect(&mut self, config: &Value, now: Instant) {
        let (negotiated, secret) = Negotiated::from_connect(config, &self.config);
        // A new session's secret; a resumed one keeps the one we have.
        if let Some(secret) = secret {
            self.resume_secret = Some(secret.to_owned());
        }
        self.negotiated = negotiated;
        self.become_ready(false, now);
    }

    fn start_new_session(&mut self, now: Instant) {
        let id = session::new_session_id(self.entropy());
        self.session.get_mut().insert("sessionID".into(), Value::String(id.clone()));
        // One of our clients gets a secret that it alone can resume with.
        let secret = self.negotiated.extended().then(|| session::new_resume_secret(self.entropy()));
        if let Some(secret) = &secret {
            self.session.get_mut().insert(session::RESUME_KEY.into(), Value::String(session::resume_digest(secret)));
        }
        // This session's secret from now on (and hidden from the wire tap).
        self.resume_secret = secret.clone();
        self.session_replaced();
        self.session_id = Some(id.as_str().into());
        let mut text = String::new();
        message::encode_set_string("sessionID", &id, &mut text);
        self.frame(&text);
        self.events.push_back(Event::SaveSession);
        self.send_connect(secret.as_deref());
        self.become_ready(false, now);
    }

    /// Server: the store answered `LoadSession`. `None`: unknown id (or a
    /// store failure), which starts a new session as the old server does.
    pub fn handle_session_loaded(&mut self, stored: Option<Session>, now: Instant) {
        if self.phase != Phase::LoadingSession {
            return;
        }
        match stored {
            Some(stored) => {
                let id = self.session.get_mut().get("sessionID").cloned();
                self.session.set(stored);
                self.session_replaced();
                let session = self.session.get_mut();
                if let Some(id) = id {
                    session.insert("sessionID".into(), id);
                }
                self.session_id = session.get("sessionID").and_then(Value::as_str).map(Arc::from);
                let session = session::public_view(session).to_string();
                let mut text = String::new();
                message::encode_call(SET, Some(&session), &mut text);
                self.frame(&text);
                self.send_connect(None);
                self.become_ready(true, now);
            }
            None => {
                self.session.get_mut().shift_remove("sessionID");
                self.session_replaced();
                self.start_new_session(now);
            }
        }
    }

    /// The handshake's reply; `secret`: a new session's resume secret (our peers only).
    fn send_connect(&mut self, secret: Option<&str>) {
        let config = self.negotiated.connect_config(&self.config, secret);
        let mut args = String::new();
        message::encode_call("connect", Some(&config), &mut args);
        if self.negotiated.peer_has_config && self.negotiated.object_mode {
            // Old clients never ack `connect`, so its id is not tracked.
            let id = self.negotiated.enable_acks.then(|| format!("{}connect", self.outbox.id_prefix));
            let mut text = String::new();
            message::encode_event(&args, true, id.as_deref(), &mut text);
            self.frame(&text);
        } else {
            self.frame(&args);
        }
    }

    fn become_ready(&mut self, resumed: bool, now: Instant) {
        self.phase = Phase::Ready;
        self.clock.last_rx = now;
        self.events.push_back(Event::Connected { resumed });
        // The held events are the application's now: their marks stand.
        if let Some(hold) = self.hold.take() {
            self.events.extend(hold.events);
        }
        self.refill();
    }
}
