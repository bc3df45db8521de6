//! Test harness: runs the real `uplink` binary against dcmtk's real tools, with
//! fixtures made here (no files from outside the repository).

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod browser;
pub mod fixtures;
pub mod nginx;
pub mod oauth;
pub mod orthanc;
pub mod pki;
pub mod proxies;
pub mod proxy;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use fixtures::*;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running agent in its own temp dir, killed when dropped.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub config: PathBuf,
    child: Option<Child>,
    /// Size of the tmpfs the data dir is mounted on, if any.
    small_disk: Option<u32>,
    /// Where strace writes the agent's file system calls, if it runs under strace.
    strace: Option<PathBuf>,
}

impl Agent {
    /// Starts an agent with `extra` TOML appended to a config that sets port and data dir.
    pub fn start(extra: &str) -> Agent {
        Agent::start_with(extra, true)
    }

    /// The same, listening on `port` (a peer that must know it beforehand).
    pub fn start_on_port(port: u16, extra: &str) -> Agent {
        Agent::start_at(port, extra, true)
    }

    fn start_with(extra: &str, spawn: bool) -> Agent {
        Agent::start_at(free_port(), extra, spawn)
    }

    fn start_at(port: u16, extra: &str, spawn: bool) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("uplink.toml");
        let text = format!(
            "[listener]\nport = {port}\nbind = \"127.0.0.1\"\n{extra}\n[storage]\ndata_dir = \"{}\"\nmin_free_mib = 1\n",
            dir.path().join("data").display()
        );
        fs::write(&config, fix_sections(&text)).unwrap();
        let mut agent = Agent {
            dir,
            port,
            config,
            child: None,
            small_disk: None,
            strace: None,
        };
        if spawn {
            agent.spawn();
        }
        agent
    }

    /// Starts an agent whose data dir is a tmpfs of `mib` MiB in a mount namespace of
    /// its own (`unshare`, no root needed): a small SD card that fills up. Files in
    /// the data dir are not visible from the test; the log and peers are.
    pub fn start_on_small_disk(extra: &str, mib: u32) -> Agent {
        let mut agent = Agent::start_with(extra, false);
        std::fs::create_dir_all(agent.data_dir()).unwrap();
        agent.small_disk = Some(mib);
        agent.spawn();
        agent
    }

    /// Starts an agent under strace, which writes the calls that create, remove,
    /// rename and flush files (with the paths of file descriptors), one file per
    /// thread: `trace.<thread id>`.
    pub fn start_traced(extra: &str, trace: &Path) -> Agent {
        let mut agent = Agent::start_with(extra, false);
        agent.strace = Some(trace.to_path_buf());
        agent.spawn();
        agent
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn outbox(&self) -> PathBuf {
        self.data_dir().join("outbox")
    }

    /// The agent's process id (under strace, the tracee's).
    pub fn pid(&self) -> u32 {
        let child = self.child.as_ref().unwrap().id();
        if self.strace.is_none() {
            return child;
        }
        let children = format!("/proc/{child}/task/{child}/children");
        fs::read_to_string(children)
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .unwrap_or(child)
    }

    /// (Re)starts the process and waits until it accepts connections.
    pub fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let mut command = match self.small_disk {
            None if self.strace.is_some() => {
                let mut c = Command::new("strace");
                c.args(["-ff", "-y", "-qq", "-e"])
                    .arg("trace=unlink,unlinkat,mkdir,mkdirat,rename,renameat,renameat2,fsync,fdatasync,syncfs,sendto")
                    .arg("-o")
                    .arg(self.strace.as_ref().unwrap())
                    .arg(env!("CARGO_BIN_EXE_uplink"))
                    .args(["serve", "--config"])
                    .arg(&self.config);
                c
            }
            None => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_uplink"));
                c.args(["serve", "--config"]).arg(&self.config);
                c
            }
            Some(mib) => {
                let mut c = Command::new("unshare");
                c.args(["-rm", "sh", "-c", &format!("mount -t tmpfs -o size={mib}m tmpfs \"$1\" && exec \"$0\" serve --config \"$2\"")])
                    .arg(env!("CARGO_BIN_EXE_uplink"))
                    .arg(self.data_dir())
                    .arg(&self.config);
                c
            }
        };
        let child = command
            .env("UPLINK_LOG", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Wait for the log line rather than probing the port: a probe would be an
        // association of its own, and count against the cap.
        let deadline = Instant::now() + Duration::from_secs(20);
        let starts = self.log().matches("listening for DICOM").count();
        while self.log().matches("listening for DICOM").count() == starts {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited at start with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "agent did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// SIGKILL: a crash or power cut as far as the process is concerned.
    pub fn kill9(&mut self) {
        if self.child.is_some() {
            // Under strace the agent dies first, then strace follows it.
            unsafe { libc::kill(self.pid() as i32, libc::SIGKILL) };
            let mut child = self.child.take().unwrap();
            let _ = child.kill();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "agent ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident memory of the agent so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM")
    }

    /// Waits until the outbox holds `n` files (and no temp files), or panics.
    pub fn wait_outbox(&self, n: usize) -> Vec<PathBuf> {
        self.wait_files(&self.outbox(), n)
    }

    /// Waits until `dir` holds exactly `n` delivered files, or panics.
    pub fn wait_files(&self, dir: &Path, n: usize) -> Vec<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let files = dcm_files(dir);
            if files.len() >= n {
                assert_eq!(
                    files.len(),
                    n,
                    "more files than expected in {}",
                    dir.display()
                );
                return files;
            }
            assert!(
                Instant::now() < deadline,
                "{} has {} of {n} files:\n{}",
                dir.display(),
                files.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every file under the spool (complete or partial).
    pub fn spool_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for profile in ["identified", "typical", "strict"] {
            if let Ok(entries) = fs::read_dir(self.data_dir().join("spool").join(profile)) {
                out.extend(entries.map(|e| e.unwrap().path()));
            }
        }
        out
    }

    /// Waits up to `secs` until the first destination's `field` in `status --json`
    /// equals `value`.
    pub fn wait_destination(&self, secs: u64, field: &str, value: impl Into<serde_json::Value>) {
        let value = value.into();
        wait_until(
            secs,
            || self.status_json()["destinations"][0][field] == value,
            || {
                format!(
                    "{field} never became {value}: {}\n{}",
                    self.status_json(),
                    self.log()
                )
            },
        );
    }

    /// Waits up to `secs` until the spool is empty: everything delivered.
    pub fn wait_spool_empty(&self, secs: u64) {
        wait_until(
            secs,
            || self.spool_files().is_empty(),
            || format!("{:?}\n{}", self.spool_files(), self.log()),
        );
    }

    /// Every file the agent wrote under its data dir, with its bytes.
    pub fn written_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![self.data_dir()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let bytes = fs::read(&path).unwrap();
                    files.push((path, bytes));
                }
            }
        }
        files
    }

    /// What `uplink status` prints for this agent.
    pub fn status_text(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_uplink"))
            .args(["status", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        text(&out)
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_uplink"))
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {out:?}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Merges a repeated `[listener]` header from `extra` into the first one.
fn fix_sections(text: &str) -> String {
    let mut out = String::new();
    let mut seen_listener = false;
    // A test's own `[listener] bind` replaces the harness's loopback default.
    let mut section = "";
    let listener_binds = text
        .lines()
        .filter(|line| {
            if line.starts_with('[') {
                section = line.trim();
            }
            section == "[listener]" && line.starts_with("bind = ")
        })
        .count();
    let own_bind = listener_binds > 1;
    for line in text.lines() {
        if own_bind && line == "bind = \"127.0.0.1\"" {
            continue;
        }
        if line.trim() == "[listener]" {
            if seen_listener {
                continue;
            }
            seen_listener = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A `kB` field of `/proc/PID/status` (VmHWM, VmRSS, ...).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `*.dcm` files in a folder, sorted.
pub fn dcm_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A PDF report as dcmtk's pdf2dcm makes it (Encapsulated PDF), with patient
/// markers in its header and in its text: `report.dcm` in `dir`.
pub fn pdf_report(dir: &Path) -> PathBuf {
    let pdf = dir.join("report.pdf");
    fs::write(&pdf, minimal_pdf("ZQX report for DOE JANE")).unwrap();
    let report = dir.join("report.dcm");
    let made = dcmtk(
        "pdf2dcm",
        &[
            "+pn",
            "ZQXDOE^JANE",
            "+pi",
            "ZQXID",
            "+pb",
            "19930512",
            pdf.to_str().unwrap(),
            report.to_str().unwrap(),
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    report
}

/// An ultrasound image without a Study Instance UID: Orthanc refuses it for good
/// (400, Failed SOP Sequence), so it goes to quarantine.
pub fn refused_by_orthanc(path: &Path, uid: &str) {
    write_us_image(path, uid, EXPLICIT_LE, 60, 80);
    let out = dcmtk(
        "dcmodify",
        &["-nb", "-ea", "(0020,000d)", path.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// Runs a dcmtk tool (with Nagle off, as a clinic's tuned peer would).
pub fn dcmtk(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .env("TCP_NODELAY", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (is dcmtk installed?): {e}"))
}

pub fn storescu(port: u16, extra: &[&str], files: &[&Path]) -> Output {
    let port = port.to_string();
    let mut args: Vec<&str> = vec!["-aec", "UPLINK"];
    args.extend_from_slice(extra);
    args.extend(["127.0.0.1", port.as_str()]);
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(files.iter().map(String::as_str));
    dcmtk("storescu", &args)
}

/// Runs `uplink anonymize --profile PROFILE --config CONFIG --out OUT INPUT...`.
pub fn anonymize_offline<I: AsRef<std::ffi::OsStr>>(
    config: &Path,
    profile: &str,
    out: &Path,
    inputs: impl IntoIterator<Item = I>,
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uplink"))
        .args(["anonymize", "--profile", profile, "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(inputs)
        .output()
        .unwrap()
}

/// A configuration for the offline command in `dir`: its data dir (and device key)
/// there, and `extra` TOML.
pub fn offline_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("uplink.toml");
    let text = format!(
        "[storage]\ndata_dir = \"{}\"\n{extra}",
        dir.join("data").display()
    );
    fs::write(&config, text).unwrap();
    config
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Sends `files` with `storescu args` to dcmtk's own `storescp +B` (bit-preserving:
/// it writes the data set exactly as it came off the wire) and returns its output
/// folder: the reference our outbox must match byte for byte.
pub fn dcmtk_reference(storescu_args: &[&str], files: &[&Path]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut scp = Command::new("storescp")
        .args(["-aet", "UPLINK", "+B", "+xa", "-od"])
        .arg(dir.path())
        .arg(port.to_string())
        .env("TCP_NODELAY", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run storescp (is dcmtk installed?)");
    wait_listening(port, 10, || "storescp did not start".into());
    let out = storescu(port, storescu_args, files);
    let _ = scp.kill();
    let _ = scp.wait();
    assert!(
        out.status.success(),
        "reference transfer failed: {}",
        text(&out)
    );
    dir
}

/// The file in `dir` holding SOP instance `uid`.
pub fn file_for_instance(dir: &Path, uid: &str) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file() && file_sop_instance(p) == uid)
        .unwrap_or_else(|| panic!("no file for {uid} in {}", dir.display()))
}

/// Polls `done` every 20 ms until it holds, or panics after `secs` seconds with `what()`.
pub fn wait_until(secs: u64, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {}", what());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `secs` until something listens on loopback `port`, or panics with
/// `what()`.
pub fn wait_listening(port: u16, secs: u64, what: impl Fn() -> String) {
    wait_until(
        secs,
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        what,
    );
}

/// Base64 by coreutils, for a test's own authorization headers (not the agent's
/// encoder, which the tests check).
pub fn base64(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .args(["-w", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// `python3` with the fixtures' Python (pydicom, pynetdicom, ...) that
/// `scripts/fixtures.sh` installs on its path.
pub fn fixtures_python() -> Command {
    let mut python = Command::new("python3");
    python.env(
        "PYTHONPATH",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures/python"),
    );
    python
}

/// An A-ASSOCIATE-RQ for US Image Storage in Explicit VR Little Endian, calling `UPLINK`.
pub fn association_rq(calling: &str) -> dicom_ul::pdu::Pdu {
    use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, UserVariableItem};
    dicom_ul::pdu::Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling.into(),
        called_ae_title: "UPLINK".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: US_IMAGE.into(),
            transfer_syntaxes: vec![EXPLICIT_LE.into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16384)],
    })
}

/// `n` small US images for `dir`, with SOP Instance UIDs under `...10.{tag}.`.
pub fn us_images(dir: &Path, n: usize, tag: u32) -> Vec<PathBuf> {
    (1..=n)
        .map(|i| {
            let path = dir.join(format!("{tag}-{i}.dcm"));
            write_us_image(
                &path,
                &format!("1.2.826.0.1.3680043.10.{tag}.{i}"),
                EXPLICIT_LE,
                60,
                80,
            );
            path
        })
        .collect()
}

/// A campaign's rounds (`{prefix}_ROUNDS`, else `default`) and random seed
/// (`{prefix}_SEED`, else the time), printed so a failing run can be replayed.
pub fn campaign_parameters(prefix: &str, default: usize) -> (usize, u64) {
    let rounds = std::env::var(format!("{prefix}_ROUNDS"))
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default);
    let seed = std::env::var(format!("{prefix}_SEED"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        });
    eprintln!("{rounds} rounds, {prefix}_SEED={seed}");
    (rounds, seed)
}

/// A Python peer of `tests/peers/` (pynetdicom, from the fixtures' Python that
/// `scripts/fixtures.sh` installs), started with `args`, its output piped.
pub fn python_peer(script: &str, args: &[&str]) -> Child {
    fixtures_python()
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/peers")
                .join(script),
        )
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run python3")
}

/// The JSON line a Python peer printed, once it ended.
pub fn peer_result(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!(
            "the peer printed no result (run scripts/fixtures.sh for pynetdicom):\n{}",
            text(&out)
        )
    })
}
