//! A real DICOMweb server for the tests: Orthanc with its DICOMweb plugin (Debian
//! packages `orthanc` and `orthanc-dicomweb`), on loopback, with its own storage.
//! HTTPS comes from stunnel in front of it (Debian's Orthanc build crashes on its
//! own SSL option), with the test CA of `pki.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{base64, free_port};

const PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

pub struct Orthanc {
    pub dir: tempfile::TempDir,
    pub http_port: u16,
    /// Its DICOM port, listening only when started with `start_dicom`.
    pub dicom_port: u16,
    config: PathBuf,
    user: Option<(String, String)>,
    child: Option<Child>,
    tls: Option<(Child, u16)>,
}

impl Orthanc {
    pub fn start() -> Orthanc {
        Orthanc::start_with(None)
    }

    /// Orthanc that accepts only `user`:`password` (HTTP Basic).
    pub fn start_with(user: Option<(&str, &str)>) -> Orthanc {
        Orthanc::start_configured(user, json!({}))
    }

    /// Orthanc with its DICOM server on, as AE `aet`, knowing `modalities` (its
    /// `DicomModalities`: name → [AE title, host, port]).
    pub fn start_dicom(aet: &str, modalities: Value) -> Orthanc {
        Orthanc::start_configured(
            None,
            json!({
                "DicomServerEnabled": true,
                "DicomAet": aet,
                "DicomModalities": modalities,
                "DicomCheckCalledAet": true,
            }),
        )
    }

    fn start_configured(user: Option<(&str, &str)>, extra: Value) -> Orthanc {
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let dicom_port = free_port();
        let mut config = json!({
            "Name": "uplink-test",
            "StorageDirectory": dir.path().join("db"),
            "IndexDirectory": dir.path().join("db"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomServerEnabled": false,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": user.is_some(),
            "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": true, "Root": "/dicom-web/"},
        });
        if let Some((name, password)) = user {
            config["RegisteredUsers"] = json!({ name: password });
        }
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        let path = dir.path().join("orthanc.json");
        fs::write(&path, config.to_string()).unwrap();
        let mut orthanc = Orthanc {
            dir,
            http_port,
            dicom_port,
            config: path,
            user: user.map(|(u, p)| (u.to_owned(), p.to_owned())),
            child: None,
            tls: None,
        };
        orthanc.resume();
        orthanc
    }

    /// (Re)starts the server on the same port and storage.
    pub fn resume(&mut self) {
        let log = fs::File::create(self.dir.path().join("orthanc.log")).unwrap();
        let child = Command::new("Orthanc")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run Orthanc (is the orthanc package installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get("/system").is_none() {
            assert!(Instant::now() < deadline, "Orthanc did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (an outage, as far as the agent can tell).
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn dicomweb_url(&self) -> String {
        format!("http://127.0.0.1:{}/dicom-web", self.http_port)
    }

    /// Puts an HTTPS terminator with a certificate from a fresh test CA in front of
    /// the server; returns its DICOMweb URL and the CA file.
    pub fn with_tls(&mut self) -> (String, PathBuf) {
        let dir = self.dir.path().join("tls");
        fs::create_dir_all(&dir).unwrap();
        super::pki::Pki::create(&dir);
        let port = free_port();
        let conf = dir.join("stunnel.conf");
        fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\n[https]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{}\ncert = {}\nkey = {}\n",
                self.http_port,
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            ),
        )
        .unwrap();
        let child = Command::new("stunnel")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run stunnel (is the stunnel4 package installed?)");
        self.tls = Some((child, port));
        super::wait_listening(port, 10, || "stunnel did not start".into());
        (
            format!("https://127.0.0.1:{port}/dicom-web"),
            dir.join("ca.pem"),
        )
    }

    /// POSTs `body` to the REST API; the answer as JSON, or what went wrong.
    pub fn post(&self, path: &str, body: &[u8]) -> Result<Value, String> {
        let mut response = ureq::post(format!("http://127.0.0.1:{}{path}", self.http_port))
            .send(body)
            .map_err(|e| format!("POST {path}: {e}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("POST {path}: {e}: {text}"))
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        let mut request = ureq::get(format!("http://127.0.0.1:{}{path}", self.http_port));
        if let Some((user, password)) = &self.user {
            let token = base64(&format!("{user}:{password}"));
            request = request.header("Authorization", format!("Basic {token}"));
        }
        let mut response = request.call().ok()?;
        serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
    }

    /// SOP Instance UIDs of everything stored, one entry per stored instance.
    pub fn instance_uids(&self) -> Vec<String> {
        let instances = self.get("/instances?expand").unwrap_or(json!([]));
        instances
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i["MainDicomTags"]["SOPInstanceUID"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    /// The study list as a cloud shows it: name, ID, birth date, sex, study date.
    pub fn study_rows(&self) -> Vec<[String; 5]> {
        let studies = self.get("/studies?expand").unwrap_or(json!([]));
        studies
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let patient = |k: &str| {
                    s["PatientMainDicomTags"][k]
                        .as_str()
                        .unwrap_or("")
                        .to_owned()
                };
                [
                    patient("PatientName"),
                    patient("PatientID"),
                    patient("PatientBirthDate"),
                    patient("PatientSex"),
                    s["MainDicomTags"]["StudyDate"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                ]
            })
            .collect()
    }

    /// The file Orthanc stored for `uid`.
    pub fn file(&self, uid: &str, into: &Path) -> PathBuf {
        let instances = self.get("/instances?expand").unwrap();
        let id = instances
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["MainDicomTags"]["SOPInstanceUID"] == uid)
            .unwrap_or_else(|| panic!("{uid} not in Orthanc"))["ID"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut request = ureq::get(format!(
            "http://127.0.0.1:{}/instances/{id}/file",
            self.http_port
        ));
        if let Some((user, password)) = &self.user {
            request = request.header(
                "Authorization",
                format!("Basic {}", base64(&format!("{user}:{password}"))),
            );
        }
        let bytes = request
            .call()
            .unwrap()
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .unwrap();
        let path = into.join(format!("orthanc-{uid}.dcm"));
        fs::write(&path, bytes).unwrap();
        path
    }

    /// How many instances Orthanc holds, from its statistics (cheap at any count,
    /// unlike listing them).
    pub fn count_instances(&self) -> u64 {
        self.get("/statistics")
            .and_then(|s| s["CountInstances"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until Orthanc holds `n` instances.
    pub fn wait_instances(&self, n: usize, secs: u64, log: impl Fn() -> String) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let uids = self.instance_uids();
            if uids.len() >= n {
                return uids;
            }
            assert!(
                Instant::now() < deadline,
                "Orthanc has {} of {n} instances\n{}",
                uids.len(),
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        self.pause();
        if let Some((mut child, _)) = self.tls.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
