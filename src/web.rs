//! The technician's page on the clinic network (`[web]`): a small read-only
//! HTTP/1.1 server in the agent, so a laptop on the same network sees what
//! `uplink status` sees without logging in.
//!
//! It serves three things — the page (`status/page.rs`), `status.json`, and the
//! audit trail as a download — to GET and HEAD, one request per connection, and
//! answers anything else with a precise status: 400 for what is not HTTP, 405 for
//! another method, 404, 401 without the access token, 431 for an oversized
//! request, 503 past `MAX_CONNECTIONS`. A slow client gets `REQUEST_DEADLINE` to
//! send its request and never holds the agent: the page runs on the agent's
//! executor beside the uploads, bounded in connections and in memory (the trail
//! is streamed from its files).

use std::cell::Cell;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, LocalExecutor};

use crate::config::Web;
use crate::shutdown::Stop;

/// Connections served at once; one more is answered 503 and closed.
const MAX_CONNECTIONS: usize = 8;
/// A request's head must arrive whole within this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Largest request head read (a browser's is well under 2 KiB).
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long, and how much, a closing connection's input is still read.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// What the site shows, from the running agent.
pub trait Source {
    /// The page, rendered now (`query` is appended to its links).
    fn page(&self, query: &str) -> String;
    /// The status snapshot as JSON.
    fn status_json(&self) -> String;
    /// The data dir, where the audit trail is.
    fn data_dir(&self) -> &Path;
}

/// The name the box announces on the network (Avahi publishes the host name
/// under `.local`), as the page shows it. Asked of the kernel, not read from
/// `/proc/sys` (the unit's `ProcSubset=pid` hides it).
pub fn announced_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the kernel writes at most that.
    let host = match unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } {
        0 => {
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        }
        _ => String::new(),
    };
    match host.trim() {
        "" => "this box".into(),
        host => format!("{host}.local"),
    }
}

/// Binds the page's port; an error says what to change.
pub fn bind(web: &Web) -> Result<Async<TcpListener>, String> {
    let address = SocketAddr::new(web.bind, web.port.0);
    let listener = TcpListener::bind(address).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " (a port below 1024 needs the capability `uplink provision` grants on the box; on a PC use [web] port = 8080)"
            }
            std::io::ErrorKind::AddrInUse => {
                " (another program serves it: give [web] another port)"
            }
            _ => "",
        };
        format!("cannot serve the status page on {address}: {e}{hint}")
    })?;
    Async::new(listener).map_err(|e| format!("cannot serve the status page: {e}"))
}

/// Serves the site until the agent stops.
pub async fn serve(listener: Async<TcpListener>, web: &Web, source: &dyn Source, stop: &Stop) {
    // Declared before the executor, whose tasks borrow it.
    let active = Cell::new(0usize);
    let executor = LocalExecutor::new();
    let accepting = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            };
            if active.get() >= MAX_CONNECTIONS {
                executor
                    .spawn(async move {
                        let mut stream = stream;
                        let _ = write_simple(&mut stream, Status::Busy, false).await;
                        close(stream).await;
                    })
                    .detach();
                continue;
            }
            active.set(active.get() + 1);
            let active = &active;
            executor
                .spawn(async move {
                    let mut stream = stream;
                    smol::future::or(answer(&mut stream, web, source), async {
                        smol::Timer::after(REQUEST_DEADLINE * 6).await;
                    })
                    .await;
                    close(stream).await;
                    active.set(active.get() - 1);
                })
                .detach();
        }
    };
    executor
        .run(smol::future::or(accepting, async {
            let _ = stop.recv().await;
        }))
        .await;
}

/// Closes a connection so that the answer arrives: the sending side first, then
/// what the client still sends is read and dropped for a moment (closing on
/// unread bytes would reset the connection, and a reset can take the answer
/// with it — a refused oversized request, say).
async fn close(mut stream: Async<std::net::TcpStream>) {
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut left = LINGER_BYTES;
    smol::future::or(
        async {
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        },
        async {
            smol::Timer::after(LINGER).await;
        },
    )
    .await;
}

/// A response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    HeadTooLarge,
    Busy,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::Unauthorized => "401 Unauthorized",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
            Status::Busy => "503 Service Unavailable",
        }
    }

    /// The short page a browser shows for it.
    fn explain(self) -> &'static str {
        match self {
            Status::Ok => "",
            Status::BadRequest => "This is not an HTTP request this box understands.",
            Status::Unauthorized => {
                "This box's page needs its access token: open http://BOX/?token=TOKEN, with the token from [web] in uplink.toml."
            }
            Status::NotFound => "Nothing here: the box's page is at /.",
            Status::MethodNotAllowed => "The box's page can only be read (GET).",
            Status::HeadTooLarge => "The request is too large.",
            Status::Busy => "The box is answering other browsers: reload in a moment.",
        }
    }
}

/// A request as far as the site cares.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    head_only: bool,
    path: String,
    token: Option<String>,
    /// The token came in the address (so the page's links must carry it).
    token_in_query: bool,
}

/// Reads one request and answers it.
async fn answer<S>(stream: &mut S, web: &Web, source: &dyn Source)
where
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin,
{
    let head = smol::future::or(read_head(stream), async {
        smol::Timer::after(REQUEST_DEADLINE).await;
        Err(Status::BadRequest)
    })
    .await;
    let request = match head.and_then(|head| parse(&head)) {
        Ok(request) => request,
        Err(status) => {
            let _ = write_simple(stream, status, false).await;
            return;
        }
    };
    if !authorized(web, &request) {
        let _ = write_simple(stream, Status::Unauthorized, request.head_only).await;
        return;
    }
    // Links on the page carry the token the browser came with.
    let query = match &request.token {
        Some(token) if request.token_in_query => format!("?token={token}"),
        _ => String::new(),
    };
    let _ = match request.path.as_str() {
        "/" | "/index.html" => {
            let page = source.page(&query);
            write_body(
                stream,
                "text/html; charset=utf-8",
                page.as_bytes(),
                &request,
            )
            .await
        }
        "/status.json" => {
            let json = source.status_json();
            write_body(stream, "application/json", json.as_bytes(), &request).await
        }
        "/audit.log" => write_trail(stream, source.data_dir(), &request).await,
        _ => write_simple(stream, Status::NotFound, request.head_only).await,
    };
    let _ = stream.flush().await;
}

/// Reads up to the blank line that ends a request head.
async fn read_head<S: smol::io::AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, Status> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| Status::BadRequest)?;
        if n == 0 {
            return Err(Status::BadRequest);
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(Status::HeadTooLarge);
        }
    }
}

/// The request line and the one header the site reads.
fn parse(head: &[u8]) -> Result<Request, Status> {
    let head = std::str::from_utf8(head).map_err(|_| Status::BadRequest)?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(Status::BadRequest);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(Status::MethodNotAllowed),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let in_query = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_owned);
    let token_in_query = in_query.is_some();
    let mut token = in_query;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Status::BadRequest)?;
        if name.eq_ignore_ascii_case("authorization") {
            if let Some(bearer) = value.trim().strip_prefix("Bearer ") {
                token = Some(bearer.trim().to_owned());
            }
        }
    }
    Ok(Request {
        head_only,
        path: path.to_owned(),
        token,
        token_in_query,
    })
}

/// Whether the request brings the page's token (when it has one), compared in
/// constant time.
fn authorized(web: &Web, request: &Request) -> bool {
    let Some(wanted) = &web.token else {
        return true;
    };
    let Some(given) = &request.token else {
        return false;
    };
    let (a, b) = (wanted.expose().as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The headers every answer has: nothing cached, nothing framed or sniffed, no
/// address (with its token) passed on to another site.
fn head(status: Status, content_type: &str, length: u64, extra: &str) -> String {
    format!(
        "HTTP/1.1 {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n\
         Referrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n\
         {extra}Connection: close\r\n\r\n",
        status.line()
    )
}

async fn write_body<S: smol::io::AsyncWrite + Unpin>(
    stream: &mut S,
    content_type: &str,
    body: &[u8],
    request: &Request,
) -> std::io::Result<()> {
    stream
        .write_all(head(Status::Ok, content_type, body.len() as u64, "").as_bytes())
        .await?;
    if !request.head_only {
        stream.write_all(body).await?;
    }
    Ok(())
}

async fn write_simple<S: smol::io::AsyncWrite + Unpin>(
    stream: &mut S,
    status: Status,
    head_only: bool,
) -> std::io::Result<()> {
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>uplink</title></head><body><p>{}</p></body></html>\n",
        status.explain()
    );
    let extra = match status {
        Status::MethodNotAllowed => "Allow: GET, HEAD\r\n",
        Status::Unauthorized => "WWW-Authenticate: Bearer realm=\"uplink\"\r\n",
        _ => "",
    };
    stream
        .write_all(head(status, "text/html; charset=utf-8", body.len() as u64, extra).as_bytes())
        .await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    Ok(())
}

/// The audit trail, oldest line first, streamed from its files as they are now.
async fn write_trail<S: smol::io::AsyncWrite + Unpin>(
    stream: &mut S,
    data_dir: &Path,
    request: &Request,
) -> std::io::Result<()> {
    let files = crate::audit::files(data_dir);
    let length = files.iter().map(|(_, len)| len).sum();
    let extra = "Content-Disposition: attachment; filename=\"uplink-audit.log\"\r\n";
    stream
        .write_all(head(Status::Ok, "text/plain; charset=utf-8", length, extra).as_bytes())
        .await?;
    if request.head_only {
        return Ok(());
    }
    for (path, len) in files {
        let file = smol::fs::File::open(&path).await?;
        let copied = smol::io::copy(file.take(len), &mut *stream).await?;
        // A file cut meanwhile (rotated away): the promised length is kept.
        for _ in copied..len {
            stream.write_all(b"\n").await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Request, Status> {
        parse(text.trim_end_matches("\r\n\r\n").as_bytes())
    }

    #[test]
    fn requests_are_read_or_refused_precisely() {
        let r = request("GET /status.json?token=abc&x=1 HTTP/1.1\r\nHost: box\r\n\r\n").unwrap();
        assert_eq!(
            (r.path.as_str(), r.token.as_deref(), r.head_only),
            ("/status.json", Some("abc"), false)
        );
        let r = request("HEAD / HTTP/1.0\r\nAuthorization: Bearer t0ken\r\n\r\n").unwrap();
        assert_eq!((r.token.as_deref(), r.head_only), (Some("t0ken"), true));
        assert_eq!(
            request("POST / HTTP/1.1\r\n\r\n"),
            Err(Status::MethodNotAllowed)
        );
        for bad in [
            "GET /\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "\u{1}\u{2}\u{3}",
        ] {
            assert_eq!(request(bad), Err(Status::BadRequest), "{bad:?}");
        }
        assert_eq!(parse(&[0xff, 0xfe]), Err(Status::BadRequest));
    }

    #[test]
    fn the_token_is_needed_where_one_is_set() {
        let r = |token: Option<&str>| Request {
            head_only: false,
            path: "/".into(),
            token: token.map(str::to_owned),
            token_in_query: true,
        };
        let open = Web::default();
        assert!(authorized(&open, &r(None)));
        let closed: Web = toml::from_str("token = \"abcdefghijkl\"").unwrap();
        assert!(!authorized(&closed, &r(None)));
        assert!(!authorized(&closed, &r(Some("abcdefghijkm"))));
        assert!(!authorized(&closed, &r(Some("abc"))));
        assert!(authorized(&closed, &r(Some("abcdefghijkl"))));
    }
}
