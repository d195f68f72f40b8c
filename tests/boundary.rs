//! The sans-IO core (`src/protocol/`) must not depend on tokio, tokio-util or
//! napi, nor read the OS random source: randomness is injected
//! (`peer::Config::entropy`), so the core is deterministic under test.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &["tokio::", "tokio_util", "use tokio", "napi::", "napi_derive", "use napi", "getrandom"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn protocol_is_sans_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.iter().any(|f| f.ends_with("framing.rs")), "no framing.rs under {root:?}");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for word in FORBIDDEN {
                if line.contains(word) {
                    bad.push(format!("{}:{}: {word}: {line}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(bad.is_empty(), "runtime imports in the sans-IO core:\n{}", bad.join("\n"));
}
