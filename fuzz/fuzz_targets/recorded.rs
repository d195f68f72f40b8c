// The messages of the recorded traffic in tests/vectors/, built into the structured
// targets so they can replay real messages (`include!`d by them).

fn recorded_messages() -> &'static [String] {
    static ALL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let files = [
            include_str!("../../tests/vectors/v0.0.10-legacy-array-mode.json"),
            include_str!("../../tests/vectors/v0.1.2-new-session.json"),
            include_str!("../../tests/vectors/v0.1.2-resume-and-invalidate.json"),
        ];
        let mut out = Vec::new();
        for f in files {
            let v: serde_json::Value = serde_json::from_str(f).unwrap();
            for dir in ["client_to_server", "server_to_client"] {
                let mut r = uhura::protocol::framing::Reader::default();
                let _ = r.feed(v[dir].as_str().unwrap().as_bytes(), &mut out);
            }
        }
        out
    })
}
