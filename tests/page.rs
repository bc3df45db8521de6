//! The technician's page in a real browser (Debian's headless Chromium) against a
//! running agent, in the three states a technician must tell apart at a glance:
//! offline with a backlog (amber, cloud LED dark), all well (green, cloud LED
//! lit), a person needed (red, attention LED lit). Each screenshot is checked by
//! its colours, each page as the browser parsed it for what it says and for the
//! absence of every planted patient marker. Then what the page serves beside:
//! the access token, `status.json`, the audit trail download, and the answers
//! to requests that are not the page's.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::browser::{self, Shot};
use common::fixtures::{MARKERS, phi_study};
use common::orthanc::Orthanc;
use common::*;

/// The page's colours (`STYLE` in src/status/page.rs).
const GREEN: [u8; 3] = [0x1e, 0x7e, 0x34];
const AMBER: [u8; 3] = [0xb2, 0x6a, 0x00];
const RED: [u8; 3] = [0xb7, 0x1c, 0x1c];
const CLOUD_LIT: [u8; 3] = [0x2f, 0x80, 0xff];
const ATTENTION_LIT: [u8; 3] = [0xff, 0x2d, 0x55];
/// The banner's rows (it is some 85 pixels high).
const BANNER: std::ops::Range<usize> = 0..60;
/// A lit LED on the page is a 30-pixel disc: some 700 pixels.
const LIT: usize = 400;

fn web(port: u16, token: &str) -> String {
    format!("\n[web]\nport = {port}\ntoken = \"{token}\"\n")
}

/// Whether the cloud and the attention LED are lit in a screenshot (a disc of
/// their colour, or none of it: anything between is neither).
fn lit(shot: &Shot) -> (bool, bool) {
    let one = |colour| match shot.count(colour, 0..shot.height) {
        n if n > LIT => true,
        n if n < 20 => false,
        n => panic!("{n} pixels of {colour:?}: neither a lit LED nor a dark one"),
    };
    (one(CLOUD_LIT), one(ATTENTION_LIT))
}

/// Looks at the page as a browser shows it; keeps the screenshot.
fn look(port: u16, token: &str, name: &str) -> (Shot, String) {
    let url = format!("http://127.0.0.1:{port}/?token={token}");
    let shot = browser::screenshot(&url);
    let kept = shot.keep(name);
    let dom = browser::dom(&url);
    for marker in MARKERS {
        assert!(!dom.contains(marker), "{name}: the page shows {marker}");
    }
    println!("{name}: {}", kept.display());
    (shot, dom)
}

/// One raw request, its whole answer.
fn http(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn offline_with_a_backlog_shows_amber_and_a_dark_cloud_led() {
    let closed = free_port();
    let page = free_port();
    let agent = Agent::start(&format!(
        "[[destination]]\nname = \"cloud\"\nurl = \"http://127.0.0.1:{closed}/dicom-web\"\ninsecure = true\nretry_max_secs = 2\n{}",
        web(page, "page-token-offline")
    ));
    let input = tempfile::tempdir().unwrap();
    let files = phi_study(input.path(), "ZQXPAGE", 77, 2);
    let out = storescu(agent.port, &[], &[&files[0], &files[1]]);
    assert!(out.status.success(), "{}", text(&out));
    agent.wait_destination(30, "state", "offline");

    let (shot, dom) = look(page, "page-token-offline", "offline");
    assert!(shot.share(AMBER, BANNER) > 0.5, "the banner is not amber");
    assert_eq!(lit(&shot), (false, false), "cloud and attention LEDs lit");
    assert!(dom.contains("<h1>Offline</h1>"), "{dom}");
    assert!(
        dom.contains("cloud is offline: 2 instance(s) wait on the card"),
        "{dom}"
    );
}

#[test]
fn all_well_then_a_refused_instance_turns_the_page_red() {
    let orthanc = Orthanc::start();
    let page = free_port();
    let agent = Agent::start(&format!(
        "[[destination]]\nname = \"cloud\"\nurl = \"{}\"\ninsecure = true\n{}",
        orthanc.dicomweb_url(),
        web(page, "page-token-cloud")
    ));
    let input = tempfile::tempdir().unwrap();
    let files = phi_study(input.path(), "ZQXPAGE", 77, 2);
    let out = storescu(agent.port, &[], &[&files[0], &files[1]]);
    assert!(out.status.success(), "{}", text(&out));
    orthanc.wait_instances(2, 60, || agent.log());
    agent.wait_destination(30, "pending", 0);

    let (shot, dom) = look(page, "page-token-cloud", "all-well");
    assert!(shot.share(GREEN, BANNER) > 0.5, "the banner is not green");
    assert_eq!(lit(&shot), (true, false), "cloud and attention LEDs lit");
    assert!(dom.contains("<h1>All well</h1>"), "{dom}");
    assert!(dom.contains("2 instance(s)"), "{dom}");

    // No Study Instance UID: Orthanc refuses it for good, it goes to quarantine.
    let bad = input.path().join("bad.dcm");
    refused_by_orthanc(&bad, "1.2.826.0.1.3680043.10.77.99");
    let out = storescu(agent.port, &[], &[&bad]);
    assert!(out.status.success(), "{}", text(&out));
    agent.wait_destination(30, "quarantined", 1);

    let (shot, dom) = look(page, "page-token-cloud", "attention");
    assert!(shot.share(RED, BANNER) > 0.5, "the banner is not red");
    assert_eq!(lit(&shot), (true, true), "cloud and attention LEDs lit");
    assert!(dom.contains("A person is needed"), "{dom}");
    assert!(
        dom.contains("1 instance(s) refused by destination cloud are in quarantine"),
        "{dom}"
    );

    // Beside the page: the token, status.json, the trail, and other requests.
    let answer = http(page, "GET / HTTP/1.1\r\nHost: box\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    assert!(!answer.contains("page-token-cloud"), "{answer}");
    let answer = http(
        page,
        "GET /status.json HTTP/1.1\r\nAuthorization: Bearer page-token-cloud\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let json: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["destinations"][0]["quarantined"], 1, "{json}");
    let answer = http(
        page,
        "GET /audit.log?token=page-token-cloud HTTP/1.1\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        answer.contains("Content-Disposition: attachment"),
        "{answer}"
    );
    let trail = answer.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(trail.matches(" received ").count(), 3, "{trail}");
    assert_eq!(trail.matches(" refused-by-server ").count(), 1, "{trail}");
    for marker in MARKERS {
        assert!(!trail.contains(marker), "the trail carries {marker}");
    }
    for (request, status) in [
        ("POST / HTTP/1.1\r\n\r\n", "405"),
        (
            "GET /etc/passwd?token=page-token-cloud HTTP/1.1\r\n\r\n",
            "404",
        ),
        ("hello\r\n\r\n", "400"),
        ("GET /?token=wrong-token-000 HTTP/1.1\r\n\r\n", "401"),
    ] {
        let answer = http(page, request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?}: {answer}"
        );
    }
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(http(page, &huge).starts_with("HTTP/1.1 431 "));
    // A client that says nothing does not keep the page from others.
    let _silent = TcpStream::connect(("127.0.0.1", page)).unwrap();
    let answer = http(page, "HEAD /?token=page-token-cloud HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "HEAD has no body: {answer}");
    // Exams still go while the page is asked.
    let third = phi_study(input.path(), "ZQXPAGE", 77, 3).remove(2);
    let out = storescu(agent.port, &[], &[&third]);
    assert!(out.status.success(), "{}", text(&out));
    orthanc.wait_instances(3, 60, || agent.log());
    // More browsers than it serves at once: the next is told to come back.
    let _held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", page)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let answer = http(page, "GET /?token=page-token-cloud HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
}
