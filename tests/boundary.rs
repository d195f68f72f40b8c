//! Module boundaries: the sans-IO core (`src/protocol/`) must not depend on
//! tokio, tokio-util or napi, nor read the OS random source (randomness is
//! injected through `peer::Config::entropy`, so the core is deterministic
//! under test), and the engine's modules depend on each other without cycles
//! (docs/ARCHITECTURE.md has the graph).

use std::collections::{BTreeMap, BTreeSet};
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
    assert!(files.iter().any(|f| f.ends_with("framing/reader.rs")), "no framing/reader.rs under {root:?}");
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

/// The engine modules `text` names through `prefix` (`super::`,
/// `crate::engine::`), among `known`; comments are skipped.
fn named(text: &str, prefix: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().map(|l| l.split("//").next().unwrap_or("")) {
        let mut rest = line;
        while let Some(at) = rest.find(prefix) {
            // `super::` inside `super::super::` is the outer module's business.
            let before = &rest[..at];
            rest = &rest[at + prefix.len()..];
            if prefix == "super::" && before.ends_with("super::") {
                continue;
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if known.contains(&name) {
                out.insert(name);
            }
        }
    }
    out
}

/// The modules of `dir`: its `.rs` files and subdirectories, without `mod.rs`.
fn modules(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "mod")
        .collect()
}

/// A cycle of `graph`, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// The engine's modules form a DAG, and so do the files of each of its
/// directories (`link/`, `tls/`). Edges into a parent (`mod.rs`: the
/// engine's `Shared`, the `Link` struct) are the module tree itself and are
/// not counted: a child names its parent's types, the parent declares its
/// children.
#[test]
fn engine_modules_have_no_cycles() {
    let engine = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let engine_mods = modules(&engine);
    assert!(engine_mods.contains("link") && modules(&engine.join("link")).contains("io"), "{engine_mods:?}");
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));

    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Files of the engine's directories, as `dir/file`.
    let mut inner: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &engine_mods {
        let deps = top.entry(m.clone()).or_default();
        let dir = engine.join(m);
        if dir.is_dir() {
            let dir_mods = modules(&dir);
            for l in dir_mods.iter().map(|l| format!("{l}.rs")).chain(["mod.rs".to_owned()]) {
                let text = read(dir.join(&l));
                deps.extend(named(&text, "crate::engine::", &engine_mods));
                deps.extend(named(&text, "super::super::", &engine_mods));
                if l == "mod.rs" {
                    deps.extend(named(&text, "super::", &engine_mods));
                } else {
                    let name = format!("{m}/{}", l.trim_end_matches(".rs"));
                    let siblings = named(&text, "super::", &dir_mods).into_iter().map(|s| format!("{m}/{s}"));
                    inner.entry(name).or_default().extend(siblings);
                }
            }
        } else {
            let text = read(engine.join(format!("{m}.rs")));
            deps.extend(named(&text, "super::", &engine_mods));
            deps.extend(named(&text, "crate::engine::", &engine_mods));
        }
        deps.remove(m);
    }
    assert_eq!(find_cycle(&top), None, "a cycle between engine modules: {top:#?}");
    assert_eq!(find_cycle(&inner), None, "a cycle between the files of an engine directory: {inner:#?}");
    // TLS is a leaf: a layer over any stream, not a part of the transports.
    assert_eq!(top["tls"], BTreeSet::new(), "tls/ must not use other engine modules");
    // Retention is a passive map; what happens to kept links is takeover's.
    assert!(!top["retention"].contains("link"), "retention.rs must not know links");
}
