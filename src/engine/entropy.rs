//! The randomness the engine hands the protocol core
//! (`protocol::entropy::Entropy`): the OS CSPRNG, so message-id prefixes,
//! session ids and resume secrets are unpredictable.

use crate::protocol::entropy::Entropy;
use std::sync::OnceLock;

/// The OS random source (getrandom), shared.
pub(crate) fn os() -> Entropy {
    static OS: OnceLock<Entropy> = OnceLock::new();
    OS.get_or_init(|| {
        Entropy::from_fn(|buf| {
            // getrandom only fails when the OS has no entropy source at all;
            // there is no meaningful fallback for session ids and secrets.
            getrandom::fill(buf).expect("the OS random number generator is unavailable")
        })
    })
    .clone()
}
