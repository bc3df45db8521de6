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

use base64::Engine;
use serde_json::Value;
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};

use super::body::{self, Multipart};
use super::token::{TokenFailure, Tokens};
use super::{Failure, Verdict, diagnose};
use crate::config::{AuthKind, Destination, ProxyUrl};
use crate::queue::Entry;

/// A server's answer is read up to this size: it lists a few lines per instance.
const RESPONSE_LIMIT: u64 = 4 * 1024 * 1024;
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// The server's host and port, for diagnostics.
    host: String,
    port: u16,
    /// The proxy requests to the server go through, if any.
    proxy: Option<ProxyUrl>,
    /// A static Authorization header (basic, bearer), or the tokens that renew
    /// themselves (oauth2, google).
    authorization: Option<String>,
    tokens: Option<Tokens>,
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
        let uri: ureq::http::Uri = base
            .parse()
            .map_err(|e| format!("{base} is not a valid URL: {e}"))?;
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let proxy = match destination.effective_proxy() {
            Some((url, no_proxy)) => {
                let proxy = ureq_proxy(&url, &no_proxy)?;
                (!proxy.is_no_proxy(&uri)).then_some((url, proxy))
            }
            None => None,
        };
        let idle = Some(Duration::from_secs(destination.timeout_secs.0));
        let agent = ureq::Agent::config_builder()
            .proxy(proxy.as_ref().map(|(_, p)| p.clone()))
            .tls_config(tls.build())
            .http_status_as_error(false)
            .max_redirects(0)
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
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                ))
            }
            AuthKind::Bearer => destination
                .token
                .as_ref()
                .map(|t| format!("Bearer {}", t.expose())),
            AuthKind::OAuth2 | AuthKind::Google => None,
        };
        let tokens = Tokens::of(destination)?;
        Ok(Client {
            agent,
            base: base.to_owned(),
            host,
            port,
            proxy: proxy.map(|(url, _)| url),
            authorization,
            tokens,
            bytes_per_sec: destination.max_kib_per_sec * 1024,
        })
    }

    pub fn uses_tls(&self) -> bool {
        self.base.starts_with("https:")
    }

    /// A cheap check that the server answers at all (any HTTP status will do), made
    /// before sending instances to a destination that was unreachable.
    pub fn probe(&self) -> Result<(), Failure> {
        let mut request = self.agent.head(&self.base);
        if let Some(auth) = self.authorization()? {
            request = request.header("Authorization", auth);
        }
        request
            .config()
            .timeout_global(Some(PROBE_TIMEOUT))
            .build()
            .call()
            .map(|_| ())
            .map_err(|e| self.failure(&e))
    }

    /// Downloads the URL itself (the `[update]` bundle) with this client's TLS,
    /// proxy and credentials, unless the server says it still has entity tag
    /// `etag` (`None` then). Any status but 200 and 304 is an error.
    pub fn fetch(
        &self,
        etag: Option<&str>,
    ) -> Result<Option<ureq::http::Response<ureq::Body>>, String> {
        let mut request = self.agent.get(&self.base);
        if let Some(auth) = self.authorization().map_err(Failure::into_message)? {
            request = request.header("Authorization", auth);
        }
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        let response = request
            .call()
            .map_err(|e| self.failure(&e).into_message())?;
        match response.status().as_u16() {
            200 => Ok(Some(response)),
            304 => Ok(None),
            300..=399 => Err(redirected(
                "the update URL answered",
                response.headers().get("Location"),
            )),
            status => Err(format!(
                "the update URL answered HTTP {status} {}",
                response.status().canonical_reason().unwrap_or("")
            )),
        }
    }

    /// POSTs `json` to the URL itself (the `[heartbeat]`); any answer but 2xx is
    /// an error.
    pub fn post_json(&self, json: Vec<u8>) -> Result<(), String> {
        let mut request = self
            .agent
            .post(&self.base)
            .header("Content-Type", "application/json");
        if let Some(auth) = self.authorization().map_err(Failure::into_message)? {
            request = request.header("Authorization", auth);
        }
        let response = request
            .send(json)
            .map_err(|e| self.failure(&e).into_message())?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(format!(
                "the heartbeat URL answered HTTP {status} {}",
                response.status().canonical_reason().unwrap_or("")
            )),
        }
    }

    /// What a request that did not get an answer means: a proxy that refused the
    /// credentials is an authentication failure; an untrusted certificate is
    /// explained by its issuer; the rest is the destination being unavailable.
    fn failure(&self, e: &ureq::Error) -> Failure {
        if let (ureq::Error::ConnectProxyFailed(reason), Some(proxy)) = (e, &self.proxy) {
            if reason.contains("407") {
                return Failure::Auth(diagnose::proxy_refusal(proxy, &self.host, self.port));
            }
        }
        let error = match unknown_issuer(e) {
            true => diagnose::untrusted_certificate(&self.host, self.port, self.proxy.as_ref())
                .unwrap_or_else(|| describe(e)),
            false => describe(e),
        };
        Failure::Unavailable {
            error,
            retry_after: None,
        }
    }

    /// The Authorization header: the card's, or a token that is still good.
    fn authorization(&self) -> Result<Option<String>, Failure> {
        let Some(tokens) = &self.tokens else {
            return Ok(self.authorization.clone());
        };
        match tokens.token(&self.agent) {
            Ok(token) => Ok(Some(format!("Bearer {token}"))),
            Err(TokenFailure::Refused(error)) => Err(Failure::Auth(error)),
            Err(TokenFailure::Unreachable(error)) => Err(Failure::Unavailable {
                error,
                retry_after: None,
            }),
        }
    }

    /// Stores `batch` in one request; a token the server refuses is renewed and
    /// the request made once more before the credentials count as refused.
    pub fn store(&self, batch: &[Entry], sent: Arc<AtomicU64>) -> Result<Vec<Verdict>, Failure> {
        match (self.store_once(batch, sent.clone()), &self.tokens) {
            (Err(Failure::Auth(_)), Some(tokens)) => {
                tokens.invalidate();
                sent.store(0, std::sync::atomic::Ordering::Relaxed);
                self.store_once(batch, sent)
            }
            (result, _) => result,
        }
    }

    fn store_once(&self, batch: &[Entry], sent: Arc<AtomicU64>) -> Result<Vec<Verdict>, Failure> {
        let authorization = self.authorization()?;
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
        if let Some(auth) = &authorization {
            request = request.header("Authorization", auth);
        }
        let mut response = request
            .send(ureq::SendBody::from_owned_reader(body))
            .map_err(|e| self.failure(&e))?;
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
            300..=399 => Err(Failure::Unavailable {
                error: redirected(&what, response.headers().get("Location")),
                retry_after,
            }),
            401 | 403 => Err(Failure::Auth(format!(
                "{what}: credentials refused; check auth, username, password, token or client"
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
                let content_type = response
                    .headers()
                    .get("Content-Type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let mut text = String::new();
                let _ = response
                    .body_mut()
                    .as_reader()
                    .take(RESPONSE_LIMIT)
                    .read_to_string(&mut text);
                match StoreResponse::read(&content_type, &text) {
                    Ok(answer) => {
                        let verdicts = answer.verdicts(&what, batch);
                        // A refusal that names no instance is the request's: the caller
                        // finds the culprit by sending each instance alone.
                        if status >= 400 && verdicts.iter().all(|v| matches!(v, Verdict::Retry(_)))
                        {
                            return Err(Failure::Refused(what));
                        }
                        Ok(verdicts)
                    }
                    Err(unreadable) if status >= 400 => {
                        Err(Failure::Refused(format!("{what}: {unreadable}")))
                    }
                    // Nothing is confirmed by a status alone: a captive portal or a
                    // proxy's page answers 200 too.
                    Err(unreadable) => Err(Failure::Unavailable {
                        error: format!("not confirmed: {what}, but {unreadable}"),
                        retry_after,
                    }),
                }
            }
            _ => Err(Failure::Unavailable {
                error: what,
                retry_after,
            }),
        }
    }
}

/// A redirect is never followed (a POST would turn into a GET and the credentials
/// would go elsewhere); the error says where it pointed, without its query.
fn redirected(what: &str, location: Option<&ureq::http::HeaderValue>) -> String {
    let location = location
        .and_then(|v| v.to_str().ok())
        .map(|l| l.split(['?', '#']).next().unwrap_or(l))
        .unwrap_or("nowhere");
    format!(
        "{what}: redirected to {location}, which is not followed: a captive portal or proxy login? \
         If the archive moved, change the destination's url"
    )
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
/// The ureq proxy for `url`, with the hosts it is not used for.
fn ureq_proxy(url: &ProxyUrl, no_proxy: &[String]) -> Result<ureq::Proxy, String> {
    let mut builder = ureq::Proxy::builder(ureq::ProxyProtocol::Http)
        .host(&url.host)
        .port(url.port);
    if let Some(user) = &url.username {
        builder = builder.username(user);
    }
    if let Some(password) = &url.password {
        builder = builder.password(password.expose());
    }
    for host in no_proxy {
        builder = builder.no_proxy(host);
    }
    builder.build().map_err(|e| format!("proxy {url}: {e}"))
}

/// Whether the server's certificate chains to no root the box trusts.
fn unknown_issuer(e: &ureq::Error) -> bool {
    let unknown = |e: &rustls::Error| {
        matches!(
            e,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        )
    };
    match e {
        ureq::Error::Rustls(e) => unknown(e),
        ureq::Error::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(unknown),
        _ => false,
    }
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        other => other.to_string(),
    }
}
/// Failure Reason 0111H, Duplicate SOP Instance: the server has it already.
const DUPLICATE_SOP_INSTANCE: u64 = 0x0111;

/// A Store Instances Response (PS3.18 10.5.3), read from DICOM JSON or from the XML
/// NativeDicomModel (PS3.19 A.1) that servers ignoring Accept send; both become the
/// DICOM JSON model.
#[derive(Debug)]
struct StoreResponse(Value);

impl StoreResponse {
    /// Reads the answer, or says in a technician's words why it is none.
    fn read(content_type: &str, body: &str) -> Result<StoreResponse, String> {
        let text = body.trim_start_matches('\u{feff}').trim();
        let lower: String = text
            .chars()
            .take(64)
            .collect::<String>()
            .to_ascii_lowercase();
        let html = content_type.to_ascii_lowercase().contains("html")
            || lower.starts_with("<!doctype html")
            || lower.starts_with("<html");
        if text.is_empty() {
            Err("its answer was empty".into())
        } else if html {
            Err("the server answered with an HTML page: a captive portal or proxy login?".into())
        } else if text.starts_with('{') || text.starts_with('[') {
            match serde_json::from_str(text) {
                // DICOM JSON is one object; some servers wrap it in an array.
                Ok(Value::Array(mut items)) if !items.is_empty() => {
                    Ok(StoreResponse(items.swap_remove(0)))
                }
                Ok(object @ Value::Object(_)) => Ok(StoreResponse(object)),
                _ => Err("its answer is not a DICOM JSON Store Instances Response".into()),
            }
        } else if text.starts_with('<') {
            let document = roxmltree::Document::parse(text)
                .map_err(|_| "its answer is not well-formed XML".to_owned())?;
            let root = document.root_element();
            if root.tag_name().name() != "NativeDicomModel" {
                return Err("its XML answer is not a DICOM Store Instances Response".into());
            }
            Ok(StoreResponse(native_to_json(root)))
        } else {
            Err(format!(
                "its answer is neither DICOM JSON nor DICOM XML (Content-Type {:?})",
                content_type
            ))
        }
    }

    /// The server's verdict on each instance of `batch`: stored only where the
    /// Referenced SOP Sequence names it (or the server says it had it already).
    fn verdicts(&self, what: &str, batch: &[Entry]) -> Vec<Verdict> {
        let stored: HashMap<String, Option<u64>> = self
            .sequence("00081199")
            .filter_map(|item| Some((uid_of(item)?, code_of(item, "00081196"))))
            .collect();
        let failed: HashMap<String, Option<u64>> = self
            .sequence("00081198")
            .filter_map(|item| Some((uid_of(item)?, code_of(item, "00081197"))))
            .collect();
        batch
            .iter()
            .map(|entry| {
                let uid = &entry.record.sop_instance_uid;
                match failed.get(uid) {
                    _ if stored.contains_key(uid) => Verdict::Stored(
                        stored[uid].map(|code| format!("{code:04X}H {}", warning_meaning(code))),
                    ),
                    Some(Some(DUPLICATE_SOP_INSTANCE)) => Verdict::Stored(None),
                    // A7xx: out of resources; the server may take it later.
                    Some(Some(code @ 0xA700..=0xA7FF)) => {
                        Verdict::Retry(format!("server out of resources ({code:04X}H)"))
                    }
                    Some(Some(code)) => Verdict::Refused(format!(
                        "server refused it (failure reason {code:04X}H: {})",
                        failure_meaning(*code)
                    )),
                    Some(None) => Verdict::Refused("server refused it".into()),
                    None => Verdict::Retry(format!(
                        "not confirmed: {what}, but the server's answer does not list the instance as stored"
                    )),
                }
            })
            .collect()
    }

    fn sequence<'a>(&'a self, tag: &str) -> impl Iterator<Item = &'a Value> {
        self.0
            .get(tag)
            .and_then(|e| e.get("Value"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }
}

/// A NativeDicomModel element as DICOM JSON: attributes by tag, each with its
/// values; a sequence's items as objects.
fn native_to_json(node: roxmltree::Node) -> Value {
    let mut object = serde_json::Map::new();
    for attribute in node.children().filter(|n| n.has_tag_name("DicomAttribute")) {
        let Some(tag) = attribute.attribute("tag") else {
            continue;
        };
        let values: Vec<Value> = attribute
            .children()
            .filter_map(|child| match child.tag_name().name() {
                "Item" => Some(native_to_json(child)),
                "Value" => Some(Value::String(child.text().unwrap_or("").trim().to_owned())),
                _ => None,
            })
            .collect();
        object.insert(
            tag.to_ascii_uppercase(),
            serde_json::json!({ "vr": attribute.attribute("vr").unwrap_or(""), "Value": values }),
        );
    }
    Value::Object(object)
}

/// A number as DICOM JSON gives it, or as text (from XML).
fn number(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The first value of the US attribute `tag` of a sequence item.
fn code_of(item: &Value, tag: &str) -> Option<u64> {
    item.get(tag)?.get("Value")?.get(0).and_then(number)
}

/// What a Failure Reason (0008,1197) means (PS3.18 Table 10.5.3-1, PS3.4 B.2.3).
fn failure_meaning(code: u64) -> &'static str {
    match code {
        0x0110 => "processing failure",
        0x0112 => "no such object instance",
        0x0119 => "class-instance conflict",
        0x0122 => "SOP class not supported",
        0x0124 => "not authorized",
        0x0213 => "resource limitation",
        0xA900..=0xA9FF => "data set does not match SOP class",
        0xC122 => "transfer syntax not supported",
        0xC000..=0xCFFF => "cannot understand",
        _ => "see the server's documentation",
    }
}

/// What a Warning Reason (0008,1196) means (PS3.18 Table 10.5.3-2).
fn warning_meaning(code: u64) -> &'static str {
    match code {
        0xB000 => "coercion of data elements",
        0xB006 => "elements discarded",
        0xB007 => "data set does not match SOP class",
        _ => "warning",
    }
}

fn uid_of(item: &Value) -> Option<String> {
    item.get("00081155")?
        .get("Value")?
        .get(0)?
        .as_str()
        .map(str::to_owned)
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
                origin: None,
                crc: None,
            },
        }
    }

    fn verdicts(status: u16, content_type: &str, body: &str, batch: &[Entry]) -> Vec<Verdict> {
        StoreResponse::read(content_type, body)
            .unwrap()
            .verdicts(&format!("HTTP {status}"), batch)
    }

    #[test]
    fn verdicts_follow_the_response_sequences() {
        let body = r#"{
            "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.1"]}}]},
            "00081198": {"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": ["1.2"]}, "00081197": {"vr": "US", "Value": [49152]}},
                {"00081155": {"vr": "UI", "Value": ["1.3"]}, "00081197": {"vr": "US", "Value": [42752]}},
                {"00081155": {"vr": "UI", "Value": ["1.5"]}, "00081197": {"vr": "US", "Value": [273]}}
            ]}
        }"#;
        let batch = [
            entry("1.1"),
            entry("1.2"),
            entry("1.3"),
            entry("1.4"),
            entry("1.5"),
        ];
        let v = verdicts(202, "application/dicom+json", body, &batch);
        assert_eq!(v[0], Verdict::Stored(None));
        assert_eq!(
            v[1],
            Verdict::Refused("server refused it (failure reason C000H: cannot understand)".into())
        );
        assert!(matches!(v[2], Verdict::Retry(_)), "A700 is worth retrying");
        assert!(matches!(v[3], Verdict::Retry(_)), "not confirmed in a 202");
        assert_eq!(
            v[4],
            Verdict::Stored(None),
            "0111H: the server had it already"
        );
    }

    #[test]
    fn warnings_and_failures_are_named_by_their_meaning() {
        let body = r#"{
            "00081199": {"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": ["1.1"]}, "00081196": {"vr": "US", "Value": [45056]}}]},
            "00081198": {"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": ["1.2"]}, "00081197": {"vr": "US", "Value": [49442]}}]}
        }"#;
        let v = verdicts(
            409,
            "application/dicom+json",
            body,
            &[entry("1.1"), entry("1.2")],
        );
        assert_eq!(
            v,
            [
                Verdict::Stored(Some("B000H coercion of data elements".into())),
                Verdict::Refused(
                    "server refused it (failure reason C122H: transfer syntax not supported)"
                        .into()
                )
            ]
        );
    }

    #[test]
    fn a_status_alone_confirms_nothing() {
        let batch = [entry("1.1")];
        for (content_type, body) in [
            ("", ""),
            ("text/plain", "  \r\n"),
            ("text/html", "<html><body>Please log in</body></html>"),
            ("", "<!DOCTYPE html>\n<html><form>Wi-Fi login</form></html>"),
            ("text/plain", "OK"),
            ("application/json", "{\"error\": "),
            ("text/xml", "<rss version=\"2.0\"/>"),
        ] {
            assert!(
                StoreResponse::read(content_type, body).is_err(),
                "{content_type} {body:?}"
            );
        }
        let html = StoreResponse::read("text/html; charset=utf-8", "<p>portal</p>").unwrap_err();
        assert!(html.contains("captive portal"), "{html}");
        assert!(matches!(
            verdicts(200, "application/json", "{}", &batch)[0],
            Verdict::Retry(_)
        ));
        assert!(StoreResponse::read("application/json", "[]").is_err());
        let wrapped = r#"[{"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.1"]}}]}}]"#;
        assert_eq!(verdicts(202, "", wrapped, &batch), [Verdict::Stored(None)]);
    }

    #[test]
    fn the_native_dicom_model_is_read_like_json() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">
              <DicomAttribute tag="00081199" vr="SQ" keyword="ReferencedSOPSequence">
                <Item number="1">
                  <DicomAttribute tag="00081155" vr="UI"><Value number="1">1.1</Value></DicomAttribute>
                </Item>
              </DicomAttribute>
              <DicomAttribute tag="00081198" vr="SQ" keyword="FailedSOPSequence">
                <Item number="1">
                  <DicomAttribute tag="00081155" vr="UI"><Value number="1">1.2</Value></DicomAttribute>
                  <DicomAttribute tag="00081197" vr="US"><Value number="1">49152</Value></DicomAttribute>
                </Item>
              </DicomAttribute>
            </NativeDicomModel>"#;
        let batch = [entry("1.1"), entry("1.2"), entry("1.3")];
        let v = verdicts(200, "application/dicom+xml", xml, &batch);
        assert_eq!(v[0], Verdict::Stored(None));
        assert_eq!(
            v[1],
            Verdict::Refused("server refused it (failure reason C000H: cannot understand)".into())
        );
        assert!(matches!(v[2], Verdict::Retry(_)));
    }

    #[test]
    fn a_redirect_names_where_it_pointed_without_its_query() {
        let location =
            ureq::http::HeaderValue::from_static("http://portal.example/login?session=abc");
        let error = redirected("HTTP 302 Found", Some(&location));
        assert!(error.contains("http://portal.example/login"), "{error}");
        assert!(!error.contains("session"), "{error}");
        assert!(error.contains("not followed"), "{error}");
    }
}
