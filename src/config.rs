//! The agent's configuration: one TOML file a clinic edits on the SD card.
//!
//! Every field has a default, so the agent runs with no file at all. Anything the
//! file says wrong (an unknown key, a wrong type, a bad value) is an error that names
//! the key and the line, and `serve` refuses to start on it: a box that silently
//! ignores a typo in its AE title is worse than one that does not start.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the agent looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/uplink/uplink.toml";

/// The complete, validated configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The DICOM listener the ultrasound machine sends to.
    pub listener: Listener,
    /// Where spool, queue and device key live.
    pub storage: Storage,
    /// Where received exams go; with none, a `dir:` outbox under the data dir.
    #[serde(rename = "destination")]
    pub destinations: Vec<Destination>,
    /// The fixed values of the `strict` profile.
    pub strict: StrictValues,
    /// The `typical` profile's settings.
    pub typical: TypicalSettings,
    /// What the clinic knows of its machines' screens: where their burned-in text
    /// is, in images that do not say where the image is.
    #[serde(rename = "pixel_rule", skip_serializing_if = "Vec::is_empty")]
    pub pixel_rules: Vec<PixelRule>,
    /// The ultrasound machines that ask for storage commitment: where a report goes
    /// when it cannot travel on the association that asked for it.
    #[serde(rename = "modality", skip_serializing_if = "Vec::is_empty")]
    pub modalities: Vec<Modality>,
    /// The LED panel.
    pub leds: Leds,
    /// Log output.
    pub log: Log,
    /// The box's own network; applied by `uplink provision`, ignored by the agent.
    pub network: Network,
    /// Where the box fetches its update bundles, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateSource>,
    /// Where the box posts its heartbeat, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatTarget>,
    /// The technician's status page, if served (the card's uplink.toml has it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<Web>,
    /// Whether a destination was configured (else the box is not provisioned).
    #[serde(skip)]
    pub provisioned: bool,
}

/// `[update]`: the HTTPS address of the box's update bundle, checked every
/// `interval_secs`. Every other key is a destination's (auth, TLS, proxy,
/// timeouts), read and checked as a destination's are, so the download goes the
/// way the uploads go.
#[derive(Debug, Clone)]
pub struct UpdateSource {
    pub interval_secs: Bounded<300, 2_592_000>,
    pub server: Destination,
}

/// `[heartbeat]`: where the box posts its status snapshot every `interval_secs`
/// (and at once when its state changes), with a destination's other keys.
#[derive(Debug, Clone)]
pub struct HeartbeatTarget {
    pub interval_secs: Bounded<30, 86_400>,
    pub server: Destination,
}

const UPDATE_INTERVAL_SECS: u64 = 6 * 3600;
const HEARTBEAT_INTERVAL_SECS: u64 = 300;

/// Reads a section naming an HTTPS endpoint the box calls by itself: its
/// `interval_secs`, and the rest as a destination named after the section.
fn endpoint<'de, D: serde::Deserializer<'de>, const MIN: u64, const MAX: u64>(
    d: D,
    section: &str,
    default_interval: u64,
) -> Result<(Bounded<MIN, MAX>, Destination), D::Error> {
    use serde::de::Error;
    let mut table = toml::Table::deserialize(d)?;
    let interval_secs = match table.remove("interval_secs") {
        Some(value) => Bounded::deserialize(value)
            .map_err(|e| D::Error::custom(format!("[{section}] interval_secs: {e}")))?,
        None => Bounded(default_interval),
    };
    if table.contains_key("name") || table.contains_key("profile") {
        return Err(D::Error::custom(format!(
            "[{section}] takes url, interval_secs and a destination's auth, TLS and proxy keys, not name or profile"
        )));
    }
    table.insert("name".into(), section.into());
    let server = Destination::deserialize(table).map_err(D::Error::custom)?;
    match &server.url {
        DestinationUrl::Dicomweb(url) if url.starts_with("http://") && !server.insecure => {
            Err(D::Error::custom(format!(
                "[{section}] url {url} is not encrypted: use https://, or add insecure = true in a lab"
            )))
        }
        DestinationUrl::Dicomweb(_) => Ok((interval_secs, server)),
        DestinationUrl::Dir(_) => Err(D::Error::custom(format!(
            "[{section}] url must be an https:// address"
        ))),
    }
}

/// Writes an endpoint section back: the destination's keys but its name and
/// profile, and the interval.
fn endpoint_table<S: serde::Serializer>(
    s: S,
    interval_secs: u64,
    server: &Destination,
) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    let mut table = toml::Table::try_from(server).map_err(S::Error::custom)?;
    table.remove("name");
    table.remove("profile");
    table.insert("interval_secs".into(), (interval_secs as i64).into());
    table.serialize(s)
}

impl<'de> Deserialize<'de> for UpdateSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (interval_secs, server) = endpoint(d, "update", UPDATE_INTERVAL_SECS)?;
        Ok(UpdateSource {
            interval_secs,
            server,
        })
    }
}

impl Serialize for UpdateSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        endpoint_table(s, self.interval_secs.0, &self.server)
    }
}

impl<'de> Deserialize<'de> for HeartbeatTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (interval_secs, server) = endpoint(d, "heartbeat", HEARTBEAT_INTERVAL_SECS)?;
        Ok(HeartbeatTarget {
            interval_secs,
            server,
        })
    }
}

impl Serialize for HeartbeatTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        endpoint_table(s, self.interval_secs.0, &self.server)
    }
}

/// `[network]`: static address and time servers for the box; DHCP where empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Address with prefix length, e.g. "192.168.1.50/24".
    pub address: Option<ipnet::IpNet>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    /// NTP servers (host names or addresses).
    pub ntp: Vec<String>,
}

impl Network {
    fn check(&self) -> Result<(), String> {
        if self.address.is_none() && (self.gateway.is_some() || !self.dns.is_empty()) {
            return Err(
                "[network] gateway and dns need a static address: set address = \"192.168.1.50/24\" too, or remove them to use DHCP".into(),
            );
        }
        for server in &self.ntp {
            let plain = |c: char| c.is_ascii_alphanumeric() || ".-:".contains(c);
            if server.is_empty() || !server.chars().all(plain) {
                return Err(format!(
                    "[network] ntp server \"{server}\" is not a host name or address"
                ));
            }
        }
        Ok(())
    }
}

/// `[web]`: the read-only status page for the technician (`web.rs`). Without the
/// section the agent serves none.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// Address to bind; `0.0.0.0` serves every interface.
    pub bind: IpAddr,
    /// HTTP port; 80 (below 1024) has provisioning grant the capability to bind it.
    pub port: Port,
    /// With a token, the page is shown only to a browser that brings it
    /// (`http://box/?token=...` or `Authorization: Bearer ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

impl Default for Web {
    fn default() -> Web {
        Web {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: Port(80),
            token: None,
        }
    }
}

impl Web {
    fn check(&self, listener: &Listener) -> Result<(), String> {
        if let Some(token) = &self.token {
            let plain = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
            if token.expose().len() < 12 || !token.expose().chars().all(plain) {
                return Err(
                    "[web] token must be at least 12 letters, digits, '-', '.', '_' or '~' (it travels in the page's address)"
                        .into(),
                );
            }
        }
        if self.port == listener.port {
            return Err(format!(
                "[web] port = {} is the DICOM port too: give the page a port of its own (80)",
                self.port.0
            ));
        }
        Ok(())
    }
}

/// `[listener]`: the DICOM storage SCP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listener {
    /// Address to bind; `0.0.0.0` listens on every interface.
    pub bind: IpAddr,
    /// DICOM port (104 is the registered one and needs CAP_NET_BIND_SERVICE).
    pub port: Port,
    /// Our AE title: the called AE title an association must name.
    pub ae_title: AeTitle,
    /// Calling AE titles allowed to associate; empty allows any.
    pub allowed_callers: Vec<AeTitle>,
    /// Source addresses or networks (CIDR) allowed to connect; empty allows any.
    pub allowed_addresses: Vec<ipnet::IpNet>,
    /// Associations served at once; one more is rejected (transient, local limit exceeded).
    pub max_associations: Bounded<1, 256>,
    /// Largest P-DATA PDU we accept (bytes); a peer that sends more is aborted.
    pub max_pdu_length: Bounded<4096, 1_048_576>,
    /// Seconds an association may stay silent (while negotiating or between PDUs).
    pub idle_timeout_secs: Bounded<1, 86_400>,
    /// What to do with storage SOP classes this build does not know (private raw data):
    /// `accept` queues them like any other, `reject` refuses their presentation contexts.
    pub unknown_sop_classes: UnknownSopClasses,
    /// DICOM over TLS (PS3.15 B.1): our certificate chain (PEM). With it and
    /// `tls_key`, the listener speaks TLS only.
    pub tls_certificate: Option<PathBuf>,
    /// The private key of `tls_certificate` (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign the ultrasound machines' client certificates;
    /// when set, a peer without such a certificate is refused.
    pub tls_client_ca: Option<PathBuf>,
    /// What a storage commitment commits to: `stored` (on the card, flushed and
    /// queued, as a C-STORE's Success already says) or `delivered` (every
    /// destination has confirmed it).
    pub commit: Commit,
    /// With `commit = "delivered"`: how long a commitment waits for the
    /// destinations before it reports what they have not confirmed as failed.
    pub commit_wait_secs: Bounded<1, 2_592_000>,
    /// `[[listener.user]]`: with any, an association must name one of these users
    /// (User Identity negotiation, PS3.7 D.3.3.7); others are refused.
    #[serde(rename = "user", skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<ListenerUser>,
}

/// What "committed" means in a storage commitment report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Commit {
    #[default]
    Stored,
    Delivered,
}

/// `[[listener.user]]`: a user a modality may associate as.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerUser {
    pub username: String,
    /// Without one, the username alone is enough (identity type 1).
    pub password: Option<Secret>,
}

/// `[[modality]]`: an ultrasound machine the box sends storage commitment reports
/// to on an association of its own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Modality {
    /// The machine's AE title, as it calls the box.
    pub ae_title: AeTitle,
    /// Its address; by default, the one the request came from.
    pub host: Option<String>,
    /// The port its storage commitment SCU listens on for reports.
    #[serde(default = "well_known_port")]
    pub port: Port,
}

fn well_known_port() -> Port {
    Port(104)
}

/// `[storage]`: the data directory on the SD card.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Spool, queue and device key. Defaults to systemd's `$STATE_DIRECTORY` when the
    /// agent runs as a service, else `./uplink-data`.
    pub data_dir: PathBuf,
    /// Refuse new instances (C-STORE status A700) when the data dir's filesystem has
    /// less than this many MiB free, so the card never fills up completely.
    pub min_free_mib: u64,
}

impl Listener {
    /// The files of the listener's TLS identity.
    pub fn tls_files(&self) -> crate::tls_identity::TlsFiles<'_> {
        crate::tls_identity::TlsFiles {
            certificate: self.tls_certificate.as_deref(),
            key: self.tls_key.as_deref(),
            client_ca: self.tls_client_ca.as_deref(),
        }
    }
}

/// `[[destination]]`: one place every received instance is delivered to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// A short name for logs and status: letters, digits, `-` and `_`.
    pub name: DestinationName,
    /// A DICOMweb base URL (`https://host/dicom-web`, STOW-RS at `{url}/studies`),
    /// or `dir:PATH` for a folder.
    pub url: DestinationUrl,
    /// `identified` (as received), `typical` or `strict` (anonymized).
    #[serde(default)]
    pub profile: Profile,
    /// `none`, `basic` (username and password) or `bearer` (token).
    #[serde(default)]
    pub auth: AuthKind,
    /// User name for `basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `basic`; better kept in `password_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A file holding the password (readable only by the service user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Token for `bearer`; better kept in `token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// A file holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// `oauth2`: the token endpoint, the client and what it asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Space-separated scopes (Azure: "https://dicom.healthcareapis.azure.com/.default").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The `audience` parameter (Keycloak, Auth0) and the `resource` parameter
    /// (RFC 8707; Entra ID v1 endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `google`: the service account's JSON key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The key file's contents, read at start.
    #[serde(skip)]
    pub key: Option<Secret>,
    /// Extra CA certificates (PEM) trusted besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for servers that ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// Seconds to wait for a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: Bounded<1, 600>,
    /// Seconds a request may make no progress (sending or receiving) before it fails.
    #[serde(default = "default_idle_timeout")]
    pub timeout_secs: Bounded<1, 3600>,
    /// Upload bandwidth cap in KiB/s; 0 means none.
    #[serde(default)]
    pub max_kib_per_sec: u64,
    /// Instances sent together in one STOW-RS request (small instances only);
    /// `batch` is its older name.
    #[serde(default = "default_batch", alias = "batch")]
    pub max_instances_per_request: Bounded<1, 64>,
    /// The largest request the destination takes, in MiB (0: no limit of its
    /// own); a batch never exceeds it, an instance larger than it is refused for
    /// the destination.
    #[serde(default)]
    pub max_request_mib: u64,
    /// The largest instance the destination takes, in MiB (0: no limit); a larger
    /// one is refused for it, with the reason in `status`, and not retried.
    #[serde(default)]
    pub max_instance_mib: u64,
    /// Longest wait between retries while the destination is unreachable (seconds).
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: Bounded<1, 86_400>,
    /// Allows a plain `http://` URL: patient data then travels unencrypted. For a
    /// lab set-up only.
    #[serde(default)]
    pub insecure: bool,
    /// The HTTP proxy (CONNECT) the destination is reached through,
    /// `http://[user[:password]@]host:port`. Without one, HTTPS_PROXY and NO_PROXY
    /// from the environment apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyUrl>,
    /// The proxy user's password, when it is not in `proxy`; better kept in
    /// `proxy_password_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password_file: Option<PathBuf>,
    /// Hosts reached directly, not through `proxy`: names, `.domain` suffixes,
    /// addresses, or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
    /// `as-received`, or `explicit` for a destination that takes no Implicit VR
    /// (Azure): its profile's copies of implicit VR instances are then written in
    /// Explicit VR Little Endian, streaming; compressed pixel data is untouched.
    #[serde(default)]
    pub transfer_syntax: OutputSyntax,
}

/// The transfer syntax a destination's copies are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputSyntax {
    #[default]
    AsReceived,
    Explicit,
}

/// An HTTP proxy: where it is and whom it is asked for. Shown (logs, status,
/// `check-config`) with its password masked.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl ProxyUrl {
    /// Reads `http://[user[:password]@]host:port` (the scheme may be left out, as
    /// in HTTPS_PROXY); user and password may be percent-encoded.
    pub fn parse(text: &str) -> Result<ProxyUrl, String> {
        let bad = |why: &str| {
            format!(
                "proxy {:?} {why}: use http://[user[:password]@]host:port",
                without_userinfo(text)
            )
        };
        let rest = match text.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "has scheme {scheme}: only HTTP proxies (CONNECT) are supported"
                )));
            }
            None => text,
        };
        let rest = rest.trim_end_matches('/');
        let (userinfo, address) = match rest.rsplit_once('@') {
            Some((userinfo, address)) => (Some(userinfo), address),
            None => (None, rest),
        };
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| bad("lacks its port"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("has no valid port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', ' ', '?', '#']) {
            return Err(bad("has no valid host"));
        }
        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                let decode = |s: &str| percent_decode(s).ok_or_else(|| bad("has a bad %-escape"));
                (
                    Some(decode(user)?),
                    password.map(decode).transpose()?.map(Secret),
                )
            }
        };
        Ok(ProxyUrl {
            host: host.to_owned(),
            port,
            username,
            password,
        })
    }

    /// The proxy of the environment (HTTPS_PROXY, ALL_PROXY, in either case), if
    /// one is set and readable.
    pub fn from_env() -> Option<ProxyUrl> {
        ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .find(|v| !v.trim().is_empty())
            .and_then(|v| ProxyUrl::parse(v.trim()).ok())
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("http://")?;
        if let Some(user) = &self.username {
            write!(f, "{user}")?;
            if self.password.is_some() {
                f.write_str(":********")?;
            }
            f.write_str("@")?;
        }
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

impl Serialize for ProxyUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProxyUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ProxyUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `%XX` escapes decoded; `None` for a broken escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn default_connect_timeout() -> Bounded<1, 600> {
    Bounded(10)
}

fn default_idle_timeout() -> Bounded<1, 3600> {
    Bounded(60)
}

fn default_batch() -> Bounded<1, 64> {
    Bounded(8)
}

fn default_retry_max() -> Bounded<1, 86_400> {
    Bounded(300)
}

impl Destination {
    /// The local outbox used when no destination is configured.
    fn outbox(dir: PathBuf) -> Destination {
        Destination {
            name: DestinationName("outbox".into()),
            url: DestinationUrl::Dir(dir),
            profile: Profile::Identified,
            auth: AuthKind::None,
            username: None,
            password: None,
            password_file: None,
            token: None,
            token_file: None,
            token_url: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            client_auth: ClientAuth::ClientSecretBasic,
            scope: None,
            audience: None,
            resource: None,
            key_file: None,
            key: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            connect_timeout_secs: default_connect_timeout(),
            timeout_secs: default_idle_timeout(),
            max_kib_per_sec: 0,
            max_instances_per_request: default_batch(),
            max_request_mib: 0,
            max_instance_mib: 0,
            retry_max_secs: default_retry_max(),
            insecure: false,
            proxy: None,
            proxy_password: None,
            proxy_password_file: None,
            no_proxy: Vec::new(),
            transfer_syntax: OutputSyntax::AsReceived,
        }
    }

    /// The proxy to reach this destination through: the card's, else the
    /// environment's; with the hosts reached directly (the card's `no_proxy`, else
    /// NO_PROXY).
    pub fn effective_proxy(&self) -> Option<(ProxyUrl, Vec<String>)> {
        let proxy = self.proxy.clone().or_else(ProxyUrl::from_env)?;
        let no_proxy = match (&self.proxy, self.no_proxy.is_empty()) {
            (None, true) => ["NO_PROXY", "no_proxy"]
                .iter()
                .find_map(|name| std::env::var(name).ok())
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_owned())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            _ => self.no_proxy.clone(),
        };
        Some((proxy, no_proxy))
    }

    /// Checks the auth and TLS settings belong together, and reads secret files.
    fn resolve(&mut self) -> Result<(), String> {
        let name = &self.name;
        let read_secret = |path: &Path| -> Result<Secret, String> {
            std::fs::read_to_string(path)
                .map(|s| Secret(s.trim().to_owned()))
                .map_err(|e| {
                    format!(
                        "[[destination]] \"{name}\": cannot read {}: {e}",
                        path.display()
                    )
                })
        };
        match self.auth {
            AuthKind::None => {
                if self.username.is_some()
                    || self.password.is_some()
                    || self.password_file.is_some()
                    || self.token.is_some()
                    || self.token_file.is_some()
                    || self.client_id.is_some()
                    || self.key_file.is_some()
                {
                    return Err(format!(
                        "[[destination]] \"{name}\": credentials are given but auth = \"none\"; set auth = \"basic\", \"bearer\", \"oauth2\" or \"google\""
                    ));
                }
            }
            AuthKind::OAuth2 => {
                let url = self.token_url.as_deref().unwrap_or_default();
                if !(url.starts_with("https://") || url.starts_with("http://") && self.insecure) {
                    return Err(format!(
                        "[[destination]] \"{name}\": auth = \"oauth2\" needs token_url = \"https://...\" (the token endpoint; http:// only with insecure = true)"
                    ));
                }
                if self.client_id.as_deref().is_none_or(str::is_empty) {
                    return Err(format!(
                        "[[destination]] \"{name}\": auth = \"oauth2\" needs client_id"
                    ));
                }
                match (&self.client_secret, &self.client_secret_file) {
                    (Some(_), None) => {}
                    (None, Some(file)) => self.client_secret = Some(read_secret(file)?),
                    _ => {
                        return Err(format!(
                            "[[destination]] \"{name}\": auth = \"oauth2\" needs exactly one of client_secret or client_secret_file"
                        ));
                    }
                }
            }
            AuthKind::Google => {
                let Some(file) = &self.key_file else {
                    return Err(format!(
                        "[[destination]] \"{name}\": auth = \"google\" needs key_file, the service account's JSON key"
                    ));
                };
                let key = read_secret(file)?;
                let fields: serde_json::Value =
                    serde_json::from_str(key.expose()).unwrap_or_default();
                let missing: Vec<&str> = ["client_email", "private_key", "token_uri"]
                    .into_iter()
                    .filter(|k| !fields[*k].is_string())
                    .collect();
                if fields["type"] != "service_account" || !missing.is_empty() {
                    return Err(format!(
                        "[[destination]] \"{name}\": key_file {} is not a service account key (download one from the service account's Keys tab)",
                        file.display()
                    ));
                }
                self.key = Some(key);
            }
            AuthKind::Basic => {
                if self.username.as_deref().is_none_or(str::is_empty) {
                    return Err(format!(
                        "[[destination]] \"{name}\": auth = \"basic\" needs username"
                    ));
                }
                match (&self.password, &self.password_file) {
                    (Some(_), None) => {}
                    (None, Some(file)) => self.password = Some(read_secret(file)?),
                    _ => {
                        return Err(format!(
                            "[[destination]] \"{name}\": auth = \"basic\" needs exactly one of password or password_file"
                        ));
                    }
                }
            }
            AuthKind::Bearer => match (&self.token, &self.token_file) {
                (Some(_), None) => {}
                (None, Some(file)) => self.token = Some(read_secret(file)?),
                _ => {
                    return Err(format!(
                        "[[destination]] \"{name}\": auth = \"bearer\" needs exactly one of token or token_file"
                    ));
                }
            },
        }
        if let DestinationUrl::Dicomweb(url) = &self.url {
            if url.starts_with("http://") && !self.insecure {
                return Err(format!(
                    "[[destination]] \"{name}\": {url} would send patient data unencrypted: use https://, or add insecure = true for a lab set-up"
                ));
            }
        }
        match (
            &mut self.proxy,
            &self.proxy_password,
            &self.proxy_password_file,
        ) {
            (None, None, None) => {}
            (None, ..) => {
                return Err(format!(
                    "[[destination]] \"{name}\": proxy_password needs proxy = \"http://user@host:port\""
                ));
            }
            (Some(_), None, None) => {}
            (Some(proxy), given, file) => {
                if proxy.username.is_none()
                    || proxy.password.is_some()
                    || (given.is_some() && file.is_some())
                {
                    return Err(format!(
                        "[[destination]] \"{name}\": the proxy's password goes in one place: proxy = \"http://user@host:port\" with proxy_password or proxy_password_file"
                    ));
                }
                proxy.password = match (given, file) {
                    (Some(password), _) => Some(password.clone()),
                    (None, Some(file)) => Some(read_secret(file)?),
                    (None, None) => None,
                };
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(format!(
                "[[destination]] \"{name}\": client_cert and client_key go together"
            ));
        }
        if let DestinationUrl::Dir(_) = self.url {
            if self.auth != AuthKind::None
                || self.ca_file.is_some()
                || self.client_cert.is_some()
                || self.proxy.is_some()
            {
                return Err(format!(
                    "[[destination]] \"{name}\": auth, proxy and TLS settings apply to DICOMweb URLs, not dir:"
                ));
            }
        }
        Ok(())
    }
}

/// How a destination authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    #[default]
    None,
    Basic,
    Bearer,
    /// OAuth 2.0 client credentials (RFC 6749 4.4): Azure, Keycloak, ...
    OAuth2,
    /// A Google service account key (RFC 7523 JWT bearer grant).
    Google,
}

/// How an OAuth 2.0 client authenticates at the token endpoint (RFC 6749 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// A password or token: never printed, never logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("********")
    }
}

/// `[strict]`: what every study shows in the cloud's study list under `strict`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrictValues {
    /// Patient's Name of every strict instance.
    pub patient_name: String,
    /// Patient ID of every strict instance.
    pub patient_id: String,
    /// Patient's Sex of every strict instance: `M`, `F` or `O`.
    pub patient_sex: String,
    /// Patient's Birth Date cut to the `decade` (1993 -> 19900101), the `year`
    /// (19930101), or `removed` (emptied).
    pub birth_date: DateCut,
    /// Study, series, acquisition and content dates cut to the `year`
    /// (20170101), the `decade`, or `removed` (emptied).
    pub study_date: DateCut,
}

impl Default for StrictValues {
    fn default() -> Self {
        StrictValues {
            patient_name: "ANONYMOUS".into(),
            patient_id: "000000".into(),
            patient_sex: "O".into(),
            birth_date: DateCut::Decade,
            study_date: DateCut::Year,
        }
    }
}

/// How much of a date `strict` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DateCut {
    Decade,
    Year,
    Removed,
}

/// `[typical]`: how `typical` treats what it cannot anonymize.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TypicalSettings {
    /// Password of encapsulated PDF reports: `per-study` (random, recorded in
    /// `document-passwords.tsv` in the data dir) or `birth-date` (YYYYMMDD).
    pub document_password: DocumentPassword,
}

/// `[[pixel_rule]]`: how the profiles clean the pixels of the images it matches.
/// Every field given must match (text ignoring case and padding); the first rule
/// that matches wins, before the Sequence of Ultrasound Regions and before the
/// image area is inferred from the pixels. As RSNA CTP's pixel signatures.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PixelRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Manufacturer's Model Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sop_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<u32>,
    #[serde(default)]
    pub action: PixelAction,
    /// For `blank`: rectangles `[x0, y0, x1, y1]`, in pixels, corners included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blank: Vec<[u32; 4]>,
}

/// What a pixel rule does with the images it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelAction {
    /// Blank the rule's rectangles; the rest of the screen is kept.
    #[default]
    Blank,
    /// The clinic asserts this model burns nothing in: the pixels go as they are.
    Keep,
    /// Send no copy under a cleaning profile (a worksheet page, say).
    Discard,
}

impl PixelRule {
    fn check(&self, n: usize) -> Result<(), String> {
        let at = format!("[[pixel_rule]] number {n}");
        let named = [
            &self.manufacturer,
            &self.model,
            &self.modality,
            &self.sop_class,
        ]
        .iter()
        .any(|f| f.is_some())
            || self.rows.is_some()
            || self.columns.is_some();
        if !named {
            return Err(format!(
                "{at} matches every image: name at least one of manufacturer, model, modality, sop_class, rows, columns"
            ));
        }
        match (self.action, self.blank.is_empty()) {
            (PixelAction::Blank, true) => {
                return Err(format!(
                    "{at}: give the rectangles to blank, blank = [[x0, y0, x1, y1], ...], or action = \"keep\" or \"discard\""
                ));
            }
            (PixelAction::Keep | PixelAction::Discard, false) => {
                return Err(format!(
                    "{at}: action = \"{}\" blanks nothing; remove its blank rectangles",
                    if self.action == PixelAction::Keep {
                        "keep"
                    } else {
                        "discard"
                    }
                ));
            }
            _ => {}
        }
        for &[x0, y0, x1, y1] in &self.blank {
            let outside =
                self.columns.is_some_and(|c| x1 >= c) || self.rows.is_some_and(|r| y1 >= r);
            if x0 > x1 || y0 > y1 || outside {
                return Err(format!(
                    "{at}: blank rectangle [{x0}, {y0}, {x1}, {y1}] is not inside the image: use [x0, y0, x1, y1] with x0 <= x1 < columns and y0 <= y1 < rows, counted from 0"
                ));
            }
        }
        Ok(())
    }
}

/// How `typical` chooses the password of an encapsulated PDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentPassword {
    /// A random password per study, kept for the clinic in the data dir.
    #[default]
    PerStudy,
    /// The patient's birth date, YYYYMMDD: easy to pass on, easy to guess.
    BirthDate,
}

/// `[leds]`: the LED panel on the GPIO header.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Leds {
    /// `auto` (rppal where /dev/gpiomem exists, else the GPIO character device),
    /// `rppal`, `gpiocdev` or `none`.
    pub backend: LedBackend,
    /// The GPIO character device, for `gpiocdev`.
    pub chip: PathBuf,
    /// GPIO line numbers (BCM numbering on a Raspberry Pi).
    pub power: u8,
    pub cloud: u8,
    pub activity: u8,
    pub attention: u8,
}

impl Default for Leds {
    fn default() -> Self {
        // Header pins 11, 13, 15 and 16, each next to a ground pin on a Raspberry Pi.
        Leds {
            backend: LedBackend::Auto,
            chip: PathBuf::from("/dev/gpiochip0"),
            power: 17,
            cloud: 27,
            activity: 22,
            attention: 23,
        }
    }
}

/// Which GPIO driver lights the LEDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedBackend {
    Auto,
    Rppal,
    Gpiocdev,
    None,
}

/// `[log]`: what the agent says.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug` or `trace`; `UPLINK_LOG` overrides it.
    pub level: LogLevel,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: Port(11112),
            ae_title: AeTitle::new("UPLINK").expect("valid default AE title"),
            allowed_callers: Vec::new(),
            allowed_addresses: Vec::new(),
            max_associations: Bounded(8),
            max_pdu_length: Bounded(65_536),
            idle_timeout_secs: Bounded(60),
            unknown_sop_classes: UnknownSopClasses::Accept,
            tls_certificate: None,
            tls_key: None,
            tls_client_ca: None,
            commit: Commit::Stored,
            commit_wait_secs: Bounded(86_400),
            users: Vec::new(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        let data_dir = std::env::var_os("STATE_DIRECTORY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("./uplink-data"));
        Storage {
            data_dir,
            min_free_mib: 256,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: LogLevel(log::LevelFilter::Info),
        }
    }
}

/// Where the configuration came from, for the log and `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    BuiltIn,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::BuiltIn => f.write_str("built-in defaults (no config file)"),
        }
    }
}

/// A configuration error, worded for the person editing the file.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads the configuration from `path`; without one, from the credential systemd
    /// hands the service (`LoadCredential=uplink.toml:...`), else from
    /// [`DEFAULT_CONFIG_PATH`] if it exists, else the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<(Config, Source), ConfigError> {
        let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|dir| PathBuf::from(dir).join("uplink.toml"))
            .filter(|p| p.exists());
        let path = match (path, credential) {
            (Some(path), _) => path.to_path_buf(),
            (None, Some(credential)) => credential,
            (None, None) if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                PathBuf::from(DEFAULT_CONFIG_PATH)
            }
            (None, None) => return Ok((Config::default().validated()?, Source::BuiltIn)),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError(format!(
                "cannot read config file {}: {e}\n  (pass --config FILE, or run without one to use built-in defaults)",
                path.display()
            ))
        })?;
        let config = Config::parse(&text)
            .map_err(|e| ConfigError(format!("in config file {}:\n{e}", path.display())))?;
        Ok((config, Source::File(path)))
    }

    /// Parses and validates a configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError(without_userinfo(&e.to_string())))?;
        config.validated()
    }

    /// Checks what no single field can check alone, and fills in the default destination.
    fn validated(mut self) -> Result<Config, ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for destination in &self.destinations {
            if !seen.insert(destination.name.as_str().to_owned()) {
                return Err(ConfigError(format!(
                    "[[destination]] name = \"{}\" is used twice: each destination needs its own name",
                    destination.name
                )));
            }
        }
        self.network.check().map_err(ConfigError)?;
        if let Some(web) = &self.web {
            web.check(&self.listener).map_err(ConfigError)?;
        }
        let mut seen = std::collections::HashSet::new();
        for modality in &self.modalities {
            if !seen.insert(modality.ae_title.as_str()) {
                return Err(ConfigError(format!(
                    "[[modality]] ae_title = \"{}\" is listed twice: give each machine one entry",
                    modality.ae_title
                )));
            }
        }
        for user in &self.listener.users {
            if user.username.is_empty() || user.username.len() > 65_535 {
                return Err(ConfigError(
                    "[[listener.user]] username is empty: name the user the modality is set up with".into(),
                ));
            }
        }
        for (n, rule) in self.pixel_rules.iter().enumerate() {
            rule.check(n + 1).map_err(ConfigError)?;
        }
        let l = &self.listener;
        if l.tls_certificate.is_some() != l.tls_key.is_some() {
            return Err(ConfigError(
                "[listener] tls_certificate and tls_key go together: set both for DICOM over TLS, or neither".into(),
            ));
        }
        if l.tls_client_ca.is_some() && l.tls_certificate.is_none() {
            return Err(ConfigError(
                "[listener] tls_client_ca needs tls_certificate and tls_key: client certificates are checked only over TLS".into(),
            ));
        }
        // The files are read now, so that a wrong path is a configuration error.
        crate::tls_identity::server_config(&l.tls_files()).map_err(ConfigError)?;
        self.provisioned = !self.destinations.is_empty();
        if self.destinations.is_empty() {
            let outbox = self.storage.data_dir.join("outbox");
            self.destinations.push(Destination::outbox(outbox));
        }
        for destination in &mut self.destinations {
            destination.resolve().map_err(ConfigError)?;
        }
        let endpoints = [
            self.update.as_mut().map(|u| &mut u.server),
            self.heartbeat.as_mut().map(|h| &mut h.server),
        ];
        for server in endpoints.into_iter().flatten() {
            let section = format!("[{}]", server.name);
            server.resolve().map_err(|e| {
                ConfigError(e.replace(&format!("[[destination]] \"{}\"", server.name), &section))
            })?;
        }
        let s = &self.strict;
        if !["M", "F", "O"].contains(&s.patient_sex.as_str()) {
            return Err(ConfigError(format!(
                "[strict] patient_sex = \"{}\": use M, F or O",
                s.patient_sex
            )));
        }
        for (key, value, max) in [
            ("patient_name", &s.patient_name, 64),
            ("patient_id", &s.patient_id, 64),
        ] {
            if value.len() > max
                || value
                    .chars()
                    .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '\\')
            {
                return Err(ConfigError(format!(
                    "[strict] {key} = \"{value}\": use at most {max} plain ASCII characters, no backslash"
                )));
            }
        }
        Ok(self)
    }

    /// The profiles whose copies are written in explicit VR: those of the
    /// destinations with `transfer_syntax = "explicit"`.
    pub fn explicit_vr_profiles(&self) -> Vec<Profile> {
        let mut profiles = Vec::new();
        for d in &self.destinations {
            if d.transfer_syntax == OutputSyntax::Explicit && !profiles.contains(&d.profile) {
                profiles.push(d.profile);
            }
        }
        profiles
    }

    /// The effective configuration as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration always serializes")
    }
}

/// A TCP port other than 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(d)?;
        match u16::try_from(value) {
            Ok(port) if port != 0 => Ok(Port(port)),
            _ => Err(serde::de::Error::custom(format!(
                "port {value} is out of range: use 1 to 65535 (DICOM commonly uses 104 or 11112)"
            ))),
        }
    }
}

/// An integer setting that must lie within `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(d)?;
        match u64::try_from(value) {
            Ok(v) if (MIN..=MAX).contains(&v) => Ok(Bounded(v)),
            _ => Err(serde::de::Error::custom(format!(
                "{value} is out of range: use {MIN} to {MAX}"
            ))),
        }
    }
}

/// A DICOM Application Entity title (PS3.5 VR AE): 1 to 16 characters of the default
/// character repertoire, no backslash or control characters, not all spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AeTitle(heapless::String<16>);

impl AeTitle {
    pub fn new(text: &str) -> Result<AeTitle, String> {
        let trimmed = text.trim_matches(' ');
        if trimmed.is_empty() {
            return Err("an AE title cannot be empty or all spaces".into());
        }
        if let Some(c) = trimmed
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == '\\')
        {
            return Err(format!(
                "AE title \"{trimmed}\" has a character not allowed in AE titles ({c:?}): use letters, digits, spaces and punctuation other than \\"
            ));
        }
        let mut s = heapless::String::new();
        s.push_str(trimmed).map_err(|_| {
            format!(
                "AE title \"{trimmed}\" is {} characters long: DICOM allows at most 16",
                trimmed.len()
            )
        })?;
        Ok(AeTitle(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for AeTitle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AeTitle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AeTitle::new(&text).map_err(serde::de::Error::custom)
    }
}

/// What to do with storage SOP classes outside the standard's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSopClasses {
    Accept,
    Reject,
}

/// A destination's name: it appears in logs, status and the queue's keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DestinationName(String);

impl DestinationName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DestinationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DestinationName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid {
            Ok(DestinationName(name))
        } else {
            Err(serde::de::Error::custom(format!(
                "destination name \"{name}\" is not allowed: use 1 to 64 letters, digits, '-' or '_'"
            )))
        }
    }
}

/// `text` with the user name and password of every URL in it masked: a parse error
/// quotes the line at fault, and a URL on it may carry them.
fn without_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c == '/' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(i) => {
                out.push_str("***");
                out.push_str(&authority[i..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Where a destination delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationUrl {
    /// A local folder that receives one Part 10 file per instance.
    Dir(PathBuf),
    /// A DICOMweb service's base URL, without a trailing slash.
    Dicomweb(String),
}

impl fmt::Display for DestinationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationUrl::Dir(path) => write!(f, "dir:{}", path.display()),
            DestinationUrl::Dicomweb(url) => f.write_str(url),
        }
    }
}

impl Serialize for DestinationUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DestinationUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        if let Some(path) = url.strip_prefix("dir:") {
            if path.is_empty() {
                return Err(serde::de::Error::custom(
                    "\"dir:\" needs a folder, e.g. \"dir:/var/lib/uplink/outbox\"",
                ));
            }
            return Ok(DestinationUrl::Dir(PathBuf::from(path)));
        }
        if let Some(rest) = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
        {
            let host = rest.split('/').next().unwrap_or("");
            if host.contains('@') {
                return Err(serde::de::Error::custom(
                    "a destination url must not carry a user name or password (user:password@host), \
                     where logs and status would show them: take them out of the url and set \
                     auth = \"basic\" with username and password_file (or auth = \"bearer\")",
                ));
            }
            if host.is_empty() || rest.contains(char::is_whitespace) || url.contains(['?', '#']) {
                return Err(serde::de::Error::custom(format!(
                    "\"{url}\" is not a valid DICOMweb base URL: use e.g. \"https://pacs.example.com/dicom-web\""
                )));
            }
            return Ok(DestinationUrl::Dicomweb(
                url.trim_end_matches('/').to_owned(),
            ));
        }
        Err(serde::de::Error::custom(format!(
            "\"{url}\" is not a destination URL: use a DICOMweb base URL (https://...) or \"dir:PATH\" for a folder"
        )))
    }
}

/// How much of the patient's identity leaves with an instance (the anonymization profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// As received: the clinic's own archive.
    #[default]
    Identified,
    /// PS3.15 basic profile: the copy that may reach the patient.
    Typical,
    /// Everything removed or fixed: every study looks the same.
    Strict,
}

impl Profile {
    pub fn as_str(&self) -> &'static str {
        match self {
            Profile::Identified => "identified",
            Profile::Typical => "typical",
            Profile::Strict => "strict",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log level filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub log::LevelFilter);

impl Serialize for LogLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.as_str().to_ascii_lowercase())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(LogLevel).map_err(|_| {
            serde::de::Error::custom(format!(
                "log level \"{text}\" is unknown: use error, warn, info, debug or trace"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_gives_defaults_with_an_outbox() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.listener.port, Port(11112));
        assert_eq!(config.listener.ae_title.as_str(), "UPLINK");
        assert_eq!(config.destinations.len(), 1);
        assert_eq!(config.destinations[0].name.as_str(), "outbox");
        assert_eq!(
            config.destinations[0].url,
            DestinationUrl::Dir(config.storage.data_dir.join("outbox"))
        );
    }

    #[test]
    fn the_contract_example_parses() {
        let config = Config::parse(
            r#"
[listener]
port = 11112
ae_title = "UPLINK"
allowed_callers = ["US1", "US 2"]
max_associations = 8

[storage]
data_dir = "/var/lib/uplink"

[[destination]]
name = "outbox"
url = "dir:/var/lib/uplink/outbox"
profile = "identified"
"#,
        )
        .unwrap();
        assert_eq!(config.listener.allowed_callers.len(), 2);
        assert_eq!(config.storage.data_dir, PathBuf::from("/var/lib/uplink"));
        assert_eq!(
            config.destinations[0].url,
            DestinationUrl::Dir("/var/lib/uplink/outbox".into())
        );
    }

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_shipped_pixel_rules_are_valid_and_bad_ones_say_how_to_fix_them() {
        let example = include_str!("../board/pixel-rules.example.toml");
        let config = Config::parse(example).unwrap();
        assert_eq!(config.pixel_rules.len(), 3);
        assert_eq!(config.pixel_rules[1].action, PixelAction::Keep);
        for (rule, says) in [
            ("action = \"keep\"\n", "matches every image"),
            ("model = \"X\"\n", "give the rectangles to blank"),
            (
                "model = \"X\"\naction = \"discard\"\nblank = [[0, 0, 1, 1]]\n",
                "blanks nothing",
            ),
            (
                "rows = 10\ncolumns = 10\nblank = [[0, 0, 10, 5]]\n",
                "is not inside the image",
            ),
            ("model = \"X\"\nblank = [[5, 0, 1, 1]]\n", "x0 <= x1"),
            ("model = \"X\"\naction = \"hide\"\n", "unknown variant"),
        ] {
            let e = error_of(&format!("[[pixel_rule]]\n{rule}"));
            assert!(e.contains(says), "{rule}: {e}");
        }
        assert!(error_of("[[pixel_rule]]\nmodel = \"X\"\n").contains("[[pixel_rule]] number 1"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = error_of("[listener]\nport = 104\naetitle = \"X\"\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("aetitle"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let e = error_of("[listener]\nport = \"eleven\"\n");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        for (text, line, words) in [
            ("[listener]\nport = 0\n", 2, "out of range"),
            ("[listener]\nport = 70000\n", 2, "out of range"),
            (
                "\n[listener]\nae_title = \"THIS_TITLE_IS_TOO_LONG\"\n",
                3,
                "at most 16",
            ),
            ("[listener]\nae_title = \"   \"\n", 2, "empty"),
            ("[listener]\nae_title = \"A\\\\B\"\n", 2, "not allowed"),
            ("[listener]\nmax_pdu_length = 10\n", 2, "4096"),
            ("[listener]\nallowed_addresses = [\"10.0.0.300\"]\n", 2, ""),
            ("[listener]\nunknown_sop_classes = \"maybe\"\n", 2, "accept"),
            ("[log]\nlevel = \"loud\"\n", 2, "unknown"),
            (
                "[[destination]]\nname = \"a b\"\nurl = \"dir:/x\"\n",
                2,
                "not allowed",
            ),
            (
                "[[destination]]\nname = \"a\"\nurl = \"ftp://x\"\n",
                3,
                "not a destination",
            ),
            ("[[destination]]\nname = \"a\"\n", 1, "url"),
        ] {
            let e = error_of(text);
            assert!(e.contains(&format!("line {line}")), "{text:?}: {e}");
            assert!(e.contains(words), "{text:?}: {e}");
        }
    }

    #[test]
    fn duplicate_destination_names_are_refused() {
        let e = error_of(
            "[[destination]]\nname = \"a\"\nurl = \"dir:/x\"\n[[destination]]\nname = \"a\"\nurl = \"dir:/y\"\n",
        );
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn a_google_key_file_must_be_a_service_account_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.json");
        let config = || {
            Config::parse(&format!(
                "[[destination]]\nname = \"g\"\nurl = \"https://healthcare.googleapis.com/v1/x/dicomWeb\"\nauth = \"google\"\nkey_file = \"{}\"\n",
                key.display()
            ))
        };
        std::fs::write(&key, r#"{"type": "authorized_user", "client_id": "x"}"#).unwrap();
        let error = config().unwrap_err().to_string();
        assert!(error.contains("not a service account key"), "{error}");
        std::fs::write(
            &key,
            r#"{"type": "service_account", "client_email": "a@b", "private_key": "k", "token_uri": "https://oauth2.googleapis.com/token"}"#,
        )
        .unwrap();
        assert!(config().is_ok());
        assert!(!format!("{:?}", config().unwrap()).contains("\"k\""));
    }

    #[test]
    fn a_proxy_is_read_with_its_password_kept_out_of_sight() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("proxy.pw");
        std::fs::write(&file, "pr0xy-pw\n").unwrap();
        let destination = |proxy: &str| {
            format!(
                "[[destination]]\nname = \"cloud\"\nurl = \"https://pacs.example.com/dicom-web\"\n{proxy}\n"
            )
        };
        let config = Config::parse(&destination(&format!(
            "proxy = \"http://box@proxy.hospital:3128\"\nproxy_password_file = \"{}\"\nno_proxy = [\".hospital\"]",
            file.display()
        )))
        .unwrap();
        let proxy = config.destinations[0].proxy.as_ref().unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("proxy.hospital", 3128));
        assert_eq!(proxy.password.as_ref().unwrap().expose(), "pr0xy-pw");
        assert_eq!(proxy.to_string(), "http://box:********@proxy.hospital:3128");
        let shown = config.to_toml();
        assert!(
            !shown.contains("pr0xy-pw") && shown.contains("********"),
            "{shown}"
        );
        let inline =
            Config::parse(&destination("proxy = \"http://b%40x:p%3Aw@[::1]:8080\"")).unwrap();
        let proxy = inline.destinations[0].proxy.as_ref().unwrap();
        assert_eq!(proxy.username.as_deref(), Some("b@x"));
        assert_eq!(proxy.password.as_ref().unwrap().expose(), "p:w");
        assert_eq!(proxy.host, "::1");
        for (bad, says) in [
            ("proxy = \"http://proxy.hospital\"", "lacks its port"),
            ("proxy = \"socks5://proxy:1080\"", "only HTTP proxies"),
            (
                "proxy = \"http://u:secret@proxy:3128\"\nproxy_password = \"x\"",
                "one place",
            ),
            ("proxy_password = \"x\"", "needs proxy"),
        ] {
            let error = Config::parse(&destination(bad)).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn dicomweb_destinations_with_auth_resolve_and_mask_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "s3cr3t-token\n").unwrap();
        let config = Config::parse(&format!(
            "[[destination]]\nname = \"cloud\"\nurl = \"https://pacs.example.com/dicom-web/\"\nauth = \"bearer\"\ntoken_file = \"{}\"\n\
             [[destination]]\nname = \"archive\"\nurl = \"http://10.0.0.2:8042/dicom-web\"\ninsecure = true\nauth = \"basic\"\nusername = \"u\"\npassword = \"hunter2\"\n",
            secret.display()
        ))
        .unwrap();
        assert_eq!(
            config.destinations[0].url,
            DestinationUrl::Dicomweb("https://pacs.example.com/dicom-web".into())
        );
        assert_eq!(
            config.destinations[0].token.as_ref().unwrap().expose(),
            "s3cr3t-token"
        );
        assert_eq!(
            config.destinations[1].password.as_ref().unwrap().expose(),
            "hunter2"
        );
        let shown = config.to_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn an_update_source_is_read_as_a_destination_is() {
        let config = Config::parse(
            "[update]\nurl = \"https://updates.example.com/uplink/box.raucb\"\ninterval_secs = 3600\n\
             auth = \"bearer\"\ntoken = \"t0ken\"\nproxy = \"http://proxy.clinic:3128\"\n",
        )
        .unwrap();
        let update = config.update.as_ref().unwrap();
        assert_eq!(update.interval_secs.0, 3600);
        assert_eq!(update.server.token.as_ref().unwrap().expose(), "t0ken");
        assert!(update.server.effective_proxy().is_some());
        let again = Config::parse(&config.to_toml()).unwrap();
        assert_eq!(again.update.unwrap().server.url, update.server.url);
        for (text, said) in [
            ("url = \"http://u.example.com/b\"\n", "is not encrypted"),
            ("url = \"dir:/tmp/b\"\n", "must be an https:// address"),
            (
                "url = \"https://u.example.com/b\"\ninterval_secs = 10\n",
                "interval_secs",
            ),
            (
                "url = \"https://u.example.com/b\"\ntoken = \"t\"\n",
                "[update]: credentials",
            ),
            (
                "url = \"https://u.example.com/b\"\nprofile = \"strict\"\n",
                "not name or profile",
            ),
            (
                "url = \"https://u.example.com/b\"\nintervall = 3\n",
                "intervall",
            ),
        ] {
            let e = Config::parse(&format!("[update]\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(said), "{text}: {e}");
        }
    }

    #[test]
    fn plain_http_needs_insecure() {
        let e = error_of("[[destination]]\nname = \"a\"\nurl = \"http://10.0.0.2/dw\"\n");
        assert!(
            e.contains("unencrypted") && e.contains("insecure = true"),
            "{e}"
        );
        assert!(
            Config::parse(
                "[[destination]]\nname = \"a\"\nurl = \"http://10.0.0.2/dw\"\ninsecure = true\n"
            )
            .is_ok()
        );
        assert!(Config::parse("[[destination]]\nname = \"a\"\nurl = \"https://h/dw\"\n").is_ok());
    }

    #[test]
    fn auth_settings_must_fit_together() {
        for (text, words) in [
            ("auth = \"basic\"\npassword = \"x\"\n", "needs username"),
            (
                "auth = \"basic\"\nusername = \"u\"\n",
                "exactly one of password",
            ),
            ("auth = \"bearer\"\n", "exactly one of token"),
            ("token = \"t\"\n", "auth = \"none\""),
            (
                "auth = \"bearer\"\ntoken_file = \"/no/such/file\"\n",
                "cannot read /no/such/file",
            ),
            ("client_cert = \"/c.pem\"\n", "go together"),
        ] {
            let e = error_of(&format!(
                "[[destination]]\nname = \"a\"\nurl = \"https://h/dw\"\n{text}"
            ));
            assert!(e.contains(words), "{text:?}: {e}");
        }
        let e = error_of(
            "[[destination]]\nname = \"a\"\nurl = \"dir:/x\"\nauth = \"bearer\"\ntoken = \"t\"\n",
        );
        assert!(e.contains("not dir:"), "{e}");
    }

    #[test]
    fn strict_values_are_checked() {
        let config =
            Config::parse("[strict]\npatient_name = \"NOBODY\"\nbirth_date = \"year\"\n").unwrap();
        assert_eq!(config.strict.patient_name, "NOBODY");
        assert_eq!(config.strict.birth_date, DateCut::Year);
        assert_eq!(config.strict.study_date, DateCut::Year);
        assert!(error_of("[strict]\npatient_sex = \"X\"\n").contains("M, F or O"));
        assert!(error_of("[strict]\npatient_id = \"A\\\\B\"\n").contains("backslash"));
        assert!(error_of("[strict]\nstudy_date = \"month\"\n").contains("line 2"));
        assert!(error_of("[typical]\ndocument_password = \"1234\"\n").contains("line 2"));
    }

    #[test]
    fn ae_titles_are_trimmed_and_checked() {
        assert_eq!(AeTitle::new("  US1 ").unwrap().as_str(), "US1");
        assert!(AeTitle::new("ÄRZT").is_err());
        assert!(AeTitle::new("0123456789ABCDEF").is_ok());
        assert!(AeTitle::new("0123456789ABCDEFG").is_err());
    }

    #[test]
    fn credentials_in_a_url_are_refused_and_never_echoed() {
        let text = "[[destination]]\nname = \"cloud\"\nurl = \"https://clinic:s3cret@pacs.example.com/dicom-web\"\n";
        let error = Config::parse(text).unwrap_err().to_string();
        assert!(error.contains("auth = \"basic\""), "{error}");
        assert!(
            !error.contains("s3cret") && !error.contains("clinic:"),
            "{error}"
        );
        assert_eq!(
            without_userinfo("url = \"http://a:b@h:80/x\" and https://h/y"),
            "url = \"http://***@h:80/x\" and https://h/y"
        );
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let config = Config::parse(include_str!("../board/uplink.toml")).unwrap();
        assert_eq!(config.storage.data_dir, PathBuf::from("/var/lib/uplink"));
        assert_eq!(config.destinations[0].name.as_str(), "outbox");
    }

    #[test]
    fn effective_config_round_trips() {
        let config =
            Config::parse("[listener]\nport = 104\nallowed_addresses = [\"192.168.1.0/24\"]\n")
                .unwrap();
        let again = Config::parse(&config.to_toml()).unwrap();
        assert_eq!(again.listener.port, Port(104));
        assert_eq!(
            again.listener.allowed_addresses,
            config.listener.allowed_addresses
        );
        assert_eq!(again.destinations.len(), 1);
    }
}
