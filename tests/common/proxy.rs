//! The network between the agent and Orthanc, where no real component can produce
//! the fault on cue: it answers `429 Too Many Requests` and `503 Service Unavailable`
//! in turn (with Retry-After) to the first requests, then gives canned answers (a
//! captive portal's login page, a redirect, an empty 200), then cuts one connection in
//! the middle of its body, then forwards faithfully; or, as a slow line, forwards at a
//! fixed rate. It can rewrite the request's Accept header, as a server that ignores
//! Accept would answer. It sits at the boundary (a TCP proxy); the agent and Orthanc
//! are the real ones.
//!
//! It also counts what Orthanc confirmed: the SOP Instance UIDs of the Referenced SOP
//! Sequence of every JSON answer forwarded. Orthanc keeps one copy per UID, so an
//! instance sent twice is seen twice only here.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct FaultyProxy {
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
    confirmed: Arc<Mutex<Vec<String>>>,
}

#[derive(Default)]
pub struct Plan {
    /// Requests answered 429 or 503 first.
    pub refuse: usize,
    /// Whole HTTP answers given to the next uploads (POST), one each, in order.
    pub canned: VecDeque<String>,
    /// The next forwarded request is cut after this many bytes of its body.
    pub cut_after: Option<usize>,
    /// Bytes per second the line carries upstream, if it is slow.
    pub rate: Option<u64>,
    /// The Accept header forwarded in place of the agent's.
    pub accept: Option<String>,
}

impl FaultyProxy {
    /// Refuses the first `refuse` requests with 429 or 503, then cuts the next connection
    /// after `cut_after` bytes of request body, then forwards to `target_port`.
    pub fn start(target_port: u16, refuse: usize, cut_after: usize) -> FaultyProxy {
        FaultyProxy::with_plan(
            target_port,
            Plan {
                refuse,
                cut_after: Some(cut_after),
                ..Plan::default()
            },
        )
    }

    /// A slow line: forwards everything, upstream at `bytes_per_sec`.
    pub fn slow(target_port: u16, bytes_per_sec: u64) -> FaultyProxy {
        FaultyProxy::with_plan(
            target_port,
            Plan {
                rate: Some(bytes_per_sec),
                ..Plan::default()
            },
        )
    }

    /// A faithful line that only counts.
    pub fn counting(target_port: u16) -> FaultyProxy {
        FaultyProxy::with_plan(target_port, Plan::default())
    }

    pub fn with_plan(target_port: u16, plan: Plan) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let plan = Arc::new(Mutex::new(plan));
        let log = Arc::new(Mutex::new(Vec::new()));
        let confirmed = Arc::new(Mutex::new(Vec::new()));
        let (events, uids) = (log.clone(), confirmed.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (plan, events, uids) = (plan.clone(), events.clone(), uids.clone());
                thread::spawn(move || {
                    let _ = serve(client, target_port, &plan, &events, &uids);
                });
            }
        });
        FaultyProxy {
            port,
            log,
            confirmed,
        }
    }

    pub fn events(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Every UID Orthanc confirmed, once per confirmation.
    pub fn confirmed(&self) -> Vec<String> {
        self.confirmed.lock().unwrap().clone()
    }

    /// Confirmations beyond the first of each UID.
    pub fn resent(&self) -> usize {
        let all = self.confirmed();
        let unique: std::collections::BTreeSet<&String> = all.iter().collect();
        all.len() - unique.len()
    }
}

/// What the proxy does with one request.
enum Action {
    Answer(String),
    Forward {
        cut_after: Option<usize>,
        rate: Option<u64>,
        accept: Option<String>,
    },
}

fn serve(
    mut client: TcpStream,
    target_port: u16,
    plan: &Mutex<Plan>,
    log: &Mutex<Vec<String>>,
    confirmed: &Mutex<Vec<String>>,
) -> io::Result<()> {
    let (head, body_len, already) = read_head(&mut client)?;
    let request_line = head.lines().next().unwrap_or("").to_owned();
    let action = {
        let mut plan = plan.lock().unwrap();
        if plan.refuse > 0 {
            plan.refuse -= 1;
            let status = if plan.refuse % 2 == 0 {
                "503 Service Unavailable"
            } else {
                "429 Too Many Requests"
            };
            Action::Answer(format!(
                "HTTP/1.1 {status}\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
        } else if let Some(answer) = request_line
            .starts_with("POST")
            .then(|| plan.canned.pop_front())
            .flatten()
        {
            Action::Answer(answer)
        } else {
            Action::Forward {
                cut_after: plan.cut_after.take(),
                rate: plan.rate,
                accept: plan.accept.clone(),
            }
        }
    };
    match action {
        Action::Answer(answer) => {
            // Read the whole request, so the client sees the answer rather than a reset.
            io::copy(
                &mut (&mut client).take(body_len.saturating_sub(already.len()) as u64),
                &mut io::sink(),
            )?;
            let status = answer.lines().next().unwrap_or("");
            log.lock().unwrap().push(format!(
                "{} for {request_line}",
                status.trim_start_matches("HTTP/1.1 ")
            ));
            client.write_all(answer.as_bytes())?;
            client.shutdown(Shutdown::Both)
        }
        Action::Forward {
            cut_after,
            rate,
            accept,
        } => {
            let mut server = TcpStream::connect(("127.0.0.1", target_port))?;
            server.write_all(forwarded_head(&head, accept.as_deref()).as_bytes())?;
            server.write_all(&already)?;
            let rest = body_len.saturating_sub(already.len()) as u64;
            let mut body = (&mut client).take(rest);
            if let Some(limit) = cut_after {
                io::copy(&mut (&mut body).take(limit as u64), &mut server)?;
                log.lock().unwrap().push("cut a request midway".into());
                // The line drops mid-request.
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return Ok(());
            }
            match rate {
                Some(rate) => slow_copy(&mut body, &mut server, rate)?,
                None => {
                    io::copy(&mut body, &mut server)?;
                }
            }
            // One answer per connection, read whole by its length (Orthanc keeps the
            // connection alive for a while whatever the request says).
            let (head, length, mut answer) = read_head(&mut server)?;
            (&mut server)
                .take(length.saturating_sub(answer.len()) as u64)
                .read_to_end(&mut answer)?;
            client.write_all(format!("{head}\r\n\r\n").as_bytes())?;
            client.write_all(&answer)?;
            let _ = client.shutdown(Shutdown::Both);
            confirmed.lock().unwrap().extend(referenced_uids(&answer));
            Ok(())
        }
    }
}

/// The request head as forwarded: one request per connection, the answer not
/// compressed (so it can be read here), Accept replaced if asked.
fn forwarded_head(head: &str, accept: Option<&str>) -> String {
    let mut lines: Vec<String> = head
        .split("\r\n")
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").trim();
            let replaced = accept.is_some() && name.eq_ignore_ascii_case("accept");
            !name.eq_ignore_ascii_case("connection")
                && !name.eq_ignore_ascii_case("accept-encoding")
                && !replaced
        })
        .map(str::to_owned)
        .collect();
    lines.push("Connection: close".into());
    if let Some(accept) = accept {
        lines.push(format!("Accept: {accept}"));
    }
    lines.join("\r\n") + "\r\n\r\n"
}

/// The SOP Instance UIDs in the Referenced SOP Sequence of a DICOM JSON answer.
fn referenced_uids(body: &[u8]) -> Vec<String> {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    json["00081199"]["Value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["00081155"]["Value"][0].as_str().map(str::to_owned))
        .collect()
}

/// Copies at `rate` bytes per second, a 4 KiB packet at a time.
fn slow_copy(from: &mut impl Read, to: &mut TcpStream, rate: u64) -> io::Result<()> {
    let mut packet = [0u8; 4096];
    loop {
        let n = from.read(&mut packet)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&packet[..n])?;
        thread::sleep(std::time::Duration::from_secs_f64(n as f64 / rate as f64));
    }
}

/// Reads the request head; returns it, the Content-Length, and the body bytes read with it.
fn read_head(client: &mut impl Read) -> io::Result<(String, usize, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            return Ok((head, length, buf[end + 4..].to_vec()));
        }
    }
}
