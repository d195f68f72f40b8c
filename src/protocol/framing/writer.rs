//! The framing [`Writer`]: one side's stream as the old writers produce it.

/// Writes one side's stream: `[\n` before the first message, `\n,\n` before every later one,
/// `\n]\n` at clean end.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    started: bool,
}

impl Writer {
    /// A writer whose root array is not open yet.
    pub fn new() -> Self {
        Writer { started: false }
    }

    /// The bytes that go before the next message (`[\n` for the first one, `\n,\n` after);
    /// marks the stream started. For sinks that are not a `Vec<u8>`.
    pub fn separator(&mut self) -> &'static str {
        if self.started {
            "\n,\n"
        } else {
            self.started = true;
            "[\n"
        }
    }

    /// Append the separator then `msg_json` (already-serialized JSON) to `buf`.
    pub fn write_raw(&mut self, msg_json: &str, buf: &mut Vec<u8>) {
        let sep = self.separator();
        buf.reserve(sep.len() + msg_json.len());
        buf.extend_from_slice(sep.as_bytes());
        buf.extend_from_slice(msg_json.as_bytes());
    }

    /// The bytes that end the stream cleanly: `\n]\n` after messages, `[]\n` if nothing was
    /// written. Resets, so a later write starts a new root array.
    pub fn end_bytes(&mut self) -> &'static str {
        let started = std::mem::replace(&mut self.started, false);
        if started {
            "\n]\n"
        } else {
            "[]\n"
        }
    }

    /// Append `\n]\n` (or `[]\n` if nothing was written) and reset, so a later write starts a
    /// new root array.
    pub fn finish(&mut self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.end_bytes().as_bytes());
    }

    /// Whether the root array was opened (the first message written).
    pub fn has_started(&self) -> bool {
        self.started
    }
}
