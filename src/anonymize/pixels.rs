//! Burned-in text: blanking native pixel data outside the ultrasound regions.
//!
//! Ultrasound screens carry the patient's name and the date in a banner burned into
//! the pixels. The image proper lies in the Sequence of Ultrasound Regions; every
//! pixel outside their union is set to black, frame by frame, as the bytes stream
//! past, so memory does not grow with the clip.

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
        let frame_bytes = u64::from(layout.rows)
            * u64::from(layout.columns)
            * u64::from(layout.samples_per_pixel)
            * u64::from(layout.bytes_per_sample);
        let frame_bytes = if layout.ybr_422 {
            frame_bytes * 2 / 3
        } else {
            frame_bytes
        };
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
        let l = &self.layout;
        let pixels_per_frame = u64::from(l.rows) * u64::from(l.columns);
        for (i, byte) in bytes.iter_mut().enumerate() {
            let within = (offset + i as u64) % self.frame_bytes;
            let (pixel, sample) = if l.ybr_422 {
                // Y0 Y1 Cb Cr for each pair of pixels.
                let group = within / 4;
                let k = within % 4;
                (group * 2 + k.min(1), if k < 2 { 0 } else { k - 1 })
            } else if l.planar {
                let plane_bytes = pixels_per_frame * u64::from(l.bytes_per_sample);
                (
                    within % plane_bytes / u64::from(l.bytes_per_sample),
                    within / plane_bytes,
                )
            } else {
                let pixel_bytes = u64::from(l.samples_per_pixel * l.bytes_per_sample);
                (
                    within / pixel_bytes,
                    within % pixel_bytes / u64::from(l.bytes_per_sample),
                )
            };
            let (x, y) = (
                (pixel % u64::from(l.columns)) as u32,
                (pixel / u64::from(l.columns)) as u32,
            );
            if y < l.rows && !self.keeps(x, y) {
                *byte = if l.ybr && sample > 0 { 128 } else { 0 };
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

    #[test]
    fn degenerate_layouts_are_refused() {
        assert!(Blanker::new(rgb(0, 4, false), &[]).is_none());
    }
}
