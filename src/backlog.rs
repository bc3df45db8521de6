//! The backlog after the card's configuration changed.
//!
//! Records name their destinations, and each spool file was written for one
//! profile. When a clinic switches destination "cloud" from `identified` to
//! `strict`, its backlog holds identified copies that must never reach it: each is
//! re-derived through the new profile from the spooled original, and where that is
//! impossible (a `typical` copy cannot become `strict`, nothing can become
//! `identified` again) it is not sent and is reported. A backlog for a destination
//! no longer configured is kept and reported, and `uplink backlog` lets a
//! technician drop it or give it to another destination.

use crate::anonymize::{Anonymizer, Discard};
use crate::audit::{Line, Step};
use crate::config::{Config, Profile};
use crate::pipeline::{Failure, Part10, ProfileCopy};
use crate::queue::{Completed, Misrouted, Queue, QueueError};
use crate::status::counters::{Board, Event, Withheld};

/// `uplink backlog`: lists the backlog of destinations no longer configured, drops
/// one (`drop`) or gives it to a configured destination (`reassign`, "OLD=NEW").
/// Works with the agent stopped, which holds the queue while it runs.
pub fn command(
    config: &Config,
    drop: Option<&str>,
    reassign: Option<&str>,
) -> Result<String, String> {
    let destinations: Vec<(String, Profile)> = config
        .destinations
        .iter()
        .map(|d| (d.name.to_string(), d.profile))
        .collect();
    let configured = |name: &str| destinations.iter().any(|(n, _)| n == name);
    let data_dir = &config.storage.data_dir;
    let (queue, _) = Queue::open(data_dir, &destinations, 0).map_err(|e| match e {
        QueueError::Locked(_) => format!(
            "the agent is running with {}: stop it first (systemctl stop uplink), then run this again",
            data_dir.display()
        ),
        e => format!("cannot open the queue in {}: {e}", data_dir.display()),
    })?;
    let failed = |e: QueueError| format!("cannot change the queue: {e}");
    if let Some(name) = drop {
        if configured(name) {
            return Err(format!(
                "destination \"{name}\" is configured: only the backlog of a destination no longer in uplink.toml can be dropped"
            ));
        }
        let ids = queue.waiting_for(name).map_err(failed)?;
        for id in &ids {
            queue.release(*id, name).map_err(failed)?;
        }
        return Ok(format!(
            "dropped {} instance(s) that waited for \"{name}\"",
            ids.len()
        ));
    }
    if let Some(pair) = reassign {
        let Some((from, to)) = pair.split_once('=') else {
            return Err(format!("--reassign takes OLD=NEW, not {pair:?}"));
        };
        if configured(from) {
            return Err(format!(
                "destination \"{from}\" is still configured: rename or remove it in uplink.toml first"
            ));
        }
        if !configured(to) {
            return Err(format!(
                "destination \"{to}\" is not configured: name one of uplink.toml's destinations"
            ));
        }
        let moved = queue.reassign(from, to).map_err(failed)?;
        return Ok(format!(
            "{moved} instance(s) now wait for \"{to}\"; at the next start each is re-derived if \"{to}\" takes another profile"
        ));
    }
    if queue.orphaned().is_empty() {
        return Ok("no backlog waits for a destination that is not configured".into());
    }
    Ok(queue
        .orphaned()
        .iter()
        .map(|(name, count)| {
            format!(
                "{count} instance(s) wait for \"{name}\" (not configured): --drop {name}, or --reassign {name}=NEW\n"
            )
        })
        .collect())
}

/// What became of one misrouted instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rederived {
    /// Queued again, as the destination's profile makes it, with this queue id.
    Queued(u64),
    /// The new profile discards such instances.
    Discarded(Discard),
    /// No copy the destination may have can be made: it is not sent.
    NotDeliverable(String),
}

/// Deals with every misrouted instance found at start-up, in the background: each
/// is logged, and what cannot reach its destination is counted in `status`.
pub fn rederive_all(queue: &Queue, anonymizer: &Anonymizer, board: &Board, items: Vec<Misrouted>) {
    if items.is_empty() {
        return;
    }
    log::warn!(
        "{} queued instance(s) were written for another profile than their destination takes now; re-deriving them",
        items.len()
    );
    for item in &items {
        match rederive(queue, anonymizer, item) {
            Ok((outcome, completed)) => report(board, item, outcome, completed),
            Err(e) => log::error!(
                "queue entry {}: cannot re-derive it for {}: {e}; it stays unsent until the next start",
                item.entry.id,
                item.destination
            ),
        }
    }
}

/// What became of one misrouted instance, in the log, the audit trail and the
/// counters.
fn report(board: &Board, item: &Misrouted, outcome: Rederived, completed: Completed) {
    let withheld = match outcome {
        Rederived::Queued(id) => {
            log::info!(
                "queue entry {}: re-derived as {} for {}",
                item.entry.id,
                item.now,
                item.destination
            );
            board.audit(
                Line::new(Step::Stored)
                    .instance_of(&item.entry)
                    .with("queue", id)
                    .with("profile", item.now)
                    .with("destination", &item.destination)
                    .with("rederived_from", item.entry.id),
            );
            None
        }
        Rederived::Discarded(discard) => Some(Withheld::Discarded(discard)),
        Rederived::NotDeliverable(reason) => {
            log::warn!(
                "queue entry {}: not sent to {}: {reason}",
                item.entry.id,
                item.destination
            );
            Some(Withheld::NotDeliverable(reason))
        }
    };
    if let Some(withheld) = withheld {
        board.audit(withheld.audit(
            |step| Line::of_copy(step, &item.entry),
            item.now,
            &item.destination,
        ));
        board.record(Event::Withheld {
            destination: item.destination.clone(),
            withheld,
        });
    }
    if completed == Completed::Deleted {
        board.audit(Line::deleted(&item.entry));
    }
}

/// Deals with one misrouted instance: re-derives it for its destination or takes
/// the destination off it, and says which (and whether the old copy went).
pub fn rederive(
    queue: &Queue,
    anonymizer: &Anonymizer,
    item: &Misrouted,
) -> Result<(Rederived, Completed), QueueError> {
    let outcome = if item.queued_as == Profile::Identified {
        match requeue(queue, anonymizer, item) {
            Ok(outcome) => outcome,
            Err(reason) => Rederived::NotDeliverable(reason),
        }
    } else {
        Rederived::NotDeliverable(format!(
            "queued as {} before the configuration changed, and a {} copy cannot be made from that",
            item.queued_as, item.now
        ))
    };
    let completed = queue.release(item.entry.id, &item.destination)?;
    Ok((outcome, completed))
}

/// Streams the spooled original through the destination's profile into a new
/// spool file for that destination alone.
fn requeue(queue: &Queue, anonymizer: &Anonymizer, item: &Misrouted) -> Result<Rederived, String> {
    let original = Part10::open(&item.entry.path)
        .map_err(|reason| format!("the spooled copy is unreadable: {reason}"))?;
    let sop_class_uid = original.sop_class_uid.clone();
    let (_, mut copies) = original
        .run(anonymizer, &[item.now], |profile, meta| {
            queue.start(profile, meta)
        })
        .map_err(|failure| match failure {
            Failure::Storage(e) => format!("cannot write the spool: {e}"),
            Failure::DataSet(reason) => reason,
        })?;
    let origin = item
        .entry
        .record
        .origin
        .as_deref()
        .and_then(crate::queue::ledger::from_hex);
    match copies.pop().map(|(_, copy)| copy) {
        Some(ProfileCopy::Made(part)) => {
            let id = part.id;
            queue
                .commit_for(vec![part], &sop_class_uid, Some(&item.destination), origin)
                .map_err(|e| format!("cannot queue: {e}"))?;
            Ok(Rederived::Queued(id))
        }
        Some(ProfileCopy::Discarded(discard)) => {
            // Its profile never sends this class: nothing left to confirm.
            if let Some(origin) = origin {
                queue
                    .confirmed(&origin, &item.destination)
                    .map_err(|e| format!("cannot queue: {e}"))?;
            }
            Ok(Rederived::Discarded(discard))
        }
        Some(ProfileCopy::Uncleaned(reason)) => Ok(Rederived::NotDeliverable(reason)),
        None => Err("no copy was made".into()),
    }
}
