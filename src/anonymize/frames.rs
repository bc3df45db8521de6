//! Compressed pixel data, one frame at a time: which syntaxes the profiles can
//! decode, how fragments make frames, and the decoders.
//!
//! A clinic does not choose its machines' transfer syntax, so burned-in text must
//! be blanked in whatever arrives. JPEG baseline is blanked in the DCT domain
//! (`jpeg.rs`); RLE, JPEG lossless, JPEG extended, JPEG-LS and JPEG 2000 frames are
//! decoded here, blanked as native pixels and written again losslessly, so the image
//! keeps every value the machine sent: JPEG-LS as JPEG-LS Lossless (CharLS encodes
//! it, twice as compact as RLE), the others as RLE Lossless (`rle.rs`), the one
//! lossless syntax every reader decodes (no lossless JPEG or JPEG 2000 encoder of
//! ours is worth its cost on the box). Memory holds one compressed and
//! one decoded frame, never the clip.
//!
//! The decoders: jpeg-decoder (JPEG), jpeg2k over openjp2 (a pure-Rust port of
//! OpenJPEG), CharLS (the JPEG-LS reference implementation, in C++: no Rust one
//! exists).

use jpeg_decoder::{ColorTransform, Decoder};

use super::rle;
use crate::standard::{JPEG_BASELINE, JPEG_LS_LOSSLESS, RLE_LOSSLESS};

/// How a transfer syntax's frames are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Blanked in the DCT domain; decoded only to find the image area.
    JpegBaseline,
    /// JPEG extended (8-bit) and JPEG lossless (processes 14 and 14 SV1).
    Jpeg,
    Rle,
    /// JPEG 2000, lossless and lossy (Part 1).
    Jpeg2000,
    /// JPEG-LS, lossless and near-lossless.
    JpegLs,
}

impl Codec {
    pub fn of(ts: &str) -> Option<Codec> {
        match ts {
            JPEG_BASELINE => Some(Codec::JpegBaseline),
            "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => {
                Some(Codec::Jpeg)
            }
            RLE_LOSSLESS => Some(Codec::Rle),
            "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => Some(Codec::JpegLs),
            "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => Some(Codec::Jpeg2000),
            _ => None,
        }
    }

    /// The syntax a cleaned copy's frames are written in, where it is not the
    /// input's (JPEG baseline stays baseline).
    pub fn output_syntax(self) -> Option<&'static str> {
        match self {
            Codec::JpegBaseline => None,
            Codec::JpegLs => Some(JPEG_LS_LOSSLESS),
            Codec::Jpeg | Codec::Rle | Codec::Jpeg2000 => Some(RLE_LOSSLESS),
        }
    }

    /// Whether a cleaned copy's frames are decoded and written again.
    pub fn reencodes(self) -> bool {
        self.output_syntax().is_some()
    }

    /// Encodes one native frame (interleaved, little endian) in the output syntax.
    pub fn encode(self, native: &[u8], frame: rle::Frame) -> Result<Vec<u8>, String> {
        if self != Codec::JpegLs {
            return rle::encode(native, frame);
        }
        let mut charls = charls::CharLS::default();
        if frame.samples_per_pixel > 1 {
            charls
                .set_interleave_mode(charls::InterleaveMode::Line)
                .map_err(|e| format!("JPEG-LS cannot encode the frame: {e}"))?;
        }
        let info = charls::FrameInfo {
            width: frame.columns as u32,
            height: frame.rows as u32,
            bits_per_sample: (frame.bytes_per_sample * 8) as i32,
            component_count: frame.samples_per_pixel as i32,
        };
        let samples = machine_order(native.to_vec(), frame.bytes_per_sample);
        // NEAR = 0: lossless, whatever the input's NEAR was (no second generation of loss).
        charls
            .encode(info, 0, &samples)
            .map_err(|e| format!("JPEG-LS cannot encode the frame: {e}"))
    }

    /// Whether a fragment starts a new frame: RLE puts each frame in one fragment
    /// (PS3.5 A.4.2); the JPEG family's frames open with a start marker.
    fn starts_frame(self, fragment: &[u8]) -> bool {
        match self {
            Codec::Rle => true,
            Codec::Jpeg | Codec::JpegBaseline | Codec::JpegLs => {
                fragment.starts_with(&[0xFF, 0xD8])
            }
            Codec::Jpeg2000 => {
                fragment.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
                    || fragment.starts_with(&[0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20])
            }
        }
    }

    /// Decodes one frame into native pixels laid out as `frame` (interleaved,
    /// little endian), the sender's color components as they are.
    pub fn decode(self, data: &[u8], frame: rle::Frame) -> Result<Vec<u8>, String> {
        // A decoder's bug on a hostile frame must cost this copy, not the association.
        let decoded = std::panic::catch_unwind(|| match self {
            Codec::Rle => rle::decode(data, frame),
            Codec::Jpeg | Codec::JpegBaseline => decode_jpeg(data, frame),
            Codec::Jpeg2000 => decode_jpeg2000(data, frame),
            Codec::JpegLs => decode_jpeg_ls(data, frame),
        });
        let native = decoded.map_err(|_| "the frame's decoder failed on it".to_owned())??;
        if native.len() != frame.len() {
            return Err(format!(
                "the frame decodes to {} bytes where Rows, Columns and Samples per Pixel call for {}",
                native.len(),
                frame.len()
            ));
        }
        Ok(native)
    }
}

fn decode_jpeg(data: &[u8], frame: rle::Frame) -> Result<Vec<u8>, String> {
    let mut decoder = Decoder::new(data);
    decoder
        .read_info()
        .map_err(|e| format!("the JPEG frame cannot be decoded: {e}"))?;
    let info = decoder.info().ok_or("the JPEG frame has no header")?;
    check_size(u32::from(info.height), u32::from(info.width), frame)?;
    decoder.set_max_decoding_buffer_size(frame.len().max(1) * 2);
    if info.pixel_format == jpeg_decoder::PixelFormat::RGB24 {
        // The components as stored, interleaved: YBR stays YBR (the copy says
        // YBR_FULL). jpeg-decoder's `None` transform writes planes, not pixels.
        decoder.set_color_transform(ColorTransform::RGB);
    }
    let pixels = decoder
        .decode()
        .map_err(|e| format!("the JPEG frame cannot be decoded: {e}"))?;
    if frame.bytes_per_sample == 2 && info.pixel_format.pixel_bytes() == frame.samples_per_pixel {
        // 8-bit samples in 16-bit words.
        return Ok(pixels.iter().flat_map(|&b| [b, 0]).collect());
    }
    Ok(machine_order(pixels, frame.bytes_per_sample))
}

fn decode_jpeg2000(data: &[u8], frame: rle::Frame) -> Result<Vec<u8>, String> {
    let image = jpeg2k::Image::from_bytes(data)
        .map_err(|e| format!("the JPEG 2000 frame cannot be decoded: {e}"))?;
    let components = image.components();
    if components.len() != frame.samples_per_pixel {
        return Err(format!(
            "the JPEG 2000 frame has {} components where Samples per Pixel is {}",
            components.len(),
            frame.samples_per_pixel
        ));
    }
    check_size(image.height(), image.width(), frame)?;
    let pixels = frame.rows * frame.columns;
    let mut native = Vec::with_capacity(frame.len());
    for pixel in 0..pixels {
        for component in components {
            let value = *component
                .data()
                .get(pixel)
                .ok_or("a JPEG 2000 component is smaller than the image")?;
            if frame.bytes_per_sample == 1 {
                native.push(value.clamp(0, 255) as u8);
            } else if component.is_signed() {
                native.extend((value.clamp(-32768, 32767) as i16).to_le_bytes());
            } else {
                native.extend((value.clamp(0, 65535) as u16).to_le_bytes());
            }
        }
    }
    Ok(native)
}

fn decode_jpeg_ls(data: &[u8], frame: rle::Frame) -> Result<Vec<u8>, String> {
    let header = JpegLsHeader::parse(data)?;
    check_size(header.height, header.width, frame)?;
    if header.components != frame.samples_per_pixel
        || header.precision.div_ceil(8) != frame.bytes_per_sample
    {
        return Err(format!(
            "the JPEG-LS frame has {} components of {} bits where the image attributes say {} of {} bytes",
            header.components, header.precision, frame.samples_per_pixel, frame.bytes_per_sample
        ));
    }
    let decoded = charls::CharLS::default()
        .decode(data)
        .map_err(|e| format!("the JPEG-LS frame cannot be decoded: {e}"))?;
    if decoded.len() != frame.len() {
        return Err(format!(
            "the JPEG-LS frame decodes to {} bytes, not {}",
            decoded.len(),
            frame.len()
        ));
    }
    let mut native = machine_order(decoded, frame.bytes_per_sample);
    if header.planes {
        // One scan per component: CharLS gives the planes one after the other.
        let (pixels, size) = (frame.rows * frame.columns, frame.bytes_per_sample);
        let planar = std::mem::take(&mut native);
        native = (0..pixels)
            .flat_map(|p| (0..frame.samples_per_pixel).map(move |s| (s * pixels + p) * size))
            .flat_map(|at| planar[at..at + size].to_vec())
            .collect();
    }
    Ok(native)
}

/// What a JPEG-LS frame's SOF55 and first SOS say (T.87 C.2).
struct JpegLsHeader {
    width: u32,
    height: u32,
    precision: usize,
    components: usize,
    /// Interleave mode none: each component in a scan of its own.
    planes: bool,
}

impl JpegLsHeader {
    fn parse(data: &[u8]) -> Result<JpegLsHeader, String> {
        let bad = || "the JPEG-LS frame's header is damaged".to_owned();
        let mut at = 2;
        let mut sof = None;
        while at + 4 <= data.len() {
            if data[at] != 0xFF {
                return Err(bad());
            }
            let marker = data[at + 1];
            let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
            let body = data.get(at + 4..at + 2 + len).ok_or_else(bad)?;
            match marker {
                0xF7 if body.len() >= 6 => sof = Some(body.to_vec()),
                0xDA => {
                    let sof = sof.ok_or("the JPEG-LS frame has no SOF55 before its scan")?;
                    let scan_components = usize::from(*body.first().ok_or_else(bad)?);
                    let components = usize::from(sof[5]);
                    return Ok(JpegLsHeader {
                        precision: usize::from(sof[0]),
                        height: u32::from(u16::from_be_bytes([sof[1], sof[2]])),
                        width: u32::from(u16::from_be_bytes([sof[3], sof[4]])),
                        components,
                        planes: components > 1 && scan_components == 1,
                    });
                }
                _ => {}
            }
            at += 2 + len;
        }
        Err(bad())
    }
}

/// 16-bit samples between little endian (native frames) and the machine's order
/// (jpeg-decoder's and CharLS's buffers): the same swap either way, none on a
/// little-endian machine.
fn machine_order(samples: Vec<u8>, bytes_per_sample: usize) -> Vec<u8> {
    if bytes_per_sample != 2 || cfg!(target_endian = "little") {
        return samples;
    }
    samples.chunks_exact(2).flat_map(|b| [b[1], b[0]]).collect()
}

fn check_size(height: u32, width: u32, frame: rle::Frame) -> Result<(), String> {
    if (height as usize, width as usize) != (frame.rows, frame.columns) {
        return Err(format!(
            "the frame is {width}×{height} where Columns × Rows say {}×{}",
            frame.columns, frame.rows
        ));
    }
    Ok(())
}

/// A compressed frame is read fragment by fragment; this gathers a frame's
/// fragments until the next frame (or the end of the pixel data) begins.
#[derive(Debug)]
pub struct Gather {
    codec: Codec,
    pending: Vec<u8>,
    open: bool,
}

/// A gathered frame larger than this is refused: a frame of the largest screens,
/// uncompressed, is a fraction of it.
const FRAME_LIMIT: usize = 64 * 1024 * 1024;

impl Gather {
    pub fn new(codec: Codec) -> Gather {
        Gather {
            codec,
            pending: Vec::new(),
            open: false,
        }
    }

    /// Takes the next fragment; returns the frame it completes, if it starts another.
    pub fn push(&mut self, fragment: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let done = if self.open && self.codec.starts_frame(fragment) {
            Some(std::mem::take(&mut self.pending))
        } else {
            None
        };
        if self.pending.len() + fragment.len() > FRAME_LIMIT {
            return Err(format!(
                "a compressed frame is over {} MiB",
                FRAME_LIMIT >> 20
            ));
        }
        self.pending.extend_from_slice(fragment);
        self.open = true;
        Ok(done)
    }

    /// The last frame, at the end of the pixel data.
    pub fn end(&mut self) -> Option<Vec<u8>> {
        std::mem::replace(&mut self.open, false).then(|| std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_gather_into_frames_at_each_start_marker() {
        let mut gather = Gather::new(Codec::Jpeg);
        assert_eq!(gather.push(&[0xFF, 0xD8, 1]).unwrap(), None);
        assert_eq!(gather.push(&[2, 3]).unwrap(), None);
        assert_eq!(
            gather.push(&[0xFF, 0xD8, 4]).unwrap(),
            Some(vec![0xFF, 0xD8, 1, 2, 3])
        );
        assert_eq!(gather.end(), Some(vec![0xFF, 0xD8, 4]));
        assert_eq!(gather.end(), None);

        let mut rle = Gather::new(Codec::Rle);
        assert_eq!(rle.push(&[1]).unwrap(), None);
        assert_eq!(rle.push(&[2]).unwrap(), Some(vec![1]));
    }

    #[test]
    fn syntaxes_without_a_decoder_have_no_codec() {
        assert_eq!(Codec::of("1.2.840.10008.1.2.4.100"), None, "MPEG-2");
        assert_eq!(Codec::of("1.2.840.10008.1.2.1"), None, "native");
        assert_eq!(Codec::of("1.2.840.10008.1.2.4.80"), Some(Codec::JpegLs));
        assert!(Codec::of(RLE_LOSSLESS).unwrap().reencodes());
        assert_eq!(
            Codec::of("1.2.840.10008.1.2.4.81").unwrap().output_syntax(),
            Some(JPEG_LS_LOSSLESS)
        );
        assert!(!Codec::of(JPEG_BASELINE).unwrap().reencodes());
    }

    #[test]
    fn a_frame_of_the_wrong_size_is_refused() {
        let frame = rle::Frame {
            rows: 2,
            columns: 2,
            samples_per_pixel: 1,
            bytes_per_sample: 1,
        };
        let encoded = rle::encode(&[1, 2, 3, 4], frame).unwrap();
        assert!(Codec::Rle.decode(&encoded, frame).is_ok());
        let err = Codec::Jpeg
            .decode(&[0xFF, 0xD8, 0xFF, 0xD9], frame)
            .unwrap_err();
        assert!(err.contains("JPEG"), "{err}");
    }
}
