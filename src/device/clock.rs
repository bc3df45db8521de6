//! Whether the wall clock can be trusted.
//!
//! A Raspberry Pi has no real-time clock: until NTP answers, the date is whatever the
//! last shutdown left, or 1970. Nothing in the queue depends on the date (ids and
//! monotonic timers order everything), but TLS does: a certificate checked against a
//! 1970 clock is "not yet valid", an error that says nothing about the real cause.
//! So the agent tells the clock's state in `status` and on the attention LED, and
//! does not attempt HTTPS while the clock is plainly wrong.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What the agent knows about its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Clock {
    /// Set by NTP since boot.
    Synchronized,
    /// Not (yet) confirmed by NTP, but not before this build either.
    #[default]
    Unsynchronized,
    /// Earlier than the day this binary was built: certainly wrong.
    Wrong,
}

/// systemd-timesyncd creates this once it has set the clock since boot.
const TIMESYNCD_FLAG: &str = "/run/systemd/timesync/synchronized";

impl Clock {
    pub fn now() -> Clock {
        Clock::judge(SystemTime::now(), kernel_synchronized())
    }

    fn judge(now: SystemTime, synchronized: bool) -> Clock {
        let built =
            UNIX_EPOCH + Duration::from_secs(env!("UPLINK_BUILT_UNIX").parse().unwrap_or(0));
        if now < built {
            Clock::Wrong
        } else if synchronized {
            Clock::Synchronized
        } else {
            Clock::Unsynchronized
        }
    }

    pub fn is_wrong(self) -> bool {
        self == Clock::Wrong
    }

    pub fn describe(self) -> &'static str {
        match self {
            Clock::Synchronized => "synchronized",
            Clock::Unsynchronized => "not synchronized by NTP (yet)",
            Clock::Wrong => "wrong: earlier than this software's build date; waiting for NTP",
        }
    }
}

/// Whether NTP has set the clock: the kernel's own flag where the agent may read it
/// (adjtimex is filtered out by the service's ProtectClock=), else timesyncd's flag.
fn kernel_synchronized() -> bool {
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: modes 0 only reads the kernel's state into the struct we own.
    let state = unsafe { libc::adjtimex(&mut timex) };
    if state >= 0 {
        state != libc::TIME_ERROR
    } else {
        Path::new(TIMESYNCD_FLAG).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_before_the_build_is_wrong_whatever_ntp_says() {
        let boot = UNIX_EPOCH + Duration::from_secs(30);
        assert_eq!(Clock::judge(boot, true), Clock::Wrong);
        assert_eq!(Clock::judge(boot, false), Clock::Wrong);
        assert!(Clock::judge(boot, false).is_wrong());
    }

    #[test]
    fn after_the_build_ntp_decides() {
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(Clock::judge(later, true), Clock::Synchronized);
        assert_eq!(Clock::judge(later, false), Clock::Unsynchronized);
    }

    #[test]
    fn the_state_reads_like_status_json() {
        let json = serde_json::to_string(&Clock::Wrong).unwrap();
        assert_eq!(json, "\"wrong\"");
        assert_eq!(
            serde_json::from_str::<Clock>("\"synchronized\"").unwrap(),
            Clock::Synchronized
        );
    }
}
