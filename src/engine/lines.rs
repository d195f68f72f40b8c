//! The line protocol `index.js` uses to hand a batch of sends and sets to
//! Rust (`Link::write_lines`): one command per `\n`-separated line, its first
//! byte a tag.
//!
//! | line | meaning |
//! |---|---|
//! | `e<json>` | `send` without a callback: `<json>` is the argument array, name first |
//! | `a<seq><json>` | `send` with a callback: `<seq>` is the emitter's decimal sequence number for it |
//! | `A<json>` | as `a`, its sequence number one more than the line's before it with one (`a`, `A` or `d`) in the same batch |
//! | `d<seq><json>` | a durable `send`: as `a`, and `<seq>` also hears when the event is in the store |
//! | `s<json>` | `set(...)`: the JSON array of its arguments |
//! | `r<json>` | `_send(data)`: one whole message, framed as is |
//!
//! `A` is what `index.js` writes for every numbered send after the first of
//! a batch (the numbers of one emitter's sends are consecutive): the number
//! then costs JavaScript no decimal text and no string piece per send
//! (bench/README.md, "The crossing of a batch"). [`parse_line`] decodes one
//! line alone; [`Numbering`] gives `A` lines their number.
//!
//! The JSON after the tag is passed on as text; JavaScript's `JSON.stringify`
//! never writes a raw newline, so it cannot split a line. Empty lines are
//! skipped by the caller.

use std::fmt;

/// One decoded line. The texts borrow from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `e<json>`
    Event(&'a str),
    /// `a<seq><json>`
    Acked {
        /// The JavaScript side's number for the send callback.
        seq: u64,
        /// The event's argument array, name first.
        args: &'a str,
    },
    /// `A<json>`: as `Acked`, with the number after the one of the batch's
    /// numbered line before it ([`Numbering`]).
    AckedNext(&'a str),
    /// `d<seq><json>`: a durable send (its callback also hears when the
    /// event reached the store).
    Durable {
        /// The JavaScript side's number for the send callback.
        seq: u64,
        /// The event's argument array, name first.
        args: &'a str,
    },
    /// `s<json>`
    Set(&'a str),
    /// `r<json>`
    Raw(&'a str),
}

/// Why a line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The empty line (callers skip these rather than decode them).
    Empty,
    /// `a` or `d` not followed by a decimal number that fits in a `u64`.
    MalformedSeq,
    /// The line starts with a character that is no tag.
    UnknownTag(char),
    /// `A` with no numbered line before it in its batch, or after `u64::MAX`.
    NoPreviousSeq,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Empty => f.write_str("empty write line"),
            LineError::MalformedSeq => f.write_str("malformed ack sequence number"),
            LineError::UnknownTag(c) => write!(f, "unknown write tag {c:?}"),
            LineError::NoPreviousSeq => f.write_str("implicit ack sequence number with no number before it"),
        }
    }
}

impl std::error::Error for LineError {}

/// Decodes one line (without its `\n`).
///
/// A sequence number with leading zeros (`a007[...]`) is accepted as its
/// value, as before this parser was split out; `index.js` never writes one,
/// so only such lines do not round-trip through [`Line`]'s `Display`.
pub fn parse_line(line: &str) -> Result<Line<'_>, LineError> {
    let Some(first) = line.chars().next() else { return Err(LineError::Empty) };
    // Split after the first *character*: slicing after the first byte would
    // panic on a line that starts with a multi-byte character (found by
    // fuzzing; `write_lines` used to do exactly that).
    let body = &line[first.len_utf8()..];
    match first {
        'e' => Ok(Line::Event(body)),
        'A' => Ok(Line::AckedNext(body)),
        'a' | 'd' => {
            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
            let seq = body[..digits].parse::<u64>().map_err(|_| LineError::MalformedSeq)?;
            let args = &body[digits..];
            Ok(if first == 'a' { Line::Acked { seq, args } } else { Line::Durable { seq, args } })
        }
        's' => Ok(Line::Set(body)),
        'r' => Ok(Line::Raw(body)),
        c => Err(LineError::UnknownTag(c)),
    }
}

/// The sequence numbers of one batch's lines, in order: `A` takes the one
/// after the last line with one.
#[derive(Debug, Default)]
pub struct Numbering {
    last: Option<u64>,
}

impl Numbering {
    /// Records the number of an `a` or `d` line; returns it.
    pub fn explicit(&mut self, seq: u64) -> u64 {
        self.last = Some(seq);
        seq
    }

    /// The number of an `A` line: the one after the last; an error with
    /// none before it.
    pub fn implicit(&mut self) -> Result<u64, LineError> {
        let seq = self.last.and_then(|s| s.checked_add(1)).ok_or(LineError::NoPreviousSeq)?;
        Ok(self.explicit(seq))
    }

    /// The number of the batch's next line, `line`, if it has one: its own
    /// (`a`, `d`) or the one after the last (`A`).
    pub fn of(&mut self, line: &Line<'_>) -> Result<Option<u64>, LineError> {
        Ok(match *line {
            Line::Acked { seq, .. } | Line::Durable { seq, .. } => Some(self.explicit(seq)),
            Line::AckedNext(_) => Some(self.implicit()?),
            Line::Event(_) | Line::Set(_) | Line::Raw(_) => None,
        })
    }
}

/// The sequence number of each line of a batch, in order (`None` for a
/// line without one, or one that does not decode): what a batch that could
/// not be written owes the callbacks of its sends.
pub fn sequence_numbers(batch: &str) -> Vec<Option<u64>> {
    let mut numbering = Numbering::default();
    let seq_of = |line| parse_line(line).and_then(|line| numbering.of(&line)).ok().flatten();
    batch.split('\n').filter(|line| !line.is_empty()).map(seq_of).collect()
}

/// Formats the line back, as `index.js` writes it.
impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Event(args) => write!(f, "e{args}"),
            Line::Acked { seq, args } => write!(f, "a{seq}{args}"),
            Line::AckedNext(args) => write!(f, "A{args}"),
            Line::Durable { seq, args } => write!(f, "d{seq}{args}"),
            Line::Set(args) => write!(f, "s{args}"),
            Line::Raw(json) => write!(f, "r{json}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(parse_line(r#"e["x",1]"#), Ok(Line::Event(r#"["x",1]"#)));
        assert_eq!(parse_line(r#"a12["x"]"#), Ok(Line::Acked { seq: 12, args: r#"["x"]"# }));
        assert_eq!(parse_line(r#"d7["x"]"#), Ok(Line::Durable { seq: 7, args: r#"["x"]"# }));
        assert_eq!(parse_line("d[1]"), Err(LineError::MalformedSeq));
        assert_eq!(parse_line(r#"s["k",2]"#), Ok(Line::Set(r#"["k",2]"#)));
        assert_eq!(parse_line(r#"r{"a":1}"#), Ok(Line::Raw(r#"{"a":1}"#)));
        assert_eq!(parse_line(""), Err(LineError::Empty));
        assert_eq!(parse_line("a[1]"), Err(LineError::MalformedSeq));
        assert_eq!(parse_line("a99999999999999999999[1]"), Err(LineError::MalformedSeq));
        assert_eq!(parse_line("x[]"), Err(LineError::UnknownTag('x')));
        assert_eq!(parse_line("é[]"), Err(LineError::UnknownTag('é')));
        assert_eq!(parse_line("a007[]").unwrap().to_string(), "a7[]");
        assert_eq!(parse_line(r#"A["x"]"#), Ok(Line::AckedNext(r#"["x"]"#)));
        assert_eq!(parse_line("A").unwrap().to_string(), "A");
    }

    #[test]
    fn implicit_numbers_follow_the_last_explicit_one() {
        assert_eq!(
            sequence_numbers("\na5[1]\nA[2]\ne[3]\ns[4]\nA[5]\nd9[6]\nA[7]\nr{}\na2[8]\nA[9]"),
            [Some(5), Some(6), None, None, Some(7), Some(9), Some(10), None, Some(2), Some(3)]
        );
        // No number before it in the batch, or none after it; a line that
        // does not decode has none either.
        assert_eq!(sequence_numbers("\ne[1]\nA[2]"), [None, None]);
        assert_eq!(sequence_numbers("\na18446744073709551615[1]\nA[2]"), [Some(u64::MAX), None]);
        assert_eq!(sequence_numbers("\nax[1]\nq[2]\na3[3]"), [None, None, Some(3)]);
        // A refused `A` leaves the count where it was.
        let mut numbering = Numbering::default();
        assert_eq!(numbering.implicit(), Err(LineError::NoPreviousSeq));
        assert_eq!(numbering.explicit(0), 0);
        assert_eq!(numbering.implicit(), Ok(1));
    }
}
