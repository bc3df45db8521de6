//! Blanking JPEG baseline frames in the DCT domain, without decoding them.
//!
//! Decoding a frame to pixels and encoding it again costs a full frame of memory per
//! association, most of a core, and a generation of JPEG loss on the very image the
//! clinic reads. Blanking needs none of that: the Huffman-coded blocks are decoded to
//! their quantized coefficients, blocks wholly inside the ultrasound regions are
//! written back unchanged, blocks wholly outside become flat black, and only the few
//! blocks straddling a region's edge go through an inverse and forward DCT. The
//! result uses the frame's own quantization and Huffman tables, so the image inside
//! the regions is bit-for-bit what the machine sent.
//!
//! Frames this does not handle (progressive, arithmetic coding, 12-bit, several
//! scans, a Huffman table without a symbol the blanking needs) return `None`, and the
//! frame goes through [`blank_frame`]'s fallback: decoding and re-encoding.

use super::pixels::{Blanker, Layout, Region};

/// Blanks everything outside `regions` in a baseline JPEG frame. `ybr` says the
/// components are Y, Cb, Cr (black is 0, 128, 128), otherwise black is 0 in all.
/// `Ok(None)`: the frame is valid as far as read but uses what is not handled here.
pub fn blank(
    frame: &[u8],
    regions: &[Region],
    ybr: bool,
    (rows, columns): (u32, u32),
) -> Result<Option<Vec<u8>>, String> {
    let header = match Header::parse(frame)? {
        Some(header) => header,
        None => return Ok(None),
    };
    // The work and the output grow with the declared size: it must be the image's.
    if (header.height, header.width) != (rows as usize, columns as usize) {
        return Err(format!(
            "JPEG frame is {}x{} but the image is {columns}x{rows}",
            header.width, header.height
        ));
    }
    let mut out = Vec::with_capacity(frame.len());
    // Only what decoding needs: APPn (EXIF and JFIF thumbnails of the unblanked
    // frame, vendor data) and COM go.
    out.extend_from_slice(&[0xFF, 0xD8]);
    for segment in &header.kept {
        out.extend_from_slice(&frame[segment.clone()]);
    }
    let mut reader = BitReader::new(&frame[header.scan_start..]);
    let mut writer = BitWriter {
        out: &mut out,
        acc: 0,
        bits: 0,
    };
    let layout = ScanLayout::new(&header, regions, ybr);
    if !layout.transcode(&header, &mut reader, &mut writer)? {
        return Ok(None);
    }
    writer.flush();
    let rest = header.scan_start + reader.end()?;
    let tail = &frame[rest..];
    if tail.len() < 2 || tail[..2] != [0xFF, 0xD9] {
        // Anything but EOI after the scan (a second scan, a DNL marker) is not ours.
        return Ok(None);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(Some(out))
}

/// The natural (row-major) position of each zig-zag index.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

#[derive(Debug, Clone)]
struct Component {
    h: usize,
    v: usize,
    quant: [u16; 64],
    dc_table: usize,
    ac_table: usize,
}

/// What the markers before the scan say.
struct Header {
    width: usize,
    height: usize,
    components: Vec<Component>,
    /// Huffman tables by class (0 DC, 1 AC) and id.
    tables: [[Option<Huffman>; 4]; 2],
    restart_interval: usize,
    /// Where the entropy-coded data starts.
    scan_start: usize,
    /// The marker segments decoding needs, in order, the scan header last: tables,
    /// frame header, restart interval, Adobe APP14 (colour transform).
    kept: Vec<std::ops::Range<usize>>,
}

impl Header {
    fn parse(frame: &[u8]) -> Result<Option<Header>, String> {
        if frame.len() < 4 || frame[..2] != [0xFF, 0xD8] {
            return Err("JPEG frame does not start with SOI".into());
        }
        let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
        let mut tables: [[Option<Huffman>; 4]; 2] = Default::default();
        let mut frame_info: Option<FrameInfo> = None;
        let mut restart_interval = 0;
        let mut kept = Vec::new();
        let mut pos = 2;
        loop {
            while frame.get(pos) == Some(&0xFF) && frame.get(pos + 1) == Some(&0xFF) {
                pos += 1;
            }
            let (Some(&0xFF), Some(&marker)) = (frame.get(pos), frame.get(pos + 1)) else {
                return Err("JPEG frame ends before its scan".into());
            };
            let len = match frame.get(pos + 2..pos + 4) {
                Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
                None => return Err("JPEG frame ends inside a marker".into()),
            };
            let body = frame
                .get(pos + 4..pos + 2 + len)
                .filter(|_| len >= 2)
                .ok_or("JPEG marker segment runs past the frame")?;
            let needed = matches!(marker, 0xDB | 0xC4 | 0xC0 | 0xC1 | 0xDD | 0xDA)
                || (marker == 0xEE && body.starts_with(b"Adobe"));
            if needed {
                kept.push(pos..pos + 2 + len);
            }
            pos += 2 + len;
            match marker {
                0xDB => parse_dqt(body, &mut quant)?,
                0xC4 => parse_dht(body, &mut tables)?,
                0xC0 | 0xC1 => frame_info = Some(parse_sof(body)?),
                0xDD => {
                    let b = body.get(..2).ok_or("JPEG DRI segment too short")?;
                    restart_interval = usize::from(u16::from_be_bytes([b[0], b[1]]));
                }
                0xDA => {
                    let Some((width, height, comps)) = frame_info else {
                        return Err("JPEG scan before its frame header".into());
                    };
                    let Some(components) = scan_components(body, &comps, &quant, &tables)? else {
                        return Ok(None);
                    };
                    return Ok(Some(Header {
                        width,
                        height,
                        components,
                        tables,
                        restart_interval,
                        scan_start: pos,
                        kept,
                    }));
                }
                // Progressive, lossless, hierarchical or arithmetic-coded frames.
                0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
                _ => {}
            }
        }
    }
}

fn parse_dqt(mut body: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Result<(), String> {
    while let Some(&pq_tq) = body.first() {
        let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 15));
        let size = if precision == 0 { 64 } else { 128 };
        let values = body.get(1..1 + size).ok_or("JPEG DQT segment too short")?;
        let slot = quant
            .get_mut(id)
            .ok_or("JPEG quantization table id above 3")?;
        let mut table = [0u16; 64];
        for (k, q) in table.iter_mut().enumerate() {
            *q = if precision == 0 {
                u16::from(values[k])
            } else {
                u16::from_be_bytes([values[2 * k], values[2 * k + 1]])
            };
        }
        if table.contains(&0) {
            return Err("JPEG quantization table holds a zero".into());
        }
        *slot = Some(table);
        body = &body[1 + size..];
    }
    Ok(())
}

fn parse_dht(mut body: &[u8], tables: &mut [[Option<Huffman>; 4]; 2]) -> Result<(), String> {
    while let Some(&tc_th) = body.first() {
        let (class, id) = (usize::from(tc_th >> 4), usize::from(tc_th & 15));
        let counts = body.get(1..17).ok_or("JPEG DHT segment too short")?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = body
            .get(17..17 + total)
            .ok_or("JPEG DHT segment too short")?;
        let slot = tables
            .get_mut(class)
            .and_then(|t| t.get_mut(id))
            .ok_or("JPEG Huffman table class or id out of range")?;
        *slot = Some(Huffman::new(counts, symbols)?);
        body = &body[17 + total..];
    }
    Ok(())
}

type FrameInfo = (usize, usize, Vec<(usize, usize, usize)>);

/// Width, height and, per component, (id, h << 4 | v, quantization table).
fn parse_sof(body: &[u8]) -> Result<FrameInfo, String> {
    let b = body.get(..6).ok_or("JPEG SOF segment too short")?;
    if b[0] != 8 {
        return Err(format!("JPEG baseline frame with {}-bit samples", b[0]));
    }
    let height = usize::from(u16::from_be_bytes([b[1], b[2]]));
    let width = usize::from(u16::from_be_bytes([b[3], b[4]]));
    let count = usize::from(b[5]);
    let specs = body
        .get(6..6 + 3 * count)
        .ok_or("JPEG SOF segment too short")?;
    if width == 0 || height == 0 || count == 0 {
        return Err("JPEG frame without pixels".into());
    }
    let comps = specs
        .chunks(3)
        .map(|c| (usize::from(c[0]), usize::from(c[1]), usize::from(c[2])))
        .collect();
    Ok((width, height, comps))
}

/// The scan's components with their tables, in frame order; `None` when the scan is
/// not one interleaved baseline scan over every component.
fn scan_components(
    body: &[u8],
    comps: &[(usize, usize, usize)],
    quant: &[Option<[u16; 64]>; 4],
    tables: &[[Option<Huffman>; 4]; 2],
) -> Result<Option<Vec<Component>>, String> {
    let count = usize::from(*body.first().ok_or("JPEG SOS segment too short")?);
    let specs = body
        .get(1..1 + 2 * count)
        .ok_or("JPEG SOS segment too short")?;
    let spectral = body
        .get(1 + 2 * count..4 + 2 * count)
        .ok_or("JPEG SOS segment too short")?;
    if count != comps.len() || spectral != [0, 63, 0] || count > 4 {
        return Ok(None);
    }
    let mut components = Vec::with_capacity(count);
    for (spec, &(id, sampling, tq)) in specs.chunks(2).zip(comps) {
        if usize::from(spec[0]) != id {
            return Ok(None);
        }
        let (h, v) = (sampling >> 4, sampling & 15);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return Err("JPEG sampling factor out of range".into());
        }
        let quant = quant
            .get(tq)
            .copied()
            .flatten()
            .ok_or("JPEG component names a missing quantization table")?;
        let (dc_table, ac_table) = (usize::from(spec[1] >> 4), usize::from(spec[1] & 15));
        if tables[0].get(dc_table).is_none_or(Option::is_none)
            || tables[1].get(ac_table).is_none_or(Option::is_none)
        {
            return Err("JPEG scan names a missing Huffman table".into());
        }
        components.push(Component {
            h,
            v,
            quant,
            dc_table,
            ac_table,
        });
    }
    if components.iter().map(|c| c.h * c.v).sum::<usize>() > 10 {
        return Err("JPEG MCU of more than 10 blocks".into());
    }
    Ok(Some(components))
}

/// One Huffman table, for decoding (JPEG F.2.2.3) and encoding (C.2) alike.
#[derive(Debug, Clone)]
struct Huffman {
    /// Per code length 1..=16: the largest code (or -1), and where its symbols start.
    max_code: [i32; 17],
    min_code: [i32; 17],
    first_index: [usize; 17],
    symbols: Vec<u8>,
    /// Per symbol: its code and length (0: not in the table).
    code: [u16; 256],
    length: [u8; 256],
    /// Codes of up to `LOOKAHEAD` bits, decoded by one lookup: (symbol, length).
    fast: Vec<(u8, u8)>,
}

const LOOKAHEAD: u32 = 9;

impl Huffman {
    fn new(counts: &[u8], symbols: &[u8]) -> Result<Huffman, String> {
        let mut table = Huffman {
            max_code: [-1; 17],
            min_code: [0; 17],
            first_index: [0; 17],
            symbols: symbols.to_vec(),
            code: [0; 256],
            length: [0; 256],
            fast: vec![(0, 0); 1 << LOOKAHEAD],
        };
        let mut code = 0i32;
        let mut index = 0usize;
        for len in 1..=16 {
            let n = usize::from(counts[len - 1]);
            table.first_index[len] = index;
            table.min_code[len] = code;
            for &symbol in &symbols[index..index + n] {
                table.code[usize::from(symbol)] = code as u16;
                table.length[usize::from(symbol)] = len as u8;
                code += 1;
            }
            if n > 0 {
                table.max_code[len] = code - 1;
            }
            index += n;
            if code > 1 << len {
                return Err("JPEG Huffman table over-subscribed".into());
            }
            code <<= 1;
        }
        for &symbol in symbols {
            let len = table.length[usize::from(symbol)];
            if u32::from(len) <= LOOKAHEAD {
                let shift = LOOKAHEAD - u32::from(len);
                let first = usize::from(table.code[usize::from(symbol)]) << shift;
                for slot in &mut table.fast[first..first + (1 << shift)] {
                    *slot = (symbol, len);
                }
            }
        }
        Ok(table)
    }

    fn decode(&self, reader: &mut BitReader) -> Result<u8, String> {
        let (symbol, len) = self.lookup(reader.peek(32)?)?;
        reader.consume(len);
        Ok(symbol)
    }

    /// The symbol whose code starts `word` (read most significant bit first), and
    /// the code's length.
    #[inline(always)]
    fn lookup(&self, word: u32) -> Result<(u8, u32), String> {
        let (symbol, len) = self.fast[(word >> (32 - LOOKAHEAD)) as usize];
        if len > 0 {
            return Ok((symbol, u32::from(len)));
        }
        let bits = word >> 16;
        for len in LOOKAHEAD as usize + 1..=16 {
            let code = (bits >> (16 - len)) as i32;
            if code <= self.max_code[len] {
                let index = self.first_index[len] + (code - self.min_code[len]) as usize;
                return Ok((self.symbols[index], len as u32));
            }
        }
        Err("JPEG entropy data holds a code not in its Huffman table".into())
    }

    /// Writes `symbol`; `false` when the table has no code for it.
    fn encode(&self, writer: &mut BitWriter, symbol: u8) -> bool {
        let len = self.length[usize::from(symbol)];
        if len == 0 {
            return false;
        }
        writer.put(u32::from(self.code[usize::from(symbol)]), u32::from(len));
        true
    }
}

/// Reads entropy-coded bits, removing stuffed zero bytes; stops at a marker.
#[derive(Clone)]
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    bits: u32,
    /// A marker was met: further bits read as zeros (F.2.2.5), and `pos` stays on it.
    at_marker: bool,
    /// Zero bits handed out past the end of the data, to tell a truncated frame.
    padding: u32,
    /// Bits consumed since the start or the last restart marker.
    consumed: u64,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> BitReader<'a> {
        BitReader {
            data,
            pos: 0,
            acc: 0,
            bits: 0,
            at_marker: false,
            padding: 0,
            consumed: 0,
        }
    }

    fn fill(&mut self) -> Result<(), String> {
        // Most of the time the next bytes hold no 0xFF: take them in one go.
        if let Some(word) = self
            .data
            .get(self.pos..self.pos + 8)
            .filter(|_| !self.at_marker)
        {
            let word = u64::from_be_bytes(word.try_into().expect("eight bytes"));
            let room = ((64 - self.bits) / 8) as usize;
            let taken = if room == 8 {
                u64::MAX
            } else {
                !(u64::MAX >> (8 * room))
            };
            if ff_bytes(word) & taken == 0 {
                self.acc |= (word & taken) >> self.bits;
                self.bits += 8 * room as u32;
                self.pos += room;
                return Ok(());
            }
        }
        while self.bits <= 56 {
            let byte = self.next_byte()?;
            self.acc |= u64::from(byte) << (56 - self.bits);
            self.bits += 8;
        }
        Ok(())
    }

    /// The next `count` (at most 32) bits, without consuming them.
    #[inline(always)]
    fn peek(&mut self, count: u32) -> Result<u32, String> {
        if self.bits < count {
            self.fill()?;
        }
        Ok((self.acc >> (64 - count)) as u32)
    }

    #[inline(always)]
    fn consume(&mut self, count: u32) {
        self.acc <<= count;
        self.bits -= count;
        self.consumed += u64::from(count);
    }

    fn next_byte(&mut self) -> Result<u8, String> {
        if self.at_marker {
            // Read ahead may pass the marker; decoding past it means the frame
            // ended (an early EOI) before its last block.
            self.padding += 8;
            if self.padding > 64 {
                return Err("JPEG entropy data ends before the frame's last block".into());
            }
            return Ok(0);
        }
        let Some(&byte) = self.data.get(self.pos) else {
            // Read ahead may pass the end; decoding that far is what fails.
            self.padding += 8;
            if self.padding > 64 {
                return Err("JPEG entropy data ends without EOI".into());
            }
            return Ok(0);
        };
        if byte == 0xFF {
            match self.data.get(self.pos + 1) {
                Some(0x00) => self.pos += 2,
                Some(_) => {
                    self.at_marker = true;
                    return Ok(0);
                }
                None => return Err("JPEG entropy data ends without EOI".into()),
            }
        } else {
            self.pos += 1;
        }
        Ok(byte)
    }

    fn receive(&mut self, count: u8) -> Result<i32, String> {
        if count == 0 {
            return Ok(0);
        }
        let value = self.peek(u32::from(count))? as i32;
        self.consume(u32::from(count));
        Ok(extend(value, count))
    }

    /// Skips to the restart marker that must come next (padding bits are dropped).
    fn restart(&mut self) -> Result<(), String> {
        let at = self.end()?;
        match self.data.get(at..at + 2) {
            Some(&[0xFF, m]) if (0xD0..=0xD7).contains(&m) => {
                self.pos = at + 2;
                self.acc = 0;
                self.bits = 0;
                self.consumed = 0;
                self.at_marker = false;
                self.padding = 0;
                Ok(())
            }
            _ => Err("JPEG entropy data lacks an expected restart marker".into()),
        }
    }

    /// Where the entropy-coded segment ends: at the marker after the last block's
    /// padding bits (read ahead or not).
    fn end(&self) -> Result<usize, String> {
        let mut at = self.pos;
        if !self.at_marker {
            // At most the padding byte is left unread before the marker.
            let limit = at + 2;
            while at <= limit {
                match self.data.get(at..at + 2) {
                    Some(&[0xFF, 0x00]) => at += 2,
                    Some(&[0xFF, _]) => break,
                    Some(_) => at += 1,
                    None => return Err("JPEG entropy data ends without EOI".into()),
                }
            }
        }
        while self.data.get(at + 1) == Some(&0xFF) {
            at += 1; // fill bytes before the marker
        }
        match self.data.get(at..at + 2) {
            Some(&[0xFF, m]) if m != 0 => Ok(at),
            _ => Err("JPEG entropy data runs on past its last block".into()),
        }
    }
}

/// The high bit of every byte of `word` that is 0xFF, the mark of a marker or a
/// stuffed byte: a zero byte of !word. Borrows can only add false alarms (above a
/// real 0xFF), which callers take the byte-by-byte way.
#[inline(always)]
fn ff_bytes(word: u64) -> u64 {
    let inverse = !word;
    inverse.wrapping_sub(0x0101_0101_0101_0101) & !inverse & 0x8080_8080_8080_8080
}

/// JPEG's sign extension of a `count`-bit magnitude (F.2.2.1).
fn extend(value: i32, count: u8) -> i32 {
    if count == 0 {
        0
    } else if value < 1 << (count - 1) {
        value - (1 << count) + 1
    } else {
        value
    }
}

/// Writes entropy-coded bits with byte stuffing.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter<'_> {
    /// Appends the low `count` (at most 32) bits of `value`.
    #[inline(always)]
    fn put(&mut self, value: u32, count: u32) {
        let mask = if count == 32 {
            u32::MAX
        } else {
            (1 << count) - 1
        };
        self.acc = (self.acc << count) | u64::from(value & mask);
        self.bits += count;
        if self.bits >= 32 {
            self.bits -= 32;
            let word = (self.acc >> self.bits) as u32;
            if ff_bytes(u64::from(word)) == 0 {
                self.out.extend_from_slice(&word.to_be_bytes());
            } else {
                for byte in word.to_be_bytes() {
                    self.byte(byte);
                }
            }
        }
    }

    fn byte(&mut self, byte: u8) {
        self.out.push(byte);
        if byte == 0xFF {
            self.out.push(0);
        }
    }

    /// Writes out what is held, the last byte padded with ones (F.1.2.3).
    fn flush(&mut self) {
        if self.bits % 8 > 0 {
            let pad = 8 - self.bits % 8;
            self.acc = (self.acc << pad) | ((1 << pad) - 1);
            self.bits += pad;
        }
        while self.bits >= 8 {
            self.bits -= 8;
            self.byte((self.acc >> self.bits) as u8);
        }
        self.acc = 0;
    }

    fn marker(&mut self, marker: u8) {
        self.flush();
        self.out.extend_from_slice(&[0xFF, marker]);
    }
}

/// The size category of a coefficient and its bits (F.1.2.1).
fn category(value: i32) -> (u8, u32) {
    let magnitude = value.unsigned_abs();
    let size = 32 - magnitude.leading_zeros();
    let bits = if value < 0 {
        (value - 1) as u32 & ((1 << size) - 1)
    } else {
        value as u32
    };
    (size as u8, bits)
}

/// What happens to one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Black,
    Partial,
}

/// The geometry of the scan and the regions, in each component's sample grid.
struct ScanLayout<'a> {
    regions: &'a [Region],
    width: usize,
    height: usize,
    h_max: usize,
    v_max: usize,
    /// Per component: the level black takes, before the level shift.
    black: Vec<f32>,
}

impl<'a> ScanLayout<'a> {
    fn new(header: &Header, regions: &'a [Region], ybr: bool) -> ScanLayout<'a> {
        let black = (0..header.components.len())
            .map(|i| if ybr && i > 0 { 128.0 } else { 0.0 })
            .collect();
        ScanLayout {
            regions,
            width: header.width,
            height: header.height,
            h_max: header.components.iter().map(|c| c.h).max().unwrap_or(1),
            v_max: header.components.iter().map(|c| c.v).max().unwrap_or(1),
            black,
        }
    }

    /// The pixels a component's sample covers, as (x0, y0, x1, y1), half-open.
    fn sample_pixels(
        &self,
        comp: &Component,
        sx: usize,
        sy: usize,
    ) -> (usize, usize, usize, usize) {
        let (fx, fy) = (self.h_max / comp.h, self.v_max / comp.v);
        (sx * fx, sy * fy, (sx + 1) * fx, (sy + 1) * fy)
    }

    fn kept(&self, x: usize, y: usize) -> bool {
        self.regions.iter().any(|r| {
            (r.x0 as usize..=r.x1 as usize).contains(&x)
                && (r.y0 as usize..=r.y1 as usize).contains(&y)
        })
    }

    fn fate(&self, comp: &Component, bx: usize, by: usize) -> Fate {
        let (x0, y0, _, _) = self.sample_pixels(comp, bx * 8, by * 8);
        let (_, _, x1, y1) = self.sample_pixels(comp, bx * 8 + 7, by * 8 + 7);
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        if x0 >= x1 || y0 >= y1 {
            return Fate::Black; // all padding: nobody sees it, so nothing may hide there
        }
        let inside = |r: &Region| {
            r.x0 as usize <= x0
                && x1 <= r.x1 as usize + 1
                && r.y0 as usize <= y0
                && y1 <= r.y1 as usize + 1
        };
        let touches = |r: &Region| {
            (r.x0 as usize) < x1
                && x0 <= r.x1 as usize
                && (r.y0 as usize) < y1
                && y0 <= r.y1 as usize
        };
        if self.regions.iter().any(inside) {
            Fate::Keep
        } else if self.regions.iter().any(touches) {
            Fate::Partial
        } else {
            Fate::Black
        }
    }

    /// Decodes every block and writes it back, blanked where it must be. `false`:
    /// a Huffman table lacks a symbol the output needs.
    fn transcode(
        &self,
        header: &Header,
        reader: &mut BitReader,
        writer: &mut BitWriter,
    ) -> Result<bool, String> {
        let comps = &header.components;
        let mcus_x = self.width.div_ceil(8 * self.h_max);
        let mcus_y = self.height.div_ceil(8 * self.v_max);
        let total = mcus_x * mcus_y;
        let mut pred_in = vec![0i32; comps.len()];
        let mut pred_out = vec![0i32; comps.len()];
        let mut restarts = 0u8;
        let mut block = [0i32; 64];
        // Blocks that come out bit for bit as they went in are only skipped while
        // reading; their bits are then copied in one stretch from where it began.
        let mut stretch: Option<BitReader> = None;
        for mcu in 0..total {
            if header.restart_interval > 0 && mcu > 0 && mcu % header.restart_interval == 0 {
                copy_stretch(stretch.take(), reader, writer)?;
                reader.restart()?;
                writer.marker(0xD0 + restarts);
                restarts = (restarts + 1) % 8;
                pred_in.fill(0);
                pred_out.fill(0);
            }
            let (mx, my) = (mcu % mcus_x, mcu / mcus_x);
            for (c, comp) in comps.iter().enumerate() {
                let dc = header.tables[0][comp.dc_table].as_ref().expect("checked");
                let ac = header.tables[1][comp.ac_table].as_ref().expect("checked");
                for v in 0..comp.v {
                    for h in 0..comp.h {
                        let (bx, by) = (mx * comp.h + h, my * comp.v + v);
                        let fate = self.fate(comp, bx, by);
                        if fate == Fate::Keep && pred_in[c] == pred_out[c] {
                            stretch.get_or_insert_with(|| reader.clone());
                            skip_block(reader, dc, ac, &mut pred_in[c])?;
                            pred_out[c] = pred_in[c];
                            continue;
                        }
                        copy_stretch(stretch.take(), reader, writer)?;
                        let written = match fate {
                            Fate::Keep => copy_block(
                                reader,
                                writer,
                                dc,
                                ac,
                                &mut pred_in[c],
                                &mut pred_out[c],
                            )?,
                            Fate::Black => {
                                skip_block(reader, dc, ac, &mut pred_in[c])?;
                                let black = quantize((self.black[c] - 128.0) * 8.0, comp.quant[0]);
                                encode_flat(writer, dc, ac, &mut pred_out[c], black)
                            }
                            Fate::Partial => {
                                decode_block(reader, dc, ac, &mut pred_in[c], &mut block)?;
                                self.blank_partial(comp, c, bx, by, &mut block);
                                encode_block(writer, dc, ac, &mut pred_out[c], &block)
                            }
                        };
                        if !written {
                            return Ok(false);
                        }
                    }
                }
            }
        }
        copy_stretch(stretch.take(), reader, writer)?;
        Ok(true)
    }

    /// Blanks the samples of one block that cover a pixel outside the regions: to
    /// pixels and back, with the block's own quantization.
    fn blank_partial(
        &self,
        comp: &Component,
        c: usize,
        bx: usize,
        by: usize,
        block: &mut [i32; 64],
    ) {
        let mut samples = [0f32; 64];
        for (k, &z) in ZIGZAG.iter().enumerate() {
            samples[z] = (block[k] * i32::from(comp.quant[k])) as f32;
        }
        let mut pixels = idct(&samples);
        for row in 0..8 {
            for col in 0..8 {
                let (x0, y0, x1, y1) = self.sample_pixels(comp, bx * 8 + col, by * 8 + row);
                let hidden = (y0..y1.min(self.height))
                    .any(|y| (x0..x1.min(self.width)).any(|x| !self.kept(x, y)));
                if hidden {
                    pixels[row * 8 + col] = self.black[c] - 128.0;
                }
            }
        }
        let coefficients = fdct(&pixels);
        for (k, &z) in ZIGZAG.iter().enumerate() {
            block[k] = quantize(coefficients[z], comp.quant[k]);
        }
    }
}

fn quantize(value: f32, q: u16) -> i32 {
    // Baseline coefficients fit in 11 bits; clamping keeps rounding from leaving them.
    ((value / f32::from(q)).round() as i32).clamp(-1023, 1023)
}

/// Decodes one block's coefficients, in zig-zag order.
fn decode_block(
    reader: &mut BitReader,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    block: &mut [i32; 64],
) -> Result<(), String> {
    *block = [0; 64];
    read_dc(reader, dc, pred)?;
    block[0] = *pred;
    let mut k = 1;
    while k < 64 {
        let rs = ac.decode(reader)?;
        let (run, size) = (usize::from(rs >> 4), rs & 15);
        if size == 0 {
            if run == 15 {
                k += 16;
                continue;
            }
            break;
        }
        k += run;
        if k > 63 {
            return Err("JPEG AC coefficients run past the block".into());
        }
        block[k] = reader.receive(size)?;
        k += 1;
    }
    Ok(())
}

/// Writes a block that stays as it came: its AC bits are copied as read, without
/// decoding them to coefficients, and only its DC difference is coded anew (the
/// block before it may have changed). `false` when a table lacks a symbol.
fn copy_block(
    reader: &mut BitReader,
    writer: &mut BitWriter,
    dc: &Huffman,
    ac: &Huffman,
    pred_in: &mut i32,
    pred_out: &mut i32,
) -> Result<bool, String> {
    read_dc(reader, dc, pred_in)?;
    if !write_dc(writer, dc, pred_out, *pred_in) {
        return Ok(false);
    }
    read_ac(reader, ac, |bits, count| writer.put(bits, count))?;
    Ok(true)
}

/// Reads a block's DC difference into the prediction `pred`.
#[inline(always)]
fn read_dc(reader: &mut BitReader, dc: &Huffman, pred: &mut i32) -> Result<(), String> {
    let size = dc.decode(reader)?;
    if size > 11 {
        return Err("JPEG DC difference out of range".into());
    }
    *pred += reader.receive(size)?;
    Ok(())
}

/// Reads a block's AC symbols to its end without decoding their coefficients,
/// handing each symbol's bits as read (its code and magnitude, which fit in one
/// peek) to `read`.
#[inline(always)]
fn read_ac(
    reader: &mut BitReader,
    ac: &Huffman,
    mut read: impl FnMut(u32, u32),
) -> Result<(), String> {
    let mut k = 1;
    while k < 64 {
        let word = reader.peek(32)?;
        let (rs, len) = ac.lookup(word)?;
        let (run, size) = (usize::from(rs >> 4), rs & 15);
        let bits = len + u32::from(size);
        read(word >> (32 - bits), bits);
        reader.consume(bits);
        if size == 0 {
            if run == 15 {
                k += 16;
                continue;
            }
            break;
        }
        k += run + 1;
        if k > 64 {
            return Err("JPEG AC coefficients run past the block".into());
        }
    }
    Ok(())
}

/// Copies the bits `reader` consumed since `from`, a copy of it taken earlier.
fn copy_stretch(
    from: Option<BitReader>,
    reader: &BitReader,
    writer: &mut BitWriter,
) -> Result<(), String> {
    let Some(mut from) = from else {
        return Ok(());
    };
    let mut left = reader.consumed - from.consumed;
    while left > 0 {
        let count = left.min(32) as u32;
        let bits = from.peek(32)? >> (32 - count);
        from.consume(count);
        writer.put(bits, count);
        left -= u64::from(count);
    }
    Ok(())
}

/// Reads past a block whose content is dropped, keeping the DC prediction.
fn skip_block(
    reader: &mut BitReader,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
) -> Result<(), String> {
    read_dc(reader, dc, pred)?;
    read_ac(reader, ac, |_, _| {})
}

/// Writes a block's DC coefficient `value` as its difference from the prediction
/// `pred`, which it becomes; `false` when the table lacks the size's symbol.
#[inline(always)]
fn write_dc(writer: &mut BitWriter, dc: &Huffman, pred: &mut i32, value: i32) -> bool {
    let (size, bits) = category(value - *pred);
    *pred = value;
    if !dc.encode(writer, size) {
        return false;
    }
    writer.put(bits, u32::from(size));
    true
}

/// Encodes a block of one flat level (no AC); `false` when a table lacks a
/// symbol.
fn encode_flat(
    writer: &mut BitWriter,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    level: i32,
) -> bool {
    write_dc(writer, dc, pred, level) && ac.encode(writer, 0x00)
}

/// Encodes one block; `false` when a table lacks a symbol.
fn encode_block(
    writer: &mut BitWriter,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    block: &[i32; 64],
) -> bool {
    if !write_dc(writer, dc, pred, block[0]) {
        return false;
    }
    let mut run = 0u8;
    for &value in &block[1..] {
        if value == 0 {
            run += 1;
            continue;
        }
        while run > 15 {
            if !ac.encode(writer, 0xF0) {
                return false;
            }
            run -= 16;
        }
        let (size, bits) = category(value);
        if !ac.encode(writer, (run << 4) | size) {
            return false;
        }
        writer.put(bits, u32::from(size));
        run = 0;
    }
    run == 0 || ac.encode(writer, 0x00)
}

/// cos((2x + 1) u pi / 16) scaled by C(u) / 2, for x, u in 0..8.
static BASIS: std::sync::LazyLock<[[f32; 8]; 8]> = std::sync::LazyLock::new(|| {
    let mut table = [[0f32; 8]; 8];
    for (x, row) in table.iter_mut().enumerate() {
        for (u, cell) in row.iter_mut().enumerate() {
            let c = if u == 0 {
                std::f32::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            *cell = c / 2.0 * (((2 * x + 1) * u) as f32 * std::f32::consts::PI / 16.0).cos();
        }
    }
    table
});

/// The 8x8 inverse DCT (A.3.3), giving level-shifted samples: rows, then columns.
fn idct(coefficients: &[f32; 64]) -> [f32; 64] {
    let b = &*BASIS;
    let mut rows = [0f32; 64];
    for v in 0..8 {
        for x in 0..8 {
            rows[v * 8 + x] = (0..8).map(|u| b[x][u] * coefficients[v * 8 + u]).sum();
        }
    }
    let mut out = [0f32; 64];
    for y in 0..8 {
        for x in 0..8 {
            out[y * 8 + x] = (0..8).map(|v| b[y][v] * rows[v * 8 + x]).sum();
        }
    }
    out
}

/// The 8x8 forward DCT (A.3.3) of level-shifted samples: rows, then columns.
fn fdct(samples: &[f32; 64]) -> [f32; 64] {
    let b = &*BASIS;
    let mut rows = [0f32; 64];
    for y in 0..8 {
        for u in 0..8 {
            rows[y * 8 + u] = (0..8).map(|x| b[x][u] * samples[y * 8 + x]).sum();
        }
    }
    let mut out = [0f32; 64];
    for v in 0..8 {
        for u in 0..8 {
            out[v * 8 + u] = (0..8).map(|y| b[y][v] * rows[y * 8 + u]).sum();
        }
    }
    out
}

/// JPEG quality of re-encoded baseline frames: high, since the frame was lossy already.
const JPEG_QUALITY: u8 = 95;

/// Blanks one JPEG baseline frame outside `regions`: in the DCT domain where the
/// frame allows, else by decoding and re-encoding it.
/// `size` is the image's (Rows, Columns): a frame must be that size, which also
/// bounds what decoding it may cost.
pub fn blank_frame(
    frame: &[u8],
    regions: &[Region],
    photometric: &str,
    size: (u32, u32),
) -> Result<Vec<u8>, String> {
    match blank(frame, regions, photometric.starts_with("YBR"), size) {
        Ok(Some(blanked)) => Ok(blanked),
        Ok(None) => reencode_jpeg(frame, regions, photometric, size),
        Err(e) => Err(e),
    }
}

/// Decodes, blanks and re-encodes a frame with the same chroma subsampling (4:2:2
/// for YBR_FULL_422, none for YBR_FULL): for frames the DCT-domain path cannot take.
fn reencode_jpeg(
    frame: &[u8],
    regions: &[Region],
    photometric: &str,
    (rows, columns): (u32, u32),
) -> Result<Vec<u8>, String> {
    let mut decoder = jpeg_decoder::Decoder::new(frame);
    decoder
        .read_info()
        .map_err(|e| format!("JPEG frame does not decode: {e}"))?;
    let info = decoder.info().ok_or("JPEG frame has no header")?;
    if (u32::from(info.height), u32::from(info.width)) != (rows, columns) {
        return Err(format!(
            "JPEG frame is {}x{} but the image is {columns}x{rows}",
            info.width, info.height
        ));
    }
    // One frame of the instance's own size, three samples at most.
    decoder.set_max_decoding_buffer_size(rows as usize * columns as usize * 3);
    let mut pixels = decoder
        .decode()
        .map_err(|e| format!("JPEG frame does not decode: {e}"))?;
    let (samples, color) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => (1, jpeg_encoder::ColorType::Luma),
        jpeg_decoder::PixelFormat::RGB24 => (3, jpeg_encoder::ColorType::Rgb),
        other => return Err(format!("JPEG frame in {other:?} is not handled")),
    };
    let layout = Layout {
        rows: u32::from(info.height),
        columns: u32::from(info.width),
        samples_per_pixel: samples,
        bytes_per_sample: 1,
        planar: false,
        ybr: false,
        ybr_422: false,
    };
    Blanker::new(layout, regions)
        .ok_or("JPEG frame has no pixels")?
        .apply(0, &mut pixels);
    let mut out = Vec::with_capacity(frame.len());
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY);
    if photometric == "YBR_FULL_422" {
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_1);
    } else {
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
    }
    encoder
        .encode(&pixels, info.width, info.height, color)
        .map_err(|e| format!("JPEG frame does not re-encode: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test card: a gradient with texture, so every block has AC energy.
    fn picture(w: u16, h: u16) -> Vec<u8> {
        let mut rgb = Vec::new();
        for y in 0..u32::from(h) {
            for x in 0..u32::from(w) {
                rgb.extend_from_slice(&[
                    (x * 255 / u32::from(w)) as u8,
                    ((x ^ y) & 0xFF) as u8,
                    (y * 255 / u32::from(h)) as u8,
                ]);
            }
        }
        rgb
    }

    fn encode(
        w: u16,
        h: u16,
        sampling: jpeg_encoder::SamplingFactor,
        restart: Option<u16>,
    ) -> Vec<u8> {
        let mut frame = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut frame, 90);
        encoder.set_sampling_factor(sampling);
        if let Some(interval) = restart {
            encoder.set_restart_interval(interval);
        }
        encoder
            .encode(&picture(w, h), w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        frame
    }

    fn decode(frame: &[u8]) -> Vec<u8> {
        jpeg_decoder::Decoder::new(frame).decode().unwrap()
    }

    fn check(sampling: jpeg_encoder::SamplingFactor, restart: Option<u16>) {
        let (w, h) = (200u16, 120u16);
        let frame = encode(w, h, sampling, restart);
        let region = Region {
            x0: 37,
            y0: 21,
            x1: 150,
            y1: 99,
        };
        let blanked = blank(&frame, &[region], true, (u32::from(h), u32::from(w)))
            .unwrap()
            .expect("handled");
        let (before, after) = (decode(&frame), decode(&blanked));
        for y in 0..usize::from(h) {
            for x in 0..usize::from(w) {
                let at = (y * usize::from(w) + x) * 3;
                let (px, was) = (&after[at..at + 3], &before[at..at + 3]);
                let outside = !(37..=150).contains(&x) || !(21..=99).contains(&y);
                // Well inside, the pixels are exactly what the machine sent: the
                // blocks are unchanged. (Chroma upsampling reaches one block over.)
                let deep = (37 + 24..=150 - 24).contains(&x) && (21 + 24..=99 - 24).contains(&y);
                // Next to a region, blocks are re-quantized and ring a little.
                let near = (37 - 16..=150 + 16).contains(&x) && (21 - 16..=99 + 16).contains(&y);
                let limit = if near { 40 } else { 4 };
                if outside {
                    assert!(
                        px.iter().all(|&v| v <= limit),
                        "({x},{y}) not black: {px:?}"
                    );
                } else if deep {
                    assert_eq!(px, was, "({x},{y}) changed");
                }
            }
        }
    }

    #[test]
    fn blanks_outside_the_region_and_keeps_the_inside_exact() {
        check(jpeg_encoder::SamplingFactor::F_1_1, None);
        check(jpeg_encoder::SamplingFactor::F_2_1, None);
        check(jpeg_encoder::SamplingFactor::F_2_2, None);
    }

    #[test]
    fn only_what_decoding_needs_is_kept_before_the_scan() {
        let frame = encode(64, 64, jpeg_encoder::SamplingFactor::F_2_1, None);
        let segment = |marker: u8, body: &[u8]| {
            let len = (body.len() + 2) as u16;
            [&[0xFF, marker][..], &len.to_be_bytes(), body].concat()
        };
        // An EXIF thumbnail, a comment and a vendor block that name the patient, and
        // Adobe's colour transform, which decoding needs.
        let adobe = segment(0xEE, b"Adobe\0\x64\0\0\0\0\x01");
        let planted = [
            &frame[..2],
            &segment(0xE1, b"Exif\0\0ZQXDOE thumbnail"),
            &segment(0xFE, b"ZQXDOE^JANE"),
            &segment(0xEB, b"ZQX vendor"),
            &adobe,
            &frame[2..],
        ]
        .concat();
        let region = Region {
            x0: 0,
            y0: 16,
            x1: 63,
            y1: 63,
        };
        let out = blank(&planted, &[region], true, (64, 64)).unwrap().unwrap();
        assert!(
            !out.windows(3).any(|w| w == b"ZQX"),
            "a planted segment survived"
        );
        assert!(!out.windows(4).any(|w| w == b"JFIF"), "APP0 goes too");
        assert!(out.windows(adobe.len()).any(|w| w == adobe), "APP14 kept");
        assert_eq!(decode(&out).len(), 64 * 64 * 3);
    }

    #[test]
    fn restart_intervals_are_kept() {
        check(jpeg_encoder::SamplingFactor::F_2_1, Some(3));
        let frame = encode(64, 64, jpeg_encoder::SamplingFactor::F_1_1, Some(2));
        let region = Region {
            x0: 0,
            y0: 0,
            x1: 63,
            y1: 63,
        };
        // Everything kept: the output is the input, restart markers and all, less
        // the encoder's JFIF APP0 segment (which decoding does not need).
        assert_eq!(&frame[2..4], [0xFF, 0xE0]);
        let app0 = 2 + 2 + usize::from(u16::from_be_bytes([frame[4], frame[5]]));
        assert_eq!(
            blank(&frame, &[region], true, (64, 64)).unwrap().unwrap(),
            [&frame[..2], &frame[app0..]].concat()
        );
    }

    #[test]
    fn category_and_extend_are_inverse() {
        for value in -2047..=2047 {
            let (size, bits) = category(value);
            assert_eq!(extend(bits as i32, size), value);
        }
    }

    #[test]
    fn dct_round_trips() {
        let mut samples = [0f32; 64];
        for (i, s) in samples.iter_mut().enumerate() {
            *s = (i as f32 * 7.0) % 255.0 - 128.0;
        }
        let back = idct(&fdct(&samples));
        for (a, b) in samples.iter().zip(back) {
            assert!((a - b).abs() < 0.01);
        }
    }

    #[test]
    fn broken_and_unhandled_frames() {
        let region = Region {
            x0: 0,
            y0: 0,
            x1: 9,
            y1: 9,
        };
        assert!(blank(b"not a jpeg", &[region], true, (64, 64)).is_err());
        let frame = encode(64, 64, jpeg_encoder::SamplingFactor::F_1_1, None);
        assert!(blank(&frame[..frame.len() / 2], &[region], true, (64, 64)).is_err());
        let mut progressive = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut progressive, 90);
        encoder.set_progressive(true);
        encoder
            .encode(&picture(64, 64), 64, 64, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        assert_eq!(
            blank(&progressive, &[region], true, (64, 64)).unwrap(),
            None
        );
    }

    #[test]
    fn jpeg_frames_are_blanked_and_re_encoded() {
        // A 32x16 grey frame with a white banner in the top 8 rows.
        let (w, h) = (32u16, 16u16);
        let rgb: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).flat_map(move |_| [if y < 8 { 250u8 } else { 100 }; 3]))
            .collect();
        let mut frame = Vec::new();
        jpeg_encoder::Encoder::new(&mut frame, 95)
            .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let region = Region {
            x0: 0,
            y0: 8,
            x1: 31,
            y1: 15,
        };
        let size = (u32::from(h), u32::from(w));
        let blanked = blank_frame(&frame, &[region], "YBR_FULL_422", size).unwrap();
        let decoded = jpeg_decoder::Decoder::new(&blanked[..]).decode().unwrap();
        let at = |x: usize, y: usize| decoded[(y * w as usize + x) * 3];
        assert!(at(5, 2) < 20, "banner blanked: {}", at(5, 2));
        assert!((90..110).contains(&at(5, 12)), "image kept: {}", at(5, 12));
        assert!(blank_frame(b"not a jpeg", &[region], "YBR_FULL_422", size).is_err());
    }

    #[test]
    fn a_jpeg_frame_that_lies_about_its_size_is_refused() {
        let (w, h) = (32u16, 16u16);
        let mut frame = Vec::new();
        jpeg_encoder::Encoder::new(&mut frame, 95)
            .encode(
                &vec![100u8; 32 * 16 * 3],
                w,
                h,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
        let region = Region {
            x0: 0,
            y0: 8,
            x1: 31,
            y1: 15,
        };
        let error = blank_frame(&frame, &[region], "YBR_FULL_422", (16, 64)).unwrap_err();
        assert!(error.contains("is 32x16 but the image is 64x16"), "{error}");
        // A few hundred bytes declaring 65535x65535, in an image that says so too:
        // the entropy data ends (EOI) long before the last block.
        let sof = frame.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        frame[sof + 5..sof + 9].copy_from_slice(&[0xFF; 4]);
        let error = blank_frame(&frame, &[region], "YBR_FULL_422", (65535, 65535)).unwrap_err();
        assert!(
            error.contains("ends before the frame's last block"),
            "{error}"
        );
    }
}
