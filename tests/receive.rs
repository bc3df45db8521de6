//! The listener against dcmtk's real `echoscu` and `storescu`.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

fn fixtures(dir: &std::path::Path, n: usize, ts: &str, prefix: &str) -> Vec<PathBuf> {
    (1..=n)
        .map(|i| {
            let path = dir.join(format!("{prefix}{i}.dcm"));
            write_us_image(
                &path,
                &format!(
                    "1.2.826.0.1.3680043.10.2.{prefix_n}.{i}",
                    prefix_n = prefix.len()
                ),
                ts,
                60,
                80,
            );
            path
        })
        .collect()
}

#[test]
fn echo_succeeds_and_wrong_called_ae_is_rejected() {
    let agent = Agent::start("");
    let port = agent.port.to_string();
    let ok = dcmtk("echoscu", &["-aec", "UPLINK", "127.0.0.1", &port]);
    assert!(ok.status.success(), "{}", text(&ok));
    let wrong = dcmtk("echoscu", &["-aec", "SOMEONE", "127.0.0.1", &port]);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("Called AE Title Not Recognized"),
        "{}",
        text(&wrong)
    );
    assert!(agent.log().contains("called AE title not recognized"));
}

/// Sends `files` to the agent and to dcmtk's bit-preserving storescp with the same
/// storescu options, and checks every data set in our outbox equals dcmtk's.
fn assert_preserved_like_dcmtk(agent: &Agent, storescu_args: &[&str], files: &[PathBuf]) {
    let refs: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let out = storescu(agent.port, storescu_args, &refs);
    assert!(out.status.success(), "{}", text(&out));
    let reference = dcmtk_reference(storescu_args, &refs);
    agent.wait_outbox(files.len());
    for original in files {
        let uid = file_sop_instance(original);
        let ours = agent.outbox().join(format!("{uid}.dcm"));
        let theirs = file_for_instance(reference.path(), &uid);
        assert_eq!(
            file_transfer_syntax(&ours),
            file_transfer_syntax(&theirs),
            "{uid}"
        );
        assert!(
            same_data_set(&ours, &theirs),
            "data set of {uid} differs from dcmtk's bit-preserving copy"
        );
        let dump = dcmtk("dcmdump", &["-q", "+M", ours.to_str().unwrap()]);
        assert!(
            dump.status.success(),
            "dcmdump cannot read {uid}: {}",
            text(&dump)
        );
    }
}

#[test]
fn a_study_in_explicit_and_implicit_vr_and_jpeg_lands_byte_for_byte() {
    let agent = Agent::start("");
    let input = tempfile::tempdir().unwrap();
    let mut files = fixtures(input.path(), 5, EXPLICIT_LE, "e");
    files.extend(fixtures(input.path(), 3, IMPLICIT_LE, "imp"));
    let jpeg = input.path().join("jpeg.dcm");
    write_jpeg_image(&jpeg, "1.2.826.0.1.3680043.10.2.9.1");
    files.push(jpeg);
    // -R -xy: each file's own transfer syntax (JPEG baseline for the last), no conversion.
    assert_preserved_like_dcmtk(&agent, &["-R", "-xy"], &files);
    let jpeg_copy = agent.outbox().join("1.2.826.0.1.3680043.10.2.9.1.dcm");
    assert_eq!(file_transfer_syntax(&jpeg_copy), JPEG_BASELINE);
    // Delivered instances leave the spool.
    agent.wait_spool_empty(10);
    // The status file follows within a second or so.
    agent.wait_destination(10, "delivered", files.len());
    let status = agent.status_json();
    assert_eq!(status["counters"]["instances_received"], files.len());
    assert_eq!(status["destinations"][0]["pending"], 0);
}

#[test]
fn big_endian_and_deflated_data_sets_are_kept_as_sent() {
    let input = tempfile::tempdir().unwrap();
    let source = input.path().join("source.dcm");
    write_us_image(&source, "1.2.826.0.1.3680043.10.3.1", EXPLICIT_LE, 40, 40);
    for (flag, name, uid, propose) in [
        ("+tb", "big.dcm", "1.2.840.10008.1.2.2", "-xb"),
        ("+td", "deflated.dcm", "1.2.840.10008.1.2.1.99", "-xd"),
    ] {
        let path = input.path().join(name);
        let out = dcmtk(
            "dcmconv",
            &[flag, source.to_str().unwrap(), path.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(file_transfer_syntax(&path), uid);
        let agent = Agent::start("");
        if flag == "+tb" {
            assert_preserved_like_dcmtk(&agent, &["-R", propose], &[path]);
        } else {
            // The deflate stream is re-compressed on its way to the card: compare the
            // data sets inflated by dcmtk, byte for byte.
            let out = storescu(agent.port, &["-R", propose], &[&path]);
            assert!(out.status.success(), "{}", text(&out));
            let reference = dcmtk_reference(&["-R", propose], &[&path]);
            let ours = agent.wait_outbox(1).remove(0);
            let theirs = file_for_instance(reference.path(), "1.2.826.0.1.3680043.10.3.1");
            let inflate = |p: &std::path::Path| {
                let out = input.path().join(format!(
                    "inflated-{}",
                    p.file_name().unwrap().to_string_lossy()
                ));
                let done = dcmtk(
                    "dcmconv",
                    &["+te", p.to_str().unwrap(), out.to_str().unwrap()],
                );
                assert!(done.status.success(), "{}", text(&done));
                out
            };
            assert!(same_data_set(&inflate(&ours), &inflate(&theirs)));
        }
        let copy = agent.outbox().join("1.2.826.0.1.3680043.10.3.1.dcm");
        assert_eq!(file_transfer_syntax(&copy), uid);
    }
}

#[test]
fn a_multiframe_clip_streams_with_flat_memory() {
    let agent = Agent::start("");
    let input = tempfile::tempdir().unwrap();
    let clip = input.path().join("clip.dcm");
    write_clip(&clip, "1.2.826.0.1.3680043.10.4.1", 256 << 20);
    assert_preserved_like_dcmtk(&agent, &["-R"], &[clip]);
    // The whole clip never sits in memory: 256 MiB passed through, far less resident.
    let peak = agent.peak_rss_kib();
    eprintln!("agent peak RSS after a 256 MiB clip: {peak} KiB");
    assert!(peak < 48 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn calling_ae_allow_list_is_enforced() {
    let agent = Agent::start("[listener]\nallowed_callers = [\"US1\"]");
    let port = agent.port.to_string();
    let refused = dcmtk(
        "echoscu",
        &["-aet", "LAPTOP", "-aec", "UPLINK", "127.0.0.1", &port],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("Calling AE Title Not Recognized"),
        "{}",
        text(&refused)
    );
    let allowed = dcmtk(
        "echoscu",
        &["-aet", "US1", "-aec", "UPLINK", "127.0.0.1", &port],
    );
    assert!(allowed.status.success(), "{}", text(&allowed));
}

#[test]
fn source_address_allow_list_is_enforced() {
    let agent = Agent::start("[listener]\nallowed_addresses = [\"10.9.8.0/24\"]");
    let refused = dcmtk(
        "echoscu",
        &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("Rejected Permanent"),
        "{}",
        text(&refused)
    );
}

fn private_class_fixture(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("raw.dcm");
    let private_class = "1.2.826.0.1.3680043.10.99.1";
    let mut obj = us_header(private_class, "1.2.826.0.1.3680043.10.5.1", 4, 4, None);
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::PIXEL_DATA,
        dicom_core::VR::OB,
        dicom_core::PrimitiveValue::from(vec![0u8; 48]),
    ));
    obj.with_meta(
        dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(private_class)
            .media_storage_sop_instance_uid("1.2.826.0.1.3680043.10.5.1")
            .transfer_syntax(EXPLICIT_LE),
    )
    .unwrap()
    .write_to_file(&path)
    .unwrap();
    path
}

#[test]
fn unknown_sop_classes_follow_the_policy() {
    let input = tempfile::tempdir().unwrap();
    let raw = private_class_fixture(input.path());

    // storescu knows only standard classes; a profile file makes it propose ours.
    let profile = input.path().join("private.cfg");
    fs::write(
        &profile,
        "[[TransferSyntaxes]]\n[Uncompressed]\nTransferSyntax1 = LittleEndianExplicit\n\n\
         [[PresentationContexts]]\n[Private]\nPresentationContext1 = 1.2.826.0.1.3680043.10.99.1\\Uncompressed\n\n\
         [[Profiles]]\n[Private]\nPresentationContexts = Private\n",
    )
    .unwrap();
    let args = ["-xf", profile.to_str().unwrap(), "Private"];

    let rejecting = Agent::start("[listener]\nunknown_sop_classes = \"reject\"");
    let out = storescu(rejecting.port, &args, &[&raw]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("No Acceptable Presentation Contexts"),
        "{}",
        text(&out)
    );
    assert!(dcm_files(&rejecting.outbox()).is_empty());

    let accepting = Agent::start("");
    let out = storescu(accepting.port, &args, &[&raw]);
    assert!(out.status.success(), "{}", text(&out));
    accepting.wait_outbox(1);
}

#[test]
fn below_the_free_space_floor_stores_are_refused_with_a700() {
    let mut agent = Agent::start("");
    // Rewrite the config with an impossible floor and restart.
    agent.kill9();
    let config = fs::read_to_string(&agent.config)
        .unwrap()
        .replace("min_free_mib = 1", "min_free_mib = 1000000000");
    fs::write(&agent.config, config).unwrap();
    agent.spawn();
    let input = tempfile::tempdir().unwrap();
    let files = fixtures(input.path(), 2, EXPLICIT_LE, "f");
    let out = storescu(agent.port, &["-v", "-R", "-nh"], &[&files[0], &files[1]]);
    let said = text(&out);
    assert!(
        said.matches("Refused: OutOfResources").count() == 2,
        "{said}"
    );
    assert!(dcm_files(&agent.outbox()).is_empty());
    assert!(agent.spool_files().is_empty());
    assert!(agent.log().contains("free-space floor"));
    // The association itself survived: echo still works.
    let echo = dcmtk(
        "echoscu",
        &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
    );
    assert!(echo.status.success());
}

/// Opens a raw association (verification only) and returns the socket after the AC.
fn raw_association(port: u16) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let rq = association_rq("RAW");
    let mut bytes = Vec::new();
    dicom_ul::write_pdu(&mut bytes, &rq).unwrap();
    socket.write_all(&bytes).unwrap();
    let mut header = [0u8; 6];
    socket.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 0x02, "expected A-ASSOCIATE-AC");
    let len = u32::from_be_bytes(header[2..6].try_into().unwrap());
    let mut body = vec![0u8; len as usize];
    socket.read_exact(&mut body).unwrap();
    socket
}

#[test]
fn associations_over_the_cap_are_rejected_transiently() {
    let agent = Agent::start("[listener]\nmax_associations = 1");
    let _held = raw_association(agent.port);
    let out = dcmtk(
        "echoscu",
        &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
    );
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("Rejected Transient") && said.contains("Local Limit Exceeded"),
        "{said}"
    );
    drop(_held);
    // Once the held one is gone, the slot frees.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = dcmtk(
            "echoscu",
            &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
        );
        if out.status.success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_oversized_pdu_is_aborted_and_leaves_nothing() {
    let agent = Agent::start("[listener]\nmax_pdu_length = 16384");
    let mut socket = raw_association(agent.port);
    // A P-DATA PDU announcing 1 GiB.
    socket.write_all(&[0x04, 0, 0x40, 0, 0, 0]).unwrap();
    socket.write_all(&[0u8; 64]).unwrap();
    let mut reply = [0u8; 10];
    socket.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 0x07, "expected A-ABORT, got {reply:?}");
    assert_eq!(reply[8], 2, "source: service provider");
    assert_eq!(reply[9], 6, "reason: invalid PDU parameter");
    let mut rest = Vec::new();
    assert_eq!(
        socket.read_to_end(&mut rest).unwrap(),
        0,
        "connection closed after the abort"
    );
    assert!(agent.spool_files().is_empty());
    assert!(
        agent.log().contains("exceeds the negotiated maximum"),
        "{}",
        agent.log()
    );
}

#[test]
fn a_client_killed_mid_instance_leaves_no_partial_data() {
    let agent = Agent::start("");
    let input = tempfile::tempdir().unwrap();
    let clip = input.path().join("clip.dcm");
    write_clip(&clip, "1.2.826.0.1.3680043.10.6.1", 512 << 20);
    let mut child = std::process::Command::new("storescu")
        .args(["-aec", "UPLINK", "-R", "127.0.0.1", &agent.port.to_string()])
        .arg(&clip)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a part file exists, then kill the sender mid-instance.
    wait_until(
        20,
        || {
            agent
                .spool_files()
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "part"))
        },
        || format!("transfer never started:\n{}", agent.log()),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    agent.wait_spool_empty(20);
    std::thread::sleep(Duration::from_millis(300));
    assert!(dcm_files(&agent.outbox()).is_empty());
    let echo = dcmtk(
        "echoscu",
        &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
    );
    assert!(
        echo.status.success(),
        "agent still serves after a broken client"
    );
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    let mut agent = Agent::start("");
    let input = tempfile::tempdir().unwrap();
    let files = fixtures(input.path(), 3, EXPLICIT_LE, "t");
    let refs: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    assert!(storescu(agent.port, &["-R"], &refs).status.success());
    agent.wait_outbox(3);
    assert_eq!(agent.terminate(), Some(0), "{}", agent.log());
    assert!(agent.log().contains("stopped cleanly"));
    assert_eq!(agent.status_json()["running"], false);
}

/// A second host on this machine: a network namespace joined by a veth pair, so that
/// a peer really comes from another address. Removed when dropped.
struct SecondHost {
    name: String,
    pub host_address: String,
    pub peer_address: String,
}

impl SecondHost {
    fn new() -> SecondHost {
        // Tests of one binary run side by side: each host its own name and subnet.
        static HOSTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = HOSTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() * 4 + n) % 200 + 20;
        let name = format!("uplinktest{}-{n}", std::process::id());
        let (host_address, peer_address) = (format!("10.213.{id}.1"), format!("10.213.{id}.2"));
        let run = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2)");
            assert!(out.status.success(), "ip {args:?}: {}", text(&out));
        };
        let second = SecondHost {
            name: name.clone(),
            host_address: host_address.clone(),
            peer_address: peer_address.clone(),
        };
        let (host_if, peer_if) = (format!("vu{id}h"), format!("vu{id}p"));
        run(&["netns", "add", &name]);
        run(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        run(&["link", "set", &peer_if, "netns", &name]);
        run(&[
            "addr",
            "add",
            &format!("{host_address}/30"),
            "dev",
            &host_if,
        ]);
        run(&["link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name.as_str(), "ip"];
            all.extend_from_slice(args);
            run(&all);
        };
        in_ns(&[
            "addr",
            "add",
            &format!("{peer_address}/30"),
            "dev",
            &peer_if,
        ]);
        in_ns(&["link", "set", &peer_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        second
    }

    /// echoscu run from the second host.
    fn echoscu(&self, address: &str, port: u16) -> std::process::Output {
        Command::new("ip")
            .args([
                "netns", "exec", &self.name, "echoscu", "-aec", "UPLINK", address,
            ])
            .arg(port.to_string())
            .output()
            .unwrap()
    }
}

impl Drop for SecondHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so both ends.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

#[test]
fn a_peer_from_another_address_is_refused_while_an_allowed_one_is_served() {
    let second = SecondHost::new();
    let agent = Agent::start(&format!(
        "[listener]\nbind = \"0.0.0.0\"\nallowed_addresses = [\"127.0.0.1/32\", \"{}/32\"]",
        second.host_address
    ));
    // From the namespace, the agent sees 10.213.x.2: not on the list.
    let refused = second.echoscu(&second.host_address, agent.port);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("Rejected Permanent"),
        "{}",
        text(&refused)
    );
    // From this host, over loopback: on the list.
    let served = dcmtk(
        "echoscu",
        &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
    );
    assert!(served.status.success(), "{}", text(&served));
    assert!(
        agent.log().contains(&second.peer_address),
        "the refusal names the address"
    );
}

/// A refused address floods the listener with silent connections: each is refused
/// (an RJ for the first few, closed at once beyond) without tying up the threads
/// real associations need, and an allowed peer is served in the middle of it.
#[test]
fn a_flood_from_a_refused_address_does_not_starve_allowed_peers() {
    let second = SecondHost::new();
    let agent = Agent::start(&format!(
        "[listener]\nbind = \"0.0.0.0\"\nallowed_addresses = [\"127.0.0.1/32\", \"{}/32\"]",
        second.host_address
    ));
    // More silent connections than smol's blocking pool has threads (500).
    let flood = "import socket, sys, time\n\
        held = [socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) for _ in range(600)]\n\
        print(len(held), flush=True)\n\
        time.sleep(8)\n";
    let mut flooder = Command::new("ip")
        .args(["netns", "exec", &second.name, "python3", "-c", flood])
        .arg(&second.host_address)
        .arg(agent.port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut opened = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flooder.stdout.as_mut().unwrap()),
        &mut opened,
    )
    .unwrap();
    assert_eq!(opened.trim(), "600", "the flood connected");
    // While the flood holds its connections: an association timeout of 5 s.
    let served = dcmtk(
        "echoscu",
        &[
            "-ta",
            "5",
            "-aec",
            "UPLINK",
            "127.0.0.1",
            &agent.port.to_string(),
        ],
    );
    let _ = flooder.kill();
    let _ = flooder.wait();
    assert!(
        served.status.success(),
        "{}\n{}",
        text(&served),
        agent.log()
    );
    wait_until(
        5,
        || agent.status_json()["counters"]["associations_refused"].as_u64() >= Some(600),
        || agent.status_json().to_string(),
    );
}

#[test]
fn dicom_over_tls_lets_in_only_machines_with_the_clinics_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::pki::Pki::create(dir.path());
    let at = |name: &str| pki.file(name);
    let agent = Agent::start(&format!(
        "[listener]\ntls_certificate = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\n",
        at("server.pem"),
        at("server.key"),
        at("ca.pem")
    ));
    let port = agent.port.to_string();
    let (client_key, client, ca) = (at("client.key"), at("client.pem"), at("ca.pem"));
    let tls = [
        "+tls",
        client_key.as_str(),
        client.as_str(),
        "+cf",
        ca.as_str(),
    ];
    // With the clinic's client certificate, verifying ours: echo and store work.
    let mut args = tls.to_vec();
    args.extend(["-aec", "UPLINK", "127.0.0.1", port.as_str()]);
    let echo = dcmtk("echoscu", &args);
    assert!(echo.status.success(), "{}\n{}", text(&echo), agent.log());
    let input = tempfile::tempdir().unwrap();
    let file = input.path().join("tls.dcm");
    write_us_image(&file, "1.2.826.0.1.3680043.10.88.1", EXPLICIT_LE, 16, 16);
    let mut args = tls.to_vec();
    args.extend([
        "-aec",
        "UPLINK",
        "127.0.0.1",
        port.as_str(),
        file.to_str().unwrap(),
    ]);
    let store = dcmtk("storescu", &args);
    assert!(store.status.success(), "{}\n{}", text(&store), agent.log());
    agent.wait_outbox(1);

    // TLS without a client certificate: the handshake fails.
    let anonymous = dcmtk(
        "echoscu",
        &["+tla", "+cf", &ca, "-aec", "UPLINK", "127.0.0.1", &port],
    );
    assert!(!anonymous.status.success(), "{}", text(&anonymous));
    // Plain DICOM to the TLS port: no association.
    let plain = dcmtk(
        "echoscu",
        &["-to", "5", "-aec", "UPLINK", "127.0.0.1", &port],
    );
    assert!(!plain.status.success(), "{}", text(&plain));
    // The agent went on serving.
    let mut args = tls.to_vec();
    args.extend(["-aec", "UPLINK", "127.0.0.1", port.as_str()]);
    assert!(dcmtk("echoscu", &args).status.success());
}

#[test]
fn tls_settings_are_checked_before_the_agent_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("uplink.toml");
    for (toml, says) in [
        (
            "[listener]\ntls_certificate = \"/etc/hostname\"\n",
            "go together",
        ),
        (
            "[listener]\ntls_certificate = \"/no/such.pem\"\ntls_key = \"/no/such.key\"\n",
            "/no/such.pem",
        ),
        (
            "[listener]\ntls_client_ca = \"/etc/hostname\"\n",
            "needs tls_certificate",
        ),
    ] {
        fs::write(&config, toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_uplink"))
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{toml}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn retired_storage_classes_machines_still_send_are_accepted() {
    let agent = Agent::start("");
    let image = us_images(agent.dir.path(), 1, 801).remove(0);
    let result = peer_result(python_peer(
        "negotiate.py",
        &[&agent.port.to_string(), "retired", image.to_str().unwrap()],
    ));
    let proposed = result["proposed"].as_array().unwrap();
    assert!(proposed.len() >= 15, "pydicom knows them: {result}");
    assert_eq!(result["refused"], serde_json::json!([]), "{result}");
    assert_eq!(result["accepted"].as_array().unwrap().len(), proposed.len());
    assert_eq!(result["store_status"], 0, "{result}\n{}", agent.log());
    agent.wait_outbox(1);
}

#[test]
fn a_user_identity_is_answered_and_checked_against_the_card() {
    let agent = Agent::start("[[listener.user]]\nusername = \"sono\"\npassword = \"s3cret\"\n");
    let port = agent.port.to_string();
    let identify = |user: &str, password: &str| {
        peer_result(python_peer(
            "negotiate.py",
            &[&port, "identity", user, password],
        ))
    };
    let known = identify("sono", "s3cret");
    assert_eq!(known["established"], true, "{known}\n{}", agent.log());
    assert_eq!(
        known["server_response"], "",
        "a positive, empty response: {known}"
    );
    for (user, password) in [("sono", "wrong"), ("intruder", "s3cret")] {
        let refused = identify(user, password);
        assert_eq!(refused["rejected"], true, "{user}: {refused}");
    }
    assert!(
        !agent.log().contains("s3cret") && !agent.log().contains("wrong"),
        "no password in the log: {}",
        agent.log()
    );
    // Without users on the card, any identity is let in and answered.
    let open = Agent::start("");
    let answered = peer_result(python_peer(
        "negotiate.py",
        &[&open.port.to_string(), "identity", "anyone", "x"],
    ));
    assert_eq!(answered["server_response"], "", "{answered}");
}
