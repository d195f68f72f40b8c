//! Strings from JavaScript into Rust, for the send path's batches.
//!
//! napi-rs makes a `String` with two calls: one measures the UTF-8 length
//! (a pass over the whole string), then a zero-filled allocation of that
//! size is written by a second. A batch of up to 1,024 lines crosses per
//! `write`; here the length in UTF-16 units is read in O(1), the text is
//! written once into a buffer of the largest size it can take (3 bytes a
//! unit), and that buffer is kept for the thread's next batch.

use napi::bindgen_prelude::{FromNapiValue, TypeName, ValidateNapiValue};
use napi::{sys, Error, Result, Status, ValueType};
use std::cell::Cell;

/// A kept buffer larger than this is let go after its batch: one outsized
/// string must not stay allocated.
const KEEP_AT_MOST: usize = 1 << 20;

thread_local! {
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A JavaScript string as UTF-8, in the thread's reused buffer (given
/// back when dropped).
pub(crate) struct Text(Vec<u8>);

impl Text {
    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: written by `napi_get_value_string_utf8`, which writes
        // whole characters and replaces invalid UTF-16 (lone surrogates)
        // with U+FFFD, so the bytes are UTF-8 (napi-rs's own `String`
        // conversion relies on the same).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl Drop for Text {
    fn drop(&mut self) {
        if self.0.capacity() <= KEEP_AT_MOST {
            let mut buf = std::mem::take(&mut self.0);
            buf.clear();
            SPARE.with(|s| s.set(buf));
        }
    }
}

impl FromNapiValue for Text {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        let expected = || Error::new(Status::StringExpected, "expected a string".to_owned());
        let mut units = 0;
        // With no buffer, the latin1 variant returns the string's length
        // without looking at its characters.
        // SAFETY: valid env and value of the current call.
        let status = unsafe { sys::napi_get_value_string_latin1(env, value, std::ptr::null_mut(), 0, &mut units) };
        if status != sys::Status::napi_ok {
            return Err(expected());
        }
        let mut buf = SPARE.with(Cell::take);
        // Each UTF-16 unit is at most 3 bytes of UTF-8; one more for the NUL
        // napi writes after the text.
        let size = units * 3 + 1;
        buf.reserve(size);
        let mut written = 0;
        // SAFETY: `buf` has room for `size` bytes; napi writes at most that
        // (the text, then a NUL) and reports the text's length.
        let status =
            unsafe { sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), size, &mut written) };
        if status != sys::Status::napi_ok {
            return Err(expected());
        }
        // SAFETY: napi wrote `written` (< size) initialized bytes.
        unsafe { buf.set_len(written) };
        Ok(Text(buf))
    }
}

impl TypeName for Text {
    fn type_name() -> &'static str {
        "String"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ValidateNapiValue for Text {}
