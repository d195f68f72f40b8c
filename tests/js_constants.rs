//! lib/constants.js mirrors the delivery kinds of `engine::link::kind`:
//! a number written differently on the two sides would misroute events.

use std::collections::HashMap;
use uhura::engine::link::kind;

#[test]
fn lib_constants_js_has_the_engine_kinds() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/lib/constants.js")).unwrap();
    let js: HashMap<&str, u8> = text
        .lines()
        .filter_map(|l| l.strip_prefix("const ")?.split_once(" = "))
        .filter_map(|(name, v)| Some((name, v.trim().parse().ok()?)))
        .collect();
    let rust = [
        ("MESSAGE", kind::MESSAGE),
        ("ACKED", kind::ACKED),
        ("SET", kind::SET),
        ("CONNECTED", kind::CONNECTED),
        ("DISCONNECTED", kind::DISCONNECTED),
        ("ERROR", kind::ERROR),
        ("LISTENING", kind::LISTENING),
        ("CLOSED", kind::CLOSED),
        ("DROPPED", kind::DROPPED),
        ("RECONNECTING", kind::RECONNECTING),
        ("OUTPUT", kind::OUTPUT),
        ("TRANSPORT_CLOSED", kind::TRANSPORT_CLOSED),
        ("RESUME_INPUT", kind::RESUME_INPUT),
        ("OPEN_TRANSPORT", kind::OPEN_TRANSPORT),
        ("STORE_OP", kind::STORE_OP),
        ("ACK_TIMEOUT", kind::ACK_TIMEOUT),
        ("STOPPED", kind::STOPPED),
        ("WATCH", kind::WATCH),
        ("UNWATCH", kind::UNWATCH),
        ("LOG", kind::LOG),
        ("ACCEPTED", kind::ACCEPTED),
        ("REFUSED", kind::REFUSED),
    ];
    for (name, value) in rust {
        assert_eq!(js.get(name), Some(&value), "lib/constants.js {name}");
    }
    let kinds = js.iter().filter(|(_, v)| **v < 100).count();
    assert_eq!(kinds, rust.len(), "lib/constants.js has a kind the engine lacks: {js:?}");
}
