//! Storage commitment with real SCUs: pynetdicom as a modality that takes its
//! report on a new association or on the one it asked on, and Orthanc, which
//! sends an exam with storage commitment and waits for the report on its own port.

mod common;

use std::time::{Duration, Instant};

use common::orthanc::Orthanc;
use common::*;
use serde_json::{Value, json};

const UID_ROOT: &str = "1.2.826.0.1.3680043.10";

/// Sends `n` US images (UIDs `UID_ROOT.tag.i`) to the agent; returns their UIDs.
fn store(agent: &Agent, n: usize, tag: u32) -> Vec<String> {
    let files = us_images(agent.dir.path(), n, tag);
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    let out = storescu(agent.port, &[], &refs);
    assert!(out.status.success(), "{}\n{}", text(&out), agent.log());
    (1..=n).map(|i| format!("{UID_ROOT}.{tag}.{i}")).collect()
}

fn ask(agent: &Agent, mode: &str, extra: &[&str], uids: &[String]) -> std::process::Child {
    let port = agent.port.to_string();
    let mut args = vec![port.as_str(), "UPLINK", mode];
    args.extend_from_slice(extra);
    args.extend(uids.iter().map(String::as_str));
    python_peer("commitment_scu.py", &args)
}

fn modality(port: u16) -> String {
    format!("[[modality]]\nae_title = \"PYSCU\"\nhost = \"127.0.0.1\"\nport = {port}\n")
}

#[test]
fn a_modality_that_releases_gets_its_report_on_a_new_association() {
    let scp = free_port();
    let agent = Agent::start(&modality(scp));
    let mut uids = store(&agent, 2, 701);
    let never_sent = format!("{UID_ROOT}.701.99");
    uids.push(never_sent.clone());
    let listen = scp.to_string();
    let result = peer_result(ask(&agent, "release", &["--listen", &listen], &uids));
    assert_eq!(result["action_status"], 0, "{result}\n{}", agent.log());
    let reports = result["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "one report: {result}\n{}", agent.log());
    let report = &reports[0];
    assert_eq!(report["on"], "new", "{result}");
    assert_eq!(report["transaction"], result["transaction"]);
    assert_eq!(report["event_type"], 2, "failures exist: {result}");
    assert_eq!(report["committed"], json!(uids[..2]));
    assert_eq!(
        report["failed"],
        json!([[never_sent, 0x0112]]),
        "no such object instance"
    );
    agent_settles(&agent);
}

#[test]
fn an_instance_committed_as_another_class_is_a_conflict() {
    let scp = free_port();
    let agent = Agent::start(&modality(scp));
    let uids = store(&agent, 1, 702);
    let listen = scp.to_string();
    let secondary_capture = "1.2.840.10008.5.1.4.1.1.7";
    let result = peer_result(ask(
        &agent,
        "release",
        &["--listen", &listen, "--class-uid", secondary_capture],
        &uids,
    ));
    let report = &result["reports"][0];
    assert_eq!(
        report["failed"],
        json!([[uids[0], 0x0119]]),
        "{result}\n{}",
        agent.log()
    );
    assert_eq!(report["committed"], json!([]));
}

#[test]
fn a_modality_that_stays_gets_its_report_on_the_same_association() {
    // No [[modality]] and nothing listening: only the association itself can carry it.
    let agent = Agent::start("");
    let uids = store(&agent, 3, 703);
    let result = peer_result(ask(&agent, "stay", &[], &uids));
    assert_eq!(result["action_status"], 0, "{result}\n{}", agent.log());
    let report = &result["reports"][0];
    assert_eq!(report["on"], "same", "{result}\n{}", agent.log());
    assert_eq!(report["event_type"], 1, "all committed: {result}");
    assert_eq!(report["committed"], json!(uids));
    agent_settles(&agent);
}

/// Nothing is left pending once the report was answered.
fn agent_settles(agent: &Agent) {
    wait_until(
        10,
        || agent.status_json()["commitments"]["pending"] == 0,
        || format!("{}\n{}", agent.status_json(), agent.log()),
    );
}

#[test]
fn a_report_nobody_took_survives_a_restart_and_is_delivered() {
    let scp = free_port();
    let mut agent = Agent::start(&modality(scp));
    let uids = store(&agent, 2, 704);
    let asked = peer_result(ask(&agent, "ask", &[], &uids));
    assert_eq!(asked["action_status"], 0, "{asked}");
    // Nobody listens yet: the report stays pending, and `status` says so.
    wait_until(
        20,
        || {
            agent
                .status_text()
                .contains("1 storage commitment report(s) pending")
        },
        || format!("{}\n{}", agent.status_text(), agent.log()),
    );
    assert_eq!(agent.status_json()["commitments"]["pending"], 1);
    agent.kill9();
    let listen = scp.to_string();
    let listener = python_peer(
        "commitment_scu.py",
        &["0", "UPLINK", "listen", "--listen", &listen, "--wait", "60"],
    );
    std::thread::sleep(Duration::from_secs(1));
    let restarted = Instant::now();
    agent.spawn();
    let result = peer_result(listener);
    let report = &result["reports"][0];
    assert_eq!(
        report["transaction"],
        asked["transaction"],
        "{result}\n{}",
        agent.log()
    );
    assert_eq!(report["committed"], json!(uids));
    eprintln!("delivered {:?} after the restart", restarted.elapsed());
    agent_settles(&agent);
}

/// Orthanc, down, as the one destination of an agent that commits only what it
/// delivered, waiting `wait_secs`; and the port the modality listens on.
fn committing_delivered(wait_secs: u64) -> (Orthanc, u16, Agent) {
    let mut orthanc = Orthanc::start();
    orthanc.pause();
    let scp = free_port();
    let agent = Agent::start(&format!(
        "[listener]\ncommit = \"delivered\"\ncommit_wait_secs = {wait_secs}\n{}\n[[destination]]\nname = \"cloud\"\nurl = \"{}\"\nprofile = \"identified\"\ninsecure = true\n",
        modality(scp),
        orthanc.dicomweb_url()
    ));
    (orthanc, scp, agent)
}

#[test]
fn committed_as_delivered_waits_for_the_cloud() {
    let (mut orthanc, scp, agent) = committing_delivered(300);
    let uids = store(&agent, 2, 705);
    let listen = scp.to_string();
    let waiting = ask(
        &agent,
        "release",
        &["--listen", &listen, "--wait", "90"],
        &uids,
    );
    // The cloud is down: no report yet, however long it is asked.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        agent.status_json()["commitments"]["pending"],
        1,
        "{}",
        agent.log()
    );
    orthanc.resume();
    let result = peer_result(waiting);
    let report = &result["reports"][0];
    assert_eq!(report["event_type"], 1, "{result}\n{}", agent.log());
    assert_eq!(report["committed"], json!(uids));
    assert_eq!(
        orthanc.instance_uids().len(),
        2,
        "delivered before committed"
    );
}

#[test]
fn what_the_cloud_does_not_confirm_in_time_is_reported_failed() {
    let (_orthanc, scp, agent) = committing_delivered(2);
    let uids = store(&agent, 1, 706);
    let listen = scp.to_string();
    let result = peer_result(ask(&agent, "release", &["--listen", &listen], &uids));
    let report = &result["reports"][0];
    assert_eq!(
        report["failed"],
        json!([[uids[0], 0x0110]]),
        "{result}\n{}",
        agent.log()
    );
    assert!(
        agent.log().contains("not confirmed by cloud"),
        "{}",
        agent.log()
    );
}

#[test]
fn orthanc_sending_with_storage_commitment_gets_success() {
    let agent_port = free_port();
    let orthanc = Orthanc::start_dicom(
        "ORTHANC",
        json!({ "uplink": ["UPLINK", "127.0.0.1", agent_port] }),
    );
    let agent = Agent::start_on_port(
        agent_port,
        &format!(
            "[[modality]]\nae_title = \"ORTHANC\"\nhost = \"127.0.0.1\"\nport = {}\n",
            orthanc.dicom_port
        ),
    );
    let files = us_images(agent.dir.path(), 2, 707);
    let mut ids = Vec::new();
    for file in &files {
        let uploaded = orthanc
            .post("/instances", &std::fs::read(file).unwrap())
            .unwrap();
        ids.push(uploaded["ID"].as_str().unwrap().to_owned());
    }
    let job = orthanc
        .post(
            "/modalities/uplink/store",
            json!({ "Resources": ids, "StorageCommitment": true, "Synchronous": true })
                .to_string()
                .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
    let transaction = job["StorageCommitmentTransactionUID"]
        .as_str()
        .unwrap_or_else(|| panic!("no transaction: {job}"))
        .to_owned();
    let answer = || {
        orthanc
            .get(&format!("/storage-commitment/{transaction}"))
            .unwrap_or(Value::Null)
    };
    wait_until(
        30,
        || !answer().is_null() && answer()["Status"] != "Pending",
        || format!("{}\n{}", answer(), agent.log()),
    );
    let answer = answer();
    assert_eq!(answer["Status"], "Success", "{answer}\n{}", agent.log());
    let committed: Vec<&str> = answer["Success"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["SOPInstanceUID"].as_str().unwrap())
        .collect();
    assert_eq!(
        committed,
        [format!("{UID_ROOT}.707.1"), format!("{UID_ROOT}.707.2")]
    );
    agent.wait_outbox(2);
}
