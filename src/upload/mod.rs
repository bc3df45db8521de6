//! Upload: workers drain the queue into each destination, oldest first.
//!
//! Each destination has two workers, one per lane of the queue: small instances go
//! in batches, large ones one at a time, side by side, so a gigabyte clip on a slow
//! line never holds the day's small images behind it (a size-aware single queue
//! would still have to wait for the clip's request to finish). Both workers share
//! the destination's health: when it is unreachable they back off together
//! (exponential, with jitter, Retry-After respected) and probe cheaply before
//! sending again; when it refuses our credentials they stop and retry rarely. An
//! instance the destination refuses for good goes to quarantine and the rest go on.

mod backoff;
mod body;
mod diagnose;
pub mod outbox;
pub mod stow;
mod token;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::{Line, Step};
use crate::config::{Destination, DestinationUrl};
use crate::device::clock::Clock;
use crate::queue::{Completed, Entry, Lane, Queue};
use crate::shutdown::{Stop, pause};
use crate::status::counters::{Board, Event};
use backoff::Backoff;

/// Small instances sent together in one request, at most this many bytes.
const BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// How long a destination that refused our credentials waits before trying again.
const AUTH_RETRY: Duration = Duration::from_secs(600);
/// How often HTTPS looks again whether the clock has been set.
const CLOCK_RETRY: Duration = Duration::from_secs(30);
/// First wait after a failure.
const BACKOFF_START: Duration = Duration::from_secs(1);

/// What a destination said of one instance it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored, with the server's warning if it gave one.
    Stored(Option<String>),
    /// Refused for good: quarantine it.
    Refused(String),
    /// Not taken this time: send it again later.
    Retry(String),
}

/// Why a request as a whole failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Unreachable, timed out, overloaded: try again later.
    Unavailable {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Credentials refused.
    Auth(String),
    /// The request was refused as such; with one instance in it, that instance is at fault.
    Refused(String),
}

impl Failure {
    /// What went wrong, in words.
    pub fn into_message(self) -> String {
        match self {
            Failure::Unavailable { error, .. } | Failure::Auth(error) | Failure::Refused(error) => {
                error
            }
        }
    }
}

/// Where a destination's instances go.
enum Target {
    Dir(PathBuf),
    Stow(Box<stow::Client>),
}

impl Target {
    fn new(destination: &Destination) -> Result<Target, String> {
        Ok(match &destination.url {
            DestinationUrl::Dir(dir) => Target::Dir(dir.clone()),
            DestinationUrl::Dicomweb(base) => {
                Target::Stow(Box::new(stow::Client::new(destination, base)?))
            }
        })
    }

    fn deliver(&self, batch: &[Entry], sent: Arc<AtomicU64>) -> Result<Vec<Verdict>, Failure> {
        match self {
            Target::Dir(dir) => {
                let mut verdicts = Vec::with_capacity(batch.len());
                for entry in batch {
                    match outbox::deliver(entry, dir) {
                        Ok(_) => {
                            sent.fetch_add(entry.record.size, std::sync::atomic::Ordering::Relaxed);
                            verdicts.push(Verdict::Stored(None));
                        }
                        Err(e) if verdicts.is_empty() => {
                            return Err(Failure::Unavailable {
                                error: format!("cannot write to {}: {e}", dir.display()),
                                retry_after: None,
                            });
                        }
                        Err(e) => verdicts.push(Verdict::Retry(format!(
                            "cannot write to {}: {e}",
                            dir.display()
                        ))),
                    }
                }
                Ok(verdicts)
            }
            Target::Stow(client) => client.store(batch, sent),
        }
    }

    /// Whether requests go over TLS, which needs a sane clock.
    fn uses_tls(&self) -> bool {
        matches!(self, Target::Stow(client) if client.uses_tls())
    }

    fn probe(&self) -> Result<(), Failure> {
        match self {
            Target::Dir(_) => Ok(()),
            Target::Stow(client) => client.probe(),
        }
    }
}

/// A destination's health, shared by its two lanes.
struct Health {
    /// No request before this instant.
    not_before: Instant,
    backoff: Backoff,
    /// The last request failed to reach the destination: probe before the next one.
    unreachable: bool,
}

/// Everything a lane worker needs.
struct Worker {
    index: usize,
    name: String,
    batch: usize,
    limits: Limits,
    target: Target,
    queue: Arc<Queue>,
    board: Arc<Board>,
    health: Mutex<Health>,
    stop: Stop,
}

/// Runs destination number `index` until `stop` closes. A request under way then
/// is finished first.
pub async fn run(
    index: usize,
    destination: Destination,
    queue: Arc<Queue>,
    board: Arc<Board>,
    stop: Stop,
) {
    let name = destination.name.to_string();
    let target = match Target::new(&destination) {
        Ok(target) => target,
        Err(error) => {
            log::error!(
                "destination {name} cannot start: {error}; its instances stay queued until the configuration is fixed"
            );
            board.record(Event::Misconfigured {
                destination: name,
                error,
            });
            return;
        }
    };
    let worker = Arc::new(Worker {
        index,
        name,
        batch: destination.max_instances_per_request.0 as usize,
        limits: Limits::of(&destination),
        target,
        queue,
        board,
        health: Mutex::new(Health {
            not_before: Instant::now(),
            backoff: Backoff::new(
                BACKOFF_START,
                Duration::from_secs(destination.retry_max_secs.0),
            ),
            unreachable: false,
        }),
        stop,
    });
    smol::future::zip(lane(worker.clone(), Lane::Small), lane(worker, Lane::Large)).await;
}

async fn lane(worker: Arc<Worker>, lane: Lane) {
    let (max_count, max_bytes) = match lane {
        Lane::Small => (
            worker.batch,
            worker.limits.batch_bytes(BATCH_BYTES, worker.batch),
        ),
        Lane::Large => (1, u64::MAX),
    };
    while !worker.stop.is_closed() {
        let wait = {
            let health = worker.health.lock().expect("health lock");
            health.not_before.saturating_duration_since(Instant::now())
        };
        if !wait.is_zero() {
            pause(&worker.stop, wait).await;
            continue;
        }
        let batch = {
            let worker = worker.clone();
            smol::unblock(move || {
                worker
                    .queue
                    .next_batch(worker.index, lane, max_count, max_bytes)
            })
            .await
        };
        match batch {
            Ok(batch) if batch.is_empty() => {
                smol::future::or(worker.queue.woken(worker.index, lane), async {
                    let _ = worker.stop.recv().await;
                })
                .await;
            }
            Ok(batch) => {
                let worker = worker.clone();
                smol::unblock(move || worker.send(lane, batch)).await;
            }
            Err(e) => {
                log::error!("{}: cannot read the queue: {e}", worker.name);
                pause(&worker.stop, Duration::from_secs(10)).await;
            }
        }
    }
}

/// What a destination takes in one request, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    request_bytes: Option<u64>,
    instance_bytes: Option<u64>,
}

/// What a multipart part adds to its file (boundary and headers), with room.
const PART_OVERHEAD: u64 = 512;

impl Limits {
    fn of(destination: &Destination) -> Limits {
        let mib = |n: u64| (n > 0).then(|| n * 1024 * 1024);
        Limits {
            request_bytes: mib(destination.max_request_mib),
            instance_bytes: mib(destination.max_instance_mib),
        }
    }

    /// The bytes a batch of up to `count` small instances may hold.
    fn batch_bytes(&self, default: u64, count: usize) -> u64 {
        self.request_bytes.map_or(default, |max| {
            default.min(max.saturating_sub(count as u64 * PART_OVERHEAD))
        })
    }

    /// Why the destination will never take an instance of `size` bytes, if so.
    fn refusal(&self, size: u64) -> Option<String> {
        let mib = |n: u64| n / (1024 * 1024);
        if let Some(max) = self.instance_bytes.filter(|max| size > *max) {
            return Some(format!(
                "{} MiB, larger than the {} MiB the destination takes per instance (max_instance_mib)",
                mib(size),
                mib(max)
            ));
        }
        self.request_bytes
            .filter(|max| size + PART_OVERHEAD > *max)
            .map(|max| {
                format!(
                    "{} MiB, larger than the {} MiB the destination takes per request (max_request_mib)",
                    mib(size),
                    mib(max)
                )
            })
    }
}

impl Worker {
    /// Sends one batch and records the outcome (runs on a blocking thread).
    fn send(&self, lane: Lane, mut batch: Vec<Entry>) {
        batch.retain(|entry| match self.limits.refusal(entry.record.size) {
            Some(reason) => {
                self.quarantine(entry, &reason);
                false
            }
            None => true,
        });
        if batch.is_empty() {
            return;
        }
        if self.target.uses_tls() && Clock::now().is_wrong() {
            self.health.lock().expect("health lock").not_before = Instant::now() + CLOCK_RETRY;
            self.board.record(Event::WaitingForClock {
                destination: self.name.clone(),
                retry_in: CLOCK_RETRY,
            });
            return;
        }
        if self.health.lock().expect("health lock").unreachable {
            match self.target.probe() {
                Ok(()) => {}
                Err(Failure::Auth(error)) => return self.auth_refused(error),
                Err(Failure::Unavailable { error, retry_after }) => {
                    return self.unavailable(error, retry_after);
                }
                Err(Failure::Refused(error)) => return self.unavailable(error, None),
            }
        }
        let lane_name = match lane {
            Lane::Small => "small",
            Lane::Large => "large",
        };
        let sent = Arc::new(AtomicU64::new(0));
        self.board.record(Event::UploadStarted {
            destination: self.name.clone(),
            lane: lane_name,
            instances: batch.len() as u64,
            bytes: batch.iter().map(|e| e.record.size).sum(),
            sent: sent.clone(),
        });
        let result = self.target.deliver(&batch, sent);
        self.board.record(Event::UploadFinished {
            destination: self.name.clone(),
            lane: lane_name,
        });
        match result {
            Ok(verdicts) => {
                let mut retry = None;
                for (entry, verdict) in batch.iter().zip(verdicts) {
                    match verdict {
                        Verdict::Stored(warning) => self.stored(entry, warning),
                        Verdict::Refused(reason) => self.quarantine(entry, &reason),
                        Verdict::Retry(reason) => retry = Some(reason),
                    }
                }
                match retry {
                    Some(error) => self.unavailable(error, None),
                    None => {
                        let mut health = self.health.lock().expect("health lock");
                        health.backoff.success();
                        health.unreachable = false;
                    }
                }
            }
            // Which instance of the batch is at fault? Send each alone to find out.
            Err(Failure::Refused(_)) if batch.len() > 1 => {
                for entry in batch {
                    self.send(lane, vec![entry]);
                }
            }
            Err(Failure::Refused(reason)) => self.quarantine(&batch[0], &reason),
            Err(Failure::Auth(error)) => self.auth_refused(error),
            Err(Failure::Unavailable { error, retry_after }) => {
                self.unavailable(error, retry_after)
            }
        }
    }

    fn stored(&self, entry: &Entry, warning: Option<String>) {
        match self.queue.complete(self.index, entry.id) {
            Ok(completed) => {
                let mut line =
                    Line::of_copy(Step::Delivered, entry).with("destination", &self.name);
                if let Some(warning) = &warning {
                    line = line.with("warning", warning);
                }
                self.board.audit(line);
                if completed == Completed::Deleted {
                    self.board.audit(Line::deleted(entry));
                }
                log::debug!("{}: delivered queue entry {}", self.name, entry.id);
                if let Some(warning) = &warning {
                    log::info!(
                        "{}: stored queue entry {} with warning {warning}",
                        self.name,
                        entry.id
                    );
                }
                self.board.record(Event::Delivered {
                    destination: self.name.clone(),
                    warning,
                });
            }
            // Delivered but not recorded: it will be sent again, which the
            // destination takes as the same instance.
            Err(e) => log::error!(
                "{}: delivered queue entry {} but cannot record it: {e}",
                self.name,
                entry.id
            ),
        }
    }

    fn quarantine(&self, entry: &Entry, reason: &str) {
        log::warn!(
            "{}: queue entry {} quarantined: {reason}",
            self.name,
            entry.id
        );
        self.board.audit(
            Line::of_copy(Step::RefusedByServer, entry)
                .with("destination", &self.name)
                .with("reason", reason),
        );
        if let Err(e) = self.queue.quarantine(self.index, entry, reason) {
            log::error!(
                "{}: cannot quarantine queue entry {}: {e}",
                self.name,
                entry.id
            );
        }
        self.board.record(Event::Quarantined {
            destination: self.name.clone(),
            reason: reason.to_owned(),
        });
    }

    fn auth_refused(&self, error: String) {
        log::error!(
            "{}: {error}; next try in {} min",
            self.name,
            AUTH_RETRY.as_secs() / 60
        );
        self.health.lock().expect("health lock").not_before = Instant::now() + AUTH_RETRY;
        self.board.record(Event::AuthRefused {
            destination: self.name.clone(),
            error,
            retry_in: AUTH_RETRY,
        });
    }

    fn unavailable(&self, error: String, retry_after: Option<Duration>) {
        let mut health = self.health.lock().expect("health lock");
        let wait = health.backoff.failure(retry_after);
        log::warn!(
            "{}: {error}; next try in {:.1}s",
            self.name,
            wait.as_secs_f64()
        );
        health.not_before = Instant::now() + wait;
        health.unreachable = true;
        self.board.record(Event::Unavailable {
            destination: self.name.clone(),
            error,
            retry_in: wait,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_keep_batches_inside_a_request_and_name_what_never_fits() {
        const MIB: u64 = 1024 * 1024;
        let limits = Limits {
            request_bytes: Some(10 * MIB),
            instance_bytes: Some(4 * MIB),
        };
        assert_eq!(
            limits.batch_bytes(16 * MIB, 8),
            10 * MIB - 8 * PART_OVERHEAD
        );
        assert_eq!(limits.refusal(4 * MIB), None);
        let told = limits.refusal(5 * MIB).unwrap();
        assert!(told.contains("max_instance_mib"), "{told}");
        let requests = Limits {
            request_bytes: Some(10 * MIB),
            instance_bytes: None,
        };
        assert!(
            requests
                .refusal(10 * MIB)
                .unwrap()
                .contains("max_request_mib")
        );
        assert_eq!(requests.refusal(9 * MIB), None);
        let none = Limits {
            request_bytes: None,
            instance_bytes: None,
        };
        assert_eq!(none.batch_bytes(16 * MIB, 8), 16 * MIB);
        assert_eq!(none.refusal(u64::MAX / 2), None);
    }
}
