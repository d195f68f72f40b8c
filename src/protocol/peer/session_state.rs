//! The peer's copy of the shared session (docs/PROTOCOL.md §5): local
//! `set`, merges from either side within `max_session_bytes`, what changed
//! for the store, and the resume credential.

use super::event::Event;
use super::{Peer, Phase, Role};
use crate::protocol::json;
use crate::protocol::message::{self, MessageError};
use crate::protocol::session::{self, Session};
use serde_json::Value;

impl Peer {
    /// `set(key, value)` / `set({...})`: `args` is the JSON array of the
    /// arguments (`["key", value]` or `[{...}]`).
    pub fn set(&mut self, args: &str) -> Result<(), MessageError> {
        let values = json::parse_args(args, self.config.max_depth).map_err(|e| match e {
            json::ParseError::TooDeep => MessageError("set() value is nested deeper than maxDepth"),
            json::ParseError::Syntax => MessageError("set() arguments are not a JSON array"),
        })?;
        self.merge_session(&values)?;
        if matches!(self.phase, Phase::AwaitingConnect | Phase::Ready | Phase::AwaitingStart | Phase::LoadingSession) {
            let mut text = std::mem::take(&mut self.scratch);
            text.clear();
            message::encode_set(args, &mut text);
            self.frame(&text);
            self.scratch = text;
        }
        if self.role == Role::Server && self.session_id.is_some() {
            self.events.push_back(Event::SaveSession);
        }
        Ok(())
    }

    /// Merges a `_set`'s arguments unless the session would grow past
    /// `max_session_bytes`; measures only the keys it changes.
    pub(super) fn merge_session(&mut self, args: &[Value]) -> Result<(), MessageError> {
        let map = self.session.get_mut();
        let now = *self.session_size.get_or_insert_with(|| session::size(map));
        let after = session::size_after_merge(map, args, now);
        if after > self.config.max_session_bytes && after > now {
            return Err(MessageError("_set refused: the session would be larger than maxSessionBytes"));
        }
        session::merge(map, args);
        if self.role == Role::Server {
            self.session_changes.note(args);
        }
        self.session_size = Some(after);
        Ok(())
    }

    /// The session was replaced, cleared or loaded.
    pub(super) fn session_replaced(&mut self) {
        self.session_size = None;
        self.session_changes = session::Changes::All;
    }

    /// Server: what changed in the session since the last call (with
    /// `SaveSession`), so a store that can save changed keys does only that.
    pub fn take_session_changes(&mut self) -> session::Changes {
        std::mem::take(&mut self.session_changes)
    }

    /// Server: whether this connection may resume `stored` (see
    /// `session::may_resume`); one that may not gets a new session.
    pub fn may_resume(&self, stored: &Session) -> bool {
        session::may_resume(stored, self.resume_secret.as_deref())
    }

    /// Server: forgets the session after `invalidateSession` destroyed it.
    pub fn clear_session(&mut self) {
        self.session.set(Session::new());
        self.session_replaced();
        self.session_id = None;
    }
}
