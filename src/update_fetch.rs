//! The agent's side of `[update] url`: a minute after start, then every `interval_secs`
//! it asks the update server for the bundle, with the entity tag of the last one
//! it fetched, so an unchanged bundle costs one small request. A new one is
//! streamed to the data dir (never held in memory), flushed and renamed into
//! place; `uplink-update.service` (root) installs it, since the agent itself cannot
//! write a root slot. A failed check is logged and tried again at the next
//! interval; it never holds back receiving or uploads.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::config::UpdateSource;
use crate::device::update::DOWNLOADED_BUNDLE;
use crate::queue::spool::available_bytes;
use crate::shutdown::{Stop, pause};
use crate::upload::stow::Client;

/// The first check waits this long after start: the box has exams to take first.
const FIRST_CHECK: Duration = Duration::from_secs(60);
/// A bundle (squashfs) starts with these bytes; a captive portal's page does not.
const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
/// No bundle is larger: a server sending more is not sending a bundle.
const MAX_BUNDLE_BYTES: u64 = 4 << 30;
/// The free space is looked at again after this much of a download.
const SPACE_CHECK_BYTES: u64 = 64 << 20;

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    Unchanged,
    /// A new bundle of this many bytes waits for `uplink-update.service`.
    Downloaded(u64),
    /// The last download is not installed yet.
    Waiting,
}

/// Checks for updates until the agent stops.
pub async fn run(source: UpdateSource, data_dir: std::path::PathBuf, floor: u64, stop: Stop) {
    let client = match Client::new(&source.server, &source.server.url.to_string()) {
        Ok(client) => std::sync::Arc::new(client),
        Err(e) => {
            log::error!("[update]: {e}; the box will not look for updates");
            return;
        }
    };
    log::info!(
        "looking for updates at {} every {} s",
        source.server.url,
        source.interval_secs.0
    );
    pause(&stop, FIRST_CHECK).await;
    while !stop.is_closed() {
        let (client, dir) = (client.clone(), data_dir.clone());
        match smol::unblock(move || check(&client, &dir, floor)).await {
            Ok(Checked::Downloaded(bytes)) => {
                log::info!(
                    "update bundle downloaded ({bytes} bytes): it is checked and installed next"
                )
            }
            Ok(Checked::Unchanged) => log::debug!("update bundle unchanged"),
            Ok(Checked::Waiting) => {
                log::info!("the downloaded update bundle still waits to be installed")
            }
            Err(e) => log::warn!(
                "update check failed: {e}; trying again in {} s",
                source.interval_secs.0
            ),
        }
        pause(&stop, Duration::from_secs(source.interval_secs.0)).await;
    }
}

/// One check; keeps `floor` bytes free on the data partition for exams.
pub fn check(client: &Client, data_dir: &Path, floor: u64) -> Result<Checked, String> {
    let bundle = data_dir.join(DOWNLOADED_BUNDLE);
    let dir = bundle.parent().expect("the bundle lives in a folder");
    if bundle.exists() {
        return Ok(Checked::Waiting);
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let etag_file = dir.join("etag");
    let etag = fs::read_to_string(&etag_file).ok();
    let Some(response) = client.fetch(etag.as_deref())? else {
        return Ok(Checked::Unchanged);
    };
    let new_etag = response
        .headers()
        .get("ETag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let length = response
        .headers()
        .get("Content-Length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let free = available_bytes(dir).map_err(|e| format!("cannot see the free space: {e}"))?;
    if length.is_some_and(|l| l.saturating_add(floor) > free) {
        return Err(format!(
            "the bundle ({} bytes) does not fit beside the room kept for exams ({free} bytes free): exams come first",
            length.unwrap_or(0)
        ));
    }
    let part = dir.join("bundle.part");
    let written = save(response.into_body().into_reader(), &part, dir, floor);
    let bytes = match written {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = fs::remove_file(&part);
            return Err(e);
        }
    };
    fs::rename(&part, &bundle).map_err(|e| format!("cannot rename the download: {e}"))?;
    if let Some(tag) = new_etag {
        let _ = fs::write(&etag_file, tag);
    }
    Ok(Checked::Downloaded(bytes))
}

/// Streams the body to `part` and flushes it; refuses what is not a bundle.
fn save(mut body: impl Read, part: &Path, dir: &Path, floor: u64) -> Result<u64, String> {
    let io = |e: std::io::Error| format!("cannot write {}: {e}", part.display());
    let mut magic = [0u8; 4];
    if body.read_exact(&mut magic).is_err() || &magic != SQUASHFS_MAGIC {
        return Err(
            "the update URL answered with something that is not an update bundle (a captive portal's or proxy's page?)"
                .into(),
        );
    }
    let mut file = fs::File::create(part).map_err(io)?;
    file.write_all(&magic).map_err(io)?;
    let mut buffer = vec![0u8; 256 * 1024];
    let (mut total, mut since_check) = (magic.len() as u64, 0u64);
    loop {
        let n = body
            .read(&mut buffer)
            .map_err(|e| format!("the download broke off: {e}"))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        since_check += n as u64;
        if total > MAX_BUNDLE_BYTES {
            return Err(format!(
                "the update URL sends more than {MAX_BUNDLE_BYTES} bytes: not a bundle"
            ));
        }
        if since_check >= SPACE_CHECK_BYTES {
            since_check = 0;
            if available_bytes(dir).map_err(io)? < floor {
                return Err(
                    "the data partition is filling up: the download stops, exams come first".into(),
                );
            }
        }
        file.write_all(&buffer[..n]).map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    Ok(total)
}
