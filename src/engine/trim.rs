//! Giving the memory a burst of connections used and freed back to the OS.
//!
//! A handshake allocates and frees far more than its idle connection then
//! keeps (the messages, the session's maps, the tasks that ran it), and
//! glibc's malloc keeps what was freed in its arenas. So once no connection
//! has opened or closed for `QUIET`, one `malloc_trim(0)` returns the free
//! pages to the OS (bench/README.md, "Memory"). With glibc only; other C
//! libraries give free memory back on their own terms, and there is nothing
//! to call.

use std::time::Duration;

/// How long connections must have been quiet (none opened or closed)
/// before a trim: long enough that a burst of handshakes has settled, and
/// that a steady stream of connections costs at most one trim per second.
const QUIET: Duration = Duration::from_secs(1);

/// A connection opened or closed: trim once connections have been quiet
/// for `QUIET`.
pub(crate) fn note_churn() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::note();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use super::QUIET;
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::time::Instant;

    /// The latest note not yet followed by a trim.
    struct Pending {
        last: Mutex<Option<Instant>>,
        noted: Condvar,
    }

    /// One thread of its own, started by the first note, asleep between
    /// bursts: not a runtime's task, so trims wait for no runtime and no
    /// runtime's scheduling changes with them.
    fn pending() -> &'static Pending {
        static PENDING: OnceLock<&'static Pending> = OnceLock::new();
        PENDING.get_or_init(|| {
            let p: &'static Pending = Box::leak(Box::new(Pending { last: Mutex::new(None), noted: Condvar::new() }));
            let spawned = std::thread::Builder::new().name("uhura-trim".into()).spawn(move || run(p));
            // Without the thread nothing is trimmed; nothing else changes.
            drop(spawned);
            p
        })
    }

    pub(super) fn note() {
        let p = pending();
        let mut last = p.last.lock().unwrap_or_else(|e| e.into_inner());
        let was_idle = last.is_none();
        *last = Some(Instant::now());
        if was_idle {
            p.noted.notify_one();
        }
    }

    fn run(p: &'static Pending) {
        let mut last = p.last.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match *last {
                None => last = p.noted.wait(last).unwrap_or_else(|e| e.into_inner()),
                Some(at) if at.elapsed() < QUIET => {
                    let left = QUIET - at.elapsed();
                    last = p.noted.wait_timeout(last, left).unwrap_or_else(|e| e.into_inner()).0;
                }
                Some(_) => {
                    *last = None;
                    drop(last);
                    // SAFETY: malloc_trim only takes glibc's own locks; any
                    // thread may call it at any time.
                    unsafe { libc::malloc_trim(0) };
                    last = p.last.lock().unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}
