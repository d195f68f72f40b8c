//! The JS line-protocol decoder (src/engine/lines.rs) on arbitrary strings, split into
//! lines as `Link::write_lines` splits them. No panic; every decoded line formats back to
//! itself (except the non-canonical `a0…` / `d0…` sequence numbers, which format back to their
//! canonical form and then decode to the same value).
#![no_main]

use libfuzzer_sys::fuzz_target;
use uhura::engine::lines::{parse_line, Line, LineError};

fuzz_target!(|text: &str| {
    for line in text.split('\n') {
        match parse_line(line) {
            Ok(decoded) => {
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
            Err(LineError::UnknownTag(c)) => assert!(line.starts_with(c) && !"eadsr".contains(c)),
        }
    }
});
