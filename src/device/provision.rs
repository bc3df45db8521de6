//! Provisioning from the SD card's boot partition.
//!
//! Nobody logs into the box: a clinic writes the SD card image, opens the FAT boot
//! partition on any laptop and edits `uplink.toml` there. At every boot, before the
//! agent starts, `uplink provision` (run as root by `uplink-provision.service`)
//! validates that file. A valid file is installed as the agent's configuration, its
//! network and time server settings are applied, and its secrets are replaced on the
//! card by `"(installed)"`, so a card lent to someone no longer carries the token.
//! An invalid file changes nothing installed: the reason goes to `uplink-error.txt`
//! beside it, where the clinic can read it, and to the data dir, from where the agent
//! shows it in `status` and on the attention LED.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::config::{Config, Network, Port};

/// The file the clinic edits, on the boot partition.
pub const BOOT_CONFIG: &str = "uplink.toml";
/// Why the last edit was not taken, on the boot partition.
pub const BOOT_ERROR: &str = "uplink-error.txt";
/// The same, in the data dir, for the agent.
pub const STATE_ERROR: &str = "provision-error.txt";
/// What a secret reads on the card once installed.
pub const INSTALLED: &str = "(installed)";
/// The keys whose values are secrets.
const SECRETS: [&str; 4] = ["password", "token", "proxy_password", "client_secret"];
/// The tables that hold secrets: their path in the file, and for an array of
/// tables the key that tells one entry from another.
const SECRET_TABLES: [(&str, Option<&str>); 5] = [
    ("destination", Some("name")),
    ("listener.user", Some("username")),
    ("update", None),
    ("heartbeat", None),
    ("web", None),
];

/// Where provisioning reads and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The boot partition, holding `uplink.toml`.
    pub boot: PathBuf,
    /// The installed configuration (the agent's credential source).
    pub install: PathBuf,
    /// The agent's data dir, for `provision-error.txt`.
    pub state: PathBuf,
    /// systemd-networkd's folder, for the box's address.
    pub network: PathBuf,
    /// systemd-timesyncd's drop-in folder, for the time servers.
    pub timesyncd: PathBuf,
    /// The agent unit's drop-in folder, for the low-port capability.
    pub unit_drop_ins: PathBuf,
    /// Whether systemd reloads its units after a drop-in changed (on the box:
    /// the agent starts after provisioning, with what it wrote).
    pub reload_systemd: bool,
}

impl Paths {
    pub fn on_the_box() -> Paths {
        Paths {
            boot: "/boot/firmware".into(),
            install: crate::config::DEFAULT_CONFIG_PATH.into(),
            state: "/var/lib/uplink".into(),
            network: "/etc/systemd/network".into(),
            timesyncd: "/etc/systemd/timesyncd.conf.d".into(),
            unit_drop_ins: "/etc/systemd/system/uplink.service.d".into(),
            reload_systemd: true,
        }
    }
}

/// The drop-in that lets the agent bind a port below 1024 (see the file).
const LOW_PORT_DROP_IN: &str = include_str!("../../systemd/low-port.conf");
const LOW_PORT_FILE: &str = "low-port.conf";

/// What provisioning did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No `uplink.toml` on the boot partition.
    NothingToDo,
    /// The file was installed (and its secrets removed from the card).
    Installed,
    /// The file was refused; the installed configuration is unchanged.
    Refused(String),
}

/// Validates and installs the boot partition's configuration. `Err` is for what
/// the clinic cannot fix by editing the file (an unwritable system folder).
pub fn run(paths: &Paths) -> io::Result<Outcome> {
    let source = paths.boot.join(BOOT_CONFIG);
    let edited = match fs::read_to_string(&source) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::NothingToDo),
        Err(e) => return Err(e),
    };
    let installed = fs::read_to_string(&paths.install).ok();
    match prepare(&edited, installed.as_deref()) {
        Ok(prepared) => {
            write_atomically(&paths.install, prepared.install.as_bytes(), 0o600)?;
            apply_network(&prepared.config.network, paths)?;
            let web = prepared.config.web.as_ref().map(|w| w.port);
            apply_port(
                [Some(prepared.config.listener.port), web]
                    .into_iter()
                    .flatten(),
                paths,
            )?;
            if prepared.card != edited {
                write_atomically(&source, prepared.card.as_bytes(), 0o644)?;
            }
            remove_if_there(&paths.boot.join(BOOT_ERROR))?;
            remove_if_there(&paths.state.join(STATE_ERROR))?;
            Ok(Outcome::Installed)
        }
        Err(reason) => {
            let reason = redact(&reason, &edited);
            let message = format!(
                "uplink could not use {BOOT_CONFIG} on this card:\r\n\r\n{}\r\n\r\n\
                 The box keeps working with its previous settings. Correct the file and \
                 restart the box.\r\n",
                reason.replace('\n', "\r\n")
            );
            write_atomically(&paths.boot.join(BOOT_ERROR), message.as_bytes(), 0o644)?;
            fs::create_dir_all(&paths.state)?;
            write_atomically(&paths.state.join(STATE_ERROR), reason.as_bytes(), 0o644)?;
            Ok(Outcome::Refused(reason))
        }
    }
}

/// Removes the secrets written in `edited` from an error message about it (a TOML
/// error quotes the offending line), since the message reaches status and logs.
fn redact(message: &str, edited: &str) -> String {
    let mut message = message.to_owned();
    for line in edited.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !SECRETS.contains(&key.trim()) {
            continue;
        }
        let value = value.trim();
        let secret = value
            .strip_prefix('"')
            .and_then(|v| v.split('"').next())
            .unwrap_or(value);
        if secret.len() >= 3 && secret != INSTALLED {
            message = message.replace(secret, "***");
        }
    }
    message
}

/// The reason the card's configuration was refused, if it was (read by the agent).
pub fn refused_reason(data_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(data_dir.join(STATE_ERROR)).ok()?;
    // One line for status and the log: the error's lines without the caret art.
    let said: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.chars().all(|c| "|^ ".contains(c)))
        .collect();
    Some(format!(
        "the configuration on the SD card was refused: {}",
        said.join(" ")
    ))
}

/// A validated edit: what to install, and what the card keeps.
struct Prepared {
    config: Config,
    install: String,
    card: String,
}

fn prepare(edited: &str, installed: Option<&str>) -> Result<Prepared, String> {
    let mut document: toml_edit::DocumentMut = edited
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    let previous: Option<toml_edit::DocumentMut> = installed.and_then(|t| t.parse().ok());
    // The card's "(installed)" stands for the secret installed before.
    let mut card = document.clone();
    for (path, id) in SECRET_TABLES {
        for table in tables_mut(&mut document, path) {
            let name = id
                .and_then(|id| table.get(id))
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_owned();
            for key in SECRETS {
                if table.get(key).and_then(|v| v.as_str()) == Some(INSTALLED) {
                    let secret = previous
                        .as_ref()
                        .and_then(|p| installed_secret(p, (path, id), &name, key))
                        .ok_or_else(|| match id {
                            Some(id) => format!(
                                "[[{path}]] {id} = \"{name}\": {key} = \"{INSTALLED}\", \
                                 but this box has no {key} installed for \"{name}\": write the {key} again"
                            ),
                            None => format!(
                                "[{path}] {key} = \"{INSTALLED}\", but this box has no [{path}] {key} installed: write the {key} again"
                            ),
                        })?;
                    table[key] = toml_edit::value(secret);
                }
            }
        }
    }
    let install = document.to_string();
    let config = Config::parse(&install).map_err(|e| e.to_string())?;
    for (path, _) in SECRET_TABLES {
        for table in tables_mut(&mut card, path) {
            for key in SECRETS {
                if table.get(key).and_then(|v| v.as_str()).is_some() {
                    let decor = table
                        .get(key)
                        .and_then(|v| v.as_value())
                        .map(|v| v.decor().clone());
                    let mut value = toml_edit::Value::from(INSTALLED);
                    if let Some(decor) = decor {
                        *value.decor_mut() = decor;
                    }
                    table[key] = toml_edit::Item::Value(value);
                }
            }
        }
    }
    Ok(Prepared {
        config,
        install,
        card: card.to_string(),
    })
}

/// The table at `path` ("web"), or the entries of the array of tables there
/// ("listener.user").
fn tables_mut<'a>(
    document: &'a mut toml_edit::DocumentMut,
    path: &str,
) -> Vec<&'a mut toml_edit::Table> {
    let mut item = Some(document.as_item_mut());
    for part in path.split('.') {
        item = item.and_then(|i| i.get_mut(part));
    }
    match item {
        Some(toml_edit::Item::ArrayOfTables(tables)) => tables.iter_mut().collect(),
        Some(toml_edit::Item::Table(table)) => vec![table],
        _ => Vec::new(),
    }
}

fn installed_secret(
    document: &toml_edit::DocumentMut,
    (path, id): (&str, Option<&str>),
    name: &str,
    key: &str,
) -> Option<String> {
    let mut item = Some(document.as_item());
    for part in path.split('.') {
        item = item.and_then(|i| i.get(part));
    }
    let table = match id {
        Some(id) => item?
            .as_array_of_tables()?
            .iter()
            .find(|t| t.get(id).and_then(|n| n.as_str()) == Some(name))?,
        None => item?.as_table()?,
    };
    table
        .get(key)?
        .as_str()
        .filter(|s| *s != INSTALLED)
        .map(str::to_owned)
}

/// Writes the box's address (systemd-networkd) and time servers (timesyncd); with
/// neither set, removes ours, so DHCP and Debian's defaults apply.
fn apply_network(network: &Network, paths: &Paths) -> io::Result<()> {
    let link = paths.network.join("10-uplink.network");
    let mut text = String::from(
        "# Written by `uplink provision` from uplink.toml on the boot partition.\n\
         [Match]\nName=en* eth*\n\n[Network]\n",
    );
    match &network.address {
        Some(address) => {
            text += &format!("Address={address}\n");
            if let Some(gateway) = network.gateway {
                text += &format!("Gateway={gateway}\n");
            }
            for dns in &network.dns {
                text += &format!("DNS={dns}\n");
            }
        }
        None => text += "DHCP=yes\n",
    }
    fs::create_dir_all(&paths.network)?;
    write_atomically(&link, text.as_bytes(), 0o644)?;
    let time = paths.timesyncd.join("uplink.conf");
    if network.ntp.is_empty() {
        remove_if_there(&time)
    } else {
        fs::create_dir_all(&paths.timesyncd)?;
        let text = format!(
            "# Written by `uplink provision` from uplink.toml on the boot partition.\n\
             [Time]\nNTP={}\n",
            network.ntp.join(" ")
        );
        write_atomically(&time, text.as_bytes(), 0o644)
    }
}

/// Installs the low-port drop-in when the DICOM port or the page's is below 1024
/// and removes it otherwise; has systemd reload when that changed anything.
fn apply_port(mut ports: impl Iterator<Item = Port>, paths: &Paths) -> io::Result<()> {
    let path = paths.unit_drop_ins.join(LOW_PORT_FILE);
    let wanted = ports.any(|port| port.0 < 1024);
    let present = fs::read_to_string(&path).ok();
    let unchanged = match wanted {
        true => present.as_deref() == Some(LOW_PORT_DROP_IN),
        false => present.is_none(),
    };
    if unchanged {
        return Ok(());
    }
    if wanted {
        fs::create_dir_all(&paths.unit_drop_ins)?;
        write_atomically(&path, LOW_PORT_DROP_IN.as_bytes(), 0o644)?;
    } else {
        remove_if_there(&path)?;
    }
    if paths.reload_systemd {
        let reloaded = std::process::Command::new("systemctl")
            .arg("daemon-reload")
            .status()?;
        if !reloaded.success() {
            return Err(io::Error::other(format!(
                "systemctl daemon-reload failed ({reloaded}): the port change takes effect at the next boot"
            )));
        }
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.new",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    // The unit's UMask=0077 narrows `mode` at open; networkd and timesyncd, which
    // run as their own users, must read their files.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    crate::queue::spool::sync_dir(dir)
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(root: &Path) -> Paths {
        let paths = Paths {
            boot: root.join("boot"),
            install: root.join("etc/uplink/uplink.toml"),
            state: root.join("var/lib/uplink"),
            network: root.join("etc/systemd/network"),
            timesyncd: root.join("etc/systemd/timesyncd.conf.d"),
            unit_drop_ins: root.join("etc/systemd/system/uplink.service.d"),
            reload_systemd: false,
        };
        fs::create_dir_all(&paths.boot).unwrap();
        paths
    }

    #[test]
    fn a_port_below_1024_gets_the_capability_and_only_while_it_is_set() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        let drop_in = paths.unit_drop_ins.join(LOW_PORT_FILE);
        fs::write(
            paths.boot.join(BOOT_CONFIG),
            VALID.replace("[listener]\n", "[listener]\nport = 104\n"),
        )
        .unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        let text = fs::read_to_string(&drop_in).unwrap();
        let settings: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('='))
            .collect();
        assert_eq!(
            settings,
            [
                "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                "PrivateUsers=no"
            ]
        );
        fs::write(paths.boot.join(BOOT_CONFIG), VALID).unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        assert!(!drop_in.exists(), "port 11112 needs no capability");
        // The page on port 80 needs it as much.
        fs::write(
            paths.boot.join(BOOT_CONFIG),
            format!("{VALID}\n[web]\nport = 80\n"),
        )
        .unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        assert!(drop_in.exists(), "the page's port 80 needs the capability");
        fs::write(
            paths.boot.join(BOOT_CONFIG),
            format!("{VALID}\n[web]\nport = 8080\n"),
        )
        .unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        assert!(!drop_in.exists(), "port 8080 needs no capability");
    }

    const VALID: &str = r#"# The clinic's settings.
[listener]
ae_title = "CLINIC_UPLINK"   # what the ultrasound machine calls us

[[destination]]
name = "cloud"
url = "https://cloud.example/dicom-web"
auth = "bearer"
token = "s3cret-token"   # from the cloud's settings page

[network]
address = "192.168.1.50/24"
gateway = "192.168.1.1"
dns = ["192.168.1.1"]
ntp = ["ntp.example.org"]
"#;

    #[test]
    fn a_valid_file_is_installed_and_its_secret_leaves_the_card() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        fs::write(paths.boot.join(BOOT_CONFIG), VALID).unwrap();
        fs::write(paths.boot.join(BOOT_ERROR), "old error").unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);

        let installed = fs::read_to_string(&paths.install).unwrap();
        let config = Config::parse(&installed).unwrap();
        assert_eq!(config.listener.ae_title.as_str(), "CLINIC_UPLINK");
        assert!(installed.contains("s3cret-token"));
        let card = fs::read_to_string(paths.boot.join(BOOT_CONFIG)).unwrap();
        assert!(!card.contains("s3cret-token"), "{card}");
        assert!(
            card.contains("token = \"(installed)\"   # from the cloud's settings page"),
            "{card}"
        );
        assert!(card.contains("# what the ultrasound machine calls us"));
        assert!(!paths.boot.join(BOOT_ERROR).exists());

        let network = fs::read_to_string(paths.network.join("10-uplink.network")).unwrap();
        assert!(network.contains("Address=192.168.1.50/24\nGateway=192.168.1.1\nDNS=192.168.1.1"));
        let time = fs::read_to_string(paths.timesyncd.join("uplink.conf")).unwrap();
        assert!(time.contains("NTP=ntp.example.org"));

        // Next boot: the card says "(installed)", and the installed token stays.
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        assert!(
            fs::read_to_string(&paths.install)
                .unwrap()
                .contains("s3cret-token")
        );
    }

    #[test]
    fn listener_user_passwords_leave_the_card_too() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        let with_user = VALID.replace(
            "[[destination]]",
            "[[listener.user]]\nusername = \"sono\"\npassword = \"user-pw\"\n\n[[destination]]",
        );
        fs::write(paths.boot.join(BOOT_CONFIG), &with_user).unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        let card = fs::read_to_string(paths.boot.join(BOOT_CONFIG)).unwrap();
        assert!(!card.contains("user-pw"), "{card}");
        let installed = fs::read_to_string(&paths.install).unwrap();
        assert!(installed.contains("user-pw"));
        // The next boot finds "(installed)" and keeps the password.
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        let config = Config::parse(&fs::read_to_string(&paths.install).unwrap()).unwrap();
        assert_eq!(
            config.listener.users[0].password.as_ref().unwrap().expose(),
            "user-pw"
        );
    }

    #[test]
    fn the_tokens_of_the_page_heartbeat_and_updates_leave_the_card_too() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        let with_tokens = format!(
            "{VALID}\n[web]\nport = 8080\ntoken = \"page-token-123\"\n\n\
             [heartbeat]\nurl = \"https://fleet.example/beat\"\nauth = \"bearer\"\ntoken = \"beat-token\"\n\n\
             [update]\nurl = \"https://fleet.example/u.raucb\"\nauth = \"bearer\"\ntoken = \"update-token\"\n"
        );
        fs::write(paths.boot.join(BOOT_CONFIG), &with_tokens).unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        let card = fs::read_to_string(paths.boot.join(BOOT_CONFIG)).unwrap();
        for token in ["page-token-123", "beat-token", "update-token"] {
            assert!(!card.contains(token), "{token} is on the card: {card}");
        }
        // The next boot finds "(installed)" and keeps them.
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        let config = Config::parse(&fs::read_to_string(&paths.install).unwrap()).unwrap();
        let web = config.web.unwrap();
        assert_eq!(web.token.unwrap().expose(), "page-token-123");
        // A box that never had one says what to do.
        fs::remove_file(&paths.install).unwrap();
        fs::write(
            paths.boot.join(BOOT_CONFIG),
            format!("{VALID}\n[web]\nport = 8080\ntoken = \"(installed)\"\n"),
        )
        .unwrap();
        match run(&paths).unwrap() {
            Outcome::Refused(reason) => assert!(
                reason.contains(
                    "[web] token = \"(installed)\", but this box has no [web] token installed"
                ),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_secret_on_the_card_replaces_the_installed_one() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        fs::write(paths.boot.join(BOOT_CONFIG), VALID).unwrap();
        run(&paths).unwrap();
        fs::write(
            paths.boot.join(BOOT_CONFIG),
            VALID.replace("s3cret-token", "new-token"),
        )
        .unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        let installed = fs::read_to_string(&paths.install).unwrap();
        assert!(installed.contains("new-token") && !installed.contains("s3cret-token"));
    }

    #[test]
    fn an_invalid_file_changes_nothing_and_says_why_on_the_card() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        fs::write(paths.boot.join(BOOT_CONFIG), VALID).unwrap();
        run(&paths).unwrap();
        let before = fs::read_to_string(&paths.install).unwrap();

        let typo = VALID.replace("ae_title", "ae_titel");
        fs::write(paths.boot.join(BOOT_CONFIG), &typo).unwrap();
        let Outcome::Refused(reason) = run(&paths).unwrap() else {
            panic!("a typo was accepted");
        };
        assert!(reason.contains("ae_titel"), "{reason}");
        assert_eq!(fs::read_to_string(&paths.install).unwrap(), before);
        let shown = fs::read_to_string(paths.boot.join(BOOT_ERROR)).unwrap();
        assert!(
            shown.contains("ae_titel") && shown.contains("previous settings"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        let reason = refused_reason(&paths.state).unwrap();
        assert!(reason.contains("ae_titel"), "{reason}");
        // The card keeps the clinic's text as written, to be corrected.
        assert_eq!(
            fs::read_to_string(paths.boot.join(BOOT_CONFIG)).unwrap(),
            typo
        );

        fs::write(paths.boot.join(BOOT_CONFIG), VALID).unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        assert!(refused_reason(&paths.state).is_none());
        assert!(!paths.boot.join(BOOT_ERROR).exists());
    }

    #[test]
    fn secrets_stay_out_of_the_error_message() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        let broken = VALID.replace("token = \"s3cret-token\"", "token = \"s3cret-token\" x");
        fs::write(paths.boot.join(BOOT_CONFIG), broken).unwrap();
        let Outcome::Refused(reason) = run(&paths).unwrap() else {
            panic!("a broken line was accepted");
        };
        assert!(reason.contains("***"), "{reason}");
        for file in [paths.boot.join(BOOT_ERROR), paths.state.join(STATE_ERROR)] {
            assert!(!fs::read_to_string(file).unwrap().contains("s3cret"));
        }
    }

    #[test]
    fn installed_without_an_installed_secret_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        fs::write(
            paths.boot.join(BOOT_CONFIG),
            VALID.replace("s3cret-token", INSTALLED),
        )
        .unwrap();
        let Outcome::Refused(reason) = run(&paths).unwrap() else {
            panic!("accepted a token it does not have");
        };
        assert!(reason.contains("write the token again"), "{reason}");
        assert!(!paths.install.exists());
    }

    #[test]
    fn dhcp_and_default_time_servers_without_a_network_section() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        fs::write(paths.boot.join(BOOT_CONFIG), VALID).unwrap();
        run(&paths).unwrap();
        let plain = &VALID[..VALID.find("[network]").unwrap()];
        fs::write(paths.boot.join(BOOT_CONFIG), plain).unwrap();
        assert_eq!(run(&paths).unwrap(), Outcome::Installed);
        let network = fs::read_to_string(paths.network.join("10-uplink.network")).unwrap();
        assert!(network.contains("DHCP=yes"));
        assert!(!paths.timesyncd.join("uplink.conf").exists());
    }

    #[test]
    fn network_files_stay_readable_by_networkd_under_the_units_umask() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("10-uplink.network");
        // SAFETY: umask only sets this process's file creation mask.
        let old = unsafe { libc::umask(0o077) };
        let written = write_atomically(&path, b"[Network]\nDHCP=yes\n", 0o644);
        unsafe { libc::umask(old) };
        written.unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn no_file_on_the_card_is_nothing_to_do() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(run(&paths(root.path())).unwrap(), Outcome::NothingToDo);
    }

    #[test]
    fn network_settings_are_checked() {
        let gateway_alone = "[network]\ngateway = \"10.0.0.1\"\n";
        assert!(
            Config::parse(gateway_alone)
                .unwrap_err()
                .to_string()
                .contains("static address")
        );
        let bad_ntp = "[network]\nntp = [\"pool.ntp.org\\nDNS=6.6.6.6\"]\n";
        assert!(
            Config::parse(bad_ntp)
                .unwrap_err()
                .to_string()
                .contains("not a host name")
        );
    }
}
