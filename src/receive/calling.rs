//! The box calling another DICOM node: a connection with timeouts, an association
//! with one presentation context, and the answer to one request on it.
//!
//! Storage commitment reports go to the modality this way, and the update health
//! check calls the agent's own listener with a C-ECHO. Every step has a timeout, so
//! a peer that does not answer costs one try.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use dicom_encoding::TransferSyntax;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{AssociationRQ, Pdu, PresentationContextResultReason};

use crate::receive::dimse::{Command, Status};
use crate::receive::negotiation;
use crate::receive::pdu::{Next, PduStream};

/// How long each step (connect, each answer) may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// The largest PDU we take on these associations: answers are small.
pub const MAX_PDU: u32 = 65_536;

/// An association the peer accepted, on the context `request` proposed first.
pub struct Call {
    pub pdus: PduStream<TcpStream>,
    pub context_id: u8,
    pub transfer_syntax: &'static TransferSyntax,
    pub peer_max_pdu: u32,
}

/// Connects to `address` and asks for `request`'s association; `peer` names the
/// other side in errors ("the modality").
pub fn associate(address: SocketAddr, request: AssociationRQ, peer: &str) -> Result<Call, String> {
    let stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and(stream.set_write_timeout(Some(TIMEOUT)))
        .and(stream.set_nodelay(true))
        .map_err(|e| e.to_string())?;
    let mut pdus = PduStream::new(stream, MAX_PDU);
    let context_id = request.presentation_contexts[0].id;
    pdus.send(&Pdu::AssociationRQ(request))
        .map_err(|e| format!("connection failed: {e}"))?;
    let ac = match pdus.next_pdu().map_err(|f| f.to_string())? {
        Next::Control(Pdu::AssociationAC(ac)) => ac,
        Next::Control(Pdu::AssociationRJ(rj)) => {
            return Err(format!("{peer} refused the association: {}", rj.source));
        }
        _ => {
            return Err(format!(
                "{peer} answered the association request with something else"
            ));
        }
    };
    let context = ac
        .presentation_contexts
        .iter()
        .find(|pc| pc.id == context_id && pc.reason == PresentationContextResultReason::Acceptance)
        .ok_or_else(|| format!("{peer} accepted none of the proposed presentation contexts"))?;
    let transfer_syntax = TransferSyntaxRegistry
        .get(crate::standard::unpadded(&context.transfer_syntax))
        .ok_or_else(|| format!("{peer} chose a transfer syntax we did not propose"))?;
    Ok(Call {
        context_id,
        transfer_syntax,
        peer_max_pdu: negotiation::max_length(&ac.user_variables),
        pdus,
    })
}

impl Call {
    /// The status of the response to the request just sent, which must be `field`.
    pub fn answer(&mut self, field: u16, peer: &str) -> Result<Status, String> {
        match self.pdus.next_pdu().map_err(|f| f.to_string())? {
            Next::Pdv(pdv) if pdv.is_command => {
                let bytes = self.pdus.read_command(pdv).map_err(|f| f.to_string())?;
                let command = Command::parse(&bytes)?;
                match (command.field, command.status) {
                    (f, Some(status)) if f == field => Ok(status),
                    _ => Err(format!(
                        "{peer} answered with command {:#06x}",
                        command.field
                    )),
                }
            }
            Next::Control(Pdu::AbortRQ { .. }) => Err(format!("{peer} aborted the association")),
            _ => Err(format!("{peer} answered with something else")),
        }
    }

    /// Releases the association (best effort: the answer is what mattered).
    pub fn release(mut self) {
        let _ = self.pdus.send(&Pdu::ReleaseRQ);
        let _ = self.pdus.next_pdu();
        let _ = self.pdus.get_mut().shutdown(std::net::Shutdown::Both);
    }
}
