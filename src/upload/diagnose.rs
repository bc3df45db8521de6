//! Why a connection to a destination failed, in words a hospital's IT department
//! can act on.
//!
//! The HTTP client says "proxy server responded 407" and "invalid peer
//! certificate: UnknownIssuer". What the technician needs is which authentication
//! the proxy wants, and who issued the certificate the box was shown (the
//! hospital's TLS-inspecting proxy, usually). Both are asked again here, once, on
//! a connection of their own: a CONNECT to the proxy whose answer is read whole,
//! and a TLS handshake that records the certificate instead of judging it. Nothing
//! is sent past the handshake.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::config::ProxyUrl;

const TIMEOUT: Duration = Duration::from_secs(10);
/// A proxy's answer to CONNECT is read up to this size.
const ANSWER_LIMIT: usize = 16 * 1024;

/// What a proxy answered to CONNECT, when it was not 200.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    status: u16,
    /// The schemes of its Proxy-Authenticate headers ("Basic", "NTLM", ...).
    schemes: Vec<String>,
}

/// The explanation of a proxy's 407 to CONNECT `host:port`.
pub fn proxy_refusal(proxy: &ProxyUrl, host: &str, port: u16) -> String {
    match tunnel(proxy, host, port) {
        Err(e) => format!("the proxy {proxy} cannot be reached: {e}"),
        Ok(Err(refusal)) => explain(proxy, host, &refusal),
        Ok(Ok(_)) => format!("the proxy {proxy} refused, then let the box through to {host}"),
    }
}

fn explain(proxy: &ProxyUrl, host: &str, refusal: &Refusal) -> String {
    let basic = refusal
        .schemes
        .iter()
        .any(|s| s.eq_ignore_ascii_case("basic"));
    match refusal.status {
        407 if !basic && !refusal.schemes.is_empty() => format!(
            "the proxy {proxy} asks for {} authentication (407): uplink speaks Basic only; ask the IT department for a Basic account for the box, or for {host} to be allowed without one",
            refusal.schemes.join(", ")
        ),
        407 if proxy.username.is_none() => format!(
            "the proxy {proxy} asks for a user name and password (407): set proxy = \"http://USER@{}:{}\" and proxy_password_file",
            proxy.host, proxy.port
        ),
        407 => format!(
            "the proxy {proxy} refused the user name or password (407): check proxy and proxy_password"
        ),
        status => format!(
            "the proxy {proxy} answered {status} to CONNECT {host}: ask the IT department to allow it"
        ),
    }
}

/// Who issued the certificate `host:port` presents (through `proxy`, if any), for
/// a certificate the box does not trust.
pub fn untrusted_certificate(host: &str, port: u16, proxy: Option<&ProxyUrl>) -> Option<String> {
    let mut stream = match proxy {
        Some(proxy) => tunnel(proxy, host, port).ok()?.ok()?,
        None => connect(host, port).ok()?,
    };
    let certificate = presented_certificate(&mut stream, host)?;
    let issuer = issuer_name(&certificate)?;
    Some(format!(
        "the server's certificate is issued by '{issuer}', which this box does not trust: a TLS-inspecting proxy? add its CA certificate as ca_file"
    ))
}

fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let address = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{host} has no address")))?;
    let stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// A CONNECT through `proxy`: the tunnel, or the proxy's refusal.
fn tunnel(proxy: &ProxyUrl, host: &str, port: u16) -> io::Result<Result<TcpStream, Refusal>> {
    let mut stream = connect(&proxy.host, proxy.port)?;
    let mut request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    if let Some(user) = &proxy.username {
        let password = proxy.password.as_ref().map_or("", |p| p.expose());
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request += &format!("Proxy-Authorization: Basic {token}\r\n");
    }
    request += "\r\n";
    stream.write_all(request.as_bytes())?;
    let head = read_head(&mut stream)?;
    let refusal = parse_answer(&head)?;
    Ok(match refusal.status {
        200..=299 => Ok(stream),
        _ => Err(refusal),
    })
}

/// The answer's head, byte by byte, so that nothing past it is consumed.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= ANSWER_LIMIT || stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn parse_answer(head: &str) -> io::Result<Refusal> {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other("the proxy's answer is not HTTP"))?;
    let schemes = lines
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authenticate"))
        .filter_map(|(_, value)| value.split_whitespace().next())
        .map(|scheme| scheme.trim_end_matches(',').to_owned())
        .collect();
    Ok(Refusal { status, schemes })
}

/// The end-entity certificate of a TLS handshake with `host` over `stream`.
fn presented_certificate(stream: &mut TcpStream, host: &str) -> Option<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        certificate: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let mut connection = ClientConnection::new(Arc::new(config), name).ok()?;
    // Ends with the recorder's refusal, after it saw the certificate.
    while connection.is_handshaking() {
        if connection.complete_io(stream).is_err() {
            break;
        }
    }
    recorder.certificate.lock().ok()?.take()
}

/// A certificate verifier that keeps the certificate and refuses it.
#[derive(Debug)]
struct Recorder {
    certificate: Mutex<Option<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut kept) = self.certificate.lock() {
            *kept = Some(end_entity.to_vec());
        }
        Err(rustls::Error::General("certificate recorded".into()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One DER element: its tag, its content, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |n, b| (n << 8) | *b as usize);
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// The issuer's common name (else its organization) of an X.509 certificate
/// (RFC 5280 4.1: the fourth field of the TBSCertificate, after the optional
/// version).
fn issuer_name(der: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    const ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(certificate)? else {
        return None;
    };
    let mut fields = Vec::new();
    while let Some((tag, content, rest)) = element(tbs) {
        fields.push((tag, content));
        tbs = rest;
    }
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let (SEQUENCE, mut name) = *fields.get(skip + 2)? else {
        return None;
    };
    let (mut common, mut organization) = (None, None);
    while let Some((_, set, rest)) = element(name) {
        if let Some((_, attribute, _)) = element(set) {
            if let Some((0x06, oid, value)) = element(attribute) {
                let text = element(value).map(|(_, v, _)| String::from_utf8_lossy(v).into_owned());
                match oid {
                    o if o == COMMON_NAME => common = text,
                    o if o == ORGANIZATION => organization = text,
                    _ => {}
                }
            }
        }
        name = rest;
    }
    common.or(organization)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    fn name(attributes: &[([u8; 3], &str)]) -> Vec<u8> {
        let sets: Vec<u8> = attributes
            .iter()
            .flat_map(|(oid, value)| {
                let attribute = [tlv(0x06, oid), tlv(0x0c, value.as_bytes())].concat();
                tlv(0x31, &tlv(0x30, &attribute))
            })
            .collect();
        tlv(0x30, &sets)
    }

    fn certificate(issuer: &[u8], versioned: bool) -> Vec<u8> {
        let mut tbs = Vec::new();
        if versioned {
            tbs.extend(tlv(0xa0, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[0x01; 20]));
        tbs.extend(tlv(0x30, &tlv(0x06, &[0x2a, 0x86, 0x48])));
        tbs.extend_from_slice(issuer);
        tbs.extend(name(&[([0x55, 0x04, 0x03], "the subject")]));
        tlv(
            0x30,
            &[tlv(0x30, &tbs), tlv(0x30, &[]), tlv(0x03, &[0])].concat(),
        )
    }

    #[test]
    fn the_issuer_is_named_by_its_common_name_else_its_organization() {
        let both = name(&[
            ([0x55, 0x04, 0x0a], "Hospital"),
            ([0x55, 0x04, 0x03], "Hospital Inspection CA"),
        ]);
        assert_eq!(
            issuer_name(&certificate(&both, true)).as_deref(),
            Some("Hospital Inspection CA")
        );
        let organization = name(&[([0x55, 0x04, 0x0a], "mitmproxy")]);
        assert_eq!(
            issuer_name(&certificate(&organization, false)).as_deref(),
            Some("mitmproxy")
        );
        assert_eq!(issuer_name(b"\x30\x05garbage"), None);
        assert_eq!(issuer_name(&[]), None);
    }

    #[test]
    fn a_proxy_answer_says_which_authentication_it_wants() {
        let answer = parse_answer(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\nproxy-authenticate: Negotiate\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            answer,
            Refusal {
                status: 407,
                schemes: vec!["NTLM".into(), "Negotiate".into()]
            }
        );
        let proxy = ProxyUrl::parse("http://box:pw@proxy.hospital:3128").unwrap();
        let told = explain(&proxy, "cloud.example", &answer);
        assert!(
            told.contains("NTLM, Negotiate") && told.contains("Basic only"),
            "{told}"
        );
        assert!(!told.contains("pw@"), "no password: {told}");
        let basic = Refusal {
            status: 407,
            schemes: vec!["Basic".into()],
        };
        assert!(explain(&proxy, "cloud.example", &basic).contains("refused the user name"));
        let anonymous = ProxyUrl::parse("proxy.hospital:3128").unwrap();
        assert!(explain(&anonymous, "cloud.example", &basic).contains("proxy_password_file"));
        assert!(parse_answer("garbage").is_err());
    }
}
