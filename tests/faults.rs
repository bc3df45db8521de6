//! Faults the box meets in a clinic's closet: the card fills up.

mod common;

use std::path::{Path, PathBuf};

use common::orthanc::Orthanc;
use common::*;

#[test]
fn a_full_card_refuses_with_a700_harms_nothing_and_recovers_by_itself() {
    full_card(1);
}

/// With no free-space floor the card really runs out mid-instance (ENOSPC).
#[test]
fn running_out_of_space_mid_instance_is_refused_cleanly_too() {
    full_card(0);
}

fn full_card(floor_mib: u32) {
    // The cloud is down, so the spool on a 24 MiB card fills up.
    let mut orthanc = Orthanc::start();
    orthanc.pause();
    let mut agent = Agent::start_on_small_disk(
        &format!(
            "\n[[destination]]\nname = \"cloud\"\nurl = \"{}\"\nretry_max_secs = 1\ninsecure = true\n",
            orthanc.dicomweb_url()
        ),
        24,
    );
    let config = std::fs::read_to_string(&agent.config).unwrap();
    assert!(config.contains("min_free_mib = 1"));
    if floor_mib == 0 {
        std::fs::write(
            &agent.config,
            config.replace("min_free_mib = 1", "min_free_mib = 0"),
        )
        .unwrap();
        agent.kill9();
        agent.spawn();
    }
    let input = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (1..=30)
        .map(|i| {
            let path = input.path().join(format!("{i:02}.dcm"));
            write_us_image(
                &path,
                &format!("1.2.826.0.1.3680043.10.97.{i}"),
                EXPLICIT_LE,
                600,
                800,
            );
            path
        })
        .collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let first = storescu(agent.port, &["-v", "-R", "-nh"], &refs);
    let said = text(&first);
    let acked = said.matches("Received Store Response (Success)").count();
    let refused = said.matches("Refused: OutOfResources").count();
    eprintln!("card full: {acked} acknowledged, {refused} refused with A700");
    assert!(acked > 5 && refused > 5 && acked + refused == 30, "{said}");
    let reason = if floor_mib == 0 {
        "storage full"
    } else {
        "free-space floor"
    };
    assert!(
        agent.log().contains(reason),
        "expected {reason:?}:\n{}",
        agent.log()
    );
    // Still serving, the association survived each refusal.
    let echo = dcmtk(
        "echoscu",
        &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
    );
    assert!(echo.status.success());

    // The cloud comes back: uploads free the card, and the refused instances go
    // through when the modality tries again, as modalities do.
    orthanc.resume();
    orthanc.wait_instances(acked, 120, || agent.log());
    for _ in 0..30 {
        let stored = orthanc.instance_uids();
        let missing: Vec<&Path> = refs
            .iter()
            .copied()
            .filter(|f| !stored.contains(&file_sop_instance(f)))
            .collect();
        if missing.is_empty() {
            break;
        }
        storescu(agent.port, &["-R", "-nh"], &missing);
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let uids = orthanc.wait_instances(30, 120, || agent.log());
    assert_eq!(uids.len(), 30, "every instance once");
    // Nothing acknowledged the first time was harmed.
    let fetched = tempfile::tempdir().unwrap();
    for file in &files[..acked] {
        let uid = file_sop_instance(file);
        let stored = orthanc.file(&uid, fetched.path());
        let pixels = dicom_object::open_file(&stored)
            .unwrap()
            .element(dicom_dictionary_std::tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .len();
        assert_eq!(pixels, 600 * 800 * 3, "{uid}");
    }
}
