//! A transport whose bytes come from and go to a JavaScript stream (the
//! original's `createServer` / `createConnection` factory hooks: tls, net,
//! or any Node duplex). JavaScript pushes what the stream reads with
//! `feed`; Rust announces output and JavaScript takes it with `take_output`.
//! In between sits an in-memory duplex, so the link drives it exactly like
//! a socket.

use super::delivery::lock;
use super::events::Kind;
use super::link::Link;
use super::transport::BoxStream;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

/// Past this much unread input, `feed` asks JavaScript to pause its stream.
const INPUT_HIGH_WATER: usize = 4 * 1024 * 1024;
/// Past this much output not yet taken by JavaScript, Rust stops producing.
const OUTPUT_HIGH_WATER: usize = 8 * 1024 * 1024;

pub(crate) struct JsPipe {
    inbound: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
    inbound_bytes: AtomicUsize,
    paused: AtomicBool,
    out: Mutex<Vec<u8>>,
    out_drained: Notify,
}

impl JsPipe {
    /// Creates the pipe and its pumps; returns the stream side for the link.
    pub(crate) fn start(link: &Arc<Link>, rt: &tokio::runtime::Handle) -> (Arc<JsPipe>, BoxStream) {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let pipe = Arc::new(JsPipe {
            inbound: Mutex::new(Some(tx)),
            inbound_bytes: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            out: Mutex::new(Vec::new()),
            out_drained: Notify::new(),
        });
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let (p, l) = (pipe.clone(), link.clone());
        rt.spawn(async move {
            while let Some(chunk) = rx.recv().await {
                let n = chunk.len();
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
                let left = p.inbound_bytes.fetch_sub(n, Ordering::AcqRel) - n;
                if left < INPUT_HIGH_WATER / 2 && p.paused.swap(false, Ordering::AcqRel) {
                    l.deliver(Kind::ResumeInput, |b| b.push('0'));
                }
            }
            let _ = wr.shutdown().await;
        });
        let (p, l) = (pipe.clone(), link.clone());
        rt.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let was_empty = {
                            let mut out = lock(&p.out);
                            let was_empty = out.is_empty();
                            out.extend_from_slice(&buf[..n]);
                            was_empty
                        };
                        if was_empty {
                            l.deliver(Kind::Output, |b| b.push('0'));
                        }
                        loop {
                            let drained = p.out_drained.notified();
                            if lock(&p.out).len() < OUTPUT_HIGH_WATER {
                                break;
                            }
                            drained.await;
                        }
                    }
                }
            }
            // The link is done with this transport: JavaScript closes the stream
            // once it has written what is left.
            l.deliver(Kind::TransportClosed, |b| b.push('0'));
        });
        (pipe, Box::new(ours))
    }

    /// Bytes read by the JavaScript stream. Returns false when JavaScript
    /// should pause the stream until a `RESUME_INPUT` event.
    pub(crate) fn feed(&self, data: &[u8]) -> bool {
        let tx = lock(&self.inbound);
        let Some(tx) = tx.as_ref() else { return true };
        let total = self.inbound_bytes.fetch_add(data.len(), Ordering::AcqRel) + data.len();
        let _ = tx.send(Bytes::copy_from_slice(data));
        if total > INPUT_HIGH_WATER {
            self.paused.store(true, Ordering::Release);
            return false;
        }
        true
    }

    /// The JavaScript stream ended or closed.
    pub(crate) fn feed_end(&self) {
        lock(&self.inbound).take();
    }

    pub(crate) fn take_output(&self) -> Vec<u8> {
        let out = std::mem::take(&mut *lock(&self.out));
        self.out_drained.notify_waiters();
        out
    }
}
