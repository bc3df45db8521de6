//! DICOM fixtures made here, so no test depends on files from outside the repository.

#![allow(dead_code)] // each user takes a different part

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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
    let mut obj = us_header(US_MULTIFRAME, sop_instance, rows, cols, Some(frames as u32));
    // Where the image is, so that the anonymizing profiles can blank what is not.
    let ul = |tag, v: u32| DataElement::new(tag, VR::UL, PrimitiveValue::from(v));
    obj.put(DataElement::new(
        tags::SEQUENCE_OF_ULTRASOUND_REGIONS,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![InMemDicomObject::from_element_iter([
            ul(tags::REGION_LOCATION_MIN_X0, 0),
            ul(tags::REGION_LOCATION_MIN_Y0, 40),
            ul(tags::REGION_LOCATION_MAX_X1, u32::from(cols) - 1),
            ul(tags::REGION_LOCATION_MAX_Y1, u32::from(rows) - 1),
        ])]),
    ));
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

/// Marker strings planted where patient data hides; none may survive anonymization.
pub const MARKERS: &[&str] = &[
    "ZQX",                 // every text marker starts with it
    "19930512",            // birth date
    "20170304",            // study date
    "101112",              // study time
    "1.2.826.0.1.3680043", // every original UID
    "73.25",               // weight
];

/// A patient and an instance of their study, for the anonymization fixtures.
/// Every instance refers to instance 1 of its study.
pub struct Phi<'a> {
    pub patient: &'a str,
    pub study: u32,
    pub instance: u32,
    pub rows: u16,
    pub cols: u16,
}

/// The Code Meaning of the procedure the fixtures' studies name.
pub const PROCEDURE_MEANING: &str = "Third trimester growth scan";

/// Height of the banner burned into the top of every anonymization fixture's pixels.
pub const BANNER_ROWS: u16 = 10;

/// The SOP Instance UID of a `Phi` fixture.
pub fn phi_uid(study: u32, instance: u32) -> String {
    format!("1.2.826.0.1.3680043.10.30.{study}.{instance}")
}

/// Writes an ultrasound image with patient data in every place the profiles must
/// clean: names, IDs, dates and times, addresses, free text, a nested sequence three
/// levels deep, private attributes with and without a creator, an overlay, and a
/// banner of marker text burned into the pixels above the ultrasound region.
pub fn write_phi_image(path: &Path, phi: &Phi) {
    let mut obj = phi_object(phi);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(phi_pixels(phi.rows, phi.cols)),
    ));
    write_part10(obj, path, EXPLICIT_LE);
}

/// Instances 1 to `instances` of a study of `patient`, each a `write_phi_image`
/// of 60×80 pixels in `dir`.
pub fn phi_study(dir: &Path, patient: &str, study: u32, instances: u32) -> Vec<PathBuf> {
    (1..=instances)
        .map(|instance| {
            let path = dir.join(format!("{patient}-{study}-{instance}.dcm"));
            write_phi_image(
                &path,
                &Phi {
                    patient,
                    study,
                    instance,
                    rows: 60,
                    cols: 80,
                },
            );
            path
        })
        .collect()
}

/// The same, with the pixels as JPEG baseline frames (YBR_FULL_422), one fragment
/// each; more than one frame makes it a US Multi-frame instance.
pub fn write_phi_jpeg(path: &Path, phi: &Phi, frames: u32) {
    let mut obj = phi_object(phi);
    let mut frame = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut frame, 90);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_1);
    encoder
        .encode(
            &phi_pixels(phi.rows, phi.cols),
            phi.cols,
            phi.rows,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("YBR_FULL_422"),
    ));
    if frames > 1 {
        obj.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(US_MULTIFRAME),
        ));
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from(frames.to_string()),
        ));
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        dicom_core::value::PixelFragmentSequence::new(vec![], vec![frame; frames as usize]),
    ));
    write_part10(obj, path, JPEG_BASELINE);
}

fn write_part10(obj: InMemDicomObject, path: &Path, ts: &str) {
    let class = obj
        .element(tags::SOP_CLASS_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let uid = obj
        .element(tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    obj.with_meta(
        FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(class.trim_end_matches('\0'))
            .media_storage_sop_instance_uid(uid.trim_end_matches('\0'))
            .transfer_syntax(ts),
    )
    .unwrap()
    .write_to_file(path)
    .unwrap();
}

/// The attributes of a `Phi` fixture, without pixel data.
fn phi_object(phi: &Phi) -> InMemDicomObject {
    let text =
        |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value.to_owned()));
    let seq = |tag, items: Vec<InMemDicomObject>| {
        DataElement::new(tag, VR::SQ, dicom_core::value::DataSetSequence::from(items))
    };
    let uid = phi_uid(phi.study, phi.instance);
    let mut obj = us_header(US_IMAGE, &uid, phi.rows, phi.cols, None);
    let p = phi.patient;
    for element in [
        text(tags::PATIENT_NAME, VR::PN, &format!("ZQX{p}^JANE")),
        text(tags::PATIENT_ID, VR::LO, &format!("ZQXID{p}")),
        // Other Patient IDs: retired, and still sent by older machines.
        text(Tag(0x0010, 0x1000), VR::LO, &format!("ZQXOTHER{p}")),
        text(tags::PATIENT_ADDRESS, VR::LO, "ZQX 1 Main Street"),
        text(tags::PATIENT_SEX, VR::CS, "F"),
        text(tags::PATIENT_WEIGHT, VR::DS, "73.25"),
        text(tags::ADDITIONAL_PATIENT_HISTORY, VR::LT, "ZQX history"),
        text(tags::ACCESSION_NUMBER, VR::SH, "ZQXACC"),
        text(tags::STUDY_ID, VR::SH, "ZQXSTUDY"),
        text(tags::STUDY_TIME, VR::TM, "101112"),
        text(tags::SERIES_DATE, VR::DA, "20170304"),
        text(tags::CONTENT_DATE, VR::DA, "20170304"),
        text(tags::ACQUISITION_DATE_TIME, VR::DT, "20170304101112"),
        text(tags::STUDY_DESCRIPTION, VR::LO, "ZQX obstetric scan"),
        text(tags::SERIES_DESCRIPTION, VR::LO, "ZQX series"),
        text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "ZQXREFERRER^DR"),
        text(tags::PERFORMING_PHYSICIAN_NAME, VR::PN, "ZQXPERFORMER^DR"),
        text(tags::OPERATORS_NAME, VR::PN, "ZQXSONOGRAPHER"),
        text(tags::INSTITUTION_NAME, VR::LO, "ZQX Clinic"),
        text(tags::INSTITUTION_ADDRESS, VR::ST, "ZQX 2 Clinic Road"),
        text(tags::STATION_NAME, VR::SH, "ZQXSTATION"),
        text(tags::IMAGE_COMMENTS, VR::LT, "ZQX comment"),
        text(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            &format!("1.2.826.0.1.3680043.10.30.{}", phi.study),
        ),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &format!("1.2.826.0.1.3680043.10.30.{}.0", phi.study),
        ),
        text(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &format!("1.2.826.0.1.3680043.10.30.{}.9", phi.study),
        ),
        text(tags::RESPONSIBLE_PERSON, VR::PN, "ZQXOWNER^PAT"),
        text(tags::RESPONSIBLE_PERSON_ROLE, VR::CS, "OWNER"),
        text(Tag(0x0011, 0x1001), VR::LO, "ZQX private without creator"),
        text(Tag(0x6000, 0x4000), VR::LT, "ZQX overlay comment"),
    ] {
        obj.put(element);
    }
    // Three levels deep: Request Attributes > Referenced Study > (an item with a name).
    let inner = InMemDicomObject::from_element_iter([text(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        &phi_uid(phi.study, 1),
    )]);
    let middle = InMemDicomObject::from_element_iter([
        seq(tags::REFERENCED_STUDY_SEQUENCE, vec![inner]),
        text(tags::REQUESTING_PHYSICIAN, VR::PN, "ZQXREQUESTER"),
    ]);
    obj.put(seq(tags::REQUEST_ATTRIBUTES_SEQUENCE, vec![middle]));
    // The procedure, by name: typical keeps it, strict's study list shows none.
    obj.put(seq(
        tags::PROCEDURE_CODE_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            text(tags::CODE_VALUE, VR::SH, "US-OB-1"),
            text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "99CLINIC"),
            text(tags::CODE_MEANING, VR::LO, PROCEDURE_MEANING),
        ])],
    ));
    // The image refers to the study's first instance.
    obj.put(seq(
        tags::REFERENCED_IMAGE_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, US_IMAGE),
            text(
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                &phi_uid(phi.study, 1),
            ),
        ])],
    ));
    // The image proper lies below the banner.
    let ul = |tag, v: u32| DataElement::new(tag, VR::UL, PrimitiveValue::from(v));
    obj.put(seq(
        tags::SEQUENCE_OF_ULTRASOUND_REGIONS,
        vec![InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::REGION_SPATIAL_FORMAT,
                VR::US,
                PrimitiveValue::from(1_u16),
            ),
            ul(tags::REGION_LOCATION_MIN_X0, 0),
            ul(tags::REGION_LOCATION_MIN_Y0, u32::from(BANNER_ROWS)),
            ul(tags::REGION_LOCATION_MAX_X1, u32::from(phi.cols) - 1),
            ul(tags::REGION_LOCATION_MAX_Y1, u32::from(phi.rows) - 1),
        ])],
    ));
    obj.put(text(tags::BURNED_IN_ANNOTATION, VR::CS, "YES"));
    obj
}

/// RGB pixels: a banner of marker text, then an image pattern.
pub fn phi_pixels(rows: u16, cols: u16) -> Vec<u8> {
    let row_bytes = cols as usize * 3;
    let banner = b"ZQX BANNER DOE JANE 1993-05-12 ".repeat(row_bytes / 31 + 1);
    (0..rows as usize)
        .flat_map(|y| {
            if y < BANNER_ROWS as usize {
                banner[..row_bytes].to_vec()
            } else {
                (0..row_bytes).map(|i| ((i + y) % 97) as u8).collect()
            }
        })
        .collect()
}

/// A one-page PDF showing `text`, written by hand (objects, cross-reference table,
/// trailer) so that the tests need no PDF library.
pub fn minimal_pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n{object}\nendobj\n", i + 1).into_bytes());
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
    for offset in offsets {
        pdf.extend(format!("{offset:010} 00000 n \n").into_bytes());
    }
    pdf.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .into_bytes(),
    );
    pdf
}

/// A Comprehensive SR with obstetric measurements and identifying content items:
/// free text, a person's name, a date and a UID reference, one container deep.
pub fn write_phi_sr(path: &Path, uid: &str) {
    let text =
        |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value.to_owned()));
    let seq = |tag, items: Vec<InMemDicomObject>| {
        DataElement::new(tag, VR::SQ, dicom_core::value::DataSetSequence::from(items))
    };
    let code = |value: &str, meaning: &str| {
        InMemDicomObject::from_element_iter([
            text(tags::CODE_VALUE, VR::SH, value),
            text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "LN"),
            text(tags::CODE_MEANING, VR::LO, meaning),
        ])
    };
    let item =
        |value_type: &str, name: InMemDicomObject, mut rest: Vec<DataElement<InMemDicomObject>>| {
            let mut elements = vec![
                text(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
                text(tags::VALUE_TYPE, VR::CS, value_type),
                seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![name]),
            ];
            elements.append(&mut rest);
            InMemDicomObject::from_element_iter(elements)
        };
    let femur = item(
        "NUM",
        code("11963-7", "Femur Length"),
        vec![seq(
            tags::MEASURED_VALUE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                text(tags::NUMERIC_VALUE, VR::DS, "52.5"),
                seq(
                    tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
                    vec![code("mm", "millimeter")],
                ),
            ])],
        )],
    );
    let findings = item(
        "TEXT",
        code("121071", "Finding"),
        vec![text(tags::TEXT_VALUE, VR::UT, "ZQX findings for DOE JANE")],
    );
    let observer = item(
        "PNAME",
        code("121008", "Person Observer Name"),
        vec![text(tags::PERSON_NAME, VR::PN, "ZQXOBSERVER^ANN")],
    );
    let date = item(
        "DATE",
        code("111060", "Study Date"),
        vec![text(tags::DATE, VR::DA, "20170304")],
    );
    let reference = item(
        "UIDREF",
        code("121232", "Source series"),
        vec![text(tags::UID, VR::UI, "1.2.826.0.1.3680043.10.70.5")],
    );
    let section = item(
        "CONTAINER",
        code("125005", "Biometry Group"),
        vec![
            text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
            seq(
                tags::CONTENT_SEQUENCE,
                vec![femur, findings, observer, date, reference],
            ),
        ],
    );
    let sr_class = "1.2.840.10008.5.1.4.1.1.88.33";
    let mut obj = InMemDicomObject::from_element_iter([
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        text(tags::SOP_CLASS_UID, VR::UI, sr_class),
        text(tags::SOP_INSTANCE_UID, VR::UI, uid),
        text(tags::STUDY_DATE, VR::DA, "20170304"),
        text(tags::MODALITY, VR::CS, "SR"),
        text(tags::PATIENT_NAME, VR::PN, "ZQXDOE^JANE"),
        text(tags::PATIENT_ID, VR::LO, "ZQXID"),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, "19930512"),
        text(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.70.1",
        ),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.70.2",
        ),
        text(tags::CONTENT_DATE, VR::DA, "20170304"),
        text(tags::CONTENT_TIME, VR::TM, "101112"),
        text(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
        seq(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code("125000", "OB-GYN Ultrasound Procedure Report")],
        ),
        // The order the report answers: its Type 2 attributes must stay (empty).
        seq(
            tags::REFERENCED_REQUEST_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                text(
                    tags::STUDY_INSTANCE_UID,
                    VR::UI,
                    "1.2.826.0.1.3680043.10.70.1",
                ),
                seq(
                    tags::REFERENCED_STUDY_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([
                        text(
                            tags::REFERENCED_SOP_CLASS_UID,
                            VR::UI,
                            "1.2.840.10008.3.1.2.3.1",
                        ),
                        text(
                            tags::REFERENCED_SOP_INSTANCE_UID,
                            VR::UI,
                            "1.2.826.0.1.3680043.10.70.1",
                        ),
                    ])],
                ),
                text(tags::ACCESSION_NUMBER, VR::SH, "ZQXACC"),
                text(
                    tags::PLACER_ORDER_NUMBER_IMAGING_SERVICE_REQUEST,
                    VR::LO,
                    "ZQXPLACER",
                ),
                text(
                    tags::FILLER_ORDER_NUMBER_IMAGING_SERVICE_REQUEST,
                    VR::LO,
                    "ZQXFILLER",
                ),
                text(tags::REQUESTED_PROCEDURE_ID, VR::SH, "ZQXRP"),
                text(
                    tags::REQUESTED_PROCEDURE_DESCRIPTION,
                    VR::LO,
                    "ZQX growth scan for DOE",
                ),
                seq(
                    tags::REQUESTED_PROCEDURE_CODE_SEQUENCE,
                    vec![code("US-OB-1", PROCEDURE_MEANING)],
                ),
            ])],
        ),
        seq(
            tags::PERFORMED_PROCEDURE_CODE_SEQUENCE,
            vec![code("US-OB-1", PROCEDURE_MEANING)],
        ),
    ]);
    obj.put(seq(tags::CONTENT_SEQUENCE, vec![section]));
    write_part10(obj, path, EXPLICIT_LE);
}
