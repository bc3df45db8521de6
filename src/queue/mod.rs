//! The durable queue: spool files on the card, indexed in sled.
//!
//! An instance is queued once per profile (one spool file each) and delivered once
//! per destination using that profile. Its record in the `items` tree lists the
//! destinations still pending; a per-destination tree orders them oldest first, in
//! two lanes (small and large instances) so that a gigabyte clip never holds the
//! small instances behind it. An instance a destination's server refuses for good
//! moves to that destination's quarantine tree: still on the card, out of the way,
//! until `retry-quarantine` puts it back. (A copy a profile cannot clean never gets
//! here: it is never written.)
//! The record is the truth and the per-destination trees an index rebuilt at each
//! start; the spool files are the truth behind both, so a lost or corrupt sled is
//! rebuilt from them. The commit order is what makes "nothing acknowledged is lost"
//! hold: spool file written and renamed, bytes and name made durable by one group
//! commit flush, record written, and only then may the caller answer Success. The
//! record need not be flushed before the answer: the file's name lets a start-up
//! adopt it (see `spool.rs`), and sled flushes on its own within a second.

pub mod damaged;
mod group_commit;
pub mod ledger;
pub mod spool;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Profile;
use group_commit::GroupCommit;
use ledger::{LedgerEntry, LedgerKey, Standing};
use spool::{FileMeta, PartFile, Spool, SpoolName};

const ALL_PROFILES: [Profile; 3] = [Profile::Identified, Profile::Typical, Profile::Strict];

/// The complete spool files of each profile, by id.
type SpoolFiles = HashMap<Profile, BTreeMap<u64, SpoolName>>;

/// Instances this large or larger travel in the large lane.
pub const LARGE_INSTANCE_BYTES: u64 = 32 * 1024 * 1024;

/// A destination's two queues: small instances and large ones, each drained oldest
/// first by its own worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Small = 0,
    Large = 1,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Small, Lane::Large];

    pub fn of(size: u64) -> Lane {
        if size >= LARGE_INSTANCE_BYTES {
            Lane::Large
        } else {
            Lane::Small
        }
    }
}

fn pending_key(lane: Lane, id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = lane as u8;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

/// Why an instance is in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub reason: String,
    pub at: String,
}

/// What the queue keeps about one spool file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub profile: Profile,
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub received_ms: u64,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// Destinations that have not yet confirmed this instance.
    pub pending: Vec<String>,
    /// The instance's ledger key (hex), where the ledger has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The CRC-32 the file's name carries (files written before names had one
    /// have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc: Option<u32>,
}

impl Record {
    /// The name of the spool file with queue id `id`.
    pub fn file(&self, id: u64) -> SpoolName {
        SpoolName {
            id,
            crc: self.crc,
            origin: self
                .crc
                .and(self.origin.as_deref().and_then(ledger::from_hex)),
        }
    }
}

/// What confirming a copy for one destination left on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// Other destinations still wait for it.
    Waiting,
    /// It was the last: its spool file is gone.
    Deleted,
}

/// The next instance for a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub record: Record,
    pub path: PathBuf,
}

/// Queue figures for one destination, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationStats {
    pub pending: u64,
    pub pending_bytes: u64,
    /// Age of the oldest pending instance.
    pub oldest_pending_secs: Option<u64>,
    pub quarantined: u64,
}

/// What start-up found and repaired, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub queued: u64,
    pub partial_files_removed: u64,
    pub records_without_file: u64,
    pub files_adopted: u64,
    pub delivered_files_removed: u64,
    pub files_without_destination: u64,
    /// Unreadable spool files moved to `damaged/` at this start.
    pub files_damaged: u64,
    pub quarantined: u64,
    /// Backlog queued under another profile than its destination takes now (the
    /// configuration changed): never sent as it is; see `backlog.rs`.
    pub misrouted: Vec<Misrouted>,

    pub index_rebuilt: bool,
}

/// A spool file queued for `destination` under a profile it no longer takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misrouted {
    pub destination: String,
    /// The profile the file was written with, and the destination's now.
    pub queued_as: Profile,
    pub now: Profile,
    pub entry: Entry,
}

/// A queue error, worded for the log.
#[derive(Debug)]
pub enum QueueError {
    Io(io::Error),
    Index(sled::Error),
    Locked(PathBuf),
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::Io(e) => write!(f, "{e}"),
            QueueError::Index(e) => write!(f, "queue index: {e}"),
            QueueError::Locked(dir) => write!(
                f,
                "another uplink agent is using {}: stop it first, or give this one another [storage] data_dir",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for QueueError {}

impl From<io::Error> for QueueError {
    fn from(e: io::Error) -> Self {
        QueueError::Io(e)
    }
}

impl From<sled::Error> for QueueError {
    fn from(e: sled::Error) -> Self {
        QueueError::Index(e)
    }
}

struct Destination {
    name: String,
    profile: Profile,
    pending: sled::Tree,
    quarantine: sled::Tree,
    stats: Mutex<Counts>,
    /// One wake-up channel per lane.
    wake: [(smol::channel::Sender<()>, smol::channel::Receiver<()>); 2],
}

#[derive(Default)]
struct Counts {
    pending: u64,
    pending_bytes: u64,
    quarantined: u64,
}

/// The queue, shared by the listener (which commits) and the destination workers
/// (which take and complete).
pub struct Queue {
    db: sled::Db,
    items: sled::Tree,
    /// What was acknowledged, for storage commitment (see `ledger.rs`).
    ledger: sled::Tree,
    spool: Spool,
    /// The one flush that makes acknowledged spool files durable.
    group: GroupCommit,
    data_dir: PathBuf,
    next_id: AtomicU64,
    min_free_bytes: u64,
    destinations: Vec<Destination>,
    /// Spool files set aside as unreadable, as found at start-up.
    damaged: damaged::Damaged,
    /// Instances still pending for destinations no longer configured, by name.
    orphaned: std::collections::BTreeMap<String, u64>,
    _lock: File,
}

impl Queue {
    /// Opens (or creates) the queue in `data_dir` for the given destinations and
    /// reconciles it with the spool.
    pub fn open(
        data_dir: &Path,
        destinations: &[(String, Profile)],
        min_free_bytes: u64,
    ) -> Result<(Queue, Reconciled), QueueError> {
        spool::create_dir_durable(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        let spool = Spool::new(data_dir);
        let profiles: Vec<Profile> = destinations.iter().map(|(_, p)| *p).collect();
        spool.create_dirs(&profiles)?;
        let index = data_dir.join("queue.sled");
        let (db, index_rebuilt) = match open_index(&index) {
            Ok(db) => (db, false),
            Err(e) => {
                let aside = data_dir.join(format!("queue.sled.broken-{}", unix_ms()));
                log::error!(
                    "queue index {} cannot be opened ({e}); moving it to {} and rebuilding it from the spool",
                    index.display(),
                    aside.display()
                );
                fs::rename(&index, &aside)?;
                (open_index(&index)?, true)
            }
        };
        let mut queue = Queue {
            items: db.open_tree("items")?,
            ledger: db.open_tree("ledger")?,
            destinations: destinations
                .iter()
                .map(|(name, profile)| {
                    Ok(Destination {
                        name: name.clone(),
                        profile: *profile,
                        pending: db.open_tree(format!("pending/{name}"))?,
                        quarantine: db.open_tree(format!("quarantine/{name}"))?,
                        stats: Mutex::new(Counts::default()),
                        wake: [smol::channel::bounded(1), smol::channel::bounded(1)],
                    })
                })
                .collect::<Result<_, sled::Error>>()?,
            db,
            group: GroupCommit::syncfs(data_dir)?,
            spool,
            data_dir: data_dir.to_path_buf(),
            next_id: AtomicU64::new(0),
            min_free_bytes,
            damaged: damaged::Damaged::default(),
            orphaned: Default::default(),
            _lock: lock,
        };
        // A new index beside spool files means the old one was lost or removed.
        let index_new = index_rebuilt || !queue.db.was_recovered();
        let mut report = queue.reconcile(index_new)?;
        report.index_rebuilt = index_rebuilt;
        queue.damaged = damaged::scan(data_dir)?;
        Ok((queue, report))
    }

    /// The distinct profiles in use, one spool file each per instance.
    pub fn profiles(&self) -> Vec<Profile> {
        let mut profiles: Vec<Profile> = Vec::new();
        for d in &self.destinations {
            if !profiles.contains(&d.profile) {
                profiles.push(d.profile);
            }
        }
        profiles
    }

    /// Whether the card has room for another instance above the configured floor.
    pub fn has_room(&self) -> io::Result<bool> {
        Ok(spool::available_bytes(&self.data_dir)? >= self.min_free_bytes)
    }

    /// Starts a spool file for one profile of an incoming instance.
    pub fn start(&self, profile: Profile, meta: &FileMeta) -> io::Result<PartFile> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.spool.create(profile, id, meta)
    }

    /// Makes the instance durable in every profile, then records it for every
    /// destination. When this returns Ok the instance may be acknowledged.
    /// `origin`, the instance's ledger key, enters the ledger in the same flush.
    pub fn commit(
        &self,
        parts: Vec<PartFile>,
        sop_class_uid: &str,
        origin: Option<LedgerKey>,
    ) -> Result<(), QueueError> {
        self.commit_for(parts, sop_class_uid, None, origin)
    }

    /// The same, for the destination named `only` (when given) rather than every
    /// destination of each part's profile.
    pub fn commit_for(
        &self,
        parts: Vec<PartFile>,
        sop_class_uid: &str,
        only: Option<&str>,
        origin: Option<LedgerKey>,
    ) -> Result<(), QueueError> {
        let takes = |d: &Destination, profile: Profile| {
            d.profile == profile && only.is_none_or(|name| name == d.name)
        };
        let received_ms = unix_ms();
        let mut sealed = Vec::with_capacity(parts.len());
        let remove = |sealed: &[(SpoolName, Profile, u64, String)]| {
            for (name, profile, ..) in sealed {
                let _ = fs::remove_file(self.spool.path(*profile, name));
            }
        };
        for part in parts {
            let (id, profile, uid) = (part.id, part.profile, part.sop_instance_uid.clone());
            let name = |crc| SpoolName {
                id,
                crc: Some(crc),
                origin,
            };
            match part.seal(|crc| self.spool.path(profile, &name(crc))) {
                Ok((_, size, crc)) => sealed.push((name(crc), profile, size, uid)),
                Err(e) => {
                    // Not acknowledged: take back what was already sealed.
                    remove(&sealed);
                    return Err(e.into());
                }
            }
        }
        if let Err(e) = self.group.sync() {
            remove(&sealed);
            return Err(e.into());
        }
        // Counted before the entries exist: a worker may take and complete an entry
        // the moment it is inserted, and its decrement must find the increment.
        let count = |up: bool| {
            for (_, profile, size, _) in &sealed {
                for d in self.destinations.iter().filter(|d| takes(d, *profile)) {
                    let mut stats = d.stats.lock().expect("stats lock");
                    let adjust =
                        |n: &mut u64, by: u64| *n = if up { *n + by } else { n.saturating_sub(by) };
                    adjust(&mut stats.pending, 1);
                    adjust(&mut stats.pending_bytes, *size);
                }
            }
        };
        count(true);
        let result = (|| -> Result<(), QueueError> {
            for (name, profile, size, uid) in &sealed {
                let id = &name.id;
                let record = Record {
                    profile: *profile,
                    size: *size,
                    received_ms,
                    sop_class_uid: sop_class_uid.to_owned(),
                    sop_instance_uid: uid.clone(),
                    pending: self
                        .destinations
                        .iter()
                        .filter(|d| takes(d, *profile))
                        .map(|d| d.name.clone())
                        .collect(),
                    origin: origin.as_ref().map(ledger::to_hex),
                    crc: name.crc,
                };
                self.items.insert(id.to_be_bytes(), encode(&record))?;
                for d in self.destinations.iter().filter(|d| takes(d, *profile)) {
                    d.pending.insert(pending_key(Lane::of(*size), *id), &[])?;
                }
            }
            if let Some(key) = origin {
                let awaiting = self
                    .destinations
                    .iter()
                    .filter(|d| sealed.iter().any(|(_, profile, ..)| takes(d, *profile)))
                    .map(|d| d.name.clone())
                    .collect();
                let entry = LedgerEntry {
                    sop_class_uid: sop_class_uid.to_owned(),
                    received_ms,
                    awaiting,
                };
                let old = self.ledger.get(key)?.and_then(|v| ledger::decode(&v));
                self.ledger
                    .insert(key, ledger::encode(&LedgerEntry::merged(old, entry)))?;
            }
            // A copy for one destination only would be adopted back for all of
            // its profile's: its record must be on the card before anything
            // relies on it.
            if only.is_some() {
                self.db.flush()?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            count(false);
            remove(&sealed);
            for (name, ..) in &sealed {
                let _ = self.items.remove(name.id.to_be_bytes());
            }
            return Err(e);
        }
        for (_, profile, size, _) in &sealed {
            for d in self.destinations.iter().filter(|d| takes(d, *profile)) {
                let _ = d.wake[Lane::of(*size) as usize].0.try_send(());
            }
        }
        Ok(())
    }

    /// The oldest instances pending for destination `index` in `lane`: up to
    /// `max_count` of them and `max_bytes` in all (but always at least one).
    pub fn next_batch(
        &self,
        index: usize,
        lane: Lane,
        max_count: usize,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, QueueError> {
        let d = &self.destinations[index];
        let mut batch = Vec::new();
        let mut bytes = 0;
        for key in d.pending.scan_prefix([lane as u8]).keys() {
            let key = key?;
            let id = decode_id(&key[1..]);
            match self.items.get(id.to_be_bytes())?.and_then(|v| decode(&v)) {
                Some(record) if record.pending.contains(&d.name) => {
                    if !batch.is_empty()
                        && (batch.len() >= max_count || bytes + record.size > max_bytes)
                    {
                        break;
                    }
                    bytes += record.size;
                    batch.push(Entry {
                        id,
                        path: self.spool.path(record.profile, &record.file(id)),
                        record,
                    });
                }
                _ => {
                    d.pending.remove(&key)?;
                }
            }
        }
        Ok(batch)
    }

    /// Moves an instance destination `index` refused for good into its quarantine:
    /// kept on the card with the reason, no longer retried.
    pub fn quarantine(&self, index: usize, entry: &Entry, reason: &str) -> Result<(), QueueError> {
        let d = &self.destinations[index];
        d.quarantine
            .insert(entry.id.to_be_bytes(), quarantine_record(reason))?;
        d.pending
            .remove(pending_key(Lane::of(entry.record.size), entry.id))?;
        self.db.flush()?;
        let mut stats = d.stats.lock().expect("stats lock");
        stats.pending = stats.pending.saturating_sub(1);
        stats.pending_bytes = stats.pending_bytes.saturating_sub(entry.record.size);
        stats.quarantined += 1;
        Ok(())
    }

    /// Puts every quarantined instance of the destination named (all when `None`)
    /// back in its queue; returns how many.
    pub fn retry_quarantine(&self, only: Option<&str>) -> Result<u64, QueueError> {
        let mut moved = 0;
        for d in self
            .destinations
            .iter()
            .filter(|d| only.is_none_or(|n| n == d.name))
        {
            for item in d.quarantine.iter() {
                let (key, _) = item?;
                if let Some(record) = self.items.get(&key)?.and_then(|v| decode(&v)) {
                    d.pending
                        .insert(pending_key(Lane::of(record.size), decode_id(&key)), &[])?;
                    let mut stats = d.stats.lock().expect("stats lock");
                    stats.pending += 1;
                    stats.pending_bytes += record.size;
                    moved += 1;
                }
                d.quarantine.remove(&key)?;
            }
            d.stats.lock().expect("stats lock").quarantined = 0;
            for (wake, _) in &d.wake {
                let _ = wake.try_send(());
            }
        }
        self.db.flush()?;
        Ok(moved)
    }

    /// Records that destination `index` has the instance; removes the spool file
    /// once every destination has it.
    pub fn complete(&self, index: usize, id: u64) -> Result<Completed, QueueError> {
        let d = &self.destinations[index];
        let (size, origin, completed) = self.take_off(id, &d.name)?;
        d.pending.remove(pending_key(Lane::of(size), id))?;
        if let Some(key) = origin {
            self.confirmed(&key, &d.name)?;
        }
        self.db.flush()?;
        let mut stats = d.stats.lock().expect("stats lock");
        stats.pending = stats.pending.saturating_sub(1);
        stats.pending_bytes = stats.pending_bytes.saturating_sub(size);
        Ok(completed)
    }

    /// Takes destination `name` off the record of `id`, and removes the spool file
    /// and record once no destination waits for it. Returns the instance's size
    /// and ledger key, and whether the file went.
    fn take_off(
        &self,
        id: u64,
        name: &str,
    ) -> Result<(u64, Option<LedgerKey>, Completed), QueueError> {
        let key = id.to_be_bytes();
        let mut size = 0;
        let mut origin = None;
        let updated = self.items.update_and_fetch(key, |old| {
            let mut record = decode(old?)?;
            size = record.size;
            origin = record.origin.as_deref().and_then(ledger::from_hex);
            record.pending.retain(|n| n != name);
            Some(encode(&record))
        })?;
        if let Some(record) = updated.and_then(|v| decode(&v)) {
            if record.pending.is_empty() {
                // File first: a crash in between leaves a record without a file,
                // which start-up drops, never a file that would be delivered again.
                spool::remove_durable(&self.spool.path(record.profile, &record.file(id)))?;
                self.items.remove(key)?;
                return Ok((size, origin, Completed::Deleted));
            }
        }
        Ok((size, origin, Completed::Waiting))
    }

    /// Records in the ledger that destination `name` has (or will never be sent)
    /// the instance `key`.
    pub fn confirmed(&self, key: &LedgerKey, name: &str) -> Result<(), QueueError> {
        self.ledger.update_and_fetch(key, |old| {
            let mut entry = ledger::decode(old?)?;
            entry.awaiting.retain(|n| n != name);
            Some(ledger::encode(&entry))
        })?;
        Ok(())
    }

    /// Where the instance `key` stands, as an instance of `sop_class_uid`.
    pub fn standing(&self, key: &LedgerKey, sop_class_uid: &str) -> Result<Standing, QueueError> {
        Ok(
            match self.ledger.get(key)?.and_then(|v| ledger::decode(&v)) {
                Some(entry) => entry.standing(sop_class_uid),
                None => Standing::Unknown,
            },
        )
    }

    /// A tree of the queue's database for records that live and are flushed with
    /// the queue (storage commitment requests).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, QueueError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Takes destination `name` off the instance `id` without delivering it (its
    /// backlog was dropped or re-derived); removes the spool file once no
    /// destination waits for it.
    pub fn release(&self, id: u64, name: &str) -> Result<Completed, QueueError> {
        let (.., completed) = self.take_off(id, name)?;
        for d in self.destinations.iter().filter(|d| d.name == name) {
            d.quarantine.remove(id.to_be_bytes())?;
        }
        self.db.flush()?;
        Ok(completed)
    }

    /// Gives destination `from`'s backlog to destination `to` (a rename in the
    /// configuration); returns how many instances moved. Takes effect at the next
    /// start, where a profile that differs is dealt with like any other.
    pub fn reassign(&self, from: &str, to: &str) -> Result<u64, QueueError> {
        let mut moved = 0;
        for item in self.items.iter() {
            let (key, _) = item?;
            let mut renamed = false;
            let mut origin = None;
            self.items.update_and_fetch(&key, |old| {
                let mut record = decode(old?)?;
                renamed = false;
                if record.pending.iter().any(|n| n == from) {
                    record.pending.retain(|n| n != from);
                    if !record.pending.iter().any(|n| n == to) {
                        record.pending.push(to.to_owned());
                    }
                    renamed = true;
                    origin = record.origin.as_deref().and_then(ledger::from_hex);
                }
                Some(encode(&record))
            })?;
            if let Some(origin) = origin {
                self.ledger.update_and_fetch(origin, |old| {
                    let mut entry = ledger::decode(old?)?;
                    entry.awaiting.retain(|n| n != from);
                    if !entry.awaiting.iter().any(|n| n == to) {
                        entry.awaiting.push(to.to_owned());
                    }
                    Some(ledger::encode(&entry))
                })?;
            }
            moved += u64::from(renamed);
        }
        self.db.flush()?;
        Ok(moved)
    }

    /// Every instance still waiting for destination `name`.
    pub fn waiting_for(&self, name: &str) -> Result<Vec<u64>, QueueError> {
        let mut ids = Vec::new();
        for item in self.items.iter() {
            let (key, value) = item?;
            if decode(&value).is_some_and(|r| r.pending.iter().any(|n| n == name)) {
                ids.push(decode_id(&key));
            }
        }
        Ok(ids)
    }

    /// Instances pending for destinations no longer configured, by name.
    pub fn orphaned(&self) -> &std::collections::BTreeMap<String, u64> {
        &self.orphaned
    }

    /// Waits until something is queued for destination `index` in `lane` (or
    /// returns at once if something was queued since the last wait).
    pub async fn woken(&self, index: usize, lane: Lane) {
        let _ = self.destinations[index].wake[lane as usize].1.recv().await;
    }

    /// Per-destination figures, in configuration order.
    pub fn stats(&self) -> Vec<(String, DestinationStats)> {
        let now = unix_ms();
        self.destinations
            .iter()
            .map(|d| {
                let counts = d.stats.lock().expect("stats lock");
                let oldest_pending_secs = Lane::ALL
                    .iter()
                    .filter_map(|lane| d.pending.scan_prefix([*lane as u8]).keys().next()?.ok())
                    .filter_map(|key| self.items.get(&key[1..]).ok().flatten())
                    .filter_map(|v| decode(&v))
                    .map(|r| now.saturating_sub(r.received_ms) / 1000)
                    .max();
                (
                    d.name.clone(),
                    DestinationStats {
                        pending: counts.pending,
                        pending_bytes: counts.pending_bytes,
                        oldest_pending_secs,
                        quarantined: counts.quarantined,
                    },
                )
            })
            .collect()
    }

    /// Flushes the index; used on shutdown.
    pub fn flush(&self) -> Result<(), QueueError> {
        self.db.flush()?;
        Ok(())
    }

    /// Spool files set aside as unreadable (see `damaged.rs`).
    pub fn damaged(&self) -> &damaged::Damaged {
        &self.damaged
    }

    /// The destinations that take `profile`'s copies.
    pub fn destinations_of(&self, profile: Profile) -> Vec<String> {
        self.destinations
            .iter()
            .filter(|d| d.profile == profile)
            .map(|d| d.name.clone())
            .collect()
    }

    /// Brings index and spool into agreement after whatever happened before: the
    /// spool is the truth, the records follow it, and the per-destination trees
    /// are rebuilt from the records.
    fn reconcile(&mut self, index_new: bool) -> Result<Reconciled, QueueError> {
        let mut report = Reconciled::default();
        let (mut files, max_file) = self.scan_spool(&mut report)?;
        let max_record = self.check_records(&mut files, &mut report)?;
        self.adopt_files(&files, index_new, &mut report)?;
        self.drop_stale_quarantine()?;
        self.prune_ledger()?;
        self.rebuild_pending(&mut report)?;
        self.db.flush()?;
        self.next_id = AtomicU64::new(max_file.max(max_record).map_or(1, |id| id + 1));
        Ok(report)
    }

    /// The complete spool files of every profile, by id; leftover parts removed.
    fn scan_spool(&self, report: &mut Reconciled) -> Result<(SpoolFiles, Option<u64>), QueueError> {
        let mut files = HashMap::new();
        let mut max_id = None;
        for profile in ALL_PROFILES {
            let (complete, parts) = self.spool.scan(profile)?;
            for part in parts {
                fs::remove_file(&part)?;
                report.partial_files_removed += 1;
            }
            max_id = max_id.max(complete.last().map(|name| name.id));
            files.insert(profile, complete.into_iter().map(|n| (n.id, n)).collect());
        }
        Ok((files, max_id))
    }

    /// Keeps the records whose file is there (taking those files off `files`),
    /// finishes removing delivered ones, drops the rest. Returns the highest id.
    fn check_records(
        &self,
        files: &mut SpoolFiles,
        report: &mut Reconciled,
    ) -> Result<Option<u64>, QueueError> {
        let mut max_id = None;
        for item in self.items.iter() {
            let (key, value) = item?;
            let id = decode_id(&key);
            max_id = max_id.max(Some(id));
            let record = decode(&value);
            let on_disk = record
                .as_ref()
                .and_then(|r| files.get_mut(&r.profile))
                .is_some_and(|set| set.remove(&id).is_some());
            match record {
                Some(record) if on_disk && record.pending.is_empty() => {
                    spool::remove_durable(&self.spool.path(record.profile, &record.file(id)))?;
                    self.items.remove(&key)?;
                    report.delivered_files_removed += 1;
                }
                Some(_) if on_disk => {}
                Some(_) => {
                    self.items.remove(&key)?;
                    report.records_without_file += 1;
                }
                None => {
                    // An unreadable record: its file, if any, is adopted next.
                    self.items.remove(&key)?;
                }
            }
        }
        Ok(max_id)
    }

    /// Gives each spool file without a record a new one, from its file meta and
    /// name, and its ledger entry back. A file whose CRC fails was caught by a
    /// power cut before its flush ended, so it was never acknowledged, and goes
    /// (an acknowledged file's record follows it to the card within a second, so
    /// only a power cut in that second and a card that lost the bytes as well could
    /// leave one so). When the index itself was lost, though, the card is in doubt:
    /// such a file is set aside like any that cannot be read back.
    fn adopt_files(
        &self,
        files: &SpoolFiles,
        index_new: bool,
        report: &mut Reconciled,
    ) -> Result<(), QueueError> {
        for (profile, names) in files {
            let pending = self.destinations_of(*profile);
            for name in names.values() {
                if pending.is_empty() {
                    report.files_without_destination += 1;
                    continue;
                }
                let path = self.spool.path(*profile, name);
                let whole = name.verify(&path)?;
                if !whole && !index_new {
                    log::warn!(
                        "spool file {} was cut short before it was acknowledged; removing it",
                        path.display()
                    );
                    fs::remove_file(&path)?;
                    report.partial_files_removed += 1;
                    continue;
                }
                let adopted = match whole {
                    true => adopt(&path, *profile, pending.clone(), name),
                    false => Err(io::Error::other("its CRC-32 does not match its name")),
                };
                match adopted {
                    Ok(record) => {
                        self.readopt_ledger(name, &record)?;
                        self.items.insert(name.id.to_be_bytes(), encode(&record))?;
                        report.files_adopted += 1;
                    }
                    Err(e) => {
                        let reason = format!("cannot be read back: {e}");
                        log::error!(
                            "spool file {} {reason}; moving it to {}/damaged and serving on",
                            path.display(),
                            self.data_dir.display()
                        );
                        damaged::set_aside(&self.data_dir, &path, profile.as_str(), &reason)?;
                        report.files_damaged += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// An adopted file's ledger entry, as its commit wrote it (merged with what the
    /// ledger kept, when the entry of another profile's copy made it to the card).
    fn readopt_ledger(&self, name: &SpoolName, record: &Record) -> Result<(), QueueError> {
        let Some(key) = name.origin else {
            return Ok(());
        };
        let entry = LedgerEntry {
            sop_class_uid: record.sop_class_uid.clone(),
            received_ms: record.received_ms,
            awaiting: record.pending.clone(),
        };
        let old = self.ledger.get(key)?.and_then(|v| ledger::decode(&v));
        self.ledger
            .insert(key, ledger::encode(&LedgerEntry::merged(old, entry)))?;
        Ok(())
    }

    /// Ledger entries go after `ledger::RETENTION`, delivered or not: no
    /// commitment waits that long. At each start, and hourly while running.
    pub fn prune_ledger(&self) -> Result<(), QueueError> {
        let oldest = unix_ms().saturating_sub(ledger::RETENTION.as_millis() as u64);
        for item in self.ledger.iter() {
            let (key, value) = item?;
            if ledger::decode(&value).is_none_or(|e| e.received_ms < oldest) {
                self.ledger.remove(key)?;
            }
        }
        Ok(())
    }

    /// A quarantine entry lives only as long as its record still waits for it.
    fn drop_stale_quarantine(&self) -> Result<(), QueueError> {
        for d in &self.destinations {
            for item in d.quarantine.iter() {
                let (key, _) = item?;
                let waiting = self
                    .items
                    .get(&key)?
                    .and_then(|v| decode(&v))
                    .is_some_and(|r| r.pending.contains(&d.name));
                if !waiting {
                    d.quarantine.remove(&key)?;
                }
            }
        }
        Ok(())
    }

    /// The per-destination trees and counts, from the records; misrouted and
    /// orphaned backlog noted on the way.
    fn rebuild_pending(&mut self, report: &mut Reconciled) -> Result<(), QueueError> {
        for d in &self.destinations {
            d.pending.clear()?;
        }
        let mut orphaned = std::collections::BTreeMap::new();
        for item in self.items.iter() {
            let (key, value) = item?;
            let Some(record) = decode(&value) else {
                continue;
            };
            report.queued += 1;
            let id = decode_id(&key);
            for name in &record.pending {
                if !self.destinations.iter().any(|d| &d.name == name) {
                    *orphaned.entry(name.clone()).or_insert(0) += 1;
                }
            }
            for d in self
                .destinations
                .iter()
                .filter(|d| record.pending.contains(&d.name))
            {
                if d.profile != record.profile {
                    // Written for another profile: sending it would give this
                    // destination what its profile must not (or less than it should).
                    report.misrouted.push(Misrouted {
                        destination: d.name.clone(),
                        queued_as: record.profile,
                        now: d.profile,
                        entry: Entry {
                            id,
                            path: self.spool.path(record.profile, &record.file(id)),
                            record: record.clone(),
                        },
                    });
                    continue;
                }
                let mut stats = d.stats.lock().expect("stats lock");
                if d.quarantine.contains_key(&key)? {
                    stats.quarantined += 1;
                    report.quarantined += 1;
                } else {
                    d.pending
                        .insert(pending_key(Lane::of(record.size), id), &[])?;
                    stats.pending += 1;
                    stats.pending_bytes += record.size;
                }
            }
        }
        self.orphaned = orphaned;
        Ok(())
    }
}

/// Opens the index. Our own lock on the data dir is held by now, so a lock sled
/// cannot take is a previous handle in this process still shutting down (its
/// flusher thread lets go within a second): wait for it, rather than take the index
/// for broken and rebuild it, which would forget what was quarantined.
fn open_index(path: &Path) -> Result<sled::Db, sled::Error> {
    let locked = |e: &sled::Error| e.to_string().contains("could not acquire lock");
    let mut waited = Duration::ZERO;
    loop {
        match open_index_once(path) {
            Err(e) if locked(&e) && waited < INDEX_LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
                waited += Duration::from_millis(50);
            }
            result => return result,
        }
    }
}

/// How long `open_index` waits for a handle of this process to let go.
const INDEX_LOCK_WAIT: Duration = Duration::from_secs(5);

fn open_index_once(path: &Path) -> Result<sled::Db, sled::Error> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(4 * 1024 * 1024)
        .mode(sled::Mode::LowSpace)
        .flush_every_ms(Some(1000))
        .open()?;
    // Reading every tree once surfaces corruption now rather than mid-delivery.
    for name in db.tree_names() {
        for item in db.open_tree(name)?.iter() {
            item?;
        }
    }
    Ok(db)
}

/// Holds an exclusive lock on the data dir for the life of the process, so that two
/// agents never share a spool.
fn lock_data_dir(data_dir: &Path) -> Result<File, QueueError> {
    use std::os::fd::AsRawFd;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join("uplink.lock"))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::WouldBlock {
            QueueError::Locked(data_dir.to_path_buf())
        } else {
            QueueError::Io(e)
        });
    }
    Ok(file)
}

/// The record of a spool file whose record was lost, from its file meta; an error
/// says what is wrong with the file (never its content).
fn adopt(
    path: &Path,
    profile: Profile,
    pending: Vec<String>,
    name: &SpoolName,
) -> io::Result<Record> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut preamble = [0u8; 128];
    file.read_exact(&mut preamble)
        .map_err(|_| io::Error::other("truncated before its file meta"))?;
    let meta = dicom_object::meta::FileMetaTable::from_reader(io::BufReader::new(file))
        .map_err(|_| io::Error::other("its file meta is unreadable (truncated or garbled)"))?;
    let received_ms = fs::metadata(path)?
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    Ok(Record {
        profile,
        size,
        received_ms,
        sop_class_uid: meta.media_storage_sop_class_uid().to_owned(),
        sop_instance_uid: meta.media_storage_sop_instance_uid().to_owned(),
        pending,
        origin: name.origin.as_ref().map(ledger::to_hex),
        crc: name.crc,
    })
}

fn quarantine_record(reason: &str) -> Vec<u8> {
    serde_json::to_vec(&Quarantined {
        reason: reason.to_owned(),
        at: crate::status::counters::now_rfc3339(),
    })
    .expect("quarantine records serialize")
}

fn encode(record: &Record) -> Vec<u8> {
    serde_json::to_vec(record).expect("records always serialize")
}

fn decode(bytes: &[u8]) -> Option<Record> {
    serde_json::from_slice(bytes).ok()
}

/// The id a big-endian u64 key of the queue's database stands for.
pub(crate) fn decode_id(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Milliseconds since the Unix epoch, as the queue's records keep time.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn meta(uid: &str) -> FileMeta {
        FileMeta {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.6.1".into(),
            sop_instance_uid: uid.into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            source_ae_title: Some("US1".into()),
            deflated: false,
        }
    }

    /// The path of the complete spool file with queue id `id`.
    fn spool_file(spool: &Spool, profile: Profile, id: u64) -> PathBuf {
        let (names, _) = spool.scan(profile).unwrap();
        let name = names.iter().find(|n| n.id == id).expect("a spool file");
        spool.path(profile, name)
    }

    fn two_destinations() -> Vec<(String, Profile)> {
        vec![
            ("a".into(), Profile::Identified),
            ("b".into(), Profile::Identified),
        ]
    }

    const US: &str = "1.2.840.10008.5.1.4.1.1.6.1";

    fn enqueue(queue: &Queue, uid: &str) {
        let mut part = queue.start(Profile::Identified, &meta(uid)).unwrap();
        part.write_all(b"data set bytes").unwrap();
        queue.commit(vec![part], US, None).unwrap();
    }

    #[test]
    fn instances_are_delivered_to_every_destination_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, report) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
        assert_eq!(report, Reconciled::default());
        enqueue(&queue, "1.2.3.1");
        enqueue(&queue, "1.2.3.2");
        assert_eq!(queue.stats()[0].1.pending, 2);
        let first = queue
            .next_batch(0, Lane::Small, 1, u64::MAX)
            .unwrap()
            .remove(0);
        assert_eq!(first.record.sop_instance_uid, "1.2.3.1");
        assert!(first.path.exists());
        queue.complete(0, first.id).unwrap();
        assert!(first.path.exists(), "destination b still needs it");
        let batch = queue.next_batch(0, Lane::Small, 8, u64::MAX).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].record.sop_instance_uid, "1.2.3.2");
        queue.complete(1, first.id).unwrap();
        assert!(!first.path.exists());
        assert_eq!(queue.stats()[1].1.pending, 1);
    }

    #[test]
    fn the_ledger_outlives_the_queue_and_follows_each_destination() {
        let dir = tempfile::tempdir().unwrap();
        let key: LedgerKey = [7; 16];
        {
            let (queue, _) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
            assert_eq!(queue.standing(&key, US).unwrap(), Standing::Unknown);
            let mut part = queue.start(Profile::Identified, &meta("1.2.3.9")).unwrap();
            part.write_all(b"data set bytes").unwrap();
            queue.commit(vec![part], US, Some(key)).unwrap();
            let awaiting = |queue: &Queue| match queue.standing(&key, US).unwrap() {
                Standing::Stored { awaiting } => awaiting,
                other => panic!("{other:?}"),
            };
            assert_eq!(awaiting(&queue), ["a", "b"]);
            assert_eq!(queue.standing(&key, "1.2.3").unwrap(), Standing::OtherClass);
            let entry = queue
                .next_batch(0, Lane::Small, 1, u64::MAX)
                .unwrap()
                .remove(0);
            queue.complete(0, entry.id).unwrap();
            assert_eq!(awaiting(&queue), ["b"]);
            queue.complete(1, entry.id).unwrap();
            assert!(
                !entry.path.exists(),
                "delivered everywhere: the spool file goes"
            );
            assert_eq!(awaiting(&queue), Vec::<String>::new());
        }
        let (queue, _) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
        assert_eq!(
            queue.standing(&key, US).unwrap(),
            Standing::Stored { awaiting: vec![] },
            "kept across a restart"
        );
    }

    #[test]
    fn reopening_keeps_pending_work_and_repairs_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        {
            let (queue, _) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
            enqueue(&queue, "1.2.3.1");
            enqueue(&queue, "1.2.3.2");
            // A crash mid-receive leaves a part file.
            std::mem::forget(queue.start(Profile::Identified, &meta("1.2.3.3")).unwrap());
            // A crash after a file vanished leaves a record without its file.
            fs::remove_file(spool_file(&spool, Profile::Identified, 2)).unwrap();
        }
        let (queue, report) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
        assert_eq!(report.partial_files_removed, 1);
        assert_eq!(report.records_without_file, 1);
        assert_eq!(report.queued, 1);
        assert_eq!(
            queue.next_batch(1, Lane::Small, 1, 1).unwrap()[0]
                .record
                .sop_instance_uid,
            "1.2.3.1"
        );
        enqueue(&queue, "1.2.3.4");
        assert_eq!(
            queue.stats()[0].1.pending,
            2,
            "new ids never collide with old ones"
        );
    }

    #[test]
    fn records_lost_with_the_power_are_rebuilt_from_the_spool_ledger_included() {
        for index_lost in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let spool = Spool::new(dir.path());
            let key = [7u8; 16];
            {
                let (queue, _) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
                let mut part = queue.start(Profile::Identified, &meta("1.2.3.1")).unwrap();
                part.write_all(b"data set bytes").unwrap();
                queue.commit(vec![part], US, Some(key)).unwrap();
                enqueue(&queue, "1.2.3.2");
            }
            // The second file's flush never ended: a power cut left it cut short.
            let cut = spool_file(&spool, Profile::Identified, 2);
            let bytes = fs::read(&cut).unwrap();
            fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
            let index = dir.path().join("queue.sled");
            if index_lost {
                fs::remove_dir_all(&index).unwrap();
                fs::write(&index, b"not a database").unwrap();
            } else {
                // Records and ledger entries not yet flushed when the power went.
                // (Opened as the queue opens it: the closed queue's flusher thread
                // may hold the lock a moment longer.)
                let db = open_index(&index).unwrap();
                db.open_tree("items").unwrap().clear().unwrap();
                db.open_tree("ledger").unwrap().clear().unwrap();
                db.flush().unwrap();
            }
            let (queue, report) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
            assert_eq!(report.index_rebuilt, index_lost);
            assert_eq!(report.files_adopted, 1);
            assert!(!cut.exists());
            if index_lost {
                assert_eq!(
                    report.files_damaged, 1,
                    "in doubt, the cut file is kept aside"
                );
            } else {
                assert_eq!(report.partial_files_removed, 1);
                assert_eq!(report.files_damaged, 0);
            }
            let entry = queue.next_batch(0, Lane::Small, 1, 1).unwrap().remove(0);
            assert_eq!(entry.record.sop_instance_uid, "1.2.3.1");
            assert_eq!(entry.record.pending, ["a", "b"]);
            assert_eq!(
                queue.standing(&key, US).unwrap(),
                Standing::Stored {
                    awaiting: vec!["a".into(), "b".into()]
                },
                "the ledger entry comes back with the file"
            );
            queue.complete(0, entry.id).unwrap();
            queue.complete(1, entry.id).unwrap();
            assert_eq!(
                queue.standing(&key, US).unwrap(),
                Standing::Stored { awaiting: vec![] }
            );
            assert!(!entry.path.exists());
        }
    }

    #[test]
    fn batches_respect_count_and_bytes_and_lanes_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
        for i in 0..5 {
            enqueue(&queue, &format!("1.2.3.{i}"));
        }
        let size = queue.next_batch(0, Lane::Small, 1, u64::MAX).unwrap()[0]
            .record
            .size;
        assert_eq!(
            queue.next_batch(0, Lane::Small, 3, u64::MAX).unwrap().len(),
            3
        );
        assert_eq!(
            queue
                .next_batch(0, Lane::Small, 10, 2 * size)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            queue.next_batch(0, Lane::Small, 10, 1).unwrap().len(),
            1,
            "at least one"
        );
        assert!(
            queue
                .next_batch(0, Lane::Large, 10, u64::MAX)
                .unwrap()
                .is_empty()
        );
        assert_eq!(Lane::of(LARGE_INSTANCE_BYTES), Lane::Large);
        assert_eq!(Lane::of(LARGE_INSTANCE_BYTES - 1), Lane::Small);
    }

    #[test]
    fn quarantine_keeps_the_file_survives_restart_and_can_be_retried() {
        let dir = tempfile::tempdir().unwrap();
        let entry = {
            let (queue, _) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
            enqueue(&queue, "1.2.3.1");
            enqueue(&queue, "1.2.3.2");
            let entry = queue
                .next_batch(0, Lane::Small, 1, u64::MAX)
                .unwrap()
                .remove(0);
            queue.quarantine(0, &entry, "server said 400").unwrap();
            queue.complete(1, entry.id).unwrap();
            assert_eq!(queue.stats()[0].1.quarantined, 1);
            assert_eq!(
                queue.next_batch(0, Lane::Small, 8, u64::MAX).unwrap().len(),
                1
            );
            entry
        };
        assert!(
            entry.path.exists(),
            "quarantined instances stay on the card"
        );
        let (queue, report) = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
        assert_eq!(report.quarantined, 1);
        assert_eq!(queue.stats()[0].1.quarantined, 1);
        assert_eq!(
            queue.next_batch(0, Lane::Small, 8, u64::MAX).unwrap().len(),
            1
        );
        assert_eq!(queue.retry_quarantine(Some("b")).unwrap(), 0);
        assert_eq!(queue.retry_quarantine(None).unwrap(), 1);
        assert_eq!(queue.stats()[0].1.quarantined, 0);
        assert_eq!(
            queue.next_batch(0, Lane::Small, 8, u64::MAX).unwrap().len(),
            2
        );
        queue.complete(0, entry.id).unwrap();
        assert!(!entry.path.exists(), "delivered everywhere at last");
    }

    #[test]
    fn a_second_agent_on_the_same_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Queue::open(dir.path(), &two_destinations(), 0).unwrap();
        let second = Queue::open(dir.path(), &two_destinations(), 0);
        assert!(matches!(second, Err(QueueError::Locked(_))));
    }

    #[test]
    fn the_free_space_floor_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = Queue::open(dir.path(), &two_destinations(), u64::MAX).unwrap();
        assert!(!queue.has_room().unwrap());
        let (queue, _) = {
            drop(queue);
            Queue::open(dir.path(), &two_destinations(), 0).unwrap()
        };
        assert!(queue.has_room().unwrap());
    }
}
