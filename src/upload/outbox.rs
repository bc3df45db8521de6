//! The `dir:` destination: a local folder that receives one Part 10 file per
//! instance, named by SOP Instance UID (never by patient data).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::queue::Entry;
use crate::queue::spool::sync_dir;

/// Delivers one instance into `dir`, durably: copy to a hidden temp name, fsync,
/// rename into place, fsync the folder. A second delivery of the same instance
/// replaces the first, as DICOM's "same UID, same instance" rule wants.
pub fn deliver(entry: &Entry, dir: &Path) -> io::Result<PathBuf> {
    crate::queue::spool::create_dir_durable(dir)?;
    let name = file_name(&entry.record.sop_instance_uid, entry.id);
    let target = dir.join(&name);
    let temp = dir.join(format!(".{name}.part"));
    let result = (|| {
        fs::copy(&entry.path, &temp)?;
        fs::File::open(&temp)?.sync_all()?;
        fs::rename(&temp, &target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| target)
}

/// `<SOP Instance UID>.dcm`, or the queue id when the UID is not a valid UID (which
/// could otherwise carry anything into a file name).
fn file_name(uid: &str, id: u64) -> String {
    let valid = !uid.is_empty()
        && uid.len() <= 64
        && uid.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !uid.starts_with('.')
        && !uid.ends_with('.')
        && !uid.contains("..");
    if valid {
        format!("{uid}.dcm")
    } else {
        format!("instance-{id:016x}.dcm")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;
    use crate::queue::Record;

    #[test]
    fn file_names_are_uids_or_ids() {
        assert_eq!(file_name("1.2.840.113619.2.1", 1), "1.2.840.113619.2.1.dcm");
        assert_eq!(
            file_name("../../etc/passwd", 1),
            "instance-0000000000000001.dcm"
        );
        assert_eq!(file_name("DOE^JANE", 2), "instance-0000000000000002.dcm");
        assert_eq!(file_name("", 3), "instance-0000000000000003.dcm");
        assert_eq!(file_name("1..2", 4), "instance-0000000000000004.dcm");
    }

    #[test]
    fn delivery_copies_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("spool.dcm");
        fs::write(&source, b"first").unwrap();
        let entry = Entry {
            id: 7,
            path: source.clone(),
            record: Record {
                profile: Profile::Identified,
                size: 5,
                received_ms: 0,
                sop_class_uid: "1.2".into(),
                sop_instance_uid: "1.2.3".into(),
                pending: vec!["outbox".into()],
                origin: None,
                crc: None,
            },
        };
        let outbox = dir.path().join("outbox");
        let target = deliver(&entry, &outbox).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"first");
        fs::write(&source, b"second").unwrap();
        deliver(&entry, &outbox).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"second");
        assert_eq!(
            fs::read_dir(&outbox).unwrap().count(),
            1,
            "no temp files left"
        );
        assert!(
            source.exists(),
            "the spool file stays until the queue removes it"
        );
    }
}
