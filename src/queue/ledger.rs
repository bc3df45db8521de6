//! The ledger: which instances the box has acknowledged, for storage commitment.
//!
//! A modality asks, after it sent an exam, whether the box commits to each of its
//! instances, sometimes hours later. The queue's records are gone once every
//! destination has an instance, so the answer needs a book of its own: one entry
//! per acknowledged instance, written in the same flush as its queue records (an
//! acknowledged instance is always in the ledger), and the destinations that have
//! not confirmed it yet. Entries are keyed by a keyed digest of the original SOP
//! Instance UID (`DeviceKey::ledger_key`), so no UID of a delivered exam stays on
//! the card, and they go after `RETENTION`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The key of an instance in the ledger.
pub type LedgerKey = [u8; 16];

/// How long an entry is kept: longer than any commitment waits
/// (`commit_wait_secs` is at most 30 days).
pub const RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// What the ledger keeps about one acknowledged instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub sop_class_uid: String,
    /// Milliseconds since the Unix epoch.
    pub received_ms: u64,
    /// Destinations that have a copy to deliver and have not confirmed it.
    pub awaiting: Vec<String>,
}

/// Where an instance a commitment names stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Never acknowledged here (or so long ago that the entry is gone).
    Unknown,
    /// Acknowledged, as an instance of another SOP class.
    OtherClass,
    /// Acknowledged and queued; `awaiting` destinations have not confirmed it.
    Stored { awaiting: Vec<String> },
}

impl LedgerEntry {
    /// The entry after another acknowledgement of the same instance.
    pub fn merged(old: Option<LedgerEntry>, new: LedgerEntry) -> LedgerEntry {
        let Some(mut old) = old else { return new };
        for name in new.awaiting {
            if !old.awaiting.contains(&name) {
                old.awaiting.push(name);
            }
        }
        LedgerEntry {
            sop_class_uid: new.sop_class_uid,
            received_ms: new.received_ms,
            awaiting: old.awaiting,
        }
    }

    pub fn standing(&self, sop_class_uid: &str) -> Standing {
        if self.sop_class_uid != sop_class_uid {
            return Standing::OtherClass;
        }
        Standing::Stored {
            awaiting: self.awaiting.clone(),
        }
    }
}

pub fn encode(entry: &LedgerEntry) -> Vec<u8> {
    serde_json::to_vec(entry).expect("ledger entries always serialize")
}

pub fn decode(bytes: &[u8]) -> Option<LedgerEntry> {
    serde_json::from_slice(bytes).ok()
}

/// A key as it is written in a queue record.
pub fn to_hex(key: &LedgerKey) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<LedgerKey> {
    let mut key = [0u8; 16];
    if text.len() != 32 {
        return None;
    }
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(class: &str, awaiting: &[&str]) -> LedgerEntry {
        LedgerEntry {
            sop_class_uid: class.into(),
            received_ms: 1,
            awaiting: awaiting.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_second_acknowledgement_adds_its_destinations() {
        let merged = LedgerEntry::merged(Some(entry("1.2", &["a"])), entry("1.2", &["a", "b"]));
        assert_eq!(merged.awaiting, ["a", "b"]);
        assert_eq!(
            LedgerEntry::merged(None, entry("1.2", &[])).awaiting.len(),
            0
        );
    }

    #[test]
    fn standing_tells_the_class_apart() {
        let e = entry("1.2", &["a"]);
        assert_eq!(e.standing("1.3"), Standing::OtherClass);
        assert_eq!(
            e.standing("1.2"),
            Standing::Stored {
                awaiting: vec!["a".into()]
            }
        );
    }

    #[test]
    fn keys_survive_their_written_form() {
        let key: LedgerKey = std::array::from_fn(|i| (i * 17) as u8);
        assert_eq!(from_hex(&to_hex(&key)), Some(key));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(32)), None);
    }
}
