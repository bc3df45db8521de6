//! Safe updates: a signed RAUC bundle goes into the root slot not running, the box
//! boots it once, and a health check keeps it or sends the box back to the old
//! slot. `update.json` in the data dir (on the data partition, which no slot owns)
//! records what is pending and how the last update went; `status`, the log and the
//! attention LED show it.
//!
//! The commands here run as root from systemd units (`uplink-update-usb@.service`,
//! `uplink-update.service`; the health check, `device::health`, from
//! `uplink-health.service`); the agent only reads the record. RAUC does the writing and the signature check; GRUB (board/grub/grub.cfg)
//! the slot choice.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::status::counters::now_rfc3339;

pub const RECORD_FILE: &str = "update.json";
/// The bundle a USB stick carries, at its top level.
pub const USB_BUNDLE: &str = "uplink-update.raucb";
/// Where the agent puts a bundle it downloaded (`[update] url`) for
/// `uplink-update.service` to install, in the data dir.
pub const DOWNLOADED_BUNDLE: &str = "update/bundle.raucb";
/// The image's version, written by board/build-image.sh.
const IMAGE_FILE: &str = "/etc/uplink-image";

/// `update.json`: the update waiting for its first boot, the last one's outcome,
/// and what runs now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub pending: Option<Pending>,
    pub last: Option<Outcome>,
    pub running: Option<Running>,
}

/// An installed bundle whose slot has not yet passed its health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub version: String,
    pub slot: String,
    pub installed: String,
    /// Why its health check failed, written before the box boots the old slot.
    pub failed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Updated,
    RolledBack,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub result: Verdict,
    pub version: Option<String>,
    pub at: String,
    pub reason: Option<String>,
}

impl Outcome {
    pub(crate) fn now(result: Verdict, version: Option<String>, reason: Option<String>) -> Outcome {
        Outcome {
            result,
            version,
            at: now_rfc3339(),
            reason,
        }
    }

    /// Whether a person should look: the box runs an older system than was sent,
    /// or a bundle was refused.
    pub fn needs_a_person(&self) -> bool {
        self.result != Verdict::Updated
    }

    pub fn describe(&self) -> String {
        let version = self.version.as_deref().unwrap_or("(unknown version)");
        let reason = self.reason.as_deref().unwrap_or("");
        match self.result {
            Verdict::Updated => format!("updated to {version} at {}", self.at),
            Verdict::RolledBack => format!(
                "the update to {version} was rolled back at {}: {reason}; the box runs its previous system",
                self.at
            ),
            Verdict::Refused => format!("a bundle was refused at {}: {reason}", self.at),
        }
    }
}

/// The slot and image version booted, as the last health check saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub slot: String,
    pub image: Option<String>,
}

impl Record {
    pub fn read(data_dir: &Path) -> Record {
        fs::read(data_dir.join(RECORD_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Written whole and flushed: a power cut leaves the old record or the new.
    pub(crate) fn write(&self, data_dir: &Path) -> Result<(), String> {
        let path = data_dir.join(RECORD_FILE);
        let tmp = data_dir.join(format!(".{RECORD_FILE}.tmp"));
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(data_dir)?.sync_all()
        })();
        written.map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// The image version of the running system, if it is a box image (read once:
/// another image means another boot).
pub fn running_image() -> Option<String> {
    static IMAGE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let text = fs::read_to_string(IMAGE_FILE).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("VERSION="))
                .map(str::to_owned)
        })
        .clone()
}

/// What `status` shows of the box's system.
pub fn info(data_dir: &Path) -> crate::status::UpdateInfo {
    let record = Record::read(data_dir);
    crate::status::UpdateInfo {
        image: running_image(),
        slot: record.running.map(|r| r.slot),
        pending: record.pending.map(|p| p.version),
        last: record.last,
    }
}

/// What an install did.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// Written to `slot`: the box must reboot into it.
    Reboot { version: String, slot: String },
    /// The bundle is the system already running.
    AlreadyRunning(String),
    /// The bundle was installed before and rolled back: a stick left in the box
    /// must not send it round again.
    RolledBackBefore(String),
}

/// Checks and installs `bundle` into the slot not running. A refusal (signature,
/// wrong box, damaged bundle) is recorded and returned.
pub fn install(bundle: &Path, data_dir: &Path) -> Result<Installed, String> {
    let mut record = Record::read(data_dir);
    if let Some(pending) = &record.pending {
        return Err(format!(
            "update {} is still waiting for the health check of its first boot: not installing another now",
            pending.version
        ));
    }
    let refused = |record: &mut Record, reason: String| {
        log::error!("update refused: {reason}");
        record.last = Some(Outcome::now(Verdict::Refused, None, Some(reason.clone())));
        record.write(data_dir)?;
        Err(reason)
    };
    let info = match run(
        "rauc",
        &["info", "--output-format=json", &bundle.to_string_lossy()],
    ) {
        Ok(json) => json,
        Err(e) => return refused(&mut record, e),
    };
    let version = serde_json::from_str::<serde_json::Value>(&info)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if running_image().as_deref() == Some(version.as_str()) {
        log::info!("update {version} is the system already running: nothing to install");
        return Ok(Installed::AlreadyRunning(version));
    }
    if let Some(last) = record.last.as_ref().filter(|l| {
        l.result == Verdict::RolledBack && l.version.as_deref() == Some(version.as_str())
    }) {
        log::warn!(
            "update {version} was rolled back before ({}): not installing it again",
            last.reason.as_deref().unwrap_or("")
        );
        return Ok(Installed::RolledBackBefore(version));
    }
    if !Path::new("/sys/firmware/efi").exists() {
        return refused(
            &mut record,
            "this box started its kernel without the card's boot loader (GRUB, through EFI), which alone could boot the new slot: on a Raspberry Pi 5 updates need its firmware's tryboot (README, \"Updating the box\")".into(),
        );
    }
    let slot = match booted_slot()? {
        s if s == "A" => "B",
        _ => "A",
    };
    log::info!("installing update {version} into slot {slot}");
    if let Err(e) = run("rauc", &["install", &bundle.to_string_lossy()]) {
        return refused(&mut record, e);
    }
    record.pending = Some(Pending {
        version: version.clone(),
        slot: slot.into(),
        installed: now_rfc3339(),
        failed: None,
    });
    record.write(data_dir)?;
    log::info!("update {version} installed into slot {slot}: rebooting into it");
    Ok(Installed::Reboot {
        version,
        slot: slot.into(),
    })
}

/// Installs the bundle on the USB stick `device`, if it carries one.
pub fn from_usb(device: &Path, data_dir: &Path) -> Result<Option<Installed>, String> {
    let mount = PathBuf::from("/run/uplink/usb");
    fs::create_dir_all(&mount).map_err(|e| format!("cannot make {}: {e}", mount.display()))?;
    run(
        "mount",
        &[
            "-o",
            "ro,nosuid,nodev,noexec",
            &device.to_string_lossy(),
            &mount.to_string_lossy(),
        ],
    )?;
    let bundle = mount.join(USB_BUNDLE);
    let result = match bundle.exists() {
        true => {
            log::info!("USB stick {} carries {USB_BUNDLE}", device.display());
            install(&bundle, data_dir).map(Some)
        }
        false => {
            log::info!(
                "USB stick {} has no {USB_BUNDLE}: nothing to install",
                device.display()
            );
            Ok(None)
        }
    };
    let _ = run("umount", &[&mount.to_string_lossy()]);
    result
}

/// The slot GRUB booted (`rauc.slot=` on the kernel command line).
pub(crate) fn booted_slot() -> Result<String, String> {
    let cmdline = fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("cannot read /proc/cmdline: {e}"))?;
    slot_of(&cmdline).ok_or_else(|| {
        "this system was not booted from an update slot (no rauc.slot= on its command line)".into()
    })
}

fn slot_of(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .map(str::to_owned)
}

/// Runs a command; its output, or an error with what it said.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    Err(format!(
        "{program} {} failed ({}): {said}",
        args[0], out.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_comes_from_the_kernel_command_line() {
        let cmdline = "root=PARTUUID=75706c6b-03 rw rauc.slot=B panic=10\n";
        assert_eq!(slot_of(cmdline).as_deref(), Some("B"));
        assert_eq!(slot_of("root=/dev/vda2 rw"), None);
    }

    #[test]
    fn the_record_survives_a_rewrite_and_says_why_an_update_was_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Record::read(dir.path()), Record::default());
        let record = Record {
            last: Some(Outcome::now(
                Verdict::RolledBack,
                Some("0.2.0+1".into()),
                Some("the agent is not running".into()),
            )),
            ..Record::default()
        };
        record.write(dir.path()).unwrap();
        let read = Record::read(dir.path());
        assert_eq!(read, record);
        let last = read.last.unwrap();
        assert!(last.needs_a_person());
        assert!(last.describe().contains("0.2.0+1 was rolled back"));
        assert!(last.describe().contains("the agent is not running"));
    }
}
