//! The data sets of storage commitment (PS3.4 J.3.2 and J.3.3): the N-ACTION's
//! Storage Commitment Request, read; the N-EVENT-REPORT's answer, written.
//!
//! Both are small (a UID pair per instance) and read or written whole, in the
//! presentation context's transfer syntax; a request naming more instances than
//! `MAX_REFERENCES` is refused before it is stored.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntax;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

use crate::receive::dimse::Status;
use crate::standard::unpadded;

/// The most instances one request may name: an exam of cine clips is a few
/// hundred; this many is far past any real one and still small to keep.
pub const MAX_REFERENCES: usize = 10_000;
/// The most bytes a request's data set may take (a reference is ~120 bytes).
pub const MAX_REQUEST_BYTES: u64 = 4 * 1024 * 1024;

/// Event Type IDs of the report (PS3.4 J.3.3.1).
pub const ALL_COMMITTED: u16 = 1;
pub const FAILURES_EXIST: u16 = 2;

/// One instance a request names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// A Storage Commitment Request: the transaction and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub transaction_uid: String,
    pub references: Vec<Reference>,
}

/// Failure Reason values (PS3.3 C.14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureReason {
    /// Not delivered within the wait `commit = "delivered"` allows.
    ProcessingFailure,
    /// Never received here.
    NoSuchObjectInstance,
    /// Received as an instance of another SOP class.
    ClassInstanceConflict,
}

impl FailureReason {
    pub fn code(self) -> u16 {
        match self {
            FailureReason::ProcessingFailure => 0x0110,
            FailureReason::NoSuchObjectInstance => 0x0112,
            FailureReason::ClassInstanceConflict => 0x0119,
        }
    }
}

/// What the report says: every instance committed or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub transaction_uid: String,
    pub committed: Vec<Reference>,
    pub failed: Vec<(Reference, FailureReason)>,
}

impl Report {
    pub fn event_type_id(&self) -> u16 {
        if self.failed.is_empty() {
            ALL_COMMITTED
        } else {
            FAILURES_EXIST
        }
    }

    /// The Storage Commitment Result data set, in `ts`.
    pub fn to_bytes(&self, ts: &TransferSyntax) -> Result<Vec<u8>, String> {
        let mut object = InMemDicomObject::new_empty();
        object.put(uid(tags::TRANSACTION_UID, &self.transaction_uid));
        // PS3.4 J.3.3.1.1: the sequences are there only when they have items.
        if !self.committed.is_empty() {
            let items = self.committed.iter().map(reference_item).collect();
            object.put(sequence(tags::REFERENCED_SOP_SEQUENCE, items));
        }
        if !self.failed.is_empty() {
            let items = self
                .failed
                .iter()
                .map(|(reference, reason)| {
                    let mut item = reference_item(reference);
                    item.put(DataElement::new(
                        tags::FAILURE_REASON,
                        VR::US,
                        PrimitiveValue::from(reason.code()),
                    ));
                    item
                })
                .collect();
            object.put(sequence(tags::FAILED_SOP_SEQUENCE, items));
        }
        let mut bytes = Vec::new();
        object
            .write_dataset_with_ts(&mut bytes, ts)
            .map_err(|e| format!("cannot write the report: {e}"))?;
        Ok(bytes)
    }
}

impl Request {
    /// Reads an N-ACTION's data set; the error is the N-ACTION status and why.
    pub fn parse(bytes: &[u8], ts: &TransferSyntax) -> Result<Request, (Status, String)> {
        let invalid = |why: String| (Status::INVALID_ARGUMENT_VALUE, why);
        let object = InMemDicomObject::read_dataset_with_ts(bytes, ts)
            .map_err(|e| invalid(format!("storage commitment request unreadable: {e}")))?;
        let transaction_uid = text(&object, tags::TRANSACTION_UID).ok_or_else(|| {
            invalid("storage commitment request lacks its Transaction UID".into())
        })?;
        let items = object
            .element(tags::REFERENCED_SOP_SEQUENCE)
            .ok()
            .and_then(|e| e.items())
            .ok_or_else(|| {
                invalid("storage commitment request lacks its Referenced SOP Sequence".into())
            })?;
        if items.len() > MAX_REFERENCES {
            return Err((
                Status::RESOURCE_LIMITATION,
                format!(
                    "storage commitment request names {} instances; at most {MAX_REFERENCES} are taken at once",
                    items.len()
                ),
            ));
        }
        let references = items
            .iter()
            .enumerate()
            .map(|(n, item)| {
                let field = |tag| text(item, tag);
                match (
                    field(tags::REFERENCED_SOP_CLASS_UID),
                    field(tags::REFERENCED_SOP_INSTANCE_UID),
                ) {
                    (Some(sop_class_uid), Some(sop_instance_uid)) => Ok(Reference {
                        sop_class_uid,
                        sop_instance_uid,
                    }),
                    _ => Err(invalid(format!(
                        "item {} of the Referenced SOP Sequence lacks its SOP class or instance UID",
                        n + 1
                    ))),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Request {
            transaction_uid,
            references,
        })
    }

    /// The Storage Commitment Request data set, in `ts` (what a modality sends;
    /// for tests).
    #[cfg(test)]
    pub fn to_bytes(&self, ts: &TransferSyntax) -> Vec<u8> {
        let mut object = InMemDicomObject::new_empty();
        object.put(uid(tags::TRANSACTION_UID, &self.transaction_uid));
        let items = self.references.iter().map(reference_item).collect();
        object.put(sequence(tags::REFERENCED_SOP_SEQUENCE, items));
        let mut bytes = Vec::new();
        object.write_dataset_with_ts(&mut bytes, ts).unwrap();
        bytes
    }
}

fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = object.element(tag).ok()?.to_str().ok()?;
    let value = unpadded(&value);
    (!value.is_empty()).then(|| value.to_owned())
}

fn uid(tag: Tag, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(value))
}

fn reference_item(reference: &Reference) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(uid(
        tags::REFERENCED_SOP_CLASS_UID,
        &reference.sop_class_uid,
    ));
    item.put(uid(
        tags::REFERENCED_SOP_INSTANCE_UID,
        &reference.sop_instance_uid,
    ));
    item
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_transfer_syntax_registry::entries::{
        EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
    };

    fn reference(n: u32) -> Reference {
        Reference {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.6.1".into(),
            sop_instance_uid: format!("1.2.3.{n}"),
        }
    }

    #[test]
    fn a_request_reads_back_in_every_uncompressed_syntax() {
        let request = Request {
            transaction_uid: "1.2.3.99".into(),
            references: (1..=3).map(reference).collect(),
        };
        for ts in [
            IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            EXPLICIT_VR_BIG_ENDIAN.erased(),
        ] {
            assert_eq!(
                Request::parse(&request.to_bytes(&ts), &ts).unwrap(),
                request
            );
        }
    }

    #[test]
    fn a_request_without_what_it_needs_says_what_is_missing() {
        let ts = EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut object = InMemDicomObject::new_empty();
        object.put(uid(tags::TRANSACTION_UID, "1.2.3"));
        let mut bytes = Vec::new();
        object.write_dataset_with_ts(&mut bytes, &ts).unwrap();
        let (status, why) = Request::parse(&bytes, &ts).unwrap_err();
        assert_eq!(status, Status::INVALID_ARGUMENT_VALUE);
        assert!(why.contains("Referenced SOP Sequence"), "{why}");
        let (status, _) = Request::parse(b"\x08\x00garbage", &ts).unwrap_err();
        assert_eq!(status, Status::INVALID_ARGUMENT_VALUE);
        let mut item = InMemDicomObject::new_empty();
        item.put(uid(tags::REFERENCED_SOP_CLASS_UID, "1.2"));
        object.put(sequence(tags::REFERENCED_SOP_SEQUENCE, vec![item]));
        let mut bytes = Vec::new();
        object.write_dataset_with_ts(&mut bytes, &ts).unwrap();
        let (_, why) = Request::parse(&bytes, &ts).unwrap_err();
        assert!(why.contains("item 1"), "{why}");
    }

    #[test]
    fn too_many_references_are_a_resource_limitation() {
        let request = Request {
            transaction_uid: "1.2.3.99".into(),
            references: (0..=MAX_REFERENCES as u32).map(reference).collect(),
        };
        let ts = EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let (status, _) = Request::parse(&request.to_bytes(&ts), &ts).unwrap_err();
        assert_eq!(status, Status::RESOURCE_LIMITATION);
    }

    #[test]
    fn the_report_names_the_committed_and_the_failed() {
        let ts = EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let report = Report {
            transaction_uid: "1.2.3.99".into(),
            committed: vec![reference(1)],
            failed: vec![(reference(2), FailureReason::NoSuchObjectInstance)],
        };
        assert_eq!(report.event_type_id(), FAILURES_EXIST);
        let bytes = report.to_bytes(&ts).unwrap();
        let object = InMemDicomObject::read_dataset_with_ts(&bytes[..], &ts).unwrap();
        let items = |tag| object.element(tag).unwrap().items().unwrap().to_vec();
        assert_eq!(items(tags::REFERENCED_SOP_SEQUENCE).len(), 1);
        let failed = items(tags::FAILED_SOP_SEQUENCE);
        assert_eq!(
            failed[0]
                .element(tags::FAILURE_REASON)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            0x0112
        );
        assert_eq!(
            text(&failed[0], tags::REFERENCED_SOP_INSTANCE_UID).as_deref(),
            Some("1.2.3.2")
        );
        let all = Report {
            failed: vec![],
            ..report
        };
        assert_eq!(all.event_type_id(), ALL_COMMITTED);
        let object =
            InMemDicomObject::read_dataset_with_ts(&all.to_bytes(&ts).unwrap()[..], &ts).unwrap();
        assert!(object.element(tags::FAILED_SOP_SEQUENCE).is_err());
    }
}
