//! `uplink status`: the agent's state as a technician reads it.
//!
//! The running agent writes `status.json` in its data dir (atomically, about once a
//! second when something changed); `uplink status` reads it, so it works without
//! touching the queue the agent holds, and still says something useful — with the
//! time it was last true — when the agent is not running. No patient data is in it.

pub mod counters;
pub mod page;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::device::clock::Clock;
use crate::device::update::Outcome;
use crate::queue::DestinationStats;
use crate::queue::damaged::Damaged;
use crate::status::counters::{Counters, DestinationCounters};

pub const STATUS_FILE: &str = "status.json";

/// The snapshot in `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    /// The name the box announces on the network (`uplink-<serial>.local`).
    #[serde(default)]
    pub name: String,
    pub pid: u32,
    pub started: String,
    pub updated: String,
    /// False once the agent has shut down cleanly.
    pub running: bool,
    pub listener: ListenerInfo,
    pub counters: Counters,
    pub destinations: Vec<DestinationInfo>,
    /// Whether the wall clock can be trusted (TLS needs it).
    #[serde(default)]
    pub clock: Clock,
    /// Why the configuration on the SD card was refused, if it was.
    #[serde(default)]
    pub provisioning: Option<String>,
    /// Spool files that could not be read back, set aside in `damaged/`.
    #[serde(default)]
    pub damaged: DamagedInfo,
    /// Instances waiting for destinations no longer configured, by name.
    #[serde(default)]
    pub orphaned: std::collections::BTreeMap<String, u64>,
    /// Storage commitment requests whose report is not yet answered.
    #[serde(default)]
    pub commitments: CommitmentInfo,
    /// The box's system and its last update.
    #[serde(default)]
    pub update: UpdateInfo,
    /// The card's room for exams.
    #[serde(default)]
    pub storage: StorageInfo,
}

/// The data dir's file system: what is free, of how much, and the floor below
/// which C-STOREs are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageInfo {
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub floor_bytes: u64,
}

impl StorageInfo {
    /// Below the floor: new exams are refused.
    pub fn is_full(&self) -> bool {
        self.free_bytes.is_some_and(|free| free < self.floor_bytes)
    }

    pub fn describe(&self) -> String {
        match (self.free_bytes, self.total_bytes) {
            (Some(free), Some(total)) => format!(
                "{} free of {}{}",
                human_bytes(free),
                human_bytes(total),
                if self.is_full() {
                    format!(
                        ", below its floor of {}: new exams are refused",
                        human_bytes(self.floor_bytes)
                    )
                } else {
                    String::new()
                }
            ),
            _ => "unknown".into(),
        }
    }
}

/// The image version and root slot the box runs, the update waiting for its first
/// boot, and how the last one went (`device::update`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateInfo {
    pub image: Option<String>,
    pub slot: Option<String>,
    pub pending: Option<String>,
    pub last: Option<Outcome>,
}

impl UpdateInfo {
    pub fn needs_a_person(&self) -> bool {
        self.last.as_ref().is_some_and(Outcome::needs_a_person)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentInfo {
    pub pending: u64,
    pub oldest_pending_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedInfo {
    pub files: u64,
    pub reason: Option<String>,
}

impl DamagedInfo {
    fn describe(&self) -> String {
        format!(
            "{} spool file(s) could not be read back and were set aside in damaged/ in the data dir ({}); the rest is served",
            self.files,
            self.reason.as_deref().unwrap_or("no reason recorded")
        )
    }
}

/// A backlog waiting for a destination no longer configured, and what to do.
fn orphaned(name: &str, count: u64) -> String {
    format!(
        "{count} instance(s) wait for destination \"{name}\", no longer configured: `uplink backlog --drop {name}` or `--reassign {name}=NEW` (agent stopped)"
    )
}

impl From<&Damaged> for DamagedInfo {
    fn from(d: &Damaged) -> DamagedInfo {
        DamagedInfo {
            files: d.files,
            reason: d.reason.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerInfo {
    pub port: u16,
    pub ae_title: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationInfo {
    pub name: String,
    pub url: String,
    pub profile: String,
    #[serde(flatten)]
    pub queue: DestinationStats,
    #[serde(flatten)]
    pub activity: DestinationCounters,
}

impl Snapshot {
    pub fn queue_depth(&self) -> u64 {
        self.destinations.iter().map(|d| d.queue.pending).sum()
    }

    /// Writes the snapshot atomically (temp file, rename), so a reader never sees half.
    pub fn write(&self, data_dir: &Path) -> io::Result<()> {
        let tmp = data_dir.join(format!(".{STATUS_FILE}.tmp"));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
        drop(file);
        fs::rename(tmp, data_dir.join(STATUS_FILE))
    }

    pub fn read(data_dir: &Path) -> Result<Snapshot, String> {
        let path: PathBuf = data_dir.join(STATUS_FILE);
        let text = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!(
                "no status in {}: the agent has not run with this data dir (start it with `uplink serve`)",
                data_dir.display()
            ),
            _ => format!("cannot read {}: {e}", path.display()),
        })?;
        serde_json::from_slice(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))
    }

    /// Whether a person must act (the attention LED).
    pub fn needs_a_person(&self) -> bool {
        !self.attention().is_empty()
    }

    /// What a person must act on, one sentence each: credentials refused, a
    /// destination misconfigured, instances quarantined or not deliverable, storage
    /// full, the clock wrong, the card's configuration refused, an update rolled
    /// back or refused, spool files set aside, a backlog without its destination.
    pub fn attention(&self) -> Vec<String> {
        let mut said = Vec::new();
        for d in &self.destinations {
            match d.activity.state.as_str() {
                "authentication refused" => said.push(format!(
                    "destination {} refuses the box's credentials: check them in uplink.toml",
                    d.name
                )),
                "misconfigured" => said.push(format!(
                    "destination {} cannot work as configured: {}",
                    d.name,
                    d.activity
                        .last_error
                        .as_ref()
                        .map_or("see the log", |e| e.message.as_str())
                )),
                _ => {}
            }
            if d.queue.quarantined > 0 {
                said.push(format!(
                    "{} instance(s) refused by destination {} are in quarantine: `uplink retry-quarantine` once it is fixed",
                    d.queue.quarantined, d.name
                ));
            }
            let not_deliverable: u64 = d.activity.not_deliverable.values().sum();
            if not_deliverable > 0 {
                said.push(format!(
                    "{not_deliverable} instance(s) cannot be delivered to {} (profile {})",
                    d.name, d.profile
                ));
            }
        }
        let full = self
            .counters
            .last_error
            .as_ref()
            .is_some_and(|e| e.message.contains("A700H"));
        if full || self.storage.is_full() {
            said.push(format!("storage: {}", self.storage.describe()));
        }
        if self.clock.is_wrong() {
            said.push(format!("clock {}", self.clock.describe()));
        }
        if let Some(reason) = &self.provisioning {
            said.push(reason.clone());
        }
        if let Some(last) = self.update.last.as_ref().filter(|l| l.needs_a_person()) {
            said.push(last.describe());
        }
        if self.damaged.files > 0 {
            said.push(self.damaged.describe());
        }
        for (name, count) in &self.orphaned {
            said.push(orphaned(name, *count));
        }
        said
    }

    /// Whether every destination is reachable (else the cloud LED is off).
    pub fn all_ready(&self) -> bool {
        self.destinations
            .iter()
            .all(|d| d.activity.state == "ready")
    }

    /// Whether the agent that wrote this snapshot is still alive.
    pub fn agent_alive(&self) -> bool {
        // SAFETY: kill with signal 0 only checks that the process exists.
        self.running && unsafe { libc::kill(self.pid as libc::pid_t, 0) } == 0
    }

    /// One line for `systemctl status`: received, pending, each destination's state.
    pub fn summary(&self) -> String {
        let destinations: Vec<String> = self
            .destinations
            .iter()
            .map(|d| format!("{} {}", d.name, d.activity.state))
            .collect();
        format!(
            "received {}, pending {}; {}",
            self.counters.instances_received,
            self.queue_depth(),
            destinations.join(", ")
        )
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.counters;
        if self.agent_alive() {
            out += &format!(
                "uplink {} on {}: running (pid {}, since {}), DICOM port {} as {}\n",
                self.version,
                self.name,
                self.pid,
                self.started,
                self.listener.port,
                self.listener.ae_title
            );
        } else {
            out += &format!("uplink: NOT RUNNING (last status from {})\n", self.updated);
        }
        out += &format!(
            "received:  {} instances ({}), last {}; refused {}; associations now {}, refused {}\n",
            c.instances_received,
            human_bytes(c.bytes_received),
            c.last_received.as_deref().unwrap_or("never"),
            c.instances_refused,
            c.associations_active,
            c.associations_refused,
        );
        if c.image_areas_inferred > 0 {
            out += &format!(
                "pixels:    {} instances without ultrasound regions cleaned around an image area found in their pixels\n",
                c.image_areas_inferred
            );
        }
        out += &format!("queue:     {} pending in all\n", self.queue_depth());
        if self.commitments.pending > 0 {
            out += &format!(
                "commit:    {} storage commitment report(s) pending, oldest {}\n",
                self.commitments.pending,
                age(self.commitments.oldest_pending_secs)
            );
        }
        out += &format!("clock:     {}\n", self.clock.describe());
        out += &format!("storage:   {}\n", self.storage.describe());
        if let Some(image) = &self.update.image {
            let slot = self.update.slot.as_deref().unwrap_or("?");
            out += &format!("system:    image {image}, root slot {slot}\n");
        }
        if let Some(pending) = &self.update.pending {
            out += &format!("update:    {pending} installed, waiting for its first boot\n");
        }
        match &self.update.last {
            Some(last) if last.needs_a_person() => {
                out += &format!("ATTENTION: {}\n", last.describe())
            }
            Some(last) => out += &format!("update:    {}\n", last.describe()),
            None => {}
        }
        if let Some(reason) = &self.provisioning {
            out += &format!("ATTENTION: {reason}\n");
        }
        for (name, count) in &self.orphaned {
            out += &format!("ATTENTION: {}\n", orphaned(name, *count));
        }
        if self.damaged.files > 0 {
            out += &format!("ATTENTION: {}\n", self.damaged.describe());
        }
        out += &format!(
            "last error: {}\n",
            c.last_error
                .as_ref()
                .map_or("none".into(), |e| format!("{} {}", e.at, e.message))
        );
        for d in &self.destinations {
            out += &format!(
                "destination {} ({}, profile {}): {}",
                d.name, d.url, d.profile, d.activity.state
            );
            if let Some(next) = &d.activity.next_attempt {
                out += &format!(", next attempt {next}");
            }
            out += "\n";
            out += &format!(
                "  pending {} ({}), oldest {}; delivered {}; quarantined {}\n",
                d.queue.pending,
                human_bytes(d.queue.pending_bytes),
                age(d.queue.oldest_pending_secs),
                d.activity.delivered,
                d.queue.quarantined,
            );
            for (reason, n) in &d.activity.not_deliverable {
                out += &format!(
                    "  NOT DELIVERABLE to {}: {n} instance(s): {reason}\n",
                    d.name
                );
            }
            for (warning, n) in &d.activity.warnings {
                out += &format!("  stored with warning {warning}: {n} instance(s)\n");
            }
            for (reason, n) in &d.activity.discarded {
                out += &format!("  discarded by profile {}: {n} {reason}\n", d.profile);
            }
            for u in &d.activity.uploading {
                out += &format!(
                    "  uploading ({} lane): {} instance(s), {} of {} since {}\n",
                    u.lane,
                    u.instances,
                    human_bytes(u.sent_bytes),
                    human_bytes(u.bytes),
                    u.since
                );
            }
            out += &format!(
                "  last success {}; last error {}\n",
                d.activity.last_success.as_deref().unwrap_or("never"),
                d.activity
                    .last_error
                    .as_ref()
                    .map_or("none".into(), |e| format!("{} {}", e.at, e.message))
            );
        }
        out
    }
}

/// An age in seconds as `uplink status` shows it ("1m 30s"), "-" for none.
pub(crate) fn age(secs: Option<u64>) -> String {
    secs.map_or("-".into(), |s| {
        humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
    })
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A snapshot with something of everything, most of it needing a person.
    pub(crate) fn snapshot() -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            name: "uplink-1234abcd.local".into(),
            pid: std::process::id(),
            started: "2026-11-25T00:00:00Z".into(),
            updated: "2026-11-25T00:01:00Z".into(),
            running: true,
            listener: ListenerInfo {
                port: 11112,
                ae_title: "UPLINK".into(),
            },
            counters: Counters::default(),
            destinations: vec![DestinationInfo {
                name: "outbox".into(),
                url: "dir:/tmp/outbox".into(),
                profile: "identified".into(),
                queue: DestinationStats {
                    pending: 3,
                    pending_bytes: 3 * 1024 * 1024,
                    oldest_pending_secs: Some(90),
                    quarantined: 1,
                },
                activity: DestinationCounters {
                    delivered: 5,
                    discarded: [("raw data".to_owned(), 2)].into(),
                    not_deliverable: [("burned-in text: no regions".to_owned(), 1)].into(),
                    warnings: [("B000H coercion of data elements".to_owned(), 2)].into(),
                    last_success: None,
                    last_error: None,
                    state: "offline".into(),
                    next_attempt: Some("2026-11-25T00:02:00Z".into()),
                    uploading: vec![crate::status::counters::Uploading {
                        lane: "large".into(),
                        instances: 1,
                        bytes: 1 << 30,
                        sent_bytes: 1 << 29,
                        since: "2026-11-25T00:01:00Z".into(),
                    }],
                },
            }],
            clock: Clock::Unsynchronized,
            provisioning: None,
            orphaned: [("old-cloud".to_owned(), 4)].into(),
            commitments: CommitmentInfo {
                pending: 2,
                oldest_pending_secs: Some(30),
            },
            damaged: DamagedInfo {
                files: 1,
                reason: Some("cannot be read back: truncated before its file meta".into()),
            },
            update: UpdateInfo {
                image: Some("0.1.0+202612010000".into()),
                slot: Some("A".into()),
                pending: None,
                last: Some(Outcome {
                    result: crate::device::update::Verdict::RolledBack,
                    version: Some("0.2.0+202612020000".into()),
                    at: "2026-11-25T00:00:30Z".into(),
                    reason: Some("the agent is not running (uplink.service is activating)".into()),
                }),
            },
            storage: StorageInfo {
                free_bytes: Some(50 << 20),
                total_bytes: Some(8 << 30),
                floor_bytes: 100 << 20,
            },
        }
    }

    /// Takes away from `s` everything that needs a person.
    pub(crate) fn make_well(s: &mut Snapshot) {
        s.destinations[0].queue.quarantined = 0;
        s.destinations[0].activity.not_deliverable.clear();
        s.clock = Clock::Synchronized;
        s.orphaned.clear();
        s.damaged = DamagedInfo::default();
        s.update.last = None;
        s.storage.free_bytes = Some(4 << 30);
    }

    #[test]
    fn attention_says_each_thing_a_person_must_do() {
        let mut s = snapshot();
        let said = s.attention().join("\n");
        for expected in [
            "1 instance(s) refused by destination outbox are in quarantine",
            "1 instance(s) cannot be delivered to outbox",
            "storage: 50.0 MiB free of 8.0 GiB, below its floor",
            "was rolled back",
            "1 spool file(s) could not be read back",
            "4 instance(s) wait for destination \"old-cloud\"",
        ] {
            assert!(said.contains(expected), "{expected}: {said}");
        }
        make_well(&mut s);
        assert_eq!(s.attention(), Vec::<String>::new());
        assert!(!s.needs_a_person());
        s.destinations[0].activity.state = "authentication refused".into();
        assert!(s.attention()[0].contains("refuses the box's credentials"));
    }

    #[test]
    fn snapshot_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        snapshot().write(dir.path()).unwrap();
        assert_eq!(Snapshot::read(dir.path()).unwrap(), snapshot());
    }

    #[test]
    fn render_tells_running_and_queue() {
        let text = snapshot().render();
        assert!(
            text.contains("uplink 0.1.0 on uplink-1234abcd.local: running"),
            "{text}"
        );
        assert!(
            text.contains("pending 3 (3.0 MiB), oldest 1m 30s"),
            "{text}"
        );
        assert!(text.contains("quarantined 1"), "{text}");
        assert!(
            text.contains("storage:   50.0 MiB free of 8.0 GiB, below its floor of 100.0 MiB"),
            "{text}"
        );
        assert!(
            text.contains("system:    image 0.1.0+202612010000, root slot A"),
            "{text}"
        );
        assert!(
            text.contains("ATTENTION: the update to 0.2.0+202612020000 was rolled back at"),
            "{text}"
        );
        assert!(
            text.contains("ATTENTION: 4 instance(s) wait for destination \"old-cloud\""),
            "{text}"
        );
        assert!(
            text.contains(
                "ATTENTION: 1 spool file(s) could not be read back and were set aside in damaged/"
            ),
            "{text}"
        );
        assert!(
            text.contains("NOT DELIVERABLE to outbox: 1 instance(s): burned-in text: no regions"),
            "{text}"
        );
        assert!(
            text.contains("discarded by profile identified: 2 raw data"),
            "{text}"
        );
        assert!(
            text.contains("stored with warning B000H coercion of data elements: 2 instance(s)"),
            "{text}"
        );
        assert!(
            text.contains("commit:    2 storage commitment report(s) pending, oldest 30s"),
            "{text}"
        );
        assert!(
            text.contains("offline, next attempt 2026-11-25T00:02:00Z"),
            "{text}"
        );
        assert!(
            text.contains("uploading (large lane): 1 instance(s), 512.0 MiB of 1.0 GiB"),
            "{text}"
        );
        assert_eq!(
            snapshot().summary(),
            "received 0, pending 3; outbox offline"
        );
        let mut stopped = snapshot();
        stopped.running = false;
        assert!(stopped.render().contains("NOT RUNNING"));
    }

    #[test]
    fn missing_status_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Snapshot::read(dir.path())
                .unwrap_err()
                .contains("uplink serve")
        );
    }
}
