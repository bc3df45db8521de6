//! One C-STORE: from the data set's first fragment to a durable queue entry and a
//! status for the response.
//!
//! Success is answered only after the queue has committed (spool file fsync'd and
//! renamed, folder fsync'd, record flushed). Every other outcome removes what was
//! written and maps to the precise status PS3.4 B.2.3 defines, with a reason for the
//! log and the Error Comment that names no patient data.

use std::io::{self, Read, Write};

use dicom_encoding::Codec;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use flate2::read::DeflateDecoder;

use super::dimse::{Command, Status};
use super::negotiation::Context;
use super::pdu::{DataSetReader, Fault};
use crate::anonymize::{Anonymizer, Discard};
use crate::config::Profile;
use crate::queue::Queue;
use crate::queue::spool::FileMeta;
use crate::stream::{self, Output, Transform};

/// How a C-STORE ended, when the association itself survived.
#[derive(Debug)]
pub struct Outcome {
    pub status: Status,
    /// Why, for the log and the Error Comment; `None` on success.
    pub reason: Option<String>,
    pub bytes: u64,
    /// Profiles that keep no copy of a stored instance, and why.
    pub withheld: Vec<(Profile, Withheld)>,
}

/// Why a profile's destinations get no copy of an instance that was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// The profile drops such content by design (strict and PDFs, say).
    Discarded(Discard),
    /// The profile could not clean this copy, so it was not kept.
    NotDeliverable(String),
}

impl Outcome {
    fn refuse(status: Status, reason: impl Into<String>) -> Outcome {
        Outcome {
            status,
            reason: Some(reason.into()),
            bytes: 0,
            withheld: Vec::new(),
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
) -> Result<Outcome, Fault> {
    let refused = |data: &mut DataSetReader<'_, S>, status, reason: String| {
        data.drain()?;
        Ok(Outcome::refuse(status, reason))
    };
    let (Some(sop_class_uid), Some(sop_instance_uid)) = (
        &command.affected_sop_class_uid,
        &command.affected_sop_instance_uid,
    ) else {
        return refused(
            data,
            Status::CANNOT_UNDERSTAND,
            "C-STORE-RQ lacks the affected SOP class or instance UID".into(),
        );
    };
    if *sop_class_uid != context.abstract_syntax {
        return refused(
            data,
            Status::SOP_CLASS_NOT_SUPPORTED,
            format!(
                "SOP class {sop_class_uid} sent on a presentation context for {}",
                context.abstract_syntax
            ),
        );
    }
    let Some(ts) = TransferSyntaxRegistry.get(&context.transfer_syntax) else {
        return refused(
            data,
            Status::CANNOT_UNDERSTAND,
            format!("unknown transfer syntax {}", context.transfer_syntax),
        );
    };
    match queue.has_room() {
        Ok(true) => {}
        Ok(false) => {
            return refused(
                data,
                Status::OUT_OF_RESOURCES,
                "storage is below its free-space floor".into(),
            );
        }
        Err(e) => {
            return refused(
                data,
                Status::OUT_OF_RESOURCES,
                format!("cannot check free space: {e}"),
            );
        }
    }

    let deflated = matches!(ts.codec(), Codec::Dataset(_));
    // One spool file per profile in use, each through its profile's transform; a
    // profile that discards this kind of instance gets none.
    let mut parts = Vec::new();
    let mut transforms = Vec::new();
    let mut withheld = Vec::new();
    for profile in queue.profiles() {
        let transform = match anonymizer.transform(profile, sop_class_uid, ts) {
            Ok(transform) => transform,
            Err(discard) => {
                log::info!(
                    "profile {profile} discards instances of SOP class {sop_class_uid}: {}",
                    discard.as_str()
                );
                withheld.push((profile, Withheld::Discarded(discard)));
                continue;
            }
        };
        let meta = FileMeta {
            sop_class_uid: sop_class_uid.clone(),
            sop_instance_uid: anonymizer.instance_uid(profile, sop_instance_uid),
            transfer_syntax_uid: context.transfer_syntax.clone(),
            // The sender's AE title names the site: only identified copies keep it.
            source_ae_title: (profile == Profile::Identified).then(|| calling_ae_title.to_owned()),
            deflated,
        };
        match queue.start(profile, &meta) {
            Ok(part) => parts.push(part),
            Err(e) => {
                return refused(
                    data,
                    Status::OUT_OF_RESOURCES,
                    format!("cannot create spool file: {e}"),
                );
            }
        }
        transforms.push(transform);
    }

    let copied = {
        let outputs = parts
            .iter_mut()
            .zip(transforms.iter_mut())
            .map(|(part, transform)| Output {
                writer: part,
                transform: transform.as_mut() as &mut dyn Transform,
            })
            .collect();
        if deflated {
            stream::copy(DeflateDecoder::new(&mut *data), ts, outputs)
        } else {
            stream::copy(&mut *data, ts, outputs)
        }
    };
    if let Some(fault) = data.take_fault() {
        return Err(fault);
    }
    if let Some(e) = parts.iter_mut().find_map(|p| p.take_error()) {
        return refused(data, Status::OUT_OF_RESOURCES, storage_reason(&e));
    }
    let summary = match copied {
        Ok(summary) => summary,
        Err(reason) => return refused(data, Status::CANNOT_UNDERSTAND, reason),
    };
    // The data set must end where the peer said it ends.
    data.drain()?;
    if let Some(uid) = &summary.sop_instance_uid {
        if uid != sop_instance_uid {
            return Ok(Outcome::refuse(
                Status::DATA_SET_MISMATCH,
                "SOP Instance UID in the data set differs from the C-STORE-RQ's",
            ));
        }
    }
    if let Some(uid) = &summary.sop_class_uid {
        if uid != sop_class_uid {
            return Ok(Outcome::refuse(
                Status::DATA_SET_MISMATCH,
                "SOP Class UID in the data set differs from the C-STORE-RQ's",
            ));
        }
    }
    let bytes = data.payload_bytes();
    // A copy its profile could not clean is never kept (dropping the part removes
    // it); if no copy is left for anyone, the modality keeps its own and says so.
    let mut kept = Vec::new();
    let mut uncleaned = None;
    for (part, transform) in parts.into_iter().zip(&transforms) {
        match transform.uncleaned() {
            None => kept.push(part),
            Some(reason) => {
                log::warn!(
                    "profile {} cannot clean an instance, so keeps no copy: {reason}",
                    part.profile
                );
                withheld.push((part.profile, Withheld::NotDeliverable(reason.clone())));
                uncleaned = Some(reason);
            }
        }
    }
    if let (true, Some(reason)) = (kept.is_empty(), uncleaned) {
        return Ok(Outcome::refuse(
            Status::CANNOT_ANONYMIZE,
            format!("not stored: it cannot be anonymized ({reason})"),
        ));
    }
    match queue.commit(kept, sop_class_uid) {
        Ok(()) => Ok(Outcome {
            status: Status::SUCCESS,
            reason: None,
            bytes,
            withheld,
        }),
        Err(crate::queue::QueueError::Io(e)) => Ok(Outcome::refuse(
            Status::OUT_OF_RESOURCES,
            storage_reason(&e),
        )),
        Err(e) => Ok(Outcome::refuse(
            Status::OUT_OF_RESOURCES,
            format!("cannot queue: {e}"),
        )),
    }
}

fn storage_reason(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        "storage full".into()
    } else {
        format!("storage error: {e}")
    }
}
