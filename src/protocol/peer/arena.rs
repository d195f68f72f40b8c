//! The argument texts of an outbox's pending events, back to back in one
//! buffer in sequence order, instead of a `String` each: a sender with
//! millions of events queued holds their bytes and a small record per
//! event, and sending or acknowledging one allocates nothing.
//!
//! Events leave mostly from the front (acks and drops of the oldest), so
//! the space before the oldest pending event is given back as it goes; the
//! rare event leaving from the middle (a single ack out of order) leaves a
//! gap until `compact` copies the live texts into a new buffer.

/// Where one text lies: an absolute offset (counted from the first byte
/// ever pushed, so it survives the front being dropped) and a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    at: u64,
    len: u32,
}

impl Span {
    pub(super) fn len(self) -> usize {
        self.len as usize
    }
}

/// Gaps smaller than this are never worth a copy.
const MIN_COMPACT: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(super) struct Arena {
    buf: String,
    /// The absolute offset of `buf[0]`.
    base: u64,
}

impl Arena {
    /// No texts: what `Default` gives, usable in a `static`.
    pub(super) const EMPTY: Arena = Arena { buf: String::new(), base: 0 };

    /// Appends a text; returns where it lies.
    ///
    /// # Panics
    ///
    /// If `text` is 4 GiB or longer (no JavaScript string is).
    pub(super) fn push(&mut self, text: &str) -> Span {
        let at = self.base + self.buf.len() as u64;
        self.buf.push_str(text);
        Span { at, len: u32::try_from(text.len()).expect("an event under 4 GiB") }
    }

    pub(super) fn get(&self, s: Span) -> &str {
        let i = (s.at - self.base) as usize;
        &self.buf[i..i + s.len()]
    }

    /// Nothing before `oldest` (the oldest pending text, or None when
    /// nothing is pending) is needed any more. `live` is the length of the
    /// texts still pending: when gaps hold more than that, the caller
    /// should `compact`. Returns whether it should.
    pub(super) fn release_before(&mut self, oldest: Option<Span>, live: usize) -> bool {
        let Some(oldest) = oldest else {
            // Freed, not kept: an idle sender holds no buffer.
            self.base += self.buf.len() as u64;
            self.buf = String::new();
            return false;
        };
        let dead = (oldest.at - self.base) as usize;
        if dead >= MIN_COMPACT && dead >= self.buf.len() / 2 {
            // At least as many bytes go as move: linear over the run.
            self.buf.drain(..dead);
            self.base = oldest.at;
        }
        self.buf.len() - (oldest.at - self.base) as usize > live.saturating_mul(2).max(MIN_COMPACT)
    }

    /// Copies the texts at `spans` (all that is pending, in order) into a
    /// new buffer, moving each span.
    pub(super) fn compact<'a>(&mut self, spans: impl Iterator<Item = &'a mut Span>) {
        let mut fresh = Arena { buf: String::new(), base: self.base + self.buf.len() as u64 };
        for s in spans {
            *s = fresh.push(self.get(*s));
        }
        *self = fresh;
    }

    /// Bytes held (diagnostics, tests).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_goes_back_and_gaps_compact() {
        let mut a = Arena::default();
        let mut spans: Vec<Span> = (0..100_000).map(|i| a.push(&format!("[\"e\",{i}]"))).collect();
        assert_eq!(a.get(spans[7]), "[\"e\",7]");
        // The oldest 60 % acknowledged: its bytes are dropped.
        let live = |s: &[Span]| s.iter().map(|s| s.len()).sum::<usize>();
        let rest = spans.split_off(60_000);
        assert!(!a.release_before(rest.first().copied(), live(&rest)));
        assert!(a.buf.len() < 1_000_000, "front dropped: {}", a.buf.len());
        assert_eq!(a.get(rest[0]), "[\"e\",60000]");
        // All but the first of the rest acknowledged out of order: a gap behind it.
        let mut kept = vec![rest[0]];
        assert!(a.release_before(Some(kept[0]), live(&kept)));
        a.compact(kept.iter_mut());
        assert_eq!(a.get(kept[0]), "[\"e\",60000]");
        assert!(a.capacity() < 64);
        assert!(!a.release_before(None, 0));
        assert_eq!(a.capacity(), 0);
        let s = a.push("[\"f\"]");
        assert_eq!(a.get(s), "[\"f\"]");
    }
}
