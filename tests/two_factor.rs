//! End-to-end: two-factor login over real HTTP, with codes computed from
//! the `otpauth://` secret the server hands out, as an authenticator app
//! would. A member enrols and confirms; login then needs a code; wrong and
//! replayed codes are refused and counted by the login throttle; a recovery
//! code works once. An admin requires two-factor login for the tenant: an
//! unenrolled member must enrol before getting a token; an admin reset
//! sends them back to enrolment.

// Test code may unwrap (clippy.toml); the helpers below are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use hearth_domain::model::{totp, totp_step};
use hearth_domain::services::LoginLimits;
use hearth_tests::{error_code, Client, DemoServer, PASSWORD};
use serde_json::{json, Value};

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { \
    token twoFactorRequired twoFactorEnrolmentRequired challenge challengeExpiresAt } }";
const VERIFY: &str =
    "mutation($c: String!, $k: String!) { verifyTwoFactor(challenge: $c, code: $k) { token } }";
const ENROL: &str =
    "mutation($c: String) { enrolTwoFactor(challenge: $c) { secret otpauthUri recoveryCodes } }";
const CONFIRM: &str =
    "mutation($k: String!, $c: String) { confirmTwoFactor(code: $k, challenge: $c) { \
    status { enabled pending required recoveryCodesLeft } session { token } } }";
const STATUS: &str = "{ twoFactor { enabled pending required recoveryCodesLeft } }";

/// An authenticator app: the secret from the URI and the last step used,
/// so it never offers the same code twice.
struct Authenticator {
    secret: Vec<u8>,
    last: Option<u64>,
}

impl Authenticator {
    fn from_uri(uri: &str) -> Self {
        let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let secret = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("secret="))
            .expect("a secret in the otpauth URI");
        let secret = data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .expect("a base32 secret");
        Self { secret, last: None }
    }

    fn code_at(&self, step: u64) -> String {
        format!("{:06}", totp(&self.secret, step, 6))
    }

    /// A code of a step not used before, within the server's ±1 window:
    /// the next step once the current one is used, else waits for the
    /// clock to move on.
    async fn fresh(&mut self) -> String {
        loop {
            let now = totp_step(Utc::now());
            let step = self
                .last
                .map_or(now, |l| (l + 1).max(now.saturating_sub(1)));
            if step <= now + 1 {
                self.last = Some(step);
                return self.code_at(step);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A six-digit code that is none of the codes around now.
    fn wrong(&self) -> String {
        let now = totp_step(Utc::now());
        let near: Vec<String> = (now.saturating_sub(2)..=now + 2)
            .map(|s| self.code_at(s))
            .collect();
        (0..)
            .map(|n| format!("{:06}", (123_457 + n * 7_919) % 1_000_000))
            .find(|c| !near.contains(c))
            .expect("some code is wrong")
    }
}

async fn login(server: &DemoServer, email: &str) -> Value {
    server
        .client()
        .gql(LOGIN, json!({ "e": email, "p": PASSWORD }))
        .await
        .expect("login answered")
}

fn with_token(server: &DemoServer, token: &Value) -> Client {
    let mut client = server.client();
    client.token = Some(token.as_str().expect("a token").to_owned());
    client
}

/// Logs in and answers the challenge with `code`; the response.
async fn login_with_code(server: &DemoServer, email: &str, code: &str) -> Value {
    let res = login(server, email).await;
    let challenge = &res["data"]["login"]["challenge"];
    assert!(challenge.is_string(), "a challenge: {res}");
    server
        .client()
        .gql(VERIFY, json!({ "c": challenge, "k": code }))
        .await
        .expect("verify answered")
}

/// Enrols and confirms `client`'s user; the authenticator and recovery codes.
async fn enrol(client: &Client) -> (Authenticator, Vec<String>) {
    let data = client.data(ENROL, json!({})).await.expect("enrolment");
    let enrolment = &data["enrolTwoFactor"];
    let mut app = Authenticator::from_uri(enrolment["otpauthUri"].as_str().unwrap());
    let codes: Vec<String> = enrolment["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let code = app.fresh().await;
    let data = client
        .data(CONFIRM, json!({ "k": code }))
        .await
        .expect("confirmation");
    assert_eq!(data["confirmTwoFactor"]["status"]["enabled"], true);
    (app, codes)
}

fn long_lockouts() -> LoginLimits {
    // Lock-outs far longer than the test, so "locked" never depends on how
    // fast the machine is.
    LoginLimits {
        first_lockout: Duration::from_secs(600),
        max_lockout: Duration::from_secs(600),
        ..LoginLimits::default()
    }
}

#[tokio::test]
async fn a_member_enrols_and_then_logs_in_with_codes_once_each() {
    // Given the demo, and a member without two-factor login
    let server = DemoServer::start_with_login_limits(long_lockouts())
        .await
        .unwrap();
    let email = "full@acme.test";
    let res = login(&server, email).await;
    let login_data = &res["data"]["login"];
    assert!(login_data["token"].is_string(), "a plain token: {res}");
    assert_eq!(login_data["twoFactorRequired"], false);
    assert!(login_data["challenge"].is_null());
    let full = with_token(&server, &login_data["token"]);
    let status = full.data(STATUS, json!({})).await.unwrap();
    assert_eq!(status["twoFactor"]["enabled"], false);

    // When the member enrols
    let data = full.data(ENROL, json!({})).await.unwrap();
    let enrolment = &data["enrolTwoFactor"];
    let uri = enrolment["otpauthUri"].as_str().unwrap();
    let secret = enrolment["secret"].as_str().unwrap();
    // Then the URI names Hearth, the member and the secret, with ten recovery codes
    assert!(
        uri.starts_with(&format!("otpauth://totp/Hearth:{email}?secret={secret}")),
        "{uri}"
    );
    assert!(uri.contains("issuer=Hearth"), "{uri}");
    let codes: Vec<String> = enrolment["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let mut app = Authenticator::from_uri(uri);
    // And a pending enrolment does not yet change login
    assert!(login(&server, email).await["data"]["login"]["token"].is_string());

    // When it is confirmed with a wrong code, Then that is refused
    let res = full
        .gql(CONFIRM, json!({ "k": app.wrong() }))
        .await
        .unwrap();
    assert_eq!(error_code(&res).as_deref(), Some("BAD_USER_INPUT"), "{res}");
    // When it is confirmed with a real code, Then two-factor login is on
    let code = app.fresh().await;
    let data = full.data(CONFIRM, json!({ "k": code })).await.unwrap();
    let status = &data["confirmTwoFactor"]["status"];
    assert_eq!(status["enabled"], true);
    assert_eq!(status["recoveryCodesLeft"], 10);
    assert!(data["confirmTwoFactor"]["session"].is_null());

    // When the member logs in, Then no token comes without a code
    let res = login(&server, email).await;
    let login_data = &res["data"]["login"];
    assert!(login_data["token"].is_null(), "{res}");
    assert_eq!(login_data["twoFactorRequired"], true);
    assert_eq!(login_data["twoFactorEnrolmentRequired"], false);
    assert!(login_data["challengeExpiresAt"].is_string());
    let challenge = login_data["challenge"].clone();
    // And the challenge is no bearer token
    let mut pretender = server.client();
    pretender.token = challenge.as_str().map(str::to_owned);
    let res = pretender
        .gql("{ me { user { email } } }", json!({}))
        .await
        .unwrap();
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    // And a wrong code is refused
    let res = server
        .client()
        .gql(VERIFY, json!({ "c": challenge, "k": app.wrong() }))
        .await
        .unwrap();
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    // And the right code gives a working token
    let code = app.fresh().await;
    let res = server
        .client()
        .gql(VERIFY, json!({ "c": challenge, "k": code }))
        .await
        .unwrap();
    let token = &res["data"]["verifyTwoFactor"]["token"];
    let me = with_token(&server, token)
        .data("{ me { user { email } } }", json!({}))
        .await
        .unwrap();
    assert_eq!(me["me"]["user"]["email"], email);
    // And the challenge is used up
    let res = server
        .client()
        .gql(VERIFY, json!({ "c": challenge, "k": app.fresh().await }))
        .await
        .unwrap();
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );

    // When the same code is replayed on a new login, Then it is refused
    let res = login_with_code(&server, email, &code).await;
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );

    // When a recovery code is used, Then it works once
    let res = login_with_code(&server, email, &codes[0].to_uppercase()).await;
    assert!(res["data"]["verifyTwoFactor"]["token"].is_string(), "{res}");
    let res = login_with_code(&server, email, &codes[0]).await;
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    let status = with_token(&server, &json!(res_token(&server, email, &codes[1]).await))
        .data(STATUS, json!({}))
        .await
        .unwrap();
    assert_eq!(status["twoFactor"]["recoveryCodesLeft"], 8);

    // When the member turns it off with a recovery code, Then login is plain again
    let token = res_token(&server, email, &codes[2]).await;
    let data = with_token(&server, &json!(token))
        .data(
            "mutation($k: String!) { disableTwoFactor(code: $k) { enabled } }",
            json!({ "k": codes[3] }),
        )
        .await
        .unwrap();
    assert_eq!(data["disableTwoFactor"]["enabled"], false);
    assert!(login(&server, email).await["data"]["login"]["token"].is_string());
}

/// Logs in with a recovery or TOTP code; the token.
async fn res_token(server: &DemoServer, email: &str, code: &str) -> String {
    let res = login_with_code(server, email, code).await;
    res["data"]["verifyTwoFactor"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {res}"))
        .to_owned()
}

#[tokio::test]
async fn wrong_codes_count_against_the_login_throttle() {
    // Given a member with two-factor login, and lock-outs longer than the test
    let server = DemoServer::start_with_login_limits(long_lockouts())
        .await
        .unwrap();
    let email = "limited@acme.test";
    let member = server.login(email).await.unwrap();
    let (mut app, _) = enrol(&member).await;
    let free = LoginLimits::default().account_free_failures;

    // When wrong codes are sent, over as many challenges as it takes
    let mut answers = Vec::new();
    let mut challenge = Value::Null;
    for attempt in 0..=free {
        if attempt % (free) == 0 || challenge.is_null() {
            let res = login(&server, email).await;
            challenge = res["data"]["login"]["challenge"].clone();
            assert!(challenge.is_string(), "{res}");
        }
        let res = server
            .client()
            .gql(VERIFY, json!({ "c": challenge, "k": app.wrong() }))
            .await
            .unwrap();
        answers.push(error_code(&res));
    }
    // Then each was refused, and the right password does not clear the count
    assert!(
        answers
            .iter()
            .all(|a| a.as_deref() == Some("UNAUTHENTICATED")),
        "{answers:?}"
    );
    // And now even the right code is refused as rate limited
    let res = login(&server, email).await;
    let res = if error_code(&res).is_some() {
        res
    } else {
        let challenge = &res["data"]["login"]["challenge"];
        server
            .client()
            .gql(VERIFY, json!({ "c": challenge, "k": app.fresh().await }))
            .await
            .unwrap()
    };
    assert_eq!(error_code(&res).as_deref(), Some("RATE_LIMITED"), "{res}");
}

#[tokio::test]
async fn an_admin_requires_two_factor_login_and_resets_an_enrolment() {
    // Given the demo's acme admin and a Basic member of acme
    let server = DemoServer::start().await.unwrap();
    let admin = server.login("admin@acme.test").await.unwrap();
    let basic = server.login("basic@acme.test").await.unwrap();
    let users = admin
        .data(
            "{ users(first: 50) { edges { node { id email } } } }",
            json!({}),
        )
        .await
        .unwrap();
    let id_of = |email: &str| {
        users["users"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["email"] == email)
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let (basic_id, admin_id, guest_id) = (
        id_of("basic@acme.test"),
        id_of("admin@acme.test"),
        id_of("tech@service.test"),
    );
    const REQUIRE: &str = "mutation($r: Boolean!) { setTwoFactorRequired(required: $r) }";
    const RESET: &str = "mutation($u: ID!) { resetTwoFactor(userId: $u) }";

    // When a non-admin tries to require it, Then that is forbidden
    let res = basic.gql(REQUIRE, json!({ "r": true })).await.unwrap();
    assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"), "{res}");
    let res = basic.gql(RESET, json!({ "u": admin_id })).await.unwrap();
    assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"), "{res}");

    // When the admin requires two-factor login for acme
    let data = admin.data(REQUIRE, json!({ "r": true })).await.unwrap();
    assert_eq!(data["setTwoFactorRequired"], true);
    let status = basic.data(STATUS, json!({})).await.unwrap();
    assert_eq!(status["twoFactor"]["required"], true);

    // Then the unenrolled member's login asks for enrolment, not a code
    let res = login(&server, "basic@acme.test").await;
    let login_data = &res["data"]["login"];
    assert!(login_data["token"].is_null(), "{res}");
    assert_eq!(login_data["twoFactorEnrolmentRequired"], true);
    assert_eq!(login_data["twoFactorRequired"], false);
    let challenge = login_data["challenge"].clone();
    // And the enrolment challenge is good for nothing else
    let res = server
        .client()
        .gql(VERIFY, json!({ "c": challenge, "k": "123456" }))
        .await
        .unwrap();
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    let res = server
        .client()
        .gql(ENROL, json!({ "c": "not-a-challenge" }))
        .await
        .unwrap();
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );

    // When the member enrols and confirms through the challenge
    let anonymous = server.client();
    let data = anonymous
        .data(ENROL, json!({ "c": challenge }))
        .await
        .unwrap();
    let mut app = Authenticator::from_uri(data["enrolTwoFactor"]["otpauthUri"].as_str().unwrap());
    let code = app.fresh().await;
    let data = anonymous
        .data(CONFIRM, json!({ "k": code, "c": challenge }))
        .await
        .unwrap();
    // Then the login completes with a working token
    let confirmation = &data["confirmTwoFactor"];
    assert_eq!(confirmation["status"]["enabled"], true);
    assert_eq!(confirmation["status"]["required"], true);
    let enrolled = with_token(&server, &confirmation["session"]["token"]);
    let me = enrolled
        .data("{ me { user { email } role } }", json!({}))
        .await
        .unwrap();
    assert_eq!(me["me"]["user"]["email"], "basic@acme.test");
    // And the member cannot turn it off while acme requires it
    let res = enrolled
        .gql(
            "mutation($k: String!) { disableTwoFactor(code: $k) { enabled } }",
            json!({ "k": app.fresh().await }),
        )
        .await
        .unwrap();
    assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"), "{res}");
    // And the next login asks for a code
    let res = login(&server, "basic@acme.test").await;
    assert_eq!(res["data"]["login"]["twoFactorRequired"], true, "{res}");

    // When the admin resets the member's enrolment (a lost phone)
    let data = admin.data(RESET, json!({ "u": basic_id })).await.unwrap();
    assert_eq!(data["resetTwoFactor"], true);
    // Then the member must enrol again
    let res = login(&server, "basic@acme.test").await;
    assert_eq!(
        res["data"]["login"]["twoFactorEnrolmentRequired"], true,
        "{res}"
    );
    // And the reset follows resetPassword's rules: not oneself, not a guest,
    // nobody of another tenant
    let res = admin.gql(RESET, json!({ "u": admin_id })).await.unwrap();
    assert_eq!(error_code(&res).as_deref(), Some("CONFLICT"), "{res}");
    let res = admin.gql(RESET, json!({ "u": guest_id })).await.unwrap();
    assert_eq!(error_code(&res).as_deref(), Some("FORBIDDEN"), "{res}");
    let globex = server.login("admin@globex.test").await.unwrap();
    let res = globex.gql(RESET, json!({ "u": basic_id })).await.unwrap();
    assert_eq!(error_code(&res).as_deref(), Some("NOT_FOUND"), "{res}");
    // And globex, which requires nothing, still logs in with a plain token
    assert!(login(&server, "admin@globex.test").await["data"]["login"]["token"].is_string());

    // And both changes are in acme's audit log
    let log = admin
        .data(
            "{ auditLog(first: 50) { edges { node { action detail } } } }",
            json!({}),
        )
        .await
        .unwrap();
    let actions: Vec<&str> = log["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["node"]["action"].as_str())
        .collect();
    assert!(actions.contains(&"set_two_factor_required"), "{actions:?}");
    assert!(actions.contains(&"reset_two_factor"), "{actions:?}");
}
