//! The instance pipeline: one data set in, one copy per profile out.
//!
//! Every way an instance enters the box goes through here — a C-STORE
//! (`receive/store.rs`), the offline `uplink anonymize` command (`offline.rs`), a
//! backlog re-derived after a configuration change (`backlog.rs`) — so what a
//! technician checks offline is byte for byte what the box would send. For each
//! profile the pipeline decides whether a copy is made at all (a profile discards
//! what it cannot anonymize), streams the data set once through every copy's
//! transform (`stream.rs`), and says of each copy whether it came out clean; a copy
//! that did not is dropped, and its part file with it.

pub mod offline;
pub mod stream;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_encoding::{Codec, TransferSyntax};
use dicom_object::meta::FileMetaTable;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use flate2::read::DeflateDecoder;

use crate::anonymize::{Anonymizer, Discard};
use crate::config::Profile;
use crate::queue::spool::{FileMeta, PartFile};
use crate::standard::{EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN};
use stream::{Output, Summary, Transform};

/// An instance as it enters: what it says it is, and how it is encoded.
pub struct Instance<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub transfer_syntax: &'a TransferSyntax,
    /// The sender's AE title: it names the site, so only identified copies keep it.
    pub source_ae_title: Option<&'a str>,
}

/// What became of one profile's copy.
pub enum ProfileCopy {
    /// Written and clean, ready to be sealed.
    Made(PartFile),
    /// The profile makes no copy of such instances.
    Discarded(Discard),
    /// The profile could not clean it: dropped, never kept.
    Uncleaned(String),
}

/// Why the pipeline stopped.
#[derive(Debug)]
pub enum Failure {
    /// A copy could not be written (disk full, I/O error).
    Storage(io::Error),
    /// The data set is not what its transfer syntax says (malformed, truncated).
    DataSet(String),
}

/// Streams `input` (the data set of `instance`) into one copy per profile of
/// `profiles`, each started with `create`.
pub fn run(
    input: impl Read,
    instance: &Instance,
    anonymizer: &Anonymizer,
    profiles: &[Profile],
    mut create: impl FnMut(Profile, &FileMeta) -> io::Result<PartFile>,
) -> Result<(Summary, Vec<(Profile, ProfileCopy)>), Failure> {
    let mut copies = Vec::with_capacity(profiles.len());
    let mut started = Vec::with_capacity(profiles.len());
    for &profile in profiles {
        match anonymizer.transform(profile, instance.sop_class_uid, instance.transfer_syntax) {
            Ok(transform) => {
                let meta = file_meta(instance, anonymizer, profile);
                let encoding = reencoding(instance.transfer_syntax, &meta.transfer_syntax_uid);
                let part = create(profile, &meta).map_err(Failure::Storage)?;
                started.push((part, transform, encoding));
            }
            Err(discard) => copies.push((profile, ProfileCopy::Discarded(discard))),
        }
    }
    let mut summary = copy_into(input, instance.transfer_syntax, &mut started)?;
    for (part, transform, _) in started {
        let profile = part.profile;
        if transform.uncleaned().is_none() && transform.inferred_area() {
            log::info!(
                "profile {profile}: no ultrasound regions, image area inferred from the pixels"
            );
            summary.area_inferred = true;
        }
        let copy = match transform.uncleaned() {
            _ if transform.discarded() => ProfileCopy::Discarded(Discard::PixelRule),
            None => ProfileCopy::Made(part),
            Some(reason) => ProfileCopy::Uncleaned(reason),
        };
        copies.push((profile, copy));
    }
    Ok((summary, copies))
}

/// The file meta of `profile`'s copy: its own SOP Instance UID, and the transfer
/// syntax the profile writes (the input's, or RLE Lossless for re-encoded frames).
fn file_meta(instance: &Instance, anonymizer: &Anonymizer, profile: Profile) -> FileMeta {
    FileMeta {
        sop_class_uid: instance.sop_class_uid.to_owned(),
        sop_instance_uid: anonymizer.instance_uid(profile, instance.sop_instance_uid),
        transfer_syntax_uid: anonymizer
            .output_syntax(profile, instance.transfer_syntax)
            .to_owned(),
        source_ae_title: instance
            .source_ae_title
            .filter(|_| profile == Profile::Identified)
            .map(str::to_owned),
        deflated: is_deflated(instance.transfer_syntax),
    }
}

/// The encoding a copy is written in when its file meta names another syntax
/// than the input's and only the headers differ (implicit VR to explicit VR
/// little endian); `None` otherwise (compressed frames re-encoded keep the input's
/// encoding of the data set).
fn reencoding(input: &TransferSyntax, output_uid: &str) -> Option<&'static TransferSyntax> {
    (input.uid() == IMPLICIT_VR_LITTLE_ENDIAN && output_uid == EXPLICIT_VR_LITTLE_ENDIAN)
        .then(|| TransferSyntaxRegistry.get(EXPLICIT_VR_LITTLE_ENDIAN))
        .flatten()
}

fn is_deflated(ts: &TransferSyntax) -> bool {
    matches!(ts.codec(), Codec::Dataset(_))
}

/// One pass over the data set into every started copy. A write error of a copy
/// wins over the data set's: a full disk is not the peer's fault.
fn copy_into(
    input: impl Read,
    ts: &TransferSyntax,
    started: &mut [(
        PartFile,
        Box<dyn Transform + Send>,
        Option<&'static TransferSyntax>,
    )],
) -> Result<Summary, Failure> {
    let outputs = started
        .iter_mut()
        .map(|(part, transform, encoding)| Output {
            writer: part,
            transform: transform.as_mut() as &mut dyn Transform,
            encoding: *encoding,
        })
        .collect();
    let copied = if is_deflated(ts) {
        stream::copy(DeflateDecoder::new(input), ts, outputs)
    } else {
        stream::copy(input, ts, outputs)
    };
    if let Some(e) = started.iter_mut().find_map(|(part, ..)| part.take_error()) {
        return Err(Failure::Storage(e));
    }
    copied.map_err(Failure::DataSet)
}

/// A Part 10 file opened for the pipeline: its data set's reader, and what its
/// file meta says of it.
pub struct Part10 {
    pub data_set: BufReader<File>,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: &'static TransferSyntax,
}

impl Part10 {
    /// Reads the preamble and file meta; the error says what is wrong (never the
    /// file's content).
    pub fn open(path: &Path) -> Result<Part10, String> {
        let file = File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
        let mut data_set = BufReader::with_capacity(64 * 1024, file);
        let mut preamble = [0u8; 128];
        data_set
            .read_exact(&mut preamble)
            .map_err(|_| "not a DICOM file (too short)".to_owned())?;
        let meta = FileMetaTable::from_reader(&mut data_set)
            .map_err(|e| format!("not a DICOM Part 10 file: {e}"))?;
        let ts_uid = crate::standard::unpadded(meta.transfer_syntax());
        let transfer_syntax = TransferSyntaxRegistry
            .get(ts_uid)
            .filter(|ts| ts.can_decode_dataset())
            .ok_or_else(|| format!("transfer syntax {ts_uid} is not supported"))?;
        Ok(Part10 {
            sop_class_uid: meta.media_storage_sop_class_uid().to_owned(),
            sop_instance_uid: meta.media_storage_sop_instance_uid().to_owned(),
            transfer_syntax,
            data_set,
        })
    }

    /// Runs the pipeline on the file's data set (no sender: it comes from a file).
    pub fn run(
        self,
        anonymizer: &Anonymizer,
        profiles: &[Profile],
        create: impl FnMut(Profile, &FileMeta) -> io::Result<PartFile>,
    ) -> Result<(Summary, Vec<(Profile, ProfileCopy)>), Failure> {
        let instance = Instance {
            sop_class_uid: &self.sop_class_uid,
            sop_instance_uid: &self.sop_instance_uid,
            transfer_syntax: self.transfer_syntax,
            source_ae_title: None,
        };
        run(self.data_set, &instance, anonymizer, profiles, create)
    }
}
