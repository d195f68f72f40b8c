//! The JS line-protocol decoder (src/engine/lines.rs) on arbitrary strings, split into
//! lines as `Link::write_lines` splits them. No panic; every decoded line formats back to
//! itself (except the non-canonical `a0…` / `d0…` sequence numbers, which format back to their
//! canonical form and then decode to the same value). The lines' sequence numbers, as
//! `write_lines` numbers them (`A` one more than the last), come out or fail without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uhura::engine::lines::{parse_line, Line, LineError, Numbering};

fuzz_target!(|text: &str| {
    let mut numbering = Numbering::default();
    let mut last = None;
    for line in text.split('\n') {
        match parse_line(line) {
            Ok(decoded) => {
                match decoded {
                    Line::Acked { seq, .. } | Line::Durable { seq, .. } => last = Some(numbering.explicit(seq)),
                    Line::AckedNext(_) => match numbering.implicit() {
                        Ok(seq) => {
                            assert_eq!(Some(seq), last.and_then(|s: u64| s.checked_add(1)));
                            last = Some(seq);
                        }
                        Err(e) => assert!(e == LineError::NoPreviousSeq && last.is_none_or(|s| s == u64::MAX)),
                    },
                    _ => {}
                }
                let again = decoded.to_string();
                assert_eq!(parse_line(&again), Ok(decoded), "{line:?} -> {again:?}");
                let leading_zero = matches!(decoded, Line::Acked { .. } | Line::Durable { .. })
                    && line.as_bytes().get(1) == Some(&b'0')
                    && line.as_bytes().get(2).is_some_and(u8::is_ascii_digit);
                if !leading_zero {
                    assert_eq!(again, line);
                }
                if let Line::Acked { args, .. } | Line::Durable { args, .. } = decoded {
                    assert!(!args.starts_with(|c: char| c.is_ascii_digit()));
                }
            }
            Err(LineError::Empty) => assert!(line.is_empty()),
            Err(LineError::MalformedSeq) => assert!(line.starts_with('a') || line.starts_with('d')),
            Err(LineError::UnknownTag(c)) => assert!(line.starts_with(c) && !"eaAdsr".contains(c)),
            Err(LineError::NoPreviousSeq) => panic!("{line:?}: parse_line reads a line alone"),
        }
    }
});
