//! The backlog after the card's configuration changed: a destination switched to
//! another profile, renamed or removed while instances wait for it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use dicom_dictionary_std::tags;
use dicom_object::open_file;

/// A destination nobody answers at, so that instances stay queued.
const UNREACHABLE: &str = "http://127.0.0.1:9/dicom-web";

fn destination(name: &str, url: &str, profile: &str) -> String {
    format!(
        "\n[[destination]]\nname = \"{name}\"\nurl = \"{url}\"\nprofile = \"{profile}\"\ninsecure = true\n"
    )
}

fn dir_destination(name: &str, dir: &Path, profile: &str) -> String {
    format!(
        "\n[[destination]]\nname = \"{name}\"\nurl = \"dir:{}\"\nprofile = \"{profile}\"\n",
        dir.display()
    )
}

/// Queues `n` instances full of patient data for the agent's destinations, then
/// stops the agent.
fn queue_and_stop(agent: &mut Agent, n: u32) -> Vec<PathBuf> {
    let input = agent.dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let files: Vec<PathBuf> = (1..=n)
        .map(|instance| {
            let path = input.join(format!("{instance}.dcm"));
            let phi = Phi {
                patient: "IRMA",
                study: 70,
                instance,
                rows: 60,
                cols: 80,
            };
            write_phi_image(&path, &phi);
            path
        })
        .collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = storescu(agent.port, &["-R"], &refs);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(agent.terminate(), Some(0), "{}", agent.log());
    assert_eq!(agent.spool_files().len(), n as usize);
    files
}

/// The card's file with one destination block swapped for another.
fn reconfigure(agent: &Agent, old: &str, new: &str) {
    let text = std::fs::read_to_string(&agent.config).unwrap();
    assert!(text.contains(old.trim()), "{text}");
    std::fs::write(&agent.config, text.replace(old.trim(), new.trim())).unwrap();
}

fn uplink(agent: &Agent, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_uplink"))
        .args(args)
        .arg("--config")
        .arg(&agent.config)
        .output()
        .unwrap()
}

#[test]
fn an_identified_backlog_switched_to_strict_is_re_derived_never_sent_as_it_is() {
    let before = destination("cloud", UNREACHABLE, "identified");
    let mut agent = Agent::start(&before);
    queue_and_stop(&mut agent, 3);
    let out = tempfile::tempdir().unwrap();
    reconfigure(
        &agent,
        &before,
        &dir_destination("cloud", out.path(), "strict"),
    );
    agent.spawn();
    let delivered = agent.wait_files(out.path(), 3);
    for path in &delivered {
        let bytes = std::fs::read(path).unwrap();
        for marker in MARKERS {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{} carries {marker}",
                path.display()
            );
        }
        let object = open_file(path).unwrap();
        let name = object
            .element(tags::PATIENT_NAME)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(name.trim(), "ANONYMOUS");
    }
    agent.wait_spool_empty(10);
    assert!(agent.log().contains("re-derived as strict for cloud"));
    // The trail follows each: the identified copy stored, a strict one re-derived
    // from it for cloud (the old one deleted), that one delivered and deleted.
    let trail = audit_trail(&agent);
    assert_eq!(trail.matches(" stored ").count(), 6, "{trail}");
    assert_eq!(trail.matches(" rederived_from=").count(), 3, "{trail}");
    assert_eq!(trail.matches(" delivered ").count(), 3, "{trail}");
    assert_eq!(trail.matches(" deleted ").count(), 6, "{trail}");
    for line in trail.lines().filter(|l| l.contains(" delivered ")) {
        let queue = line
            .split(" queue=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(
            trail.lines().any(|l| l.contains(&format!(
                " queue={queue} profile=strict destination=cloud rederived_from="
            ))),
            "queue entry {queue} was not re-derived: {trail}"
        );
    }
}

fn audit_trail(agent: &Agent) -> String {
    text(&uplink(agent, &["audit"]))
}

#[test]
fn a_backlog_that_cannot_be_re_derived_is_not_sent_and_is_reported() {
    let before = destination("cloud", UNREACHABLE, "typical");
    let mut agent = Agent::start(&before);
    queue_and_stop(&mut agent, 2);
    let out = tempfile::tempdir().unwrap();
    // A typical copy has lost what strict would cut differently; identified is gone.
    reconfigure(
        &agent,
        &before,
        &dir_destination("cloud", out.path(), "identified"),
    );
    agent.spawn();
    wait_until(
        10,
        || agent.status_json()["destinations"][0]["not_deliverable"] != serde_json::json!({}),
        || format!("{}\n{}", agent.status_json(), agent.log()),
    );
    let cloud = &agent.status_json()["destinations"][0];
    let (reason, count) = cloud["not_deliverable"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(count, 2, "{cloud}");
    assert!(reason.contains("queued as typical"), "{reason}");
    agent.wait_spool_empty(10);
    assert!(dcm_files(out.path()).is_empty(), "nothing sent as it was");
    let trail = audit_trail(&agent);
    assert_eq!(trail.matches(" not-deliverable ").count(), 2, "{trail}");
    assert_eq!(trail.matches(" deleted ").count(), 2, "{trail}");
}

#[test]
fn a_removed_destination_keeps_its_backlog_until_it_is_reassigned_or_dropped() {
    let (old, spare) = (
        destination("old-cloud", UNREACHABLE, "identified"),
        destination("spare", UNREACHABLE, "identified"),
    );
    let mut agent = Agent::start(&format!("{old}{spare}"));
    queue_and_stop(&mut agent, 2);
    let out = tempfile::tempdir().unwrap();
    reconfigure(
        &agent,
        &format!("{old}{spare}"),
        &dir_destination("archive", out.path(), "identified"),
    );
    agent.spawn();
    wait_until(
        10,
        || agent.status_json()["orphaned"]["old-cloud"] == 2,
        || format!("{}\n{}", agent.status_json(), agent.log()),
    );
    assert!(agent.log().contains("uplink backlog --drop old-cloud"));
    let said = text(&uplink(&agent, &["status"]));
    assert!(
        said.contains("ATTENTION: 2 instance(s) wait for destination \"old-cloud\""),
        "{said}"
    );
    let busy = uplink(&agent, &["backlog", "--drop", "spare"]);
    assert!(!busy.status.success());
    assert!(text(&busy).contains("stop it first"), "{}", text(&busy));
    assert_eq!(agent.spool_files().len(), 2, "kept while reported");
    agent.terminate();

    let listed = uplink(&agent, &["backlog"]);
    assert!(
        text(&listed).contains("2 instance(s) wait for \"old-cloud\"")
            && text(&listed).contains("2 instance(s) wait for \"spare\""),
        "{}",
        text(&listed)
    );
    let reassigned = uplink(&agent, &["backlog", "--reassign", "old-cloud=archive"]);
    assert!(reassigned.status.success(), "{}", text(&reassigned));
    let dropped = uplink(&agent, &["backlog", "--drop", "spare"]);
    assert!(dropped.status.success(), "{}", text(&dropped));
    assert!(text(&dropped).contains("dropped 2"), "{}", text(&dropped));
    agent.spawn();
    agent.wait_files(out.path(), 2);
    agent.wait_spool_empty(10);
    assert_eq!(agent.status_json()["orphaned"], serde_json::json!({}));
}
