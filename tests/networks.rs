//! Uploads through the networks hospitals have: an outbound proxy with Basic
//! authentication (squid), one that asks for another scheme (squid with Digest),
//! and one that inspects TLS with its own CA (mitmproxy); the cloud behind them is
//! the HTTPS Orthanc of the tests.

mod common;

use std::path::{Path, PathBuf};

use common::orthanc::Orthanc;
use common::proxies::{Proxy, Scheme};
use common::*;

fn destination(url: &str, ca: &Path, proxy: &str) -> String {
    format!(
        "\n[[destination]]\nname = \"cloud\"\nurl = \"{url}\"\nca_file = \"{}\"\nretry_max_secs = 2\n{proxy}\n",
        ca.display()
    )
}

fn send(agent: &Agent, files: &[PathBuf]) {
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = storescu(agent.port, &[], &refs);
    assert!(out.status.success(), "{}", text(&out));
}

/// A hospital's way out: the HTTPS Orthanc, squid, and an agent sending to Orthanc
/// through squid.
struct Hospital {
    orthanc: Orthanc,
    squid: Proxy,
    agent: Agent,
}

/// Starts them: squid admitting uplink-box:pr0xy-pw by `scheme`, the agent with the
/// proxy settings `proxy` makes of squid; the agent has been sent `n` images (UIDs
/// under `tag`) when it returns.
fn through_squid(scheme: Scheme, proxy: impl Fn(&Proxy) -> String, n: usize, tag: u32) -> Hospital {
    let mut orthanc = Orthanc::start();
    let (url, ca) = orthanc.with_tls();
    let squid = Proxy::squid("uplink-box", "pr0xy-pw", scheme);
    let agent = Agent::start(&destination(&url, &ca, &proxy(&squid)));
    let input = tempfile::tempdir().unwrap();
    send(&agent, &us_images(input.path(), n, tag));
    Hospital {
        orthanc,
        squid,
        agent,
    }
}

/// The card's settings for squid as uplink-box, its password beside the URL.
fn as_the_box(squid: &Proxy) -> String {
    format!(
        "proxy = \"{}\"\nproxy_password = \"pr0xy-pw\"",
        squid.url("uplink-box@")
    )
}

fn last_error(agent: &Agent) -> String {
    agent.status_json()["destinations"][0]["last_error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn uploads_go_through_the_hospitals_proxy_with_basic_authentication() {
    let hospital = through_squid(Scheme::Basic, as_the_box, 3, 901);
    hospital.orthanc.wait_instances(3, 60, || {
        format!("{}\n{}", hospital.agent.log(), hospital.squid.access_log())
    });
    assert!(
        hospital
            .agent
            .log()
            .contains("through proxy http://uplink-box:********@127.0.0.1"),
        "{}",
        hospital.agent.log()
    );
    assert!(
        !hospital.agent.log().contains("pr0xy-pw")
            && !hospital.agent.status_text().contains("pr0xy-pw")
    );
    // squid logs a tunnel when it closes: once the agent has let go of it.
    drop(hospital.agent);
    wait_until(
        10,
        || {
            let log = hospital.squid.access_log();
            log.contains("CONNECT 127.0.0.1") && log.contains("uplink-box")
        },
        || {
            format!(
                "the uploads went through squid as uplink-box: {}",
                hospital.squid.access_log()
            )
        },
    );
}

#[test]
fn a_wrong_proxy_password_is_authentication_refused() {
    let hospital = through_squid(
        Scheme::Basic,
        |squid| format!("proxy = \"{}\"", squid.url("uplink-box:wr0ng@")),
        1,
        902,
    );
    hospital
        .agent
        .wait_destination(30, "state", "authentication refused");
    let error = last_error(&hospital.agent);
    assert!(
        error.contains("refused the user name or password (407)"),
        "{error}"
    );
    assert!(
        !hospital.agent.log().contains("wr0ng") && !hospital.agent.status_text().contains("wr0ng")
    );
    assert!(hospital.orthanc.instance_uids().is_empty());
}

#[test]
fn a_proxy_that_asks_for_another_scheme_says_which() {
    let hospital = through_squid(Scheme::Digest, as_the_box, 1, 903);
    hospital
        .agent
        .wait_destination(30, "state", "authentication refused");
    let error = last_error(&hospital.agent);
    assert!(
        error.contains("asks for Digest authentication") && error.contains("Basic only"),
        "{error}"
    );
}

#[test]
fn a_tls_inspecting_proxy_is_named_until_its_ca_is_trusted() {
    let mut orthanc = Orthanc::start();
    let (url, ca) = orthanc.with_tls();
    let mitm = Proxy::mitmproxy();
    let input = tempfile::tempdir().unwrap();
    let files = us_images(input.path(), 3, 904);
    let proxy = format!("proxy = \"{}\"", mitm.url(""));
    let untrusting = Agent::start(&destination(&url, &ca, &proxy));
    send(&untrusting, &files);
    untrusting.wait_destination(30, "state", "offline");
    let error = last_error(&untrusting);
    assert!(
        error.contains("issued by 'mitmproxy'")
            && error.contains("add its CA certificate as ca_file"),
        "{error}"
    );
    assert!(orthanc.instance_uids().is_empty());
    drop(untrusting);
    // The hospital's CA on the card: every instance arrives through the inspection.
    let trusting = Agent::start(&destination(&url, &mitm.ca(), &proxy));
    send(&trusting, &files);
    orthanc.wait_instances(3, 60, || trusting.log());
}

#[test]
fn no_proxy_hosts_are_reached_directly() {
    // A proxy that would refuse the box: only going around it gets the exam there.
    let hospital = through_squid(
        Scheme::Basic,
        |squid| {
            format!(
                "proxy = \"{}\"\nno_proxy = [\"127.0.0.1\"]",
                squid.url("uplink-box:wr0ng@")
            )
        },
        2,
        905,
    );
    hospital
        .orthanc
        .wait_instances(2, 60, || hospital.agent.log());
}
