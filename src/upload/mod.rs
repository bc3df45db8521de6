//! Upload: one worker per destination drains the queue, oldest first.
//!
//! A worker sleeps until something is queued for it, delivers, and tells the queue,
//! which removes the spool file once every destination has the instance. A failed
//! delivery leaves the instance queued and the worker backs off (doubling up to a
//! cap), so a dead destination costs nothing but a retry now and then.

pub mod outbox;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Destination, DestinationUrl};
use crate::events::{Board, Event};
use crate::queue::Queue;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Runs the worker for destination number `index` until `stop` completes. A
/// delivery under way when it does is finished first.
pub async fn run(
    index: usize,
    destination: Destination,
    queue: Arc<Queue>,
    board: Arc<Board>,
    stop: smol::channel::Receiver<()>,
) {
    let name = destination.name.to_string();
    let mut backoff = BACKOFF_START;
    while !stop.is_closed() {
        let next = {
            let queue = queue.clone();
            smol::unblock(move || queue.oldest(index)).await
        };
        let entry = match next {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                smol::future::or(queue.woken(index), async {
                    let _ = stop.recv().await;
                })
                .await;
                continue;
            }
            Err(e) => {
                log::error!("{name}: cannot read the queue: {e}");
                pause(&stop, BACKOFF_CAP).await;
                continue;
            }
        };
        let delivered = {
            let (entry, url, queue) = (entry.clone(), destination.url.clone(), queue.clone());
            smol::unblock(move || {
                let DestinationUrl::Dir(dir) = &url;
                outbox::deliver(&entry, dir)
                    .map_err(|e| format!("cannot write to {}: {e}", dir.display()))?;
                queue
                    .complete(index, entry.id)
                    .map_err(|e| format!("delivered, but cannot record it: {e}"))
            })
            .await
        };
        match delivered {
            Ok(()) => {
                log::debug!("{name}: delivered queue entry {}", entry.id);
                board.record(Event::Delivered {
                    destination: name.clone(),
                });
                backoff = BACKOFF_START;
            }
            Err(error) => {
                log::warn!(
                    "{name}: delivery failed, retrying in {}s: {error}",
                    backoff.as_secs()
                );
                board.record(Event::DeliveryFailed {
                    destination: name.clone(),
                    error,
                });
                pause(&stop, backoff).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
}

/// Sleeps for `duration`, or less if `stop` completes.
async fn pause(stop: &smol::channel::Receiver<()>, duration: Duration) {
    smol::future::or(
        async {
            smol::Timer::after(duration).await;
        },
        async {
            let _ = stop.recv().await;
        },
    )
    .await;
}
