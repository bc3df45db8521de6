//! Burned-in text: blanking pixels outside the ultrasound regions.
//!
//! Ultrasound screens carry the patient's name and the date in a banner burned into
//! the pixels. The image proper lies in the Sequence of Ultrasound Regions; every
//! pixel outside their union is set to black, frame by frame: native pixel data as
//! the bytes stream past, JPEG baseline one frame at a time in the DCT domain
//! (`jpeg.rs`), so memory does not grow with the clip.

/// A region's bounds in pixels, inclusive (PS3.3 C.8.5.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

/// How a frame's bytes are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub rows: u32,
    pub columns: u32,
    pub samples_per_pixel: u32,
    pub bytes_per_sample: u32,
    /// Planar configuration 1: all of the first sample's plane, then the next.
    pub planar: bool,
    /// YBR: black is (0, 128, 128), not all zeros; `ybr_422` pairs pixels as Y Y Cb Cr.
    pub ybr: bool,
    pub ybr_422: bool,
}

impl Layout {
    /// The bytes of one native frame.
    pub fn frame_bytes(&self) -> u64 {
        let bytes = u64::from(self.rows)
            * u64::from(self.columns)
            * u64::from(self.samples_per_pixel)
            * u64::from(self.bytes_per_sample);
        if self.ybr_422 { bytes * 2 / 3 } else { bytes }
    }
}

/// Blanks the bytes of native pixel data outside the regions.
#[derive(Debug)]
pub struct Blanker {
    layout: Layout,
    /// For each row, the column ranges kept (half-open).
    kept: Vec<Vec<(u32, u32)>>,
    frame_bytes: u64,
}

impl Blanker {
    pub fn new(layout: Layout, regions: &[Region]) -> Option<Blanker> {
        if layout.rows == 0
            || layout.columns == 0
            || layout.samples_per_pixel == 0
            || layout.bytes_per_sample == 0
        {
            return None;
        }
        let kept = (0..layout.rows)
            .map(|y| {
                let mut spans: Vec<(u32, u32)> = regions
                    .iter()
                    .filter(|r| r.y0 <= y && y <= r.y1 && r.x0 <= r.x1)
                    .map(|r| {
                        (
                            r.x0.min(layout.columns),
                            r.x1.saturating_add(1).min(layout.columns),
                        )
                    })
                    .collect();
                spans.sort_unstable();
                spans
            })
            .collect();
        let frame_bytes = layout.frame_bytes();
        Some(Blanker {
            layout,
            kept,
            frame_bytes,
        })
    }

    fn keeps(&self, x: u32, y: u32) -> bool {
        self.kept[y as usize].iter().any(|&(a, b)| a <= x && x < b)
    }

    /// Blanks `bytes`, which start at `offset` in the pixel data.
    pub fn apply(&self, offset: u64, bytes: &mut [u8]) {
        if self.layout.ybr_422 {
            self.apply_422(offset, bytes);
            return;
        }
        // Walk row by row: each stretch of a row is blanked outside its kept spans
        // with a fill, not byte by byte.
        let l = &self.layout;
        let bps = u64::from(l.bytes_per_sample);
        let (pixel_bytes, row_bytes) = if l.planar {
            (bps, u64::from(l.columns) * bps)
        } else {
            let pixel = u64::from(l.samples_per_pixel) * bps;
            (pixel, u64::from(l.columns) * pixel)
        };
        let plane_bytes = row_bytes * u64::from(l.rows);
        let mut i = 0usize;
        while i < bytes.len() {
            let within = (offset + i as u64) % self.frame_bytes;
            let (plane, in_plane) = if l.planar {
                (within / plane_bytes, within % plane_bytes)
            } else {
                (0, within)
            };
            let (y, start) = ((in_plane / row_bytes) as usize, in_plane % row_bytes);
            let stretch = ((row_bytes - start) as usize).min(bytes.len() - i);
            let row = &mut bytes[i..i + stretch];
            let mut cursor = start;
            let end = start + stretch as u64;
            // Blank [cursor, next kept span) for each kept span, then the rest.
            let spans = self.kept[y]
                .iter()
                .map(|&(a, b)| (u64::from(a) * pixel_bytes, u64::from(b) * pixel_bytes));
            for (a, b) in spans.chain(std::iter::once((end, end))) {
                if a > cursor {
                    let (from, to) = ((cursor - start) as usize, (a.min(end) - start) as usize);
                    if from < to {
                        self.fill(&mut row[from..to], cursor, plane);
                    }
                }
                cursor = cursor.max(b);
                if cursor >= end {
                    break;
                }
            }
            i += stretch;
        }
    }

    /// Black for the bytes `part`, which start at byte `at` of their row.
    fn fill(&self, part: &mut [u8], at: u64, plane: u64) {
        let l = &self.layout;
        if !l.ybr {
            part.fill(0);
        } else if l.planar {
            part.fill(if plane > 0 { 128 } else { 0 });
        } else {
            let (bps, pixel) = (
                u64::from(l.bytes_per_sample),
                u64::from(l.samples_per_pixel * l.bytes_per_sample),
            );
            for (k, byte) in part.iter_mut().enumerate() {
                let sample = (at + k as u64) % pixel / bps;
                *byte = if sample > 0 { 128 } else { 0 };
            }
        }
    }

    /// YBR_FULL_422 pairs pixels as Y0 Y1 Cb Cr: byte by byte.
    fn apply_422(&self, offset: u64, bytes: &mut [u8]) {
        let columns = u64::from(self.layout.columns);
        for (i, byte) in bytes.iter_mut().enumerate() {
            let within = (offset + i as u64) % self.frame_bytes;
            let (group, k) = (within / 4, within % 4);
            let pixel = group * 2 + k.min(1);
            let (x, y) = ((pixel % columns) as u32, (pixel / columns) as u32);
            if y < self.layout.rows && !self.keeps(x, y) {
                *byte = if k >= 2 { 128 } else { 0 };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb(rows: u32, columns: u32, planar: bool) -> Layout {
        Layout {
            rows,
            columns,
            samples_per_pixel: 3,
            bytes_per_sample: 1,
            planar,
            ybr: false,
            ybr_422: false,
        }
    }

    fn frame(layout: &Layout, value: u8) -> Vec<u8> {
        vec![
            value;
            (layout.rows * layout.columns * layout.samples_per_pixel * layout.bytes_per_sample)
                as usize
        ]
    }

    #[test]
    fn blanks_outside_the_region_in_any_chunking() {
        let layout = rgb(4, 4, false);
        let region = Region {
            x0: 1,
            y0: 1,
            x1: 2,
            y1: 2,
        };
        let blanker = Blanker::new(layout.clone(), &[region]).unwrap();
        let mut two_frames = [frame(&layout, 200), frame(&layout, 200)].concat();
        // Odd chunk sizes across the frame boundary.
        let mut offset = 0;
        for chunk in two_frames.chunks_mut(7) {
            blanker.apply(offset, chunk);
            offset += chunk.len() as u64;
        }
        for f in two_frames.chunks(48) {
            for y in 0..4 {
                for x in 0..4 {
                    let inside = (1..=2).contains(&x) && (1..=2).contains(&y);
                    let px = &f[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3];
                    assert_eq!(px, if inside { [200; 3] } else { [0; 3] }, "({x},{y})");
                }
            }
        }
    }

    #[test]
    fn planar_and_ybr_layouts_blank_to_black() {
        let mut layout = rgb(2, 2, true);
        layout.ybr = true;
        let blanker = Blanker::new(
            layout.clone(),
            &[Region {
                x0: 0,
                y0: 0,
                x1: 0,
                y1: 0,
            }],
        )
        .unwrap();
        let mut f = frame(&layout, 50);
        blanker.apply(0, &mut f);
        // Planes Y, Cb, Cr of 4 pixels each; only pixel 0 kept.
        assert_eq!(f, [50, 0, 0, 0, 50, 128, 128, 128, 50, 128, 128, 128]);
    }

    #[test]
    fn ybr_422_pairs_and_16_bit_monochrome() {
        let layout = Layout {
            ybr: true,
            ybr_422: true,
            ..rgb(1, 4, false)
        };
        let blanker = Blanker::new(
            layout,
            &[Region {
                x0: 0,
                y0: 0,
                x1: 1,
                y1: 0,
            }],
        )
        .unwrap();
        let mut f = vec![9u8; 8]; // Y0 Y1 Cb Cr Y2 Y3 Cb Cr
        blanker.apply(0, &mut f);
        assert_eq!(f, [9, 9, 9, 9, 0, 0, 128, 128]);

        let mono = Layout {
            samples_per_pixel: 1,
            bytes_per_sample: 2,
            ..rgb(1, 3, false)
        };
        let blanker = Blanker::new(
            mono,
            &[Region {
                x0: 2,
                y0: 0,
                x1: 2,
                y1: 0,
            }],
        )
        .unwrap();
        let mut f = vec![7u8; 6];
        blanker.apply(0, &mut f);
        assert_eq!(f, [0, 0, 0, 0, 7, 7]);
    }

    /// The row-wise fast path against a byte-by-byte reference, on random layouts,
    /// regions and chunkings.
    #[test]
    fn fast_path_matches_the_definition() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let layout = Layout {
                rows: rng.u32(1..12),
                columns: rng.u32(1..12),
                samples_per_pixel: [1, 3][rng.usize(..2)],
                bytes_per_sample: rng.u32(1..3),
                planar: rng.bool(),
                ybr: rng.bool(),
                ybr_422: false,
            };
            let regions: Vec<Region> = (0..rng.usize(0..3))
                .map(|_| {
                    let (x0, y0) = (rng.u32(0..layout.columns), rng.u32(0..layout.rows));
                    Region {
                        x0,
                        y0,
                        x1: rng.u32(x0..layout.columns + 2),
                        y1: rng.u32(y0..layout.rows + 2),
                    }
                })
                .collect();
            let blanker = Blanker::new(layout.clone(), &regions).unwrap();
            let frame =
                (layout.rows * layout.columns * layout.samples_per_pixel * layout.bytes_per_sample)
                    as usize;
            let original: Vec<u8> = (0..frame * 2).map(|_| rng.u8(1..)).collect();
            let mut fast = original.clone();
            let mut offset = 0;
            while offset < fast.len() {
                let n = rng.usize(1..=fast.len() - offset);
                blanker.apply(offset as u64, &mut fast[offset..offset + n]);
                offset += n;
            }
            let bps = layout.bytes_per_sample as usize;
            let (rows, cols, spp) = (
                layout.rows as usize,
                layout.columns as usize,
                layout.samples_per_pixel as usize,
            );
            for (i, (&got, &was)) in fast.iter().zip(&original).enumerate() {
                let within = i % frame;
                let (pixel, sample) = if layout.planar {
                    (
                        within % (rows * cols * bps) / bps,
                        within / (rows * cols * bps),
                    )
                } else {
                    (within / (spp * bps), within % (spp * bps) / bps)
                };
                let (x, y) = ((pixel % cols) as u32, (pixel / cols) as u32);
                let kept = regions
                    .iter()
                    .any(|r| r.x0 <= x && x <= r.x1 && r.y0 <= y && y <= r.y1);
                let want = if kept {
                    was
                } else if layout.ybr && sample > 0 {
                    128
                } else {
                    0
                };
                assert_eq!(got, want, "{layout:?} {regions:?} byte {i}");
            }
        }
    }

    #[test]
    fn degenerate_layouts_are_refused() {
        assert!(Blanker::new(rgb(0, 4, false), &[]).is_none());
    }
}
