//! kill -9 while instances arrive: every instance answered Success survives.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigkill_while_receiving_loses_no_acknowledged_instance() {
    let input = tempfile::tempdir().unwrap();
    let all = us_images(input.path(), 600, 7);

    let mut agent = Agent::start("");
    // Three crashes at different points of the stream, each round its own instances.
    for (round, kill_after) in [(1usize, 20usize), (2, 60), (3, 5)] {
        let files = &all[(round - 1) * 200..round * 200];
        let uids: Vec<String> = files.iter().map(|f| file_sop_instance(f)).collect();
        let before = dcm_files(&agent.outbox()).len();
        let scu = Command::new("storescu")
            .args([
                "-v",
                "-R",
                "-nh",
                "-aec",
                "UPLINK",
                "127.0.0.1",
                &agent.port.to_string(),
            ])
            .args(files)
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while agent.spool_files().len() + dcm_files(&agent.outbox()).len() < before + kill_after {
            assert!(
                Instant::now() < deadline,
                "round {round}: nothing arrived\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        agent.kill9();
        let out = scu.wait_with_output().unwrap();
        let said = text(&out);
        let acked = said.matches("Received Store Response (Success)").count();
        eprintln!("round {round}: killed after {acked} acknowledged instances");
        assert!(
            acked < files.len(),
            "round {round}: the kill came too late to test anything"
        );

        agent.spawn();
        // Everything acknowledged so far, in this round and before, must arrive.
        let acked_uids: BTreeSet<&str> = uids[..acked].iter().map(String::as_str).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let delivered = loop {
            let delivered: BTreeSet<String> = dcm_files(&agent.outbox())
                .iter()
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .filter(|uid| uids.contains(uid))
                .collect();
            if acked_uids.iter().all(|u| delivered.contains(*u)) && agent.spool_files().is_empty() {
                break delivered;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: acknowledged instances missing\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // Nothing else: at most the one instance that was committed but whose
        // response the kill cut off (the peer resends it; same UID, same file).
        let sent_so_far: BTreeSet<&str> = uids[..(acked + 1).min(uids.len())]
            .iter()
            .map(String::as_str)
            .collect();
        for uid in &delivered {
            assert!(
                sent_so_far.contains(uid.as_str()),
                "round {round}: {uid} delivered but never acknowledged"
            );
        }
        assert!(
            agent.log().contains("queue:"),
            "restart logged its reconciliation"
        );
    }
    // Every file that arrived is a complete, readable instance.
    for file in dcm_files(&agent.outbox()) {
        let dump = dcmtk("dcmdump", &["-q", file.to_str().unwrap()]);
        assert!(dump.status.success(), "{}: {}", file.display(), text(&dump));
        let object = dicom_object::open_file(&file).unwrap();
        let pixels = object
            .element(dicom_dictionary_std::tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap();
        assert_eq!(pixels.len(), 60 * 80 * 3, "{}", file.display());
    }
}

/// `n` US images sent on one association to an agent under strace, which writes
/// one trace per thread into the returned folder (see `thread_traces`).
fn send_traced(n: usize, tag: u32) -> (tempfile::TempDir, Agent) {
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), n, tag);
    let agent = Agent::start_traced("", &input.path().join("trace"));
    let refs: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let out = storescu(agent.port, &["-R"], &refs);
    assert!(out.status.success(), "{}", text(&out));
    (input, agent)
}

/// The calls each thread of a traced agent made, one file per thread.
fn thread_traces(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("trace.")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// One flush per acknowledgement, and never after it: on the association's thread,
/// every spool file renamed into place is followed by exactly one flush (`syncfs`)
/// and no other before the C-STORE response goes out (`sendto`). On one association
/// the thread leads each group commit itself, so the flush shows on it.
#[test]
fn each_acknowledgement_waits_for_exactly_one_flush() {
    let (input, mut agent) = send_traced(5, 10);
    agent.terminate();
    let mut acknowledged = 0;
    for calls in thread_traces(input.path()) {
        let lines: Vec<&str> = calls.lines().collect();
        for (i, call) in lines.iter().enumerate() {
            let sealed = call.starts_with("rename(")
                && call
                    .split('"')
                    .nth(3)
                    .is_some_and(|to| to.contains("/spool/"))
                && call.trim_end().ends_with("= 0");
            if !sealed {
                continue;
            }
            let before_answer: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|c| !c.starts_with("sendto("))
                .copied()
                .collect();
            assert!(
                lines.len() > i + 1 + before_answer.len(),
                "{call} is never answered:\n{calls}"
            );
            let flushes: Vec<&&str> = before_answer
                .iter()
                .filter(|c| {
                    ["syncfs(", "fsync(", "fdatasync("]
                        .iter()
                        .any(|f| c.starts_with(f))
                })
                .collect();
            assert!(
                flushes.len() == 1
                    && flushes[0].starts_with("syncfs(")
                    && flushes[0].trim_end().ends_with("= 0"),
                "{call} is answered after {flushes:?}, not one syncfs:\n{calls}"
            );
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, 5, "five spool files sealed and answered");
}

/// A power cut keeps what was flushed: a removal or a new folder that was never
/// flushed can come back or vanish. Every spool file the agent removes once it is
/// delivered, and every folder it creates, is followed by an fsync of the folder
/// it was in, on the same thread (strace shows the calls; kill -9 cannot). The
/// power-cut campaign under qemu tests the same for real.
#[test]
fn removals_and_new_folders_are_flushed_to_the_card() {
    let (input, mut agent) = send_traced(3, 8);
    agent.wait_outbox(3);
    agent.wait_spool_empty(20);
    agent.terminate();
    let data = agent.data_dir().display().to_string();
    let mut checked = (0, 0);
    let mut all = String::new();
    for calls in thread_traces(input.path()) {
        all += &calls;
        // One thread's calls in order: "unlink("/x/spool/identified/1.dcm") = 0",
        // "fsync(7</x/spool/identified>) = 0". Only those that succeeded count.
        let lines: Vec<&str> = calls
            .lines()
            .filter(|l| l.trim_end().ends_with("= 0"))
            .collect();
        for (i, call) in lines.iter().enumerate() {
            let removal = call.starts_with("unlink") && call.contains("/spool/");
            // sled's own folders hold the index, which the spool can always rebuild.
            let creation = call.starts_with("mkdir") && !call.contains("queue.sled");
            let Some(target) = call
                .split('"')
                .nth(1)
                .filter(|p| p.starts_with(&data) && (removal || creation))
            else {
                continue;
            };
            let parent = std::path::Path::new(target)
                .parent()
                .unwrap()
                .display()
                .to_string();
            let flushed = lines[i + 1..]
                .iter()
                .take_while(|c| !c.starts_with("unlink") && !c.starts_with("mkdir"))
                .any(|c| c.starts_with("fsync(") && c.contains(&format!("<{parent}>")));
            assert!(
                flushed,
                "{call} is not followed by an fsync of {parent}:\n{calls}"
            );
            if removal {
                checked.0 += 1;
            } else {
                checked.1 += 1;
            }
        }
    }
    let calls = all;
    assert_eq!(checked.0, 3, "three delivered files removed:\n{calls}");
    assert!(checked.1 >= 3, "data dir, spool folder, outbox:\n{calls}");
}

/// An SD card that ignores flushes can leave a spool file garbled. With the index
/// lost too, start-up must read every file back: the damaged one is set aside, the
/// agent starts and serves, and status says so.
#[test]
fn a_damaged_spool_file_is_set_aside_and_the_box_serves_on() {
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), 3, 9);
    // A destination that never answers keeps the instances queued.
    let mut agent = Agent::start(
        "\n[[destination]]\nname = \"cloud\"\nurl = \"http://127.0.0.1:9/dicom-web\"\ninsecure = true\n",
    );
    let refs: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let out = storescu(agent.port, &["-R"], &refs);
    assert!(out.status.success(), "{}", text(&out));
    agent.terminate();
    let spooled = agent.spool_files();
    assert_eq!(spooled.len(), 3, "{spooled:?}");
    std::fs::write(&spooled[1], b"DICM garbled by the card").unwrap();
    std::fs::remove_dir_all(agent.data_dir().join("queue.sled")).unwrap();

    agent.spawn();
    let echo = dcmtk(
        "echoscu",
        &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
    );
    assert!(echo.status.success(), "{}\n{}", text(&echo), agent.log());
    wait_until(
        10,
        || agent.status_json()["damaged"]["files"] == 1,
        || format!("{}\n{}", agent.status_json(), agent.log()),
    );
    let status = agent.status_json();
    assert!(
        status["damaged"]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be read back"),
        "{status}"
    );
    assert_eq!(status["destinations"][0]["pending"], 2, "{status}");
    let aside: Vec<_> = std::fs::read_dir(agent.data_dir().join("damaged"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(aside.len(), 2, "the file and its note: {aside:?}");
    let said = agent.status_text();
    assert!(said.contains("ATTENTION: 1 spool file(s)"), "{said}");
}
