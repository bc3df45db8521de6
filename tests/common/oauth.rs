//! A cloud that takes OAuth 2.0 tokens, for the tests: a real authorization server
//! (oidc-provider from npm, installed by `scripts/fixtures.sh`, script in
//! `tests/peers/oauth_server.mjs`), or Google's token endpoint where Google cannot
//! be reached (`tests/peers/google_token_server.mjs`); and nginx in front of
//! Orthanc admitting only requests whose token the server's introspection endpoint
//! calls active (`tests/peers/oauth_gate.js`, njs). All run on loopback from temp
//! dirs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::nginx::Nginx;
use super::{base64, free_port, wait_listening};

const GATEWAY: (&str, &str) = ("gateway", "gateway-secret");

/// A client of the authorization server: id, secret, token endpoint auth method.
pub type Client<'a> = (&'a str, &'a str, &'a str);

pub struct OAuthServer {
    pub port: u16,
    dir: tempfile::TempDir,
    ttl: u64,
    /// The script and what its configuration adds.
    script: &'static str,
    extra: serde_json::Value,
    child: Option<Child>,
}

impl OAuthServer {
    /// The server, issuing tokens of `ttl` seconds to `clients`.
    pub fn start(ttl: u64, clients: &[Client]) -> OAuthServer {
        let mut server = OAuthServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            ttl,
            script: "oauth_server.mjs",
            extra: serde_json::json!({}),
            child: None,
        };
        server.run(clients);
        server
    }

    /// Google's token endpoint for the service account `client_email`, whose
    /// public key is `public_key` (PEM).
    pub fn google(ttl: u64, client_email: &str, public_key: &str) -> OAuthServer {
        let mut server = OAuthServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            ttl,
            script: "google_token_server.mjs",
            extra: serde_json::json!({"client_email": client_email, "public_key": public_key}),
            child: None,
        };
        server.run(&[]);
        server
    }

    /// Starts it (again) on the same port with `clients`: a client left out is
    /// revoked, and every token issued before is forgotten.
    pub fn run(&mut self, clients: &[Client]) {
        self.stop();
        let modules = fixtures_node();
        let script = modules.join(self.script);
        fs::copy(peers().join(self.script), &script).unwrap();
        let config = self.dir.path().join("config.json");
        let clients: Vec<_> = clients
            .iter()
            .map(|(id, secret, method)| {
                serde_json::json!({"client_id": id, "client_secret": secret, "token_endpoint_auth_method": method})
            })
            .collect();
        let mut settings = serde_json::json!({
            "port": self.port,
            "ttl": self.ttl,
            "clients": clients,
            "gateway": {"client_id": GATEWAY.0, "client_secret": GATEWAY.1},
        });
        for (key, value) in self.extra.as_object().unwrap() {
            settings[key] = value.clone();
        }
        fs::write(&config, settings.to_string()).unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        self.child = Some(
            Command::new("node")
                .arg(&script)
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("cannot run node"),
        );
        wait_listening(self.port, 30, || self.log());
    }

    /// The server down: its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The token endpoint's introspection URL (for the gateway).
    fn introspection_url(&self) -> String {
        format!("http://127.0.0.1:{}/token/introspection", self.port)
    }

    /// How many tokens it issued to `client`.
    pub fn issued(&self, client: &str) -> usize {
        let prefix = format!("issued {client} ");
        self.log()
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nginx admitting requests to Orthanc's REST port only with an active token.
pub struct Gate {
    pub port: u16,
    nginx: Nginx,
}

impl Gate {
    pub fn start(server: &OAuthServer, orthanc_http_port: u16) -> Gate {
        let basic = base64(&format!("{}:{}", GATEWAY.0, GATEWAY.1));
        let gate = fs::read_to_string(peers().join("oauth_gate.js"))
            .unwrap()
            .replace("@INTROSPECTION@", &server.introspection_url())
            .replace("@GATEWAY_BASIC@", &basic);
        let port = free_port();
        let nginx = Nginx::start(
            port,
            "load_module /usr/lib/nginx/modules/ngx_http_js_module.so;",
            &format!(
                "js_import gate from {{dir}}/gate.js;\n\
                 client_max_body_size 0;\n\
                 server {{\n\
                   listen 127.0.0.1:{port};\n\
                   location / {{\n\
                     auth_request /_introspect;\n\
                     proxy_pass http://127.0.0.1:{orthanc_http_port};\n\
                     proxy_http_version 1.1;\nproxy_request_buffering off;\n\
                   }}\n\
                   location = /_introspect {{ internal; js_content gate.introspect; }}\n\
                 }}"
            ),
            &[("gate.js", gate.as_bytes())],
        );
        Gate { port, nginx }
    }

    pub fn dicomweb_url(&self) -> String {
        format!("http://127.0.0.1:{}/dicom-web", self.port)
    }

    /// Requests it turned away for want of an active token.
    pub fn refused(&self) -> usize {
        self.nginx
            .requests()
            .iter()
            .filter(|l| l.contains("\" 401 "))
            .count()
    }

    pub fn error_log(&self) -> String {
        self.nginx.error_log()
    }
}

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Where `scripts/fixtures.sh` installed oidc-provider.
fn fixtures_node() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures/node");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "oidc-provider is missing: run scripts/fixtures.sh (scripts/test.sh does)"
    );
    dir
}
