//! `[heartbeat]`: the box tells the fleet how it is, with outbound requests only.
//! Every `interval_secs`, and at once when its condition changes (a destination
//! goes offline or comes back, a person is needed, an update rolled back), it POSTs
//! its status snapshot as JSON with its box id and uptime, using a destination's
//! auth, TLS and proxy. The snapshot holds states, counts, times and error
//! sentences, never patient data. A heartbeat that fails is logged and the next
//! one tried; it never holds back receiving or uploads.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::HeartbeatTarget;
use crate::device::update::Verdict;
use crate::status::Snapshot;
use crate::status::counters::now_rfc3339;
use crate::upload::stow::Client;

/// What a heartbeat carries.
#[derive(Debug, Serialize)]
pub struct Beat<'a> {
    pub box_id: &'a str,
    pub sent: String,
    pub uptime_secs: u64,
    /// Why this one was sent: "interval", or the change that prompted it.
    pub reason: &'a str,
    pub offline: bool,
    pub attention: bool,
    pub status: &'a Snapshot,
}

/// What makes a heartbeat go out at once when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub offline: bool,
    pub attention: bool,
    pub rolled_back: bool,
}

impl Condition {
    pub fn of(snapshot: &Snapshot) -> Condition {
        Condition {
            offline: !snapshot.all_ready(),
            attention: snapshot.needs_a_person(),
            rolled_back: snapshot
                .update
                .last
                .as_ref()
                .is_some_and(|o| o.result == Verdict::RolledBack),
        }
    }

    /// The change from `before`, in words, if there is one.
    fn change_from(&self, before: &Condition) -> Option<&'static str> {
        if self.rolled_back && !before.rolled_back {
            Some("update rolled back")
        } else if self.offline != before.offline {
            Some(if self.offline { "offline" } else { "online" })
        } else if self.attention != before.attention {
            Some(if self.attention {
                "attention"
            } else {
                "all well"
            })
        } else {
            None
        }
    }
}

/// The sender: when the next heartbeat is due, and what the last one said.
pub struct Heartbeat {
    client: Client,
    interval: Duration,
    box_id: String,
    started: Instant,
    last: Option<(Instant, Condition)>,
}

impl Heartbeat {
    pub fn new(target: &HeartbeatTarget, box_id: String) -> Result<Heartbeat, String> {
        let client = Client::new(&target.server, &target.server.url.to_string())?;
        Ok(Heartbeat {
            client,
            interval: Duration::from_secs(target.interval_secs.0),
            box_id,
            started: Instant::now(),
            last: None,
        })
    }

    /// Why a heartbeat is due now for `snapshot`, if one is.
    pub fn due(&self, snapshot: &Snapshot) -> Option<&'static str> {
        let Some((sent, before)) = &self.last else {
            return Some("start");
        };
        Condition::of(snapshot)
            .change_from(before)
            .or_else(|| (sent.elapsed() >= self.interval).then_some("interval"))
    }

    /// Sends one; the next is due an interval later, or at the next change,
    /// whether this one arrived or not.
    pub fn send(&mut self, snapshot: &Snapshot, reason: &str) -> Result<(), String> {
        let condition = Condition::of(snapshot);
        let beat = Beat {
            box_id: &self.box_id,
            sent: now_rfc3339(),
            uptime_secs: self.started.elapsed().as_secs(),
            reason,
            offline: condition.offline,
            attention: condition.attention,
            status: snapshot,
        };
        let json = serde_json::to_vec(&beat).map_err(|e| e.to_string())?;
        self.last = Some((Instant::now(), condition));
        self.client.post_json(json)
    }
}
