//! Where the image is on an ultrasound screen that does not say: inferred from the
//! pixels of the first frame.
//!
//! Older machines and screen captures carry no Sequence of Ultrasound Regions, yet
//! their screens look alike: the image is a large textured area (speckle: nearly
//! every pixel lit, hardly two alike), and the text — names, dates, clocks, the
//! machine's settings — sits on a flat background around it. The screen is cut into
//! small blocks; a block is image where most of its pixels differ from the screen's
//! background and no one value dominates it (text and flat bands are dominated by
//! their background). The large connected groups of such blocks are the image
//! areas; everything outside their bounding boxes is blanked.

use super::pixels::{Layout, Region};

/// The side of a block, in pixels.
const BLOCK: usize = 8;
/// A pixel is lit when it differs from the background by more than this (of 255).
const LIT_BY: u8 = 5;
/// A block is image when at least this share of its pixels is lit ...
const LIT_SHARE: f32 = 0.7;
/// ... and no single value covers more than this share of it.
const MODE_SHARE: f32 = 0.5;
/// An image area covers at least this share of the screen ...
const MIN_AREA: f32 = 0.05;
/// ... and a second area at least this share of the largest (side-by-side views).
const MIN_OF_LARGEST: f32 = 0.25;
/// Areas that leave less than this share of the screen outside found no flat
/// background: text could not be told from image there.
const MIN_OUTSIDE: f32 = 0.02;

/// A frame reduced to one brightness byte per pixel.
pub struct Luma<'a> {
    pub rows: usize,
    pub columns: usize,
    pub values: &'a [u8],
}

impl Luma<'_> {
    fn at(&self, x: usize, y: usize) -> u8 {
        self.values[y * self.columns + x]
    }
}

/// The brightness of one native frame laid out as `layout`, from each sample's
/// most significant byte: Y of YBR, the brightest of RGB (speckle is gray, and
/// coloured overlays count too).
pub fn luma(native: &[u8], layout: &Layout, big_endian: bool) -> Vec<u8> {
    let bps = layout.bytes_per_sample as usize;
    let top = if big_endian { 0 } else { bps - 1 };
    let pixels = (layout.rows * layout.columns) as usize;
    if layout.ybr_422 {
        // Y0 Y1 Cb Cr: the two Ys of each pair.
        return native
            .chunks_exact(4)
            .flat_map(|group| [group[0], group[1]])
            .take(pixels)
            .collect();
    }
    let spp = layout.samples_per_pixel as usize;
    let channels = if layout.ybr { 1 } else { spp.min(3) };
    if layout.planar {
        let plane = pixels * bps;
        return (0..pixels)
            .map(|p| {
                (0..channels)
                    .map(|s| native.get(s * plane + p * bps + top).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
    }
    native
        .chunks_exact(spp * bps)
        .take(pixels)
        .map(|pixel| {
            (0..channels)
                .map(|s| pixel[s * bps + top])
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// The image areas of the screen, or none where nothing looks like an image.
pub fn infer(frame: &Luma) -> Vec<Region> {
    let (bw, bh) = (frame.columns / BLOCK, frame.rows / BLOCK);
    if bw == 0 || bh == 0 || frame.values.len() < frame.rows * frame.columns {
        return Vec::new();
    }
    let background = most_common(frame.values.iter().copied());
    let image: Vec<bool> = (0..bh * bw)
        .map(|b| is_image(frame, (b % bw) * BLOCK, (b / bw) * BLOCK, background))
        .collect();
    let groups = groups(&image, bw, bh);
    let largest = groups.iter().map(|g| g.blocks).max().unwrap_or(0);
    let total = (bw * bh) as f32;
    if (largest as f32) < MIN_AREA * total {
        return Vec::new();
    }
    let areas: Vec<&Group> = groups
        .iter()
        .filter(|g| g.blocks as f32 >= MIN_OF_LARGEST * largest as f32)
        .collect();
    let mut covered = vec![false; bw * bh];
    for g in &areas {
        for y in g.y0..=g.y1 {
            covered[y * bw + g.x0..=y * bw + g.x1].fill(true);
        }
    }
    let outside = covered.iter().filter(|&&c| !c).count() as f32;
    if outside < MIN_OUTSIDE * total {
        return Vec::new();
    }
    areas
        .into_iter()
        .map(|g| {
            grown(
                frame,
                background.0,
                [
                    g.x0 * BLOCK,
                    g.y0 * BLOCK,
                    ((g.x1 + 1) * BLOCK).min(frame.columns) - 1,
                    ((g.y1 + 1) * BLOCK).min(frame.rows) - 1,
                ],
            )
        })
        .collect()
}

/// A box of whole blocks leaves out the image's rim (the blocks it half fills):
/// each side grows, line by line and by less than a block, while the next line
/// still holds lit pixels. Text set apart by a line of background stays out.
fn grown(frame: &Luma, background: u8, [mut x0, mut y0, mut x1, mut y1]: [usize; 4]) -> Region {
    let lit = |v: u8| v.abs_diff(background) > LIT_BY;
    let row_lit = |y: usize, x0: usize, x1: usize| (x0..=x1).any(|x| lit(frame.at(x, y)));
    let column_lit = |x: usize, y0: usize, y1: usize| (y0..=y1).any(|y| lit(frame.at(x, y)));
    for _ in 1..BLOCK {
        if y0 > 0 && row_lit(y0 - 1, x0, x1) {
            y0 -= 1;
        }
        if y1 + 1 < frame.rows && row_lit(y1 + 1, x0, x1) {
            y1 += 1;
        }
        if x0 > 0 && column_lit(x0 - 1, y0, y1) {
            x0 -= 1;
        }
        if x1 + 1 < frame.columns && column_lit(x1 + 1, y0, y1) {
            x1 += 1;
        }
    }
    Region {
        x0: x0 as u32,
        y0: y0 as u32,
        x1: x1 as u32,
        y1: y1 as u32,
    }
}

fn most_common(values: impl Iterator<Item = u8>) -> (u8, usize) {
    let mut histogram = [0usize; 256];
    for v in values {
        histogram[v as usize] += 1;
    }
    let (value, count) = histogram
        .iter()
        .enumerate()
        .max_by_key(|&(_, n)| *n)
        .expect("256 bins");
    (value as u8, *count)
}

fn is_image(frame: &Luma, x0: usize, y0: usize, (background, _): (u8, usize)) -> bool {
    let pixels =
        || (y0..y0 + BLOCK).flat_map(move |y| (x0..x0 + BLOCK).map(move |x| frame.at(x, y)));
    let n = (BLOCK * BLOCK) as f32;
    let lit = pixels().filter(|v| v.abs_diff(background) > LIT_BY).count() as f32;
    let (_, mode) = most_common(pixels());
    lit >= LIT_SHARE * n && (mode as f32) <= MODE_SHARE * n
}

/// A connected group of image blocks and its bounding box, in blocks.
struct Group {
    blocks: usize,
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

fn groups(image: &[bool], bw: usize, bh: usize) -> Vec<Group> {
    let mut seen = vec![false; image.len()];
    let mut groups = Vec::new();
    let mut stack = Vec::new();
    for start in 0..image.len() {
        if !image[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut g = Group {
            blocks: 0,
            x0: usize::MAX,
            y0: usize::MAX,
            x1: 0,
            y1: 0,
        };
        while let Some(b) = stack.pop() {
            let (x, y) = (b % bw, b / bw);
            g.blocks += 1;
            (g.x0, g.y0, g.x1, g.y1) = (g.x0.min(x), g.y0.min(y), g.x1.max(x), g.y1.max(y));
            let neighbours = [
                (x > 0).then(|| b - 1),
                (x + 1 < bw).then(|| b + 1),
                (y > 0).then(|| b - bw),
                (y + 1 < bh).then(|| b + bw),
            ];
            for n in neighbours.into_iter().flatten() {
                if image[n] && !seen[n] {
                    seen[n] = true;
                    stack.push(n);
                }
            }
        }
        groups.push(g);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dark screen, speckle in `image`, a line of "text" (bright strokes) above it.
    fn screen(rows: usize, columns: usize, image: Region, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut values = vec![0u8; rows * columns];
        for y in 0..rows {
            for x in 0..columns {
                let inside = (image.x0 as usize..=image.x1 as usize).contains(&x)
                    && (image.y0 as usize..=image.y1 as usize).contains(&y);
                values[y * columns + x] = if inside {
                    rng.u8(20..255)
                } else if y < 20 && x % 5 < 2 && x < columns / 2 {
                    230
                } else {
                    0
                };
            }
        }
        values
    }

    #[test]
    fn the_speckle_is_found_and_the_text_left_out() {
        let image = Region {
            x0: 40,
            y0: 48,
            x1: 279,
            y1: 215,
        };
        let values = screen(240, 320, image, 1);
        let found = infer(&Luma {
            rows: 240,
            columns: 320,
            values: &values,
        });
        assert_eq!(found, vec![image]);
    }

    #[test]
    fn a_screen_of_text_has_no_image_area() {
        let mut values = vec![0u8; 240 * 320];
        for (i, v) in values.iter_mut().enumerate() {
            if (i / 320) % 12 < 8 && i % 7 < 3 {
                *v = 255;
            }
        }
        assert!(
            infer(&Luma {
                rows: 240,
                columns: 320,
                values: &values,
            })
            .is_empty()
        );
        assert!(
            infer(&Luma {
                rows: 4,
                columns: 4,
                values: &[0; 16]
            })
            .is_empty()
        );
    }

    #[test]
    fn texture_over_the_whole_screen_leaves_text_undecidable() {
        let whole = Region {
            x0: 0,
            y0: 0,
            x1: 319,
            y1: 239,
        };
        let values = screen(240, 320, whole, 2);
        let luma = Luma {
            rows: 240,
            columns: 320,
            values: &values,
        };
        assert!(infer(&luma).is_empty());
    }

    #[test]
    fn luma_takes_the_brightest_channel_of_the_top_byte() {
        let rgb = Layout {
            rows: 1,
            columns: 2,
            samples_per_pixel: 3,
            bytes_per_sample: 1,
            planar: false,
            ybr: false,
            ybr_422: false,
        };
        assert_eq!(luma(&[1, 9, 3, 4, 4, 4], &rgb, false), vec![9, 4]);
        let ybr = Layout {
            ybr: true,
            ..rgb.clone()
        };
        assert_eq!(luma(&[1, 128, 128, 4, 128, 128], &ybr, false), vec![1, 4]);
        let planar = Layout {
            planar: true,
            ..rgb.clone()
        };
        assert_eq!(luma(&[1, 2, 9, 0, 3, 3], &planar, false), vec![9, 3]);
        let ybr_422 = Layout {
            ybr: true,
            ybr_422: true,
            ..rgb.clone()
        };
        assert_eq!(luma(&[5, 6, 128, 128], &ybr_422, false), vec![5, 6]);
        let mono16 = Layout {
            samples_per_pixel: 1,
            bytes_per_sample: 2,
            ..rgb
        };
        assert_eq!(luma(&[0x10, 0x02, 0xFF, 0x07], &mono16, false), vec![2, 7]);
        assert_eq!(
            luma(&[0x10, 0x02, 0xFF, 0x07], &mono16, true),
            vec![0x10, 0xFF]
        );
    }
}
