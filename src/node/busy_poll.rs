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
//! `UHURA_BUSY_POLL_US` sets the longest window (default 50 µs; 0 turns it
//! off). The window adapts as haltpoll's does: it grows to cover the gaps
//! between batches seen lately, up to that maximum, and halves towards zero
//! whenever a gap is longer. A gap the thread slept through includes the
//! wake-ups it is meant to avoid (its own and the peer's), so a gap up to
//! the maximum plus those wake-ups (`WAKE_SLACK`) counts as worth covering:
//! without that the window would only grow where the spin was needed least.
//! So sparse or idle traffic never spins, and a burst, whose next input is
//! already there, spins not at all: the first check finds it. Spins that
//! find nothing may take at most 2% of the thread's time (`WASTE_BUDGET`);
//! past that, none until the period ends. And never on a busy machine: no
//! spin starts while more threads are runnable than there are CPUs (the
//! kernel's count, `/proc/loadavg`), and it stays off for a while once this
//! thread had to wait for a CPU during a spin or between a spin and the
//! input it caught. Where no CPU is idle none halts, and a spin would only
//! take time from the threads waiting for one.

use std::cell::{Cell, RefCell};
use std::ffi::c_int;
use std::time::{Duration, Instant};

/// The longest window unless `UHURA_BUSY_POLL_US` says otherwise: a
/// loopback request/response of a few small events (our handling on both
/// sides plus the transit, with neither thread asleep) fits in it.
const DEFAULT_MAX: Duration = Duration::from_micros(50);
/// The first window after a gap short enough to be worth covering.
const GROW_START: Duration = Duration::from_micros(10);
/// What sleeping adds to a gap: the wake-ups of a halted CPU on both ends
/// (50–70 µs each on this VM), minus a margin.
const WAKE_SLACK: Duration = Duration::from_micros(120);
/// Time waiting for a CPU during a spin, or from its start to the batch it
/// caught, that means the machine is busy; and how long the spin then stays
/// off.
const CONTENDED: Duration = Duration::from_micros(200);
const QUIET_FOR: Duration = Duration::from_millis(100);
/// Spins that caught nothing may use this much of each period.
const WASTE_PERIOD: Duration = Duration::from_millis(100);
const WASTE_BUDGET: Duration = Duration::from_millis(2);

/// When to spin and for how long (pure state, tested below).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Spin {
    current: Duration,
    max: Duration,
    /// Time spent by spins that found nothing since `period_start`.
    wasted: Duration,
    period_start: Option<Instant>,
    /// No spin before then (busy machine, or the waste budget spent).
    off_until: Option<Instant>,
}

impl Spin {
    pub(super) const fn new(max: Duration) -> Spin {
        Spin { current: Duration::ZERO, max, wasted: Duration::ZERO, period_start: None, off_until: None }
    }

    /// How long to spin after a batch that ended at `now`.
    pub(super) fn window(&self, now: Instant) -> Duration {
        if self.off_until.is_some_and(|until| now < until) {
            return Duration::ZERO;
        }
        self.current
    }

    /// The time from the end of the previous batch's handling to the start
    /// of this one: a spin that long would have caught it.
    pub(super) fn observe(&mut self, gap: Duration) {
        if gap <= self.current {
            return;
        }
        if gap <= self.max + WAKE_SLACK && !self.max.is_zero() {
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

    /// A spin that started at `start` ran for `spent` and found no input:
    /// counted against the period's budget, which once spent turns the spin
    /// off for the rest of the period.
    pub(super) fn missed(&mut self, start: Instant, spent: Duration) {
        let period = match self.period_start {
            Some(p) if start.saturating_duration_since(p) < WASTE_PERIOD => p,
            _ => {
                self.wasted = Duration::ZERO;
                self.period_start = Some(start);
                start
            }
        };
        self.wasted += spent;
        if self.wasted >= WASTE_BUDGET {
            self.off_until = Some(period + WASTE_PERIOD);
        }
    }

    /// This thread waited `waited` for a CPU during a spin or between it and
    /// the input it caught, as seen at `now`.
    pub(super) fn waited_for_cpu(&mut self, now: Instant, waited: Duration) {
        if waited > CONTENDED {
            self.off_until = Some(now + QUIET_FOR);
        }
    }
}

thread_local! {
    /// Only ever touched on the JavaScript thread (libuv callbacks).
    static SPIN: Cell<Spin> = Cell::new(Spin::new(max_window()));
    /// When the handling of the last batch ended (before its spin).
    static LAST_END: Cell<Option<Instant>> = const { Cell::new(None) };
    /// libuv's epoll descriptor (`uv_backend_fd`); -1 until known.
    static BACKEND_FD: Cell<c_int> = const { Cell::new(-1) };
    /// This thread's scheduler statistics, opened on first use (None
    /// inside: not available).
    static SCHEDSTAT: RefCell<Option<Option<std::fs::File>>> = const { RefCell::new(None) };
    /// `/proc/loadavg`, opened on first use (None inside: not available).
    static LOADAVG: RefCell<Option<Option<std::fs::File>>> = const { RefCell::new(None) };
    /// The run-queue wait when the last spin started, if it caught input.
    static CAUGHT_AT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// `UHURA_BUSY_POLL_US`: the longest window in µs (0: off), else the default.
fn max_window() -> Duration {
    match std::env::var("UHURA_BUSY_POLL_US").ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(us) => Duration::from_micros(us.min(10_000)),
        None => DEFAULT_MAX,
    }
}

fn update(f: impl FnOnce(&mut Spin)) {
    SPIN.with(|s| {
        let mut spin = s.get();
        f(&mut spin);
        s.set(spin);
    });
}

/// The descriptor whose readiness says libuv has input waiting.
pub(super) fn set_backend_fd(fd: c_int) {
    BACKEND_FD.with(|b| b.set(fd));
}

/// A batch is about to be read: learn from the gap since the last one, and
/// whether the spin that caught it had to wait for a CPU.
pub(super) fn batch_started() {
    let Some(end) = LAST_END.with(Cell::get) else { return };
    let now = Instant::now();
    update(|s| s.observe(now.saturating_duration_since(end)));
    if let Some(before) = CAUGHT_AT.with(Cell::take) {
        // The thread ran from the spin's start to here (it never slept): a
        // wait for a CPU in between means others wanted this one.
        if let Some(after) = run_delay() {
            update(|s| s.waited_for_cpu(now, Duration::from_nanos(after.saturating_sub(before))));
        }
    }
}

/// A batch was handled and what it caused written: spin until libuv has
/// input, or the window has passed.
pub(super) fn batch_done() {
    let start = Instant::now();
    LAST_END.with(|e| e.set(Some(start)));
    let window = SPIN.with(|s| s.get().window(start));
    let fd = BACKEND_FD.with(Cell::get);
    if window.is_zero() || fd < 0 {
        return;
    }
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd; a zero timeout never blocks.
    let mut ready = || unsafe { libc::poll(&mut pfd, 1, 0) } != 0;
    if ready() {
        // Input already waiting (a burst): no spin at all.
        return;
    }
    if !room_to_spin(runnable(), online_cpus()) {
        return;
    }
    // Without the scheduler's statistics contention cannot be seen: no spin.
    let Some(before) = run_delay() else { return };
    loop {
        std::hint::spin_loop();
        if ready() {
            CAUGHT_AT.with(|c| c.set(Some(before)));
            return;
        }
        let spent = start.elapsed();
        if spent >= window {
            let waited = run_delay().map_or(0, |after| after.saturating_sub(before));
            update(|s| {
                s.missed(start, spent);
                s.waited_for_cpu(start + spent, Duration::from_nanos(waited));
            });
            return;
        }
    }
}

/// Whether a spin takes no CPU time from another thread: with `running`
/// threads runnable on the machine (this one included) and `cpus` CPUs,
/// none waits for one. (A spin helps only where a CPU would otherwise
/// halt, and a peer that spins too counts as running.)
pub(super) fn room_to_spin(running: Option<u32>, cpus: u32) -> bool {
    running.is_some_and(|r| r <= cpus)
}

/// Read once: glibc's sysconf reads /sys/devices/system/cpu/online each time.
fn online_cpus() -> u32 {
    static CPUS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    // SAFETY: sysconf only reads.
    *CPUS.get_or_init(|| u32::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1))
}

/// Threads runnable on the machine now, from `/proc/loadavg` (its fourth
/// field, "running/total"); None where it cannot be read.
fn runnable() -> Option<u32> {
    let mut buf = [0u8; 128];
    let n = read_proc(&LOADAVG, "/proc/loadavg", &mut buf)?;
    std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(3)?.split('/').next()?.parse().ok()
}

/// Reads a small /proc file kept open in `slot` from its start.
fn read_proc(
    slot: &'static std::thread::LocalKey<RefCell<Option<Option<std::fs::File>>>>,
    path: &str,
    buf: &mut [u8],
) -> Option<usize> {
    use std::os::unix::fs::FileExt;
    slot.with(|f| {
        let mut file = f.borrow_mut();
        file.get_or_insert_with(|| std::fs::File::open(path).ok()).as_ref()?.read_at(buf, 0).ok()
    })
}

/// Nanoseconds this thread spent runnable but not running, from the
/// kernel's scheduler statistics (`/proc/thread-self/schedstat`, its second
/// field), opened on first use; None where there are none.
fn run_delay() -> Option<u64> {
    let mut buf = [0u8; 96];
    let n = read_proc(&SCHEDSTAT, "/proc/thread-self/schedstat", &mut buf)?;
    std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn short_gaps_grow_the_window_to_cover_them_up_to_the_maximum() {
        let now = Instant::now();
        let mut s = Spin::new(100 * US);
        assert_eq!(s.window(now), Duration::ZERO, "no spin before any gap was seen");
        s.observe(30 * US);
        let w = s.window(now);
        assert!(w >= 30 * US && w <= 100 * US, "{w:?}");
        s.observe(20 * US);
        assert_eq!(s.window(now), w, "a gap the window covered changes nothing");
        s.observe(90 * US);
        assert_eq!(s.window(now), 100 * US, "capped at the maximum");
    }

    #[test]
    fn a_gap_that_includes_the_wake_ups_still_starts_the_spin() {
        // Without a spin both ends sleep, and the gap is the peer's work
        // plus two wake-ups: longer than the window, yet what it would cover.
        let mut s = Spin::new(50 * US);
        s.observe(150 * US);
        assert_eq!(s.window(Instant::now()), 50 * US);
    }

    #[test]
    fn long_gaps_shrink_it_to_zero() {
        let now = Instant::now();
        let mut s = Spin::new(100 * US);
        s.observe(80 * US);
        assert_eq!(s.window(now), 100 * US);
        s.observe(Duration::from_millis(5));
        assert_eq!(s.window(now), 50 * US, "halved by a gap too long to spin for");
        for _ in 0..4 {
            s.observe(Duration::from_secs(1));
        }
        assert_eq!(s.window(now), Duration::ZERO, "sparse traffic never spins");
    }

    #[test]
    fn a_zero_maximum_never_spins() {
        let mut s = Spin::new(Duration::ZERO);
        for gap in [1, 5, 50, 500] {
            s.observe(gap * US);
            assert_eq!(s.window(Instant::now()), Duration::ZERO);
        }
    }

    #[test]
    fn spins_that_find_nothing_are_capped_at_the_budget_per_period() {
        let t0 = Instant::now();
        let mut s = Spin::new(50 * US);
        s.observe(40 * US);
        // 39 misses of 50 µs: 1.95 ms, under the 2 ms budget.
        for i in 0..39 {
            let at = t0 + i * 200 * US;
            assert_eq!(s.window(at), 50 * US, "miss {i}");
            s.missed(at, 50 * US);
        }
        let at = t0 + 39 * 200 * US;
        s.missed(at, 50 * US);
        assert_eq!(s.window(at), Duration::ZERO, "budget spent: off");
        assert_eq!(s.window(t0 + WASTE_PERIOD - US), Duration::ZERO, "for the rest of the period");
        assert_eq!(s.window(t0 + WASTE_PERIOD), 50 * US, "on again in the next");
        // The next period starts from nothing.
        s.missed(t0 + WASTE_PERIOD, 50 * US);
        assert_eq!(s.window(t0 + WASTE_PERIOD), 50 * US);
    }

    #[test]
    fn no_spin_while_threads_wait_for_a_cpu() {
        assert!(room_to_spin(Some(1), 2), "alone");
        assert!(room_to_spin(Some(2), 2), "with the peer spinning too");
        assert!(!room_to_spin(Some(3), 2), "one thread would wait");
        assert!(!room_to_spin(None, 2), "not known: no spin");
    }

    #[test]
    fn the_runnable_count_is_read() {
        let n = runnable().expect("/proc/loadavg");
        assert!(n >= 1, "this thread runs: {n}");
    }

    #[test]
    fn a_wait_for_a_cpu_turns_it_off_for_a_while() {
        let t0 = Instant::now();
        let mut s = Spin::new(50 * US);
        s.observe(40 * US);
        s.waited_for_cpu(t0, 150 * US);
        assert_eq!(s.window(t0), 50 * US, "a short wait is no sign of a busy machine");
        s.waited_for_cpu(t0, 300 * US);
        assert_eq!(s.window(t0 + QUIET_FOR / 2), Duration::ZERO);
        assert_eq!(s.window(t0 + QUIET_FOR), 50 * US);
    }
}
