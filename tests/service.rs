//! The agent as a systemd service: the unit's validity and hardening, and the
//! notify protocol (readiness, watchdog, stopping) spoken to a real socket.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

/// Runs `systemd-analyze verify` on units (name, text) written side by side,
/// failing on any complaint, warnings included; returns the folder.
fn verify(units: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = units
        .iter()
        .map(|(name, unit)| {
            let path = dir.path().join(name);
            let unit = unit.replace("/usr/bin/uplink", env!("CARGO_BIN_EXE_uplink"));
            std::fs::write(&path, unit).unwrap();
            path
        })
        .collect();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&verify.stderr);
    // A misspelt key is only a warning to systemd: any complaint fails here.
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    dir
}

/// `verify`, and the offline security score on a unit text, failing on an
/// exposure above 2.0.
fn analyze(name: &str, unit: &str) {
    let dir = verify(&[(name, unit)]);
    let path = dir.path().join(name);
    // --threshold takes the 0-100 scale: 20 is an exposure of 2.0 ("OK").
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success(),
        "{name}: exposure above 2.0:\n{report}"
    );
    eprintln!("{name}: {}", report.lines().last().unwrap_or_default());
}

fn unit_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/systemd/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_unit_is_valid_and_hardened() {
    analyze("uplink.service", &unit_file("uplink.service"));
}

#[test]
fn the_unit_with_the_gpio_drop_in_stays_hardened() {
    // A drop-in's assignments come after the unit's: appending them is what systemd
    // does when it loads uplink.service.d/gpio.conf.
    let drop_in = unit_file("uplink.service.d/gpio.conf");
    let service = drop_in.split_once("[Service]\n").unwrap().1;
    let unit = unit_file("uplink.service").replace("\n[Install]", &format!("{service}\n[Install]"));
    assert!(unit.contains("DeviceAllow=char-gpiochip rw"));
    analyze("uplink.service", &unit);
}

#[test]
fn the_unit_on_port_104_with_both_drop_ins_stays_hardened() {
    // What provisioning writes for a port below 1024, after the .deb's GPIO drop-in.
    let mut unit = unit_file("uplink.service");
    for drop_in in ["uplink.service.d/gpio.conf", "low-port.conf"] {
        let text = unit_file(drop_in);
        let service = text.split_once("[Service]\n").unwrap().1;
        unit = unit.replace("\n[Install]", &format!("{service}\n[Install]"));
    }
    assert!(unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"));
    analyze("uplink.service", &unit);
}

#[test]
fn the_provisioning_unit_is_valid() {
    // Root, to write /etc and the card, but nothing else.
    analyze(
        "uplink-provision.service",
        &unit_file("uplink-provision.service"),
    );
}

#[test]
fn the_update_units_are_valid() {
    // Root and unconfined on purpose: RAUC writes a root slot, `mount` takes the
    // stick, the health check reboots; they hold no network listener.
    let usb = unit_file("uplink-update-usb@.service");
    verify(&[
        ("uplink-health.service", &unit_file("uplink-health.service")),
        ("uplink-update.service", &unit_file("uplink-update.service")),
        ("uplink-update.path", &unit_file("uplink-update.path")),
        ("uplink-update-usb@sda.service", &usb),
    ]);
}

#[test]
fn the_image_units_are_valid() {
    // The units the SD card image adds (board/overlay), with their scripts where
    // the repository has them.
    let overlay = format!("{}/board/overlay", env!("CARGO_MANIFEST_DIR"));
    let unit = |name: &str| {
        std::fs::read_to_string(format!("{overlay}/etc/systemd/system/{name}"))
            .unwrap()
            .replace("/usr/lib/uplink/", &format!("{overlay}/usr/lib/uplink/"))
    };
    verify(&[
        (
            "uplink-grow-data.service",
            &unit("uplink-grow-data.service"),
        ),
        ("uplink-name.service", &unit("uplink-name.service")),
    ]);
}

#[test]
fn readiness_watchdog_and_stopping_reach_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The configuration arrives as a systemd credential.
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let port = free_port();
    std::fs::write(
        credentials.join("uplink.toml"),
        format!(
            "[listener]\nport = {port}\nbind = \"127.0.0.1\"\n[storage]\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    // systemd names the watched process: a shell that execs the agent keeps its pid.
    let agent = Command::new("sh")
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" serve",
            env!("CARGO_BIN_EXE_uplink"),
        ])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .env("JOURNAL_STREAM", "8:1234")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(messages.iter().any(|m: &String| m.contains("READY=1"))
        && messages.iter().any(|m| m.contains("WATCHDOG=1")))
    {
        assert!(Instant::now() < deadline, "got {messages:?}");
        let n = socket.recv(&mut buf).unwrap();
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = messages.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(
        ready.contains(&format!("STATUS=listening on 127.0.0.1:{port}")),
        "{ready}"
    );
    // It listens where the credential said, as soon as it said it was ready.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    loop {
        let n = socket.recv(&mut buf).unwrap();
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            break;
        }
    }
    let out = agent.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Under journald: priority prefixes, no timestamps of our own.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().all(|l| l.starts_with('<')), "{log}");
    assert!(log.contains("<6>uplink"), "{log}");
}

#[test]
fn the_simulated_panel_shows_heartbeat_and_activity() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("uplink.toml");
    std::fs::write(
        &config,
        format!(
            "[listener]\nport = {port}\nbind = \"127.0.0.1\"\n[storage]\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("panel.txt");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_uplink"))
        .args(["serve", "--led-sim", "--config"])
        .arg(&config)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_listening(port, 20, || "the agent did not start".into());
    let image = dir.path().join("image.dcm");
    common::write_us_image(
        &image,
        "1.2.826.0.1.3680043.10.95.1",
        common::EXPLICIT_LE,
        8,
        8,
    );
    assert!(common::storescu(port, &["-R"], &[&image]).status.success());
    std::thread::sleep(Duration::from_millis(2500));
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    agent.wait().unwrap();
    let panel = std::fs::read_to_string(&out).unwrap();
    assert!(
        panel.contains("power ●") && panel.contains("power ○"),
        "heartbeat blinks:\n{panel}"
    );
    assert!(
        panel.contains("activity ●"),
        "the instance flashed the activity LED:\n{panel}"
    );
    assert!(
        panel.contains("cloud ●"),
        "the outbox is reachable:\n{panel}"
    );
}
