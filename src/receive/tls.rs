//! DICOM over TLS on the listener (PS3.15 B.1, the Basic TLS Secure Transport
//! Connection Profile, with today's protocol versions and ciphers).
//!
//! An ultrasound machine on a shared or untrusted network can send over TLS, and
//! with `tls_client_ca` only machines holding a certificate from the clinic's CA get
//! in. rustls does the work (the same library the uploads use); the association
//! code sees a byte stream like any other.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

use crate::config::Listener;

/// A connection an association runs on: plain TCP, or TLS over it.
pub trait Wire: Read + Write {
    /// Ends the connection (after a TLS close_notify where there is TLS).
    fn close(&mut self);
}

impl Wire for TcpStream {
    fn close(&mut self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Wire for StreamOwned<ServerConnection, TcpStream> {
    fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// The listener's TLS configuration, if it has one. Errors name the file at fault.
pub fn server_config(listener: &Listener) -> Result<Option<Arc<ServerConfig>>, String> {
    let (Some(cert_path), Some(key_path)) = (&listener.tls_certificate, &listener.tls_key) else {
        return Ok(None);
    };
    let certs = read_certificates(cert_path, "tls_certificate")?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        format!(
            "[listener] tls_key {}: no private key read ({e})",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &listener.tls_client_ca {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(ca_path, "tls_client_ca")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("[listener] tls_client_ca {}: {e}", ca_path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("[listener] tls_client_ca {}: {e}", ca_path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "[listener] tls_certificate {} and tls_key {} do not make a server identity: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(Some(Arc::new(config)))
}

fn read_certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("[listener] {key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "[listener] {key} {}: holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
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
