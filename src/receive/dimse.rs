//! DIMSE command sets (PS3.7 9.3 and 9.1): reading requests, writing responses.
//!
//! Command sets are always Implicit VR Little Endian and small; responses are
//! written by hand in tag order, which keeps them exact and allocation-light.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Command Field values (PS3.7 E.1).
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
pub const N_ACTION_RQ: u16 = 0x0130;
/// A response's command field is its request's with this bit set.
const RESPONSE_BIT: u16 = 0x8000;
pub const N_EVENT_REPORT_RSP: u16 = N_EVENT_REPORT_RQ | RESPONSE_BIT;
pub const C_ECHO_RSP: u16 = C_ECHO_RQ | RESPONSE_BIT;
/// Command Data Set Type value meaning "no data set follows", and one meaning
/// "a data set follows" (any other value does).
const NO_DATA_SET: u16 = 0x0101;
const DATA_SET: u16 = 0x0001;
/// Command sets larger than this are refused: real ones are a few hundred bytes.
pub const MAX_COMMAND_LENGTH: usize = 64 * 1024;

/// A DIMSE status code (PS3.7 Annex C, PS3.4 B.2.3 for C-STORE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const SUCCESS: Status = Status(0x0000);
    /// Refused: SOP class not supported (C-STORE); for N-services, "no such SOP
    /// class" is 0118H.
    pub const SOP_CLASS_NOT_SUPPORTED: Status = Status(0x0122);
    /// N-ACTION failures (PS3.7 10.1.4.1.10).
    pub const PROCESSING_FAILURE: Status = Status(0x0110);
    pub const NO_SUCH_SOP_INSTANCE: Status = Status(0x0112);
    pub const INVALID_ARGUMENT_VALUE: Status = Status(0x0115);
    pub const NO_SUCH_SOP_CLASS: Status = Status(0x0118);
    pub const NO_SUCH_ACTION: Status = Status(0x0123);
    pub const RESOURCE_LIMITATION: Status = Status(0x0213);
    /// Unrecognized operation: a DIMSE service we do not provide.
    pub const UNRECOGNIZED_OPERATION: Status = Status(0x0211);
    /// Refused: out of resources (disk full, below the free-space floor, I/O error).
    pub const OUT_OF_RESOURCES: Status = Status(0xA700);
    /// Error: data set does not match SOP class.
    pub const DATA_SET_MISMATCH: Status = Status(0xA900);
    /// Error: cannot understand (malformed data set).
    pub const CANNOT_UNDERSTAND: Status = Status(0xC000);
    /// Error: cannot understand, in the Cxxx range PS3.4 B.2.3 leaves to the
    /// implementation: a well-formed instance that no configured profile can
    /// anonymize (burned-in text it cannot blank). Modalities show it as a failure
    /// and keep their copy; the Error Comment says why.
    pub const CANNOT_ANONYMIZE: Status = Status(0xC110);

    pub fn is_success(self) -> bool {
        self == Status::SUCCESS
    }

    /// Success, or a Warning (Bxxx, PS3.7 C.1): what was asked was done.
    pub fn is_taken(self) -> bool {
        self.is_success() || self.0 & 0xF000 == 0xB000
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04X}H", self.0)
    }
}

/// The fields of a request command set that we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub field: u16,
    /// The Message ID of a request, or the one a response answers.
    pub message_id: u16,
    pub affected_sop_class_uid: Option<String>,
    pub affected_sop_instance_uid: Option<String>,
    /// What an N-ACTION acts on.
    pub requested_sop_class_uid: Option<String>,
    pub requested_sop_instance_uid: Option<String>,
    pub action_type_id: Option<u16>,
    /// A response's status.
    pub status: Option<Status>,
    pub has_data_set: bool,
}

impl Command {
    /// Parses a command set; the error says what is missing or broken.
    pub fn parse(bytes: &[u8]) -> Result<Command, String> {
        let object =
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .map_err(|e| format!("command set unreadable: {e}"))?;
        let uint = |tag: Tag, name: &str| -> Result<u16, String> {
            object
                .element(tag)
                .map_err(|_| format!("command set lacks {name}"))?
                .to_int::<u16>()
                .map_err(|_| format!("command set has an invalid {name}"))
        };
        let uid = |tag: Tag| -> Option<String> {
            let element = object.element(tag).ok()?;
            let text = element.to_str().ok()?;
            let text = crate::standard::unpadded(&text);
            (!text.is_empty()).then(|| text.to_owned())
        };
        let field = uint(tags::COMMAND_FIELD, "Command Field")?;
        let message_id = if field & RESPONSE_BIT == 0 {
            uint(tags::MESSAGE_ID, "Message ID")?
        } else {
            uint(
                tags::MESSAGE_ID_BEING_RESPONDED_TO,
                "Message ID Being Responded To",
            )?
        };
        let optional = |tag: Tag, name: &str| -> Result<Option<u16>, String> {
            object
                .element_opt(tag)
                .ok()
                .flatten()
                .map_or(Ok(None), |_| uint(tag, name).map(Some))
        };
        Ok(Command {
            field,
            message_id,
            affected_sop_class_uid: uid(tags::AFFECTED_SOP_CLASS_UID),
            affected_sop_instance_uid: uid(tags::AFFECTED_SOP_INSTANCE_UID),
            requested_sop_class_uid: uid(tags::REQUESTED_SOP_CLASS_UID),
            requested_sop_instance_uid: uid(tags::REQUESTED_SOP_INSTANCE_UID),
            action_type_id: optional(tags::ACTION_TYPE_ID, "Action Type ID")?,
            status: optional(tags::STATUS, "Status")?.map(Status),
            has_data_set: uint(tags::COMMAND_DATA_SET_TYPE, "Command Data Set Type")?
                != NO_DATA_SET,
        })
    }

    /// The response command set for this request. `comment` (Error Comment, at most
    /// 64 characters) goes with failures only and must hold no patient data.
    pub fn response(&self, status: Status, comment: Option<&str>) -> Vec<u8> {
        let mut body = Vec::with_capacity(160);
        // An N-ACTION's response names as affected what the request named as
        // requested (PS3.7 10.3.4).
        let class = self
            .affected_sop_class_uid
            .as_ref()
            .or(self.requested_sop_class_uid.as_ref());
        if let Some(uid) = class {
            put(&mut body, tags::AFFECTED_SOP_CLASS_UID, uid.as_bytes(), 0);
        }
        put(
            &mut body,
            tags::COMMAND_FIELD,
            &(self.field | RESPONSE_BIT).to_le_bytes(),
            0,
        );
        put(
            &mut body,
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            &self.message_id.to_le_bytes(),
            0,
        );
        put(
            &mut body,
            tags::COMMAND_DATA_SET_TYPE,
            &NO_DATA_SET.to_le_bytes(),
            0,
        );
        put(&mut body, tags::STATUS, &status.0.to_le_bytes(), 0);
        if let Some(comment) = comment.filter(|_| !status.is_success()) {
            let comment: String = comment
                .chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '\\')
                .take(64)
                .collect();
            put(&mut body, tags::ERROR_COMMENT, comment.as_bytes(), b' ');
        }
        let instance = match self.field {
            C_STORE_RQ => self.affected_sop_instance_uid.as_ref(),
            N_ACTION_RQ => self.requested_sop_instance_uid.as_ref(),
            _ => None,
        };
        if let Some(uid) = instance {
            put(
                &mut body,
                tags::AFFECTED_SOP_INSTANCE_UID,
                uid.as_bytes(),
                0,
            );
        }
        if let (N_ACTION_RQ, Some(action)) = (self.field, self.action_type_id) {
            put(&mut body, tags::ACTION_TYPE_ID, &action.to_le_bytes(), 0);
        }
        with_group_length(body)
    }
}

/// A C-ECHO-RQ command set (PS3.7 9.3.5.1): no data set.
pub fn echo_rq(message_id: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    let verification = crate::standard::VERIFICATION.as_bytes();
    put(&mut body, tags::AFFECTED_SOP_CLASS_UID, verification, 0);
    put(&mut body, tags::COMMAND_FIELD, &C_ECHO_RQ.to_le_bytes(), 0);
    put(&mut body, tags::MESSAGE_ID, &message_id.to_le_bytes(), 0);
    let no_data = NO_DATA_SET.to_le_bytes();
    put(&mut body, tags::COMMAND_DATA_SET_TYPE, &no_data, 0);
    with_group_length(body)
}

/// An N-EVENT-REPORT-RQ command set (PS3.7 10.3.1), a data set following.
pub fn event_report_rq(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    event_type_id: u16,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(160);
    put(
        &mut body,
        tags::AFFECTED_SOP_CLASS_UID,
        sop_class_uid.as_bytes(),
        0,
    );
    put(
        &mut body,
        tags::COMMAND_FIELD,
        &N_EVENT_REPORT_RQ.to_le_bytes(),
        0,
    );
    put(&mut body, tags::MESSAGE_ID, &message_id.to_le_bytes(), 0);
    put(
        &mut body,
        tags::COMMAND_DATA_SET_TYPE,
        &DATA_SET.to_le_bytes(),
        0,
    );
    put(
        &mut body,
        tags::AFFECTED_SOP_INSTANCE_UID,
        sop_instance_uid.as_bytes(),
        0,
    );
    put(
        &mut body,
        tags::EVENT_TYPE_ID,
        &event_type_id.to_le_bytes(),
        0,
    );
    with_group_length(body)
}

/// A command set: Command Group Length, then the elements.
fn with_group_length(body: Vec<u8>) -> Vec<u8> {
    let mut command = Vec::with_capacity(body.len() + 12);
    put(
        &mut command,
        tags::COMMAND_GROUP_LENGTH,
        &(body.len() as u32).to_le_bytes(),
        0,
    );
    command.extend(body);
    command
}

/// Appends one Implicit VR Little Endian element, padded to even length with `pad`.
fn put(out: &mut Vec<u8>, tag: Tag, value: &[u8], pad: u8) {
    let padded = value.len() + value.len() % 2;
    out.extend_from_slice(&tag.group().to_le_bytes());
    out.extend_from_slice(&tag.element().to_le_bytes());
    out.extend_from_slice(&(padded as u32).to_le_bytes());
    out.extend_from_slice(value);
    if padded > value.len() {
        out.push(pad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_rq() -> Command {
        Command {
            field: C_STORE_RQ,
            message_id: 7,
            affected_sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.6.1".into()),
            affected_sop_instance_uid: Some("1.2.3.4.5".into()),
            requested_sop_class_uid: None,
            requested_sop_instance_uid: None,
            action_type_id: None,
            status: None,
            has_data_set: true,
        }
    }

    #[test]
    fn store_response_reads_back_with_the_standard_fields() {
        let bytes = store_rq().response(Status::OUT_OF_RESOURCES, Some("disk full"));
        let rsp =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        let int = |tag| rsp.element(tag).unwrap().to_int::<u32>().unwrap();
        assert_eq!(int(tags::COMMAND_GROUP_LENGTH) as usize, bytes.len() - 12);
        assert_eq!(int(tags::COMMAND_FIELD), 0x8001);
        assert_eq!(int(tags::MESSAGE_ID_BEING_RESPONDED_TO), 7);
        assert_eq!(int(tags::COMMAND_DATA_SET_TYPE), 0x0101);
        assert_eq!(int(tags::STATUS), 0xA700);
        assert_eq!(
            rsp.element(tags::ERROR_COMMENT)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "disk full"
        );
        assert_eq!(
            rsp.element(tags::AFFECTED_SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0'),
            "1.2.3.4.5"
        );
    }

    #[test]
    fn store_request_parses() {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        let mut rq = InMemDicomObject::new_empty();
        rq.put(DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.6.1\0"),
        ));
        rq.put(DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(C_STORE_RQ),
        ));
        rq.put(DataElement::new(
            tags::MESSAGE_ID,
            VR::US,
            PrimitiveValue::from(9_u16),
        ));
        rq.put(DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0x0000_u16),
        ));
        rq.put(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3.4.5"),
        ));
        let mut bytes = Vec::new();
        rq.write_dataset_with_ts(&mut bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        let parsed = Command::parse(&bytes).unwrap();
        assert_eq!(parsed.field, C_STORE_RQ);
        assert_eq!(parsed.message_id, 9);
        assert_eq!(
            parsed.affected_sop_class_uid.as_deref(),
            Some("1.2.840.10008.5.1.4.1.1.6.1")
        );
        assert_eq!(
            parsed.affected_sop_instance_uid.as_deref(),
            Some("1.2.3.4.5")
        );
        assert!(parsed.has_data_set);
    }

    #[test]
    fn success_carries_no_error_comment_and_comments_are_sanitized() {
        let ok = store_rq().response(Status::SUCCESS, Some("ignored"));
        assert!(!ok.windows(7).any(|w| w == b"ignored"));
        let long = "x\\y".repeat(40);
        let bytes = store_rq().response(Status::CANNOT_UNDERSTAND, Some(&long));
        let rsp =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        let comment = rsp
            .element(tags::ERROR_COMMENT)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(comment.trim().len() <= 64 && !comment.contains('\\'));
    }

    #[test]
    fn an_n_action_is_answered_for_what_it_requested() {
        let rq = Command {
            field: N_ACTION_RQ,
            message_id: 3,
            affected_sop_class_uid: None,
            affected_sop_instance_uid: None,
            requested_sop_class_uid: Some("1.2.840.10008.1.20.1".into()),
            requested_sop_instance_uid: Some("1.2.840.10008.1.20.1.1".into()),
            action_type_id: Some(1),
            status: None,
            has_data_set: true,
        };
        let rsp = Command::parse(&rq.response(Status::SUCCESS, None)).unwrap();
        assert_eq!(rsp.field, 0x8130);
        assert_eq!(rsp.message_id, 3, "read from Message ID Being Responded To");
        assert_eq!(rsp.status, Some(Status::SUCCESS));
        assert_eq!(
            rsp.affected_sop_class_uid.as_deref(),
            Some("1.2.840.10008.1.20.1")
        );
        assert_eq!(
            rsp.affected_sop_instance_uid.as_deref(),
            Some("1.2.840.10008.1.20.1.1")
        );
        assert_eq!(rsp.action_type_id, Some(1));
        assert!(!rsp.has_data_set);
    }

    #[test]
    fn an_event_report_request_reads_back() {
        let bytes = event_report_rq(9, "1.2.840.10008.1.20.1", "1.2.840.10008.1.20.1.1", 2);
        let rq = Command::parse(&bytes).unwrap();
        assert_eq!(
            (rq.field, rq.message_id, rq.has_data_set),
            (N_EVENT_REPORT_RQ, 9, true)
        );
        let object =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        assert_eq!(
            object
                .element(tags::EVENT_TYPE_ID)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            2
        );
    }

    #[test]
    fn garbage_command_sets_are_errors() {
        assert!(Command::parse(&[1, 2, 3]).is_err());
        assert!(Command::parse(&[]).is_err());
    }
}
