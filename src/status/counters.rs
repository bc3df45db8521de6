//! The counters: what happens in the agent arrives as events, and the board folds
//! them into counters, the one feed that `status` (and the LED panel) are built
//! from, so what the box shows and what it reports never disagree.
//!
//! Events carry counts, sizes, statuses and destination names — never patient data.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::anonymize::Discard;
use crate::audit::{Line, Step, Trail};
use crate::config::Profile;
use crate::device::clock::Clock;

/// Something worth reporting.
#[derive(Debug, Clone)]
pub enum Event {
    AssociationOpened,
    AssociationClosed,
    /// An association was refused (wrong AE title, over the cap, address not allowed).
    AssociationRefused {
        reason: String,
    },
    /// An instance was stored durably and acknowledged.
    InstanceStored {
        bytes: u64,
        /// Its burned-in text was blanked around an image area found in its pixels.
        area_inferred: bool,
    },
    /// A C-STORE was answered with a failure status.
    InstanceRefused {
        status: u16,
        reason: String,
    },
    /// A request to a destination began; `sent` counts its bytes as they go.
    UploadStarted {
        destination: String,
        lane: &'static str,
        instances: u64,
        bytes: u64,
        sent: Arc<AtomicU64>,
    },
    /// That request ended, whatever its outcome.
    UploadFinished {
        destination: String,
        lane: &'static str,
    },
    /// A destination gets no copy of a stored instance: its profile discards such
    /// content, or could not clean this one.
    Withheld {
        destination: String,
        withheld: Withheld,
    },
    /// A destination confirmed an instance (with a warning of its, if any).
    Delivered {
        destination: String,
        warning: Option<String>,
    },
    /// A destination refused an instance for good: it went to quarantine.
    Quarantined {
        destination: String,
        reason: String,
    },
    /// A destination could not be reached or failed; it is retried after `retry_in`.
    Unavailable {
        destination: String,
        error: String,
        retry_in: Duration,
    },
    /// HTTPS to a destination waits for the clock to be set (TLS cannot check
    /// certificates against 1970).
    WaitingForClock {
        destination: String,
        retry_in: Duration,
    },
    /// A destination cannot work as configured (unreadable CA file, ...).
    Misconfigured {
        destination: String,
        error: String,
    },
    /// A destination refused our credentials; retried rarely until fixed.
    AuthRefused {
        destination: String,
        error: String,
        retry_in: Duration,
    },
}

/// Why a profile's destinations get no copy of an instance that was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// The profile drops such content by design (strict and PDFs, say).
    Discarded(Discard),
    /// The profile could not clean this copy, so it was not kept.
    NotDeliverable(String),
}

impl Withheld {
    /// The audit trail's line for it: `start` begins a line of a step with what
    /// names the instance; then the profile, the destination and why.
    pub fn audit(
        &self,
        start: impl FnOnce(Step) -> Line,
        profile: Profile,
        destination: &str,
    ) -> Line {
        let (step, reason) = match self {
            Withheld::Discarded(discard) => (Step::Discarded, discard.as_str()),
            Withheld::NotDeliverable(reason) => (Step::NotDeliverable, reason.as_str()),
        };
        start(step)
            .with("profile", profile)
            .with("destination", destination)
            .with("reason", reason)
    }
}

/// A timestamped message, for "last error" lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    pub at: String,
    pub message: String,
}

impl Stamped {
    fn now(message: String) -> Stamped {
        Stamped {
            at: now_rfc3339(),
            message,
        }
    }
}

/// Per-destination counters fed by events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationCounters {
    pub delivered: u64,
    /// Instances its profile discarded by design, by reason.
    #[serde(default)]
    pub discarded: BTreeMap<String, u64>,
    /// Instances its profile could not clean, so it never gets them, by reason.
    #[serde(default)]
    pub not_deliverable: BTreeMap<String, u64>,
    /// Instances it stored with a warning (coercion, elements discarded), by
    /// warning.
    #[serde(default)]
    pub warnings: BTreeMap<String, u64>,
    pub last_success: Option<String>,
    pub last_error: Option<Stamped>,
    /// `ready`, `offline`, `authentication refused` or `misconfigured`.
    pub state: String,
    /// When the next attempt is due, while not ready.
    pub next_attempt: Option<String>,
    /// Requests under way, one per lane at most.
    pub uploading: Vec<Uploading>,
}

/// A request under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploading {
    pub lane: String,
    pub instances: u64,
    pub bytes: u64,
    pub sent_bytes: u64,
    pub since: String,
}
/// Everything the events have told so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub associations_active: u64,
    pub associations_refused: u64,
    pub instances_received: u64,
    pub bytes_received: u64,
    pub instances_refused: u64,
    /// Instances cleaned around an image area inferred from their pixels.
    #[serde(default)]
    pub image_areas_inferred: u64,
    pub last_received: Option<String>,
    pub last_error: Option<Stamped>,
    pub destinations: std::collections::BTreeMap<String, DestinationCounters>,
}

/// Folds events into counters, and writes the audit trail. Shared by every thread
/// that reports.
#[derive(Default)]
pub struct Board {
    counters: Mutex<Counters>,
    /// Byte counters of the requests under way, by destination and lane.
    sent: Mutex<HashMap<(String, &'static str), Arc<AtomicU64>>>,
    trail: Option<Trail>,
}
impl Board {
    /// A board that also keeps the audit trail.
    pub fn with_trail(trail: Trail) -> Board {
        Board {
            trail: Some(trail),
            ..Board::default()
        }
    }

    /// A step of one instance's life, for the audit trail.
    pub fn audit(&self, line: Line) {
        if let Some(trail) = &self.trail {
            trail.record(line);
        }
    }

    /// Makes the audit trail written so far durable.
    pub fn sync_trail(&self) {
        if let Some(trail) = &self.trail {
            trail.sync();
        }
    }

    pub fn record(&self, event: Event) {
        let mut c = self.counters.lock().expect("board lock");
        match event {
            Event::AssociationOpened => c.associations_active += 1,
            Event::AssociationClosed => {
                c.associations_active = c.associations_active.saturating_sub(1)
            }
            Event::AssociationRefused { reason } => {
                c.associations_refused += 1;
                c.last_error = Some(Stamped::now(format!("association refused: {reason}")));
            }
            Event::InstanceStored {
                bytes,
                area_inferred,
            } => {
                c.instances_received += 1;
                c.image_areas_inferred += u64::from(area_inferred);
                c.bytes_received += bytes;
                c.last_received = Some(now_rfc3339());
            }
            Event::InstanceRefused { status, reason } => {
                c.instances_refused += 1;
                c.last_error = Some(Stamped::now(format!(
                    "C-STORE refused ({status:04X}H): {reason}"
                )));
            }
            Event::UploadStarted { .. } | Event::UploadFinished { .. } => {
                self.upload(&mut c, event)
            }
            other => destination_outcome(&mut c, other),
        }
    }

    /// A request to a destination starts or ends: what is under way, with its bytes.
    fn upload(&self, c: &mut Counters, event: Event) {
        match event {
            Event::UploadStarted {
                destination,
                lane,
                instances,
                bytes,
                sent,
            } => {
                self.sent
                    .lock()
                    .expect("board lock")
                    .insert((destination.clone(), lane), sent);
                let d = c.destinations.entry(destination).or_default();
                d.uploading.retain(|u| u.lane != lane);
                d.uploading.push(Uploading {
                    lane: lane.to_owned(),
                    instances,
                    bytes,
                    sent_bytes: 0,
                    since: now_rfc3339(),
                });
            }
            Event::UploadFinished { destination, lane } => {
                self.sent
                    .lock()
                    .expect("board lock")
                    .remove(&(destination.clone(), lane));
                c.destinations
                    .entry(destination)
                    .or_default()
                    .uploading
                    .retain(|u| u.lane != lane);
            }
            _ => {}
        }
    }

    pub fn counters(&self) -> Counters {
        let mut c = self.counters.lock().expect("board lock").clone();
        let sent = self.sent.lock().expect("board lock");
        for (name, d) in c.destinations.iter_mut() {
            for u in d.uploading.iter_mut() {
                if let Some(n) = sent
                    .iter()
                    .find(|((dest, lane), _)| dest == name && *lane == u.lane)
                    .map(|(_, n)| n)
                {
                    u.sent_bytes = n.load(Ordering::Relaxed);
                }
            }
        }
        c
    }
}

/// What a destination did or could not do.
fn destination_outcome(c: &mut Counters, event: Event) {
    match event {
        Event::Withheld {
            destination,
            withheld,
        } => {
            let d = c.destinations.entry(destination.clone()).or_default();
            match withheld {
                Withheld::Discarded(discard) => {
                    *d.discarded.entry(discard.as_str().to_owned()).or_default() += 1;
                }
                Withheld::NotDeliverable(reason) => {
                    let message = format!("not deliverable: {reason}");
                    d.last_error = Some(Stamped::now(message.clone()));
                    *d.not_deliverable.entry(reason).or_default() += 1;
                    c.last_error = Some(Stamped::now(format!("{destination}: {message}")));
                }
            }
        }
        Event::Delivered {
            destination,
            warning,
        } => {
            let d = c.destinations.entry(destination).or_default();
            d.delivered += 1;
            if let Some(warning) = warning {
                *d.warnings.entry(warning).or_insert(0) += 1;
            }
            d.last_success = Some(now_rfc3339());
            d.state = "ready".into();
            d.next_attempt = None;
        }
        Event::Quarantined {
            destination,
            reason,
        } => {
            let message = format!("instance quarantined: {reason}");
            c.last_error = Some(Stamped::now(format!("{destination}: {message}")));
            c.destinations.entry(destination).or_default().last_error = Some(Stamped::now(message));
        }
        Event::Unavailable {
            destination,
            error,
            retry_in,
        } => {
            setback(c, destination, error, "offline", Some(retry_in));
        }
        Event::WaitingForClock {
            destination,
            retry_in,
        } => {
            let error = format!("clock {}", Clock::Wrong.describe());
            setback(
                c,
                destination,
                error,
                "waiting for the clock",
                Some(retry_in),
            );
        }
        Event::Misconfigured { destination, error } => {
            setback(c, destination, error, "misconfigured", None)
        }
        Event::AuthRefused {
            destination,
            error,
            retry_in,
        } => {
            setback(
                c,
                destination,
                error,
                "authentication refused",
                Some(retry_in),
            );
        }
        _ => {}
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A destination cannot take instances now: its state, error and next attempt.
fn setback(
    c: &mut Counters,
    destination: String,
    error: String,
    state: &str,
    retry_in: Option<Duration>,
) {
    c.last_error = Some(Stamped::now(format!("{destination}: {error}")));
    let d = c.destinations.entry(destination).or_default();
    d.last_error = Some(Stamped::now(error));
    d.state = state.into();
    d.next_attempt = retry_in.map(rfc3339_in);
}

fn rfc3339_in(delay: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + delay).to_string()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fold_into_counters() {
        let board = Board::default();
        board.record(Event::AssociationOpened);
        board.record(Event::InstanceStored {
            bytes: 100,
            area_inferred: true,
        });
        board.record(Event::InstanceStored {
            bytes: 50,
            area_inferred: false,
        });
        board.record(Event::InstanceRefused {
            status: 0xA700,
            reason: "disk full".into(),
        });
        board.record(Event::AssociationClosed);
        let sent = Arc::new(AtomicU64::new(0));
        board.record(Event::UploadStarted {
            destination: "outbox".into(),
            lane: "small",
            instances: 2,
            bytes: 100,
            sent: sent.clone(),
        });
        sent.store(60, Ordering::Relaxed);
        let uploading = &board.counters().destinations["outbox"].uploading;
        assert_eq!((uploading[0].instances, uploading[0].sent_bytes), (2, 60));
        board.record(Event::UploadFinished {
            destination: "outbox".into(),
            lane: "small",
        });
        board.record(Event::Delivered {
            destination: "outbox".into(),
            warning: None,
        });
        board.record(Event::Unavailable {
            destination: "outbox".into(),
            error: "read-only".into(),
            retry_in: Duration::from_secs(5),
        });
        let c = board.counters();
        assert_eq!(c.associations_active, 0);
        assert_eq!(
            (c.instances_received, c.bytes_received, c.instances_refused),
            (2, 150, 1)
        );
        assert_eq!(c.image_areas_inferred, 1);
        assert!(c.last_error.unwrap().message.contains("outbox: read-only"));
        let d = &c.destinations["outbox"];
        assert_eq!(d.delivered, 1);
        assert!(d.last_success.is_some());
        assert_eq!(d.last_error.as_ref().unwrap().message, "read-only");
        assert_eq!(d.state, "offline");
        assert!(d.next_attempt.is_some() && d.uploading.is_empty());
    }
}
