//! The spool: one Part 10 file per queued instance, on the card.
//!
//! The spool is the source of truth: the queue's index can always be rebuilt from
//! it. Files are named by queue id, never by patient data, and live in one folder
//! per profile (`spool/identified/00000000000004d2-1c291ca3-<ledger key>.dcm`), so a
//! rebuild knows which destinations each file is for. A file is written as
//! `<id>.part` and renamed into place when complete; the queue's group commit then
//! makes bytes and name durable together in one flush. The name carries what a
//! rebuild cannot read from the file: the CRC-32 of its bytes, which tells a file
//! whose flush completed from one a power cut caught half-written (never
//! acknowledged), and the instance's ledger key (see `ledger.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use dicom_object::meta::FileMetaTableBuilder;
use flate2::write::DeflateEncoder;

use super::ledger::{self, LedgerKey};
use crate::config::Profile;
use crate::standard::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

pub const PART_SUFFIX: &str = "part";
pub const FILE_SUFFIX: &str = "dcm";

/// The spool's folders under the data dir.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(data_dir: &Path) -> Spool {
        Spool {
            root: data_dir.join("spool"),
        }
    }

    pub fn dir(&self, profile: Profile) -> PathBuf {
        self.root.join(profile.as_str())
    }

    pub fn path(&self, profile: Profile, name: &SpoolName) -> PathBuf {
        self.dir(profile).join(name.file_name())
    }

    /// Creates the folder of every profile in use, durably.
    pub fn create_dirs(&self, profiles: &[Profile]) -> io::Result<()> {
        for profile in profiles {
            create_dir_durable(&self.dir(*profile))?;
        }
        Ok(())
    }

    /// Every file in a profile's folder: complete ones by id, and leftover parts.
    pub fn scan(&self, profile: Profile) -> io::Result<(Vec<SpoolName>, Vec<PathBuf>)> {
        let mut complete = Vec::new();
        let mut parts = Vec::new();
        let dir = self.dir(profile);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((complete, parts)),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let stem = path.file_stem().and_then(|s| s.to_str());
            match (path.extension().and_then(|e| e.to_str()), stem) {
                (Some(FILE_SUFFIX), Some(stem)) => complete.extend(SpoolName::parse(stem)),
                (Some(PART_SUFFIX), _) => parts.push(path),
                _ => {}
            }
        }
        complete.sort_unstable_by_key(|name| name.id);
        Ok((complete, parts))
    }

    /// Starts a spool file: `<id>.part` with preamble and file meta information
    /// written; the data set follows through the returned writer.
    pub fn create(&self, profile: Profile, id: u64, meta: &FileMeta) -> io::Result<PartFile> {
        let path = self.dir(profile).join(format!("{id:016x}.{PART_SUFFIX}"));
        PartFile::create(path, id, profile, meta)
    }
}

/// A spool file's name: `<id>[-<crc>[-<ledger key>]].dcm`, all hex. Files written
/// before names carried a CRC have the id alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolName {
    pub id: u64,
    /// CRC-32 (IEEE) of the whole file.
    pub crc: Option<u32>,
    pub origin: Option<LedgerKey>,
}

impl SpoolName {
    pub fn file_name(&self) -> String {
        let mut name = format!("{:016x}", self.id);
        if let Some(crc) = self.crc {
            name.push_str(&format!("-{crc:08x}"));
            if let Some(origin) = &self.origin {
                name.push('-');
                name.push_str(&ledger::to_hex(origin));
            }
        }
        name.push('.');
        name.push_str(FILE_SUFFIX);
        name
    }

    fn parse(stem: &str) -> Option<SpoolName> {
        let mut parts = stem.split('-');
        let id = u64::from_str_radix(parts.next().filter(|p| p.len() == 16)?, 16).ok()?;
        let crc = match parts.next() {
            Some(crc) if crc.len() == 8 => Some(u32::from_str_radix(crc, 16).ok()?),
            Some(_) => return None,
            None => None,
        };
        let origin = match parts.next() {
            Some(key) => Some(ledger::from_hex(key)?),
            None => None,
        };
        parts
            .next()
            .is_none()
            .then_some(SpoolName { id, crc, origin })
    }

    /// Whether the file at `path` is whole: its CRC matches the one its name
    /// carries (a file named without one is taken as it is).
    pub fn verify(&self, path: &Path) -> io::Result<bool> {
        let Some(expected) = self.crc else {
            return Ok(true);
        };
        let mut file = File::open(path)?;
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match file.read(&mut buf)? {
                0 => return Ok(hasher.finalize() == expected),
                n => hasher.update(&buf[..n]),
            }
        }
    }
}

/// What goes into a spool file's meta information group (PS3.10 7.1).
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// The sender's AE title; `None` where it must not be recorded (anonymized output).
    pub source_ae_title: Option<String>,
    /// Whether the data set is deflate-compressed (Deflated Explicit VR Little Endian).
    pub deflated: bool,
}

pub fn write_meta(out: &mut impl Write, meta: &FileMeta) -> io::Result<()> {
    let mut builder = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(meta.sop_class_uid.as_str())
        .media_storage_sop_instance_uid(meta.sop_instance_uid.as_str())
        .transfer_syntax(meta.transfer_syntax_uid.as_str())
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
    if let Some(ae) = &meta.source_ae_title {
        builder = builder.source_application_entity_title(ae.as_str());
    }
    let table = builder
        .build()
        .map_err(|e| io::Error::other(format!("file meta information: {e}")))?;
    out.write_all(&[0u8; 128])?;
    out.write_all(b"DICM")?;
    table
        .write(out)
        .map_err(|e| io::Error::other(format!("file meta information: {e}")))
}

enum Body {
    Plain(BufWriter<WriteBehind>),
    Deflated(DeflateEncoder<BufWriter<WriteBehind>>),
}

/// Starts the disk writing while the instance is still arriving, so that the flush
/// before the acknowledgement finds little left to do: without it, every byte of an
/// instance waits for the network first and the disk second, one after the other.
/// It also bounds the dirty pages a multi-gigabyte clip leaves in the page cache,
/// which on a 512 MB board would otherwise crowd out everything else.
struct WriteBehind {
    file: File,
    /// Of every byte written, for the file's name.
    crc: crc32fast::Hasher,
    written: u64,
    kicked: u64,
    page: u64,
}

impl WriteBehind {
    /// Writeback is started every this many bytes.
    const STEP: u64 = 256 * 1024;
    /// Writing waits for writeback of what lies further behind than this.
    const DIRTY_LIMIT: u64 = 16 * 1024 * 1024;

    fn new(file: File) -> WriteBehind {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        WriteBehind {
            file,
            crc: crc32fast::Hasher::new(),
            written: 0,
            kicked: 0,
            page: u64::try_from(page)
                .ok()
                .filter(|p| p.is_power_of_two())
                .unwrap_or(4096),
        }
    }

    /// Writes the whole file out to the disk and waits for it (no device flush).
    fn write_out(&self) -> io::Result<()> {
        self.sync_range(
            0,
            0,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )
    }

    /// `sync_file_range` on `len` bytes from `offset` (0: to the end).
    fn sync_range(&self, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        // SAFETY: a plain syscall on a file descriptor we own.
        let done = unsafe {
            libc::sync_file_range(fd, offset as libc::off64_t, len as libc::off64_t, flags)
        };
        if done == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn into_parts(self) -> (File, u32) {
        (self.file, self.crc.finalize())
    }

    fn kick(&mut self) {
        // Whole pages only: a page kicked half-written would be written twice.
        let end = self.written & !(self.page - 1);
        if end <= self.kicked {
            return;
        }
        let len = end - self.kicked;
        // Failures only mean the final flush does all the work, so they are ignored.
        let _ = self.sync_range(self.kicked, len, libc::SYNC_FILE_RANGE_WRITE);
        if let Some(behind) = self.kicked.checked_sub(Self::DIRTY_LIMIT) {
            let _ = self.sync_range(behind, len, libc::SYNC_FILE_RANGE_WAIT_BEFORE);
        }
        self.kicked = end;
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc.update(&buf[..n]);
        self.written += n as u64;
        if self.written - self.kicked >= Self::STEP {
            self.kick();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A spool file being written. Dropped before [`PartFile::seal`], it removes itself:
/// nothing partial is ever left for the queue.
pub struct PartFile {
    pub id: u64,
    pub profile: Profile,
    /// The SOP Instance UID this file carries (replaced in anonymized profiles).
    pub sop_instance_uid: String,
    path: PathBuf,
    body: Option<Body>,
    error: Option<io::Error>,
    committed: bool,
}

impl PartFile {
    /// Starts a Part 10 file at `path` (which must not exist): preamble and file
    /// meta information written, the data set to follow.
    pub fn create(
        path: PathBuf,
        id: u64,
        profile: Profile,
        meta: &FileMeta,
    ) -> io::Result<PartFile> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut part = PartFile {
            id,
            profile,
            sop_instance_uid: meta.sop_instance_uid.clone(),
            path,
            body: None,
            error: None,
            committed: false,
        };
        let mut writer = BufWriter::with_capacity(256 * 1024, WriteBehind::new(file));
        let written = write_meta(&mut writer, meta);
        part.body = Some(if meta.deflated {
            Body::Deflated(DeflateEncoder::new(writer, flate2::Compression::fast()))
        } else {
            Body::Plain(writer)
        });
        written.map(|()| part)
    }

    /// The first write error, if any (a full disk shows up here).
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Finishes the file and renames it to `final_path(crc)`, `crc` being the
    /// CRC-32 of its bytes. Returns the final path, size and CRC. Nothing is
    /// flushed: for the offline command's output, which acknowledges nothing.
    pub fn finish(
        self,
        final_path: impl FnOnce(u32) -> PathBuf,
    ) -> io::Result<(PathBuf, u64, u32)> {
        self.close(final_path, false)
    }

    /// The same for a spool file, which first waits until its bytes are with the
    /// disk (written, not yet flushed): durability is the queue's group commit,
    /// whose one flush then finds nothing of this file left to write, so no other
    /// instance's acknowledgement waits for this one's bytes.
    pub fn seal(self, final_path: impl FnOnce(u32) -> PathBuf) -> io::Result<(PathBuf, u64, u32)> {
        self.close(final_path, true)
    }

    fn close(
        mut self,
        final_path: impl FnOnce(u32) -> PathBuf,
        written_out: bool,
    ) -> io::Result<(PathBuf, u64, u32)> {
        let writer = match self.body.take() {
            Some(Body::Plain(w)) => w,
            Some(Body::Deflated(d)) => d.finish()?,
            None => return Err(io::Error::other("spool file already sealed")),
        };
        let behind = writer.into_inner().map_err(|e| e.into_error())?;
        if written_out {
            behind.write_out()?;
        }
        let (file, crc) = behind.into_parts();
        let size = file.metadata()?.len();
        drop(file);
        let target = final_path(crc);
        fs::rename(&self.path, &target)?;
        self.committed = true;
        Ok((target, size, crc))
    }

    fn record(&mut self, e: io::Error) -> io::Error {
        let copy = match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        };
        self.error.get_or_insert(copy);
        e
    }
}

impl Write for PartFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = match self.body.as_mut() {
            Some(Body::Plain(w)) => w.write(buf),
            Some(Body::Deflated(d)) => d.write(buf),
            None => Err(io::Error::other("spool file already sealed")),
        };
        result.map_err(|e| self.record(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = match self.body.as_mut() {
            Some(Body::Plain(w)) => w.flush(),
            Some(Body::Deflated(d)) => d.flush(),
            None => Ok(()),
        };
        result.map_err(|e| self.record(e))
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.committed {
            self.body = None;
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// fsync a folder, so that a rename or unlink in it survives a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file, if it is there, and makes the removal durable: a power cut
/// must not bring a delivered file back to be adopted and sent again.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a folder and any missing parents, each made durable in its parent, so
/// that files renamed into it after a power cut still have a folder to be in.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.exists()).collect();
    for path in missing.into_iter().rev() {
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// Bytes available to us on the filesystem holding `path`.
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    space(path).map(|(available, _)| available)
}

/// Bytes available to us, and the size, of the filesystem holding `path`.
pub fn space(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid out pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = stat.f_frsize as u64;
    Ok((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> FileMeta {
        FileMeta {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.6.1".into(),
            sop_instance_uid: "1.2.3.4".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            source_ae_title: Some("US1".into()),
            deflated: false,
        }
    }

    #[test]
    fn dropped_part_files_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.create_dirs(&[Profile::Identified]).unwrap();
        let mut part = spool.create(Profile::Identified, 1, &meta()).unwrap();
        part.write_all(b"half a data set").unwrap();
        drop(part);
        assert_eq!(spool.scan(Profile::Identified).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn sealed_files_are_part10_and_found_by_scan() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.create_dirs(&[Profile::Identified]).unwrap();
        let mut part = spool.create(Profile::Identified, 0x4d2, &meta()).unwrap();
        part.write_all(b"a data set").unwrap();
        let name = |crc| SpoolName {
            id: 0x4d2,
            crc: Some(crc),
            origin: Some([0xab; 16]),
        };
        let (path, size, crc) = part
            .seal(|crc| spool.path(Profile::Identified, &name(crc)))
            .unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(crc, crc32fast::hash(&bytes));
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("00000000000004d2-{crc:08x}-{}.dcm", "ab".repeat(16))
        );
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(&bytes[128..132], b"DICM");
        let table = dicom_object::meta::FileMetaTable::from_reader(&bytes[128..]).unwrap();
        assert_eq!(table.media_storage_sop_instance_uid(), "1.2.3.4");
        assert_eq!(spool.scan(Profile::Identified).unwrap().0, vec![name(crc)]);
        assert!(name(crc).verify(&path).unwrap());
        // Cut short, or written before names had a CRC.
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(!name(crc).verify(&path).unwrap());
        let old = SpoolName {
            id: 7,
            crc: None,
            origin: None,
        };
        assert_eq!(old.file_name(), "0000000000000007.dcm");
        assert_eq!(SpoolName::parse("0000000000000007"), Some(old));
        assert!(old.verify(&path).unwrap());
        for bad in [
            "7",
            "0000000000000007-12",
            "0000000000000007-1234567z",
            "0000000000000007-12345678-ab",
        ] {
            assert_eq!(SpoolName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn free_space_is_measured() {
        assert!(available_bytes(Path::new("/")).unwrap() > 0);
        assert!(available_bytes(Path::new("/no/such/dir")).is_err());
    }
}
