//! A DICOMweb STOW-RS client (PS3.18 10.5): `POST {base}/studies`.
//!
//! Instances are streamed from the spool as one multipart/related body (see
//! `body.rs`); the server's answer is read per instance from the Referenced SOP
//! Sequence and Failed SOP Sequence of its DICOM JSON response. What the HTTP status
//! says of the request as a whole (unreachable, credentials refused, request refused)
//! is a [`Failure`]; what the server says of each instance is a [`Verdict`].

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde_json::Value;
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};

use super::body::{self, Multipart};
use super::{Failure, Verdict};
use crate::config::{AuthKind, Destination};
use crate::queue::Entry;

/// A server's answer is read up to this size: it lists a few lines per instance.
const RESPONSE_LIMIT: u64 = 4 * 1024 * 1024;
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
    bytes_per_sec: u64,
}

impl Client {
    /// Builds the client: TLS roots (the system's plus `ca_file`), client
    /// certificate, timeouts, credentials. Errors name the file at fault.
    pub fn new(destination: &Destination, base: &str) -> Result<Client, String> {
        let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        if let Some(path) = &destination.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
            let before = roots.len();
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(PemItem::Certificate(cert)) = item {
                    roots.push(cert.to_owned());
                }
            }
            if roots.len() == before {
                return Err(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        let mut tls = TlsConfig::builder().root_certs(RootCerts::from(roots));
        if let (Some(cert), Some(key)) = (&destination.client_cert, &destination.client_key) {
            tls = tls.client_cert(Some(client_cert(cert, key)?));
        }
        let idle = Some(Duration::from_secs(destination.timeout_secs.0));
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(
                destination.connect_timeout_secs.0,
            )))
            .timeout_per_read(idle)
            .timeout_per_write(idle)
            .user_agent(concat!("uplink/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let authorization = match destination.auth {
            AuthKind::None => None,
            AuthKind::Basic => {
                let user = destination.username.as_deref().unwrap_or_default();
                let password = destination
                    .password
                    .as_ref()
                    .map(|s| s.expose())
                    .unwrap_or_default();
                Some(format!(
                    "Basic {}",
                    base64(format!("{user}:{password}").as_bytes())
                ))
            }
            AuthKind::Bearer => destination
                .token
                .as_ref()
                .map(|t| format!("Bearer {}", t.expose())),
        };
        Ok(Client {
            agent,
            base: base.to_owned(),
            authorization,
            bytes_per_sec: destination.max_kib_per_sec * 1024,
        })
    }

    pub fn uses_tls(&self) -> bool {
        self.base.starts_with("https:")
    }

    /// A cheap check that the server answers at all (any HTTP status will do), made
    /// before sending instances to a destination that was unreachable.
    pub fn probe(&self) -> Result<(), String> {
        let mut request = self.agent.head(&self.base);
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        request
            .config()
            .timeout_global(Some(PROBE_TIMEOUT))
            .build()
            .call()
            .map(|_| ())
            .map_err(|e| describe(&e))
    }

    /// Stores `batch` in one request.
    pub fn store(&self, batch: &[Entry], sent: Arc<AtomicU64>) -> Result<Vec<Verdict>, Failure> {
        let boundary = body::boundary();
        let files: Vec<&std::path::Path> = batch.iter().map(|e| e.path.as_path()).collect();
        let body = Multipart::new(&boundary, &files, sent, self.bytes_per_sec).map_err(|e| {
            Failure::Unavailable {
                error: format!("cannot read the spool: {e}"),
                retry_after: None,
            }
        })?;
        let mut request = self
            .agent
            .post(format!("{}/studies", self.base))
            .header("Content-Type", Multipart::content_type(&boundary))
            .header("Content-Length", body.len().to_string())
            .header("Accept", "application/dicom+json");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let mut response = request
            .send(ureq::SendBody::from_owned_reader(body))
            .map_err(|e| Failure::Unavailable {
                error: describe(&e),
                retry_after: None,
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reason = response.status().canonical_reason().unwrap_or("");
        let what = format!("HTTP {status} {reason}").trim_end().to_owned();
        match status {
            401 | 403 => Err(Failure::Auth(format!(
                "{what}: credentials refused; check auth, username, password or token"
            ))),
            408 | 429 | 500..=599 => Err(Failure::Unavailable {
                error: what,
                retry_after,
            }),
            404 | 405 => Err(Failure::Unavailable {
                error: format!("{what}: is {} a DICOMweb base URL?", self.base),
                retry_after,
            }),
            200..=299 | 400..=499 => {
                let mut text = String::new();
                let _ = response
                    .body_mut()
                    .as_reader()
                    .take(RESPONSE_LIMIT)
                    .read_to_string(&mut text);
                let verdicts = verdicts(status, &text, batch);
                // A refusal that names no instance is the request's: the caller finds
                // the culprit by sending each instance alone.
                if status >= 400 && verdicts.iter().all(|v| matches!(v, Verdict::Retry(_))) {
                    return Err(Failure::Refused(what));
                }
                Ok(verdicts)
            }
            _ => Err(Failure::Unavailable {
                error: what,
                retry_after,
            }),
        }
    }
}

fn client_cert(cert: &std::path::Path, key: &std::path::Path) -> Result<ClientCert, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&read(cert)?)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    let key = ureq::tls::parse_pem(&read(key)?)
        .find_map(|item| match item {
            Ok(PemItem::PrivateKey(k)) => Some(k.to_owned()),
            _ => None,
        })
        .ok_or_else(|| format!("client_key {} holds no PEM private key", key.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "client_cert {} holds no PEM certificate",
            cert.display()
        ));
    }
    Ok(ClientCert::new_with_certs(&certs, key))
}

/// A transport failure, worded without the request's content.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        other => other.to_string(),
    }
}
/// The server's verdict on each instance of `batch`.
fn verdicts(status: u16, body: &str, batch: &[Entry]) -> Vec<Verdict> {
    let json: Option<Value> = serde_json::from_str(body).ok();
    // DICOM JSON is one object; some servers wrap it in an array.
    let object = match &json {
        Some(Value::Array(items)) => items.first(),
        other => other.as_ref(),
    };
    let stored: Vec<String> = sequence(object, "00081199").filter_map(uid_of).collect();
    let failed: HashMap<String, Option<u64>> = sequence(object, "00081198")
        .filter_map(|item| {
            let reason = item
                .get("00081197")
                .and_then(|e| e.get("Value"))
                .and_then(|v| v.get(0))
                .and_then(Value::as_u64);
            Some((uid_of(item)?, reason))
        })
        .collect();
    batch
        .iter()
        .map(|entry| {
            let uid = &entry.record.sop_instance_uid;
            if let Some(reason) = failed.get(uid) {
                match reason {
                    // A7xx: out of resources; the server may take it later.
                    Some(code @ 0xA700..=0xA7FF) => {
                        Verdict::Retry(format!("server out of resources ({code:04X}H)"))
                    }
                    Some(code) => {
                        Verdict::Refused(format!("server refused it (failure reason {code:04X}H)"))
                    }
                    None => Verdict::Refused("server refused it".into()),
                }
            } else if stored.contains(uid) || status == 200 {
                Verdict::Stored
            } else {
                Verdict::Retry("server did not confirm it".into())
            }
        })
        .collect()
}

fn sequence<'a>(object: Option<&'a Value>, tag: &str) -> impl Iterator<Item = &'a Value> {
    object
        .and_then(|o| o.get(tag))
        .and_then(|e| e.get("Value"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn uid_of(item: &Value) -> Option<String> {
    item.get("00081155")?
        .get("Value")?
        .get(0)?
        .as_str()
        .map(str::to_owned)
}

/// Standard base64 (RFC 4648), for the Basic authorization header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;
    use crate::queue::Record;

    fn entry(uid: &str) -> Entry {
        Entry {
            id: 1,
            path: "/nowhere".into(),
            record: Record {
                profile: Profile::Identified,
                size: 1,
                received_ms: 0,
                sop_class_uid: "1.2".into(),
                sop_instance_uid: uid.into(),
                pending: vec![],
            },
        }
    }

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"clinic:s3cret"), "Y2xpbmljOnMzY3JldA==");
    }

    #[test]
    fn verdicts_follow_the_response_sequences() {
        let body = r#"{
            "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.1"]}}]},
            "00081198": {"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": ["1.2"]}, "00081197": {"vr": "US", "Value": [49152]}},
                {"00081155": {"vr": "UI", "Value": ["1.3"]}, "00081197": {"vr": "US", "Value": [42752]}}
            ]}
        }"#;
        let batch = [entry("1.1"), entry("1.2"), entry("1.3"), entry("1.4")];
        let v = verdicts(202, body, &batch);
        assert_eq!(v[0], Verdict::Stored);
        assert_eq!(
            v[1],
            Verdict::Refused("server refused it (failure reason C000H)".into())
        );
        assert!(matches!(v[2], Verdict::Retry(_)), "A700 is worth retrying");
        assert!(matches!(v[3], Verdict::Retry(_)), "not confirmed in a 202");
    }

    #[test]
    fn status_decides_when_the_body_says_nothing() {
        let batch = [entry("1.1")];
        assert_eq!(verdicts(200, "", &batch), [Verdict::Stored]);
        assert!(matches!(
            verdicts(409, "<xml/>", &batch)[0],
            Verdict::Retry(_)
        ));
        assert!(matches!(verdicts(202, "[]", &batch)[0], Verdict::Retry(_)));
        let wrapped = r#"[{"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.1"]}}]}}]"#;
        assert_eq!(verdicts(202, wrapped, &batch), [Verdict::Stored]);
    }
}
