//! `[update] url` against a real HTTPS server (nginx on loopback, certificate from
//! a test CA the config names in `ca_file`, as a destination would): a new bundle is
//! streamed whole into the data dir for the installer, an unchanged one costs one
//! request answered 304 (counted in nginx's own log), a changed one is fetched again,
//! and what is not a bundle (a captive portal's page), what does not fit beside the
//! exams, and a server the box does not trust never reach the installer.

mod common;

use std::fs;
use std::path::Path;

use common::free_port;
use common::nginx::Nginx;
use common::pki::Pki;
use uplink::config::Config;
use uplink::update_fetch::{Checked, check};
use uplink::upload::stow::Client;

fn bundle_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = b"hsqs".to_vec();
    bytes.extend((0..n).map(|_| rng.u8(..)));
    bytes
}

fn client(url: &str, ca: Option<&str>) -> Client {
    let ca = ca
        .map(|c| format!("ca_file = \"{c}\"\n"))
        .unwrap_or_default();
    let config = Config::parse(&format!("[update]\nurl = \"{url}\"\n{ca}")).unwrap();
    let server = config.update.unwrap().server;
    Client::new(&server, &server.url.to_string()).unwrap()
}

/// The statuses nginx answered for `path`, in order.
fn answered(nginx: &Nginx, path: &str) -> Vec<String> {
    nginx
        .requests()
        .iter()
        .filter(|l| l.contains(&format!("GET {path} ")))
        .filter_map(|l| l.split('"').nth(2))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

fn nothing_for_the_installer(data: &Path) {
    assert!(!data.join("update/bundle.raucb").exists());
    assert!(!data.join("update/bundle.part").exists());
}

#[test]
fn an_update_bundle_is_fetched_once_and_a_portal_page_never() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::create(&work.path().join("pki"));
    let site = work.path().join("site");
    fs::create_dir(&site).unwrap();
    let first = bundle_bytes(3 << 20, 1);
    fs::write(site.join("box.raucb"), &first).unwrap();
    let port = free_port();
    let nginx = Nginx::start(
        port,
        "",
        &format!(
            "server {{\n listen 127.0.0.1:{port} ssl;\n ssl_certificate {};\n ssl_certificate_key {};\n root {};\n\
             location = /portal.raucb {{ default_type text/html; return 200 \"<html>Welcome to the clinic Wi-Fi: accept the terms</html>\"; }}\n}}",
            pki.file("server.pem"),
            pki.file("server.key"),
            site.display()
        ),
        &[],
    );
    let url = format!("https://127.0.0.1:{port}/box.raucb");
    let ca = pki.file("ca.pem");
    let data = work.path().join("data");
    let bundle = data.join("update/bundle.raucb");
    let updates = client(&url, Some(&ca));

    assert_eq!(
        check(&updates, &data, 0).unwrap(),
        Checked::Downloaded(first.len() as u64)
    );
    assert!(
        fs::read(&bundle).unwrap() == first,
        "the download differs from the bundle served"
    );
    // Not installed yet: no request at all.
    assert_eq!(check(&updates, &data, 0).unwrap(), Checked::Waiting);
    // Installed (uplink-update.service removes the file): the server says unchanged.
    fs::remove_file(&bundle).unwrap();
    assert_eq!(check(&updates, &data, 0).unwrap(), Checked::Unchanged);
    nothing_for_the_installer(&data);
    assert_eq!(
        answered(&nginx, "/box.raucb"),
        ["200", "304"],
        "{}",
        nginx.error_log()
    );

    // A new release on the server is fetched again.
    let second = bundle_bytes(2 << 20, 2);
    fs::write(site.join("box.raucb"), &second).unwrap();
    assert_eq!(
        check(&updates, &data, 0).unwrap(),
        Checked::Downloaded(second.len() as u64)
    );
    assert!(fs::read(&bundle).unwrap() == second);
    fs::remove_file(&bundle).unwrap();

    // No room beside the exams: refused before a byte is written.
    fs::write(site.join("box.raucb"), bundle_bytes(1 << 20, 3)).unwrap();
    let e = check(&updates, &data, u64::MAX / 2).unwrap_err();
    assert!(e.contains("exams come first"), "{e}");
    nothing_for_the_installer(&data);

    // A captive portal answering 200 with its page.
    let portal = client(&format!("https://127.0.0.1:{port}/portal.raucb"), Some(&ca));
    let e = check(&portal, &data, 0).unwrap_err();
    assert!(e.contains("not an update bundle"), "{e}");
    nothing_for_the_installer(&data);

    // A server whose certificate the box does not trust (no ca_file).
    let e = check(&client(&url, None), &data, 0).unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    nothing_for_the_installer(&data);
}
