//! Anonymize: the `typical` and `strict` profiles, as transforms in the receive stream.
//!
//! Both apply the DICOM PS3.15 Basic Application Level Confidentiality Profile
//! (Table E.1-1, generated into `rules.rs`, composite actions resolved by the IOD's
//! attribute Types) at every depth, replace UIDs with keyed ones, remove private
//! attributes, curves, overlays and anything the dictionary does not know, blank
//! burned-in text outside the ultrasound regions, and mark the result as
//! de-identified. `strict` also makes every study look the same: fixed name, ID and
//! sex, birth date cut to the decade, study dates cut to the year, times emptied —
//! and discards content that cannot be anonymized (encapsulated documents, raw
//! data, private SOP classes). A copy that cannot be cleaned is never kept.

mod area;
mod burned_in;
mod document;
mod frames;
mod jpeg;
mod keys;
mod pixels;
mod rle;
pub mod rules;

use std::sync::Arc;

use dicom_core::dictionary::DataDictionary;
use dicom_core::header::DataElementHeader;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_encoding::TransferSyntax;
use dicom_encoding::transfer_syntax::{Endianness, TransferSyntaxIndex};

use burned_in::{Decision, Pixels};
pub use document::PasswordBook;
use frames::Codec;
pub use keys::DeviceKey;
use pixels::Region;

use crate::config::{DateCut, DocumentPassword, PixelRule, Profile, StrictValues};
use crate::pipeline::stream::{
    AddedValue, Addition, Identity, Plan, Reencoded, Rewrite, Transform,
};
use crate::standard::{
    ENCAPSULATED_PDF, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, RAW_DATA,
    is_encapsulated_document, is_standard_storage, unpadded,
};

/// Why a profile sends no copy of an instance at all: content it cannot anonymize,
/// acknowledged and dropped as the profile promises (and counted in `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Strict sends no encapsulated documents (PDF reports, CDA, STL, ...).
    Document,
    /// Typical protects PDFs with a password; other documents cannot be.
    UnprotectableDocument,
    /// Raw Data Storage: a vendor's opaque bytes.
    RawData,
    /// A private SOP class, whose content nobody can vouch for.
    PrivateClass,
    /// A clinic's `[[pixel_rule]]` says so (a worksheet page, say).
    PixelRule,
}

impl Discard {
    pub fn as_str(&self) -> &'static str {
        match self {
            Discard::Document => "encapsulated document (PDF, CDA, STL)",
            Discard::UnprotectableDocument => "document that cannot be password protected",
            Discard::RawData => "raw data",
            Discard::PrivateClass => "private SOP class",
            Discard::PixelRule => "image a pixel rule discards",
        }
    }
}

/// A PS3.15 action (Table E.1-1's basic profile column, resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// D: replace with a dummy value of the same VR.
    Dummy,
    /// Z: replace with an empty value.
    Empty,
    /// X: remove.
    Remove,
    /// U: replace the UID with a consistent keyed one (a sequence: keep, its UIDs replaced).
    Uid,
}

/// Makes the transform of each profile for each instance.
#[derive(Clone)]
pub struct Anonymizer {
    key: Arc<DeviceKey>,
    strict: StrictValues,
    document_password: DocumentPassword,
    book: Arc<PasswordBook>,
    pixel_rules: Arc<[PixelRule]>,
    /// Profiles whose copies of Implicit VR Little Endian instances are written
    /// in Explicit VR Little Endian (a destination takes no other).
    explicit_vr: Vec<Profile>,
}

impl Anonymizer {
    pub fn new(
        key: Arc<DeviceKey>,
        strict: StrictValues,
        document_password: DocumentPassword,
        book: PasswordBook,
        pixel_rules: &[PixelRule],
    ) -> Anonymizer {
        Anonymizer {
            key,
            strict,
            document_password,
            book: Arc::new(book),
            pixel_rules: pixel_rules.into(),
            explicit_vr: Vec::new(),
        }
    }

    /// The same, writing `profiles`' copies of implicit VR instances in explicit VR.
    pub fn writing_explicit_vr(mut self, profiles: Vec<Profile>) -> Anonymizer {
        self.explicit_vr = profiles;
        self
    }

    fn explicit(&self, profile: Profile, ts: &TransferSyntax) -> bool {
        ts.uid() == IMPLICIT_VR_LITTLE_ENDIAN && self.explicit_vr.contains(&profile)
    }

    /// The transfer syntax of `profile`'s copy of an instance sent in `ts`: the
    /// cleaning profiles write compressed pixel data they decode (all but JPEG
    /// baseline, blanked as it is) losslessly (`frames.rs`); everything else keeps
    /// its syntax.
    pub fn output_syntax<'a>(&self, profile: Profile, ts: &'a TransferSyntax) -> &'a str {
        if self.explicit(profile, ts) {
            return EXPLICIT_VR_LITTLE_ENDIAN;
        }
        let reencoded = Codec::of(ts.uid())
            .filter(|_| ts.is_encapsulated_pixel_data() && profile != Profile::Identified)
            .and_then(Codec::output_syntax);
        reencoded.unwrap_or(ts.uid())
    }

    /// The transform for `profile` on an instance of `sop_class_uid`, or why the
    /// profile discards such instances.
    pub fn transform(
        &self,
        profile: Profile,
        sop_class_uid: &str,
        ts: &TransferSyntax,
    ) -> Result<Box<dyn Transform + Send>, Discard> {
        if profile == Profile::Identified {
            return Ok(match self.explicit(profile, ts) {
                true => Box::new(Reencoded),
                false => Box::new(Identity),
            });
        }
        let strict = profile == Profile::Strict;
        let document = is_encapsulated_document(sop_class_uid);
        let pdf = sop_class_uid == ENCAPSULATED_PDF;
        // Strict discards what cannot be anonymized; typical keeps PDFs, password
        // protected, and discards the documents it cannot protect (CDA, STL, ...).
        if document && (strict || !pdf) {
            return Err(if strict {
                Discard::Document
            } else {
                Discard::UnprotectableDocument
            });
        }
        if !document && !anonymizable(sop_class_uid) && strict {
            return Err(if is_standard_storage(sop_class_uid) {
                Discard::RawData
            } else {
                Discard::PrivateClass
            });
        }
        let big_endian = ts.endianness() == Endianness::Big;
        Ok(Box::new(Deidentify {
            key: self.key.clone(),
            strict: strict.then(|| self.strict.clone()),
            iod: iod_of(sop_class_uid),
            big_endian,
            syntax: ts.uid().to_owned(),
            lossy_syntax: LOSSY_SYNTAXES.contains(&ts.uid()),
            pixels: Pixels::new(
                sop_class_uid,
                big_endian,
                ts.is_encapsulated_pixel_data(),
                Codec::of(ts.uid()),
                self.pixel_rules.clone(),
            ),
            uncleaned: None,
            document: (pdf && !strict).then(|| (self.document_password, self.book.clone())),
            study_uid: None,
            birth_date: None,
        }))
    }

    /// The SOP Instance UID an instance carries out of `profile`.
    pub fn instance_uid(&self, profile: Profile, uid: &str) -> String {
        match profile {
            Profile::Identified => uid.to_owned(),
            Profile::Typical | Profile::Strict => self.key.uid(profile, uid),
        }
    }
}

/// Whether the profiles can clean burned-in text from pixel data in transfer
/// syntax `ts`: native (and deflated) pixels, JPEG baseline in the DCT domain, and
/// the compressed syntaxes `frames.rs` decodes.
pub fn pixels_cleanable(ts: &str) -> bool {
    Codec::of(ts).is_some()
        || dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(ts)
            .is_some_and(|ts| !ts.is_encapsulated_pixel_data() && ts.can_decode_dataset())
}

/// Syntaxes whose pixels have lost information: their decoded copy says so.
const LOSSY_SYNTAXES: [&str; 3] = [
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
];

fn iod_of(sop_class_uid: &str) -> Option<&'static str> {
    rules::IOD_OF_SOP_CLASS
        .iter()
        .find(|(uid, _)| *uid == sop_class_uid)
        .map(|(_, iod)| *iod)
}

/// Standard classes other than documents and raw data: their content is DICOM
/// attributes (and pixels), which the profile knows how to clean.
fn anonymizable(sop_class_uid: &str) -> bool {
    is_standard_storage(sop_class_uid)
        && !is_encapsulated_document(sop_class_uid)
        && sop_class_uid != RAW_DATA
}

/// The `typical` (`strict: None`) and `strict` transform for one instance.
struct Deidentify {
    key: Arc<DeviceKey>,
    strict: Option<StrictValues>,
    iod: Option<&'static str>,
    big_endian: bool,
    /// The input's transfer syntax.
    syntax: String,
    /// The input's pixels are lossy compressed.
    lossy_syntax: bool,
    pixels: Pixels,
    /// Why this copy could not be cleaned (beyond its pixels): it must then not be
    /// kept at all.
    uncleaned: Option<String>,
    /// For a PDF under `typical`: the password policy and the book.
    document: Option<(DocumentPassword, Arc<PasswordBook>)>,
    /// The original Study Instance UID and birth date, for the document's password.
    study_uid: Option<String>,
    birth_date: Option<String>,
}

/// Tags whose values the transform reads to learn the pixel layout.
const PIXEL_FACTS: [Tag; 10] = [
    tags::MODALITY,
    tags::MANUFACTURER,
    tags::MANUFACTURER_MODEL_NAME,
    tags::SAMPLES_PER_PIXEL,
    tags::PHOTOMETRIC_INTERPRETATION,
    tags::PLANAR_CONFIGURATION,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::BURNED_IN_ANNOTATION,
];
const REGION_BOUNDS: [Tag; 4] = [
    tags::REGION_LOCATION_MIN_X0,
    tags::REGION_LOCATION_MIN_Y0,
    tags::REGION_LOCATION_MAX_X1,
    tags::REGION_LOCATION_MAX_Y1,
];
/// Study dates that `strict` cuts to the year.
const STRICT_YEAR_DATES: [Tag; 5] = [
    tags::STUDY_DATE,
    tags::SERIES_DATE,
    tags::ACQUISITION_DATE,
    tags::CONTENT_DATE,
    tags::ACQUISITION_DATE_TIME,
];
/// Conditional partners: (attribute, the attribute whose presence it requires).
const PARTNERS: [(Tag, Tag); 1] = [(tags::RESPONSIBLE_PERSON_ROLE, tags::RESPONSIBLE_PERSON)];
/// Times that `strict` empties (or sets to a dummy where the IOD requires a value).
const STRICT_TIMES: [Tag; 4] = [
    tags::STUDY_TIME,
    tags::SERIES_TIME,
    tags::ACQUISITION_TIME,
    tags::CONTENT_TIME,
];

impl Deidentify {
    fn profile(&self) -> Profile {
        match self.strict {
            Some(_) => Profile::Strict,
            None => Profile::Typical,
        }
    }

    /// The action for `tag` inside the sequences `path`: resolved by the Type the
    /// attribute has there (in the IOD at the top level, in the sequence's items
    /// below it), so that what the IOD requires stays present.
    fn action(&self, path: &[Tag], tag: Tag) -> Option<Action> {
        let find = |table: &'static [rules::Rule]| {
            table
                .binary_search_by_key(&(tag.group(), tag.element()), |r| r.tag)
                .ok()
                .map(|i| &table[i])
        };
        let strict_rule = self.strict.as_ref().and_then(|_| find(rules::STRICT_RULES));
        let rule = strict_rule.or_else(|| find(rules::RULES))?;
        let resolved = match path.last() {
            None => self.iod.and_then(|iod| {
                rule.by_iod
                    .iter()
                    .find(|(name, _)| *name == iod)
                    .map(|(_, a)| *a)
            }),
            Some(parent) => rule
                .in_sequence
                .iter()
                .find(|(sequence, _)| *sequence == (parent.group(), parent.element()))
                .map(|(_, a)| *a),
        };
        Some(resolved.unwrap_or(rule.basic))
    }

    /// An attribute whose presence is conditional on another's value (a 1C partner)
    /// goes when that one is removed or emptied.
    fn partner_removed(&self, path: &[Tag], tag: Tag) -> bool {
        PARTNERS.iter().any(|&(partner, principal)| {
            partner == tag
                && matches!(
                    self.action(path, principal),
                    Some(Action::Remove | Action::Empty)
                )
        })
    }

    fn uint(&self, value: &[u8]) -> Option<u32> {
        let bytes = |n: usize| value.get(..n);
        match value.len() {
            2 => bytes(2).map(|b| {
                let b = [b[0], b[1]];
                u32::from(if self.big_endian {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                })
            }),
            4 => bytes(4).map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                if self.big_endian {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                }
            }),
            _ => None,
        }
    }

    /// Records what an attribute tells about the pixels; the image attributes that
    /// describe decoded frames change where the copy re-encodes them.
    fn learn(&mut self, path: &[Tag], tag: Tag, value: &[u8]) -> Rewrite {
        let text = || {
            String::from_utf8_lossy(value)
                .trim_matches(['\0', ' '])
                .to_owned()
        };
        if path == [tags::SEQUENCE_OF_ULTRASOUND_REGIONS] {
            if let Some(i) = REGION_BOUNDS.iter().position(|t| *t == tag) {
                let bound = self.uint(value);
                let f = &mut self.pixels.facts;
                f.region[i] = bound;
                if let [Some(x0), Some(y0), Some(x1), Some(y1)] = f.region {
                    f.regions.push(Region { x0, y0, x1, y1 });
                    f.region = [None; 4];
                }
            }
            return Rewrite::Keep;
        }
        if !path.is_empty() {
            return Rewrite::Keep;
        }
        let number = self.uint(value);
        let (reencodes, ultrasound) = (self.pixels.reencodes(), self.pixels.ultrasound());
        let f = &mut self.pixels.facts;
        match tag {
            t if t == tags::MODALITY => f.modality = text(),
            t if t == tags::MANUFACTURER => f.manufacturer = text(),
            t if t == tags::MANUFACTURER_MODEL_NAME => f.model = text(),
            t if t == tags::BURNED_IN_ANNOTATION => f.burned_in = Some(text() == "YES"),
            t if t == tags::PHOTOMETRIC_INTERPRETATION => {
                f.photometric = text();
                let output = burned_in::output_photometric(&f.photometric);
                if reencodes && output != f.photometric {
                    return Rewrite::Value(output.as_bytes().to_vec());
                }
            }
            t if t == tags::SAMPLES_PER_PIXEL => f.samples_per_pixel = number.unwrap_or(0),
            t if t == tags::PLANAR_CONFIGURATION => {
                f.planar = number == Some(1);
                // RLE keeps every sample in a segment of its own whatever this says;
                // it tells decoders the layout to give: by pixel, but by plane for
                // an ultrasound image in YBR_FULL (PS3.3 C.8.5.6.1.16).
                let by_plane =
                    ultrasound && burned_in::output_photometric(&f.photometric) == "YBR_FULL";
                let wanted = [u8::from(by_plane), 0];
                if reencodes && value != wanted {
                    return Rewrite::Value(wanted.to_vec());
                }
            }
            t if t == tags::ROWS => f.rows = number.unwrap_or(0),
            t if t == tags::COLUMNS => f.columns = number.unwrap_or(0),
            t if t == tags::BITS_ALLOCATED => f.bits_allocated = number.unwrap_or(0),
            _ => {}
        }
        Rewrite::Keep
    }

    /// At the pixel data: clean, keep, or give up on this copy.
    fn plan_pixels(&mut self) -> Plan {
        match self.pixels.decide(&self.syntax) {
            Decision::Keep => Plan::Keep,
            Decision::Clean => Plan::Filter,
            Decision::Drop => Plan::Remove,
        }
    }

    fn dummy(&self, header: &DataElementHeader, value: &[u8]) -> Vec<u8> {
        match header.vr {
            VR::UI => self.replace_uids(value),
            VR::DA => b"19000101".to_vec(),
            VR::TM => b"000000".to_vec(),
            VR::DT => b"19000101000000".to_vec(),
            VR::AS => b"000Y".to_vec(),
            VR::IS | VR::DS => b"0".to_vec(),
            VR::PN | VR::LO | VR::SH | VR::LT | VR::ST | VR::UT | VR::UC | VR::CS | VR::AE => {
                b"ANONYMIZED".to_vec()
            }
            VR::UR => b"urn:anonymized".to_vec(),
            // Binary values: zeros of the same length keep the value well formed.
            _ => vec![0; value.len()],
        }
    }

    fn replace_uids(&self, value: &[u8]) -> Vec<u8> {
        unpadded(&String::from_utf8_lossy(value))
            .split('\\')
            .map(|uid| self.key.uid(self.profile(), uid))
            .collect::<Vec<_>>()
            .join("\\")
            .into_bytes()
    }
}

/// Free text in structured content can say anything; it is required (1C) where it
/// stands, so it becomes a dummy, never empty.
fn free_text_in_content(path: &[Tag], tag: Tag) -> bool {
    tag == tags::TEXT_VALUE && path.contains(&tags::CONTENT_SEQUENCE)
}

/// `YYYY....` -> `YYYY0101`, or with the year cut to its decade, or nothing.
fn cut_date(value: &[u8], cut: DateCut) -> Rewrite {
    let text = String::from_utf8_lossy(value);
    let text = text.trim();
    match text.get(..4).and_then(|y| y.parse::<u32>().ok()) {
        Some(year) if text.len() >= 8 && cut != DateCut::Removed => {
            let year = if cut == DateCut::Decade {
                year - year % 10
            } else {
                year
            };
            Rewrite::Value(format!("{year:04}0101").into_bytes())
        }
        _ => Rewrite::Value(Vec::new()),
    }
}

impl Transform for Deidentify {
    fn plan(&mut self, path: &[Tag], header: &DataElementHeader) -> Plan {
        let tag = header.tag;
        let group = tag.group();
        if group % 2 == 1
            || (0x5000..=0x50FF).contains(&group)
            || (0x6000..=0x60FF).contains(&group)
            || tag.element() == 0
        {
            // Private attributes, curves, overlays; group lengths would lie after changes.
            return Plan::Remove;
        }
        if tag == tags::PIXEL_DATA && path.is_empty() {
            return self.plan_pixels();
        }
        // Rewritten fragments have other offsets (the Basic Offset Table goes too).
        if path.is_empty()
            && [
                tags::EXTENDED_OFFSET_TABLE,
                tags::EXTENDED_OFFSET_TABLE_LENGTHS,
            ]
            .contains(&tag)
            && self.pixels.rewritten()
        {
            return Plan::Remove;
        }
        if path == [tags::SEQUENCE_OF_ULTRASOUND_REGIONS] && REGION_BOUNDS.contains(&tag) {
            return Plan::Inspect;
        }
        if self.document.is_some()
            && path.is_empty()
            && [tags::ENCAPSULATED_DOCUMENT, tags::PATIENT_BIRTH_DATE].contains(&tag)
        {
            return Plan::Inspect;
        }
        if self.strict.is_some() {
            if STRICT_YEAR_DATES.contains(&tag) || tag == tags::PATIENT_BIRTH_DATE {
                return Plan::Inspect;
            }
            if STRICT_TIMES.contains(&tag) && self.action(path, tag) != Some(Action::Dummy) {
                return Plan::Empty;
            }
        }
        if self.partner_removed(path, tag) {
            return Plan::Remove;
        }
        if free_text_in_content(path, tag) {
            return Plan::Inspect;
        }
        match self.action(path, tag) {
            Some(Action::Remove) => Plan::Remove,
            Some(Action::Empty) => Plan::Empty,
            // Structured content (an SR's measurements) is kept and cleaned item by
            // item (PS3.15 Clean Structured Content); any other dummy sequence would
            // need dummy content, and leaving it out is the safe equivalent.
            Some(Action::Dummy) if header.vr == VR::SQ && tag == tags::CONTENT_SEQUENCE => {
                Plan::Keep
            }
            Some(Action::Dummy) if header.vr == VR::SQ => Plan::Remove,
            Some(Action::Dummy) => Plan::Inspect,
            Some(Action::Uid) if header.vr == VR::SQ => Plan::Keep,
            Some(Action::Uid) => Plan::Inspect,
            None if StandardDataDictionary.by_tag(tag).is_none() => Plan::Remove,
            None if path.is_empty() && PIXEL_FACTS.contains(&tag) => Plan::Inspect,
            None => Plan::Keep,
        }
    }

    fn inspect_limit(&self, header: &DataElementHeader) -> u32 {
        if header.tag == tags::ENCAPSULATED_DOCUMENT && self.document.is_some() {
            document::DOCUMENT_LIMIT
        } else {
            crate::pipeline::stream::INSPECT_LIMIT
        }
    }

    fn rewrite(&mut self, path: &[Tag], header: &DataElementHeader, value: &[u8]) -> Rewrite {
        let tag = header.tag;
        if path.is_empty() {
            let text = || unpadded(&String::from_utf8_lossy(value)).to_owned();
            if tag == tags::STUDY_INSTANCE_UID {
                self.study_uid = Some(text());
            }
            if let Some((policy, book)) = &self.document {
                if tag == tags::PATIENT_BIRTH_DATE {
                    self.birth_date = Some(text());
                    return Rewrite::Value(Vec::new());
                }
                if tag == tags::ENCAPSULATED_DOCUMENT {
                    let anonymized = self
                        .study_uid
                        .as_deref()
                        .map(|uid| self.key.uid(self.profile(), uid));
                    let protected = document::password(
                        *policy,
                        book,
                        self.study_uid.as_deref(),
                        anonymized.as_deref(),
                        self.birth_date.as_deref(),
                    )
                    .and_then(|password| document::protect(value, &password));
                    return match protected {
                        Ok(pdf) => Rewrite::Value(pdf),
                        Err(reason) => {
                            self.uncleaned =
                                Some(format!("encapsulated PDF not protected: {reason}"));
                            Rewrite::Value(Vec::new())
                        }
                    };
                }
            }
        }
        if let Some(strict) = &self.strict {
            if STRICT_YEAR_DATES.contains(&tag) {
                return cut_date(value, strict.study_date);
            }
            if tag == tags::PATIENT_BIRTH_DATE {
                return cut_date(value, strict.birth_date);
            }
        }
        if free_text_in_content(path, tag) {
            return Rewrite::Value(self.dummy(header, value));
        }
        match self.action(path, tag) {
            Some(Action::Uid) => Rewrite::Value(self.replace_uids(value)),
            Some(Action::Dummy) => Rewrite::Value(self.dummy(header, value)),
            _ => self.learn(path, tag, value),
        }
    }

    fn additions(&mut self) -> Vec<Addition> {
        let text = |tag, vr, value: &str| Addition {
            tag,
            vr,
            value: AddedValue::Bytes(value.as_bytes().to_vec()),
        };
        let code = |value: &str, meaning: &str| {
            vec![
                (tags::CODE_VALUE, VR::SH, value.as_bytes().to_vec()),
                (tags::CODING_SCHEME_DESIGNATOR, VR::SH, b"DCM".to_vec()),
                (tags::CODE_MEANING, VR::LO, meaning.as_bytes().to_vec()),
            ]
        };
        // Burned In Annotation says NO once the pixels are cleaned, also where the
        // sender left it out; otherwise it stays as sent.
        let mut additions = vec![Addition {
            tag: tags::BURNED_IN_ANNOTATION,
            vr: VR::CS,
            value: AddedValue::Decided,
        }];
        let mut codes = vec![code("113100", "Basic Application Confidentiality Profile")];
        if self.pixels.ultrasound() {
            // Burned-in text is blanked (or the instance held back, never sent).
            codes.push(code("113101", "Clean Pixel Data Option"));
        }
        if self.iod.is_some_and(|iod| iod.contains("SR")) {
            codes.push(code("113104", "Clean Structured Content Option"));
        }
        let mut method = "DICOM PS3.15 E.1 Basic Profile".to_owned();
        if let Some(strict) = &self.strict {
            additions.push(text(tags::PATIENT_NAME, VR::PN, &strict.patient_name));
            additions.push(text(tags::PATIENT_ID, VR::LO, &strict.patient_id));
            additions.push(text(tags::PATIENT_SEX, VR::CS, &strict.patient_sex));
            codes.push(code(
                "113107",
                "Retain Longitudinal Temporal Information Modified Dates Option",
            ));
            method.push_str(", Modified Dates");
        }
        additions.push(text(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES"));
        additions.push(text(tags::DEIDENTIFICATION_METHOD, VR::LO, &method));
        additions.push(Addition {
            tag: tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
            vr: VR::SQ,
            value: AddedValue::Items(codes),
        });
        let temporal = if self.strict.is_some() {
            "MODIFIED"
        } else {
            "REMOVED"
        };
        additions.push(text(
            tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
            VR::CS,
            temporal,
        ));
        if self.lossy_syntax && self.pixels.reencodes() {
            // The frames are written losslessly, but what they hold was lossy.
            additions.push(text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01"));
        }
        additions.sort_by_key(|a| a.tag);
        additions
    }

    fn decide(&mut self, tag: Tag) -> Option<Vec<u8>> {
        (tag == tags::BURNED_IN_ANNOTATION && self.pixels.blanking_planned())
            .then(|| b"NO".to_vec())
    }

    fn filter(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.pixels.filter(bytes, out);
    }

    fn filter_end(&mut self, out: &mut Vec<u8>) {
        self.pixels.filter_end(out);
    }

    fn fragment(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pixels.fragment(bytes)
    }

    fn fragments_end(&mut self) -> Vec<Vec<u8>> {
        self.pixels.fragments_end()
    }

    fn uncleaned(&self) -> Option<String> {
        self.uncleaned
            .clone()
            .or_else(|| self.pixels.uncleaned().map(str::to_owned))
    }

    fn discarded(&self) -> bool {
        self.pixels.discarded()
    }

    fn inferred_area(&self) -> bool {
        self.pixels.inferred()
    }

    fn preserves_encoding(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit_le() -> TransferSyntax {
        dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased()
    }

    fn test_anonymizer() -> Anonymizer {
        let book = PasswordBook::new(&std::env::temp_dir().join("uplink-unused"));
        Anonymizer::new(
            Arc::new(DeviceKey::for_tests(1)),
            StrictValues::default(),
            DocumentPassword::PerStudy,
            book,
            &[],
        )
    }

    #[test]
    fn every_row_of_the_table_has_an_action_and_rows_are_sorted() {
        assert_eq!(rules::TABLE_ROWS, 621);
        assert_eq!(
            rules::RULES.len(),
            617,
            "the other 4 rows are tag patterns, handled in code"
        );
        assert!(rules::RULES.windows(2).all(|w| w[0].tag < w[1].tag));
    }

    #[test]
    fn composite_actions_follow_the_iod_types() {
        let anonymizer = test_anonymizer();
        let us = anonymizer
            .transform(
                Profile::Typical,
                "1.2.840.10008.5.1.4.1.1.6.1",
                &explicit_le(),
            )
            .unwrap();
        drop(us);
        let d = Deidentify {
            key: Arc::new(DeviceKey::for_tests(1)),
            strict: None,
            iod: iod_of("1.2.840.10008.5.1.4.1.1.6.1"),
            big_endian: false,
            syntax: "1.2.840.10008.1.2.1".into(),
            lossy_syntax: false,
            pixels: Pixels::new(
                "1.2.840.10008.5.1.4.1.1.6.1",
                false,
                false,
                None,
                Arc::new([]),
            ),
            uncleaned: None,
            document: None,
            study_uid: None,
            birth_date: None,
        };
        assert_eq!(d.iod, Some("US Image"));
        assert_eq!(d.action(&[], tags::PATIENT_NAME), Some(Action::Empty));
        assert_eq!(d.action(&[], tags::SOP_INSTANCE_UID), Some(Action::Uid));
        assert_eq!(d.action(&[], tags::INSTITUTION_NAME), Some(Action::Remove));
        assert_eq!(d.action(&[], tags::ROWS), None);
        // Type 2 in the items of the SR's Referenced Request Sequence: kept, empty.
        let request = [tags::REFERENCED_REQUEST_SEQUENCE];
        assert_eq!(
            d.action(&request, tags::REQUESTED_PROCEDURE_DESCRIPTION),
            Some(Action::Empty)
        );
        assert_eq!(
            d.action(&request, tags::REFERENCED_STUDY_SEQUENCE),
            Some(Action::Empty)
        );
        assert_eq!(
            d.action(&[], tags::REQUESTED_PROCEDURE_DESCRIPTION),
            Some(Action::Remove)
        );
    }

    #[test]
    fn dates_are_cut_to_year_and_decade() {
        assert_eq!(
            cut_date(b"20170304", DateCut::Year),
            Rewrite::Value(b"20170101".to_vec())
        );
        assert_eq!(
            cut_date(b"19930512", DateCut::Decade),
            Rewrite::Value(b"19900101".to_vec())
        );
        assert_eq!(
            cut_date(b"20170304101112.5", DateCut::Year),
            Rewrite::Value(b"20170101".to_vec())
        );
        assert_eq!(
            cut_date(b"20170304", DateCut::Removed),
            Rewrite::Value(Vec::new())
        );
        assert_eq!(cut_date(b"bad", DateCut::Year), Rewrite::Value(Vec::new()));
    }

    #[test]
    fn strict_discards_what_cannot_be_anonymized() {
        let anonymizer = test_anonymizer();
        for (class, why) in [
            ("1.2.840.10008.5.1.4.1.1.104.1", Discard::Document),
            ("1.2.840.10008.5.1.4.1.1.66", Discard::RawData),
            ("1.2.840.113619.4.30", Discard::PrivateClass),
        ] {
            assert_eq!(
                anonymizer
                    .transform(Profile::Strict, class, &explicit_le())
                    .err(),
                Some(why),
                "{class}"
            );
        }
        assert!(
            anonymizer
                .transform(
                    Profile::Typical,
                    "1.2.840.10008.5.1.4.1.1.104.2",
                    &explicit_le()
                )
                .err()
                == Some(Discard::UnprotectableDocument)
        );
        assert!(
            anonymizer
                .transform(Profile::Typical, ENCAPSULATED_PDF, &explicit_le())
                .is_ok()
        );
        assert!(
            anonymizer
                .transform(
                    Profile::Typical,
                    "1.2.840.10008.5.1.4.1.1.66",
                    &explicit_le()
                )
                .is_ok()
        );
        assert!(
            anonymizer
                .transform(
                    Profile::Strict,
                    "1.2.840.10008.5.1.4.1.1.6.1",
                    &explicit_le()
                )
                .is_ok()
        );
    }
}
