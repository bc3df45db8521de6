//! Spool files that cannot be read back, set aside so the box serves on.
//!
//! An SD card that ignores flushes, or a power cut at the wrong moment, can leave a
//! spool file truncated or garbled. Refusing to start over one such file would stop
//! the box for ever (systemd restarting it every few seconds), so at start-up a
//! file that cannot be read is moved into `damaged/` beside a note of why, counted
//! in `status`, and the attention LED asks for a person. Nothing is deleted: the
//! file may still hold an exam someone can recover.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::spool::{create_dir_durable, sync_dir};

const DIR: &str = "damaged";
const REASON_SUFFIX: &str = "reason.txt";

/// What `damaged/` holds: how many files, and why the latest was set aside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Damaged {
    pub files: u64,
    pub reason: Option<String>,
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

/// Moves `path` (a spool file of `profile`) into `damaged/`, with `reason` beside it.
pub fn set_aside(data_dir: &Path, path: &Path, profile: &str, reason: &str) -> io::Result<()> {
    let dir = dir(data_dir);
    create_dir_durable(&dir)?;
    let name = format!(
        "{profile}-{}",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut note = File::create(dir.join(format!("{name}.{REASON_SUFFIX}")))?;
    writeln!(note, "{reason}")?;
    note.sync_all()?;
    fs::rename(path, dir.join(&name))?;
    sync_dir(&dir)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// What `damaged/` holds now.
pub fn scan(data_dir: &Path) -> io::Result<Damaged> {
    let entries = match fs::read_dir(dir(data_dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Damaged::default()),
        Err(e) => return Err(e),
    };
    let mut damaged = Damaged::default();
    let mut latest = None;
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(REASON_SUFFIX) {
            let modified = fs::metadata(&path)?.modified()?;
            if latest.as_ref().is_none_or(|(at, _)| modified > *at) {
                latest = Some((modified, path.clone()));
            }
        } else {
            damaged.files += 1;
        }
    }
    if let Some((_, path)) = latest {
        damaged.reason = Some(fs::read_to_string(path)?.trim().to_owned());
    }
    Ok(damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_set_aside_is_counted_with_its_reason() {
        let data = tempfile::tempdir().unwrap();
        assert_eq!(scan(data.path()).unwrap(), Damaged::default());
        let spool = data.path().join("spool");
        fs::create_dir(&spool).unwrap();
        let file = spool.join("0000000000000007.dcm");
        fs::write(&file, b"garbled").unwrap();
        set_aside(
            data.path(),
            &file,
            "strict",
            "truncated before its file meta",
        )
        .unwrap();
        assert!(!file.exists());
        assert!(
            data.path()
                .join("damaged/strict-0000000000000007.dcm")
                .exists()
        );
        assert_eq!(
            scan(data.path()).unwrap(),
            Damaged {
                files: 1,
                reason: Some("truncated before its file meta".into())
            }
        );
    }
}
