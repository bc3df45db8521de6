//! One association, from A-ASSOCIATE-RQ to release or abort (PS3.8 9.2 state machine,
//! acceptor side), run on a blocking thread.
//!
//! Whatever a peer does, the outcome is one of: a proper RJ, a response per request,
//! a release, or an A-ABORT with a reason — and the thread ends. Nothing it does can
//! harm instances already queued, which the queue owns.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_ul::pdu::{AbortRQSource, AssociationRJ, Pdu};
use rustls::ServerConfig;

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::commitment::{Commitments, Held, request};
use super::dimse::{self, Command, Status};
use super::negotiation::{self, Accepted, Context, Policy};
use super::pdu::{DataSetReader, Fault, Next, PduStream};
use super::store;
use super::tls::{self, Wire};
use crate::anonymize::{Anonymizer, DeviceKey};
use crate::config::{Listener, Profile};
use crate::queue::Queue;
use crate::standard::{STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH};
use crate::status::counters::{Board, Event};

/// What every association shares.
pub struct Shared {
    pub listener: Listener,
    /// The listener's TLS configuration, when it speaks DICOM over TLS.
    pub tls: Option<Arc<ServerConfig>>,
    pub queue: Arc<Queue>,
    pub board: Arc<Board>,
    pub anonymizer: Anonymizer,
    /// The device key, for the ledger of what was acknowledged.
    pub key: Arc<DeviceKey>,
    pub commitments: Arc<Commitments>,
}

/// Serves one connection to its end, over TLS where the listener has it.
pub fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let timeout = Some(Duration::from_secs(shared.listener.idle_timeout_secs.0));
    if stream
        .set_read_timeout(timeout)
        .and(stream.set_write_timeout(timeout))
        .is_err()
    {
        return;
    }
    match &shared.tls {
        Some(config) => match tls::accept(config, stream) {
            Ok(stream) => serve_on(stream, peer, shared, timeout),
            Err(e) => log::warn!("{peer}: TLS: {e}"),
        },
        None => serve_on(stream, peer, shared, timeout),
    }
}

fn serve_on<W: Wire>(stream: W, peer: SocketAddr, shared: &Shared, timeout: Option<Duration>) {
    let max_pdu = shared.listener.max_pdu_length.0 as u32;
    let mut pdus = PduStream::new(stream, max_pdu);
    // ARTIM: the whole request within the idle timeout, however it trickles in.
    pdus.set_deadline(timeout.map(|t| Instant::now() + t));
    let rq = match pdus.next_pdu() {
        Ok(Next::Control(Pdu::AssociationRQ(rq))) => rq,
        Ok(_) => {
            log::warn!("{peer}: first PDU is not an association request; aborting");
            abort(
                &mut pdus,
                &Fault::Unexpected("PDU before association request"),
            );
            return;
        }
        Err(fault) => {
            log::warn!("{peer}: no association request: {fault}");
            abort(&mut pdus, &fault);
            return;
        }
    };
    let called = rq.called_ae_title.trim().to_owned();
    let calling = rq.calling_ae_title.trim().to_owned();
    let policy = Policy {
        ae_title: &shared.listener.ae_title,
        allowed_callers: &shared.listener.allowed_callers,
        unknown_sop_classes: shared.listener.unknown_sop_classes,
        max_pdu,
        users: &shared.listener.users,
        cleanable: shared
            .queue
            .profiles()
            .iter()
            .any(|p| *p != Profile::Identified)
            .then_some(crate::anonymize::pixels_cleanable as fn(&str) -> bool),
    };
    let accepted = match negotiation::negotiate(rq, &policy) {
        Ok(accepted) => accepted,
        Err(rj) => {
            let reason = format!(
                "{peer} calling {calling:?} called {called:?}: {}",
                rj.source
            );
            log::warn!("association rejected: {reason}");
            shared.board.record(Event::AssociationRefused { reason });
            let _ = pdus.send(&Pdu::AssociationRJ(rj));
            return;
        }
    };
    if pdus.send(&Pdu::AssociationAC(accepted.ac.clone())).is_err() {
        return;
    }
    pdus.set_deadline(None);
    log::info!(
        "association from {calling} ({peer}) accepted: {} of {} presentation contexts",
        accepted.contexts.len(),
        accepted.ac.presentation_contexts.len()
    );
    shared.board.record(Event::AssociationOpened);
    let end = converse(&mut pdus, &accepted, shared, peer);
    shared.board.record(Event::AssociationClosed);
    match end {
        Ok(()) => log::info!("association from {calling} ({peer}) released"),
        Err(Fault::Closed) => {
            log::info!("association from {calling} ({peer}): peer closed the connection")
        }
        Err(fault) => {
            log::warn!("association from {calling} ({peer}) ended: {fault}");
            abort(&mut pdus, &fault);
        }
    }
}

/// Answers requests until the peer releases (Ok) or something breaks (Err).
fn converse<W: Wire>(
    pdus: &mut PduStream<W>,
    accepted: &Accepted,
    shared: &Shared,
    peer: SocketAddr,
) -> Result<(), Fault> {
    let mut reports = Reports::default();
    loop {
        reports.send_while_quiet(pdus, accepted, shared)?;
        let pdv = match pdus.next_pdu()? {
            Next::Pdv(pdv) => pdv,
            Next::Control(Pdu::ReleaseRQ) => {
                let _ = pdus.send(&Pdu::ReleaseRP);
                return Ok(());
            }
            Next::Control(Pdu::AbortRQ { .. }) => return Err(Fault::PeerAborted),
            Next::Control(_) => return Err(Fault::Unexpected("control PDU between messages")),
        };
        if !pdv.is_command {
            return Err(Fault::Unexpected("data PDV without a command"));
        }
        let Some(context) = accepted.contexts.iter().find(|c| c.id == pdv.context_id) else {
            return Err(Fault::BadContext(pdv.context_id));
        };
        let bytes = pdus.read_command(pdv)?;
        let command = Command::parse(&bytes).map_err(Fault::Malformed)?;
        let (status, reason) = match command.field {
            dimse::C_ECHO_RQ => (Status::SUCCESS, None),
            dimse::C_STORE_RQ if command.has_data_set => {
                store(pdus, &command, context, accepted, shared)?
            }
            dimse::C_STORE_RQ => (
                Status::CANNOT_UNDERSTAND,
                Some("C-STORE-RQ without a data set".to_owned()),
            ),
            dimse::N_ACTION_RQ if context.abstract_syntax == STORAGE_COMMITMENT_PUSH => {
                let (status, reason, held) =
                    request_commitment(pdus, &command, context, accepted, shared, peer)?;
                if let Some(held) = held {
                    reports.waiting.push((held, context.clone()));
                }
                (status, reason)
            }
            dimse::N_EVENT_REPORT_RSP if context.abstract_syntax == STORAGE_COMMITMENT_PUSH => {
                if command.has_data_set {
                    DataSetReader::new(pdus, context.id).drain()?;
                }
                reports.answered(&command, shared);
                continue;
            }
            other => {
                if command.has_data_set {
                    DataSetReader::new(pdus, context.id).drain()?;
                }
                (
                    Status::UNRECOGNIZED_OPERATION,
                    Some(format!("DIMSE command {other:#06x} is not provided")),
                )
            }
        };
        pdus.send_command(context.id, command.response(status, reason.as_deref()))
            .map_err(Fault::Io)?;
    }
}

/// One C-STORE, with what it leaves on the status board.
fn store<S: Read + Write>(
    pdus: &mut PduStream<S>,
    command: &Command,
    context: &Context,
    accepted: &Accepted,
    shared: &Shared,
) -> Result<(Status, Option<String>), Fault> {
    let mut data = DataSetReader::new(pdus, context.id);
    let outcome = store::receive(
        &mut data,
        command,
        context,
        &accepted.calling_ae_title,
        &shared.queue,
        &shared.anonymizer,
        &shared.key,
    )?;
    for (profile, withheld) in &outcome.withheld {
        for destination in shared.queue.destinations_of(*profile) {
            shared.board.record(Event::Withheld {
                destination,
                withheld: withheld.clone(),
            });
        }
    }
    match &outcome.reason {
        None => shared.board.record(Event::InstanceStored {
            bytes: outcome.bytes,
            area_inferred: outcome.area_inferred,
        }),
        Some(reason) => {
            log::warn!(
                "C-STORE from {} refused with {}: {reason}",
                accepted.calling_ae_title,
                outcome.status
            );
            shared.board.record(Event::InstanceRefused {
                status: outcome.status.0,
                reason: reason.clone(),
            });
        }
    }
    Ok((outcome.status, outcome.reason))
}

/// An N-ACTION asking for storage commitment (PS3.4 J.3.2): checked, its data set
/// read and the request stored before it is answered.
fn request_commitment<S: Read + Write>(
    pdus: &mut PduStream<S>,
    command: &Command,
    context: &Context,
    accepted: &Accepted,
    shared: &Shared,
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
    match shared
        .commitments
        .accept(request, &accepted.calling_ae_title, &peer.ip().to_string())
    {
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
struct Reports {
    waiting: Vec<(Held, Context)>,
    sent: Vec<(u16, Held)>,
    last_message_id: u16,
}

impl Reports {
    /// While reports wait, watches the quiet peer and sends each report once it
    /// is ready and the peer has stayed quiet `REPORT_GRACE`; returns when the
    /// peer sends something. A peer quiet past the idle timeout is a fault, as
    /// anywhere else.
    fn send_while_quiet<W: Wire>(
        &mut self,
        pdus: &mut PduStream<W>,
        accepted: &Accepted,
        shared: &Shared,
    ) -> Result<(), Fault> {
        let idle = Duration::from_secs(shared.listener.idle_timeout_secs.0);
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
                self.send_ready(pdus, accepted, shared)?;
            }
        }
        Ok(())
    }

    fn send_ready<S: Read + Write>(
        &mut self,
        pdus: &mut PduStream<S>,
        accepted: &Accepted,
        shared: &Shared,
    ) -> Result<(), Fault> {
        let mut still = Vec::new();
        for (held, context) in std::mem::take(&mut self.waiting) {
            let report = match shared.commitments.report(held.id) {
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
    fn answered(&mut self, response: &Command, shared: &Shared) {
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
        if status.is_success() || status.0 & 0xF000 == 0xB000 {
            if let Err(e) = shared.commitments.reported(held.id) {
                log::error!("storage commitment: cannot mark a report delivered: {e}");
            }
        } else {
            log::warn!(
                "the modality answered a storage commitment report with {status}; it is sent again on a new association"
            );
        }
    }
}

/// Sends an A-ABORT if the fault calls for one, then closes the connection.
fn abort<W: Wire>(pdus: &mut PduStream<W>, fault: &Fault) {
    if let Some(reason) = fault.abort_reason() {
        let _ = pdus.send(&Pdu::AbortRQ {
            source: AbortRQSource::ServiceProvider(reason),
        });
    }
    pdus.get_mut().close();
}

/// How long a refused peer has to send its request (a real modality sends it at
/// once; a silent one must not hold a thread for long).
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);

/// Refuses a connection before negotiation (over the cap, address not allowed):
/// reads its request so the peer gets a proper A-ASSOCIATE-RJ, then closes.
pub fn refuse(stream: TcpStream, rj: AssociationRJ, tls: Option<&Arc<ServerConfig>>) {
    let _ = stream.set_read_timeout(Some(REFUSAL_DEADLINE));
    let _ = stream.set_write_timeout(Some(REFUSAL_DEADLINE));
    match tls {
        Some(config) => {
            if let Ok(stream) = tls::accept(config, stream) {
                refuse_on(stream, rj);
            }
        }
        None => refuse_on(stream, rj),
    }
}

fn refuse_on<W: Wire>(stream: W, rj: AssociationRJ) {
    let mut pdus = PduStream::new(stream, 16 * 1024);
    pdus.set_deadline(Some(Instant::now() + REFUSAL_DEADLINE));
    if let Ok(Next::Control(Pdu::AssociationRQ(_))) = pdus.next_pdu() {
        let _ = pdus.send(&Pdu::AssociationRJ(rj));
    }
    pdus.get_mut().close();
}
