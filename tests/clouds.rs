//! Clouds that take OAuth 2.0 tokens: a real authorization server (oidc-provider)
//! issuing 30-second tokens, and a gateway in front of Orthanc admitting only
//! active ones (nginx asking the server's introspection endpoint). The agent must
//! renew its tokens by itself, across many expiries, and tell a revoked client
//! (authentication refused) from a token server that is down (offline). Google's
//! service account grant goes to a stand-in for Google's token endpoint, which
//! cannot be reached from here.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::oauth::{Gate, OAuthServer};
use common::orthanc::Orthanc;
use common::*;

const TTL: u64 = 30;

fn oauth2(token_url: &str, dicomweb: &str, client: &str, method: &str) -> String {
    format!(
        "\n[[destination]]\nname = \"cloud\"\nurl = \"{dicomweb}\"\ninsecure = true\nretry_max_secs = 2\n\
         auth = \"oauth2\"\ntoken_url = \"{token_url}\"\nclient_id = \"{client}\"\nclient_secret = \"{client}-secret\"\n\
         client_auth = \"{method}\"\nscope = \"dicom\"\n"
    )
}

fn send(agent: &Agent, files: &[PathBuf]) {
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = storescu(agent.port, &[], &refs);
    assert!(out.status.success(), "{}", text(&out));
}

fn state(agent: &Agent) -> String {
    agent.status_json()["destinations"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A cloud that takes tokens: the token server, Orthanc behind the gate, and an
/// agent uploading there.
struct Cloud {
    server: OAuthServer,
    orthanc: Orthanc,
    gate: Gate,
    agent: Agent,
}

/// Starts them: the server with one client (`client`, secret `{client}-secret`,
/// speaking `method`), the agent as that client.
fn cloud(client: &str, method: &str) -> Cloud {
    let server = OAuthServer::start(TTL, &[(client, &format!("{client}-secret"), method)]);
    let orthanc = Orthanc::start();
    let gate = Gate::start(&server, orthanc.http_port);
    let agent = Agent::start(&oauth2(
        &server.token_url(),
        &gate.dicomweb_url(),
        client,
        method,
    ));
    Cloud {
        server,
        orthanc,
        gate,
        agent,
    }
}

#[test]
fn tokens_renew_themselves_across_many_expiries_without_a_failed_instance() {
    let cloud = cloud("box", "client_secret_basic");
    // UPLINK_OAUTH_SECS runs it longer: by default a little over four expiries.
    let secs: u64 = std::env::var("UPLINK_OAUTH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4 * TTL + 10);
    let input = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut sent = 0;
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        round += 1;
        let files = us_images(input.path(), 2, 1000 + round);
        send(&cloud.agent, &files);
        sent += files.len();
        cloud.orthanc.wait_instances(sent, 30, || {
            format!(
                "{}\n{}\n{}",
                cloud.agent.log(),
                cloud.server.log(),
                cloud.gate.error_log()
            )
        });
        assert_ne!(
            state(&cloud.agent),
            "authentication refused",
            "{}",
            cloud.agent.log()
        );
        std::thread::sleep(Duration::from_secs(4));
    }
    let status = cloud.agent.status_json();
    assert_eq!(status["destinations"][0]["quarantined"], 0, "{status}");
    let issued = cloud.server.issued("box");
    assert!(
        issued as u64 >= secs / TTL,
        "{issued} tokens over {secs} s of {TTL}-second tokens:\n{}",
        cloud.server.log()
    );
    assert_eq!(
        cloud.gate.refused(),
        0,
        "every token was renewed before it expired: {}",
        cloud.agent.log()
    );
    eprintln!("{sent} instances over {secs} s, {issued} tokens, none refused");
}

#[test]
fn client_secret_post_is_spoken_too() {
    let cloud = cloud("post-box", "client_secret_post");
    let input = tempfile::tempdir().unwrap();
    send(&cloud.agent, &us_images(input.path(), 1, 1100));
    cloud.orthanc.wait_instances(1, 30, || {
        format!("{}\n{}", cloud.agent.log(), cloud.server.log())
    });
    assert_eq!(cloud.server.issued("post-box"), 1);
}

#[test]
fn a_revoked_client_is_authentication_refused() {
    let mut cloud = cloud("box", "client_secret_basic");
    let input = tempfile::tempdir().unwrap();
    send(&cloud.agent, &us_images(input.path(), 1, 1200));
    cloud.orthanc.wait_instances(1, 30, || cloud.agent.log());
    // The clinic's admin disables the box's client: its token dies with it.
    cloud.server.run(&[]);
    send(&cloud.agent, &us_images(input.path(), 1, 1201));
    cloud
        .agent
        .wait_destination(30, "state", "authentication refused");
    let error = cloud.agent.status_json()["destinations"][0]["last_error"]["message"].to_string();
    assert!(
        error.contains("the token server refused the client"),
        "{error}"
    );
    assert!(
        !cloud.agent.log().contains("box-secret"),
        "{}",
        cloud.agent.log()
    );
    assert_eq!(cloud.orthanc.instance_uids().len(), 1);
}

#[test]
fn a_token_server_that_is_down_is_offline_not_refused() {
    let mut cloud = cloud("box", "client_secret_basic");
    cloud.server.stop();
    let input = tempfile::tempdir().unwrap();
    send(&cloud.agent, &us_images(input.path(), 1, 1300));
    cloud.agent.wait_destination(30, "state", "offline");
    let error = cloud.agent.status_json()["destinations"][0]["last_error"]["message"].to_string();
    assert!(error.contains("cannot be reached"), "{error}");
    // Back up: the exam goes without anyone touching the box.
    cloud
        .server
        .run(&[("box", "box-secret", "client_secret_basic")]);
    cloud.orthanc.wait_instances(1, 60, || cloud.agent.log());
}

#[test]
fn a_google_service_account_key_buys_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    let email = "uplink@clinic-project.iam.gserviceaccount.com";
    let server = OAuthServer::google(TTL, email, &String::from_utf8_lossy(&public.stdout));
    let key_file = dir.path().join("service-account.json");
    std::fs::write(
        &key_file,
        serde_json::json!({
            "type": "service_account",
            "project_id": "clinic-project",
            "private_key_id": "0123abcd",
            "private_key": std::fs::read_to_string(&key).unwrap(),
            "client_email": email,
            "token_uri": server.token_url(),
        })
        .to_string(),
    )
    .unwrap();
    let orthanc = Orthanc::start();
    let gate = Gate::start(&server, orthanc.http_port);
    let agent = Agent::start(&format!(
        "\n[[destination]]\nname = \"cloud\"\nurl = \"{}\"\ninsecure = true\nretry_max_secs = 2\nauth = \"google\"\nkey_file = \"{}\"\n",
        gate.dicomweb_url(),
        key_file.display()
    ));
    let input = tempfile::tempdir().unwrap();
    send(&agent, &us_images(input.path(), 2, 1400));
    orthanc.wait_instances(2, 30, || format!("{}\n{}", agent.log(), server.log()));
    assert_eq!(server.issued("google"), 1, "{}", server.log());
    assert_eq!(gate.refused(), 0);
}
