//! Duplicate suppression (docs/PROTOCOL.md §9): with our peers, message
//! ids are `<sender>-<seq>` with increasing seq and resends in order, so one
//! watermark per sender finds every duplicate.

use super::event::Event;
use super::Peer;

/// How many senders' duplicate-suppression watermarks a peer remembers.
const MAX_SEEN_SENDERS: usize = 64;

/// Per sender id prefix: the highest sequence number delivered, the most
/// recently new sender last.
#[derive(Debug, Default, Clone)]
pub(super) struct Seen(Vec<(String, u64)>);

impl Seen {
    /// Where `sender`'s watermark is, if it has one.
    fn find(&self, sender: &str) -> Option<usize> {
        self.0.iter().position(|(s, _)| s == sender)
    }

    /// Raises `sender`'s watermark to `seq`; a new sender past the limit
    /// forgets the oldest one.
    pub(super) fn note(&mut self, sender: &str, seq: u64) {
        let at = self.find(sender);
        self.raise(at, sender, seq);
    }

    /// [`note`](Self::note), `at` being what [`find`](Self::find) gave:
    /// the receive path looks the sender up once per message.
    fn raise(&mut self, at: Option<usize>, sender: &str, seq: u64) {
        match at {
            Some(i) => self.0[i].1 = self.0[i].1.max(seq),
            None => {
                if self.0.len() >= MAX_SEEN_SENDERS {
                    self.0.remove(0);
                }
                self.0.push((sender.to_owned(), seq));
            }
        }
    }

    /// The watermarks, for the connection that resumes the session.
    pub(super) fn take(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.0)
    }
}

/// Splits one of our message ids, `<12 hex>-<seq>`, into sender and sequence.
pub(super) fn parse_our_id(id: &str) -> Option<(&str, u64)> {
    let (prefix, seq) = id.split_at_checked(13)?;
    let bytes: &[u8; 13] = prefix.as_bytes().try_into().ok()?;
    // Every byte checked, no branch per byte: the check of a message from
    // one of our peers always runs to the end (bench/receive.rs).
    let hex = bytes[..12].iter().fold(true, |ok, b| ok & b.is_ascii_hexdigit());
    if !hex || bytes[12] != b'-' {
        return None;
    }
    Some((prefix, parse_u64(seq)?))
}

/// `s.parse::<u64>()` (an optional `+`, then one or more digits, no
/// overflow), without the generic parser's per-call setup: it was ~5 % of
/// a small message's receive path (bench/receive.rs).
fn parse_u64(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('+').unwrap_or(s).as_bytes();
    if digits.is_empty() {
        return None;
    }
    if digits.len() <= 19 {
        // Nineteen digits stay below 10^19 < 2^64: no overflow check per
        // digit, and one test of them all at the end (only a number with a
        // byte that is not a digit wraps, and it is refused).
        let (mut n, mut bad) = (0u64, false);
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            bad |= d > 9;
            n = n.wrapping_mul(10).wrapping_add(u64::from(d));
        }
        return (!bad).then_some(n);
    }
    let mut n = 0u64;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

impl Peer {
    /// Whether message `id` was delivered before; if not, it is from now on.
    pub(super) fn is_duplicate(&mut self, id: &str) -> bool {
        let Some((sender, seq)) = parse_our_id(id) else { return false };
        let at = self.seen.find(sender);
        if at.is_some_and(|i| seq <= self.seen.0[i].1) {
            return true;
        }
        if self.holding() {
            let hold = self.hold.get_or_insert_default();
            if hold.seen_before.is_none() {
                hold.seen_before = Some(self.seen.clone());
            }
        }
        // Nothing above changed `self.seen`: `at` still points at the sender.
        self.seen.raise(at, sender, seq);
        if self.config.persist_delivery {
            // Stored only once the event is the application's (see `Hold::seen_before`).
            self.hold_or_emit(Event::Seen { sender: sender.to_owned(), seq });
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_u64_reads_as_str_parse_does() {
        let cases = [
            "",
            "+",
            "-",
            "-1",
            "0",
            "+0",
            "7",
            "+7",
            "++7",
            "007",
            "12a",
            "a12",
            " 1",
            "1 ",
            "1.0",
            "１",
            "18446744073709551615",
            "+18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "000000000000000000000000018446744073709551615",
            "9999999999999999999",
            "1999999999999999999:",
            "999999999999999999/",
            "ÿÿÿÿÿÿÿÿÿ1",
            "\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}",
        ];
        for s in cases {
            assert_eq!(parse_u64(s), s.parse::<u64>().ok(), "{s:?}");
        }
        for n in (0..64).map(|k| 1u64 << k).chain([u64::MAX, u64::MAX - 1, 10, 99, 100]) {
            for t in [n, n.wrapping_sub(1), n.wrapping_add(1)] {
                assert_eq!(parse_u64(&t.to_string()), Some(t));
            }
        }
    }

    #[test]
    fn parse_our_id_takes_12_hex_digits_a_dash_and_a_number() {
        assert_eq!(parse_our_id("0123456789ab-7"), Some(("0123456789ab-", 7)));
        assert_eq!(parse_our_id("ABCDEF012345-+18"), Some(("ABCDEF012345-", 18)));
        for id in [
            "",
            "0123456789ab",
            "0123456789ab-",
            "0123456789ab-x",
            "0123456789abc-1",
            "0123456789a-12",
            "0123456789ag-1",
            "g123456789ab-1",
            "0123456789ab+1",
            "0123456789aé-1",
            "0123456789ab\u{e9}1",
            "0123 56789ab-1",
        ] {
            assert_eq!(parse_our_id(id), None, "{id:?}");
        }
    }
}
