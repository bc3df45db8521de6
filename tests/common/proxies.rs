//! A hospital's outbound proxies for the tests, the real ones: squid (Debian) with
//! Basic or Digest proxy authentication, and mitmproxy (Debian), which inspects TLS
//! with a CA of its own as hospitals' proxies do. Each runs on loopback from a temp
//! dir and is stopped when dropped.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::free_port;

pub struct Proxy {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// How squid asks for credentials.
pub enum Scheme {
    Basic,
    Digest,
}

impl Proxy {
    /// squid, admitting `user`:`password` only.
    pub fn squid(user: &str, password: &str, scheme: Scheme) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        // squid drops to user `proxy`: its folder must be open to it.
        chmod(path, 0o777);
        let auth = match scheme {
            Scheme::Basic => {
                let out = Command::new("htpasswd")
                    .args(["-b", "-c"])
                    .arg(path.join("passwd"))
                    .args([user, password])
                    .output()
                    .expect("htpasswd (apache2-utils)");
                assert!(out.status.success(), "{out:?}");
                format!(
                    "auth_param basic program /usr/lib/squid/basic_ncsa_auth {}\nauth_param basic realm hospital\n",
                    path.join("passwd").display()
                )
            }
            Scheme::Digest => {
                fs::write(path.join("digest"), format!("{user}:{password}\n")).unwrap();
                format!(
                    "auth_param digest program /usr/lib/squid/digest_file_auth {}\nauth_param digest realm hospital\n",
                    path.join("digest").display()
                )
            }
        };
        for file in ["passwd", "digest"] {
            if path.join(file).exists() {
                chmod(&path.join(file), 0o644);
            }
        }
        let port = free_port();
        let conf = path.join("squid.conf");
        fs::write(
            &conf,
            format!(
                "http_port 127.0.0.1:{port}\n\
                 pid_filename {dir}/squid.pid\n\
                 cache_log {dir}/cache.log\n\
                 access_log stdio:{dir}/access.log\n\
                 coredump_dir {dir}\n\
                 cache deny all\n\
                 {auth}\
                 acl authenticated proxy_auth REQUIRED\n\
                 http_access allow authenticated\n\
                 http_access deny all\n\
                 shutdown_lifetime 0 seconds\n",
                dir = path.display()
            ),
        )
        .unwrap();
        let child = Command::new("squid")
            .args(["-N", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(fs::File::create(path.join("squid.out")).unwrap())
            .spawn()
            .expect("cannot run squid (is the squid package installed?)");
        let proxy = Proxy { port, dir, child };
        proxy.wait_listening("squid");
        proxy
    }

    /// mitmproxy, intercepting TLS with its own CA (`ca()`), trusting any server.
    pub fn mitmproxy() -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("mitmdump")
            .args(["--listen-host", "127.0.0.1", "--listen-port"])
            .arg(port.to_string())
            .arg("--set")
            .arg(format!("confdir={}", dir.path().display()))
            .args(["--ssl-insecure", "--quiet"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("mitmdump.out")).unwrap())
            .spawn()
            .expect("cannot run mitmdump (is the mitmproxy package installed?)");
        let proxy = Proxy { port, dir, child };
        proxy.wait_listening("mitmdump");
        proxy
    }

    /// mitmproxy's CA certificate, the one a hospital hands out for its proxy.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("mitmproxy-ca-cert.pem")
    }

    /// What squid logged of the requests it passed.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}", self.port)
    }

    fn wait_listening(&self, what: &str) {
        super::wait_listening(self.port, 30, || {
            format!(
                "{what} did not start: {}",
                fs::read_dir(self.dir.path())
                    .unwrap()
                    .filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
    }
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
