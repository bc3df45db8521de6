//! Burned-in text: which images are cleaned, where their image lies, and cleaning
//! their pixel data frame by frame in any syntax the profiles can decode.
//!
//! Every ultrasound image is cleaned (whatever its Burned In Annotation says: real
//! machines say NO and carry text), every image that says YES, and whatever a
//! clinic's pixel rule names; other images keep their pixels, as PS3.15 allows.
//! Where the image lies comes from, in this order: the clinic's pixel rule, the
//! Sequence of Ultrasound Regions, the pixels of the first frame (`area.rs`).
//! Everything outside is blanked. A copy whose pixels cannot be cleaned says why,
//! and is never kept.

use std::sync::Arc;

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;

use super::area::{self, Luma};
use super::frames::{Codec, Gather};
use super::pixels::{Blanker, Layout, Region};
use super::{jpeg, rle};
use crate::config::{PixelAction, PixelRule};
use crate::standard::is_ultrasound;

/// What the attributes before the pixel data say of the image.
#[derive(Debug, Default)]
pub struct Facts {
    pub modality: String,
    pub burned_in: Option<bool>,
    pub manufacturer: String,
    pub model: String,
    pub rows: u32,
    pub columns: u32,
    pub samples_per_pixel: u32,
    pub bits_allocated: u32,
    pub planar: bool,
    pub photometric: String,
    pub regions: Vec<Region>,
    /// The region item being read.
    pub region: [Option<u32>; 4],
}

/// An instance's pixels under a cleaning profile.
pub struct Pixels {
    pub facts: Facts,
    sop_class_uid: String,
    ultrasound: bool,
    big_endian: bool,
    encapsulated: bool,
    /// The decoder of the input's compressed pixel data, if there is one.
    codec: Option<Codec>,
    rules: Arc<[PixelRule]>,
    cleaning: Option<Cleaning>,
    uncleaned: Option<String>,
    discarded: bool,
    inferred: bool,
}

/// What the pixel data goes through, decided at its header.
struct Cleaning {
    layout: Layout,
    frame: rle::Frame,
    blanking: Blanking,
    /// Native pixels: bytes seen so far, and the first frame held while its image
    /// area is inferred.
    offset: u64,
    held: Vec<u8>,
    gather: Option<Gather>,
}

/// What is blanked.
enum Blanking {
    /// Nothing: the frames are only re-encoded.
    Nothing,
    /// Outside the image area, once the first frame shows where it is.
    Inferred,
    /// Everything outside these areas (none: the whole frame).
    Outside(Vec<Region>, Blanker),
}

/// What to do with the pixel data element.
pub enum Decision {
    Keep,
    Clean,
    /// Not written: the copy is dropped (uncleaned) or discarded.
    Drop,
}

impl Pixels {
    pub fn new(
        sop_class_uid: &str,
        big_endian: bool,
        encapsulated: bool,
        codec: Option<Codec>,
        rules: Arc<[PixelRule]>,
    ) -> Pixels {
        Pixels {
            facts: Facts::default(),
            sop_class_uid: sop_class_uid.to_owned(),
            ultrasound: is_ultrasound(sop_class_uid),
            big_endian,
            encapsulated,
            codec,
            rules,
            cleaning: None,
            uncleaned: None,
            discarded: false,
            inferred: false,
        }
    }

    /// Whether the copy's frames are written again in RLE Lossless.
    pub fn reencodes(&self) -> bool {
        self.encapsulated && self.codec.is_some_and(Codec::reencodes)
    }

    /// An ultrasound SOP class: always cleaned.
    pub fn ultrasound(&self) -> bool {
        self.ultrasound
    }

    pub fn uncleaned(&self) -> Option<&str> {
        self.uncleaned.as_deref()
    }

    /// A pixel rule says this copy is not sent.
    pub fn discarded(&self) -> bool {
        self.discarded
    }

    /// Whether the image area was inferred from the pixels.
    pub fn inferred(&self) -> bool {
        self.inferred
    }

    fn rule(&self) -> Option<&PixelRule> {
        let f = &self.facts;
        let text = |want: &Option<String>, have: &str| {
            want.as_ref()
                .is_none_or(|w| w.trim().eq_ignore_ascii_case(have.trim()))
        };
        self.rules.iter().find(|r| {
            text(&r.manufacturer, &f.manufacturer)
                && text(&r.model, &f.model)
                && text(&r.modality, &f.modality)
                && text(&r.sop_class, &self.sop_class_uid)
                && r.rows.is_none_or(|n| n == f.rows)
                && r.columns.is_none_or(|n| n == f.columns)
        })
    }

    /// Ultrasound, an image that says it carries burned-in text, or one a rule names.
    fn needs_cleaning(&self) -> bool {
        self.ultrasound
            || self.facts.modality == "US"
            || self.facts.burned_in == Some(true)
            || self.rule().is_some()
    }

    /// Whether the pixels will be blanked (or the copy dropped), as far as the
    /// attributes so far tell: Burned In Annotation then says NO.
    pub fn blanking_planned(&self) -> bool {
        self.needs_cleaning() && self.rule().is_none_or(|r| r.action == PixelAction::Blank)
    }

    /// Whether the pixel data is rewritten (its offset tables then go).
    pub fn rewritten(&self) -> bool {
        self.reencodes() || self.blanking_planned()
    }

    fn give_up(&mut self, reason: String) -> Decision {
        self.uncleaned = Some(reason);
        Decision::Drop
    }

    /// At the pixel data's header.
    pub fn decide(&mut self, syntax: &str) -> Decision {
        if let Some(rule) = self.rule() {
            if rule.action == PixelAction::Discard {
                self.discarded = true;
                return Decision::Drop;
            }
        }
        let blank = self.blanking_planned();
        if !blank && !self.reencodes() {
            return Decision::Keep;
        }
        let f = &self.facts;
        if self.encapsulated && self.codec.is_none() {
            let name = dicom_transfer_syntax_registry::TransferSyntaxRegistry
                .get(syntax)
                .map_or("an unknown syntax", |ts| ts.name());
            return self.give_up(format!(
                "burned-in text cannot be blanked: no decoder for {name} ({syntax})"
            ));
        }
        if self.codec == Some(Codec::JpegBaseline)
            && !matches!(
                f.photometric.as_str(),
                "YBR_FULL_422" | "YBR_FULL" | "MONOCHROME2"
            )
        {
            return self.give_up(format!(
                "burned-in text cannot be blanked in JPEG baseline {}",
                f.photometric
            ));
        }
        let reencodes = self.reencodes();
        // Decoded frames are interleaved, in the photometric the copy declares.
        let photometric = if reencodes {
            output_photometric(&f.photometric)
        } else {
            &f.photometric
        };
        let layout = Layout {
            rows: f.rows,
            columns: f.columns,
            samples_per_pixel: f.samples_per_pixel.max(1),
            bytes_per_sample: f.bits_allocated.div_ceil(8),
            planar: f.planar && !self.encapsulated,
            ybr: photometric.starts_with("YBR"),
            ybr_422: photometric == "YBR_FULL_422" && !self.encapsulated,
        };
        let frame = rle::Frame {
            rows: layout.rows as usize,
            columns: layout.columns as usize,
            samples_per_pixel: layout.samples_per_pixel as usize,
            bytes_per_sample: layout.bytes_per_sample as usize,
        };
        if Blanker::new(layout.clone(), &[]).is_none() {
            return self.give_up("burned-in text: the image layout is incomplete".into());
        }
        let keep = if !blank {
            None
        } else if let Some(rule) = self.rule() {
            Some(kept_around(&rule.blank, f.columns, f.rows))
        } else if self.regions_blank_something() {
            Some(f.regions.clone())
        } else {
            None
        };
        let blanking = match keep {
            _ if !blank => Blanking::Nothing,
            None => Blanking::Inferred,
            Some(keep) => match Blanker::new(layout.clone(), &keep) {
                Some(blanker) => Blanking::Outside(keep, blanker),
                None => {
                    return self.give_up("burned-in text: the image layout is incomplete".into());
                }
            },
        };
        self.cleaning = Some(Cleaning {
            layout,
            frame,
            blanking,
            offset: 0,
            held: Vec::new(),
            gather: self.codec.filter(|_| self.encapsulated).map(Gather::new),
        });
        Decision::Clean
    }

    /// Whether the regions can be trusted to tell where the image is: one that
    /// covers the whole frame blanks nothing and says nothing about the text; one
    /// that reaches past the frame describes another image (a screen scaled down
    /// without its regions). One pixel past is a common exclusive bound, not that.
    fn regions_blank_something(&self) -> bool {
        let f = &self.facts;
        let whole = |r: &Region| {
            r.x0 == 0
                && r.y0 == 0
                && r.x1.saturating_add(1) >= f.columns
                && r.y1.saturating_add(1) >= f.rows
        };
        let outside = |r: &Region| r.x1 > f.columns || r.y1 > f.rows;
        !f.regions.is_empty() && !f.regions.iter().any(|r| whole(r) || outside(r))
    }

    /// The image area of the first frame, from its pixels; a copy without one is
    /// dropped, with the rule that would fix it.
    fn infer(&mut self, luma: &[u8]) {
        let Some(c) = self.cleaning.as_mut() else {
            return;
        };
        let found = area::infer(&Luma {
            rows: c.frame.rows,
            columns: c.frame.columns,
            values: luma,
        });
        if found.is_empty() {
            let f = &self.facts;
            self.uncleaned = Some(format!(
                "burned-in text: no ultrasound regions, and no image area found in the pixels; a [[pixel_rule]] with manufacturer = \"{}\", model = \"{}\", rows = {}, columns = {} and the rectangles to blank (or action = \"keep\" or \"discard\") would decide",
                f.manufacturer.trim(),
                f.model.trim(),
                f.rows,
                f.columns
            ));
            return;
        }
        self.inferred = true;
        if let Some(blanker) = Blanker::new(c.layout.clone(), &found) {
            c.blanking = Blanking::Outside(found, blanker);
        }
    }

    /// Native pixel bytes: blanked as they pass, but the first frame is held whole
    /// where its image area must be inferred.
    pub fn filter(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let Some(c) = self.cleaning.as_mut() else {
            out.extend_from_slice(bytes);
            return;
        };
        if matches!(c.blanking, Blanking::Inferred) && self.uncleaned.is_none() {
            let frame_bytes = c.layout.frame_bytes() as usize;
            let take = (frame_bytes - c.held.len()).min(bytes.len());
            c.held.extend_from_slice(&bytes[..take]);
            if c.held.len() < frame_bytes {
                return;
            }
            let held = std::mem::take(&mut c.held);
            let luma = area::luma(&held, &c.layout, self.big_endian);
            self.infer(&luma);
            let c = self.cleaning.as_mut().expect("cleaning");
            let mut first = held;
            if let Blanking::Outside(_, blanker) = &c.blanking {
                blanker.apply(0, &mut first);
            }
            c.offset = first.len() as u64;
            out.extend_from_slice(&first);
            return self.filter(&bytes[take..], out);
        }
        let start = out.len();
        out.extend_from_slice(bytes);
        if let Blanking::Outside(_, blanker) = &c.blanking {
            blanker.apply(c.offset, &mut out[start..]);
        }
        c.offset += bytes.len() as u64;
    }

    /// The end of native pixel data shorter than one frame.
    pub fn filter_end(&mut self, out: &mut Vec<u8>) {
        if let Some(c) = self.cleaning.as_mut() {
            if !c.held.is_empty() {
                out.append(&mut c.held);
                self.uncleaned =
                    Some("burned-in text: the pixel data is shorter than one frame".into());
            }
        }
    }

    /// A fragment of compressed pixel data: frames out as they complete.
    pub fn fragment(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let gathered = match self.cleaning.as_mut().and_then(|c| c.gather.as_mut()) {
            Some(gather) => gather.push(bytes),
            None => return vec![bytes.to_vec()],
        };
        match gathered {
            Ok(frame) => frame.into_iter().filter_map(|f| self.frame(&f)).collect(),
            Err(reason) => {
                self.uncleaned = Some(format!("burned-in text: {reason}"));
                Vec::new()
            }
        }
    }

    pub fn fragments_end(&mut self) -> Vec<Vec<u8>> {
        let last = self
            .cleaning
            .as_mut()
            .and_then(|c| c.gather.as_mut())
            .and_then(Gather::end);
        last.and_then(|f| self.frame(&f)).into_iter().collect()
    }

    /// One compressed frame, cleaned; nothing once the copy cannot be.
    fn frame(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if self.uncleaned.is_some() {
            return None;
        }
        match self.clean_frame(data) {
            Ok(frame) => frame,
            Err(reason) => {
                self.uncleaned = Some(format!("burned-in text: {reason}"));
                None
            }
        }
    }

    fn clean_frame(&mut self, data: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let codec = self.codec.ok_or("no decoder")?;
        let c = self.cleaning.as_ref().ok_or("no plan")?;
        let (frame, layout) = (c.frame, c.layout.clone());
        let inferring = matches!(c.blanking, Blanking::Inferred);
        // JPEG baseline is blanked without decoding, unless its area must be found.
        let baseline = codec == Codec::JpegBaseline;
        let mut native = if baseline && !inferring {
            Vec::new()
        } else {
            codec.decode(data, frame)?
        };
        if inferring {
            self.infer(&area::luma(&native, &layout, false));
            if self.uncleaned.is_some() {
                return Ok(None);
            }
        }
        let c = self.cleaning.as_ref().ok_or("no plan")?;
        let outside = match &c.blanking {
            Blanking::Outside(keep, blanker) => Some((keep, blanker)),
            _ => None,
        };
        if baseline {
            let f = &self.facts;
            let keep = outside.map_or(&[][..], |(keep, _)| keep.as_slice());
            return jpeg::blank_frame(data, keep, &f.photometric, (f.rows, f.columns)).map(Some);
        }
        if let Some((_, blanker)) = outside {
            blanker.apply(0, &mut native);
        }
        codec.encode(&native, frame).map(Some)
    }
}

/// The Photometric Interpretation of decoded frames: JPEG 2000's colour transforms
/// are undone by the decoder, and decoded YBR is no longer subsampled.
pub fn output_photometric(input: &str) -> &str {
    match input {
        "YBR_RCT" | "YBR_ICT" => "RGB",
        "YBR_FULL_422" => "YBR_FULL",
        other => other,
    }
}

/// The areas kept around a rule's `blank` rectangles: the screen cut along every
/// rectangle edge, the cells no rectangle covers.
fn kept_around(blank: &[[u32; 4]], columns: u32, rows: u32) -> Vec<Region> {
    let cuts = |lo: usize, hi: usize, size: u32| {
        let mut cuts: Vec<u32> = blank
            .iter()
            .flat_map(|r| [r[lo], r[hi].saturating_add(1)])
            .chain([0, size])
            .filter(|&c| c <= size)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    };
    let (xs, ys) = (cuts(0, 2, columns), cuts(1, 3, rows));
    let mut kept = Vec::new();
    for y in ys.windows(2) {
        for x in xs.windows(2) {
            let covered = blank
                .iter()
                .any(|r| r[0] <= x[0] && x[1] - 1 <= r[2] && r[1] <= y[0] && y[1] - 1 <= r[3]);
            if !covered {
                kept.push(Region {
                    x0: x[0],
                    y0: y[0],
                    x1: x[1] - 1,
                    y1: y[1] - 1,
                });
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_keeps_everything_but_its_rectangles() {
        let kept = kept_around(&[[0, 0, 9, 1], [8, 5, 9, 9]], 10, 10);
        let inside = |x, y| {
            kept.iter()
                .any(|r| r.x0 <= x && x <= r.x1 && r.y0 <= y && y <= r.y1)
        };
        for y in 0..10 {
            for x in 0..10 {
                let blanked = y <= 1 || (x >= 8 && y >= 5);
                assert_eq!(inside(x, y), !blanked, "({x},{y})");
            }
        }
    }

    #[test]
    fn video_is_not_sent_by_a_cleaning_profile_and_says_why() {
        let mpeg2 = "1.2.840.10008.1.2.4.100";
        let class = "1.2.840.10008.5.1.4.1.1.3.1";
        let mut video = Pixels::new(class, false, true, Codec::of(mpeg2), Arc::new([]));
        assert!(matches!(video.decide(mpeg2), Decision::Drop));
        let why = video.uncleaned().unwrap();
        assert!(why.contains("MPEG2") && why.contains(mpeg2), "{why}");
        // Video a clinic's rule keeps goes as it is.
        let keep = PixelRule {
            manufacturer: None,
            model: None,
            modality: None,
            sop_class: Some(class.into()),
            rows: None,
            columns: None,
            action: PixelAction::Keep,
            blank: Vec::new(),
        };
        let mut kept = Pixels::new(class, false, true, None, Arc::new([keep]));
        assert!(matches!(kept.decide(mpeg2), Decision::Keep));
    }

    #[test]
    fn a_rule_that_blanks_the_whole_screen_blanks_it_all() {
        let rule = PixelRule {
            manufacturer: None,
            model: Some("WORKSHEET".into()),
            modality: None,
            sop_class: None,
            rows: Some(4),
            columns: Some(4),
            action: PixelAction::Blank,
            blank: vec![[0, 0, 3, 3]],
        };
        let mut pixels = Pixels::new(
            "1.2.840.10008.5.1.4.1.1.7",
            false,
            false,
            None,
            Arc::new([rule]),
        );
        pixels.facts = Facts {
            model: "worksheet".into(),
            rows: 4,
            columns: 4,
            samples_per_pixel: 1,
            bits_allocated: 8,
            photometric: "MONOCHROME2".into(),
            ..Facts::default()
        };
        assert!(matches!(
            pixels.decide("1.2.840.10008.1.2.1"),
            Decision::Clean
        ));
        let mut out = Vec::new();
        pixels.filter(&[9; 16], &mut out);
        pixels.filter_end(&mut out);
        assert_eq!(out, vec![0; 16]);
        assert!(!pixels.inferred() && pixels.uncleaned().is_none());
    }

    #[test]
    fn decoded_frames_declare_what_they_hold() {
        assert_eq!(output_photometric("YBR_RCT"), "RGB");
        assert_eq!(output_photometric("YBR_FULL_422"), "YBR_FULL");
        assert_eq!(output_photometric("MONOCHROME2"), "MONOCHROME2");
    }
}
