//! Exponential backoff with jitter, for destinations that are down.
//!
//! Each failure doubles the wait up to a cap; the wait actually used is drawn
//! between half and all of it ("equal jitter"), so that many boxes coming back
//! online after the same outage do not all knock at once. A server's Retry-After
//! is respected when it asks for longer.

use std::time::Duration;

/// The longest a Retry-After may hold us off, whatever the server says.
const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(start: Duration, cap: Duration) -> Backoff {
        Backoff {
            start,
            cap: cap.max(start),
            next: start,
        }
    }

    /// The wait before the next attempt after a failure.
    pub fn failure(&mut self, retry_after: Option<Duration>) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.cap);
        let half = base / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        jittered.max(retry_after.unwrap_or_default().min(RETRY_AFTER_LIMIT))
    }

    pub fn success(&mut self) {
        self.next = self.start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let waits: Vec<Duration> = (0..6).map(|_| backoff.failure(None)).collect();
        for (wait, base) in waits.iter().zip([1u64, 2, 4, 8, 8, 8]) {
            let base = Duration::from_secs(base);
            assert!(*wait >= base / 2 && *wait <= base, "{wait:?} for {base:?}");
        }
        backoff.success();
        assert!(backoff.failure(None) <= Duration::from_secs(1));
    }

    #[test]
    fn retry_after_is_respected_within_reason() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        assert_eq!(
            backoff.failure(Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            backoff.failure(Some(Duration::from_secs(99_999))),
            RETRY_AFTER_LIMIT
        );
    }
}
