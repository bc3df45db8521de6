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
    let all: Vec<PathBuf> = (1..=600)
        .map(|i| {
            let path = input.path().join(format!("{i:04}.dcm"));
            write_us_image(
                &path,
                &format!("1.2.826.0.1.3680043.10.7.{i}"),
                EXPLICIT_LE,
                60,
                80,
            );
            path
        })
        .collect();

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
