//! Facts of the DICOM standard that every layer may use: UIDs, SOP class families,
//! transfer syntaxes, value padding. Nothing here knows about the box.

pub mod sop_classes;

/// The root under which the standard defines its UIDs; anything else is private.
pub const STANDARD_ROOT: &str = "1.2.840.10008.";
/// Verification SOP class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Storage Commitment Push Model SOP Class (PS3.4 J.3), and the well-known
/// instance every request and report names.
pub const STORAGE_COMMITMENT_PUSH: &str = "1.2.840.10008.1.20.1";
pub const STORAGE_COMMITMENT_INSTANCE: &str = "1.2.840.10008.1.20.1.1";
/// Encapsulated PDF Storage.
pub const ENCAPSULATED_PDF: &str = "1.2.840.10008.5.1.4.1.1.104.1";
/// Raw Data Storage: a vendor's opaque bytes.
pub const RAW_DATA: &str = "1.2.840.10008.5.1.4.1.1.66";
/// The uncompressed little endian syntaxes.
pub const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// JPEG Baseline (Process 1).
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
/// RLE Lossless: what cleaned copies of other compressed pixel data are written in.
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// JPEG-LS Lossless: what cleaned copies of JPEG-LS pixel data are written in.
pub const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";

/// Our implementation class UID (a UUID-derived UID under 2.25) and version name,
/// in associations and in the file meta of what we write.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.207594862461848313926407352345876301347";
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("UPLINK_", env!("CARGO_PKG_VERSION"));

/// Whether `uid` names a storage SOP class of the standard.
pub fn is_standard_storage(uid: &str) -> bool {
    sop_classes::STORAGE_SOP_CLASSES
        .iter()
        .any(|c| c.uid == uid)
}

/// Encapsulated documents: PDF, CDA, STL, OBJ, MTL.
pub fn is_encapsulated_document(sop_class_uid: &str) -> bool {
    sop_class_uid.starts_with("1.2.840.10008.5.1.4.1.1.104.")
}

/// Ultrasound Image and Multi-frame Image Storage, and their retired forms.
pub fn is_ultrasound(sop_class_uid: &str) -> bool {
    matches!(
        sop_class_uid,
        "1.2.840.10008.5.1.4.1.1.6.1"
            | "1.2.840.10008.5.1.4.1.1.3.1"
            | "1.2.840.10008.5.1.4.1.1.6"
            | "1.2.840.10008.5.1.4.1.1.3"
    )
}

/// A value without the padding PS3.5 6.2 adds to make its length even (NUL for
/// UIDs, space for text).
pub fn unpadded(value: &str) -> &str {
    value.trim_end_matches(['\0', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_goes_and_families_are_told_apart() {
        assert_eq!(unpadded("1.2.3\0"), "1.2.3");
        assert_eq!(unpadded("DOE^JANE "), "DOE^JANE");
        assert!(is_standard_storage("1.2.840.10008.5.1.4.1.1.6.1"));
        assert!(!is_standard_storage(VERIFICATION));
        assert!(!is_standard_storage(STORAGE_COMMITMENT_PUSH));
        assert!(
            is_standard_storage("1.2.840.10008.5.1.4.1.1.88.4"),
            "a retired trial class"
        );
        assert!(is_encapsulated_document(ENCAPSULATED_PDF));
        assert!(is_ultrasound("1.2.840.10008.5.1.4.1.1.3.1"));
        assert!(!is_ultrasound(RAW_DATA));
    }
}
