//! `uplink anonymize`: the pipeline, offline, on files and folders.
//!
//! A technician checks a profile on real exams, or a clinic converts an archive.
//! Files go through the same pipeline as a C-STORE, with the box's device key (so
//! UIDs match what the box sends), and are written by the same spool file writer:
//! one output file per instance, named by its new SOP Instance UID, the same bytes
//! the box would send.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::{Failure, Part10, ProfileCopy};
use crate::anonymize::{Anonymizer, DeviceKey, Discard, PasswordBook};
use crate::config::{Config, Profile};
use crate::queue::spool::PartFile;

/// What happened to the files.
#[derive(Debug, Default)]
pub struct Report {
    pub anonymized: u64,
    pub discarded: u64,
    pub failed: u64,
    pub bytes: u64,
}

/// Anonymizes every DICOM file in `inputs` (folders recursively) into `out`.
pub fn run(
    config: &Config,
    profile: Profile,
    out: &Path,
    inputs: &[PathBuf],
) -> Result<Report, String> {
    let data_dir = &config.storage.data_dir;
    fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    let key = DeviceKey::load_or_create(data_dir)
        .map_err(|e| format!("cannot load the device key: {e}"))?;
    let anonymizer = Anonymizer::new(
        Arc::new(key),
        config.strict.clone(),
        config.typical.document_password,
        PasswordBook::new(data_dir),
        &config.pixel_rules,
    )
    .writing_explicit_vr(config.explicit_vr_profiles());
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut files = Vec::new();
    for input in inputs {
        collect(input, &mut files).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    }
    let started = Instant::now();
    let mut report = Report::default();
    for file in &files {
        match anonymize_file(&anonymizer, profile, file, out) {
            Ok(Ok((target, bytes))) => {
                println!("anonymized  {} -> {}", file.display(), target.display());
                report.anonymized += 1;
                report.bytes += bytes;
            }
            Ok(Err(discard)) => {
                println!(
                    "discarded   {}: profile {profile} discards it ({})",
                    file.display(),
                    discard.as_str()
                );
                report.discarded += 1;
            }
            Err(reason) => {
                println!("FAILED      {}: {reason}", file.display());
                report.failed += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} anonymized, {} discarded, {} failed; {:.1} MB in {seconds:.2} s ({:.0} MB/s)",
        report.anonymized,
        report.discarded,
        report.failed,
        report.bytes as f64 / 1e6,
        report.bytes as f64 / 1e6 / seconds.max(1e-9)
    );
    Ok(report)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            collect(&entry, files)?;
        }
    } else {
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// One file, through the pipeline into `out` as `<new SOP Instance UID>.dcm`; the
/// inner error when the profile discards it.
fn anonymize_file(
    anonymizer: &Anonymizer,
    profile: Profile,
    path: &Path,
    out: &Path,
) -> Result<Result<(PathBuf, u64), Discard>, String> {
    let file = Part10::open(path)?;
    let mut target = PathBuf::new();
    let (_, mut copies) = file
        .run(anonymizer, &[profile], |profile, meta| {
            target = out.join(format!("{}.dcm", meta.sop_instance_uid));
            let temp = out.join(format!(".{}.dcm.part", meta.sop_instance_uid));
            // A leftover of an interrupted run.
            let _ = fs::remove_file(&temp);
            PartFile::create(temp, 0, profile, meta)
        })
        .map_err(|failure| match failure {
            Failure::Storage(e) => format!("cannot write to {}: {e}", out.display()),
            Failure::DataSet(reason) => reason,
        })?;
    match copies.pop().map(|(_, copy)| copy) {
        Some(ProfileCopy::Made(part)) => part
            .finish(|_| target)
            .map(|(target, bytes, _)| Ok((target, bytes)))
            .map_err(|e| format!("cannot write to {}: {e}", out.display())),
        Some(ProfileCopy::Discarded(discard)) => Ok(Err(discard)),
        Some(ProfileCopy::Uncleaned(reason)) => Err(format!("not written: {reason}")),
        None => Err("no copy was made".into()),
    }
}
