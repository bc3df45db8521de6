//! Writes the test fixtures to files, for measurement scripts and manual checks.
//!
//!     cargo run --example fixtures -- image OUT.dcm UID [explicit|implicit]
//!     cargo run --example fixtures -- jpeg OUT.dcm UID
//!     cargo run --example fixtures -- phi OUT.dcm PATIENT STUDY INSTANCE
//!     cargo run --example fixtures -- phi-jpeg OUT.dcm PATIENT STUDY INSTANCE FRAMES
//!     cargo run --example fixtures -- pdf OUT.pdf TEXT
//!     cargo run --example fixtures -- clip OUT.dcm UID MIB

#[path = "../tests/common/fixtures.rs"]
mod common;

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    let out = Path::new(arg(1));
    match arg(0) {
        "image" => {
            let ts = match args.get(3).map(String::as_str) {
                Some("implicit") => common::IMPLICIT_LE,
                _ => common::EXPLICIT_LE,
            };
            common::write_us_image(out, arg(2), ts, 600, 800);
        }
        "jpeg" => common::write_jpeg_image(out, arg(2)),
        // Images full of patient data markers: `phi OUT.dcm PATIENT STUDY INSTANCE`,
        // `phi-jpeg OUT.dcm PATIENT STUDY INSTANCE FRAMES`.
        "phi" | "phi-jpeg" => {
            let number = |i: usize| arg(i).parse().unwrap_or_else(|_| usage());
            let phi = common::Phi {
                patient: arg(2),
                study: number(3),
                instance: number(4),
                rows: 600,
                cols: 800,
            };
            if arg(0) == "phi" {
                common::write_phi_image(out, &phi);
            } else {
                common::write_phi_jpeg(out, &phi, number(5));
            }
        }
        // A one-page PDF: `pdf OUT.pdf TEXT` (pdf2dcm makes it an instance).
        "pdf" => std::fs::write(out, common::minimal_pdf(arg(2))).unwrap_or_else(|e| panic!("{e}")),
        "clip" => {
            let mib: u64 = arg(3).parse().unwrap_or_else(|_| usage());
            common::write_clip(out, arg(2), mib << 20);
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: fixtures image|jpeg|clip OUT.dcm UID [explicit|implicit|MIB], or phi OUT.dcm PATIENT STUDY INSTANCE"
    );
    std::process::exit(2);
}
