//! Streams one DICOM data set, token by token, from the network into spool files.
//!
//! This is the receive path's only contact with the data set. Element headers are
//! parsed as they arrive (dicom-parser's lazy reader over a stateful decoder on any
//! `Read`), and every value is copied through in small chunks, so memory stays flat
//! whatever the size of the instance. Each output has its own [`Transform`]: the
//! anonymization profiles plug in here, before a byte reaches the card.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use dicom_core::header::{DataElementHeader, HasLength, Length};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntax;
use dicom_encoding::encode::EncodeTo;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_parser::dataset::LazyDataToken;
use dicom_parser::dataset::lazy_read::LazyDataSetReader;
use dicom_parser::stateful::decode::{StatefulDecode, StatefulDecoder};
use dicom_parser::stateful::encode::StatefulEncoder;

/// Nesting deeper than this is refused: real objects stay under ten levels, and an
/// endless nesting must not grow our stacks.
pub const MAX_DEPTH: usize = 32;

/// A fragment a transform rewrites is read whole: one compressed frame, far less.
const FRAGMENT_LIMIT: u32 = 64 * 1024 * 1024;

/// Values up to this size can be read whole to be inspected or rewritten; a larger
/// one that a transform wants to inspect is removed instead (no attribute that
/// identifies anyone is that long, and memory stays bounded). A transform may raise
/// it for an element it must rewrite whole (an encapsulated PDF).
pub const INSPECT_LIMIT: u32 = 64 * 1024;

/// What a transform does with an element (or sequence) when it meets its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Copy it as it is (a sequence: copy, applying the transform inside).
    Keep,
    /// Leave it out (a sequence: with everything inside).
    Remove,
    /// Write it with an empty value (a sequence: with no items).
    Empty,
    /// Read the value and ask [`Transform::rewrite`].
    Inspect,
    /// Copy the value through [`Transform::filter`], chunk by chunk (pixel data).
    Filter,
}

/// What a transform makes of an inspected value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    Keep,
    /// A new value, as raw bytes in the transfer syntax (padding is added).
    Value(Vec<u8>),
}

/// An element a transform adds at the top level (or puts in place of one there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addition {
    pub tag: Tag,
    pub vr: VR,
    pub value: AddedValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddedValue {
    Bytes(Vec<u8>),
    /// Decided when the stream reaches the tag, from what came before it: the
    /// transform's [`Transform::decide`] gives the value, or none (and then an
    /// element of that tag in the data set goes through as usual).
    Decided,
    /// A sequence of items, each a list of (tag, VR, raw value) in tag order.
    Items(Vec<Vec<(Tag, VR, Vec<u8>)>>),
}

/// What a profile does to the data set on its way to one output.
pub trait Transform {
    /// The plan for the element `header`, inside the sequences `path` (outermost
    /// first; empty at the top level).
    fn plan(&mut self, path: &[Tag], header: &DataElementHeader) -> Plan;

    /// The largest value of `header` this transform inspects; a larger one planned
    /// [`Plan::Inspect`] is removed instead.
    fn inspect_limit(&self, _header: &DataElementHeader) -> u32 {
        INSPECT_LIMIT
    }

    /// The new value of an element planned [`Plan::Inspect`].
    fn rewrite(&mut self, _path: &[Tag], _header: &DataElementHeader, _value: &[u8]) -> Rewrite {
        Rewrite::Keep
    }

    /// Top-level elements to add, in ascending tag order; one with the tag of an
    /// element in the data set takes its place.
    fn additions(&mut self) -> Vec<Addition> {
        Vec::new()
    }

    /// The value of an [`AddedValue::Decided`] addition, asked when the stream
    /// reaches its tag; `None` adds nothing.
    fn decide(&mut self, _tag: Tag) -> Option<Vec<u8>> {
        None
    }

    /// Takes the next bytes of a value planned [`Plan::Filter`] and appends to `out`
    /// what to write now: the same number of bytes in the end, but it may hold some
    /// back (a frame it must see whole) until a later call or [`Transform::filter_end`].
    fn filter(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
    }

    /// At the end of a value planned [`Plan::Filter`]: the bytes still held back.
    fn filter_end(&mut self, _out: &mut Vec<u8>) {}

    /// For encapsulated pixel data planned [`Plan::Filter`]: the fragments to write
    /// for the next fragment read (after the offset table, which is dropped since
    /// offsets change). A transform may hold fragments back until a frame is whole.
    fn fragment(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        vec![bytes.to_vec()]
    }

    /// At the end of encapsulated pixel data planned [`Plan::Filter`]: the
    /// fragments still held back.
    fn fragments_end(&mut self) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// After the data set: why this output could not be cleaned as its profile
    /// must, in which case it is dropped, never kept or sent.
    fn uncleaned(&self) -> Option<String> {
        None
    }

    /// After the data set: whether the profile sends no copy of such an instance
    /// after all (a rule learnt from its attributes), acknowledged and counted.
    fn discarded(&self) -> bool {
        false
    }

    /// After the data set: whether the burned-in text was blanked around an image
    /// area inferred from the pixels (the image said nothing of where it lies).
    fn inferred_area(&self) -> bool {
        false
    }

    /// Whether the output may keep the input's encoding byte for byte, including
    /// explicit sequence and item lengths. A transform that removes or changes
    /// anything returns false, and sequences are then written with undefined length.
    fn preserves_encoding(&self) -> bool;
}

/// Every element as it is, in the output's own encoding (the `identified` profile
/// for a destination that takes explicit VR only).
pub struct Reencoded;

impl Transform for Reencoded {
    fn plan(&mut self, _path: &[Tag], _header: &DataElementHeader) -> Plan {
        Plan::Keep
    }

    fn preserves_encoding(&self) -> bool {
        false
    }
}

/// The `identified` profile: the data set exactly as received.
pub struct Identity;

impl Transform for Identity {
    fn plan(&mut self, _path: &[Tag], _header: &DataElementHeader) -> Plan {
        Plan::Keep
    }

    fn preserves_encoding(&self) -> bool {
        true
    }
}

/// One output of the stream: where it writes, what transform it applies, and the
/// encoding it is written in when it is not the input's (Implicit VR Little Endian
/// written as Explicit VR Little Endian: the same bytes, headers with their VRs).
pub struct Output<'a, W> {
    pub writer: W,
    pub transform: &'a mut dyn Transform,
    pub encoding: Option<&'a TransferSyntax>,
}

/// What the stream saw of the instance.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    /// A kept copy was cleaned around an image area inferred from its pixels.
    pub area_inferred: bool,
}

impl Summary {
    fn note(&mut self, tag: Tag, value: &[u8]) {
        let text = crate::standard::unpadded(&String::from_utf8_lossy(value)).to_owned();
        if tag == tags::SOP_CLASS_UID {
            self.sop_class_uid = Some(text);
        } else {
            self.sop_instance_uid = Some(text);
        }
    }
}

/// The input's nesting levels, innermost last.
#[derive(Clone, Copy)]
enum Level {
    Sequence { undefined: bool },
    Item { undefined: bool },
    PixelSequence,
}

type Encoder<'a, W> = StatefulEncoder<W, Box<dyn EncodeTo<W> + 'a>>;

struct Sink<'a, W: Write> {
    encoder: Encoder<'a, W>,
    /// Encodes headers exactly as given (the stateful encoder rounds odd lengths
    /// up), for a sink that preserves the input's encoding.
    exact: Box<dyn EncodeTo<Vec<u8>>>,
    transform: &'a mut dyn Transform,
    preserve: bool,
    additions: VecDeque<Addition>,
    /// While set, this sink is inside a removed sequence that began at this depth.
    skip_from: Option<usize>,
    /// The plan for the value being copied.
    plan: Plan,
    /// This sink rewrites the fragments of the pixel data being copied.
    fragments: bool,
    /// A fragment's item header waits for its (rewritten) length.
    deferred_item: bool,
}

type WriteResult = Result<(), dicom_parser::stateful::encode::Error>;

impl<'a, W: Write + 'a> Sink<'a, W> {
    fn new(output: Output<'a, W>, input: &TransferSyntax) -> Result<Sink<'a, W>, String> {
        let ts = output.encoding.unwrap_or(input);
        let cannot = || format!("cannot encode transfer syntax {}", ts.uid());
        let encoder: Box<dyn EncodeTo<W>> = ts.encoder_for::<W>().ok_or_else(cannot)?;
        let exact = ts.encoder_for::<Vec<u8>>().ok_or_else(cannot)?;
        Ok(Sink {
            encoder: StatefulEncoder::new(output.writer, encoder, SpecificCharacterSet::default()),
            exact,
            preserve: output.transform.preserves_encoding() && output.encoding.is_none(),
            additions: output.transform.additions().into(),
            transform: output.transform,
            skip_from: None,
            plan: Plan::Keep,
            fragments: false,
            deferred_item: false,
        })
    }
}

impl<W: Write> Sink<'_, W> {
    /// Before a top-level element `tag`: writes the additions that come first.
    /// Returns whether an addition takes the element's place.
    fn additions_before(
        &mut self,
        tag: Tag,
    ) -> Result<bool, dicom_parser::stateful::encode::Error> {
        while let Some(next) = self.additions.front() {
            if next.tag > tag {
                return Ok(false);
            }
            let mut addition = self.additions.pop_front().expect("front exists");
            if addition.value == AddedValue::Decided {
                match self.transform.decide(addition.tag) {
                    Some(bytes) => addition.value = AddedValue::Bytes(bytes),
                    None => continue,
                }
            }
            write_addition(&mut self.encoder, &addition)?;
            if addition.tag == tag {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The plan for an element at `path`, with additions at the top level applied.
    fn plan(
        &mut self,
        path: &[Tag],
        header: &DataElementHeader,
    ) -> Result<Plan, dicom_parser::stateful::encode::Error> {
        if path.is_empty() && self.additions_before(header.tag)? {
            return Ok(Plan::Remove);
        }
        Ok(self.transform.plan(path, header))
    }

    /// An element header; a preserving sink writes it as received, odd length and
    /// all: padding a value inside an explicit-length item would make the item's
    /// length wrong and the rest of the copy unreadable.
    fn element_header(&mut self, header: DataElementHeader) -> WriteResult {
        if !self.preserve {
            return self.encoder.encode_element_header(header);
        }
        let mut bytes = Vec::with_capacity(12);
        self.exact
            .encode_element_header(&mut bytes, header)
            .expect("a header encodes into memory");
        self.encoder.write_raw_bytes(&bytes)
    }

    /// An item header, likewise.
    fn item_header(&mut self, len: u32) -> WriteResult {
        if !self.preserve {
            return self.encoder.encode_item_header(len);
        }
        let mut bytes = Vec::with_capacity(8);
        self.exact
            .encode_item_header(&mut bytes, len)
            .expect("a header encodes into memory");
        self.encoder.write_raw_bytes(&bytes)
    }

    /// One fragment of rewritten pixel data, as an item of its own.
    fn write_fragment(&mut self, fragment: &[u8]) -> WriteResult {
        let bytes = padded(VR::OB, fragment);
        self.encoder.encode_item_header(bytes.len() as u32)?;
        self.encoder.write_raw_bytes(&bytes)
    }

    fn write_element(&mut self, header: DataElementHeader, value: &[u8]) -> WriteResult {
        if self.preserve {
            self.element_header(header)?;
            return self.encoder.write_raw_bytes(value);
        }
        let value = padded(header.vr, value);
        self.encoder.encode_element_header(DataElementHeader::new(
            header.tag,
            header.vr,
            Length(value.len() as u32),
        ))?;
        self.encoder.write_raw_bytes(&value)
    }
}

fn write_addition<W: Write>(encoder: &mut Encoder<'_, W>, addition: &Addition) -> WriteResult {
    match &addition.value {
        AddedValue::Decided => Ok(()),
        AddedValue::Bytes(bytes) => {
            let value = padded(addition.vr, bytes);
            encoder.encode_element_header(DataElementHeader::new(
                addition.tag,
                addition.vr,
                Length(value.len() as u32),
            ))?;
            encoder.write_raw_bytes(&value)
        }
        AddedValue::Items(items) => {
            encoder.encode_element_header(DataElementHeader::new(
                addition.tag,
                VR::SQ,
                Length::UNDEFINED,
            ))?;
            for item in items {
                encoder.encode_item_header(Length::UNDEFINED.0)?;
                for (tag, vr, bytes) in item {
                    let value = padded(*vr, bytes);
                    encoder.encode_element_header(DataElementHeader::new(
                        *tag,
                        *vr,
                        Length(value.len() as u32),
                    ))?;
                    encoder.write_raw_bytes(&value)?;
                }
                encoder.encode_item_delimiter()?;
            }
            encoder.encode_sequence_delimiter()
        }
    }
}

/// A value padded to even length as PS3.5 6.2 says: UIDs with NUL, text with space.
fn padded(vr: VR, value: &[u8]) -> Vec<u8> {
    let mut value = value.to_vec();
    if value.len() % 2 == 1 {
        value.push(match vr {
            VR::UI => 0,
            vr if is_text(vr) => b' ',
            _ => 0,
        });
    }
    value
}

/// Copies a data set from `source` (encoded in `ts`) into every output. The error
/// explains what in the data set could not be read or written; the caller tells a
/// network fault or a full disk from a malformed data set by asking the reader and
/// the writers, which keep their own errors.
pub fn copy<'a, R: Read, W: Write + 'a>(
    source: R,
    ts: &TransferSyntax,
    outputs: Vec<Output<'a, W>>,
) -> Result<Summary, String> {
    let decoder = StatefulDecoder::new_with(source, ts, SpecificCharacterSet::default(), 0)
        .map_err(|e| format!("cannot decode transfer syntax {}: {e}", ts.uid()))?;
    let mut reader = LazyDataSetReader::new(decoder);
    let mut walk = Walk {
        sinks: outputs
            .into_iter()
            .map(|output| Sink::new(output, ts))
            .collect::<Result<_, _>>()?,
        levels: Vec::new(),
        path: Vec::new(),
        summary: Summary::default(),
        fragment_index: 0,
    };
    while let Some(token) = reader.advance() {
        match token.map_err(|e| format!("malformed data set: {e}"))? {
            // The value token that follows carries the same header.
            LazyDataToken::ElementHeader(_) => {}
            LazyDataToken::SequenceStart { tag, len } => walk.sequence_start(tag, len)?,
            LazyDataToken::PixelSequenceStart => walk.pixel_sequence_start()?,
            LazyDataToken::ItemStart { len } => walk.item_start(len)?,
            LazyDataToken::ItemEnd => walk.item_end()?,
            LazyDataToken::SequenceEnd => walk.sequence_end()?,
            LazyDataToken::LazyValue { header, decoder } => walk.value(header, decoder)?,
            LazyDataToken::LazyItemValue { len, decoder } if walk.rewrites_fragments() => {
                walk.fragment(len, decoder)?
            }
            LazyDataToken::LazyItemValue { len, decoder } => walk.item_value(len, decoder)?,
            other => return Err(format!("malformed data set: unexpected token {other:?}")),
        }
    }
    walk.finish()
}

fn write_failed(e: dicom_parser::stateful::encode::Error) -> String {
    format!("write failed: {e}")
}

/// Where the copy is in the data set, and the outputs it writes.
struct Walk<'a, W: Write> {
    sinks: Vec<Sink<'a, W>>,
    /// The input's nesting levels, innermost last.
    levels: Vec<Level>,
    /// The tags of the sequences we are in, outermost first.
    path: Vec<Tag>,
    summary: Summary,
    /// Items seen in the current encapsulated pixel data (0: the offset table).
    fragment_index: usize,
}

impl<W: Write> Walk<'_, W> {
    fn deeper(&self) -> Result<usize, String> {
        let depth = self.levels.len();
        if depth >= MAX_DEPTH {
            return Err(format!("data set nests deeper than {MAX_DEPTH} levels"));
        }
        Ok(depth)
    }

    fn sequence_start(&mut self, tag: Tag, len: Length) -> Result<(), String> {
        let depth = self.deeper()?;
        let header = DataElementHeader::new(tag, VR::SQ, len);
        for sink in self.sinks.iter_mut().filter(|s| s.skip_from.is_none()) {
            match sink.plan(&self.path, &header).map_err(write_failed)? {
                Plan::Keep | Plan::Inspect | Plan::Filter => {
                    let len = if sink.preserve {
                        len
                    } else {
                        Length::UNDEFINED
                    };
                    sink.element_header(DataElementHeader::new(tag, VR::SQ, len))
                        .map_err(write_failed)?;
                }
                Plan::Empty => {
                    sink.encoder
                        .encode_element_header(DataElementHeader::new(tag, VR::SQ, Length(0)))
                        .map_err(write_failed)?;
                    sink.skip_from = Some(depth);
                }
                Plan::Remove => sink.skip_from = Some(depth),
            }
        }
        self.levels.push(Level::Sequence {
            undefined: len.is_undefined(),
        });
        self.path.push(tag);
        Ok(())
    }

    fn pixel_sequence_start(&mut self) -> Result<(), String> {
        let depth = self.levels.len();
        let header = DataElementHeader::new(tags::PIXEL_DATA, VR::OB, Length::UNDEFINED);
        for sink in self.sinks.iter_mut().filter(|s| s.skip_from.is_none()) {
            match sink.plan(&self.path, &header).map_err(write_failed)? {
                Plan::Keep | Plan::Inspect => sink
                    .encoder
                    .encode_element_header(header)
                    .map_err(write_failed)?,
                Plan::Filter => {
                    sink.fragments = true;
                    sink.encoder
                        .encode_element_header(header)
                        .map_err(write_failed)?
                }
                Plan::Empty | Plan::Remove => sink.skip_from = Some(depth),
            }
        }
        self.fragment_index = 0;
        self.levels.push(Level::PixelSequence);
        self.path.push(tags::PIXEL_DATA);
        Ok(())
    }

    fn item_start(&mut self, len: Length) -> Result<(), String> {
        self.deeper()?;
        let in_pixel_data = matches!(self.levels.last(), Some(Level::PixelSequence));
        for sink in self.sinks.iter_mut().filter(|s| s.skip_from.is_none()) {
            if in_pixel_data && sink.fragments {
                sink.deferred_item = true;
                continue;
            }
            // Fragments keep their (always explicit) length.
            let len = if sink.preserve || in_pixel_data {
                len
            } else {
                Length::UNDEFINED
            };
            sink.item_header(len.0).map_err(write_failed)?;
        }
        self.levels.push(Level::Item {
            undefined: len.is_undefined(),
        });
        Ok(())
    }

    fn item_end(&mut self) -> Result<(), String> {
        let Some(Level::Item { undefined }) = self.levels.pop() else {
            return Err("malformed data set: item end outside an item".into());
        };
        let in_pixel_data = matches!(self.levels.last(), Some(Level::PixelSequence));
        for sink in self.sinks.iter_mut().filter(|s| s.skip_from.is_none()) {
            if sink.deferred_item {
                // An empty fragment (or offset table): no value came.
                sink.encoder.encode_item_header(0).map_err(write_failed)?;
                sink.deferred_item = false;
            }
            if !in_pixel_data && (undefined || !sink.preserve) {
                sink.encoder.encode_item_delimiter().map_err(write_failed)?;
            }
        }
        if in_pixel_data {
            self.fragment_index += 1;
        }
        Ok(())
    }

    fn sequence_end(&mut self) -> Result<(), String> {
        let undefined = match self.levels.pop() {
            Some(Level::Sequence { undefined }) => undefined,
            Some(Level::PixelSequence) => true,
            _ => return Err("malformed data set: sequence end outside a sequence".into()),
        };
        self.path.pop();
        let depth = self.levels.len();
        for sink in self.sinks.iter_mut() {
            if std::mem::take(&mut sink.fragments) && sink.skip_from.is_none() {
                for fragment in sink.transform.fragments_end() {
                    sink.write_fragment(&fragment).map_err(write_failed)?;
                }
            }
            match sink.skip_from {
                Some(from) if from == depth => sink.skip_from = None,
                Some(_) => {}
                None if undefined || !sink.preserve => sink
                    .encoder
                    .encode_sequence_delimiter()
                    .map_err(write_failed)?,
                None => {}
            }
        }
        Ok(())
    }

    /// An element's value: read whole where a transform inspects it (or the
    /// summary wants it), else streamed through in chunks.
    fn value(
        &mut self,
        header: DataElementHeader,
        decoder: &mut impl StatefulDecode,
    ) -> Result<(), String> {
        let len = header.length().0;
        let wanted_by_summary = self.levels.is_empty()
            && (header.tag == tags::SOP_CLASS_UID || header.tag == tags::SOP_INSTANCE_UID);
        let inspected = self.plan_value(&header)?;
        if inspected || (wanted_by_summary && len <= INSPECT_LIMIT) {
            let value = read_value(decoder, len, header.tag)?;
            if wanted_by_summary {
                self.summary.note(header.tag, &value);
            }
            self.write_whole(header, &value)
        } else {
            self.stream(header, decoder)
        }
    }

    /// Each sink's plan for the value; whether one of them inspects it whole.
    fn plan_value(&mut self, header: &DataElementHeader) -> Result<bool, String> {
        let len = header.length().0;
        let mut inspected = false;
        for sink in self.sinks.iter_mut() {
            sink.plan = if sink.skip_from.is_some() {
                Plan::Remove
            } else {
                sink.plan(&self.path, header).map_err(write_failed)?
            };
            if sink.plan == Plan::Inspect {
                if len <= sink.transform.inspect_limit(header) {
                    inspected = true;
                } else {
                    sink.plan = Plan::Remove;
                }
            }
        }
        Ok(inspected)
    }

    fn write_whole(&mut self, header: DataElementHeader, value: &[u8]) -> Result<(), String> {
        for sink in self.sinks.iter_mut() {
            let written = match sink.plan {
                Plan::Keep => sink.write_element(header, value),
                Plan::Filter => {
                    let mut filtered = Vec::with_capacity(value.len());
                    sink.transform.filter(value, &mut filtered);
                    sink.transform.filter_end(&mut filtered);
                    sink.write_element(header, &filtered)
                }
                Plan::Empty => sink.write_element(header, &[]),
                Plan::Remove => Ok(()),
                Plan::Inspect => match sink.transform.rewrite(&self.path, &header, value) {
                    Rewrite::Keep => sink.write_element(header, value),
                    Rewrite::Value(new) => sink.write_element(header, &new),
                },
            };
            written.map_err(write_failed)?;
        }
        Ok(())
    }

    fn stream(
        &mut self,
        header: DataElementHeader,
        decoder: &mut impl StatefulDecode,
    ) -> Result<(), String> {
        for sink in self.sinks.iter_mut() {
            match sink.plan {
                Plan::Keep | Plan::Filter => sink.element_header(header).map_err(write_failed)?,
                Plan::Empty => sink.write_element(header, &[]).map_err(write_failed)?,
                Plan::Remove | Plan::Inspect => {}
            }
        }
        let len = header.length().0;
        copy_value(decoder, len, header.tag, &mut self.sinks)?;
        let mut held = Vec::new();
        for sink in self.sinks.iter_mut().filter(|s| s.plan == Plan::Filter) {
            held.clear();
            sink.transform.filter_end(&mut held);
            sink.encoder.write_raw_bytes(&held).map_err(write_failed)?;
        }
        if len % 2 == 1 {
            // The encoder wrote an even length; pad as PS3.5 6.2 says.
            let pad = padded(header.vr, &[0])[1..].to_vec();
            for sink in self
                .sinks
                .iter_mut()
                .filter(|s| !s.preserve && matches!(s.plan, Plan::Keep | Plan::Filter))
            {
                sink.encoder.write_raw_bytes(&pad).map_err(write_failed)?;
            }
        }
        Ok(())
    }

    /// Whether a sink rewrites the fragments of the pixel data being read.
    fn rewrites_fragments(&self) -> bool {
        self.sinks
            .iter()
            .any(|s| s.fragments && s.skip_from.is_none())
    }

    /// A fragment of encapsulated pixel data, read whole for the sinks that
    /// rewrite it (one compressed frame).
    fn fragment(&mut self, len: u32, decoder: &mut impl StatefulDecode) -> Result<(), String> {
        if len > FRAGMENT_LIMIT {
            return Err(format!(
                "pixel data fragment of {len} bytes is too large to rewrite"
            ));
        }
        let value = read_value(decoder, len, Tag(0xFFFE, 0xE000))?;
        for sink in self.sinks.iter_mut().filter(|s| s.skip_from.is_none()) {
            if !sink.fragments {
                sink.encoder.write_raw_bytes(&value).map_err(write_failed)?;
                continue;
            }
            sink.deferred_item = false;
            if self.fragment_index == 0 {
                sink.encoder.encode_item_header(0).map_err(write_failed)?;
                continue;
            }
            for fragment in sink.transform.fragment(&value) {
                sink.write_fragment(&fragment).map_err(write_failed)?;
            }
        }
        Ok(())
    }

    fn item_value(&mut self, len: u32, decoder: &mut impl StatefulDecode) -> Result<(), String> {
        for sink in self.sinks.iter_mut() {
            sink.plan = if sink.skip_from.is_none() {
                Plan::Keep
            } else {
                Plan::Remove
            };
        }
        copy_value(decoder, len, Tag(0xFFFE, 0xE000), &mut self.sinks)?;
        Ok(())
    }

    fn finish(mut self) -> Result<Summary, String> {
        if !self.levels.is_empty() {
            return Err(format!(
                "data set ends inside {} open sequence(s) or item(s): truncated",
                self.levels.len()
            ));
        }
        for sink in &mut self.sinks {
            // Additions past the last element.
            sink.additions_before(Tag(0xFFFF, 0xFFFF))
                .map_err(write_failed)?;
            sink.encoder
                .flush()
                .map_err(|e| format!("write failed: {e}"))?;
        }
        Ok(self.summary)
    }
}

/// Streams a value of `len` bytes to every sink that keeps it, in chunks.
fn copy_value<W: Write>(
    decoder: &mut impl StatefulDecode,
    len: u32,
    tag: Tag,
    sinks: &mut [Sink<'_, W>],
) -> Result<(), String> {
    let mut fanout = Fanout {
        sinks,
        written: 0,
        scratch: Vec::new(),
    };
    decoder
        .read_to(len, &mut fanout)
        .map_err(|e| format!("malformed data set: {e}"))?;
    if fanout.written != u64::from(len) {
        return Err(truncated(tag, len, fanout.written));
    }
    Ok(())
}

/// Reads a value of `len` bytes whole.
fn read_value(decoder: &mut impl StatefulDecode, len: u32, tag: Tag) -> Result<Vec<u8>, String> {
    let mut value = Vec::with_capacity(len as usize);
    decoder
        .read_to_vec(len, &mut value)
        .map_err(|e| format!("malformed data set: {e}"))?;
    if value.len() != len as usize {
        return Err(truncated(tag, len, value.len() as u64));
    }
    Ok(value)
}

fn truncated(tag: Tag, len: u32, got: u64) -> String {
    format!("data set truncated: element {tag} announces {len} bytes, only {got} arrived")
}

pub fn is_text(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::ST
            | VR::TM
            | VR::UC
            | VR::UR
            | VR::UT
    )
}

/// Writes one value's bytes to every sink that keeps it, counting them.
struct Fanout<'s, 'a, W: Write> {
    sinks: &'s mut [Sink<'a, W>],
    written: u64,
    /// A copy of the chunk for sinks that filter it.
    scratch: Vec<u8>,
}

impl<W: Write> Write for Fanout<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for sink in self.sinks.iter_mut() {
            let result = match sink.plan {
                Plan::Keep => sink.encoder.write_raw_bytes(buf),
                Plan::Filter => {
                    self.scratch.clear();
                    sink.transform.filter(buf, &mut self.scratch);
                    sink.encoder.write_raw_bytes(&self.scratch)
                }
                _ => Ok(()),
            };
            result.map_err(|e| io::Error::other(e.to_string()))?;
        }
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_object::InMemDicomObject;
    use dicom_transfer_syntax_registry::entries;

    fn sample() -> InMemDicomObject {
        let item = InMemDicomObject::from_element_iter([DataElement::new(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3.9"),
        )]);
        InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.6.1"),
            ),
            DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("1.2.3.4"),
            ),
            DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("DOE^JANE")),
            DataElement::new(
                tags::REFERENCED_IMAGE_SEQUENCE,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(vec![item]),
            ),
            DataElement::new(Tag(0x0009, 0x0010), VR::LO, PrimitiveValue::from("ACME")),
            DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U8(vec![7u8; 10_000].into()),
            ),
        ])
    }

    fn encode(object: &InMemDicomObject, ts: &TransferSyntax) -> Vec<u8> {
        let mut bytes = Vec::new();
        object.write_dataset_with_ts(&mut bytes, ts).unwrap();
        bytes
    }

    fn run(
        input: &[u8],
        ts: &TransferSyntax,
        transform: &mut dyn Transform,
    ) -> Result<(Vec<u8>, Summary), String> {
        let mut out = Vec::new();
        let summary = copy(
            input,
            ts,
            vec![Output {
                writer: &mut out,
                transform,
                encoding: None,
            }],
        )?;
        Ok((out, summary))
    }

    #[test]
    fn identity_preserves_every_byte_in_each_uncompressed_syntax() {
        for ts in [
            entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            entries::EXPLICIT_VR_BIG_ENDIAN.erased(),
        ] {
            let input = encode(&sample(), &ts);
            let (output, summary) = run(&input, &ts, &mut Identity).unwrap();
            assert_eq!(output, input, "{}", ts.name());
            assert_eq!(summary.sop_instance_uid.as_deref(), Some("1.2.3.4"));
            assert_eq!(
                summary.sop_class_uid.as_deref(),
                Some("1.2.840.10008.5.1.4.1.1.6.1")
            );
        }
    }

    #[test]
    fn odd_values_in_explicit_length_items_are_copied_as_received() {
        // An explicit-length sequence whose one explicit-length item holds two
        // values of odd length (as some modalities send): 8 + 5 and 8 + 3 bytes.
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut item = Vec::new();
        for (element, value) in [(0x0100u16, &b"ABCDE"[..]), (0x0102, b"XYZ")] {
            item.extend([0x08, 0x00]);
            item.extend(element.to_le_bytes());
            item.extend(b"LO");
            item.extend((value.len() as u16).to_le_bytes());
            item.extend(value);
        }
        let mut input = Vec::new();
        input.extend([0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
        input.extend((item.len() as u32 + 8).to_le_bytes());
        input.extend([0xFE, 0xFF, 0x00, 0xE0]);
        input.extend((item.len() as u32).to_le_bytes());
        input.extend(&item);
        // An element after the sequence, which a wrong item length would swallow.
        input.extend([0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0]);
        input.extend(b"DOE^");
        let (output, _) = run(&input, &ts, &mut Identity).unwrap();
        assert_eq!(
            output, input,
            "the identified copy is the input, byte for byte"
        );
    }

    #[test]
    fn encapsulated_pixel_data_is_copied_fragment_by_fragment() {
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut input = encode(&sample(), &ts);
        // Replace the native pixel data with an encapsulated one: header, empty offset
        // table, two fragments, sequence delimiter.
        let at = input
            .windows(4)
            .position(|w| w == [0xE0, 0x7F, 0x10, 0x00])
            .unwrap();
        input.truncate(at);
        input.extend([
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        input.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        for fragment in [&[1u8, 2, 3, 4][..], &[5, 6]] {
            input.extend([0xFE, 0xFF, 0x00, 0xE0]);
            input.extend((fragment.len() as u32).to_le_bytes());
            input.extend(fragment);
        }
        input.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get("1.2.840.10008.1.2.4.50")
            .unwrap();
        use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
        let (output, _) = run(&input, ts, &mut Identity).unwrap();
        assert_eq!(output, input);
    }

    /// A transform that drops private elements and sequences, empties the name,
    /// rewrites the ID and adds an element, as the anonymizing profiles will.
    struct DropPrivateAndSequences;

    impl Transform for DropPrivateAndSequences {
        fn plan(&mut self, _path: &[Tag], header: &DataElementHeader) -> Plan {
            if header.tag.group() % 2 == 1 || header.vr == VR::SQ {
                Plan::Remove
            } else if header.tag == tags::PATIENT_NAME {
                Plan::Empty
            } else if header.tag == tags::SOP_INSTANCE_UID {
                Plan::Inspect
            } else {
                Plan::Keep
            }
        }
        fn rewrite(&mut self, _path: &[Tag], _header: &DataElementHeader, value: &[u8]) -> Rewrite {
            let mut new = b"9.".to_vec();
            new.extend_from_slice(value.strip_suffix(b"\0").unwrap_or(value));
            Rewrite::Value(new)
        }
        fn additions(&mut self) -> Vec<Addition> {
            vec![
                Addition {
                    tag: tags::PATIENT_ID,
                    vr: VR::LO,
                    value: AddedValue::Bytes(b"000000".to_vec()),
                },
                Addition {
                    tag: tags::PATIENT_IDENTITY_REMOVED,
                    vr: VR::CS,
                    value: AddedValue::Bytes(b"YES".to_vec()),
                },
                Addition {
                    tag: tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
                    vr: VR::SQ,
                    value: AddedValue::Items(vec![vec![(
                        tags::CODE_VALUE,
                        VR::SH,
                        b"113100".to_vec(),
                    )]]),
                },
            ]
        }
        fn preserves_encoding(&self) -> bool {
            false
        }
    }

    #[test]
    fn removed_elements_and_sequences_leave_a_valid_data_set() {
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let input = encode(&sample(), &ts);
        let (output, _) = run(&input, &ts, &mut DropPrivateAndSequences).unwrap();
        let read = InMemDicomObject::read_dataset_with_ts(&output[..], &ts).unwrap();
        assert!(read.element(Tag(0x0009, 0x0010)).is_err());
        assert!(read.element(tags::REFERENCED_IMAGE_SEQUENCE).is_err());
        assert_eq!(
            read.element(tags::PATIENT_NAME).unwrap().to_str().unwrap(),
            ""
        );
        assert_eq!(
            read.element(tags::PATIENT_ID).unwrap().to_str().unwrap(),
            "000000"
        );
        assert_eq!(
            read.element(tags::SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap(),
            "9.1.2.3.4"
        );
        assert_eq!(
            read.element(tags::PATIENT_IDENTITY_REMOVED)
                .unwrap()
                .to_str()
                .unwrap(),
            "YES"
        );
        let codes = read
            .element(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(
            codes[0]
                .element(tags::CODE_VALUE)
                .unwrap()
                .to_str()
                .unwrap(),
            "113100"
        );
        assert_eq!(
            read.element(tags::PIXEL_DATA)
                .unwrap()
                .to_bytes()
                .unwrap()
                .len(),
            10_000
        );
        assert!(!output.windows(8).any(|w| w == b"DOE^JANE"));
    }

    #[test]
    fn two_outputs_get_their_own_transform() {
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let input = encode(&sample(), &ts);
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        let (mut identity, mut strict) = (Identity, DropPrivateAndSequences);
        copy(
            &input[..],
            &ts,
            vec![
                Output {
                    writer: &mut kept,
                    transform: &mut identity,
                    encoding: None,
                },
                Output {
                    writer: &mut dropped,
                    transform: &mut strict,
                    encoding: None,
                },
            ],
        )
        .unwrap();
        assert_eq!(kept, input);
        assert!(!dropped.windows(8).any(|w| w == b"DOE^JANE"));
    }

    #[test]
    fn truncated_values_are_reported_not_accepted() {
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let input = encode(&sample(), &ts);
        let cut = &input[..input.len() - 100];
        let error = run(cut, &ts, &mut Identity).unwrap_err();
        assert!(error.contains("truncated"), "{error}");
    }

    #[test]
    fn truncation_inside_a_sequence_is_reported() {
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut input = Vec::new();
        // An undefined-length sequence holding one complete item, then the end of input.
        input.extend([
            0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        input.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        let error = run(&input, &ts, &mut Identity).unwrap_err();
        assert!(
            error.contains("truncated") || error.contains("malformed"),
            "{error}"
        );
    }

    #[test]
    fn excessive_nesting_is_refused() {
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut input = Vec::new();
        for _ in 0..100 {
            input.extend([
                0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            input.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        let error = run(&input, &ts, &mut Identity).unwrap_err();
        assert!(error.contains("deeper"), "{error}");
    }

    #[test]
    fn garbage_is_malformed() {
        let ts = entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert!(run(&garbage, &ts, &mut Identity).is_err());
    }
}
