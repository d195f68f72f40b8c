//! Helpers shared by the integration tests.

use uhura::protocol::framing::{FrameError, Reader};

/// Feeds `chunks` in order; returns all messages read and the first error
/// (reading stops there). Also checks that a failed reader stays poisoned:
/// the same error again, nothing more pushed.
pub fn read_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, max: usize) -> (Vec<String>, Option<FrameError>) {
    let mut r = Reader::new(max);
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = r.feed(c, &mut out) {
            let n = out.len();
            assert_eq!(r.feed(b"[[1]]", &mut out), Err(e.clone()));
            assert_eq!(out.len(), n);
            return (out, Some(e));
        }
    }
    (out, None)
}
