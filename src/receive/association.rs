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

use super::commitment::Commitments;
use super::commitment::on_association::{Reports, request_commitment};
use super::dimse::{self, Command, Status};
use super::negotiation::{self, Accepted, Context, Policy};
use super::pdu::{DataSetReader, Fault, Next, PduStream};
use super::store;
use super::tls::{self, Wire};
use crate::anonymize::{Anonymizer, DeviceKey};
use crate::audit::{Line, Step};
use crate::config::{Listener, Profile};
use crate::queue::Queue;
use crate::standard::STORAGE_COMMITMENT_PUSH;
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
                negotiation::explain(&rj)
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
    let idle = Duration::from_secs(shared.listener.idle_timeout_secs.0);
    loop {
        reports.send_while_quiet(pdus, accepted, &shared.commitments, idle)?;
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
                store(pdus, &command, context, accepted, shared, peer)?
            }
            dimse::C_STORE_RQ => (
                Status::CANNOT_UNDERSTAND,
                Some("C-STORE-RQ without a data set".to_owned()),
            ),
            dimse::N_ACTION_RQ if context.abstract_syntax == STORAGE_COMMITMENT_PUSH => {
                let (status, reason, held) = request_commitment(
                    pdus,
                    &command,
                    context,
                    accepted,
                    &shared.commitments,
                    peer,
                )?;
                if let Some(held) = held {
                    reports.wait_for(held, context.clone());
                }
                (status, reason)
            }
            dimse::N_EVENT_REPORT_RSP if context.abstract_syntax == STORAGE_COMMITMENT_PUSH => {
                if command.has_data_set {
                    DataSetReader::new(pdus, context.id).drain()?;
                }
                reports.answered(&command, &shared.commitments);
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

/// One C-STORE, with what it leaves on the status board and in the audit trail.
fn store<S: Read + Write>(
    pdus: &mut PduStream<S>,
    command: &Command,
    context: &Context,
    accepted: &Accepted,
    shared: &Shared,
    peer: SocketAddr,
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
    let received = data.payload_bytes();
    audit_received(&outcome, command, accepted, shared, peer, received);
    for (profile, withheld) in &outcome.withheld {
        for destination in shared.queue.destinations_of(*profile) {
            shared.board.audit(withheld.audit(
                |step| Line::new(step).instance(outcome.origin.as_ref()),
                *profile,
                &destination,
            ));
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

/// The trail's lines for a C-STORE: received, then stored per copy or refused.
fn audit_received(
    outcome: &store::Outcome,
    command: &Command,
    accepted: &Accepted,
    shared: &Shared,
    peer: SocketAddr,
    bytes: u64,
) {
    let instance = |line: Line| line.instance(outcome.origin.as_ref());
    shared.board.audit(
        instance(Line::new(Step::Received))
            .with(
                "from",
                format!("{}@{}", accepted.calling_ae_title, peer.ip()),
            )
            .with(
                "sop_class",
                command.affected_sop_class_uid.as_deref().unwrap_or("-"),
            )
            .with("bytes", bytes),
    );
    if let Some(reason) = &outcome.reason {
        shared.board.audit(
            instance(Line::new(Step::Refused))
                .with("status", outcome.status)
                .with("reason", reason),
        );
    }
    for copy in &outcome.copies {
        let mut line = instance(Line::new(Step::Stored))
            .with("queue", copy.id)
            .with("profile", copy.profile);
        if let Some(uid) = &copy.anonymized_uid {
            line = line.with("uid", uid);
        }
        shared.board.audit(line);
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
