//! The health check at every boot of the box: is the agent up (ready, watchdog
//! pinged, queue open, a C-ECHO answered on loopback)? On the first boot of an
//! update it decides between the new slot and the old one; it exists apart from
//! `update` because it reads the agent's status and calls its listener.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, UserVariableItem};

use crate::config::Config;
use crate::device::update::{
    Outcome, Pending, Record, Running, Verdict, booted_slot, run, running_image,
};
use crate::receive::{calling, dimse};
use crate::standard::{IMPLEMENTATION_CLASS_UID, VERIFICATION};
use crate::status::Snapshot;

/// What a slot still marked "tried" at its next boot is taken to mean.
const NEVER_CHECKED: &str =
    "the new system did not come up far enough to check itself (it did not boot, or hung)";

/// At every boot: checks the agent (ready, watchdog pinged, queue open, C-ECHO
/// answered) for up to `within`, and settles a pending update. A new slot that
/// fails is marked bad and the box reboots into the old one; a slot that proved
/// itself before is kept whatever the check says (its agent's trouble is not the
/// slot's), so the box never falls back to an older system by mistake.
pub fn health(data_dir: &Path, within: Duration) -> Result<(), String> {
    let slot = booted_slot()?;
    let mut record = Record::read(data_dir);
    let checked = check(data_dir, within);
    record.running = Some(Running {
        slot: slot.clone(),
        image: running_image(),
    });
    match record.pending.take() {
        Some(pending) if pending.slot == slot => first_boot(data_dir, record, pending, checked),
        Some(pending) => {
            let why = pending.failed.unwrap_or_else(|| NEVER_CHECKED.into());
            let outcome = Outcome::now(Verdict::RolledBack, Some(pending.version), Some(why));
            log::error!("{}", outcome.describe());
            record.last = Some(outcome);
            if let Err(e) = run("rauc", &["status", "mark-bad", "other"]) {
                log::warn!("{e}");
            }
            settle_proven(&slot, checked);
            keep(record.write(data_dir))
        }
        None => {
            settle_proven(&slot, checked);
            keep(record.write(data_dir))
        }
    }
}

/// On a proven slot an error is logged, never the boot's failure.
fn keep(result: Result<(), String>) -> Result<(), String> {
    if let Err(e) = result {
        log::error!("{e}");
    }
    Ok(())
}

/// The first boot of an update: kept when it passes, else marked bad and left.
/// An error here (the check cannot even mark the slot) also ends in the reboot
/// (the unit's FailureAction), and GRUB, finding the slot tried, boots the old one.
fn first_boot(
    data_dir: &Path,
    mut record: Record,
    mut pending: Pending,
    checked: Result<(), String>,
) -> Result<(), String> {
    let slot = pending.slot.clone();
    let marked = checked.and_then(|()| run("rauc", &["status", "mark-good"]));
    match marked {
        Ok(_) => {
            log::info!(
                "health check passed: slot {slot} ({}) marked good",
                pending.version
            );
            record.last = Some(Outcome::now(Verdict::Updated, Some(pending.version), None));
            record.write(data_dir)
        }
        Err(why) => {
            log::error!(
                "health check of update {} failed: {why}; marking slot {slot} bad and booting the previous system",
                pending.version
            );
            pending.failed = Some(why);
            record.pending = Some(pending);
            record.write(data_dir)?;
            run("rauc", &["status", "mark-bad"])?;
            run("systemctl", &["reboot"]).map(drop)
        }
    }
}

/// A slot that booted before is kept whatever its check says (the agent's
/// trouble is not the slot's): marked good again, since GRUB counts it tried
/// otherwise. Nothing here fails the boot, so a proven slot never reboots in a loop.
fn settle_proven(slot: &str, checked: Result<(), String>) {
    match checked {
        Ok(()) => log::info!("health check passed on slot {slot}"),
        Err(why) => log::warn!("health check failed on slot {slot}: {why}; the slot is kept"),
    }
    if let Err(e) = run("rauc", &["status", "mark-good"]) {
        log::error!("{e}");
    }
}

/// Probes until one probe passes or `within` has passed; the error is the last
/// probe's.
fn check(data_dir: &Path, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match probe(data_dir) {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() >= deadline => {
                return Err(format!("{why} (checked for {} s)", within.as_secs()));
            }
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

fn probe(data_dir: &Path) -> Result<(), String> {
    let unit = "uplink.service";
    let state = run("systemctl", &["show", "-P", "ActiveState", unit])?;
    if state.trim() != "active" {
        return Err(format!(
            "the agent is not running ({unit} is {})",
            state.trim()
        ));
    }
    let main_pid = run("systemctl", &["show", "-P", "MainPID", unit])?;
    let pinged = run(
        "systemctl",
        &["show", "-P", "WatchdogTimestampMonotonic", unit],
    )?;
    if pinged.trim().parse::<u64>().unwrap_or(0) == 0 {
        return Err("the agent has not pinged its watchdog".into());
    }
    let snapshot = Snapshot::read(data_dir)?;
    if !snapshot.running || snapshot.pid.to_string() != main_pid.trim() {
        return Err("the agent has not opened its queue (no status from this run)".into());
    }
    let (config, _) = Config::load(None).map_err(|e| e.to_string())?;
    if config.listener.tls_files().certificate.is_some() {
        log::info!("the DICOM listener speaks TLS only: the health check skips its C-ECHO");
        return Ok(());
    }
    let address = SocketAddr::from(([127, 0, 0, 1], snapshot.listener.port));
    echo(address, &snapshot.listener.ae_title)
        .map_err(|e| format!("C-ECHO to {} on {address}: {e}", snapshot.listener.ae_title))
}

/// A C-ECHO to the agent's own listener.
fn echo(address: SocketAddr, ae_title: &str) -> Result<(), String> {
    let peer = "the agent";
    let request = AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "UPLINK_HEALTH".into(),
        called_ae_title: ae_title.into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: VERIFICATION.into(),
            transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
        }],
        user_variables: vec![
            UserVariableItem::MaxLength(calling::MAX_PDU),
            UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.into()),
        ],
    };
    let mut call = calling::associate(address, request, peer)?;
    let (context, max) = (call.context_id, call.peer_max_pdu);
    let sent = call
        .pdus
        .send_message(context, dimse::echo_rq(1), &[], max)
        .map_err(|e| format!("connection failed: {e}"));
    let status = sent.and_then(|()| call.answer(dimse::C_ECHO_RSP, peer));
    call.release();
    match status? {
        s if s.is_success() => Ok(()),
        s => Err(format!("answered with status {s}")),
    }
}
