//! One timer task for every link: ack deadlines and heartbeats. A link
//! schedules its next deadline here after each change; the task wakes it
//! then. Ack timeouts keep running while a client is disconnected, which a
//! timer inside the socket loop could not do.

use super::delivery::lock;
use super::Shared;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub(crate) struct Timers {
    /// When to wake which link, as nanoseconds since `base` (16 bytes an
    /// entry, not an `Instant`'s 24: every connection has one or two).
    heap: Mutex<BinaryHeap<Reverse<(u64, u32)>>>,
    base: Instant,
    changed: Notify,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { heap: Mutex::default(), base: Instant::now(), changed: Notify::new() }
    }
}

impl Timers {
    /// `at` as an entry's time; an instant before `base` (none is
    /// scheduled, they are all deadlines to come) is due at once.
    fn ticks(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ticks: u64) -> Instant {
        self.base + Duration::from_nanos(ticks)
    }

    /// Wake link `handle` at `at` (stale wake-ups are harmless: the link
    /// just finds nothing due).
    pub(crate) fn schedule(&self, at: Instant, handle: u32) {
        let at = self.ticks(at);
        let mut heap = lock(&self.heap);
        let earliest = heap.peek().is_none_or(|Reverse((t, _))| at < *t);
        heap.push(Reverse((at, handle)));
        drop(heap);
        if earliest {
            self.changed.notify_one();
        }
    }

    pub(crate) async fn run(self: Arc<Self>, shared: Weak<Shared>) {
        loop {
            let next = lock(&self.heap).peek().map(|Reverse((t, _))| self.instant(*t));
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.changed.notified() => continue,
            }
            let now = Instant::now();
            let now_ticks = self.ticks(now);
            let mut due = Vec::new();
            {
                let mut heap = lock(&self.heap);
                while let Some(Reverse((t, h))) = heap.peek().copied() {
                    if t > now_ticks {
                        break;
                    }
                    heap.pop();
                    due.push(h);
                }
            }
            due.dedup();
            let Some(shared) = shared.upgrade() else { return };
            for h in due {
                if let Some(link) = shared.link(h) {
                    link.on_timer(now);
                }
            }
        }
    }
}

/// The longest wait an option can ask for (about 30 years): a longer one,
/// Infinity included, is saturated to it, which `Instant` arithmetic and
/// tokio's timers can still take.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// A wait of `ms` milliseconds from JavaScript; none for zero, negative or NaN.
pub(crate) fn millis(ms: f64) -> Option<Duration> {
    (ms > 0.0).then(|| Duration::try_from_secs_f64(ms / 1000.0).map_or(LONGEST_WAIT, |d| d.min(LONGEST_WAIT)))
}
