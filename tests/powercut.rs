//! The power-cut campaign on the box itself. A kill -9 leaves the agent's writes in
//! the page cache; a power cut loses every write not yet flushed, which is what the
//! fsync ordering is for. So the SD card image boots under qemu (as
//! `board/smoke-boot.sh` does), exams are sent to it while it uploads to Orthanc on
//! this host, and qemu is killed at random moments: the guest's page cache dies with
//! it. Then it boots again, and so on. At the end every instance storescu saw
//! acknowledged is in Orthanc, none was sent more often than the bound allows (a
//! proxy counts what Orthanc confirmed), and the card's spool and queue are empty.
//!
//! What qemu cannot model: the card's own volatile cache (the host keeps what qemu
//! wrote to the image file). What it does model is the one that matters to the
//! agent's ordering: the guest kernel's page cache.
//!
//! It needs the image: `board/build-image.sh` first (the test command does).
//! Rounds `UPLINK_POWERCUT_ROUNDS` (default 3), moments from `UPLINK_POWERCUT_SEED`
//! (default: the time, printed). `cargo test --test powercut -- --ignored`.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::orthanc::Orthanc;
use common::proxy::FaultyProxy;
use common::*;

const PER_ROUND: usize = 12;
/// Instances per upload request (`batch` on the card): what one cut can re-send.
const BATCH: usize = 2;
const AE_TITLE: &str = "POWERCUT";
const SUCCESS: &str = "Received Store Response (Success)";

/// The emulated box: qemu booting the card, its DICOM port forwarded to loopback.
struct Board {
    qemu: Child,
    port: u16,
    monitor: PathBuf,
    console: PathBuf,
}

impl Board {
    fn boot(image_dir: &Path, card: &Path, work: &Path, round: usize) -> Board {
        let port = free_port();
        let monitor = work.join(format!("monitor-{round}"));
        let console = work.join(format!("console-{round}.log"));
        let qemu = Command::new("qemu-system-aarch64")
            .args([
                "-M",
                "virt",
                "-cpu",
                "cortex-a72",
                "-smp",
                "2",
                "-m",
                "1024",
            ])
            .args(["-nographic", "-kernel"])
            .arg(image_dir.join("vmlinuz"))
            .arg("-initrd")
            .arg(image_dir.join("initrd.img"))
            .args([
                "-append",
                "root=PARTUUID=75706c6b-02 rauc.slot=A rw console=ttyAMA0",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},if=none,format=raw,id=card",
                card.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=card"])
            .arg("-netdev")
            .arg(format!("user,id=net,hostfwd=tcp:127.0.0.1:{port}-:11112"))
            .args(["-device", "virtio-net-pci,netdev=net,romfile="])
            .arg("-monitor")
            .arg(format!("unix:{},server,nowait", monitor.display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&console).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-aarch64 (qemu-system-arm from bookworm-backports)");
        Board {
            qemu,
            port,
            monitor,
            console,
        }
    }

    /// Waits until the agent on the box answers a C-ECHO.
    fn wait_ready(&mut self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let echo = dcmtk(
                "echoscu",
                &[
                    "-to",
                    "3",
                    "-aec",
                    AE_TITLE,
                    "127.0.0.1",
                    &self.port.to_string(),
                ],
            );
            if echo.status.success() {
                return;
            }
            if let Some(status) = self.qemu.try_wait().unwrap() {
                panic!("qemu exited ({status}):\n{}", self.console_tail());
            }
            assert!(
                Instant::now() < deadline,
                "the box did not answer within {secs} s:\n{}",
                self.console_tail()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The power goes: qemu dies at once, and the guest's page cache with it.
    fn cut(mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }

    /// The power button: systemd shuts down, the agent stops cleanly.
    fn power_off(mut self) {
        let mut monitor = std::os::unix::net::UnixStream::connect(&self.monitor).unwrap();
        monitor.write_all(b"system_powerdown\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.qemu.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the box did not power off");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn console_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The byte offset and length of MBR partition `index` (0-based) of `image`.
fn partition(image: &Path, index: u64) -> (u64, u64) {
    let mut file = std::fs::File::open(image).unwrap();
    let mut entry = [0u8; 16];
    file.seek(SeekFrom::Start(446 + 16 * index)).unwrap();
    file.read_exact(&mut entry).unwrap();
    let start = u32::from_le_bytes(entry[8..12].try_into().unwrap());
    let sectors = u32::from_le_bytes(entry[12..16].try_into().unwrap());
    (u64::from(start) * 512, u64::from(sectors) * 512)
}

/// Writes the clinic's uplink.toml onto the card's FAT partition, as a laptop would.
fn provision_card(card: &Path, work: &Path, proxy_port: u16) {
    let toml = work.join("uplink.toml");
    std::fs::write(
        &toml,
        format!(
            "[listener]\nae_title = \"{AE_TITLE}\"\n\n[[destination]]\nname = \"cloud\"\n\
             url = \"http://10.0.2.2:{proxy_port}/dicom-web\"\ninsecure = true\n\
             batch = {BATCH}\nretry_max_secs = 2\n"
        ),
    )
    .unwrap();
    let (offset, _) = partition(card, 0);
    let out = Command::new("mcopy")
        .args(["-o", "-i"])
        .arg(format!("{}@@{offset}", card.display()))
        .arg(&toml)
        .arg("::uplink.toml")
        .output()
        .expect("mcopy (mtools)");
    assert!(out.status.success(), "{}", text(&out));
}

/// What the card's data partition (spool, queue, status) holds at `path`, read
/// with debugfs from a copy of the partition (no loop device needed).
fn card_listing(card: &Path, work: &Path, command: &str) -> String {
    let (offset, length) = partition(card, 3);
    let data = work.join("data.ext4");
    let out = Command::new("dd")
        .arg(format!("if={}", card.display()))
        .arg(format!("of={}", data.display()))
        .args([
            "bs=4M",
            "iflag=skip_bytes,count_bytes",
            "conv=sparse",
            "status=none",
        ])
        .arg(format!("skip={offset}"))
        .arg(format!("count={length}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = Command::new("debugfs")
        .args(["-R", command])
        .arg(&data)
        .output()
        .expect("debugfs (e2fsprogs)");
    let _ = std::fs::remove_file(&data);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the SD card image: board/build-image.sh, then --ignored"]
fn power_cuts_of_the_box_lose_nothing_acknowledged() {
    let (rounds, seed) = campaign_parameters("UPLINK_POWERCUT", 3);
    let mut rng = fastrand::Rng::with_seed(seed);
    let image_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/image");
    let image = image_dir.join("uplink.img");
    assert!(
        image.exists(),
        "{} is missing: run board/build-image.sh first",
        image.display()
    );

    let orthanc = Orthanc::start();
    let proxy = FaultyProxy::counting(orthanc.http_port);
    let work = tempfile::tempdir().unwrap();
    let card = work.path().join("card.img");
    let copied = Command::new("cp")
        .arg("--sparse=always")
        .arg(&image)
        .arg(&card)
        .status()
        .unwrap();
    assert!(copied.success());
    // A card larger than the image, as every real one is: the data partition (the
    // spool) grows to it at the first boot.
    std::fs::File::options()
        .write(true)
        .open(&card)
        .unwrap()
        .set_len(6 << 30)
        .unwrap();
    provision_card(&card, work.path(), proxy.port);

    let input = tempfile::tempdir().unwrap();
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    let mut cuts_while_sending = 0;
    for round in 0..rounds {
        let mut board = Board::boot(&image_dir, &card, work.path(), round);
        board.wait_ready(300);
        let files: Vec<PathBuf> = (0..PER_ROUND)
            .map(|i| {
                let path = input.path().join(format!("{round}-{i}.dcm"));
                let uid = format!("1.2.826.0.1.3680043.10.50.{round}.{i}");
                write_us_image(&path, &uid, EXPLICIT_LE, 480, 640);
                path
            })
            .collect();
        let mut scu = Command::new("storescu")
            .args(["-v", "-nh", "-aec", AE_TITLE, "127.0.0.1"])
            .arg(board.port.to_string())
            .args(&files)
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The cut comes after a random number of acknowledgements (and a random
        // moment more), while earlier rounds' instances are being uploaded.
        let cut_after = rng.usize(0..PER_ROUND);
        let extra = Duration::from_millis(rng.u64(0..300));
        let mut said = String::new();
        let mut log = std::io::BufReader::new(scu.stderr.take().unwrap());
        while said.matches(SUCCESS).count() < cut_after {
            let mut line = String::new();
            if std::io::BufRead::read_line(&mut log, &mut line).unwrap() == 0 {
                break;
            }
            said += &line;
        }
        std::thread::sleep(extra);
        board.cut();
        log.read_to_string(&mut said).unwrap();
        scu.wait().unwrap();
        let n = said.matches(SUCCESS).count();
        if n < files.len() {
            cuts_while_sending += 1;
        }
        acked.extend(files[..n].iter().map(|f| file_sop_instance(f)));
        in_flight.extend(files.get(n).map(|f| file_sop_instance(f)));
        eprintln!("round {round}: {n} of {PER_ROUND} acknowledged before the cut");
    }

    // The last boot drains the queue.
    let mut board = Board::boot(&image_dir, &card, work.path(), rounds);
    board.wait_ready(300);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stored: BTreeSet<String> = orthanc.instance_uids().into_iter().collect();
        if acked.is_subset(&stored) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged instances missing from Orthanc: {:?}\n{}",
            acked.difference(&stored).collect::<Vec<_>>(),
            board.console_tail()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Let the last records settle, then power off cleanly and read the card.
    std::thread::sleep(Duration::from_secs(5));
    board.power_off();
    let stored: BTreeSet<String> = orthanc.instance_uids().into_iter().collect();
    let strangers: Vec<&String> = stored
        .iter()
        .filter(|u| !acked.contains(*u) && !in_flight.contains(*u))
        .collect();
    let resent = proxy.resent();
    let cuts = rounds;
    let spool = card_listing(&card, work.path(), "ls -p /uplink/spool/identified");
    let spooled: Vec<&str> = spool
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .filter(|name| name.ends_with(".dcm") || name.ends_with(".part"))
        .collect();
    let status = card_listing(&card, work.path(), "cat /uplink/status.json");
    let status: serde_json::Value = serde_json::from_str(&status)
        .unwrap_or_else(|e| panic!("status.json on the card: {e}: {status}"));
    eprintln!(
        "power cuts: {rounds} rounds ({cuts_while_sending} cut a transfer), acked {}, delivered {}, \
         re-sent {resent}, lost {}, spooled {}",
        acked.len(),
        acked.intersection(&stored).count(),
        acked.difference(&stored).count(),
        spooled.len()
    );
    assert!(strangers.is_empty(), "never sent: {strangers:?}");
    assert!(
        cuts_while_sending > 0,
        "no cut landed mid-transfer: nothing was tested"
    );
    assert!(
        resent <= cuts * BATCH,
        "re-sent {resent} after {cuts} cuts of at most {BATCH} in flight each"
    );
    assert!(spooled.is_empty(), "left on the card: {spooled:?}");
    assert_eq!(status["destinations"][0]["pending"], 0, "{status}");
    assert_eq!(status["destinations"][0]["quarantined"], 0, "{status}");
    assert_eq!(status["damaged"]["files"], 0, "{status}");
}
