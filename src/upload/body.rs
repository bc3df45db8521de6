//! The body of a STOW-RS request: a multipart/related stream of spool files.
//!
//! It is read from the files as the request goes out, so memory does not grow with
//! the instances' size; its length is known in advance (no chunked encoding, which
//! some DICOMweb servers refuse). It counts the bytes sent, for `status`, and holds
//! to the destination's bandwidth cap.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

enum Segment {
    Bytes(Cursor<Vec<u8>>),
    File(io::Take<File>),
}

/// A multipart/related body over spool files.
pub struct Multipart {
    segments: VecDeque<Segment>,
    length: u64,
    sent: Arc<AtomicU64>,
    /// Bytes per second, when capped, and when the request started.
    cap: Option<(u64, Instant)>,
}

impl Multipart {
    /// Opens the files now, so a missing one fails before the request starts.
    pub fn new(
        boundary: &str,
        files: &[&Path],
        sent: Arc<AtomicU64>,
        bytes_per_sec: u64,
    ) -> io::Result<Multipart> {
        let mut segments = VecDeque::new();
        let mut length = 0;
        for path in files {
            let file = File::open(path)?;
            let size = file.metadata()?.len();
            let head =
                format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
            length += head.len() as u64 + size + 2;
            segments.push_back(Segment::Bytes(Cursor::new(head)));
            // Take: a file that grew since would otherwise break the announced length.
            segments.push_back(Segment::File(file.take(size)));
            segments.push_back(Segment::Bytes(Cursor::new(b"\r\n".to_vec())));
        }
        let tail = format!("--{boundary}--\r\n").into_bytes();
        length += tail.len() as u64;
        segments.push_back(Segment::Bytes(Cursor::new(tail)));
        Ok(Multipart {
            segments,
            length,
            sent,
            cap: (bytes_per_sec > 0).then(|| (bytes_per_sec, Instant::now())),
        })
    }

    /// The Content-Length of the body.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// The Content-Type header value for this body.
    pub fn content_type(boundary: &str) -> String {
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}")
    }
}

impl Read for Multipart {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = buf;
        if let Some((rate, started)) = self.cap {
            // Small reads keep the pace smooth; sleep while ahead of the cap.
            let slice = (rate / 10).max(1024) as usize;
            let len = buf.len().min(slice);
            buf = &mut buf[..len];
            let sent = self.sent.load(Ordering::Relaxed);
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        while let Some(segment) = self.segments.front_mut() {
            let n = match segment {
                Segment::Bytes(c) => c.read(buf)?,
                Segment::File(f) => {
                    let n = f.read(buf)?;
                    if n == 0 && f.limit() > 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "spool file shrank while being sent",
                        ));
                    }
                    n
                }
            };
            if n > 0 {
                self.sent.fetch_add(n as u64, Ordering::Relaxed);
                return Ok(n);
            }
            self.segments.pop_front();
        }
        Ok(0)
    }
}

/// A boundary that cannot occur in the parts: random, and long.
pub fn boundary() -> String {
    format!(
        "uplink-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_multipart_related_with_the_announced_length() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"AAAA").unwrap();
        std::fs::write(&b, b"BB").unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let mut body = Multipart::new("XyZ", &[&a, &b], sent.clone(), 0).unwrap();
        let length = body.len();
        let mut text = String::new();
        body.read_to_string(&mut text).unwrap();
        assert_eq!(
            text,
            "--XyZ\r\nContent-Type: application/dicom\r\n\r\nAAAA\r\n--XyZ\r\nContent-Type: application/dicom\r\n\r\nBB\r\n--XyZ--\r\n"
        );
        assert_eq!(text.len() as u64, length);
        assert_eq!(sent.load(Ordering::Relaxed), length);
    }

    #[test]
    fn the_bandwidth_cap_holds() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, vec![0u8; 40 * 1024]).unwrap();
        let mut body = Multipart::new("b", &[&a], Arc::new(AtomicU64::new(0)), 100 * 1024).unwrap();
        let started = Instant::now();
        io::copy(&mut body, &mut io::sink()).unwrap();
        // 40 KiB at 100 KiB/s: about 0.4 s, never much faster.
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn missing_files_fail_before_sending() {
        assert!(
            Multipart::new(
                "b",
                &[Path::new("/no/such")],
                Arc::new(AtomicU64::new(0)),
                0
            )
            .is_err()
        );
    }
}
