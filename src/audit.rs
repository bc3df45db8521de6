//! The audit trail: what happened to each instance, for the clinic's privacy
//! officer ("what was sent where, and when").
//!
//! One line per step of an instance's life on the box — received, stored, refused,
//! discarded by a profile, not deliverable, delivered, refused by a server,
//! deleted — in `audit.log` in the data dir. A line names the instance by its
//! keyed digest (the ledger key: the same instance sent twice has the same one, and
//! nothing on the card turns it back into a UID) and its copies by queue id; the
//! only UID written is the strict copy's, which is anonymized. Never a patient's
//! name, id or date, nor an original UID.
//!
//! The file is bounded: past `MAX_FILE_BYTES` it becomes `audit.log.1` (replacing
//! the older one) and a new one starts. Lines are written as they happen and made
//! durable at the next status tick (`sync`), so a power cut loses a second of
//! them at most, never what the queue has.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::queue::Entry;
use crate::queue::ledger::{LedgerKey, to_hex};

pub const AUDIT_FILE: &str = "audit.log";
/// The file before the current one.
pub const ROTATED_FILE: &str = "audit.log.1";
/// Size past which the trail rotates: two files bound it to 64 MiB, some 80,000
/// instances sent to two destinations (7 lines, about 780 bytes, each): six
/// weeks of a clinic sending 2,000 instances a day, under 1% of an 8 GB card.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Longest value a line carries (a server's reason can be long).
const MAX_VALUE_CHARS: usize = 200;

/// A step of an instance's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A C-STORE's data set arrived (whatever its answer).
    Received,
    /// A C-STORE was answered with a failure status: the box keeps nothing.
    Refused,
    /// A copy for one profile is durable in the queue.
    Stored,
    /// A profile keeps no copy by design (strict and PDF reports, say).
    Discarded,
    /// A profile could not clean its copy, so its destinations never get one.
    NotDeliverable,
    /// A destination confirmed a copy.
    Delivered,
    /// A destination's server refused a copy for good (it is in quarantine).
    RefusedByServer,
    /// A copy's spool file was removed: every destination has it.
    Deleted,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Received => "received",
            Step::Refused => "refused",
            Step::Stored => "stored",
            Step::Discarded => "discarded",
            Step::NotDeliverable => "not-deliverable",
            Step::Delivered => "delivered",
            Step::RefusedByServer => "refused-by-server",
            Step::Deleted => "deleted",
        }
    }
}

/// One line of the trail: a step and its fields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    step: Step,
    fields: Vec<(&'static str, String)>,
}

impl Line {
    pub fn new(step: Step) -> Line {
        Line {
            step,
            fields: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: impl ToString) -> Line {
        self.fields.push((key, value.to_string()));
        self
    }

    /// The instance, by its keyed digest (known once its data set was read).
    pub fn instance(self, key: Option<&LedgerKey>) -> Line {
        match key {
            Some(key) => self.with("instance", to_hex(key)),
            None => self,
        }
    }

    /// A step of a queued copy: its instance (where its record has the digest)
    /// and queue id.
    pub fn of_copy(step: Step, entry: &Entry) -> Line {
        Line::new(step).instance_of(entry).with("queue", entry.id)
    }

    /// The instance a queued copy is of, where its record has the digest.
    pub fn instance_of(self, entry: &Entry) -> Line {
        match entry.record.origin.as_deref() {
            Some(hex) => self.with("instance", hex),
            None => self,
        }
    }

    /// A copy's spool file is gone.
    pub fn deleted(entry: &Entry) -> Line {
        Line::of_copy(Step::Deleted, entry).with("profile", entry.record.profile)
    }

    /// The line as written, after its time stamp.
    fn render(&self, at: SystemTime) -> String {
        let mut out = format!(
            "{} {}",
            humantime::format_rfc3339_seconds(at),
            self.step.as_str()
        );
        for (key, value) in &self.fields {
            let _ = write!(out, " {key}={}", quoted(value));
        }
        out.push('\n');
        out
    }
}

/// A value as a line carries it: bare when it is one plain word, else quoted, with
/// control characters and quotes escaped (one event is always one line) and cut
/// to `MAX_VALUE_CHARS`.
fn quoted(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-:@/,".contains(c);
    if !value.is_empty() && value.len() <= MAX_VALUE_CHARS && value.chars().all(plain) {
        return value.to_owned();
    }
    let mut out = String::from("\"");
    for c in value.chars().take(MAX_VALUE_CHARS) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The trail being written.
pub struct Trail {
    dir: PathBuf,
    max_bytes: u64,
    file: Mutex<Current>,
}

struct Current {
    file: File,
    bytes: u64,
    unsynced: bool,
}

impl Trail {
    /// Opens (or starts) the trail in `dir`.
    pub fn open(dir: &Path) -> io::Result<Trail> {
        Trail::with_limit(dir, MAX_FILE_BYTES)
    }

    fn with_limit(dir: &Path, max_bytes: u64) -> io::Result<Trail> {
        let file = append(&dir.join(AUDIT_FILE))?;
        let bytes = file.metadata()?.len();
        Ok(Trail {
            dir: dir.to_owned(),
            max_bytes,
            file: Mutex::new(Current {
                file,
                bytes,
                unsynced: false,
            }),
        })
    }

    /// Writes a line; a failure is logged, never passed on (the trail must not
    /// stop an instance).
    pub fn record(&self, line: Line) {
        let text = line.render(SystemTime::now());
        let mut current = self.file.lock().expect("audit lock");
        if let Err(e) = self.write(&mut current, text.as_bytes()) {
            log::warn!(
                "cannot write the audit trail in {}: {e}",
                self.dir.display()
            );
        }
    }

    fn write(&self, current: &mut Current, bytes: &[u8]) -> io::Result<()> {
        if current.bytes > 0 && current.bytes + bytes.len() as u64 > self.max_bytes {
            current.file.sync_data()?;
            fs::rename(self.dir.join(AUDIT_FILE), self.dir.join(ROTATED_FILE))?;
            current.file = append(&self.dir.join(AUDIT_FILE))?;
            current.bytes = 0;
        }
        current.file.write_all(bytes)?;
        current.bytes += bytes.len() as u64;
        current.unsynced = true;
        Ok(())
    }

    /// Makes what was written durable (called once a second).
    pub fn sync(&self) {
        let mut current = self.file.lock().expect("audit lock");
        if current.unsynced {
            match current.file.sync_data() {
                Ok(()) => current.unsynced = false,
                Err(e) => log::warn!("cannot flush the audit trail: {e}"),
            }
        }
    }
}

fn append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The trail's files in `dir`, oldest first, with their sizes now (a reader stops
/// there, so a line written meanwhile is never cut in half).
pub fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    [ROTATED_FILE, AUDIT_FILE]
        .iter()
        .map(|name| dir.join(name))
        .filter_map(|path| {
            let len = fs::metadata(&path).ok()?.len();
            Some((path, len))
        })
        .collect()
}

/// Copies the trail's lines from `since` on (all without it) to `out`; returns how
/// many.
pub fn copy_since(dir: &Path, since: Option<SystemTime>, out: &mut dyn Write) -> io::Result<u64> {
    let since = since.map(|t| humantime::format_rfc3339_seconds(t).to_string());
    let mut lines = 0;
    for (path, len) in files(dir) {
        let reader = BufReader::new(File::open(&path)?.take(len));
        for line in reader.lines() {
            let line = line?;
            // Time stamps are RFC 3339 in UTC, of one width: they sort as text.
            if since.as_deref().is_some_and(|s| line.as_str() < s) {
                continue;
            }
            writeln!(out, "{line}")?;
            lines += 1;
        }
    }
    Ok(lines)
}

/// `--since`: a time (`2026-12-01`, `2026-12-01 14:00`, RFC 3339) or how long ago
/// (`2h`, `3days`).
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH));
    }
    let full = match text.len() {
        10 => format!("{text} 00:00:00"),
        16 => format!("{text}:00"),
        _ => text.to_owned(),
    };
    humantime::parse_rfc3339_weak(&full)
        .or_else(|_| humantime::parse_rfc3339(text))
        .map_err(|_| {
            format!(
                "--since {text:?} is neither a time (2026-12-01, \"2026-12-01 14:00\", UTC) nor an age (2h, 3days)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_event_each_with_quoted_values() {
        let line = Line::new(Step::RefusedByServer)
            .with("queue", 17)
            .with("destination", "cloud")
            .with("reason", "HTTP 409: \"bad\"\nnext line");
        let text = line.render(humantime::parse_rfc3339("2026-12-01T10:00:00Z").unwrap());
        assert_eq!(
            text,
            "2026-12-01T10:00:00Z refused-by-server queue=17 destination=cloud reason=\"HTTP 409: \\\"bad\\\"\\u{a}next line\"\n"
        );
        assert_eq!(quoted(&"x".repeat(500)).len(), MAX_VALUE_CHARS + 2);
        assert_eq!(quoted(""), "\"\"");
    }

    #[test]
    fn the_trail_rotates_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let trail = Trail::with_limit(dir.path(), 1000).unwrap();
        for n in 0..100 {
            trail.record(Line::new(Step::Stored).with("queue", n));
        }
        trail.sync();
        let sizes: Vec<u64> = files(dir.path()).iter().map(|(_, len)| *len).collect();
        assert_eq!(sizes.len(), 2, "{sizes:?}");
        assert!(sizes.iter().all(|len| *len <= 1000), "{sizes:?}");
        let mut out = Vec::new();
        let lines = copy_since(dir.path(), None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        // The newest lines are there, in order, the oldest rotated away.
        assert!(text.ends_with("stored queue=99\n"), "{text}");
        assert!(!text.contains("queue=0\n"));
        assert_eq!(lines as usize, text.lines().count());
        // Reopening goes on with the same file.
        drop(trail);
        let trail = Trail::with_limit(dir.path(), 1000).unwrap();
        trail.record(Line::new(Step::Deleted).with("queue", 100));
        let mut out = Vec::new();
        copy_since(dir.path(), None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("stored queue=99\n"), "{text}");
        assert!(text.ends_with("deleted queue=100\n"), "{text}");
    }

    #[test]
    fn since_takes_times_and_ages() {
        let now = humantime::parse_rfc3339("2026-12-02T12:00:00Z").unwrap();
        let at = |s| humantime::parse_rfc3339(s).unwrap();
        assert_eq!(parse_since("2h", now).unwrap(), at("2026-12-02T10:00:00Z"));
        assert_eq!(
            parse_since("2026-12-01", now).unwrap(),
            at("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            parse_since("2026-12-01 14:30", now).unwrap(),
            at("2026-12-01T14:30:00Z")
        );
        assert_eq!(
            parse_since("2026-12-01T14:30:05Z", now).unwrap(),
            at("2026-12-01T14:30:05Z")
        );
        assert!(parse_since("yesterday", now).unwrap_err().contains("2h"));
    }
}
