//! Upload to a real DICOMweb server: Orthanc with its DICOMweb plugin, on loopback.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::orthanc::Orthanc;
use common::*;

/// A destination; Orthanc on loopback speaks plain HTTP, a lab set-up.
fn destination(name: &str, url: &str, extra: &str) -> String {
    let insecure = if url.starts_with("http://") {
        "insecure = true\n"
    } else {
        ""
    };
    format!(
        "\n[[destination]]\nname = \"{name}\"\nurl = \"{url}\"\nretry_max_secs = 2\n{insecure}{extra}\n"
    )
}

fn send(agent: &Agent, args: &[&str], files: &[PathBuf]) {
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = storescu(agent.port, args, &refs);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_study_reaches_orthanc_identical_to_the_outbox_copy() {
    let orthanc = Orthanc::start();
    let outbox = tempfile::tempdir().unwrap();
    let agent = Agent::start(&format!(
        "{}{}",
        destination("archive", &orthanc.dicomweb_url(), ""),
        destination("local", &format!("dir:{}", outbox.path().display()), "")
    ));
    let input = tempfile::tempdir().unwrap();
    let mut files = us_images(input.path(), 6, 20);
    let jpeg = input.path().join("jpeg.dcm");
    write_jpeg_image(&jpeg, "1.2.826.0.1.3680043.10.20.100");
    files.push(jpeg);
    let clip = input.path().join("clip.dcm");
    write_clip(&clip, "1.2.826.0.1.3680043.10.20.200", 40 << 20); // large lane
    files.push(clip);
    send(&agent, &["-R", "-xy"], &files);

    let uids = orthanc.wait_instances(files.len(), 60, || agent.log());
    assert_eq!(uids.len(), files.len(), "each instance exactly once");
    let fetched = tempfile::tempdir().unwrap();
    for file in &files {
        let uid = file_sop_instance(file);
        let stored = orthanc.file(&uid, fetched.path());
        let local = outbox.path().join(format!("{uid}.dcm"));
        wait_until(20, || local.exists(), || agent.log());
        assert!(
            same_data_set(&stored, &local),
            "{uid}: Orthanc's copy differs"
        );
    }
    agent.wait_spool_empty(10);
    // The status file follows within a second or so.
    agent.wait_destination(10, "delivered", files.len());
    assert_eq!(agent.status_json()["destinations"][0]["state"], "ready");
}

#[test]
fn an_outage_is_ridden_out_and_nothing_arrives_twice() {
    let mut orthanc = Orthanc::start();
    let agent = Agent::start(&destination("cloud", &orthanc.dicomweb_url(), "batch = 4"));
    orthanc.pause();
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), 20, 21);
    send(&agent, &["-R"], &files);
    // The queue holds them and status says why.
    wait_until(
        15,
        || {
            let s = agent.status_json();
            s["destinations"][0]["state"] == "offline" && s["destinations"][0]["pending"] == 20
        },
        || format!("{}", agent.status_json()),
    );
    let status = agent.status_json();
    assert!(
        status["destinations"][0]["next_attempt"].is_string(),
        "{status}"
    );
    assert!(
        status["destinations"][0]["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("onnect"),
        "{status}"
    );
    assert_eq!(agent.spool_files().len(), 20);

    orthanc.resume();
    let uids = orthanc.wait_instances(20, 60, || agent.log());
    std::thread::sleep(Duration::from_secs(2));
    let uids_after = orthanc.instance_uids();
    assert_eq!(uids_after.len(), 20, "nothing twice");
    assert_eq!(uids.iter().collect::<BTreeSet<_>>().len(), 20);
    agent.wait_spool_empty(10);
    agent.wait_destination(10, "state", "ready");
}

#[test]
fn sigkill_during_upload_delivers_everything_exactly_once() {
    let orthanc = Orthanc::start();
    // A bandwidth cap keeps the clip's request in flight long enough to kill it.
    let mut agent = Agent::start(&destination(
        "cloud",
        &orthanc.dicomweb_url(),
        "max_kib_per_sec = 20480",
    ));
    let input = tempfile::tempdir().unwrap();
    let mut files = us_images(input.path(), 10, 22);
    let clip = input.path().join("clip.dcm");
    write_clip(&clip, "1.2.826.0.1.3680043.10.22.200", 96 << 20);
    files.push(clip);
    send(&agent, &["-R"], &files);
    wait_until(
        30,
        || {
            let s = agent.status_json();
            s["destinations"][0]["uploading"]
                .as_array()
                .is_some_and(|u| {
                    u.iter()
                        .any(|u| u["lane"] == "large" && u["sent_bytes"].as_u64() > Some(8 << 20))
                })
        },
        || format!("{}", agent.status_json()),
    );
    agent.kill9();
    agent.spawn();
    let uids = orthanc.wait_instances(files.len(), 90, || agent.log());
    agent.wait_spool_empty(20);
    let uids_after = orthanc.instance_uids();
    assert_eq!(uids_after.len(), files.len(), "exactly once: {uids:?}");
}

#[test]
fn wrong_credentials_are_reported_and_right_ones_work() {
    let orthanc = Orthanc::start_with(Some(("clinic", "s3cret")));
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), 3, 23);

    let secret = input.path().join("password");
    std::fs::write(&secret, "wrong\n").unwrap();
    let wrong = Agent::start(&destination(
        "cloud",
        &orthanc.dicomweb_url(),
        &format!(
            "auth = \"basic\"\nusername = \"clinic\"\npassword_file = \"{}\"",
            secret.display()
        ),
    ));
    send(&wrong, &["-R"], &files);
    wrong.wait_destination(15, "state", "authentication refused");
    assert!(wrong.log().contains("credentials refused"));
    assert!(
        !wrong.log().contains("wrong"),
        "the password never reaches the log"
    );
    assert!(orthanc.instance_uids().is_empty());

    std::fs::write(&secret, "s3cret\n").unwrap();
    let right = Agent::start(&destination(
        "cloud",
        &orthanc.dicomweb_url(),
        &format!(
            "auth = \"basic\"\nusername = \"clinic\"\npassword_file = \"{}\"",
            secret.display()
        ),
    ));
    send(&right, &["-R"], &files);
    orthanc.wait_instances(3, 30, || right.log());
}

#[test]
fn https_is_trusted_only_with_the_configured_ca() {
    let mut orthanc = Orthanc::start();
    let (url, ca) = orthanc.with_tls();
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), 2, 24);

    let untrusting = Agent::start(&destination("cloud", &url, ""));
    send(&untrusting, &["-R"], &files);
    untrusting.wait_destination(15, "state", "offline");
    let error = untrusting.status_json()["destinations"][0]["last_error"]["message"].to_string();
    assert!(
        error.to_lowercase().contains("certificate") || error.contains("UnknownIssuer"),
        "{error}"
    );
    assert!(orthanc.instance_uids().is_empty());
    drop(untrusting);

    let trusting = Agent::start(&destination(
        "cloud",
        &url,
        &format!("ca_file = \"{}\"", ca.display()),
    ));
    send(&trusting, &["-R"], &files);
    orthanc.wait_instances(2, 30, || trusting.log());
}

#[test]
fn an_instance_the_server_refuses_is_quarantined_and_the_rest_arrive() {
    let orthanc = Orthanc::start();
    let agent = Agent::start(&destination("cloud", &orthanc.dicomweb_url(), "batch = 8"));
    let input = tempfile::tempdir().unwrap();
    let mut files = us_images(input.path(), 4, 25);
    // No Study Instance UID: Orthanc refuses it (400, Failed SOP Sequence).
    let bad = input.path().join("bad.dcm");
    refused_by_orthanc(&bad, "1.2.826.0.1.3680043.10.25.99");
    files.insert(2, bad);
    send(&agent, &["-R"], &files);

    let uids = orthanc.wait_instances(4, 60, || agent.log());
    assert!(!uids.contains(&"1.2.826.0.1.3680043.10.25.99".to_owned()));
    agent.wait_destination(10, "quarantined", 1);
    let status = agent.status_json();
    assert_eq!(status["destinations"][0]["pending"], 0, "{status}");
    assert!(
        status["destinations"][0]["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("quarantined")
    );
    assert_eq!(
        agent.spool_files().len(),
        1,
        "the refused instance stays on the card"
    );

    // Put back, it is refused again and returns to quarantine; nothing is lost.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_uplink"))
        .args(["retry-quarantine", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 quarantined instance(s) back in the queue"),
        "{}",
        text(&out)
    );
    wait_until(
        10,
        || {
            agent
                .log()
                .matches("quarantined: server refused it")
                .count()
                >= 2
        },
        || agent.log(),
    );
    assert_eq!(agent.spool_files().len(), 1);
}

#[test]
fn uploading_a_large_clip_keeps_memory_flat() {
    let orthanc = Orthanc::start();
    let agent = Agent::start(&destination("cloud", &orthanc.dicomweb_url(), ""));
    let input = tempfile::tempdir().unwrap();
    // A small image first: the peak after it is the agent's own working set
    // (threads, buffers, the debug binary's pages), which the clip must not grow.
    let small = input.path().join("small.dcm");
    write_us_image(&small, "1.2.826.0.1.3680043.10.26.0", EXPLICIT_LE, 64, 64);
    send(&agent, &[], std::slice::from_ref(&small));
    orthanc.wait_instances(1, 60, || agent.log());
    agent.wait_spool_empty(20);
    let before = agent.peak_rss_kib();
    let clip = input.path().join("clip.dcm");
    write_clip(&clip, "1.2.826.0.1.3680043.10.26.1", 256 << 20);
    send(&agent, &["-R"], std::slice::from_ref(&clip));
    orthanc.wait_instances(2, 120, || agent.log());
    agent.wait_spool_empty(20);
    let peak = agent.peak_rss_kib();
    eprintln!(
        "agent peak RSS: {before} KiB after a small image, {peak} KiB after receiving and uploading a 256 MiB clip"
    );
    assert!(
        peak - before < 8 * 1024,
        "a 256 MiB clip grew the peak RSS from {before} to {peak} KiB"
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_flaky_line_429s_503s_and_a_dropped_connection_end_with_everything_once() {
    let orthanc = Orthanc::start();
    let proxy = common::proxy::FaultyProxy::start(orthanc.http_port, 3, 200_000);
    let url = format!("http://127.0.0.1:{}/dicom-web", proxy.port);
    let agent = Agent::start(&destination("cloud", &url, "batch = 4"));
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), 12, 27);
    send(&agent, &["-R"], &files);
    let uids = orthanc.wait_instances(12, 60, || format!("{:?}\n{}", proxy.events(), agent.log()));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(orthanc.instance_uids().len(), 12, "nothing twice: {uids:?}");
    // Orthanc keeps one copy per UID: a re-send shows only at the proxy.
    assert_eq!(proxy.confirmed().len(), 12, "{:?}", proxy.confirmed());
    assert_eq!(proxy.resent(), 0);
    let events = proxy.events();
    assert!(
        events.iter().any(|e| e.starts_with("503")) && events.iter().any(|e| e.starts_with("429")),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.contains("cut")), "{events:?}");
    let log = agent.log();
    // Some refusals meet the cheap reachability probe, which does not log them.
    assert!(
        log.contains("HTTP 503") || log.contains("HTTP 429"),
        "the agent saw the refusals:\n{log}"
    );
    agent.wait_spool_empty(10);
    agent.wait_destination(10, "state", "ready");
}

/// An answer given by something that is not the archive.
fn canned(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_login_page_a_redirect_or_an_empty_200_confirms_nothing() {
    let orthanc = Orthanc::start();
    let portal =
        "<!DOCTYPE html><html><body><form>Guest Wi-Fi: accept the terms</form></body></html>";
    let proxy = common::proxy::FaultyProxy::with_plan(
        orthanc.http_port,
        common::proxy::Plan {
            canned: [
                canned(
                    "302 Found",
                    "Location: http://portal.example/login?session=QX7\r\n",
                    "",
                ),
                canned("200 OK", "Content-Type: text/plain\r\n", ""),
                canned("200 OK", "Content-Type: text/html\r\n", portal),
            ]
            .into(),
            // Then Orthanc answers in XML, as a server that ignores Accept does.
            accept: Some("application/dicom+xml".into()),
            ..Default::default()
        },
    );
    let url = format!("http://127.0.0.1:{}/dicom-web", proxy.port);
    let agent = Agent::start(&destination("cloud", &url, "batch = 4"));
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), 8, 29);
    send(&agent, &["-R"], &files);
    // The portal's page is the last thing before Orthanc: status says what it was.
    wait_until(
        20,
        || {
            agent.status_json()["destinations"][0]["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("HTML page: a captive portal"))
        },
        || format!("{}\n{}", agent.status_json(), agent.log()),
    );
    // Nothing counts as delivered that Orthanc does not have.
    let delivered = agent.status_json()["destinations"][0]["delivered"]
        .as_u64()
        .unwrap();
    assert!(
        delivered <= orthanc.instance_uids().len() as u64,
        "{delivered} delivered, Orthanc has {}",
        orthanc.instance_uids().len()
    );
    orthanc.wait_instances(8, 60, || format!("{:?}\n{}", proxy.events(), agent.log()));
    agent.wait_spool_empty(20);
    agent.wait_destination(10, "delivered", 8);
    assert_eq!(proxy.events().len(), 3, "{:?}", proxy.events());
    let log = agent.log();
    for said in [
        "redirected to http://portal.example/login,",
        "empty",
        "HTML page",
    ] {
        assert!(log.contains(said), "{said:?} not in the log:\n{log}");
    }
    assert!(!log.contains("QX7"), "the redirect's query is not logged");
}

#[test]
fn secrets_never_reach_logs_status_or_the_card() {
    let orthanc = Orthanc::start_with(Some(("clinic", "s3cret")));
    let input = tempfile::tempdir().unwrap();
    let token = input.path().join("token");
    std::fs::write(&token, "tok-QX7-never-print-me\n").unwrap();
    let agent = Agent::start(&destination(
        "cloud",
        &orthanc.dicomweb_url(),
        &format!("auth = \"bearer\"\ntoken_file = \"{}\"", token.display()),
    ));
    send(&agent, &["-R"], &us_images(input.path(), 2, 28));
    agent.wait_destination(15, "state", "authentication refused");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_uplink"))
        .args(["check-config", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    let status = agent.status_text();
    let mut places = vec![
        ("log".to_owned(), agent.log().into_bytes()),
        ("check-config".to_owned(), check.stdout),
        ("status".to_owned(), status.into_bytes()),
    ];
    places.extend(
        agent
            .written_files()
            .into_iter()
            .map(|(path, bytes)| (path.display().to_string(), bytes)),
    );
    for (place, bytes) in &places {
        assert!(
            !bytes.windows(9).any(|w| w == b"QX7-never"),
            "the token is in {place}"
        );
    }
    assert!(
        String::from_utf8_lossy(&places[1].1).contains("********"),
        "check-config masks it"
    );
}

#[test]
fn a_long_outage_shows_its_backlog_and_a_slow_line_drains_it() {
    let mut orthanc = Orthanc::start();
    // The clinic's uplink: 512 KiB/s towards the cloud.
    let rate = 512 * 1024;
    let proxy = common::proxy::FaultyProxy::slow(orthanc.http_port, rate);
    let url = format!("http://127.0.0.1:{}/dicom-web", proxy.port);
    orthanc.pause();
    let agent = Agent::start(&destination("cloud", &url, ""));
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), 120, 28);
    // The cloud is away: every exam is still taken at once.
    for chunk in files.chunks(20) {
        send(&agent, &["-R"], chunk);
    }
    agent.wait_destination(20, "state", "offline");
    agent.wait_destination(20, "pending", 120);
    let status = agent.status_json();
    assert!(
        status["destinations"][0]["pending_bytes"].as_u64() > Some(120 * 14_000),
        "{status}"
    );
    let said = agent.status_text();
    assert!(
        said.contains("pending 120"),
        "the backlog is visible: {said}"
    );

    // It comes back behind a slow line: everything drains, at the line's pace.
    let started = std::time::Instant::now();
    orthanc.resume();
    orthanc.wait_instances(120, 120, || agent.log());
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let floor = Duration::from_secs_f64(bytes as f64 / rate as f64 * 0.8);
    assert!(
        started.elapsed() >= floor,
        "drained in {:?}, faster than the line allows ({floor:?})",
        started.elapsed()
    );
    agent.wait_spool_empty(20);
    agent.wait_destination(20, "pending", 0);
}

#[test]
fn an_instance_larger_than_the_destination_takes_is_refused_for_it_not_retried() {
    let orthanc = Orthanc::start();
    let agent = Agent::start(&destination(
        "cloud",
        &orthanc.dicomweb_url(),
        "max_instance_mib = 1\nmax_request_mib = 2\n",
    ));
    let input = tempfile::tempdir().unwrap();
    let small = us_images(input.path(), 1, 61).remove(0);
    let large = input.path().join("large.dcm");
    write_us_image(&large, "1.2.826.0.1.3680043.10.62.1", EXPLICIT_LE, 700, 700);
    send(&agent, &[], &[small, large]);
    orthanc.wait_instances(1, 30, || agent.log());
    agent.wait_destination(30, "quarantined", 1);
    let status = agent.status_json();
    let error = status["destinations"][0]["last_error"]["message"].to_string();
    assert!(error.contains("max_instance_mib"), "{error}");
    assert_eq!(
        status["destinations"][0]["pending"], 0,
        "not retried: {status}"
    );
    assert_eq!(orthanc.instance_uids(), ["1.2.826.0.1.3680043.10.61.1"]);
}

/// The data set of a file as dcmdump prints it, without its file meta and its
/// pixel data (which implicit VR calls OW and the original OB).
fn data_set_dump(file: &Path) -> Vec<String> {
    let out = dcmtk("dcmdump", &["+L", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('(') && !l.starts_with("(0002") && !l.starts_with("(7fe0"))
        .map(str::to_owned)
        .collect()
}

/// Whether two files hold the same pixel data bytes (pydicom, of the fixtures).
fn same_pixels(a: &Path, b: &Path) -> bool {
    let out = fixtures_python()
        .args([
            "-c",
            "import sys, pydicom; r = [pydicom.dcmread(f).PixelData for f in sys.argv[1:]]; print(r[0] == r[1])",
        ])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

#[test]
fn an_explicit_vr_destination_gets_implicit_vr_instances_in_explicit_vr() {
    let orthanc = Orthanc::start();
    let agent = Agent::start(&format!(
        "{}{}\n[[pixel_rule]]\nrows = 60\ncolumns = 80\naction = \"keep\"\n",
        destination(
            "azure",
            &orthanc.dicomweb_url(),
            "transfer_syntax = \"explicit\"\n"
        ),
        destination(
            "anonymous",
            &orthanc.dicomweb_url(),
            "profile = \"strict\"\ntransfer_syntax = \"explicit\"\n"
        ),
    ));
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), 2, 63);
    // Only implicit VR proposed: storescu sends the files in Implicit VR Little Endian.
    send(&agent, &["-xi"], &files);
    let uids = orthanc.wait_instances(4, 30, || agent.log());
    let got = tempfile::tempdir().unwrap();
    for uid in &uids {
        let file = orthanc.file(uid, got.path());
        let meta = dcmtk(
            "dcmdump",
            &["-s", "+P", "0002,0010", file.to_str().unwrap()],
        );
        assert!(
            text(&meta).contains("=LittleEndianExplicit"),
            "{uid}: {}",
            text(&meta)
        );
    }
    // The identified copy holds exactly what was sent, element for element.
    for (i, original) in files.iter().enumerate() {
        let uid = format!("1.2.826.0.1.3680043.10.63.{}", i + 1);
        let received = orthanc.file(&uid, got.path());
        let (got, sent) = (data_set_dump(&received), data_set_dump(original));
        // Private elements have no VR in implicit VR: explicit VR calls them UN
        // (PS3.5 6.2.2), with the same bytes.
        let private_un = |l: &&String| l.starts_with("(0009") && l.contains(" UN ");
        let differ: Vec<_> = got
            .iter()
            .filter(|l| !sent.contains(l) && !private_un(l))
            .collect();
        assert!(
            differ.is_empty() && got.len() == sent.len(),
            "{uid}: {differ:?}"
        );
        assert!(same_pixels(&received, original), "{uid}");
    }
}
