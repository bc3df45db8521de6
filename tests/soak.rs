//! Soak: steady traffic for a while with a destination that keeps going away, and the
//! agent's memory and open files must stay flat, every exam must be taken at once
//! (the box stays responsive while it backs off), and the queue must drain.
//!
//! Length: `UPLINK_SOAK_SECS` (default 20, the CI version); an hour is
//! `UPLINK_SOAK_SECS=3600 cargo test --release --test soak -- --nocapture`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::orthanc::Orthanc;
use common::*;

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn steady_traffic_and_a_flapping_destination_leave_memory_and_files_flat() {
    let secs: u64 = std::env::var("UPLINK_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut orthanc = Orthanc::start();
    let agent = Agent::start(&format!(
        "\n[[destination]]\nname = \"cloud\"\nurl = \"{}\"\ninsecure = true\nretry_max_secs = 2\n",
        orthanc.dicomweb_url()
    ));
    let pid = agent.pid();
    let input = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut sent = 0u32;
    let mut samples: Vec<(Duration, u64, usize)> = Vec::new();
    let mut next_flap = Duration::from_secs(3);
    while started.elapsed() < Duration::from_secs(secs) {
        // Two exams' worth of images, each with its own UIDs.
        let files: Vec<PathBuf> = (0..2)
            .map(|_| {
                sent += 1;
                let path = input.path().join(format!("{sent}.dcm"));
                write_us_image(
                    &path,
                    &format!("1.2.826.0.1.3680043.10.95.{sent}"),
                    EXPLICIT_LE,
                    240,
                    320,
                );
                path
            })
            .collect();
        let refs: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
        let out = storescu(agent.port, &[], &refs);
        assert!(
            out.status.success(),
            "an exam was not taken at {:?}: {}",
            started.elapsed(),
            text(&out)
        );
        for file in &files {
            std::fs::remove_file(file).unwrap();
        }
        // The destination goes away and comes back every few seconds.
        if started.elapsed() >= next_flap {
            if next_flap.as_secs() % 6 == 3 {
                orthanc.pause();
            } else {
                orthanc.resume();
            }
            next_flap += Duration::from_secs(3);
        }
        samples.push((
            started.elapsed(),
            proc_status_kib(pid, "VmRSS"),
            open_files(pid),
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    // After a warm-up quarter, nothing may grow: compare the second half with the
    // second quarter.
    let quarter = samples.len() / 4;
    let window = |from: usize, to: usize| {
        let part = &samples[from..to];
        (
            part.iter().map(|s| s.1).max().unwrap(),
            part.iter().map(|s| s.2).max().unwrap(),
        )
    };
    let (rss_early, files_early) = window(quarter, 2 * quarter);
    let (rss_late, files_late) = window(2 * quarter, samples.len());
    eprintln!(
        "soak: {secs} s, {sent} instances, peak RSS {} -> {} KiB, open files {files_early} -> {files_late}",
        rss_early, rss_late
    );
    orthanc.resume();
    wait_until(
        300,
        || orthanc.count_instances() >= u64::from(sent),
        || format!("Orthanc has {} of {sent}", orthanc.count_instances()),
    );
    agent.wait_spool_empty(60);
    assert!(
        rss_late <= rss_early + 2048,
        "memory grows: {rss_early} KiB then {rss_late} KiB"
    );
    assert!(
        files_late <= files_early + 4,
        "open files grow: {files_early} then {files_late}"
    );
}
