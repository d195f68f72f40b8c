//! Fault injection for tests. Only a build with the cargo feature
//! `test-panic` compiles the panic: input holding `MARKER` then panics in
//! the connection's input handling, so tests can check that a bug of ours
//! ends only that connection. Other builds compile an empty function.

#[cfg(feature = "test-panic")]
const MARKER: &[u8] = b"uhura:test-panic";

#[cfg(feature = "test-panic")]
pub(crate) fn inject(bytes: &[u8]) {
    if bytes.windows(MARKER.len()).any(|w| w == MARKER) {
        panic!("injected test panic");
    }
}

#[cfg(not(feature = "test-panic"))]
#[inline(always)]
pub(crate) fn inject(_bytes: &[u8]) {}
