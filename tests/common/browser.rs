//! A real browser for the page tests: Debian's Chromium, headless, with a fresh
//! profile and none of its own network traffic (this machine's network is
//! closed, and a browser that calls home would wait on it).

use std::path::Path;
use std::process::Command;

fn chromium(profile: &Path) -> Command {
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1000,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// A screenshot of `url` as the browser shows it, decoded: width, height, RGB.
pub fn screenshot(url: &str) -> Shot {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shot.png");
    let out = chromium(&dir.path().join("profile"))
        .arg(format!("--screenshot={}", file.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        file.exists(),
        "chromium made no screenshot of {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&file).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let rgb = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    Shot {
        width: info.width as usize,
        height: info.height as usize,
        rgb,
        png: std::fs::read(&file).unwrap(),
    }
}

/// The document as the browser built it (after parsing, as a person reads it).
pub fn dom(url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = chromium(&dir.path().join("profile"))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Shot {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<[u8; 3]>,
    /// The file, to keep where a failing test can show it.
    pub png: Vec<u8>,
}

impl Shot {
    /// Pixels within a few levels of `colour` in rows `rows`.
    pub fn count(&self, colour: [u8; 3], rows: std::ops::Range<usize>) -> usize {
        let near = |p: &[u8; 3]| {
            p.iter()
                .zip(colour)
                .all(|(a, b)| (*a as i32 - b as i32).abs() <= 6)
        };
        rows.flat_map(|y| &self.rgb[y * self.width..(y + 1) * self.width])
            .filter(|p| near(p))
            .count()
    }

    /// The share of rows `rows` in `colour`.
    pub fn share(&self, colour: [u8; 3], rows: std::ops::Range<usize>) -> f64 {
        let pixels = (rows.end - rows.start) * self.width;
        self.count(colour, rows) as f64 / pixels as f64
    }

    /// Keeps the screenshot beside the test's output, for a person to look at.
    pub fn keep(&self, name: &str) -> std::path::PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page-shots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &self.png).unwrap();
        path
    }
}
