//! `uplink`, the command: parses the command line and hands over to the library.

use uplink::device::{health, leds, provision, update};
use uplink::{audit, backlog, config, control, logging, pipeline, serve, status};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::Config;

/// Exit status for a configuration error (sysexits EX_CONFIG); the systemd unit
/// does not restart on it, since restarting cannot fix a typo.
const EXIT_CONFIG: u8 = 78;
/// Exit status of `status` when the agent is not running (as `systemctl status`).
const EXIT_NOT_RUNNING: u8 = 3;

#[derive(Parser)]
#[command(
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("UPLINK_TARGET"), ")"),
    about = "DICOM uplink agent: receive ultrasound exams, anonymize them, queue them durably, upload them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: listen for DICOM, queue, deliver.
    Serve {
        /// Configuration file [default: /etc/uplink/uplink.toml if present, else built-in defaults]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Show the LED panel on the terminal
        #[arg(long)]
        led_sim: bool,
    },
    /// Validate a configuration and print the effective settings.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show the agent's state: queue, destinations, last error and success.
    Status {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the raw status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the audit trail: each instance's steps (received, stored, delivered,
    /// refused, discarded, deleted), without patient data.
    Audit {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Only lines from this time on (UTC: 2026-12-01, "2026-12-01 14:00") or
        /// this long ago (2h, 3days)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
    /// Anonymize DICOM files and folders offline, with this box's device key.
    Anonymize {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// `typical` or `strict`
        #[arg(long, value_parser = ["typical", "strict"])]
        profile: String,
        /// Folder for the anonymized files, named by their new SOP Instance UID
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// DICOM files or folders (read recursively)
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<PathBuf>,
    },
    /// Put instances a destination refused (quarantined) back in its queue.
    RetryQuarantine {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Only this destination [default: all]
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
    },
    /// Backlog of destinations no longer configured: list it, drop it, or give it
    /// to another destination (with the agent stopped).
    Backlog {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Drop every instance still waiting for destination NAME
        #[arg(long, value_name = "NAME", conflicts_with = "reassign")]
        drop: Option<String>,
        /// Give destination OLD's backlog to configured destination NEW
        #[arg(long, value_name = "OLD=NEW")]
        reassign: Option<String>,
    },
    /// On the box, at boot (as root): validate uplink.toml on the SD card's boot
    /// partition, install it, apply its network settings, remove its secrets from the
    /// card; or write why not to uplink-error.txt beside it.
    Provision {
        /// The boot partition
        #[arg(long, value_name = "DIR", default_value = "/boot/firmware")]
        boot: PathBuf,
        /// Where the configuration is installed
        #[arg(long, value_name = "FILE", default_value = config::DEFAULT_CONFIG_PATH)]
        install: PathBuf,
        /// The agent's data dir (it shows a refusal from there)
        #[arg(long, value_name = "DIR", default_value = "/var/lib/uplink")]
        state: PathBuf,
    },
    /// On the box (as root): install a signed update bundle into the other root
    /// slot and reboot into it.
    Update {
        #[command(subcommand)]
        from: UpdateFrom,
        /// The agent's data dir (the update record lives there)
        #[arg(long, value_name = "DIR", default_value = "/var/lib/uplink")]
        state: PathBuf,
    },
    /// On the box (as root), at every boot: check the agent and keep a new root
    /// slot, or mark it bad and boot the previous one.
    Health {
        /// How long the agent may take to pass
        #[arg(long, value_name = "SECS", default_value_t = 180)]
        within: u64,
        #[arg(long, value_name = "DIR", default_value = "/var/lib/uplink")]
        state: PathBuf,
    },
}

#[derive(Subcommand)]
enum UpdateFrom {
    /// A bundle file (a download, or one copied by hand)
    Bundle {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// The USB stick DEVICE, if it carries uplink-update.raucb at its top level
    Usb {
        #[arg(value_name = "DEVICE")]
        device: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = match &cli.command {
        Command::Provision {
            boot,
            install,
            state,
        } => return provision(boot, install, state),
        Command::Update { from, state } => return install_update(from, state),
        Command::Health { within, state } => {
            logging::init(log::LevelFilter::Info);
            return said(
                health::health(state, std::time::Duration::from_secs(*within))
                    .map(|()| "health check settled".into()),
            );
        }
        Command::Serve { config, .. }
        | Command::CheckConfig { config }
        | Command::Status { config, .. }
        | Command::Audit { config, .. }
        | Command::RetryQuarantine { config, .. }
        | Command::Backlog { config, .. }
        | Command::Anonymize { config, .. } => config.clone(),
    };
    let (config, source) = match Config::load(path.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("uplink: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Provision { .. } | Command::Update { .. } | Command::Health { .. } => {
            unreachable!("answered above")
        }
        Command::Serve { led_sim, .. } => {
            logging::init(config.log.level.0);
            let lights = leds::open(&config.leds, led_sim);
            serve::run(config, source, lights).map_or_else(
                |e| {
                    log::error!("{e}");
                    ExitCode::FAILURE
                },
                |()| ExitCode::SUCCESS,
            )
        }
        Command::CheckConfig { .. } => {
            println!(
                "# configuration OK: {source}\n# effective settings:\n{}",
                config.to_toml()
            );
            ExitCode::SUCCESS
        }
        Command::Status { json, .. } => status(&config, json),
        Command::Audit { since, .. } => audit(&config, since.as_deref()),
        Command::Backlog { drop, reassign, .. } => said(backlog::command(
            &config,
            drop.as_deref(),
            reassign.as_deref(),
        )),
        Command::Anonymize {
            profile,
            out,
            inputs,
            ..
        } => anonymize(&config, &profile, &out, &inputs),
        Command::RetryQuarantine { destination, .. } => said(
            control::retry(&config, destination.as_deref())
                .map(|n| format!("{n} quarantined instance(s) back in the queue")),
        ),
    }
}

/// Prints what a command said (exit 0), or its error (exit 1).
fn said(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(said) => {
            println!("{}", said.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("uplink: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `uplink status`: exit 0 while the agent runs, 3 when it does not.
fn status(config: &Config, json: bool) -> ExitCode {
    match status::Snapshot::read(&config.storage.data_dir) {
        Ok(snapshot) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&snapshot).expect("snapshot serializes")
                );
            } else {
                print!("{}", snapshot.render());
            }
            if snapshot.agent_alive() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NOT_RUNNING)
            }
        }
        Err(e) => {
            eprintln!("uplink: {e}");
            ExitCode::from(EXIT_NOT_RUNNING)
        }
    }
}

/// `uplink audit`: the trail's lines to stdout.
fn audit(config: &Config, since: Option<&str>) -> ExitCode {
    let data_dir = &config.storage.data_dir;
    let since = match since.map(|s| audit::parse_since(s, std::time::SystemTime::now())) {
        Some(Err(e)) => {
            eprintln!("uplink: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(t)) => Some(t),
        None => None,
    };
    if audit::files(data_dir).is_empty() {
        eprintln!(
            "uplink: no audit trail in {}: the agent has not run with this data dir",
            data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    let mut out = std::io::stdout().lock();
    match audit::copy_since(data_dir, since, &mut out) {
        Ok(_) => ExitCode::SUCCESS,
        // A closed pipe (`uplink audit | head`) is the reader's choice.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uplink: cannot read the audit trail: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `uplink anonymize`: exit 1 when any file failed.
fn anonymize(config: &Config, profile: &str, out: &Path, inputs: &[PathBuf]) -> ExitCode {
    logging::init(config.log.level.0);
    let profile = if profile == "strict" {
        config::Profile::Strict
    } else {
        config::Profile::Typical
    };
    match pipeline::offline::run(config, profile, out, inputs) {
        Ok(report) if report.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("uplink: {e}");
            ExitCode::FAILURE
        }
    }
}

fn install_update(from: &UpdateFrom, state: &Path) -> ExitCode {
    logging::init(log::LevelFilter::Info);
    let installed = match from {
        UpdateFrom::Bundle { file } => update::install(file, state).map(Some),
        UpdateFrom::Usb { device } => update::from_usb(device, state),
    };
    match installed {
        Ok(Some(update::Installed::Reboot { .. })) => said(
            std::process::Command::new("systemctl")
                .arg("reboot")
                .status()
                .map_err(|e| format!("cannot reboot: {e}"))
                .map(|_| "rebooting into the update".into()),
        ),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn provision(
    boot: &std::path::Path,
    install: &std::path::Path,
    state: &std::path::Path,
) -> ExitCode {
    let paths = provision::Paths {
        boot: boot.to_path_buf(),
        install: install.to_path_buf(),
        state: state.to_path_buf(),
        ..provision::Paths::on_the_box()
    };
    match provision::run(&paths) {
        Ok(provision::Outcome::NothingToDo) => {
            println!(
                "no {} in {}: nothing to do",
                provision::BOOT_CONFIG,
                boot.display()
            );
            ExitCode::SUCCESS
        }
        Ok(provision::Outcome::Installed) => {
            println!(
                "{} installed as {}",
                provision::BOOT_CONFIG,
                install.display()
            );
            ExitCode::SUCCESS
        }
        Ok(provision::Outcome::Refused(reason)) => {
            eprintln!(
                "uplink: {} refused (see {}): {reason}",
                provision::BOOT_CONFIG,
                boot.join(provision::BOOT_ERROR).display()
            );
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("uplink: cannot provision from {}: {e}", boot.display());
            ExitCode::FAILURE
        }
    }
}
