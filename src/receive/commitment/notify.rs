//! A storage commitment report on an association of its own, to the modality.
//!
//! GE LOGIQ and Orthanc release the association right after the N-ACTION and
//! listen for the N-EVENT-REPORT on their own port. The box then calls them as the
//! Storage Commitment SCP: it proposes the SOP class with the SCP role (SCU/SCP
//! Role Selection, PS3.7 D.3.3.4), sends the report, waits for its answer and
//! releases (`calling`: every step has a timeout, so an unreachable machine costs
//! one try).

use std::net::{SocketAddr, ToSocketAddrs};

use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, RequestorRoles, UserVariableItem};

use super::Pending;
use super::request::Report;
use crate::config::Modality;
use crate::receive::{calling, dimse};
use crate::standard::{
    IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_PUSH,
};

/// How the modality is named in errors.
const PEER: &str = "the modality";
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
    let mut call = calling::associate(address, request(our_ae_title, &target.ae_title), PEER)
        .map_err(|e| match e.contains("accepted none") {
            true => "the modality does not take storage commitment reports (no accepted context): is storage commitment enabled on it, for this AE title?".into(),
            false => e,
        })?;
    let data = report.to_bytes(call.transfer_syntax)?;
    let command = dimse::event_report_rq(
        1,
        STORAGE_COMMITMENT_PUSH,
        STORAGE_COMMITMENT_INSTANCE,
        report.event_type_id(),
    );
    let peer_max = call.peer_max_pdu;
    let sent = call
        .pdus
        .send_message(CONTEXT_ID, command, &data, peer_max)
        .map_err(|e| format!("connection failed: {e}"));
    let status = sent.and_then(|()| call.answer(dimse::N_EVENT_REPORT_RSP, PEER));
    call.release();
    match status? {
        status if status.is_taken() => Ok(()),
        status => Err(format!(
            "the modality answered the report with status {status}"
        )),
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
            UserVariableItem::MaxLength(calling::MAX_PDU),
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
