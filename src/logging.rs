//! A `log` backend that suits both a terminal and journald.
//!
//! Under systemd (`JOURNAL_STREAM` set) each line starts with a syslog priority
//! prefix (`<3>`) that journald turns into the entry's level, and carries no timestamp
//! of its own: the journal has one. On a terminal, lines get a UTC timestamp and a
//! level word. Messages must never carry patient data; callers log UIDs only where
//! the profile allows, and counts, sizes and statuses otherwise.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    journald: bool,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // Codec libraries narrate their work at info (openjp2: "Main header has
        // been correctly decoded"); only the agent's own messages go below warn.
        let ours = metadata.target().starts_with("uplink");
        metadata.level() <= log::max_level() && (ours || metadata.level() <= Level::Warn)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.journald {
            format!("<{}>{}\n", priority(record.level()), record.args())
        } else {
            format!(
                "{} {:5} {}\n",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
                record.level(),
                record.args()
            )
        };
        // One write per line so lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// The syslog priority journald reads from the `<N>` prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Installs the logger. `UPLINK_LOG` (error, warn, info, debug, trace) overrides `level`.
pub fn init(level: LevelFilter) {
    let level = std::env::var("UPLINK_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(level);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    if log::set_boxed_logger(Box::new(Logger { journald })).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
    }
}
