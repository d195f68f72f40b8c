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

#[derive(Default)]
pub(crate) struct Timers {
    heap: Mutex<BinaryHeap<Reverse<(Instant, u32)>>>,
    changed: Notify,
}

impl Timers {
    /// Wake link `handle` at `at` (stale wake-ups are harmless: the link
    /// just finds nothing due).
    pub(crate) fn schedule(&self, at: Instant, handle: u32) {
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
            let next = lock(&self.heap).peek().map(|Reverse((t, _))| *t);
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
            let mut due = Vec::new();
            {
                let mut heap = lock(&self.heap);
                while let Some(Reverse((t, h))) = heap.peek().copied() {
                    if t > now {
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
