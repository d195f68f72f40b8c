//! lib/constants.js mirrors the delivery kinds of `engine::events::Kind`:
//! a number written differently on the two sides would misroute events.

use std::collections::HashMap;
use uhura::engine::events::Kind;

#[test]
fn lib_constants_js_has_the_engine_kinds() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/lib/constants.js")).unwrap();
    let js: HashMap<&str, u8> = text
        .lines()
        .filter_map(|l| l.strip_prefix("const ")?.split_once(" = "))
        .filter_map(|(name, v)| Some((name, v.trim().parse().ok()?)))
        .collect();
    for kind in Kind::ALL {
        assert_eq!(js.get(kind.js_name()), Some(&(kind as u8)), "lib/constants.js {}", kind.js_name());
    }
    let kinds = js.iter().filter(|(_, v)| **v < 100).count();
    assert_eq!(kinds, Kind::ALL.len(), "lib/constants.js has a kind the engine lacks: {js:?}");
}
