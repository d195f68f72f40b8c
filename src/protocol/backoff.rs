//! Reconnect delays: exponential from `min` to `max` with full jitter
//! (docs/PROTOCOL.md §6).
//!
//! The old client waits `min(max, min ** retries)`: 1 ms, then `min`, then
//! `min²`, which reaches the cap after three tries and makes every client of a
//! restarted server reconnect at the same instant. We double instead, and pick
//! uniformly in `[0, ceiling]` ("full jitter") so a fleet spreads out.

use super::entropy::Entropy;
use std::time::Duration;

/// The first reconnect delay's ceiling when `autoReconnect()` names none.
pub const DEFAULT_MIN: Duration = Duration::from_millis(100);
/// The cap of reconnect delays when `autoReconnect()` names none.
pub const DEFAULT_MAX: Duration = Duration::from_secs(60);

/// Reconnect delays that grow from `min` to `max` with each failed attempt
/// (with jitter), and start over once a connection succeeds.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays between `min` and `max` (a `max` below `min` is taken as `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max: max.max(min), attempt: 0 }
    }

    /// The attempt number of the next delay, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt + 1
    }

    /// Upper bound of the next delay: `min * 2^attempt`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next delay, given a uniform random number in `[0, 1)`.
    pub fn next_delay(&mut self, unit_random: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(unit_random.clamp(0.0, 1.0))
    }

    /// Called once a connection has stayed up long enough to count as healthy.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A uniform number in `[0, 1)` drawn from `entropy`.
pub fn unit_random(entropy: &Entropy) -> f64 {
    let mut b = [0u8; 8];
    entropy.fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let ceilings: Vec<u128> = (0..6)
            .map(|_| {
                let c = b.ceiling().as_millis();
                assert!(b.next_delay(0.999).as_millis() <= c);
                c
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.ceiling().as_millis(), 100);
        assert_eq!(b.next_delay(0.5).as_millis(), 50);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(60));
        let entropy = Entropy::seeded([5; 32]);
        for _ in 0..1000 {
            let r = unit_random(&entropy);
            assert!((0.0..1.0).contains(&r));
            b.next_delay(r);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(60));
    }
}
