//! Helpers for the tests of the Rust API: bounded waits for events.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;
use uhura::Event;

/// How long any one wait may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test after `WAIT`.
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Takes events from `next` until one matches `pred`; returns it. Fails on
/// a timeout or when the events end. The events skipped are returned too.
pub(crate) async fn until<F, Fut>(what: &str, mut next: F, pred: impl Fn(&Event) -> bool) -> (Event, Vec<Event>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<Event>>,
{
    let mut skipped = Vec::new();
    let found = within(what, async {
        loop {
            match next().await {
                Some(e) if pred(&e) => return e,
                Some(e) => skipped.push(e),
                None => panic!("the events ended while waiting for {what}; saw {skipped:?}"),
            }
        }
    })
    .await;
    (found, skipped)
}

/// The next `Message` named `name`; returns its arguments.
pub(crate) async fn message<F, Fut>(name: &str, next: F) -> Vec<serde_json::Value>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<Event>>,
{
    match until(&format!("message {name:?}"), next, |e| matches!(e, Event::Message { name: n, .. } if n == name))
        .await
        .0
    {
        Event::Message { args, .. } => args,
        _ => unreachable!(),
    }
}
