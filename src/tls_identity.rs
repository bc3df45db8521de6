//! The listener's TLS identity, read from the PEM files the card names.
//!
//! Configuration reads them when it is checked (a wrong path is a configuration
//! error, exit 78), and the listener when it starts; neither depends on the other.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The files of a TLS server identity, as `[listener]` names them.
pub struct TlsFiles<'a> {
    pub certificate: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub client_ca: Option<&'a Path>,
}

/// The listener's TLS configuration, if it has one. Errors name the file at fault.
pub fn server_config(files: &TlsFiles) -> Result<Option<Arc<ServerConfig>>, String> {
    let (Some(cert_path), Some(key_path)) = (files.certificate, files.key) else {
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
    let builder = match files.client_ca {
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
