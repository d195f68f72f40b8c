//! Where the protocol core gets its randomness: a source the driver hands
//! in (`peer::Config::entropy`), so the core itself never reads the OS and
//! is deterministic under a seeded source. The engine supplies the OS
//! CSPRNG (src/engine/entropy.rs); tests and fuzzers supply a seed.
//!
//! What it feeds: a peer's 6-byte message-id prefix, session ids and
//! resume secrets (credentials, so production must use the OS source), and
//! the jitter of reconnect delays (`backoff::unit_random`).

use std::fmt;
use std::sync::{Arc, Mutex};

/// Fills a buffer with random bytes.
type Fill = dyn Fn(&mut [u8]) + Send + Sync;

/// A source of random bytes, shared by clones (a clone continues the same
/// stream, so two peers built from one `Config` never draw the same bytes).
#[derive(Clone)]
pub struct Entropy(Arc<Fill>);

impl Entropy {
    /// Bytes from `fill`, which must fill the whole buffer (the engine's:
    /// the OS CSPRNG).
    pub fn from_fn(fill: impl Fn(&mut [u8]) + Send + Sync + 'static) -> Self {
        Entropy(Arc::new(fill))
    }

    /// A deterministic stream: SHA-256 of the seed and a block counter. For
    /// tests and fuzzing only: whoever knows the seed knows every id and
    /// resume secret drawn from it.
    pub fn seeded(seed: [u8; 32]) -> Self {
        let state = Mutex::new((0u64, Vec::<u8>::new()));
        Entropy::from_fn(move |buf| {
            // Plain data, so a poisoned lock is still usable.
            let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
            let (counter, spare) = &mut *guard;
            let mut filled = 0;
            while filled < buf.len() {
                if spare.is_empty() {
                    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                    ctx.update(&seed);
                    ctx.update(&counter.to_le_bytes());
                    *counter += 1;
                    spare.extend_from_slice(ctx.finish().as_ref());
                }
                let n = spare.len().min(buf.len() - filled);
                buf[filled..filled + n].copy_from_slice(&spare[..n]);
                spare.drain(..n);
                filled += n;
            }
        })
    }

    /// Whether both are the same source (clones of one `Entropy`).
    pub fn same_source(&self, other: &Entropy) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Fills `buf` with bytes from this source.
    pub fn fill(&self, buf: &mut [u8]) {
        (self.0)(buf)
    }
}

impl fmt::Debug for Entropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Entropy(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_stream_however_it_is_read() {
        let (a, b) = (Entropy::seeded([1; 32]), Entropy::seeded([1; 32]));
        let mut whole = [0u8; 80];
        a.fill(&mut whole);
        let mut parts = [0u8; 80];
        for chunk in parts.chunks_mut(7) {
            b.fill(chunk);
        }
        assert_eq!(whole, parts);
        let mut other = [0u8; 80];
        Entropy::seeded([2; 32]).fill(&mut other);
        assert_ne!(whole, other);
        // Clones share the stream: the next bytes are new ones.
        let mut next = [0u8; 80];
        a.clone().fill(&mut next);
        assert_ne!(whole, next);
    }
}
