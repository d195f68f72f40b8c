//! What the handshake settles between the two sides, and the config objects
//! that carry it: the client's offer in `start`, the server's answer in
//! `connect` (docs/PROTOCOL.md §3). Old servers echo back only `objectMode`
//! and `enableAcks`, old clients never ask; our extensions ride along in the
//! same objects (§9). This is the one place that writes and reads them.

use super::config::Config;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Version of our extensions, sent as `"uhura"` in the config objects. Both
/// sides use the lower of the two versions. 1: duplicate suppression,
/// heartbeats, refusals, resume secrets; 2: also cumulative acks.
pub const EXTENSIONS_VERSION: u64 = 2;

/// The first extensions version with cumulative acks (`["_uhura_ack",id]`).
const CUMULATIVE_ACKS_SINCE: u64 = 2;

/// What the handshake of the current transport settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Negotiated {
    /// Messages are `{"args": [...], "id": ...}` objects, not bare arrays.
    pub object_mode: bool,
    /// Events carry ids and are acknowledged.
    pub enable_acks: bool,
    /// The version of our extensions in use, when the peer is one of ours:
    /// duplicate suppression, heartbeats, refusals, resume secrets; from 2,
    /// cumulative acks.
    pub extensions: Option<u64>,
    /// The peer's heartbeat interval, if it sends heartbeats.
    pub peer_heartbeat: Option<Duration>,
    /// Server: the client's `start` carried a config object (0.1.x and
    /// ours), so `connect` goes back object-shaped.
    pub peer_has_config: bool,
}

/// A config object as it is on the wire. Serialised in field order, which
/// is the order the old peers write.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireConfig<'a> {
    object_mode: bool,
    enable_acks: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    uhura: Option<u64>,
    /// Milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat: Option<u64>,
    /// Client: the resume secret of the session it asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    resume: Option<&'a str>,
    /// Server: a new session's resume secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

impl WireConfig<'_> {
    fn to_json(&self) -> String {
        // Serialising plain fields cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a received config object says, read with JavaScript's truthiness,
/// as the old peers read it.
struct Offer<'a> {
    object_mode: bool,
    enable_acks: bool,
    /// Our extensions, at any version we understand.
    extensions: Option<u64>,
    heartbeat: Option<Duration>,
    resume: Option<&'a str>,
    secret: Option<&'a str>,
}

impl<'a> Offer<'a> {
    fn read(config: &'a Value) -> Self {
        let str_field = |k: &str| config.get(k).and_then(Value::as_str);
        Offer {
            object_mode: config.get("objectMode").is_some_and(truthy),
            enable_acks: config.get("enableAcks").is_some_and(truthy),
            extensions: config.get("uhura").and_then(Value::as_u64).filter(|v| *v >= 1),
            heartbeat: config.get("heartbeat").and_then(Value::as_u64).filter(|ms| *ms > 0).map(Duration::from_millis),
            resume: str_field("resume"),
            secret: str_field("secret"),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Negotiated {
    /// Client: the config object of `start`. We always ask for object mode
    /// and acks; a server of ours then turns our extensions on.
    pub(super) fn start_config(ours: &Config, resume: Option<&str>) -> String {
        let mut c = WireConfig { object_mode: true, enable_acks: true, ..WireConfig::default() };
        if ours.extensions {
            c.uhura = Some(EXTENSIONS_VERSION);
            c.heartbeat = ours.heartbeat_interval.map(millis);
            c.resume = resume;
        }
        c.to_json()
    }

    /// Server: what a client's `start` config (`Value::Null` when it sent
    /// none) settles, and the resume secret it presented.
    pub(super) fn from_start<'a>(config: &'a Value, ours: &Config) -> (Negotiated, Option<&'a str>) {
        let offer = Offer::read(config);
        let extensions = offer
            .extensions
            .filter(|_| ours.extensions && offer.object_mode && offer.enable_acks)
            .map(|v| v.min(EXTENSIONS_VERSION));
        let n = Negotiated {
            object_mode: offer.object_mode,
            enable_acks: offer.enable_acks,
            extensions,
            peer_heartbeat: offer.heartbeat.filter(|_| extensions.is_some()),
            peer_has_config: config.is_object(),
        };
        (n, offer.resume.filter(|_| extensions.is_some()))
    }

    /// Server: the config object of `connect`; `secret`: a new session's
    /// resume secret (our peers only). It echoes the version both sides
    /// use, so a client of an older version is never offered more.
    pub(super) fn connect_config(&self, ours: &Config, secret: Option<&str>) -> String {
        let mut c =
            WireConfig { object_mode: self.object_mode, enable_acks: self.enable_acks, ..WireConfig::default() };
        if let Some(version) = self.extensions {
            c.uhura = Some(version);
            c.heartbeat = ours.heartbeat_interval.map(millis);
            c.secret = secret;
        }
        c.to_json()
    }

    /// Client: what the server's `connect` config settles (`Value::Null`
    /// from a 0.0.x server, which sends none: array mode without acks), and
    /// a new session's resume secret, if it issued one.
    pub(super) fn from_connect<'a>(config: &'a Value, ours: &Config) -> (Negotiated, Option<&'a str>) {
        let offer = Offer::read(config);
        let enable_acks = offer.object_mode && offer.enable_acks;
        let extensions = offer.extensions.filter(|_| ours.extensions && enable_acks).map(|v| v.min(EXTENSIONS_VERSION));
        let n = Negotiated {
            object_mode: offer.object_mode,
            enable_acks,
            extensions,
            peer_heartbeat: offer.heartbeat.filter(|_| extensions.is_some()),
            peer_has_config: false,
        };
        (n, offer.secret.filter(|_| extensions.is_some()))
    }

    /// The peer is one of ours: our extensions are on.
    pub(super) fn extended(&self) -> bool {
        self.extensions.is_some()
    }

    /// The peer sends and understands `["_uhura_ack",id]` (extensions 2).
    pub(super) fn cumulative_acks(&self) -> bool {
        self.extensions.is_some_and(|v| v >= CUMULATIVE_ACKS_SINCE)
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_objects_are_written_as_before() {
        let ours = Config::default();
        assert_eq!(
            Negotiated::start_config(&ours, Some("s\"")),
            r#"{"objectMode":true,"enableAcks":true,"uhura":2,"heartbeat":15000,"resume":"s\""}"#
        );
        let old = Config { extensions: false, ..Config::default() };
        assert_eq!(Negotiated::start_config(&old, Some("s")), r#"{"objectMode":true,"enableAcks":true}"#);
        let start = json!({"objectMode":1,"enableAcks":"y","uhura":3,"resume":"r"});
        let (n, resume) = Negotiated::from_start(&start, &ours);
        assert_eq!(resume, Some("r"));
        assert_eq!(n.extensions, Some(EXTENSIONS_VERSION));
        assert_eq!(
            n.connect_config(&ours, Some("k")),
            r#"{"objectMode":true,"enableAcks":true,"uhura":2,"heartbeat":15000,"secret":"k"}"#
        );
        assert!(n.cumulative_acks());
        // A client of version 1 (our older releases) is answered with 1 and
        // gets no cumulative acks; neither does a server that answers 1.
        let (n, _) = Negotiated::from_start(&json!({"objectMode":true,"enableAcks":true,"uhura":1}), &ours);
        assert!(n.extended() && !n.cumulative_acks());
        assert_eq!(
            n.connect_config(&ours, None),
            r#"{"objectMode":true,"enableAcks":true,"uhura":1,"heartbeat":15000}"#
        );
        let (n, _) = Negotiated::from_connect(&json!({"objectMode":true,"enableAcks":true,"uhura":1}), &ours);
        assert!(n.extended() && !n.cumulative_acks());
        let start = json!({"objectMode":true,"enableAcks":false,"uhura":1});
        let (n, resume) = Negotiated::from_start(&start, &ours);
        assert_eq!((n.extended(), resume), (false, None));
        assert_eq!(n.connect_config(&ours, Some("k")), r#"{"objectMode":true,"enableAcks":false}"#);
    }

    #[test]
    fn a_client_reads_old_and_new_servers() {
        let ours = Config::default();
        let (n, _) = Negotiated::from_connect(&Value::Null, &ours);
        assert_eq!(n, Negotiated::default());
        let (n, _) = Negotiated::from_connect(&json!({"objectMode":false,"enableAcks":true,"uhura":1}), &ours);
        assert!(!n.enable_acks && !n.extended());
        let connect = json!({"objectMode":true,"enableAcks":true,"uhura":1,"heartbeat":5,"secret":"x"});
        let (n, secret) = Negotiated::from_connect(&connect, &ours);
        assert_eq!(n.peer_heartbeat, Some(Duration::from_millis(5)));
        assert_eq!(secret, Some("x"));
    }
}
