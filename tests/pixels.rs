//! Burned-in text on real ultrasound screens: public vendor files (GE, Philips,
//! Siemens, ALOKA, ...) in every transfer syntax a modality sends, with and
//! without a Sequence of Ultrasound Regions, sent over C-STORE to a cloud (Orthanc
//! with DICOMweb) under strict and typical. The text boxes were read off each screen by eye, once;
//! every one must come out flat in every frame, the image area unchanged, the copy
//! decodable by dcmtk, GDCM and pydicom, and valid to dciodvfy where its input was.
//!
//! The files come from `scripts/fixtures.sh` (run by `scripts/test.sh`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::orthanc::Orthanc;
use common::*;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, open_file};

const RLE: &str = "1.2.840.10008.1.2.5";
const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";

/// A box in pixels, corners included: (x0, y0, x1, y1).
type Box = (usize, usize, usize, usize);

struct Fixture {
    file: &'static str,
    /// Text burned into the screen, each box of it.
    text: &'static [Box],
    /// Part of the image that must come out as it went in.
    image: Box,
}

/// The GE LOGIQ screen (640×480, no regions): site, IDs, clock, the exam's label
/// and the acoustic output line around a power Doppler image.
const GE_TEXT: &[Box] = &[
    (15, 20, 180, 103),
    (265, 20, 370, 58),
    (490, 20, 630, 103),
    (240, 358, 365, 380),
    (390, 452, 630, 476),
];
const GE_IMAGE: Box = (60, 120, 580, 320);
/// The same screen at 320×240.
const GE_SMALL_TEXT: &[Box] = &[
    (5, 8, 90, 52),
    (132, 8, 185, 28),
    (245, 8, 318, 52),
    (120, 178, 183, 190),
    (195, 226, 318, 238),
];
const GE_SMALL_IMAGE: Box = (30, 60, 290, 160);
/// Philips (800×600 and 800×350, regions): the header band with exam date and time.
const PHILIPS_TEXT: &[Box] = &[(0, 0, 799, 58)];
const PHILIPS_IMAGE: Box = (340, 70, 590, 150);
/// ALOKA (640×480, regions, 16-bit palette): site and date banner, exam label band.
const ALOKA_TEXT: &[Box] = &[(0, 0, 639, 22), (0, 442, 639, 479)];
const ALOKA_IMAGE: Box = (50, 40, 320, 400);

const FIXTURES: &[Fixture] = &[
    // GE, no regions: native, its own JPEG 2000 forms, and every transcode.
    Fixture {
        file: "US1_UNCR.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_UNCI.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_J2KR.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_J2KI.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_RLE.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_JPEG_P14.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_JPEG_SV1.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_JPEG_EXTENDED.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_JLS.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_JLS_NEAR.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "US1_J2K_GDCM.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    Fixture {
        file: "examples_rgb_color.dcm",
        text: GE_SMALL_TEXT,
        image: GE_SMALL_IMAGE,
    },
    Fixture {
        file: "examples_jpeg2k.dcm",
        text: GE_TEXT,
        image: GE_IMAGE,
    },
    // Philips, regions: palette colour, native, big endian, RLE, JPEG 2000.
    Fixture {
        file: "OBXXXX1A.dcm",
        text: PHILIPS_TEXT,
        image: PHILIPS_IMAGE,
    },
    Fixture {
        file: "OBXXXX1A_2frame.dcm",
        text: PHILIPS_TEXT,
        image: PHILIPS_IMAGE,
    },
    Fixture {
        file: "OBXXXX1A_expb.dcm",
        text: PHILIPS_TEXT,
        image: PHILIPS_IMAGE,
    },
    Fixture {
        file: "OBXXXX1A_rle.dcm",
        text: PHILIPS_TEXT,
        image: PHILIPS_IMAGE,
    },
    Fixture {
        file: "OBXXXX1A_rle_2frame.dcm",
        text: PHILIPS_TEXT,
        image: PHILIPS_IMAGE,
    },
    Fixture {
        file: "OBXXXX1A_J2K.dcm",
        text: PHILIPS_TEXT,
        image: PHILIPS_IMAGE,
    },
    Fixture {
        file: "examples_palette.dcm",
        text: PHILIPS_TEXT,
        image: PHILIPS_IMAGE,
    },
    // Siemens and GE cardiac screens from deid-data, regions: name, MRN, date,
    // clinic in the top band.
    Fixture {
        file: "RGB_IMAGE.dcm",
        text: &[(0, 0, 900, 56)],
        image: (100, 70, 880, 740),
    },
    Fixture {
        file: "RGB_IMAGE_JLS_PLANES.dcm",
        text: &[(0, 0, 900, 56)],
        image: (100, 70, 880, 740),
    },
    Fixture {
        file: "GREYSCALE_IMAGE.dcm",
        text: &[(0, 0, 1023, 24)],
        image: (130, 95, 890, 700),
    },
    Fixture {
        file: "ultrasound-multiframe.dcm",
        text: &[],
        image: (250, 100, 550, 450),
    },
    Fixture {
        file: "JPGLosslessP14SV1_1s_1f_8b.dcm",
        text: &[(0, 0, 1023, 20)],
        image: (200, 200, 800, 600),
    },
    // ALOKA, regions, 16-bit palette: native both endians, and JPEG-LS.
    Fixture {
        file: "gdcm-US-ALOKA-16.dcm",
        text: ALOKA_TEXT,
        image: ALOKA_IMAGE,
    },
    Fixture {
        file: "gdcm-US-ALOKA-16_big.dcm",
        text: ALOKA_TEXT,
        image: ALOKA_IMAGE,
    },
    Fixture {
        file: "ALOKA_JLS.dcm",
        text: ALOKA_TEXT,
        image: ALOKA_IMAGE,
    },
    // JPEG baseline clips with regions: mode labels and the soft-key bar.
    Fixture {
        file: "color3d_jpeg_baseline.dcm",
        text: &[(0, 0, 75, 58), (80, 455, 560, 479)],
        image: (220, 70, 460, 370),
    },
    Fixture {
        file: "examples_ybr_color.dcm",
        text: &[(0, 0, 37, 29), (40, 228, 280, 239)],
        image: (120, 40, 215, 180),
    },
    // Crops without text and without regions.
    Fixture {
        file: "color-pl.dcm",
        text: &[],
        image: (100, 20, 160, 100),
    },
    Fixture {
        file: "color-px.dcm",
        text: &[],
        image: (100, 20, 160, 100),
    },
    // An 80×60 LOGIQ 700 thumbnail: no room for text, no image area to find; the
    // clinic's pixel rule keeps it.
    Fixture {
        file: "ExplVR_BigEnd.dcm",
        text: &[],
        image: (0, 0, 79, 59),
    },
];

const THUMBNAIL_RULE: &str = "\n[[pixel_rule]]\nmanufacturer = \"G.E. Medical Systems\"\nmodel = \"LOGIQ 700\"\nrows = 60\ncolumns = 80\naction = \"keep\"\n";

fn fixtures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures");
    assert!(
        dir.join(".complete-v6").exists(),
        "the real ultrasound files are missing: run scripts/fixtures.sh (scripts/test.sh does)"
    );
    dir
}

fn run(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
}

/// A copy of `file` under its own SOP Instance UID: several fixtures are one
/// screen in several syntaxes, and the cloud keeps one instance per UID.
fn with_own_uid(file: &Path, n: usize, dir: &Path) -> PathBuf {
    let copy = dir.join(file.file_name().unwrap());
    std::fs::copy(file, &copy).unwrap();
    let uid = format!("1.2.826.0.1.3680043.10.77.{n}");
    let out = run(
        "dcmodify",
        &[
            "-nb",
            "-m",
            &format!("(0008,0018)={uid}"),
            copy.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    copy
}

/// Native pixels of a file, as GDCM decodes it (the independent reference).
struct Pixels {
    rows: usize,
    columns: usize,
    samples: usize,
    bytes: usize,
    frames: usize,
    planar: bool,
    photometric: String,
    data: Vec<u8>,
}

fn uint(object: &DefaultDicomObject, tag: dicom_core::Tag) -> usize {
    object
        .element(tag)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(0) as usize
}

fn decoded(file: &Path, dir: &Path) -> Pixels {
    let raw = dir.join(format!(
        "raw-{}",
        file.file_name().unwrap().to_string_lossy()
    ));
    let out = run(
        "gdcmconv",
        &["--raw", file.to_str().unwrap(), raw.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "GDCM cannot decode {}: {}",
        file.display(),
        text(&out)
    );
    let object = open_file(&raw).unwrap();
    let data = object
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned();
    Pixels {
        rows: uint(&object, tags::ROWS),
        columns: uint(&object, tags::COLUMNS),
        samples: uint(&object, tags::SAMPLES_PER_PIXEL).max(1),
        bytes: uint(&object, tags::BITS_ALLOCATED).div_ceil(8),
        frames: uint(&object, tags::NUMBER_OF_FRAMES).max(1),
        planar: uint(&object, tags::PLANAR_CONFIGURATION) == 1,
        photometric: object
            .element(tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap()
            .to_str()
            .unwrap()
            .trim()
            .to_owned(),
        data,
    }
}

impl Pixels {
    /// The samples of pixel (x, y) of `frame`, as RGB where the file holds YBR
    /// (so that a copy whose decoder undid the colour transform compares).
    fn at(&self, frame: usize, x: usize, y: usize) -> Vec<i32> {
        let plane = self.rows * self.columns * self.bytes;
        let base = frame * plane * self.samples;
        let samples: Vec<i32> = (0..self.samples)
            .map(|s| {
                let at = if self.planar {
                    base + s * plane + (y * self.columns + x) * self.bytes
                } else {
                    base + ((y * self.columns + x) * self.samples + s) * self.bytes
                };
                let b = &self.data[at..at + self.bytes];
                b.iter()
                    .rev()
                    .fold(0i32, |v, &byte| (v << 8) | i32::from(byte))
            })
            .collect();
        if self.photometric.starts_with("YBR") && self.samples == 3 {
            let (y, cb, cr) = (
                f64::from(samples[0]),
                f64::from(samples[1]) - 128.0,
                f64::from(samples[2]) - 128.0,
            );
            let c = |v: f64| v.round().clamp(0.0, 255.0) as i32;
            return vec![
                c(y + 1.402 * cr),
                c(y - 0.344136 * cb - 0.714136 * cr),
                c(y + 1.772 * cb),
            ];
        }
        samples
    }
}

/// dciodvfy's errors, without the values they quote.
fn dciodvfy_errors(file: &Path) -> BTreeSet<String> {
    let out = run("dciodvfy", &[file.to_str().unwrap()]);
    text(&out)
        .lines()
        .filter(|l| l.starts_with("Error"))
        .map(|l| {
            l.split(" - ")
                .take(2)
                .collect::<Vec<_>>()
                .join(" - ")
                .split(" = <")
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn syntax(file: &Path) -> String {
    open_file(file)
        .unwrap()
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_owned()
}

#[test]
fn every_real_ultrasound_screen_arrives_cleaned_in_the_cloud_under_both_profiles() {
    let fixtures = fixtures_dir();
    let work = tempfile::tempdir().unwrap();
    let inputs: Vec<PathBuf> = FIXTURES
        .iter()
        .enumerate()
        .map(|(n, f)| with_own_uid(&fixtures.join("ultrasound").join(f.file), n, work.path()))
        .collect();
    let orthanc = Orthanc::start();
    let destination = |name: &str, profile: &str| {
        format!(
            "\n[[destination]]\nname = \"{name}\"\nurl = \"{}\"\nprofile = \"{profile}\"\ninsecure = true\n",
            orthanc.dicomweb_url()
        )
    };
    let agent = Agent::start(&format!(
        "{}{}{THUMBNAIL_RULE}",
        destination("research", "strict"),
        destination("patient", "typical")
    ));
    // Each file in its own syntax, as the machine sends it.
    let port = agent.port.to_string();
    let mut args = vec!["-aec", "UPLINK", "-dn", "127.0.0.1", &port];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let sent = dcmtk("dcmsend", &args);
    assert!(sent.status.success(), "{}", text(&sent));
    orthanc.wait_instances(2 * FIXTURES.len(), 180, || agent.log());
    agent.wait_destination(10, "pending", 0);
    let status = agent.status_json();
    for destination in 0..2 {
        assert_eq!(
            status["destinations"][destination]["not_deliverable"],
            serde_json::json!({}),
            "none held: {status}"
        );
    }
    let python = fixtures.join("python");
    for profile in ["strict", "typical"] {
        let dir = work.path().join(profile);
        std::fs::create_dir(&dir).unwrap();
        // A copy's UID is keyed by the box: the offline command names its copies
        // by them, with the same key.
        let ran = anonymize_offline(&agent.config, profile, &dir.join("offline"), &inputs);
        assert!(ran.status.success(), "{}", text(&ran));
        let report = text(&ran);
        let mut clouds = Vec::new();
        for (fixture, input) in FIXTURES.iter().zip(&inputs) {
            let line = report
                .lines()
                .find(|l| l.contains(&format!("/{} -> ", fixture.file)))
                .unwrap_or_else(|| panic!("{}: not anonymized offline: {report}", fixture.file));
            let uid = Path::new(line.rsplit(" -> ").next().unwrap())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let cloud = orthanc.file(&uid, &dir);
            eprintln!("{profile} {}", check(fixture, input, &cloud, &dir));
            clouds.push(cloud);
        }
        // pydicom decodes every copy too.
        let decoded = Command::new("python3")
            .env("PYTHONPATH", &python)
            .args([
                "-c",
                "import sys, pydicom\nfor f in sys.argv[1:]:\n    pydicom.dcmread(f).pixel_array",
            ])
            .args(&clouds)
            .output()
            .unwrap();
        assert!(decoded.status.success(), "pydicom: {}", text(&decoded));
    }
}

/// One fixture's copy in the cloud against its input; the outcome line for the log.
fn check(fixture: &Fixture, input: &Path, cloud: &Path, dir: &Path) -> String {
    let name = fixture.file;
    let (before, after) = (syntax(input), syntax(cloud));
    // Uncompressed pixels may cross the network in another uncompressed syntax.
    let native = [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
    ];
    let reencoded = after != before && !native.contains(&before.as_str());
    if reencoded {
        // JPEG-LS stays JPEG-LS, losslessly; the rest is written in RLE Lossless.
        let jpeg_ls = before.starts_with("1.2.840.10008.1.2.4.8");
        let want = if jpeg_ls { JPEG_LS_LOSSLESS } else { RLE };
        assert_eq!(after, want, "{name}: re-encoded losslessly");
    } else if after != before {
        assert!(
            native.contains(&after.as_str()),
            "{name}: {before} -> {after}"
        );
    }
    // dcmtk decodes what it can (it has no JPEG 2000).
    let dcmtk_decoder = match after.as_str() {
        RLE => Some("dcmdrle"),
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.70" => Some("dcmdjpeg"),
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => Some("dcmdjpls"),
        _ => None,
    };
    if let Some(tool) = dcmtk_decoder {
        let native = dir.join(format!("dcmtk-{name}"));
        let out = run(tool, &[cloud.to_str().unwrap(), native.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {tool}: {}", text(&out));
    }
    let (a, b) = (decoded(input, dir), decoded(cloud, dir));
    assert_eq!(
        (a.rows, a.columns, a.frames),
        (b.rows, b.columns, b.frames),
        "{name}: same image size and frames"
    );
    // Lossless: bit for bit. Lossy frames decoded by us and written losslessly
    // differ from GDCM's decoding of them by the decoders' rounding (IDCT, chroma
    // upsampling, YBR to RGB); a JPEG baseline copy re-quantizes the blocks that
    // straddle the image's edge: a few levels here and there, well under one on
    // average.
    let lossy = [
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
    ];
    let baseline = after == "1.2.840.10008.1.2.4.50";
    let (max_allowed, mean_allowed) = if baseline || reencoded && lossy.contains(&before.as_str()) {
        (16, 0.5)
    } else {
        (0, 0.0)
    };
    // A JPEG baseline copy is blanked block by block: blocks that straddle the
    // image's edge keep a few levels of quantization noise (text is ~200 levels).
    let flat_within = if baseline { 12 } else { 0 };
    let (mut largest, mut total, mut samples) = (0, 0u64, 0u64);
    for frame in 0..a.frames {
        for &(x0, y0, x1, y1) in fixture.text {
            let black = b.at(frame, x1, y1);
            for y in y0..=y1.min(b.rows - 1) {
                for x in x0..=x1.min(b.columns - 1) {
                    let is = b.at(frame, x, y);
                    let flat = is
                        .iter()
                        .zip(&black)
                        .all(|(p, q)| (p - q).abs() <= flat_within);
                    assert!(
                        flat,
                        "{name}: text box ({x0},{y0})-({x1},{y1}) not flat at ({x},{y}) of frame {frame}: {is:?}, not {black:?}"
                    );
                }
            }
        }
        let (x0, y0, x1, y1) = fixture.image;
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (was, is) = (a.at(frame, x, y), b.at(frame, x, y));
                for (p, q) in was.iter().zip(&is) {
                    let d = (p - q).abs();
                    assert!(
                        d <= max_allowed,
                        "{name}: image changed at ({x},{y}) of frame {frame}: {was:?} -> {is:?}"
                    );
                    largest = largest.max(d);
                    total += d as u64;
                    samples += 1;
                }
            }
        }
    }
    let mean = total as f64 / samples.max(1) as f64;
    assert!(
        mean <= mean_allowed,
        "{name}: the image moved by {mean:.3} on average"
    );
    let new_errors: Vec<String> = dciodvfy_errors(cloud)
        .difference(&dciodvfy_errors(input))
        .cloned()
        .collect();
    assert!(
        new_errors.is_empty(),
        "{name}: dciodvfy finds what the input did not have: {new_errors:#?}"
    );
    format!(
        "{name}: {before} -> {after}, {} frame(s), {} text box(es) flat, image differs by at most {largest} (mean {mean:.3})",
        a.frames,
        fixture.text.len()
    )
}

/// Runs `uplink anonymize --profile strict` on `input` with `rules` in the config.
fn anonymize_with(rules: &str, input: &Path, dir: &Path) -> (std::process::Output, PathBuf) {
    let out = dir.join("out");
    let ran = anonymize_offline(&offline_config(dir, rules), "strict", &out, [input]);
    (ran, out)
}

#[test]
fn the_clinics_pixel_rule_wins_and_a_screen_nobody_can_read_names_the_rule_to_write() {
    let fixtures = fixtures_dir().join("ultrasound");
    let work = tempfile::tempdir().unwrap();
    let thumbnail = fixtures.join("ExplVR_BigEnd.dcm");
    let step = |name: &str| {
        let dir = work.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    };

    // No regions, no image area in 80×60 pixels: held, with the rule that decides.
    let (ran, _) = anonymize_with("", &thumbnail, &step("none"));
    let said = text(&ran);
    assert_eq!(ran.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "a [[pixel_rule]] with manufacturer = \"G.E. Medical Systems\", model = \"LOGIQ 700\", rows = 60, columns = 80"
        ),
        "{said}"
    );

    // That rule, saying discard: acknowledged as the clinic's choice, not sent.
    let discard = "[[pixel_rule]]\nmodel = \"logiq 700 \"\nrows = 60\naction = \"discard\"\n";
    let (ran, out) = anonymize_with(discard, &thumbnail, &step("discard"));
    let said = text(&ran);
    assert!(ran.status.success(), "{said}");
    assert!(
        said.contains("0 anonymized, 1 discarded, 0 failed"),
        "{said}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());

    // On the GE screen, a rule blanking the top band only: its text goes, the
    // image and the label below it stay, where the pixels alone would blank it.
    let dir = step("blank");
    let screen = fixtures.join("US1_UNCR.dcm");
    let rule = "[[pixel_rule]]\nmanufacturer = \"G.E. Medical Systems\"\nrows = 480\ncolumns = 640\nblank = [[0, 0, 639, 106]]\n";
    let (ran, out) = anonymize_with(rule, &screen, &dir);
    assert!(ran.status.success(), "{}", text(&ran));
    let copy = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (before, after) = (decoded(&screen, &dir), decoded(&copy, &dir));
    for y in 0..480 {
        for x in 0..640 {
            let (was, is) = (before.at(0, x, y), after.at(0, x, y));
            if y <= 106 {
                assert_eq!(is, vec![0, 0, 0], "({x},{y}) is in the rule's rectangle");
            } else {
                assert_eq!(is, was, "({x},{y}) is outside the rule's rectangle");
            }
        }
    }
    let (x0, y0, x1, y1) = GE_TEXT[3];
    let label_kept = (y0..=y1).any(|y| (x0..=x1).any(|x| after.at(0, x, y) != vec![0, 0, 0]));
    assert!(label_kept, "the rule, not the pixels, decided");
}

#[test]
fn the_planted_banner_is_blanked_in_every_syntax() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let native = dir.join("native.dcm");
    write_phi_image(
        &native,
        &Phi {
            patient: "OLGA",
            study: 91,
            instance: 1,
            rows: 60,
            cols: 80,
        },
    );
    let mut inputs = vec![native.clone()];
    for (name, tool, args) in [
        ("rle.dcm", "dcmcrle", &[][..]),
        ("jpeg-lossless.dcm", "dcmcjpeg", &["+e1"][..]),
        ("jpeg-14.dcm", "dcmcjpeg", &["+el"][..]),
        ("jpeg-ls.dcm", "dcmcjpls", &[][..]),
        ("jpeg-2000.dcm", "gdcmconv", &["--j2k"][..]),
    ] {
        let out = dir.join(name);
        let mut all: Vec<&str> = args.to_vec();
        all.extend([native.to_str().unwrap(), out.to_str().unwrap()]);
        let made = run(tool, &all);
        assert!(made.status.success(), "{tool}: {}", text(&made));
        inputs.push(out);
    }
    for input in &inputs {
        let step = dir.join(input.file_stem().unwrap());
        std::fs::create_dir(&step).unwrap();
        let (ran, out) = anonymize_with("", input, &step);
        assert!(ran.status.success(), "{}", text(&ran));
        let copy = std::fs::read_dir(&out)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let pixels = decoded(&copy, &step);
        let banner = usize::from(BANNER_ROWS) * 80 * 3;
        assert!(
            pixels.data[..banner].iter().all(|&b| b == 0),
            "{}: the banner is black",
            input.display()
        );
        for marker in MARKERS {
            assert!(
                !pixels
                    .data
                    .windows(marker.len())
                    .any(|w| w == marker.as_bytes()),
                "{}: {marker} in the decoded pixels",
                input.display()
            );
        }
        let original = decoded(&native, &step);
        assert_eq!(
            pixels.data[banner..],
            original.data[banner..],
            "{}: the image below the banner is as sent",
            input.display()
        );
    }
}
