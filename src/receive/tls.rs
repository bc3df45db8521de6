//! DICOM over TLS on the listener (PS3.15 B.1, the Basic TLS Secure Transport
//! Connection Profile, with today's protocol versions and ciphers).
//!
//! An ultrasound machine on a shared or untrusted network can send over TLS, and
//! with `tls_client_ca` only machines holding a certificate from the clinic's CA get
//! in. rustls does the work (the same library the uploads use); the association
//! code sees a byte stream like any other. The identity itself is read from the
//! card's files by `tls_identity.rs`, where configuration checks it too.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// A connection an association runs on: plain TCP, or TLS over it.
pub trait Wire: Read + Write {
    /// Ends the connection (after a TLS close_notify where there is TLS).
    fn close(&mut self);
    /// How long a read may wait for the peer.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Wire for TcpStream {
    fn close(&mut self) {
        let _ = self.shutdown(Shutdown::Both);
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl Wire for StreamOwned<ServerConnection, TcpStream> {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// Wraps an accepted connection in TLS; the handshake happens on first use, within
/// the socket's timeouts.
pub fn accept(
    config: &Arc<ServerConfig>,
    stream: TcpStream,
) -> io::Result<StreamOwned<ServerConnection, TcpStream>> {
    let connection = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
    Ok(StreamOwned::new(connection, stream))
}
