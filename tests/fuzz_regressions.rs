//! Inputs the fuzz targets in fuzz/ found that crashed or broke an invariant, kept as
//! plain tests (`cargo test --no-default-features`). See fuzz/README.md.

use uhura::engine::lines::{parse_line, Line, LineError};

/// `Link::write_lines` sliced each line after its first byte, which panics when the line
/// starts with a multi-byte character (`byte index 1 is not a char boundary`). The
/// decoder now splits after the first character and reports an unknown tag.
#[test]
fn line_starting_with_a_multibyte_character() {
    assert_eq!(parse_line("é[\"x\"]"), Err(LineError::UnknownTag('é')));
    assert_eq!(parse_line("\u{1F600}"), Err(LineError::UnknownTag('\u{1F600}')));
    assert_eq!(parse_line("e\u{e9}"), Ok(Line::Event("\u{e9}")));
}
