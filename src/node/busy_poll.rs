//! A short busy poll of Node's loop after a batch read on it, when traffic
//! comes in a tight request/response rhythm.
//!
//! Why: where an idle CPU halts at once (a VM whose guest halt polling is
//! off, like the machines this is benchmarked and tested on), a thread that
//! blocks in `epoll_wait` and is woken from another CPU waits 50–100 µs for
//! that CPU to wake, several times the work of a whole loopback round trip.
//! So after handling a batch, the JavaScript thread checks for more input
//! for a moment before libuv blocks, as the guest kernel's
//! `cpuidle-haltpoll` does before halting a CPU, and Linux's
//! `net.core.busy_poll` before sleeping on a socket.
//!
//! Off unless `UHURA_BUSY_POLL_US` sets its longest window (e.g. 100): it
//! trades CPU time for latency, and only pays on such machines. The window
//! adapts as haltpoll's does: it grows to cover the gaps between batches
//! seen lately, up to that maximum, and halves towards zero whenever a gap
//! is longer. So sparse or idle traffic never spins, and a burst, whose
//! next input is already there, spins not at all: the first check finds
//! it. And it stays off for a while once this thread had to wait for a CPU
//! between a spin and the input it caught: on a busy machine no CPU halts,
//! and a spin would only take time from the threads waiting for one.

use std::cell::{Cell, RefCell};
use std::ffi::c_int;
use std::time::{Duration, Instant};

/// The first window after a gap short enough to be worth covering.
const GROW_START: Duration = Duration::from_micros(10);
/// Time waiting for a CPU, from a spin's start to the batch it caught, that
/// means the machine is busy; and how long the spin then stays off.
const CONTENDED: Duration = Duration::from_micros(200);
const QUIET_FOR: Duration = Duration::from_millis(100);

/// The adaptive spin window (pure state, tested below).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Window {
    current: Duration,
    max: Duration,
}

impl Window {
    pub(super) const fn new(max: Duration) -> Window {
        Window { current: Duration::ZERO, max }
    }

    /// How long to spin after this batch.
    pub(super) fn current(&self) -> Duration {
        self.current
    }

    /// The time from the end of the previous batch's handling to the start
    /// of this one: a spin that long would have caught it.
    pub(super) fn observe(&mut self, gap: Duration) {
        if gap <= self.current {
            return;
        }
        if gap <= self.max {
            // Worth covering: grow (doubling, as haltpoll does, but at
            // least to this gap with a margin) up to the maximum.
            let grown = (self.current * 2).max(gap + gap / 4).max(GROW_START);
            self.current = grown.min(self.max);
        } else {
            // Too long to spin for: back off.
            self.current /= 2;
            if self.current < GROW_START {
                self.current = Duration::ZERO;
            }
        }
    }
}

thread_local! {
    /// Only ever touched on the JavaScript thread (libuv callbacks).
    static WINDOW: Cell<Window> = Cell::new(Window::new(max_window()));
    /// When the handling of the last batch ended (before its spin).
    static LAST_END: Cell<Option<Instant>> = const { Cell::new(None) };
    /// libuv's epoll descriptor (`uv_backend_fd`); -1 until known.
    static BACKEND_FD: Cell<c_int> = const { Cell::new(-1) };
    /// This thread's scheduler statistics, opened on first use (None
    /// inside: not available), and until when the spin is off after a wait.
    static SCHEDSTAT: RefCell<Option<Option<std::fs::File>>> = const { RefCell::new(None) };
    /// The run-queue wait when the last spin started, if it caught input.
    static CAUGHT_AT: Cell<Option<u64>> = const { Cell::new(None) };
    static BACKOFF_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
}

fn max_window() -> Duration {
    let us = std::env::var("UHURA_BUSY_POLL_US").ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    Duration::from_micros(us.min(10_000))
}

/// The descriptor whose readiness says libuv has input waiting.
pub(super) fn set_backend_fd(fd: c_int) {
    BACKEND_FD.with(|b| b.set(fd));
}

/// A batch is about to be read: learn from the gap since the last one, and
/// whether the spin that caught it had to wait for a CPU.
pub(super) fn batch_started() {
    if let Some(end) = LAST_END.with(Cell::get) {
        WINDOW.with(|w| {
            let mut window = w.get();
            window.observe(end.elapsed());
            w.set(window);
        });
    }
    if let Some(before) = CAUGHT_AT.with(Cell::take) {
        // The thread ran from the spin's start to here (it never slept): a
        // wait for a CPU in between means others wanted this one. On a busy
        // machine no CPU halts, and a spin only takes time from the threads
        // that wait (the peer's, perhaps): no spin for a while.
        if run_delay().is_some_and(|now| now.saturating_sub(before) > CONTENDED.as_nanos() as u64) {
            BACKOFF_UNTIL.with(|b| b.set(Some(Instant::now() + QUIET_FOR)));
        }
    }
}

/// A batch was handled and what it caused written: spin until libuv has
/// input, or the window has passed.
pub(super) fn batch_done() {
    let start = Instant::now();
    LAST_END.with(|e| e.set(Some(start)));
    let window = WINDOW.with(|w| w.get().current());
    let fd = BACKEND_FD.with(Cell::get);
    if window.is_zero() || fd < 0 || BACKOFF_UNTIL.with(Cell::get).is_some_and(|until| start < until) {
        return;
    }
    // Without the scheduler's statistics contention cannot be seen: no spin.
    let Some(waited) = run_delay() else { return };
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd; a zero timeout never blocks.
        if unsafe { libc::poll(&mut pfd, 1, 0) } != 0 {
            CAUGHT_AT.with(|c| c.set(Some(waited)));
            return;
        }
        if start.elapsed() >= window {
            return;
        }
        std::hint::spin_loop();
    }
}

/// Nanoseconds this thread spent runnable but not running, from the
/// kernel's scheduler statistics (`/proc/thread-self/schedstat`, its second
/// field), opened on first use; None where there are none.
fn run_delay() -> Option<u64> {
    use std::os::unix::fs::FileExt;
    SCHEDSTAT.with(|f| {
        let mut file = f.borrow_mut();
        let file = file.get_or_insert_with(|| std::fs::File::open("/proc/thread-self/schedstat").ok()).as_ref()?;
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn short_gaps_grow_the_window_to_cover_them_up_to_the_maximum() {
        let mut w = Window::new(100 * US);
        assert_eq!(w.current(), Duration::ZERO, "no spin before any gap was seen");
        w.observe(30 * US);
        assert!(w.current() >= 30 * US && w.current() <= 100 * US, "{:?}", w.current());
        let covered = w.current();
        w.observe(20 * US);
        assert_eq!(w.current(), covered, "a gap the window covered changes nothing");
        w.observe(90 * US);
        assert_eq!(w.current(), 100 * US, "capped at the maximum");
    }

    #[test]
    fn long_gaps_shrink_it_to_zero() {
        let mut w = Window::new(100 * US);
        w.observe(80 * US);
        assert_eq!(w.current(), 100 * US);
        w.observe(Duration::from_millis(5));
        assert_eq!(w.current(), 50 * US, "halved by a gap too long to spin for");
        for _ in 0..4 {
            w.observe(Duration::from_secs(1));
        }
        assert_eq!(w.current(), Duration::ZERO, "sparse traffic never spins");
    }

    #[test]
    fn a_zero_maximum_never_spins() {
        let mut w = Window::new(Duration::ZERO);
        for gap in [1, 5, 50, 500] {
            w.observe(gap * US);
            assert_eq!(w.current(), Duration::ZERO);
        }
    }
}
