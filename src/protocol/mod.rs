//! The sans-IO core: bytes and time in, bytes and events out.
//! Nothing here may import tokio, tokio-util or napi, nor read the OS random
//! source: the driver injects randomness (`entropy`). Checked by a test.

pub mod backoff;
pub mod entropy;
pub mod framing;
pub mod json;
pub mod message;
pub mod peer;
pub mod session;
