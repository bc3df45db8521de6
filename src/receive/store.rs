//! One C-STORE: from the data set's first fragment to a durable queue entry and a
//! status for the response.
//!
//! Success is answered only after the queue has committed (spool file renamed into
//! place, its bytes and name flushed by the group commit, record written). Every
//! other outcome removes what was
//! written and maps to the precise status PS3.4 B.2.3 defines, with a reason for the
//! log and the Error Comment that names no patient data.

use std::io::{self, Read, Write};

use dicom_encoding::TransferSyntax;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::dimse::{Command, Status};
use super::negotiation::Context;
use super::pdu::{DataSetReader, Fault};
use crate::anonymize::{Anonymizer, DeviceKey};
use crate::config::Profile;
use crate::pipeline::stream::Summary;
use crate::pipeline::{self, Failure, Instance, ProfileCopy};
use crate::queue::Queue;
use crate::queue::ledger::LedgerKey;
use crate::status::counters::Withheld;

/// How a C-STORE ended, when the association itself survived.
#[derive(Debug)]
pub struct Outcome {
    pub status: Status,
    /// Why, for the log and the Error Comment; `None` on success.
    pub reason: Option<String>,
    pub bytes: u64,
    /// Profiles that keep no copy of a stored instance, and why.
    pub withheld: Vec<(Profile, Withheld)>,
    /// A copy was cleaned around an image area inferred from the pixels.
    pub area_inferred: bool,
    /// The instance's keyed digest, once its data set was read.
    pub origin: Option<LedgerKey>,
    /// The copies queued, for the audit trail.
    pub copies: Vec<Copy>,
}

/// A copy the queue holds: its profile and queue id, and its SOP Instance UID
/// where the profile replaced it (strict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub profile: Profile,
    pub id: u64,
    pub anonymized_uid: Option<String>,
}

impl Outcome {
    fn refuse(status: Status, reason: impl Into<String>) -> Outcome {
        Outcome {
            status,
            reason: Some(reason.into()),
            bytes: 0,
            withheld: Vec::new(),
            area_inferred: false,
            origin: None,
            copies: Vec::new(),
        }
    }
}

/// Receives the data set of `command` on `context` into the queue.
/// A `Fault` means the association broke and must end; nothing was queued then.
pub fn receive<S: Read + Write>(
    data: &mut DataSetReader<'_, S>,
    command: &Command,
    context: &Context,
    calling_ae_title: &str,
    queue: &Queue,
    anonymizer: &Anonymizer,
    key: &DeviceKey,
) -> Result<Outcome, Fault> {
    let (sop_class_uid, sop_instance_uid, ts) = match check_request(command, context)
        .and_then(|request| check_room(queue).map(|()| request))
    {
        Ok(request) => request,
        Err(refusal) => return refused(data, refusal),
    };
    let instance = Instance {
        sop_class_uid,
        sop_instance_uid,
        transfer_syntax: ts,
        source_ae_title: Some(calling_ae_title),
    };
    let streamed = pipeline::run(
        &mut *data,
        &instance,
        anonymizer,
        &queue.profiles(),
        |profile, meta| queue.start(profile, meta),
    );
    if let Some(fault) = data.take_fault() {
        return Err(fault);
    }
    let (summary, copies) = match streamed {
        Ok(streamed) => streamed,
        Err(Failure::Storage(e)) => {
            return refused(
                data,
                Outcome::refuse(Status::OUT_OF_RESOURCES, storage_reason(&e)),
            );
        }
        Err(Failure::DataSet(reason)) => {
            return refused(data, Outcome::refuse(Status::CANNOT_UNDERSTAND, reason));
        }
    };
    // The data set must end where the peer said it ends.
    data.drain()?;
    if let Err(mismatch) = check_identity(&summary, sop_class_uid, sop_instance_uid) {
        return Ok(mismatch);
    }
    let origin = key.ledger_key(sop_instance_uid);
    let mut outcome = commit(queue, copies, sop_class_uid, origin, data.payload_bytes());
    outcome.area_inferred = summary.area_inferred && outcome.reason.is_none();
    outcome.origin = Some(origin);
    Ok(outcome)
}

/// Drains what is left of the data set, so the association can go on, and refuses.
fn refused<S: Read + Write>(
    data: &mut DataSetReader<'_, S>,
    refusal: Outcome,
) -> Result<Outcome, Fault> {
    data.drain()?;
    Ok(refusal)
}

/// The request's SOP class and instance, checked against its presentation
/// context, and the transfer syntax the data set comes in.
fn check_request<'a>(
    command: &'a Command,
    context: &Context,
) -> Result<(&'a str, &'a str, &'static TransferSyntax), Outcome> {
    let (Some(sop_class_uid), Some(sop_instance_uid)) = (
        &command.affected_sop_class_uid,
        &command.affected_sop_instance_uid,
    ) else {
        return Err(Outcome::refuse(
            Status::CANNOT_UNDERSTAND,
            "C-STORE-RQ lacks the affected SOP class or instance UID",
        ));
    };
    if *sop_class_uid != context.abstract_syntax {
        return Err(Outcome::refuse(
            Status::SOP_CLASS_NOT_SUPPORTED,
            format!(
                "SOP class {sop_class_uid} sent on a presentation context for {}",
                context.abstract_syntax
            ),
        ));
    }
    let ts = TransferSyntaxRegistry
        .get(&context.transfer_syntax)
        .ok_or_else(|| {
            Outcome::refuse(
                Status::CANNOT_UNDERSTAND,
                format!("unknown transfer syntax {}", context.transfer_syntax),
            )
        })?;
    Ok((sop_class_uid, sop_instance_uid, ts))
}

/// Refuses before anything is written when the card is below its free-space floor.
fn check_room(queue: &Queue) -> Result<(), Outcome> {
    match queue.has_room() {
        Ok(true) => Ok(()),
        Ok(false) => Err(Outcome::refuse(
            Status::OUT_OF_RESOURCES,
            "storage is below its free-space floor",
        )),
        Err(e) => Err(Outcome::refuse(
            Status::OUT_OF_RESOURCES,
            format!("cannot check free space: {e}"),
        )),
    }
}

/// The data set must be the instance the request announced.
fn check_identity(
    summary: &Summary,
    sop_class_uid: &str,
    sop_instance_uid: &str,
) -> Result<(), Outcome> {
    let differs =
        |seen: &Option<String>, announced: &str| seen.as_deref().is_some_and(|s| s != announced);
    if differs(&summary.sop_instance_uid, sop_instance_uid) {
        return Err(Outcome::refuse(
            Status::DATA_SET_MISMATCH,
            "SOP Instance UID in the data set differs from the C-STORE-RQ's",
        ));
    }
    if differs(&summary.sop_class_uid, sop_class_uid) {
        return Err(Outcome::refuse(
            Status::DATA_SET_MISMATCH,
            "SOP Class UID in the data set differs from the C-STORE-RQ's",
        ));
    }
    Ok(())
}

/// Commits the clean copies and answers: Success once they are durable; a refusal
/// when no copy is left for anyone because none could be cleaned (the modality
/// keeps its own); what each profile's destinations do not get, in the outcome.
fn commit(
    queue: &Queue,
    copies: Vec<(Profile, ProfileCopy)>,
    sop_class_uid: &str,
    origin: LedgerKey,
    bytes: u64,
) -> Outcome {
    let mut kept = Vec::new();
    let mut withheld = Vec::new();
    let mut uncleaned = None;
    for (profile, copy) in copies {
        match copy {
            ProfileCopy::Made(part) => kept.push(part),
            ProfileCopy::Discarded(discard) => {
                log::info!(
                    "profile {profile} discards instances of SOP class {sop_class_uid}: {}",
                    discard.as_str()
                );
                withheld.push((profile, Withheld::Discarded(discard)));
            }
            ProfileCopy::Uncleaned(reason) => {
                log::warn!(
                    "profile {profile} cannot clean an instance, so keeps no copy: {reason}"
                );
                withheld.push((profile, Withheld::NotDeliverable(reason.clone())));
                uncleaned = Some(reason);
            }
        }
    }
    if let (true, Some(reason)) = (kept.is_empty(), uncleaned) {
        return Outcome::refuse(
            Status::CANNOT_ANONYMIZE,
            format!("not stored: it cannot be anonymized ({reason})"),
        );
    }
    let copies = kept
        .iter()
        .map(|part| Copy {
            profile: part.profile,
            id: part.id,
            anonymized_uid: (part.profile == Profile::Strict)
                .then(|| part.sop_instance_uid.clone()),
        })
        .collect();
    match queue.commit(kept, sop_class_uid, Some(origin)) {
        Ok(()) => Outcome {
            status: Status::SUCCESS,
            reason: None,
            bytes,
            withheld,
            area_inferred: false,
            origin: None,
            copies,
        },
        Err(crate::queue::QueueError::Io(e)) => {
            Outcome::refuse(Status::OUT_OF_RESOURCES, storage_reason(&e))
        }
        Err(e) => Outcome::refuse(Status::OUT_OF_RESOURCES, format!("cannot queue: {e}")),
    }
}

fn storage_reason(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        "storage full".into()
    } else {
        format!("storage error: {e}")
    }
}
