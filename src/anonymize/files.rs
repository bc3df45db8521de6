//! `uplink anonymize`: the same engine, offline, on files and folders.
//!
//! A technician checks a profile on real exams, or a clinic converts an archive.
//! Files stream through exactly the transform the listener uses, with the box's
//! device key (so UIDs match what the box sends), one output file per instance,
//! named by its new SOP Instance UID.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dicom_encoding::Codec;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::meta::FileMetaTable;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use super::{Anonymizer, DeviceKey, Discard, PasswordBook};
use crate::config::{Config, Profile};
use crate::queue::spool::{FileMeta, write_meta};
use crate::stream::{self, Output};

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
    );
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

/// One file; the inner error when the profile discards it.
fn anonymize_file(
    anonymizer: &Anonymizer,
    profile: Profile,
    path: &Path,
    out: &Path,
) -> Result<Result<(PathBuf, u64), Discard>, String> {
    let mut input =
        BufReader::with_capacity(64 * 1024, File::open(path).map_err(|e| e.to_string())?);
    let mut preamble = [0u8; 128];
    input
        .read_exact(&mut preamble)
        .map_err(|_| "not a DICOM file (too short)".to_owned())?;
    let meta = FileMetaTable::from_reader(&mut input)
        .map_err(|e| format!("not a DICOM Part 10 file: {e}"))?;
    let ts_uid = meta.transfer_syntax().to_owned();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .filter(|ts| ts.can_decode_dataset())
        .ok_or_else(|| format!("transfer syntax {ts_uid} is not supported"))?;
    let sop_class = meta.media_storage_sop_class_uid().to_owned();
    let mut transform = match anonymizer.transform(profile, &sop_class, ts) {
        Ok(transform) => transform,
        Err(discard) => return Ok(Err(discard)),
    };
    let uid = anonymizer.instance_uid(profile, meta.media_storage_sop_instance_uid());
    let deflated = matches!(ts.codec(), Codec::Dataset(_));
    let target = out.join(format!("{uid}.dcm"));
    let temp = out.join(format!(".{uid}.dcm.part"));
    let result = (|| -> Result<u64, String> {
        let mut writer =
            BufWriter::with_capacity(64 * 1024, File::create(&temp).map_err(|e| e.to_string())?);
        let file_meta = FileMeta {
            sop_class_uid: sop_class.clone(),
            sop_instance_uid: uid.clone(),
            transfer_syntax_uid: ts_uid.clone(),
            source_ae_title: None,
            deflated,
        };
        write_meta(&mut writer, &file_meta).map_err(|e| e.to_string())?;
        if deflated {
            let mut encoder = DeflateEncoder::new(&mut writer, flate2::Compression::fast());
            let outputs = vec![Output {
                writer: &mut encoder,
                transform: transform.as_mut(),
            }];
            stream::copy(DeflateDecoder::new(&mut input), ts, outputs)?;
            encoder.finish().map_err(|e| e.to_string())?;
        } else {
            let outputs = vec![Output {
                writer: &mut writer,
                transform: transform.as_mut(),
            }];
            stream::copy(&mut input, ts, outputs)?;
        }
        if let Some(reason) = transform.uncleaned() {
            return Err(format!("not written: {reason}"));
        }
        writer.flush().map_err(|e| e.to_string())?;
        let file = writer.into_inner().map_err(|e| e.error().to_string())?;
        Ok(file.metadata().map_err(|e| e.to_string())?.len())
    })();
    match result {
        Ok(bytes) => {
            fs::rename(&temp, &target).map_err(|e| e.to_string())?;
            Ok(Ok((target, bytes)))
        }
        Err(reason) => {
            let _ = fs::remove_file(&temp);
            Err(reason)
        }
    }
}
