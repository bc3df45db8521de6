//! A misbehaving network between the agent and Orthanc, where no real component can
//! produce the fault on cue: it answers `429 Too Many Requests` and `503 Service
//! Unavailable` in turn (with Retry-After) to the first requests, then cuts one connection in the middle of its body, then
//! forwards faithfully; or, as a slow line, forwards at a fixed rate. It sits at the boundary (a TCP proxy); the agent and Orthanc
//! are the real ones.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct FaultyProxy {
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
}

struct Plan {
    refuse: usize,
    cut_after: Option<usize>,
    /// Bytes per second the line carries upstream, if it is slow.
    rate: Option<u64>,
}

impl FaultyProxy {
    /// Refuses the first `refuse` requests with 429 or 503, then cuts the next connection
    /// after `cut_after` bytes of request, then forwards to `target_port`.
    pub fn start(target_port: u16, refuse: usize, cut_after: usize) -> FaultyProxy {
        FaultyProxy::with_plan(
            target_port,
            Plan {
                refuse,
                cut_after: Some(cut_after),
                rate: None,
            },
        )
    }

    /// A slow line: forwards everything, upstream at `bytes_per_sec`.
    pub fn slow(target_port: u16, bytes_per_sec: u64) -> FaultyProxy {
        FaultyProxy::with_plan(
            target_port,
            Plan {
                refuse: 0,
                cut_after: None,
                rate: Some(bytes_per_sec),
            },
        )
    }

    fn with_plan(target_port: u16, plan: Plan) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let plan = Arc::new(Mutex::new(plan));
        let log = Arc::new(Mutex::new(Vec::new()));
        let events = log.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (plan, events) = (plan.clone(), events.clone());
                thread::spawn(move || {
                    let _ = serve(client, target_port, &plan, &events);
                });
            }
        });
        FaultyProxy { port, log }
    }

    pub fn events(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(
    mut client: TcpStream,
    target_port: u16,
    plan: &Mutex<Plan>,
    log: &Mutex<Vec<String>>,
) -> io::Result<()> {
    let refuse = {
        let mut plan = plan.lock().unwrap();
        if plan.refuse > 0 {
            plan.refuse -= 1;
            Some(if plan.refuse % 2 == 0 {
                "503 Service Unavailable"
            } else {
                "429 Too Many Requests"
            })
        } else {
            None
        }
    };
    if let Some(status) = refuse {
        // Read the whole request, so the client sees the answer rather than a reset.
        let (head, body_len, already) = read_head(&mut client)?;
        io::copy(
            &mut (&mut client).take((body_len - already) as u64),
            &mut io::sink(),
        )?;
        log.lock().unwrap().push(format!(
            "{status} for {}",
            head.lines().next().unwrap_or("")
        ));
        let answer = format!(
            "HTTP/1.1 {status}\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        client.write_all(answer.as_bytes())?;
        return Ok(());
    }
    let (cut_after, rate) = {
        let mut plan = plan.lock().unwrap();
        (plan.cut_after.take(), plan.rate)
    };
    let server = TcpStream::connect(("127.0.0.1", target_port))?;
    let (mut client_read, mut server_write) = (client.try_clone()?, server.try_clone()?);
    let upstream = thread::spawn(move || -> io::Result<()> {
        match cut_after {
            Some(limit) => {
                io::copy(
                    &mut (&mut client_read).take(limit as u64),
                    &mut server_write,
                )?;
                // The line drops mid-request.
                let _ = client_read.shutdown(Shutdown::Both);
                let _ = server_write.shutdown(Shutdown::Both);
                Ok(())
            }
            None => {
                match rate {
                    Some(rate) => slow_copy(&mut client_read, &mut server_write, rate)?,
                    None => {
                        io::copy(&mut client_read, &mut server_write)?;
                    }
                }
                server_write.shutdown(Shutdown::Write)
            }
        }
    });
    if cut_after.is_some() {
        log.lock().unwrap().push("cut a request midway".into());
    }
    let (mut server_read, mut client_write) = (server, client);
    let _ = io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = upstream.join();
    Ok(())
}

/// Copies at `rate` bytes per second, a 4 KiB packet at a time.
fn slow_copy(from: &mut TcpStream, to: &mut TcpStream, rate: u64) -> io::Result<()> {
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
fn read_head(client: &mut TcpStream) -> io::Result<(String, usize, usize)> {
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
            return Ok((head, length, buf.len() - end - 4));
        }
    }
}
