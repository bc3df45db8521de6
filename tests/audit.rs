//! The audit trail after a run of sends, uploads and a refusal: every instance's
//! life can be followed in `uplink audit` — received (with the calling AE title,
//! address, SOP class and size), a copy stored per profile, delivered to each
//! destination or refused by its server, discarded by a profile or not
//! deliverable under it, deleted once
//! every destination has it — by its keyed digest and queue ids alone, and no
//! planted patient marker or original UID is anywhere in it.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::fixtures::{MARKERS, phi_study};
use common::orthanc::Orthanc;
use common::*;

/// A line of the trail: time, step, fields.
struct Line {
    at: String,
    step: String,
    fields: BTreeMap<String, String>,
}

fn parse(line: &str) -> Line {
    let mut parts = line.splitn(3, ' ');
    let at = parts.next().unwrap().to_owned();
    let step = parts.next().unwrap().to_owned();
    let mut fields = BTreeMap::new();
    let mut rest = parts.next().unwrap_or("");
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').unwrap();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find("\" ").unwrap_or(quoted.len() - 1);
                (&quoted[..end], quoted[end + 1..].trim_start())
            }
            None => after.split_once(' ').unwrap_or((after, "")),
        };
        fields.insert(key.to_owned(), value.to_owned());
        rest = after;
    }
    Line { at, step, fields }
}

fn audit(agent: &Agent, since: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_uplink"));
    command.args(["audit", "--config"]).arg(&agent.config);
    if let Some(since) = since {
        command.args(["--since", since]);
    }
    command.output().unwrap()
}

/// The UIDs a file carries (SOP Instance, Study, Series), as dcmdump prints them.
fn uids(file: &std::path::Path) -> Vec<String> {
    let out = dcmtk(
        "dcmdump",
        &[
            "+P",
            "0008,0018",
            "+P",
            "0020,000d",
            "+P",
            "0020,000e",
            file.to_str().unwrap(),
        ],
    );
    text(&out)
        .lines()
        .filter_map(|l| Some(l.split('[').nth(1)?.split(']').next()?.to_owned()))
        .collect()
}

#[test]
fn every_instance_can_be_followed_and_no_patient_is_named() {
    let orthanc = Orthanc::start();
    let archive = tempfile::tempdir().unwrap();
    let agent = Agent::start(&format!(
        "[listener]\nae_title = \"UPLINK\"\n\n\
         [[destination]]\nname = \"cloud\"\nurl = \"{}\"\ninsecure = true\n\n\
         [[destination]]\nname = \"archive\"\nurl = \"dir:{}\"\nprofile = \"strict\"\n",
        orthanc.dicomweb_url(),
        archive.path().display()
    ));
    let input = tempfile::tempdir().unwrap();
    let mut files = phi_study(input.path(), "ZQXAUDIT", 61, 3);
    // A PDF report: the strict archive discards it, the cloud gets it.
    files.push(pdf_report(input.path()));
    // No Study Instance UID: Orthanc refuses it for good; and no ultrasound
    // regions on an image strict cannot find the area of: not deliverable there.
    let bad = input.path().join("bad.dcm");
    refused_by_orthanc(&bad, "1.2.826.0.1.3680043.10.61.99");
    files.push(bad);
    let sent: Vec<&std::path::Path> = files.iter().map(|f| f.as_path()).collect();
    let out = storescu(agent.port, &["-aet", "US_ROOM_2"], &sent);
    assert!(out.status.success(), "{}", text(&out));

    orthanc.wait_instances(4, 60, || agent.log());
    agent.wait_files(archive.path(), 3);
    agent.wait_destination(30, "quarantined", 1);
    wait_until(
        30,
        || text(&audit(&agent, None)).matches(" deleted ").count() == 7,
        || text(&audit(&agent, None)),
    );

    let out = audit(&agent, None);
    assert!(out.status.success(), "{}", text(&out));
    let trail = String::from_utf8(out.stdout).unwrap();
    for marker in MARKERS {
        assert!(
            !trail.contains(marker),
            "the trail carries {marker}:\n{trail}"
        );
    }
    for file in &files {
        for uid in uids(file) {
            assert!(!trail.contains(&uid), "the trail carries UID {uid}");
        }
    }

    let lines: Vec<Line> = trail.lines().map(parse).collect();
    let mut instances: BTreeMap<String, Vec<&Line>> = BTreeMap::new();
    for line in &lines {
        assert!(line.at.ends_with('Z') && line.at.len() == 20, "{}", line.at);
        let instance = line
            .fields
            .get("instance")
            .expect("every line names its instance");
        instances.entry(instance.clone()).or_default().push(line);
    }
    assert_eq!(instances.len(), 5, "{trail}");
    let mut discarded = 0;
    let mut refused = 0;
    let mut not_deliverable = 0;
    for (instance, life) in &instances {
        let steps: Vec<&str> = life.iter().map(|l| l.step.as_str()).collect();
        let received = life[0];
        assert_eq!(received.step, "received", "{instance}: {steps:?}");
        assert_eq!(received.fields["from"], "US_ROOM_2@127.0.0.1");
        assert!(received.fields["sop_class"].starts_with("1.2.840.10008.5.1.4.1.1."));
        assert!(received.fields["bytes"].parse::<u64>().unwrap() > 1000);
        // Each copy's queue id: stored, then delivered or refused, then deleted.
        let stored: Vec<&&Line> = life.iter().filter(|l| l.step == "stored").collect();
        for copy in &stored {
            let queue = &copy.fields["queue"];
            let of_copy: Vec<&str> = life
                .iter()
                .filter(|l| l.fields.get("queue") == Some(queue))
                .map(|l| l.step.as_str())
                .collect();
            match copy.fields["profile"].as_str() {
                "strict" => {
                    assert!(copy.fields["uid"].starts_with("2.25."), "{instance}");
                    assert_eq!(of_copy, ["stored", "delivered", "deleted"], "{instance}");
                }
                "identified" if of_copy.contains(&"refused-by-server") => {
                    refused += 1;
                    assert_eq!(of_copy, ["stored", "refused-by-server"], "{instance}");
                }
                "identified" => {
                    assert_eq!(of_copy, ["stored", "delivered", "deleted"], "{instance}")
                }
                other => panic!("{instance}: profile {other}"),
            }
        }
        if steps.contains(&"discarded") {
            discarded += 1;
            let line = life.iter().find(|l| l.step == "discarded").unwrap();
            assert_eq!(line.fields["destination"], "archive");
            assert_eq!(stored.len(), 1, "{instance}: {steps:?}");
        } else if steps.contains(&"not-deliverable") {
            not_deliverable += 1;
            let line = life.iter().find(|l| l.step == "not-deliverable").unwrap();
            assert_eq!(line.fields["destination"], "archive");
            assert!(
                line.fields["reason"].contains("burned-in text"),
                "{instance}"
            );
            assert_eq!(stored.len(), 1, "{instance}: {steps:?}");
        } else {
            assert_eq!(stored.len(), 2, "{instance}: {steps:?}");
        }
        let delivered: Vec<&str> = life
            .iter()
            .filter(|l| l.step == "delivered")
            .map(|l| l.fields["destination"].as_str())
            .collect();
        assert!(delivered.iter().all(|d| ["cloud", "archive"].contains(d)));
    }
    assert_eq!((discarded, refused, not_deliverable), (1, 1, 1), "{trail}");

    // --since: an hour ago has it all, tomorrow nothing; a wrong one says how.
    assert_eq!(
        text(&audit(&agent, Some("1h"))).lines().count(),
        lines.len()
    );
    let tomorrow = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(86_400),
    )
    .to_string();
    let out = audit(&agent, Some(&tomorrow));
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );
    let out = audit(&agent, Some("last tuesday"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--since"), "{}", text(&out));
}
