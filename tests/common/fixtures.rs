//! DICOM fixtures made here, so no test depends on files from outside the repository.

#![allow(dead_code)] // each user takes a different part

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;

pub const US_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.6.1";
pub const US_MULTIFRAME: &str = "1.2.840.10008.5.1.4.1.1.3.1";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

/// Header elements of an ultrasound image with identifying data, so tests can see
/// what is kept.
pub fn us_header(
    sop_class: &str,
    sop_instance: &str,
    rows: u16,
    cols: u16,
    frames: Option<u32>,
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 100"),
        ),
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(sop_class)),
        DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(sop_instance),
        ),
        DataElement::new(tags::STUDY_DATE, VR::DA, PrimitiveValue::from("20170304")),
        DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("US")),
        DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("DOE^JANE")),
        DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("PID12345")),
        DataElement::new(
            tags::PATIENT_BIRTH_DATE,
            VR::DA,
            PrimitiveValue::from("19930512"),
        ),
        DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.826.0.1.3680043.10.1.1"),
        ),
        DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.826.0.1.3680043.10.1.2"),
        ),
        DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from("1")),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(3_u16)),
        DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("RGB"),
        ),
        DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0_u16),
        ),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(rows)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(cols)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8_u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(8_u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7_u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0_u16),
        ),
        // A private block, as ultrasound machines write.
        DataElement::new(Tag(0x0009, 0x0010), VR::LO, PrimitiveValue::from("ACME US")),
        DataElement::new(
            Tag(0x0009, 0x1001),
            VR::LO,
            PrimitiveValue::from("probe C5-1"),
        ),
    ]);
    if let Some(frames) = frames {
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from(frames.to_string()),
        ));
    }
    let item = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(US_IMAGE),
        ),
        DataElement::new(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.826.0.1.3680043.10.1.99"),
        ),
    ]);
    obj.put(DataElement::new(
        tags::REFERENCED_IMAGE_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![item]),
    ));
    obj
}

/// Writes a native single-frame RGB ultrasound image.
pub fn write_us_image(path: &Path, sop_instance: &str, ts: &str, rows: u16, cols: u16) {
    let mut obj = us_header(US_IMAGE, sop_instance, rows, cols, None);
    let pixels: Vec<u8> = (0..rows as usize * cols as usize * 3)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixels),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(US_IMAGE)
                .media_storage_sop_instance_uid(sop_instance)
                .transfer_syntax(ts),
        )
        .unwrap();
    file.write_to_file(path).unwrap();
}

/// Writes a JPEG-baseline-encapsulated image (the fragments are opaque to everyone
/// on the path, so their content need not decode).
pub fn write_jpeg_image(path: &Path, sop_instance: &str) {
    let mut obj = us_header(US_IMAGE, sop_instance, 64, 64, None);
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("YBR_FULL_422"),
    ));
    let fragment: Vec<u8> = [0xFF, 0xD8]
        .into_iter()
        .chain((0..3000u32).map(|i| (i % 200) as u8))
        .chain([0xFF, 0xD9])
        .collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        dicom_core::value::PixelFragmentSequence::new(vec![], vec![fragment]),
    ));
    obj.with_meta(
        FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(US_IMAGE)
            .media_storage_sop_instance_uid(sop_instance)
            .transfer_syntax(JPEG_BASELINE),
    )
    .unwrap()
    .write_to_file(path)
    .unwrap();
}

/// Writes a native multi-frame clip of about `bytes` of pixel data, streaming the
/// pixel data so that even a gigabyte clip needs no memory here.
pub fn write_clip(path: &Path, sop_instance: &str, bytes: u64) {
    let (rows, cols) = (600u16, 800u16);
    let frame = rows as u64 * cols as u64 * 3;
    let frames = bytes.div_ceil(frame).max(1);
    let obj = us_header(US_MULTIFRAME, sop_instance, rows, cols, Some(frames as u32));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(US_MULTIFRAME)
                .media_storage_sop_instance_uid(sop_instance)
                .transfer_syntax(EXPLICIT_LE),
        )
        .unwrap();
    let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    file.write_all(&mut out).unwrap();
    let len = frames * frame;
    out.write_all(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0])
        .unwrap();
    out.write_all(&(len as u32).to_le_bytes()).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
}

/// Byte offset of the data set in a Part 10 file (after preamble and meta group).
pub fn data_set_offset(bytes: &[u8]) -> usize {
    assert_eq!(&bytes[128..132], b"DICM");
    assert_eq!(
        &bytes[132..136],
        &[2, 0, 0, 0],
        "meta group starts with its length"
    );
    let group_length = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    144 + group_length
}

/// Transfer syntax UID recorded in a Part 10 file's meta group.
pub fn file_transfer_syntax(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(128)).unwrap();
    let meta = dicom_object::meta::FileMetaTable::from_reader(file.take(64 * 1024)).unwrap();
    meta.transfer_syntax().to_owned()
}

/// Compares two files' data sets byte for byte, reading both in chunks.
pub fn same_data_set(a: &Path, b: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let offset = |p: &Path| {
        let mut head = vec![0u8; 4096];
        let n = fs::File::open(p).unwrap().read(&mut head).unwrap();
        data_set_offset(&head[..n]) as u64
    };
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (la, lb) = (
        fa.metadata().unwrap().len() - offset(a),
        fb.metadata().unwrap().len() - offset(b),
    );
    if la != lb {
        return false;
    }
    fa.seek(SeekFrom::Start(offset(a))).unwrap();
    fb.seek(SeekFrom::Start(offset(b))).unwrap();
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// The SOP Instance UID in a Part 10 file's meta group.
pub fn file_sop_instance(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(128)).unwrap();
    let meta = dicom_object::meta::FileMetaTable::from_reader(file.take(64 * 1024)).unwrap();
    meta.media_storage_sop_instance_uid().to_owned()
}
