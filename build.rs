//! Build script: napi's link arguments for the Node addon (the `node` feature).

fn main() {
    // Only the Node addon needs napi's link arguments; the plain Rust library does not.
    if std::env::var_os("CARGO_FEATURE_NODE").is_some() {
        napi_build::setup();
    }
}
