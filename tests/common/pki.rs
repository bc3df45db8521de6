//! A test CA made by openssl, with a server certificate for 127.0.0.1 (and
//! localhost) and a client certificate: for HTTPS in front of Orthanc and for DICOM
//! over TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files, in one folder: `ca.pem`, `server.pem`, `server.key`, `client.pem`,
/// `client.key`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Makes the CA and both certificates in `dir` (created if missing).
    pub fn create(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("cannot run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=uplink test CA",
        ]);
        std::fs::write(
            dir.join("server.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("client.cnf"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for who in ["server", "client"] {
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN=uplink test {who}"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{who}.cnf"),
            ]);
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    /// The path of one of the files, as a string for a config or a command line.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}
