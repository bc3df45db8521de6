//! nginx (Debian's nginx-light) on loopback, configured by its `http` block's
//! contents: the token gate in front of Orthanc, the update server. Its temp
//! folders and logs live in its own folder; it stops when dropped.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::wait_listening;

pub struct Nginx {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    /// Starts nginx listening on `port` with `main` (top-level directives, e.g.
    /// `load_module`) and `http` inside its `http` block; `{dir}` in either is its
    /// folder, where `files` (name, content) are written first.
    pub fn start(port: u16, main: &str, http: &str, files: &[(&str, &[u8])]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        for (name, content) in files {
            fs::write(path.join(name), content).unwrap();
        }
        // nginx's workers run as nobody: their temp folders live here.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o777)).unwrap();
        let at = path.display().to_string();
        let conf = path.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "{main}\ndaemon off;\nworker_processes 1;\npid {at}/nginx.pid;\nerror_log {at}/error.log;\n\
                 events {{}}\n\
                 http {{\n\
                   access_log {at}/access.log;\n\
                   client_body_temp_path {at}/body;\nproxy_temp_path {at}/proxy;\n\
                   fastcgi_temp_path {at}/fastcgi;\nuwsgi_temp_path {at}/uwsgi;\nscgi_temp_path {at}/scgi;\n\
                   {http}\n\
                 }}\n",
                main = main.replace("{dir}", &at),
                http = http.replace("{dir}", &at),
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(fs::File::create(path.join("nginx.out")).unwrap())
            .spawn()
            .expect("cannot run nginx (nginx-light)");
        let nginx = Nginx { port, dir, child };
        wait_listening(port, 30, || nginx.error_log());
        nginx
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The access log's lines.
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn error_log(&self) -> String {
        ["error.log", "nginx.out"]
            .iter()
            .filter_map(|f| fs::read_to_string(self.dir.path().join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
