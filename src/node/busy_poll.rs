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
//! `UHURA_BUSY_POLL_US` sets the longest window (default 70 µs; 0 turns
//! it off). The window adapts as haltpoll's does: it grows to cover the
//! gaps between batches seen lately, up to that maximum, shrinks towards a
//! margin over the gaps a spin caught, and halves towards zero whenever a
//! gap is longer. A gap the thread slept through includes the wake-ups it
//! is meant to avoid (its own and the peer's), so a gap up to the maximum
//! plus those wake-ups (`WAKE_SLACK`) counts as worth covering: without that
//! the window would only grow where the spin was needed least. So sparse or
//! idle traffic never spins, and a burst, whose next input is already
//! there, spins not at all: the first check finds it.
//!
//! What a spin may cost: spins that find nothing are paid from a budget
//! that refills at 5% of the time that passes (`WASTE_SHARE`); and once
//! this thread is preempted during a spin or between a spin and the input
//! it caught, another thread wanted its CPU, so none for a while
//! (`QUIET_FOR`). Where no CPU is idle none halts, and a spin would only
//! take time from the threads waiting for one.

use std::cell::Cell;
use std::ffi::c_int;
use std::time::{Duration, Instant};

/// The longest window unless `UHURA_BUSY_POLL_US` says otherwise: a
/// loopback request/response of a few small events (our handling on both
/// sides plus the transit, with neither thread asleep) fits in it.
const DEFAULT_MAX: Duration = Duration::from_micros(70);
/// The first window after a gap short enough to be worth covering.
const GROW_START: Duration = Duration::from_micros(10);
/// What sleeping adds to a gap: the wake-ups of a halted CPU on both ends
/// (50–70 µs each on this VM), minus a margin.
const WAKE_SLACK: Duration = Duration::from_micros(120);
/// How long the spin stays off once this thread was preempted during a spin
/// or between it and the input it caught: another thread wanted its CPU.
const QUIET_FOR: Duration = Duration::from_millis(10);
/// Spins that caught nothing are paid from a budget that refills at 5% of
/// the time that passes (`WASTE_SHARE`, in 1/1000ths) and holds at most
/// `WASTE_BUDGET`: one unlucky stretch (a peer busy compiling or collecting
/// garbage) then costs a few milliseconds without spin, not a long pause.
const WASTE_SHARE: u32 = 50;
const WASTE_BUDGET: Duration = Duration::from_millis(5);

/// When to spin and for how long (pure state, tested below).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Spin {
    current: Duration,
    max: Duration,
    /// What spins that find nothing may still use, as of `credited_at`.
    credit: Duration,
    credited_at: Option<Instant>,
    /// No spin before then (this thread was preempted around a spin).
    off_until: Option<Instant>,
}

impl Spin {
    pub(super) const fn new(max: Duration) -> Spin {
        Spin { current: Duration::ZERO, max, credit: WASTE_BUDGET, credited_at: None, off_until: None }
    }

    /// How long to spin after a batch that ended at `now`.
    pub(super) fn window(&self, now: Instant) -> Duration {
        if self.off_until.is_some_and(|until| now < until) {
            return Duration::ZERO;
        }
        // A spin may find nothing: never start one the budget cannot pay.
        if self.credit_at(now) < self.current {
            return Duration::ZERO;
        }
        self.current
    }

    /// The budget for spins that find nothing, refilled up to `now`.
    fn credit_at(&self, now: Instant) -> Duration {
        let refill =
            self.credited_at.map_or(Duration::ZERO, |at| now.saturating_duration_since(at) * WASTE_SHARE / 1000);
        (self.credit + refill).min(WASTE_BUDGET)
    }

    /// The time from the end of the previous batch's handling to the start
    /// of this one: a spin that long would have caught it.
    pub(super) fn observe(&mut self, gap: Duration) {
        if gap <= self.current {
            // Covered: keep a margin over the gaps seen lately, not more, so
            // a spin the peer does not answer (it is busy collecting garbage,
            // say) costs little.
            self.current = (gap * 4).max(self.current - self.current / 8).clamp(GROW_START, self.current);
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

    /// A spin that ended at `end` ran for `spent` and found no input: paid
    /// from the budget.
    pub(super) fn missed(&mut self, end: Instant, spent: Duration) {
        self.credit = self.credit_at(end).saturating_sub(spent);
        self.credited_at = Some(end);
    }

    /// This thread was preempted during a spin or between it and the input
    /// it caught, as seen at `now`.
    pub(super) fn preempted(&mut self, now: Instant) {
        self.off_until = Some(now + QUIET_FOR);
    }
}

thread_local! {
    /// Only ever touched on the JavaScript thread (libuv callbacks).
    static SPIN: Cell<Spin> = Cell::new(Spin::new(max_window()));
    /// When the handling of the last batch ended (before its spin).
    static LAST_END: Cell<Option<Instant>> = const { Cell::new(None) };
    /// libuv's epoll descriptor (`uv_backend_fd`); -1 until known.
    static BACKEND_FD: Cell<c_int> = const { Cell::new(-1) };
    /// The preemption count when the last spin started, if it caught input.
    static CAUGHT_AT: Cell<Option<libc::c_long>> = const { Cell::new(None) };
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
/// whether this thread was preempted since the spin that caught it began.
pub(super) fn batch_started() {
    let Some(end) = LAST_END.with(Cell::get) else { return };
    let now = Instant::now();
    update(|s| s.observe(now.saturating_duration_since(end)));
    if let Some(before) = CAUGHT_AT.with(Cell::take) {
        // The thread ran from the spin's start to here (it never slept): a
        // preemption in between means others wanted this CPU.
        if preemptions().is_some_and(|after| after != before) {
            update(|s| s.preempted(now));
        }
    }
}

/// A batch was handled and what it caused written: spin until libuv has
/// input, or the window has passed. Returns whether the spin caught input on
/// `own`, the socket just read, which the caller then reads at once.
pub(super) fn batch_done(own: c_int) -> bool {
    let start = Instant::now();
    LAST_END.with(|e| e.set(Some(start)));
    let window = SPIN.with(|s| s.get().window(start));
    let fd = BACKEND_FD.with(Cell::get);
    if window.is_zero() || fd < 0 {
        return false;
    }
    let mut pfds = [
        libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: own, events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: two valid pollfds; a zero timeout never blocks.
    let mut ready = || unsafe { libc::poll(pfds.as_mut_ptr(), 2, 0) } != 0;
    if ready() {
        // Input already waiting (a burst): no spin at all. What waits on
        // `own` is read at once too.
        return pfds[1].revents != 0;
    }
    // Without the count of preemptions contention cannot be seen: no spin.
    let Some(before) = preemptions() else {
        return false;
    };
    loop {
        std::hint::spin_loop();
        if ready() {
            CAUGHT_AT.with(|c| c.set(Some(before)));
            return pfds[1].revents != 0;
        }
        let spent = start.elapsed();
        if spent >= window {
            let preempted = preemptions() != Some(before);
            update(|s| {
                s.missed(start + spent, spent);
                if preempted {
                    s.preempted(start + spent);
                }
            });
            return false;
        }
    }
}

/// How often this thread was preempted (involuntary context switches):
/// a syscall that reads a counter, cheaper than `/proc`'s formatted
/// scheduler statistics, on the path of every caught batch.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn preemptions() -> Option<libc::c_long> {
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only fills the struct it is given.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } == 0;
    ok.then_some(usage.ru_nivcsw)
}

/// Elsewhere (macOS has no per-thread `getrusage`) contention cannot be
/// seen, so there is no spin.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn preemptions() -> Option<libc::c_long> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// A spin whose window a gap close to `max` opened to `max`.
    fn opened_to(max: Duration) -> Spin {
        let mut s = Spin::new(max);
        s.observe(max * 9 / 10);
        assert_eq!(s.window(Instant::now()), max);
        s
    }

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
    fn caught_gaps_shrink_it_slowly_to_a_margin_over_them() {
        let now = Instant::now();
        let mut s = opened_to(100 * US);
        s.observe(5 * US);
        assert_eq!(s.window(now), 87_500 * US / 1000, "an eighth less per batch");
        for _ in 0..40 {
            s.observe(5 * US);
        }
        assert_eq!(s.window(now), 20 * US, "four times the gaps a spin caught");
        s.observe(Duration::ZERO);
        assert_eq!(s.window(now), 17_500 * US / 1000);
        for _ in 0..40 {
            s.observe(Duration::ZERO);
        }
        assert_eq!(s.window(now), GROW_START, "never below the first window");
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
        let mut s = opened_to(100 * US);
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
    fn spins_that_find_nothing_are_paid_from_a_budget_that_refills() {
        let t0 = Instant::now();
        let mut s = Spin::new(50 * US);
        s.observe(40 * US);
        // Misses back to back: the budget pays WASTE_BUDGET of them (plus
        // the little that refills meanwhile), then no spin it could not pay.
        let (mut end, mut misses) = (t0, 0);
        while !s.window(end).is_zero() && misses < 1000 {
            end += 50 * US;
            s.missed(end, 50 * US);
            misses += 1;
        }
        let paid = WASTE_BUDGET.as_micros() / (50 - 50 * u128::from(WASTE_SHARE) / 1000);
        assert!((paid - 1..=paid + 2).contains(&misses), "{misses} misses, {paid} expected");
        // Refilled at WASTE_SHARE of the time that passes: 50 µs of spin
        // after 50 µs / WASTE_SHARE at the most.
        assert_eq!(s.window(end + 50 * US * 1000 / WASTE_SHARE), 50 * US, "on again once refilled");
        assert_eq!(s.window(end + Duration::from_secs(60)), 50 * US);
        s.missed(end + Duration::from_secs(60), 50 * US);
        assert_eq!(s.window(end + Duration::from_secs(60)), 50 * US, "refilled to the full budget, no more");
    }

    #[test]
    fn a_preemption_turns_it_off_for_a_while() {
        let t0 = Instant::now();
        let mut s = Spin::new(50 * US);
        s.observe(40 * US);
        assert_eq!(s.window(t0), 50 * US);
        s.preempted(t0);
        assert_eq!(s.window(t0 + QUIET_FOR / 2), Duration::ZERO);
        assert_eq!(s.window(t0 + QUIET_FOR), 50 * US);
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn the_preemption_count_is_read() {
        let n = preemptions().expect("getrusage(RUSAGE_THREAD)");
        assert!(n >= 0, "{n}");
    }
}
