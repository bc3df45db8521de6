//! What happens in the agent, as events: the one feed that `status` (and the LED
//! panel) are built from, so what the box shows and what it reports never disagree.
//!
//! Events carry counts, sizes, statuses and destination names — never patient data.

use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Something worth reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    },
    /// A C-STORE was answered with a failure status.
    InstanceRefused {
        status: u16,
        reason: String,
    },
    /// A destination confirmed an instance.
    Delivered {
        destination: String,
    },
    /// A destination failed to take an instance; it stays queued.
    DeliveryFailed {
        destination: String,
        error: String,
    },
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
    pub last_success: Option<String>,
    pub last_error: Option<Stamped>,
}

/// Everything the events have told so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub associations_active: u64,
    pub associations_refused: u64,
    pub instances_received: u64,
    pub bytes_received: u64,
    pub instances_refused: u64,
    pub last_received: Option<String>,
    pub last_error: Option<Stamped>,
    pub destinations: std::collections::BTreeMap<String, DestinationCounters>,
}

/// Folds events into counters. Shared by every thread that reports.
#[derive(Default)]
pub struct Board {
    counters: Mutex<Counters>,
}

impl Board {
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
            Event::InstanceStored { bytes } => {
                c.instances_received += 1;
                c.bytes_received += bytes;
                c.last_received = Some(now_rfc3339());
            }
            Event::InstanceRefused { status, reason } => {
                c.instances_refused += 1;
                c.last_error = Some(Stamped::now(format!(
                    "C-STORE refused ({status:04X}H): {reason}"
                )));
            }
            Event::Delivered { destination } => {
                let d = c.destinations.entry(destination).or_default();
                d.delivered += 1;
                d.last_success = Some(now_rfc3339());
            }
            Event::DeliveryFailed { destination, error } => {
                let stamped = Stamped::now(format!("{destination}: {error}"));
                c.destinations.entry(destination).or_default().last_error =
                    Some(Stamped::now(error));
                c.last_error = Some(stamped);
            }
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters.lock().expect("board lock").clone()
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fold_into_counters() {
        let board = Board::default();
        board.record(Event::AssociationOpened);
        board.record(Event::InstanceStored { bytes: 100 });
        board.record(Event::InstanceStored { bytes: 50 });
        board.record(Event::InstanceRefused {
            status: 0xA700,
            reason: "disk full".into(),
        });
        board.record(Event::AssociationClosed);
        board.record(Event::Delivered {
            destination: "outbox".into(),
        });
        board.record(Event::DeliveryFailed {
            destination: "outbox".into(),
            error: "read-only".into(),
        });
        let c = board.counters();
        assert_eq!(c.associations_active, 0);
        assert_eq!(
            (c.instances_received, c.bytes_received, c.instances_refused),
            (2, 150, 1)
        );
        assert!(c.last_error.unwrap().message.contains("outbox: read-only"));
        let d = &c.destinations["outbox"];
        assert_eq!(d.delivered, 1);
        assert!(d.last_success.is_some());
        assert_eq!(d.last_error.as_ref().unwrap().message, "read-only");
    }
}
