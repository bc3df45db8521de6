//! Storage commitment, as the SCP of the Push Model (PS3.4 Annex J).
//!
//! Ultrasound machines ask, after sending an exam, whether the box takes
//! responsibility for it, and only then mark the exam archived. A request is stored
//! with the queue (durably, before the N-ACTION is answered), settled against the
//! ledger of acknowledged instances (`queue/ledger.rs`): at once under
//! `commit = "stored"`, once every destination has confirmed under `"delivered"`
//! (or the wait is over, and the rest is reported failed). The report goes on the
//! association that asked if the modality still holds it (`association.rs`), else
//! on a new association to the modality (`notify.rs`), retried with backoff until
//! it is answered; a restart loses nothing of this.

pub mod notify;
pub mod on_association;
pub mod request;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::anonymize::DeviceKey;
use crate::config::{Commit, Config, Modality};
use crate::queue::ledger::Standing;
use crate::queue::{Queue, QueueError, decode_id, unix_ms};
use crate::shutdown::{Stop, pause};
use crate::status::CommitmentInfo;
use request::{FailureReason, Report, Request};

/// How often the worker looks at what is pending, when nothing wakes it sooner (an
/// association ending with a report to send).
const TICK: Duration = Duration::from_secs(5);
/// How often the ledger's old entries are removed while the agent runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The first retry of an undelivered report, doubled at each failure up to
/// `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// A report nobody took for this long is dropped (and logged): the modality has
/// long since given up on it.
const GIVE_UP: Duration = Duration::from_secs(7 * 24 * 3600);

/// A request, as it is kept until its report is answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub request: Request,
    /// Who asked, and from where: where a report on a new association goes.
    pub calling_ae_title: String,
    pub peer_host: String,
    pub received_ms: u64,
    pub attempts: u32,
    pub next_attempt_ms: u64,
}

/// The storage commitment service.
pub struct Commitments {
    queue: Arc<Queue>,
    key: Arc<DeviceKey>,
    requests: sled::Tree,
    commit: Commit,
    wait: Duration,
    next_id: AtomicU64,
    /// Requests whose association is still open and may carry their report.
    held: Mutex<HashSet<u64>>,
    wake: (smol::channel::Sender<()>, smol::channel::Receiver<()>),
}

impl Commitments {
    pub fn open(
        queue: Arc<Queue>,
        key: Arc<DeviceKey>,
        config: &Config,
    ) -> Result<Commitments, QueueError> {
        let requests = queue.tree("commitments")?;
        let last = requests.last()?.map_or(0, |(k, _)| decode_id(&k));
        Ok(Commitments {
            queue,
            key,
            requests,
            commit: config.listener.commit,
            wait: Duration::from_secs(config.listener.commit_wait_secs.0),
            next_id: AtomicU64::new(last + 1),
            held: Mutex::new(HashSet::new()),
            wake: smol::channel::bounded(1),
        })
    }

    /// Stores a request durably; held by the association that made it until
    /// `Held` is dropped. After this, the N-ACTION may be answered Success.
    pub fn accept(
        self: &Arc<Self>,
        request: Request,
        calling_ae_title: &str,
        peer_host: &str,
    ) -> Result<Held, QueueError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = unix_ms();
        let pending = Pending {
            request,
            calling_ae_title: calling_ae_title.to_owned(),
            peer_host: peer_host.to_owned(),
            received_ms: now,
            attempts: 0,
            next_attempt_ms: now,
        };
        self.held.lock().expect("held lock").insert(id);
        let stored = self
            .requests
            .insert(id.to_be_bytes(), encode(&pending))
            .map_err(QueueError::from)
            .and_then(|_| self.queue.flush());
        if let Err(e) = stored {
            self.held.lock().expect("held lock").remove(&id);
            let _ = self.requests.remove(id.to_be_bytes());
            return Err(e);
        }
        log::info!(
            "storage commitment for {} instance(s) from {calling_ae_title} accepted",
            pending.request.references.len()
        );
        Ok(Held {
            id,
            commitments: self.clone(),
        })
    }

    /// The report of request `id`, if every instance it names is settled.
    pub fn report(&self, id: u64) -> Result<Option<Report>, QueueError> {
        match self.pending(id)? {
            Some(pending) => self.settle(&pending),
            None => Ok(None),
        }
    }

    /// The report was answered: the request is done.
    pub fn reported(&self, id: u64) -> Result<(), QueueError> {
        self.requests.remove(id.to_be_bytes())?;
        self.queue.flush()
    }

    /// Pending requests, for `status`.
    pub fn stats(&self) -> CommitmentInfo {
        let mut stats = CommitmentInfo::default();
        for (_, value) in self.requests.iter().flatten() {
            if let Some(pending) = decode(&value) {
                stats.pending += 1;
                let secs = age(&pending).as_secs();
                stats.oldest_pending_secs = stats.oldest_pending_secs.max(Some(secs));
            }
        }
        stats
    }

    fn pending(&self, id: u64) -> Result<Option<Pending>, QueueError> {
        Ok(self
            .requests
            .get(id.to_be_bytes())?
            .and_then(|v| decode(&v)))
    }

    /// Every instance committed or failed; `None` while one still waits for a
    /// destination under `commit = "delivered"`.
    fn settle(&self, pending: &Pending) -> Result<Option<Report>, QueueError> {
        let waited = age(pending);
        let mut report = Report {
            transaction_uid: pending.request.transaction_uid.clone(),
            committed: Vec::new(),
            failed: Vec::new(),
        };
        for reference in &pending.request.references {
            let key = self.key.ledger_key(&reference.sop_instance_uid);
            let failed = match self.queue.standing(&key, &reference.sop_class_uid)? {
                Standing::Unknown => Some(FailureReason::NoSuchObjectInstance),
                Standing::OtherClass => Some(FailureReason::ClassInstanceConflict),
                Standing::Stored { awaiting }
                    if self.commit == Commit::Delivered && !awaiting.is_empty() =>
                {
                    if waited < self.wait {
                        return Ok(None);
                    }
                    log::warn!(
                        "storage commitment from {}: an instance is not confirmed by {} after {}s (commit_wait_secs); reported as failed",
                        pending.calling_ae_title,
                        awaiting.join(", "),
                        self.wait.as_secs()
                    );
                    Some(FailureReason::ProcessingFailure)
                }
                Standing::Stored { .. } => None,
            };
            match failed {
                Some(reason) => report.failed.push((reference.clone(), reason)),
                None => report.committed.push(reference.clone()),
            }
        }
        Ok(Some(report))
    }

    /// Sends the reports no open association carries, on associations of their
    /// own, until `stop`.
    pub async fn run(self: Arc<Self>, our_ae_title: String, modalities: Vec<Modality>, stop: Stop) {
        let mut pruned = std::time::Instant::now();
        while !stop.is_closed() {
            if pruned.elapsed() >= PRUNE_EVERY {
                let queue = self.queue.clone();
                if let Err(e) = smol::unblock(move || queue.prune_ledger()).await {
                    log::error!("storage commitment: cannot prune the ledger: {e}");
                }
                pruned = std::time::Instant::now();
            }
            let due = self.due();
            for (id, pending) in due {
                if stop.is_closed() {
                    break;
                }
                let this = self.clone();
                let (ae, modalities) = (our_ae_title.clone(), modalities.clone());
                smol::unblock(move || this.deliver(id, pending, &ae, &modalities)).await;
            }
            smol::future::or(pause(&stop, TICK), async {
                let _ = self.wake.1.recv().await;
            })
            .await;
        }
    }

    /// Requests no association holds whose next attempt is due.
    fn due(&self) -> Vec<(u64, Pending)> {
        let now = unix_ms();
        let held = self.held.lock().expect("held lock").clone();
        self.requests
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((decode_id(&k), decode(&v)?)))
            .filter(|(id, p)| !held.contains(id) && p.next_attempt_ms <= now)
            .collect()
    }

    /// One attempt at a request's report on a new association.
    fn deliver(&self, id: u64, mut pending: Pending, our_ae_title: &str, modalities: &[Modality]) {
        let report = match self.settle(&pending) {
            Ok(Some(report)) => report,
            Ok(None) => return,
            Err(e) => {
                log::error!("storage commitment: cannot read the ledger: {e}");
                return;
            }
        };
        let target = notify::Target::of(&pending, modalities);
        let outcome = notify::send(&target, our_ae_title, &report);
        let done = match outcome {
            Ok(()) => {
                log::info!(
                    "storage commitment report ({} committed, {} failed) delivered to {} at {}",
                    report.committed.len(),
                    report.failed.len(),
                    target.ae_title,
                    target.address()
                );
                true
            }
            Err(e) if age(&pending) > GIVE_UP => {
                log::error!(
                    "storage commitment report for {} dropped after {} attempts over {} days: {e}",
                    target.ae_title,
                    pending.attempts + 1,
                    GIVE_UP.as_secs() / 86_400
                );
                true
            }
            Err(e) => {
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << pending.attempts.min(16))
                    .min(MAX_BACKOFF);
                log::warn!(
                    "storage commitment report to {} at {} not delivered ({e}); next attempt in {}s",
                    target.ae_title,
                    target.address(),
                    backoff.as_secs()
                );
                pending.attempts += 1;
                pending.next_attempt_ms = unix_ms() + backoff.as_millis() as u64;
                false
            }
        };
        let written = if done {
            self.reported(id)
        } else {
            self.requests
                .insert(id.to_be_bytes(), encode(&pending))
                .map(|_| ())
                .map_err(QueueError::from)
        };
        if let Err(e) = written {
            log::error!("storage commitment: cannot update a request: {e}");
        }
    }
}

/// A request its association may still answer; dropping it hands the report
/// to the worker.
pub struct Held {
    pub id: u64,
    commitments: Arc<Commitments>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.commitments
            .held
            .lock()
            .expect("held lock")
            .remove(&self.id);
        let _ = self.commitments.wake.0.try_send(());
    }
}

fn age(pending: &Pending) -> Duration {
    Duration::from_millis(unix_ms().saturating_sub(pending.received_ms))
}

fn encode(pending: &Pending) -> Vec<u8> {
    serde_json::to_vec(pending).expect("requests always serialize")
}

fn decode(bytes: &[u8]) -> Option<Pending> {
    serde_json::from_slice(bytes).ok()
}
