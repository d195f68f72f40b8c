//! Giving the memory a burst of connections used and freed back to the OS.
//!
//! A handshake allocates and frees far more than its idle connection then
//! keeps (the messages, the session's maps, the tasks that ran it), and
//! glibc's malloc keeps what was freed in its arenas: after a burst of
//! thousands of connections, ~0.9 KB per connection of RSS that nothing
//! uses (bench/README.md, "Memory"). So once no connection has opened or
//! closed for `QUIET`, one `malloc_trim(0)` returns the free pages to the
//! OS. With glibc only; other C libraries give free memory back on their own
//! terms, and there is nothing to call.

use std::time::Duration;

/// How long connections must have been quiet (none opened or closed)
/// before a trim: long enough that a burst of handshakes has settled, and
/// that a steady stream of connections costs at most one trim per second.
const QUIET: Duration = Duration::from_secs(1);

/// A connection opened or closed: trim once connections have been quiet
/// for `QUIET`. Call from within the runtime.
pub(crate) fn note_churn() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::note();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use super::QUIET;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// Milliseconds since the first note, at the latest note.
    static LAST: AtomicU64 = AtomicU64::new(0);
    /// A task waits for the quiet: later notes only move `LAST`.
    static WAITING: AtomicBool = AtomicBool::new(false);

    fn now_ms() -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    pub(super) fn note() {
        LAST.store(now_ms(), Ordering::Release);
        if WAITING.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async {
            let quiet = QUIET.as_millis() as u64;
            loop {
                let since = now_ms().saturating_sub(LAST.load(Ordering::Acquire));
                if since < quiet {
                    tokio::time::sleep(Duration::from_millis(quiet - since)).await;
                    continue;
                }
                WAITING.store(false, Ordering::Release);
                // A note that came between the check and the store saw a
                // task waiting: this one goes on waiting for it.
                let since = now_ms().saturating_sub(LAST.load(Ordering::Acquire));
                if since < quiet && !WAITING.swap(true, Ordering::AcqRel) {
                    continue;
                }
                break;
            }
            // It walks every arena's free lists, taking their locks: off the
            // runtime's threads, which go on meanwhile.
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim only takes glibc's own locks; any
                // thread may call it at any time.
                unsafe { libc::malloc_trim(0) };
            })
            .await;
        });
    }
}
