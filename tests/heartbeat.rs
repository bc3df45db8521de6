//! `[heartbeat]` against a real HTTP server on loopback that records every POST
//! (tests/peers/recorder.py): a heartbeat at start, one at once when a destination
//! goes offline, each with the box id, the queue and the destination's state, the
//! credentials in the header and never in the body, and none carrying a patient
//! marker of the exam the box holds. With the heartbeat server gone, exams still
//! reach the other destination.

mod common;

use std::fs;
use std::path::Path;

use common::fixtures::{MARKERS, phi_study};
use common::*;

fn beats(dir: &Path) -> Vec<(serde_json::Value, String, String)> {
    let mut beats = Vec::new();
    for n in 1.. {
        let Ok(body) = fs::read_to_string(dir.join(format!("{n}.json"))) else {
            break;
        };
        let headers = fs::read_to_string(dir.join(format!("{n}.headers"))).unwrap();
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("beat {n}: {e}: {body}"));
        beats.push((json, body, headers));
    }
    beats
}

#[test]
fn heartbeats_tell_the_state_and_nothing_of_the_patients() {
    let received = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut recorder = python_peer(
        "recorder.py",
        &[&port.to_string(), &received.path().display().to_string()],
    );
    wait_listening(port, 30, || "the recorder did not start".into());
    let closed = free_port();
    let outbox = tempfile::tempdir().unwrap();
    let agent = Agent::start(&format!(
        "[[destination]]\nname = \"outbox\"\nurl = \"dir:{}\"\n\n\
         [[destination]]\nname = \"cloud\"\nurl = \"http://127.0.0.1:{closed}/dicom-web\"\ninsecure = true\n\
         retry_max_secs = 2\n\n\
         [heartbeat]\nurl = \"http://127.0.0.1:{port}/beat\"\ninsecure = true\ninterval_secs = 30\n\
         auth = \"bearer\"\ntoken = \"beat-token\"\n",
        outbox.path().display()
    ));
    wait_until(30, || !beats(received.path()).is_empty(), || agent.log());

    let input = tempfile::tempdir().unwrap();
    let exams = phi_study(input.path(), "ZQXHEARTBEAT", 91, 2);
    let out = storescu(agent.port, &[], &[&exams[0]]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until(
        60,
        || {
            beats(received.path())
                .iter()
                .any(|(b, ..)| b["reason"] == "offline")
        },
        || format!("no heartbeat said offline\n{}", agent.log()),
    );

    let all = beats(received.path());
    let (start, ..) = &all[0];
    assert_eq!(start["reason"], "start");
    let box_id = start["box_id"].as_str().unwrap();
    assert!(
        box_id.len() == 16 && box_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{box_id}"
    );
    // The name a technician finds the box by, beside the id the fleet knows.
    assert!(
        start["status"]["name"]
            .as_str()
            .unwrap()
            .ends_with(".local"),
        "{start}"
    );
    let (offline, ..) = all.iter().find(|(b, ..)| b["reason"] == "offline").unwrap();
    assert_eq!(offline["offline"], true);
    assert_eq!(offline["box_id"], box_id);
    let cloud = offline["status"]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "cloud")
        .unwrap();
    assert_eq!(cloud["state"], "offline", "{cloud}");
    assert_eq!(cloud["pending"], 1, "{cloud}");
    assert!(offline["status"]["version"].is_string());
    for (n, (_, body, headers)) in all.iter().enumerate() {
        assert!(
            headers.contains("Bearer beat-token"),
            "beat {}: {headers}",
            n + 1
        );
        assert!(
            !body.contains("beat-token"),
            "beat {} carries the token",
            n + 1
        );
        for marker in MARKERS {
            assert!(
                !body.contains(marker),
                "beat {} carries {marker}: {body}",
                n + 1
            );
        }
    }

    // The heartbeat server gone: exams still go where they can.
    let _ = recorder.kill();
    let _ = recorder.wait();
    let out = storescu(agent.port, &[], &[&exams[1]]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(agent.wait_files(outbox.path(), 2).len(), 2);
}
