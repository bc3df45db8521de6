//! Hostile and broken input on the DICOM port: each gets a clean refusal or abort
//! in bounded time, memory stays bounded, and other clients keep being served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

fn connect(port: u16) -> TcpStream {
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    socket
}

fn pdu(p: &Pdu) -> Vec<u8> {
    let mut bytes = Vec::new();
    dicom_ul::write_pdu(&mut bytes, p).unwrap();
    bytes
}

fn rq() -> Pdu {
    association_rq("HOSTILE")
}

/// Reads one PDU's type and body.
fn read_pdu(socket: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 6];
    socket.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize];
    socket.read_exact(&mut body).ok()?;
    Some((header[0], body))
}

fn associate(port: u16) -> TcpStream {
    let mut socket = connect(port);
    socket.write_all(&pdu(&rq())).unwrap();
    assert_eq!(read_pdu(&mut socket).unwrap().0, 0x02, "A-ASSOCIATE-AC");
    socket
}

/// A C-STORE-RQ command set for `uid` (Implicit VR Little Endian, hand-encoded).
fn store_command(uid: &str) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, group: u16, element: u16, value: &[u8]) {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(0);
        }
        out.extend(group.to_le_bytes());
        out.extend(element.to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
        out.extend(value);
    }
    let mut body = Vec::new();
    put(&mut body, 0, 0x0002, US_IMAGE.as_bytes());
    put(&mut body, 0, 0x0100, &1u16.to_le_bytes());
    put(&mut body, 0, 0x0110, &7u16.to_le_bytes());
    put(&mut body, 0, 0x0700, &0u16.to_le_bytes());
    put(&mut body, 0, 0x0800, &0u16.to_le_bytes());
    put(&mut body, 0, 0x1000, uid.as_bytes());
    let mut command = Vec::new();
    put(&mut command, 0, 0, &(body.len() as u32).to_le_bytes());
    command.extend(body);
    command
}

fn pdata(command: bool, last: bool, data: Vec<u8>) -> Vec<u8> {
    pdu(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: 1,
            value_type: if command {
                PDataValueType::Command
            } else {
                PDataValueType::Data
            },
            is_last: last,
            data,
        }],
    })
}

/// Sends a C-STORE with `data_set` and returns the response's status.
fn store_status(socket: &mut TcpStream, data_set: Vec<u8>) -> u16 {
    socket
        .write_all(&pdata(
            true,
            true,
            store_command("1.2.826.0.1.3680043.10.80.1"),
        ))
        .unwrap();
    let chunks: Vec<&[u8]> = data_set.chunks(8000).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        socket
            .write_all(&pdata(false, i + 1 == chunks.len(), chunk.to_vec()))
            .unwrap();
    }
    let (kind, body) = read_pdu(socket).expect("a response");
    assert_eq!(kind, 0x04, "P-DATA with the response");
    // Find Status (0000,0900) in the command set: tag, length 2, value.
    let command = &body[6..];
    let at = command
        .windows(6)
        .position(|w| w == [0, 0, 0, 9, 2, 0])
        .expect("status element");
    u16::from_le_bytes([command[at + 8], command[at + 9]])
}

fn still_serves(agent: &Agent) {
    let echo = dcmtk(
        "echoscu",
        &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
    );
    assert!(
        echo.status.success(),
        "the agent stopped serving:\n{}",
        agent.log()
    );
}

#[test]
fn garbage_truncation_and_huge_lengths_get_closed_cleanly() {
    let agent = Agent::start("");
    // Random bytes.
    let mut socket = connect(agent.port);
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let _ = socket.write_all(&garbage);
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest);
    // An association request cut short.
    let mut socket = connect(agent.port);
    socket.write_all(&pdu(&rq())[..20]).unwrap();
    drop(socket);
    // A first PDU announcing 4 GiB.
    let mut socket = connect(agent.port);
    socket
        .write_all(&[0x01, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1])
        .unwrap();
    let (kind, _) = read_pdu(&mut socket).expect("an answer");
    assert_eq!(kind, 0x07, "A-ABORT");
    // P-DATA on a context that was never proposed.
    let mut socket = associate(agent.port);
    let mut stray = pdata(true, true, vec![0; 8]);
    stray[10] = 99;
    socket.write_all(&stray).unwrap();
    assert_eq!(
        read_pdu(&mut socket).unwrap().0,
        0x07,
        "A-ABORT for context 99"
    );
    still_serves(&agent);
    assert!(agent.spool_files().is_empty());
    assert!(agent.peak_rss_kib() < 48 * 1024);
}

#[test]
fn lying_and_endless_data_sets_are_refused_and_the_association_goes_on() {
    let agent = Agent::start("");
    let mut socket = associate(agent.port);
    // Pixel data announcing 1 GiB in a data set of a few bytes.
    let mut lying = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
    lying.extend(0x4000_0000u32.to_le_bytes());
    lying.extend([1, 2, 3, 4]);
    assert_eq!(
        store_status(&mut socket, lying),
        0xC000,
        "cannot understand"
    );
    // Sequences nested without end (undefined lengths, never closed).
    let mut nested = Vec::new();
    for _ in 0..500 {
        nested.extend([
            0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        nested.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    assert_eq!(store_status(&mut socket, nested), 0xC000);
    // The same association still takes a good instance afterwards.
    let input = tempfile::tempdir().unwrap();
    let good = input.path().join("good.dcm");
    write_us_image(&good, "1.2.826.0.1.3680043.10.80.1", EXPLICIT_LE, 8, 8);
    let bytes = std::fs::read(&good).unwrap();
    let data_set = bytes[data_set_offset(&bytes)..].to_vec();
    assert_eq!(store_status(&mut socket, data_set), 0x0000);
    agent.wait_outbox(1);
    assert!(
        agent
            .log()
            .contains("C-STORE from HOSTILE refused with C000H")
    );
}

#[test]
fn thousands_of_tiny_associations_and_silent_peers_leave_the_agent_serving() {
    let agent = Agent::start("[listener]\nidle_timeout_secs = 2\nmax_associations = 4");
    let started = Instant::now();
    for _ in 0..10_000 {
        let mut socket = associate(agent.port);
        socket.write_all(&pdu(&Pdu::ReleaseRQ)).unwrap();
        assert_eq!(read_pdu(&mut socket).unwrap().0, 0x06, "A-RELEASE-RP");
    }
    eprintln!(
        "10,000 associations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Slowloris: four silent peers hold every slot, and are cut after the idle timeout.
    let silent: Vec<TcpStream> = (0..4).map(|_| associate(agent.port)).collect();
    let refused = dcmtk(
        "echoscu",
        &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
    );
    assert!(
        text(&refused).contains("Local Limit Exceeded"),
        "{}",
        text(&refused)
    );
    let cut = Instant::now();
    for mut socket in silent {
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest);
    }
    assert!(
        cut.elapsed() < Duration::from_secs(10),
        "silent peers held on for {:?}",
        cut.elapsed()
    );
    wait_until(
        10,
        || {
            dcmtk(
                "echoscu",
                &["-aec", "UPLINK", "127.0.0.1", &agent.port.to_string()],
            )
            .status
            .success()
        },
        || agent.log(),
    );
    let peak = agent.peak_rss_kib();
    eprintln!("peak RSS after the flood: {peak} KiB");
    assert!(peak < 48 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_peer_trickling_its_request_is_cut_off() {
    let agent = Agent::start("[listener]\nidle_timeout_secs = 2");
    let mut socket = connect(agent.port);
    let request = pdu(&rq());
    let started = Instant::now();
    // One byte every 300 ms: never silent long enough for a read timeout.
    let mut cut = false;
    for byte in &request {
        if socket.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let mut rest = Vec::new();
    let closed = cut || socket.read_to_end(&mut rest).is_ok();
    assert!(
        closed && started.elapsed() < Duration::from_secs(10),
        "held for {:?}",
        started.elapsed()
    );
    assert!(
        agent.log().contains("not complete in time"),
        "{}",
        agent.log()
    );
    still_serves(&agent);
}
