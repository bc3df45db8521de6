//! A storage commitment report on an association of its own, to the modality.
//!
//! GE LOGIQ and Orthanc release the association right after the N-ACTION and
//! listen for the N-EVENT-REPORT on their own port. The box then calls them as the
//! Storage Commitment SCP: it proposes the SOP class with the SCP role (SCU/SCP
//! Role Selection, PS3.7 D.3.3.4), sends the report, waits for its answer and
//! releases. Every step has a timeout, so an unreachable machine costs one try.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{
    AssociationRQ, Pdu, PresentationContextProposed, PresentationContextResultReason,
    RequestorRoles, UserVariableItem,
};

use super::Pending;
use super::request::Report;
use crate::config::Modality;
use crate::receive::dimse::{self, Command, Status};
use crate::receive::negotiation;
use crate::receive::pdu::{Next, PduStream};
use crate::standard::{
    IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_PUSH,
};

/// How long each step (connect, each answer) may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// The largest PDU we take on these associations: answers are small.
const MAX_PDU: u32 = 65_536;
const CONTEXT_ID: u8 = 1;
/// The well-known DICOM port, where no `[[modality]]` names another.
const DEFAULT_PORT: u16 = 104;

/// Where a report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The modality's `[[modality]]` entry, else the address the request came
    /// from on port 104.
    pub fn of(pending: &Pending, modalities: &[Modality]) -> Target {
        let entry = modalities
            .iter()
            .find(|m| m.ae_title.as_str() == pending.calling_ae_title);
        Target {
            ae_title: pending.calling_ae_title.clone(),
            host: entry
                .and_then(|m| m.host.clone())
                .unwrap_or_else(|| pending.peer_host.clone()),
            port: entry.map_or(DEFAULT_PORT, |m| m.port.0),
        }
    }

    pub fn address(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.host))
    }
}

/// Sends `report` to `target` as `our_ae_title`; the error says what went wrong.
pub fn send(target: &Target, our_ae_title: &str, report: &Report) -> Result<(), String> {
    let address = target.resolve()?;
    let stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and(stream.set_write_timeout(Some(TIMEOUT)))
        .and(stream.set_nodelay(true))
        .map_err(|e| e.to_string())?;
    let mut pdus = PduStream::new(stream, MAX_PDU);
    let result = converse(&mut pdus, target, our_ae_title, report);
    let _ = pdus.get_mut().shutdown(std::net::Shutdown::Both);
    result
}

fn converse(
    pdus: &mut PduStream<TcpStream>,
    target: &Target,
    our_ae_title: &str,
    report: &Report,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("connection failed: {e}");
    pdus.send(&Pdu::AssociationRQ(request(our_ae_title, &target.ae_title)))
        .map_err(io)?;
    let ac = match pdus.next_pdu().map_err(|f| f.to_string())? {
        Next::Control(Pdu::AssociationAC(ac)) => ac,
        Next::Control(Pdu::AssociationRJ(rj)) => {
            return Err(format!(
                "the modality refused the association: {}",
                rj.source
            ));
        }
        _ => {
            return Err("the modality answered the association request with something else".into());
        }
    };
    let context = ac
        .presentation_contexts
        .iter()
        .find(|pc| pc.id == CONTEXT_ID && pc.reason == PresentationContextResultReason::Acceptance)
        .ok_or("the modality does not take storage commitment reports (no accepted context): is storage commitment enabled on it, for this AE title?")?;
    let ts = TransferSyntaxRegistry
        .get(crate::standard::unpadded(&context.transfer_syntax))
        .ok_or("the modality chose a transfer syntax we did not propose")?;
    let peer_max = negotiation::max_length(&ac.user_variables);
    let data = report.to_bytes(ts)?;
    let command = dimse::event_report_rq(
        1,
        STORAGE_COMMITMENT_PUSH,
        STORAGE_COMMITMENT_INSTANCE,
        report.event_type_id(),
    );
    pdus.send_message(CONTEXT_ID, command, &data, peer_max)
        .map_err(io)?;
    let status = answer(pdus)?;
    let _ = pdus.send(&Pdu::ReleaseRQ);
    let _ = pdus.next_pdu();
    if status.is_taken() {
        Ok(())
    } else {
        Err(format!(
            "the modality answered the report with status {status}"
        ))
    }
}

/// The association request: the commitment class, with us as its SCP.
fn request(our_ae_title: &str, their_ae_title: &str) -> AssociationRQ {
    AssociationRQ {
        protocol_version: 1,
        calling_ae_title: our_ae_title.to_owned(),
        called_ae_title: their_ae_title.to_owned(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: CONTEXT_ID,
            abstract_syntax: STORAGE_COMMITMENT_PUSH.into(),
            transfer_syntaxes: vec!["1.2.840.10008.1.2.1".into(), "1.2.840.10008.1.2".into()],
        }],
        user_variables: vec![
            UserVariableItem::MaxLength(MAX_PDU),
            UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.into()),
            UserVariableItem::ScuScpRoleSelectionSubItem(
                STORAGE_COMMITMENT_PUSH.into(),
                RequestorRoles {
                    scu: false,
                    scp: true,
                },
            ),
            UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.into()),
        ],
    }
}

/// The N-EVENT-REPORT-RSP's status.
fn answer(pdus: &mut PduStream<TcpStream>) -> Result<Status, String> {
    match pdus.next_pdu().map_err(|f| f.to_string())? {
        Next::Pdv(pdv) if pdv.is_command => {
            let bytes = pdus.read_command(pdv).map_err(|f| f.to_string())?;
            let command = Command::parse(&bytes)?;
            match (command.field, command.status) {
                (dimse::N_EVENT_REPORT_RSP, Some(status)) => Ok(status),
                _ => Err(format!(
                    "the modality answered the report with command {:#06x}",
                    command.field
                )),
            }
        }
        Next::Control(Pdu::AbortRQ { .. }) => Err("the modality aborted the association".into()),
        _ => Err("the modality answered the report with something else".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(ae: &str) -> Pending {
        Pending {
            request: super::super::request::Request {
                transaction_uid: "1.2.3".into(),
                references: vec![],
            },
            calling_ae_title: ae.into(),
            peer_host: "192.168.1.20".into(),
            received_ms: 0,
            attempts: 0,
            next_attempt_ms: 0,
        }
    }

    #[test]
    fn a_modality_entry_says_where_else_the_request_did() {
        let modalities: Vec<Modality> = vec![
            toml::from_str("ae_title = 'LOGIQ'\nport = 4100").unwrap(),
            toml::from_str("ae_title = 'EPIQ'\nhost = 'epiq.clinic'\nport = 104").unwrap(),
        ];
        let logiq = Target::of(&pending("LOGIQ"), &modalities);
        assert_eq!(logiq.address(), "192.168.1.20:4100");
        assert_eq!(
            Target::of(&pending("EPIQ"), &modalities).host,
            "epiq.clinic"
        );
        assert_eq!(
            Target::of(&pending("OTHER"), &modalities).address(),
            "192.168.1.20:104"
        );
    }
}
