//! Stopping: every long-running task watches one channel, closed on SIGTERM/SIGINT.

use std::time::Duration;

/// The receiving end every task holds; closed when the agent stops.
pub type Stop = smol::channel::Receiver<()>;

/// Sleeps for `duration`, or less if the agent stops meanwhile.
pub async fn pause(stop: &Stop, duration: Duration) {
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
