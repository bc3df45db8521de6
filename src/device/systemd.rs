//! Talking to systemd: readiness, a status line, the watchdog and stopping.
//!
//! Under `Type=notify` the unit is started only once the listener accepts; with
//! `WatchdogSec=` the agent pings only while its executor and queue answer, so a
//! hung agent is restarted. Outside systemd (no `NOTIFY_SOCKET`) all of it is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the agent is ready, with a status line for `systemctl status`.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Updates the status line.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// How often to ping the watchdog (half its timeout), if systemd asked for one.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// Tells the watchdog the agent is alive.
pub fn alive() {
    notify(&[NotifyState::Watchdog]);
}

/// Tells systemd the agent is shutting down.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        log::warn!("cannot notify systemd: {e}");
    }
}
