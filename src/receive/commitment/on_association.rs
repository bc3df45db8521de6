//! Storage commitment on the association that asked for it: the N-ACTION checked,
//! read and stored before it is answered, and its report sent on the same
//! association when the modality stays on it (`association.rs` runs the loop; the
//! worker in `mod.rs` sends what is left when the association ends).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::request;
use super::{Commitments, Held};
use crate::receive::dimse::{self, Command, Status};
use crate::receive::negotiation::{Accepted, Context};
use crate::receive::pdu::{DataSetReader, Fault, PduStream};
use crate::receive::tls::Wire;
use crate::standard::{STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH};

/// An N-ACTION asking for storage commitment (PS3.4 J.3.2): checked, its data set
/// read and the request stored before it is answered.
pub fn request_commitment<S: Read + Write>(
    pdus: &mut PduStream<S>,
    command: &Command,
    context: &Context,
    accepted: &Accepted,
    commitments: &Arc<Commitments>,
    peer: SocketAddr,
) -> Result<(Status, Option<String>, Option<Held>), Fault> {
    let refuse = |status, why: &str| Ok((status, Some(why.to_owned()), None));
    let mut data = DataSetReader::new(pdus, context.id);
    let mut bytes = Vec::new();
    if command.has_data_set {
        let read = (&mut data)
            .take(request::MAX_REQUEST_BYTES + 1)
            .read_to_end(&mut bytes);
        if let Some(fault) = data.take_fault() {
            return Err(fault);
        }
        data.drain()?;
        if read.is_err() {
            return refuse(
                Status::INVALID_ARGUMENT_VALUE,
                "storage commitment request unreadable",
            );
        }
    }
    if command.requested_sop_class_uid.as_deref() != Some(STORAGE_COMMITMENT_PUSH) {
        return refuse(
            Status::NO_SUCH_SOP_CLASS,
            "N-ACTION for another class than Storage Commitment Push Model",
        );
    }
    if command.requested_sop_instance_uid.as_deref() != Some(STORAGE_COMMITMENT_INSTANCE) {
        return refuse(
            Status::NO_SUCH_SOP_INSTANCE,
            "N-ACTION must name the well-known instance 1.2.840.10008.1.20.1.1",
        );
    }
    if command.action_type_id != Some(1) {
        return refuse(
            Status::NO_SUCH_ACTION,
            "the only action is 1, Request Storage Commitment",
        );
    }
    if !command.has_data_set {
        return refuse(
            Status::INVALID_ARGUMENT_VALUE,
            "N-ACTION without its Storage Commitment Request",
        );
    }
    if bytes.len() as u64 > request::MAX_REQUEST_BYTES {
        return refuse(
            Status::RESOURCE_LIMITATION,
            "storage commitment request larger than 4 MiB",
        );
    }
    let Some(ts) = TransferSyntaxRegistry.get(&context.transfer_syntax) else {
        return refuse(Status::PROCESSING_FAILURE, "unknown transfer syntax");
    };
    let request = match request::Request::parse(&bytes, ts) {
        Ok(request) => request,
        Err((status, why)) => {
            log::warn!(
                "storage commitment from {} refused with {status}: {why}",
                accepted.calling_ae_title
            );
            return Ok((status, Some(why), None));
        }
    };
    match commitments.accept(request, &accepted.calling_ae_title, &peer.ip().to_string()) {
        Ok(held) => Ok((Status::SUCCESS, None, Some(held))),
        Err(e) => {
            log::error!("cannot store a storage commitment request: {e}");
            refuse(Status::PROCESSING_FAILURE, "cannot store the request")
        }
    }
}

/// How long a modality that asked for commitment must stay quiet before its
/// report goes on its own association: one that releases right after the
/// N-ACTION (and listens for the report elsewhere) has done so by then.
const REPORT_GRACE: Duration = Duration::from_secs(1);
/// How often a quiet association looks whether a report is ready.
const REPORT_STEP: Duration = Duration::from_millis(250);

/// The storage commitment requests of this association: those whose reports are
/// not sent yet, and those sent and not yet answered. Dropping them (the
/// association ended) hands their reports to the worker.
#[derive(Default)]
pub struct Reports {
    waiting: Vec<(Held, Context)>,
    sent: Vec<(u16, Held)>,
    last_message_id: u16,
}

impl Reports {
    /// Takes the request `held`, made on `context`, to report on this association.
    pub fn wait_for(&mut self, held: Held, context: Context) {
        self.waiting.push((held, context));
    }

    /// While reports wait, watches the quiet peer and sends each report once it
    /// is ready and the peer has stayed quiet `REPORT_GRACE`; returns when the
    /// peer sends something. A peer quiet past the idle timeout is a fault, as
    /// anywhere else.
    pub fn send_while_quiet<W: Wire>(
        &mut self,
        pdus: &mut PduStream<W>,
        accepted: &Accepted,
        commitments: &Commitments,
        idle: Duration,
    ) -> Result<(), Fault> {
        let mut quiet = Duration::ZERO;
        while !self.waiting.is_empty() {
            if pdus.readable(REPORT_STEP, Some(idle))? {
                return Ok(());
            }
            quiet += REPORT_STEP;
            if quiet >= idle {
                return Err(Fault::Io(std::io::ErrorKind::TimedOut.into()));
            }
            if quiet >= REPORT_GRACE {
                self.send_ready(pdus, accepted, commitments)?;
            }
        }
        Ok(())
    }

    fn send_ready<S: Read + Write>(
        &mut self,
        pdus: &mut PduStream<S>,
        accepted: &Accepted,
        commitments: &Commitments,
    ) -> Result<(), Fault> {
        let mut still = Vec::new();
        for (held, context) in std::mem::take(&mut self.waiting) {
            let report = match commitments.report(held.id) {
                Ok(Some(report)) => report,
                Ok(None) => {
                    still.push((held, context));
                    continue;
                }
                Err(e) => {
                    log::error!("storage commitment: cannot read the ledger: {e}");
                    continue;
                }
            };
            let Some(ts) = TransferSyntaxRegistry.get(&context.transfer_syntax) else {
                continue;
            };
            let data = match report.to_bytes(ts) {
                Ok(data) => data,
                Err(e) => {
                    log::error!("storage commitment: {e}");
                    continue;
                }
            };
            self.last_message_id = self.last_message_id.wrapping_add(1);
            let command = dimse::event_report_rq(
                self.last_message_id,
                STORAGE_COMMITMENT_PUSH,
                STORAGE_COMMITMENT_INSTANCE,
                report.event_type_id(),
            );
            pdus.send_message(context.id, command, &data, accepted.peer_max_pdu)
                .map_err(Fault::Io)?;
            log::info!(
                "storage commitment report ({} committed, {} failed) sent to {} on its association",
                report.committed.len(),
                report.failed.len(),
                accepted.calling_ae_title
            );
            self.sent.push((self.last_message_id, held));
        }
        self.waiting = still;
        Ok(())
    }

    /// The modality answered a report sent on this association.
    pub fn answered(&mut self, response: &Command, commitments: &Commitments) {
        let Some(at) = self
            .sent
            .iter()
            .position(|(id, _)| *id == response.message_id)
        else {
            log::warn!("N-EVENT-REPORT-RSP for no report sent; ignored");
            return;
        };
        let (_, held) = self.sent.swap_remove(at);
        let status = response.status.unwrap_or(Status::PROCESSING_FAILURE);
        if status.is_taken() {
            if let Err(e) = commitments.reported(held.id) {
                log::error!("storage commitment: cannot mark a report delivered: {e}");
            }
        } else {
            log::warn!(
                "the modality answered a storage commitment report with {status}; it is sent again on a new association"
            );
        }
    }
}
