//! The device key, and the UIDs made with it.
//!
//! Replacement UIDs must be the same for the same original across instances,
//! associations and reboots (a study sent in two parts stays one study), and must
//! not be reversible: an unkeyed hash of a UID falls to a dictionary attack, since
//! UIDs are guessable. So they are HMAC-SHA256 of the original under a secret made
//! at the first start and kept in the data dir, turned into a `2.25.` UID. Each
//! profile hashes in a domain of its own, so that the typical and the strict copy
//! of one instance, at two destinations, cannot be joined by their UIDs.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Profile;

const KEY_FILE: &str = "device.key";

/// The per-device secret.
pub struct DeviceKey([u8; 32]);

impl DeviceKey {
    /// Reads the key from `data_dir`, making it (from the OS's random source) on
    /// the first start. The file is readable by the agent's user only.
    pub fn load_or_create(data_dir: &Path) -> io::Result<DeviceKey> {
        let path = data_dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is damaged (not 32 bytes); restore it from a backup: without it, new UIDs will not match earlier ones", path.display()),
                    )
                })?;
                Ok(DeviceKey(key))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(io::Error::other)?;
                let temp = data_dir.join(format!(".{KEY_FILE}.tmp"));
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&temp)?;
                file.write_all(&key)?;
                file.sync_all()?;
                fs::rename(&temp, &path)?;
                crate::queue::spool::sync_dir(data_dir)?;
                log::info!("made a new device key in {}", path.display());
                Ok(DeviceKey(key))
            }
            Err(e) => Err(e),
        }
    }

    /// The replacement for `uid` in `profile`'s copies: `2.25.` and the first 128
    /// bits of its HMAC as a decimal number (at most 44 characters, a valid UID).
    pub fn uid(&self, profile: Profile, uid: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"uplink uid\0");
        mac.update(profile.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(crate::standard::unpadded(uid).as_bytes());
        let digest = mac.finalize().into_bytes();
        let number = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        format!("2.25.{number}")
    }

    /// The ledger key of an instance (`queue/ledger.rs`): the first 128 bits of
    /// its SOP Instance UID's HMAC, in a domain of its own.
    pub fn ledger_key(&self, sop_instance_uid: &str) -> [u8; 16] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"uplink ledger\0");
        mac.update(crate::standard::unpadded(sop_instance_uid).as_bytes());
        mac.finalize().into_bytes()[..16]
            .try_into()
            .expect("16 bytes")
    }

    /// The box's name for the fleet (heartbeats): 64 bits of the key's HMAC in a
    /// domain of its own, in hex; stable for the box, telling nothing of the key.
    pub fn box_id(&self) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"uplink box id\0");
        mac.finalize().into_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[cfg(test)]
    pub fn for_tests(seed: u8) -> DeviceKey {
        DeviceKey([seed; 32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_stable_valid_and_keyed() {
        let a = DeviceKey::for_tests(1);
        let b = DeviceKey::for_tests(2);
        let uid = a.uid(Profile::Strict, "1.2.840.113619.2.55.3.1");
        assert_eq!(uid, a.uid(Profile::Strict, "1.2.840.113619.2.55.3.1"));
        assert_eq!(
            uid,
            a.uid(Profile::Strict, "1.2.840.113619.2.55.3.1\0"),
            "padding does not matter"
        );
        assert_ne!(uid, a.uid(Profile::Strict, "1.2.840.113619.2.55.3.2"));
        assert_ne!(
            uid,
            b.uid(Profile::Strict, "1.2.840.113619.2.55.3.1"),
            "another device, other UIDs"
        );
        assert_ne!(
            uid,
            a.uid(Profile::Typical, "1.2.840.113619.2.55.3.1"),
            "the typical copy cannot be joined to the strict one"
        );
        assert!(uid.starts_with("2.25.") && uid.len() <= 64);
        assert!(uid[5..].chars().all(|c| c.is_ascii_digit()) && !uid[5..].starts_with('0'));
    }

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = DeviceKey::load_or_create(dir.path())
            .unwrap()
            .uid(Profile::Strict, "1.2.3");
        let again = DeviceKey::load_or_create(dir.path())
            .unwrap()
            .uid(Profile::Strict, "1.2.3");
        assert_eq!(first, again, "same key after a restart");
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "no access for group or others");
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(DeviceKey::load_or_create(dir.path()).is_err());
    }
}
