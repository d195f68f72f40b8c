//! Byte-scanning helpers of the framing [`Reader`](super::Reader): they find where a run of
//! plain string content, digits or a literal ends, a word at a time where it pays.

/// First byte of a JSON scalar (string, number, literal).
#[inline]
pub(super) fn is_scalar_start(b: u8) -> bool {
    matches!(b, b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte in `s` that ends a run of plain string content: `"`, `\` or a
/// control character (< 0x20); `s.len()` if there is none. Eight bytes at a time. Also
/// whether a byte before that index is >= 0x80 (the reader's one pass learns whether a
/// message is all ASCII, and so needs no UTF-8 check).
#[inline]
pub(super) fn scan_string(s: &[u8]) -> (usize, bool) {
    let mut i = 0;
    // The bytes of the run, or-ed: bit 7 of some byte is set if one is >= 0x80.
    let mut seen = 0u64;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let q = x ^ (LO * u64::from(b'"'));
        let bs = x ^ (LO * u64::from(b'\\'));
        // Lowest set bit of each term marks that term's first hit exactly (borrows only
        // propagate upward), so the lowest bit of the union is the first special byte.
        let m = (q.wrapping_sub(LO) & !q) | (bs.wrapping_sub(LO) & !bs) | (x.wrapping_sub(LO * 0x20) & !x);
        let m = m & HI;
        if m != 0 {
            // Bit 8k + 7 marks byte k; only the bytes below it are the run's.
            let bit = m.trailing_zeros();
            seen |= x & ((1u64 << (bit - 7)) - 1);
            return (i + (bit / 8) as usize, seen & HI != 0);
        }
        seen |= x;
        i += 8;
    }
    let mut high = seen & HI != 0;
    for &b in words.remainder() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return (i, high);
        }
        high |= b >= 0x80;
        i += 1;
    }
    (i, high)
}

/// `s` starts with `p` (a short literal; avoids a `memcmp` call).
#[inline]
pub(super) fn has_prefix(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s.iter().zip(p).all(|(a, b)| a == b)
}

/// Length of the run of ASCII digits at the start of `s`.
#[inline]
pub(super) fn scan_digits(s: &[u8]) -> usize {
    s.iter().position(|b| !b.is_ascii_digit()).unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_string_finds_first_special_and_high_bytes_before_it() {
        for len in 0..40 {
            for pos in 0..=len {
                for special in [b'"', b'\\', 0u8, 0x1f] {
                    let mut v = vec![b'a'; len];
                    // mix in high bytes and near-miss values
                    for (k, x) in v.iter_mut().enumerate() {
                        *x = [b'a', 0xff, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x80][k % 8];
                    }
                    if pos < len {
                        v[pos] = special;
                    }
                    let high = v[..pos].iter().any(|&b| b >= 0x80);
                    assert_eq!(scan_string(&v), (pos, high), "len {len} pos {pos}");
                }
            }
        }
    }

    #[test]
    fn scan_string_ignores_high_bytes_after_the_special_one() {
        for len in 1..40 {
            for pos in 0..len {
                for high in 0..len {
                    let mut v = vec![b'a'; len];
                    v[high] = 0xc3;
                    if high != pos {
                        v[pos] = b'"';
                    }
                    let want = if high == pos { (len, true) } else { (pos, high < pos) };
                    assert_eq!(scan_string(&v), want, "len {len} pos {pos} high {high}");
                }
            }
        }
    }
}
