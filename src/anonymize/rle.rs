//! RLE Lossless (PS3.5 Annex G): the syntax every cleaned copy of compressed pixel
//! data is written in.
//!
//! A frame decoded from JPEG lossless, JPEG-LS or JPEG 2000 and then blanked must be
//! written again without a second generation of loss. RLE is the one lossless
//! syntax that every DICOM reader decodes (dcmtk, pydicom, GDCM, every viewer) and
//! that needs no codec library: a frame is split into byte planes (each sample's
//! most significant byte first), each plane PackBits-coded row by row.

/// The header: the number of segments, then up to 15 segment offsets.
const HEADER: usize = 64;
const MAX_SEGMENTS: usize = 15;

/// How a native frame is laid out: pixel-interleaved samples of `bytes_per_sample`
/// little-endian bytes (Planar Configuration 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub rows: usize,
    pub columns: usize,
    pub samples_per_pixel: usize,
    pub bytes_per_sample: usize,
}

impl Frame {
    pub fn len(&self) -> usize {
        self.rows * self.columns * self.samples_per_pixel * self.bytes_per_sample
    }

    fn segments(&self) -> usize {
        self.samples_per_pixel * self.bytes_per_sample
    }

    /// Where byte `k` (most significant first) of sample `s` of pixel 0 lies.
    fn first_byte(&self, segment: usize) -> usize {
        let (s, k) = (
            segment / self.bytes_per_sample,
            segment % self.bytes_per_sample,
        );
        s * self.bytes_per_sample + (self.bytes_per_sample - 1 - k)
    }
}

/// Encodes one native frame (`frame.len()` bytes) as an RLE fragment.
pub fn encode(native: &[u8], frame: Frame) -> Result<Vec<u8>, String> {
    let segments = frame.segments();
    if segments == 0 || segments > MAX_SEGMENTS || native.len() != frame.len() {
        return Err(format!(
            "RLE cannot hold {segments} byte planes of a {}-byte frame",
            native.len()
        ));
    }
    let stride = frame.segments();
    let mut out = vec![0u8; HEADER];
    out[..4].copy_from_slice(&(segments as u32).to_le_bytes());
    let mut plane = Vec::with_capacity(frame.columns);
    for segment in 0..segments {
        let offset = out.len() as u32;
        out[4 + 4 * segment..8 + 4 * segment].copy_from_slice(&offset.to_le_bytes());
        let first = frame.first_byte(segment);
        for row in 0..frame.rows {
            let start = row * frame.columns * stride + first;
            plane.clear();
            plane.extend((0..frame.columns).map(|x| native[start + x * stride]));
            pack_bits(&plane, &mut out);
        }
        if out.len() % 2 == 1 {
            out.push(0);
        }
    }
    Ok(out)
}

/// PackBits for one row: runs of 3 or more as a repeat, the rest as literals.
fn pack_bits(row: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < row.len() {
        let run = row[i..]
            .iter()
            .take(128)
            .take_while(|&&b| b == row[i])
            .count();
        if run >= 3 {
            out.push((1 - run as i16) as i8 as u8);
            out.push(row[i]);
            i += run;
            continue;
        }
        // A literal up to the next run of three (or 128 bytes).
        let mut end = i;
        while end < row.len() && end - i < 128 {
            if end + 2 < row.len() && row[end] == row[end + 1] && row[end] == row[end + 2] {
                break;
            }
            end += 1;
        }
        out.push((end - i - 1) as u8);
        out.extend_from_slice(&row[i..end]);
        i = end;
    }
}

/// Decodes an RLE fragment into a native frame.
pub fn decode(fragment: &[u8], frame: Frame) -> Result<Vec<u8>, String> {
    let word = |at: usize| -> Result<usize, String> {
        fragment
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| "RLE fragment shorter than its header".to_owned())
    };
    let segments = word(0)?;
    if segments != frame.segments() {
        return Err(format!(
            "RLE fragment has {segments} segments where the image attributes call for {}",
            frame.segments()
        ));
    }
    let plane_len = frame.rows * frame.columns;
    let stride = frame.segments();
    let mut native = vec![0u8; frame.len()];
    let mut plane = Vec::with_capacity(plane_len);
    for segment in 0..segments {
        let start = word(4 + 4 * segment)?;
        let end = if segment + 1 < segments {
            word(8 + 4 * segment)?
        } else {
            fragment.len()
        };
        let data = fragment
            .get(start..end)
            .ok_or_else(|| format!("RLE segment {segment} lies outside the fragment"))?;
        plane.clear();
        unpack_bits(data, plane_len, &mut plane)?;
        let first = frame.first_byte(segment);
        for (pixel, &byte) in plane.iter().enumerate() {
            native[first + pixel * stride] = byte;
        }
    }
    Ok(native)
}

fn unpack_bits(data: &[u8], want: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut i = 0;
    while out.len() < want && i < data.len() {
        let n = data[i] as i8;
        i += 1;
        match n {
            0..=127 => {
                let literal = data
                    .get(i..i + n as usize + 1)
                    .ok_or("RLE literal run past the end of its segment")?;
                out.extend_from_slice(literal);
                i += n as usize + 1;
            }
            -127..=-1 => {
                let byte = *data
                    .get(i)
                    .ok_or("RLE repeat past the end of its segment")?;
                out.extend(std::iter::repeat_n(byte, (1 - n as i16) as usize));
                i += 1;
            }
            -128 => {}
        }
    }
    if out.len() < want {
        return Err(format!(
            "RLE segment decodes to {} of {want} bytes",
            out.len()
        ));
    }
    out.truncate(want);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_layout_and_content() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..300 {
            let frame = Frame {
                rows: rng.usize(1..9),
                columns: rng.usize(1..300),
                samples_per_pixel: [1, 3][rng.usize(..2)],
                bytes_per_sample: rng.usize(1..3),
            };
            // Runs, literals and their borders: few distinct values.
            let distinct = rng.u8(1..6);
            let native: Vec<u8> = (0..frame.len()).map(|_| rng.u8(..distinct)).collect();
            let encoded = encode(&native, frame).unwrap();
            assert_eq!(encoded.len() % 2, 0);
            assert_eq!(decode(&encoded, frame).unwrap(), native, "{frame:?}");
        }
    }

    #[test]
    fn segments_are_byte_planes_most_significant_first() {
        let frame = Frame {
            rows: 1,
            columns: 2,
            samples_per_pixel: 1,
            bytes_per_sample: 2,
        };
        // Little-endian 0x0102, 0x0304: plane 0 holds 01 03, plane 1 holds 02 04.
        let encoded = encode(&[0x02, 0x01, 0x04, 0x03], frame).unwrap();
        assert_eq!(&encoded[..4], &2u32.to_le_bytes());
        assert_eq!(&encoded[64..68], &[1, 0x01, 0x03, 0]);
        assert_eq!(&encoded[68..71], &[1, 0x02, 0x04]);
    }

    #[test]
    fn long_runs_are_repeats_and_damage_is_reported() {
        let frame = Frame {
            rows: 2,
            columns: 1000,
            samples_per_pixel: 1,
            bytes_per_sample: 1,
        };
        let encoded = encode(&vec![0; 2000], frame).unwrap();
        assert!(encoded.len() < 64 + 40, "{} bytes", encoded.len());
        assert!(decode(&encoded[..70], frame).is_err());
        assert!(decode(&encoded, Frame { rows: 3, ..frame }).is_err());
        let rgb = Frame {
            samples_per_pixel: 3,
            ..frame
        };
        assert!(decode(&encoded, rgb).unwrap_err().contains("3"));
    }
}
