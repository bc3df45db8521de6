//! Access tokens that renew themselves, for clouds that take no static secret.
//!
//! Azure's DICOM service takes Entra ID tokens of about an hour, dcm4chee-arc
//! behind Keycloak tokens of minutes, Google a token its service account key buys
//! for an hour. An unattended box must get the next one itself: with the OAuth 2.0
//! client credentials grant (RFC 6749 4.4), or with a JWT it signs with the
//! service account's key (RFC 7523). The token is kept in memory only, taken again
//! before it expires, and once more when a server refuses it (it may have been
//! revoked early). A token server that cannot be reached is the destination
//! being offline; one that refuses the client is authentication refused.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

use crate::config::{AuthKind, ClientAuth, Destination, Secret};

/// Google's scope for the Cloud Healthcare API, when the card names none.
const GOOGLE_SCOPE: &str = "https://www.googleapis.com/auth/cloud-healthcare";
/// A token server's answer is read up to this size.
const ANSWER_LIMIT: u64 = 64 * 1024;
/// The longest a token is kept before it is renewed, whatever it says.
const MAX_RENEW_AFTER: Duration = Duration::from_secs(60);

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFailure {
    /// The token server did not answer, or answered with an error of its own.
    Unreachable(String),
    /// The token server refused the client (wrong secret, revoked, disabled).
    Refused(String),
}

/// How tokens are bought.
enum Grant {
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        client_auth: ClientAuth,
        /// `scope`, `audience` and `resource`, as given.
        parameters: Vec<(&'static str, String)>,
    },
    Google(Box<GoogleKey>),
}

/// The parts of a Google service account key the grant needs.
struct GoogleKey {
    client_email: String,
    key_id: Option<String>,
    token_uri: String,
    scope: String,
    key: RsaKeyPair,
}

/// The key file as Google writes it.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: String,
}

/// A destination's tokens.
pub struct Tokens {
    grant: Grant,
    /// The token and when to renew it.
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

impl Tokens {
    /// The token source of `destination`, if its auth buys tokens; the error
    /// names what on the card is wrong.
    pub fn of(destination: &Destination) -> Result<Option<Tokens>, String> {
        let grant = match destination.auth {
            AuthKind::OAuth2 => {
                let parameters = [
                    ("scope", &destination.scope),
                    ("audience", &destination.audience),
                    ("resource", &destination.resource),
                ]
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.clone()?)))
                .collect();
                Grant::ClientCredentials {
                    token_url: destination.token_url.clone().unwrap_or_default(),
                    client_id: destination.client_id.clone().unwrap_or_default(),
                    client_secret: destination
                        .client_secret
                        .clone()
                        .ok_or("auth = \"oauth2\" needs client_secret")?,
                    client_auth: destination.client_auth,
                    parameters,
                }
            }
            AuthKind::Google => {
                let text = destination
                    .key
                    .as_ref()
                    .ok_or("auth = \"google\" needs key_file")?;
                Grant::Google(Box::new(GoogleKey::read(
                    text.expose(),
                    destination.scope.as_deref().unwrap_or(GOOGLE_SCOPE),
                )?))
            }
            _ => return Ok(None),
        };
        Ok(Some(Tokens {
            grant,
            cached: Mutex::new(None),
        }))
    }

    /// A token that is still good, bought anew when needed.
    pub fn token(&self, agent: &ureq::Agent) -> Result<String, TokenFailure> {
        if let Some((token, renew_at)) = self.cached.lock().expect("token lock").as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let (token, lifetime) = self.buy(agent)?;
        // Renewed at three quarters of its life (at most a minute early): a
        // request under way when it is renewed still carries a valid one.
        let early = (lifetime / 4).min(MAX_RENEW_AFTER);
        *self.cached.lock().expect("token lock") =
            Some((token.clone(), Instant::now() + lifetime - early));
        Ok(token)
    }

    /// Forgets the token: the server refused it.
    pub fn invalidate(&self) {
        *self.cached.lock().expect("token lock") = None;
    }

    fn buy(&self, agent: &ureq::Agent) -> Result<(String, Duration), TokenFailure> {
        let (url, form, basic) = match &self.grant {
            Grant::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                client_auth,
                parameters,
            } => {
                let mut form = vec![("grant_type", "client_credentials".to_owned())];
                form.extend(parameters.iter().cloned());
                let basic = match client_auth {
                    ClientAuth::ClientSecretBasic => Some(format!(
                        "Basic {}",
                        STANDARD.encode(format!(
                            "{}:{}",
                            form_encode(client_id),
                            form_encode(client_secret.expose())
                        ))
                    )),
                    ClientAuth::ClientSecretPost => {
                        form.push(("client_id", client_id.clone()));
                        form.push(("client_secret", client_secret.expose().to_owned()));
                        None
                    }
                };
                (token_url.as_str(), form, basic)
            }
            Grant::Google(key) => {
                let form = vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned(),
                    ),
                    ("assertion", key.assertion()?),
                ];
                (key.token_uri.as_str(), form, None)
            }
        };
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = agent
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        if let Some(basic) = &basic {
            request = request.header("Authorization", basic);
        }
        let mut response = request.send(body.as_bytes()).map_err(|e| {
            TokenFailure::Unreachable(format!("token server {url} cannot be reached: {e}"))
        })?;
        let status = response.status().as_u16();
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(
            &mut std::io::Read::take(response.body_mut().as_reader(), ANSWER_LIMIT),
            &mut text,
        );
        let answer: Option<Answer> = serde_json::from_str(&text).ok();
        let said = answer
            .as_ref()
            .and_then(|a| a.error.clone())
            .map(|error| {
                let description = answer
                    .as_ref()
                    .and_then(|a| a.error_description.clone())
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                format!("{error}{description}")
            })
            .unwrap_or_else(|| format!("HTTP {status}"));
        match (status, answer) {
            (
                200..=299,
                Some(Answer {
                    access_token: Some(token),
                    expires_in,
                    ..
                }),
            ) => Ok((token, Duration::from_secs(expires_in.unwrap_or(300).max(2)))),
            // RFC 6749 5.2: the client or its grant is not accepted.
            (400 | 401 | 403, _) => Err(TokenFailure::Refused(format!(
                "the token server refused the client ({said}): check client_id and client_secret (or key_file), and that the client is still enabled"
            ))),
            _ => Err(TokenFailure::Unreachable(format!(
                "the token server {url} answered {said}"
            ))),
        }
    }
}

impl GoogleKey {
    fn read(text: &str, scope: &str) -> Result<GoogleKey, String> {
        let file: KeyFile = serde_json::from_str(text)
            .map_err(|e| format!("key_file is not a service account key ({e})"))?;
        if file.kind != "service_account" {
            return Err(format!(
                "key_file is a {:?} key, not a service account's",
                file.kind
            ));
        }
        let der: String = file
            .private_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD
            .decode(der.trim())
            .map_err(|_| "key_file's private_key is not PEM".to_owned())?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("key_file's private_key is not an RSA key ({e})"))?;
        Ok(GoogleKey {
            client_email: file.client_email,
            key_id: file.private_key_id,
            token_uri: file.token_uri,
            scope: scope.to_owned(),
            key,
        })
    }

    /// The signed JWT (RS256) asking for a token of an hour (RFC 7523 2.1).
    fn assertion(&self) -> Result<String, TokenFailure> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenFailure::Unreachable("the clock is before 1970".into()))?
            .as_secs();
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(id) = &self.key_id {
            header["kid"] = id.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": self.scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| TokenFailure::Unreachable("cannot sign the token request".into()))?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 2.3.1
/// asks it of the Basic credentials too).
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_encoded_as_rfc_6749_asks() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form_encode("id-1.x_y*"), "id-1.x_y*");
    }

    #[test]
    fn a_bad_key_file_says_what_is_wrong() {
        let error = |text: &str| GoogleKey::read(text, GOOGLE_SCOPE).err().unwrap();
        assert!(error("{}").contains("not a service account key"));
        assert!(
            error(
                r#"{"type":"authorized_user","client_email":"a","private_key":"","token_uri":"u"}"#
            )
            .contains("authorized_user")
        );
        assert!(
            error(r#"{"type":"service_account","client_email":"a","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","token_uri":"u"}"#)
                .contains("not an RSA key")
        );
    }
}
