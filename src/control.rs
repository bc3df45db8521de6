//! Requests from the command line to the running agent. Today one:
//! `uplink retry-quarantine`, which puts instances a destination's server refused
//! back in its queue (after the cause was fixed on the server side, say).
//!
//! The running agent holds the queue, so the command leaves it a request file in the
//! data dir and waits for the answer; with no agent running it opens the queue itself.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::queue::{Queue, QueueError};

const REQUEST: &str = "retry-quarantine.request";
const ANSWER: &str = "retry-quarantine.answer";
/// The agent looks for requests about once a second.
const WAIT: Duration = Duration::from_secs(15);

/// Re-queues the quarantine of `only` (every destination when `None`).
pub fn retry(config: &Config, only: Option<&str>) -> Result<u64, String> {
    if let Some(name) = only {
        if !config.destinations.iter().any(|d| d.name.as_str() == name) {
            return Err(format!(
                "no destination named \"{name}\" in the configuration"
            ));
        }
    }
    let data_dir = &config.storage.data_dir;
    let destinations: Vec<_> = config
        .destinations
        .iter()
        .map(|d| (d.name.to_string(), d.profile))
        .collect();
    match Queue::open(data_dir, &destinations, 0) {
        Ok((queue, _)) => queue.retry_quarantine(only).map_err(|e| e.to_string()),
        Err(QueueError::Locked(_)) => ask_agent(data_dir, only),
        Err(e) => Err(format!(
            "cannot open the queue in {}: {e}",
            data_dir.display()
        )),
    }
}

fn ask_agent(data_dir: &Path, only: Option<&str>) -> Result<u64, String> {
    let _ = fs::remove_file(data_dir.join(ANSWER));
    fs::write(data_dir.join(REQUEST), only.unwrap_or_default())
        .map_err(|e| format!("cannot leave a request in {}: {e}", data_dir.display()))?;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(answer) = fs::read_to_string(data_dir.join(ANSWER)) {
            let _ = fs::remove_file(data_dir.join(ANSWER));
            return answer
                .trim()
                .parse()
                .map_err(|_| format!("the agent answered: {answer}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = fs::remove_file(data_dir.join(REQUEST));
    Err("the running agent did not answer within 15 s; see its log".into())
}

/// The agent's side: serves a pending request, if any.
pub fn serve_request(data_dir: &Path, queue: &Queue) {
    let Ok(only) = fs::read_to_string(data_dir.join(REQUEST)) else {
        return;
    };
    let _ = fs::remove_file(data_dir.join(REQUEST));
    let only = only.trim();
    let answer = match queue.retry_quarantine((!only.is_empty()).then_some(only)) {
        Ok(n) => {
            log::info!("retry-quarantine: {n} instance(s) back in the queue");
            n.to_string()
        }
        Err(e) => {
            log::error!("retry-quarantine failed: {e}");
            e.to_string()
        }
    };
    if let Err(e) = fs::write(data_dir.join(ANSWER), answer) {
        log::error!("cannot answer retry-quarantine: {e}");
    }
}
