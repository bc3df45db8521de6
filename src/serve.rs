//! `uplink serve`: wires receive → queue → upload together and runs until SIGTERM
//! or SIGINT, then shuts down cleanly (exit 0, nothing acknowledged lost).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_signal::{Signal, Signals};
use smol::stream::StreamExt;

use crate::anonymize::{Anonymizer, DeviceKey, PasswordBook};
use crate::backlog;
use crate::config::{Config, Source};
use crate::device::clock::Clock;
use crate::device::leds::{self, LEDS, Lights};
use crate::device::systemd as service;
use crate::heartbeat::Heartbeat;
use crate::queue::{Misrouted, Queue};
use crate::receive::commitment::Commitments;
use crate::receive::{Listener, association::Shared};
use crate::shutdown::{Stop, pause};
use crate::status::counters::{Board, now_rfc3339};
use crate::status::{DestinationInfo, ListenerInfo, Snapshot, StorageInfo};
use crate::upload;

/// How often the status file is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How long stopping waits for a storage commitment report under way.
const REPORT_STOP_GRACE: Duration = Duration::from_secs(3);
/// The LED panel's clock: 8 ticks a second.
const LED_TICK: Duration = Duration::from_millis(125);
/// How often the heartbeat task looks whether one is due (a change goes out
/// within this much).
const HEARTBEAT_TICK: Duration = Duration::from_secs(2);

/// Runs the agent. Errors are start-up failures, worded for the person starting it.
pub fn run(config: Config, source: Source, lights: Option<Box<dyn Lights>>) -> Result<(), String> {
    log::info!(
        "uplink {} starting; configuration: {source}",
        env!("CARGO_PKG_VERSION")
    );
    let data_dir = open_data_dir(&config)?;
    let (queue, misrouted) = open_queue(&config, &data_dir)?;
    log_destinations(&config);
    let key = DeviceKey::load_or_create(&data_dir)
        .map_err(|e| format!("cannot load the device key in {}: {e}", data_dir.display()))?;
    let key = Arc::new(key);
    let anonymizer = Anonymizer::new(
        key.clone(),
        config.strict.clone(),
        config.typical.document_password,
        PasswordBook::new(&data_dir),
        &config.pixel_rules,
    )
    .writing_explicit_vr(config.explicit_vr_profiles());
    let provisioning = crate::device::provision::refused_reason(&config.storage.data_dir);
    if let Some(reason) = &provisioning {
        log::error!("{reason}");
    }
    let queue = Arc::new(queue);
    let commitments = Commitments::open(queue.clone(), key.clone(), &config)
        .map_err(|e| format!("cannot open the storage commitment requests: {e}"))?;
    let trail = crate::audit::Trail::open(&data_dir)
        .map_err(|e| format!("cannot open the audit trail in {}: {e}", data_dir.display()))?;
    let agent = Agent {
        board: Arc::new(Board::with_trail(trail)),
        started: now_rfc3339(),
        queue,
        commitments: Arc::new(commitments),
        key,
        provisioning,
        update: std::sync::Mutex::new(crate::device::update::info(&data_dir)),
        name: crate::web::announced_name(),
        data_dir,
        config,
    };
    let listener = agent.bind(anonymizer.clone())?;
    let signals = Signals::new([Signal::Term, Signal::Int])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    service::ready(&format!(
        "listening on {} as {}",
        listener.local_addr().map_err(|e| e.to_string())?,
        agent.config.listener.ae_title
    ));
    smol::block_on(agent.serve(listener, signals, anonymizer, misrouted, lights));
    agent.stop()
}

/// Creates the data dir (durably) and says where it is.
fn open_data_dir(config: &Config) -> Result<PathBuf, String> {
    let data_dir = config.storage.data_dir.clone();
    crate::queue::spool::create_dir_durable(&data_dir).map_err(|e| {
        format!(
            "cannot create data dir {}: {e} (set [storage] data_dir)",
            data_dir.display()
        )
    })?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    log::info!("data dir {} (spool, queue, status)", data_dir.display());
    Ok(data_dir)
}

/// Opens the queue and reports what start-up found; returns the backlog to
/// re-derive.
fn open_queue(config: &Config, data_dir: &Path) -> Result<(Queue, Vec<Misrouted>), String> {
    let destinations: Vec<_> = config
        .destinations
        .iter()
        .map(|d| (d.name.to_string(), d.profile))
        .collect();
    let (queue, reconciled) = Queue::open(
        data_dir,
        &destinations,
        config.storage.min_free_mib * 1024 * 1024,
    )
    .map_err(|e| format!("cannot open the queue in {}: {e}", data_dir.display()))?;
    log::info!(
        "queue: {} instance(s) pending; start-up removed {} partial file(s), {} record(s) without file, {} delivered file(s); adopted {} file(s), set {} damaged file(s) aside{}",
        reconciled.queued,
        reconciled.partial_files_removed,
        reconciled.records_without_file,
        reconciled.delivered_files_removed,
        reconciled.files_adopted,
        reconciled.files_damaged,
        if reconciled.index_rebuilt {
            " (index rebuilt from the spool)"
        } else {
            ""
        },
    );
    for (name, count) in queue.orphaned() {
        log::warn!(
            "{count} instance(s) wait for destination \"{name}\", which is no longer configured; they are kept: \
             with the agent stopped, `uplink backlog --drop {name}` removes them, `uplink backlog --reassign {name}=NEW` gives them to destination NEW"
        );
    }
    if reconciled.files_without_destination > 0 {
        log::warn!(
            "{} spool file(s) are kept for a profile no destination uses now; configure one to deliver them",
            reconciled.files_without_destination
        );
    }
    Ok((queue, reconciled.misrouted))
}

fn log_destinations(config: &Config) {
    for d in &config.destinations {
        log::info!("destination {}: {} (profile {})", d.name, d.url, d.profile);
        if let (crate::config::DestinationUrl::Dicomweb(_), Some((proxy, no_proxy))) =
            (&d.url, d.effective_proxy())
        {
            log::info!(
                "destination {}: through proxy {proxy}{}",
                d.name,
                match no_proxy.is_empty() {
                    true => String::new(),
                    false => format!(" (not for {})", no_proxy.join(", ")),
                }
            );
        }
        if d.insecure {
            log::warn!(
                "destination {}: insecure = true, uploads are NOT encrypted; use this only in a lab",
                d.name
            );
        }
    }
}

/// The running agent: what its tasks share.
struct Agent {
    config: Config,
    data_dir: PathBuf,
    queue: Arc<Queue>,
    commitments: Arc<Commitments>,
    key: Arc<DeviceKey>,
    board: Arc<Board>,
    started: String,
    /// Why the card's configuration was refused, if it was.
    provisioning: Option<String>,
    /// The system and its last update, as `update.json` said at the last status
    /// tick (root writes it at boot and install; the LED tick must not read it).
    update: std::sync::Mutex<crate::status::UpdateInfo>,
    /// The name the box announces on the network (the page shows it).
    name: String,
}

impl Agent {
    /// Binds the DICOM listener (over TLS where the card says so).
    fn bind(&self, anonymizer: Anonymizer) -> Result<Listener, String> {
        let tls = crate::tls_identity::server_config(&self.config.listener.tls_files())?;
        if tls.is_some() {
            log::info!("DICOM listener speaks TLS only");
        }
        let listener = Listener::bind(Shared {
            listener: self.config.listener.clone(),
            tls,
            queue: self.queue.clone(),
            board: self.board.clone(),
            anonymizer,
            key: self.key.clone(),
            commitments: self.commitments.clone(),
        })
        .map_err(|e| e.to_string())?;
        log::info!(
            "listening for DICOM on {} as AE title {}; exams are stored, queued and delivered to {} destination(s)",
            listener.local_addr().map_err(|e| e.to_string())?,
            self.config.listener.ae_title,
            self.config.destinations.len()
        );
        Ok(listener)
    }

    /// Receives, uploads, reports and lights the LEDs until SIGTERM or SIGINT;
    /// then lets what is under way finish.
    async fn serve(
        &self,
        listener: Listener,
        signals: Signals,
        anonymizer: Anonymizer,
        misrouted: Vec<Misrouted>,
        lights: Option<Box<dyn Lights>>,
    ) {
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let signal_task = smol::spawn(async move {
            let mut signals = signals;
            if let Some(Ok(signal)) = signals.next().await {
                log::info!("{signal:?} received: shutting down");
            }
            stop_tx.close();
        });
        let rederive = {
            let (queue, board) = (self.queue.clone(), self.board.clone());
            smol::unblock(move || backlog::rederive_all(&queue, &anonymizer, &board, misrouted))
        };
        let workers: Vec<_> = self
            .config
            .destinations
            .iter()
            .enumerate()
            .map(|(index, d)| {
                smol::spawn(upload::run(
                    index,
                    d.clone(),
                    self.queue.clone(),
                    self.board.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        let reporting = smol::spawn(self.commitments.clone().run(
            self.config.listener.ae_title.to_string(),
            self.config.modalities.clone(),
            stop_rx.clone(),
        ));
        let updating = self.config.update.clone().map(|source| {
            let floor = self.config.storage.min_free_mib * 1024 * 1024;
            smol::spawn(crate::update_fetch::run(
                source,
                self.data_dir.clone(),
                floor,
                stop_rx.clone(),
            ))
        });
        let stop = stop_rx.clone();
        let listening = listener.run(async move {
            let _ = stop.recv().await;
            service::stopping();
        });
        smol::future::zip(
            smol::future::zip(
                smol::future::zip(listening, self.report_status(&stop_rx)),
                smol::future::zip(self.watchdog(&stop_rx), self.light(&stop_rx, lights)),
            ),
            smol::future::zip(self.beat(&stop_rx), self.page(&stop_rx)),
        )
        .await;
        rederive.await;
        // A report under way to an unreachable machine may take its whole timeout:
        // it is not waited for past a moment (its request stays stored, and is sent
        // again after the restart).
        smol::future::or(reporting, async {
            smol::Timer::after(REPORT_STOP_GRACE).await;
        })
        .await;
        for worker in workers {
            worker.await;
        }
        // A download under way is dropped; the next start fetches it again.
        if let Some(updating) = updating {
            updating.cancel().await;
        }
        signal_task.cancel().await;
    }

    /// After the tasks ended: the queue flushed, the last status written.
    fn stop(&self) -> Result<(), String> {
        self.queue
            .flush()
            .map_err(|e| format!("cannot flush the queue: {e}"))?;
        self.board.sync_trail();
        if let Err(e) = self.snapshot(false).write(&self.data_dir) {
            log::warn!("cannot write status file: {e}");
        }
        log::info!("stopped cleanly");
        Ok(())
    }

    fn snapshot(&self, running: bool) -> Snapshot {
        let mut snapshot = snapshot(
            &self.config,
            &self.queue,
            &self.board,
            &self.started,
            running,
        );
        snapshot.name = self.name.clone();
        snapshot.provisioning = self.provisioning.clone();
        snapshot.update = self.update.lock().expect("update info lock").clone();
        snapshot.commitments = self.commitments.stats();
        snapshot
    }

    /// Writes `status.json` when something changed (and tells systemd), and
    /// answers `retry-quarantine` requests.
    async fn report_status(&self, stop: &Stop) {
        let mut last = None;
        while !stop.is_closed() {
            crate::control::serve_request(&self.data_dir, &self.queue);
            self.board.sync_trail();
            *self.update.lock().expect("update info lock") =
                crate::device::update::info(&self.data_dir);
            let current = self.snapshot(true);
            if last.as_ref().is_none_or(|l: &Snapshot| {
                l.counters != current.counters
                    || l.destinations != current.destinations
                    || l.commitments != current.commitments
                    || l.update != current.update
            }) {
                if current.update.needs_a_person()
                    && last
                        .as_ref()
                        .is_none_or(|l| l.update.last != current.update.last)
                {
                    let said = current.update.last.as_ref().map(|o| o.describe());
                    log::error!("{}", said.unwrap_or_default());
                }
                if let Err(e) = current.write(&self.data_dir) {
                    log::warn!("cannot write status file: {e}");
                }
                service::status(&current.summary());
                last = Some(current);
            }
            pause(stop, STATUS_INTERVAL).await;
        }
    }

    /// Sends the `[heartbeat]` when one is due (`heartbeat.rs`), off the executor.
    async fn beat(&self, stop: &Stop) {
        let Some(target) = &self.config.heartbeat else {
            return;
        };
        let box_id = self.key.box_id();
        let mut heartbeat = match Heartbeat::new(target, box_id.clone()) {
            Ok(heartbeat) => heartbeat,
            Err(e) => {
                log::error!("[heartbeat]: {e}; the box sends no heartbeat");
                return;
            }
        };
        log::info!(
            "heartbeat to {} every {} s and at each change, as box {}",
            target.server.url,
            target.interval_secs.0,
            box_id
        );
        while !stop.is_closed() {
            let snapshot = self.snapshot(true);
            if let Some(reason) = heartbeat.due(&snapshot) {
                let (sent, back) = smol::unblock(move || {
                    let sent = heartbeat.send(&snapshot, reason);
                    (sent, heartbeat)
                })
                .await;
                heartbeat = back;
                if let Err(e) = sent {
                    log::warn!("heartbeat ({reason}) not delivered: {e}");
                }
            }
            pause(stop, HEARTBEAT_TICK).await;
        }
    }

    /// Serves the technician's page (`[web]`, `web.rs`). A port it cannot have
    /// costs the page, never the exams.
    async fn page(&self, stop: &Stop) {
        let Some(web) = &self.config.web else {
            return;
        };
        let listener = match crate::web::bind(web) {
            Ok(listener) => listener,
            Err(e) => {
                log::error!("{e}; the box serves no page");
                return;
            }
        };
        log::info!(
            "status page on port {} (http://{}{}){}",
            web.port.0,
            self.name,
            match web.port.0 {
                80 => String::new(),
                port => format!(":{port}"),
            },
            match web.token {
                Some(_) => ", with its access token",
                None => "",
            }
        );
        crate::web::serve(listener, web, self, stop).await;
    }

    /// Pings the systemd watchdog while this executor runs and the queue answers.
    async fn watchdog(&self, stop: &Stop) {
        let Some(interval) = service::watchdog_interval() else {
            return;
        };
        while !stop.is_closed() {
            let queue = self.queue.clone();
            let answered = smol::future::or(
                async {
                    smol::unblock(move || queue.stats()).await;
                    true
                },
                async {
                    smol::Timer::after(interval).await;
                    false
                },
            )
            .await;
            if answered {
                service::alive();
            } else {
                log::error!(
                    "the queue did not answer within {}s: not telling the watchdog all is well",
                    interval.as_secs()
                );
            }
            pause(stop, interval).await;
        }
    }

    /// Drives the LED panel from the same snapshot as `status`.
    async fn light(&self, stop: &Stop, lights: Option<Box<dyn Lights>>) {
        let Some(mut lights) = lights else { return };
        let mut received = 0;
        let mut tick = 0u64;
        while !stop.is_closed() {
            let current = self.snapshot(true);
            let panel = leds::panel(&current, received, self.config.provisioned);
            received = current.counters.instances_received;
            for (led, pattern) in LEDS.iter().zip(panel.0) {
                if let Err(e) = lights.set(*led, leds::lit(pattern, tick)) {
                    log::warn!("LED panel failed, turning it off: {e}");
                    return;
                }
            }
            tick += 1;
            pause(stop, LED_TICK).await;
        }
    }
}

impl crate::web::Source for Agent {
    fn page(&self, query: &str) -> String {
        let snapshot = self.snapshot(true);
        let provisioned = self.config.provisioned;
        let context = crate::status::page::Context {
            // The activity LED flashes for a moment; the page shows it resting.
            panel: leds::panel(&snapshot, snapshot.counters.instances_received, provisioned),
            provisioned,
            query,
        };
        crate::status::page::render(&snapshot, &context)
    }

    fn status_json(&self) -> String {
        serde_json::to_string_pretty(&self.snapshot(true)).unwrap_or_default()
    }

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

fn snapshot(
    config: &Config,
    queue: &Queue,
    board: &Board,
    started: &str,
    running: bool,
) -> Snapshot {
    let counters = board.counters();
    let destinations = config
        .destinations
        .iter()
        .zip(queue.stats())
        .map(|(d, (_, stats))| {
            let mut activity = counters
                .destinations
                .get(d.name.as_str())
                .cloned()
                .unwrap_or_default();
            if activity.state.is_empty() {
                activity.state = "ready".into();
            }
            DestinationInfo {
                name: d.name.to_string(),
                url: d.url.to_string(),
                profile: d.profile.to_string(),
                queue: stats,
                activity,
            }
        })
        .collect();
    Snapshot {
        version: env!("CARGO_PKG_VERSION").into(),
        name: String::new(),
        pid: std::process::id(),
        started: started.to_owned(),
        updated: now_rfc3339(),
        running,
        listener: ListenerInfo {
            port: config.listener.port.0,
            ae_title: config.listener.ae_title.to_string(),
        },
        counters,
        destinations,
        clock: Clock::now(),
        provisioning: None,
        damaged: queue.damaged().into(),
        orphaned: queue.orphaned().clone(),
        commitments: Default::default(),
        update: Default::default(),
        storage: storage(config),
    }
}

fn storage(config: &Config) -> StorageInfo {
    let space = crate::queue::spool::space(&config.storage.data_dir).ok();
    StorageInfo {
        free_bytes: space.map(|(free, _)| free),
        total_bytes: space.map(|(_, total)| total),
        floor_bytes: config.storage.min_free_mib * 1024 * 1024,
    }
}
