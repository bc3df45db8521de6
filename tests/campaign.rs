//! The power-cut campaign: kill -9 at random moments while studies arrive and the
//! queue uploads to Orthanc, restart, and repeat; at the end every instance storescu
//! saw acknowledged is in Orthanc exactly once, nothing else is, and the spool and
//! queue are empty.
//!
//! The destination takes the strict profile, so the agent makes every UID itself:
//! an instance anonymized twice differently (after a crash, say) would be a second
//! instance in Orthanc. What each sent instance must become is asked of `uplink
//! anonymize` with the box's own key.
//!
//! Orthanc stores an instance sent twice as one, so re-sends are counted by a proxy
//! between the agent and Orthanc (the UIDs Orthanc confirmed, per request): at most
//! one request's instances per cut.
//!
//! Rounds: `UPLINK_CAMPAIGN_ROUNDS` (default 50); the random moments come from
//! `UPLINK_CAMPAIGN_SEED` (default: the time), printed so a failing run can be
//! replayed.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::orthanc::Orthanc;
use common::*;

const PER_ROUND: usize = 12;
/// Instances per upload request: what one cut can make the agent send again.
const BATCH: usize = 2;

#[test]
fn fifty_power_cuts_lose_nothing_acknowledged_and_duplicate_nothing() {
    let (rounds, seed) = campaign_parameters("UPLINK_CAMPAIGN", 50);
    let mut rng = fastrand::Rng::with_seed(seed);

    let orthanc = Orthanc::start();
    // Orthanc keeps one copy per UID: re-sends are counted on the way to it.
    let proxy = common::proxy::FaultyProxy::counting(orthanc.http_port);
    // Small batches and a bandwidth cap keep uploads in flight when the kill comes.
    let mut agent = Agent::start(&format!(
        "\n[[destination]]\nname = \"cloud\"\nurl = \"http://127.0.0.1:{}/dicom-web\"\nprofile = \"strict\"\ninsecure = true\nretry_max_secs = 2\nbatch = {BATCH}\nmax_kib_per_sec = 8192\n",
        proxy.port
    ));
    let input = tempfile::tempdir().unwrap();
    let mut acked: Vec<PathBuf> = Vec::new();
    // Sent but cut off before the answer: may or may not have been committed.
    let mut in_flight: Vec<PathBuf> = Vec::new();
    let mut kills_while_sending = 0;
    let mut cuts = 0;
    for round in 0..rounds {
        let files: Vec<PathBuf> = (0..PER_ROUND)
            .map(|i| {
                let path = input.path().join(format!("{round}-{i}.dcm"));
                let phi = Phi {
                    patient: "CAMPAIGN",
                    study: round as u32,
                    instance: i as u32,
                    rows: 120,
                    cols: 160,
                };
                write_phi_image(&path, &phi);
                path
            })
            .collect();
        let scu = Command::new("storescu")
            .args(["-v", "-nh", "-aec", "UPLINK", "127.0.0.1"])
            .arg(agent.port.to_string())
            .args(&files)
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Anywhere from before the association to after the last instance, while
        // earlier rounds' instances are being uploaded.
        std::thread::sleep(Duration::from_millis(rng.u64(0..100)));
        agent.kill9();
        cuts += 1;
        let out = scu.wait_with_output().unwrap();
        let said = text(&out);
        let n = said.matches("Received Store Response (Success)").count();
        if n < files.len() {
            kills_while_sending += 1;
        }
        // storescu sends in order: the first n were acknowledged, the next may
        // have been stored with its answer cut off.
        acked.extend(files[..n].iter().cloned());
        in_flight.extend(files.get(n).cloned());
        agent.spawn();
        // Now and then a second cut right after the restart: during start-up
        // reconciliation or the first uploads.
        if rng.u8(0..4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.u64(0..100)));
            agent.kill9();
            cuts += 1;
            agent.spawn();
        }
    }

    let acked = strict_uids(&agent, &acked);
    let in_flight = strict_uids(&agent, &in_flight);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let stored = orthanc.instance_uids();
        if acked.iter().all(|u| stored.contains(u)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledged instances missing from Orthanc: {:?}\n{}",
            acked
                .iter()
                .filter(|u| !stored.contains(u))
                .collect::<Vec<_>>(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.wait_spool_empty(60);
    agent.wait_destination(30, "pending", 0);
    let stored: BTreeSet<String> = orthanc.instance_uids().into_iter().collect();
    let delivered = acked.iter().filter(|u| stored.contains(*u)).count();
    let lost = acked.len() - delivered;
    let committed = stored.iter().filter(|u| in_flight.contains(*u)).count();
    // Anything else in Orthanc is an instance twice (under another UID) or never sent.
    let duplicated: Vec<&String> = stored
        .iter()
        .filter(|u| !acked.contains(*u) && !in_flight.contains(*u))
        .collect();
    let rebuilds = agent.log().matches("rebuilding it from the spool").count();
    let resent = proxy.resent();
    eprintln!(
        "campaign: {rounds} rounds, {cuts} cuts ({kills_while_sending} cut a transfer), acked {}, delivered {delivered}, \
         re-sent {resent}, duplicated {}, lost {lost}, unacknowledged but committed {committed}, index rebuilds {rebuilds}",
        acked.len(),
        duplicated.len(),
    );
    assert_eq!(lost, 0);
    // A cut between Orthanc's answer and the queue's record re-sends that one
    // request's instances, and nothing else does.
    assert!(
        resent <= cuts * BATCH,
        "re-sent {resent} after {cuts} cuts of at most {BATCH} in flight each"
    );
    assert!(
        duplicated.is_empty(),
        "in Orthanc twice or never sent: {duplicated:?}"
    );
    assert!(
        kills_while_sending > 0,
        "no kill landed mid-transfer: nothing was tested"
    );
    assert!(agent.spool_files().is_empty(), "orphaned spool files");
    let status = agent.status_json();
    assert_eq!(status["destinations"][0]["quarantined"], 0, "{status}");
}

/// The SOP Instance UIDs the strict profile gives `files`, from `uplink anonymize`
/// with the agent's configuration and device key.
fn strict_uids(agent: &Agent, files: &[PathBuf]) -> BTreeSet<String> {
    if files.is_empty() {
        return BTreeSet::new();
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = anonymize_offline(&agent.config, "strict", out_dir.path(), files);
    assert!(out.status.success(), "{}", text(&out));
    let uids: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("anonymized"))
        .filter_map(|l| l.rsplit('/').next())
        .map(|name| name.trim_end_matches(".dcm").to_owned())
        .collect();
    assert_eq!(uids.len(), files.len(), "{}", text(&out));
    uids
}
