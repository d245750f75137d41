//! OIDC bearer tokens from a real provider: Ory Hydra on loopback
//! (`.ci/extra.d/40-hydra.sh` starts it and exports `HEARTH_TEST_OIDC_*`).
//! A client-credentials token of an integrator, linked to a member of acme
//! with `hearth user link-identity`, works through GraphQL with that
//! member's role; a token for another audience does not; and a key Hydra
//! starts signing with after a rotation is picked up by the unknown-`kid`
//! refresh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use hearth::app::{self, Config};
use hearth_auth::OidcProviderConfig;
use hearth_tests::{error_code, Client};
use serde_json::{json, Value};

/// What the CI hook exports.
struct Hydra {
    issuer: String,
    admin: String,
    client_id: String,
    client_secret: String,
    audience: String,
    other_audience: String,
}

impl Hydra {
    /// `None` outside CI when Hydra is not running; a failure under CI.
    fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok();
        let Some(issuer) = var("HEARTH_TEST_OIDC_ISSUER") else {
            // In CI the provider is part of the run: a missing one is a
            // failure, never a silent pass.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but HEARTH_TEST_OIDC_ISSUER is not set: .ci/run must start Hydra (.ci/extra.d/40-hydra.sh)"
            );
            let _ = writeln!(
                std::io::stderr(),
                "oidc_hydra did NOT run: HEARTH_TEST_OIDC_ISSUER is not set (see .ci/extra.d/40-hydra.sh)"
            );
            return None;
        };
        let need = |name: &str| var(name).unwrap_or_else(|| panic!("{name} is not set"));
        Some(Self {
            issuer,
            admin: need("HEARTH_TEST_OIDC_ADMIN_URL"),
            client_id: need("HEARTH_TEST_OIDC_CLIENT_ID"),
            client_secret: need("HEARTH_TEST_OIDC_CLIENT_SECRET"),
            audience: need("HEARTH_TEST_OIDC_AUDIENCE"),
            other_audience: need("HEARTH_TEST_OIDC_OTHER_AUDIENCE"),
        })
    }

    /// An access token from Hydra's client-credentials flow for `audience`.
    async fn token(&self, audience: &str) -> String {
        let res: Value = reqwest::Client::new()
            .post(format!("{}/oauth2/token", self.issuer))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
                ("audience", audience),
            ])
            .send()
            .await
            .expect("Hydra's token endpoint answers")
            .json()
            .await
            .expect("a JSON token response");
        res["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {res}"))
            .to_owned()
    }

    /// Creates a new signing key in Hydra's access-token key set: Hydra
    /// signs new tokens with it from then on.
    async fn rotate(&self, kid: &str) {
        let res = reqwest::Client::new()
            .post(format!("{}/admin/keys/hydra.jwt.access-token", self.admin))
            .json(&json!({ "alg": "RS256", "use": "sig", "kid": kid }))
            .send()
            .await
            .expect("Hydra's admin API answers");
        assert!(res.status().is_success(), "key creation: {}", res.status());
    }
}

/// The `kid` in a compact JWT's header.
fn kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn hydra_client_credentials_tokens_authenticate_the_linked_member() {
    let Some(hydra) = Hydra::from_env() else {
        return;
    };
    // Given the demo with acme trusting Hydra for audience hearth-api, and
    // the integrator's client id linked to acme's Full member
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        demo: true,
        sim_base_port: 0,
        oidc: vec![OidcProviderConfig {
            tenant: "acme".into(),
            issuer: hydra.issuer.clone(),
            audience: hydra.audience.clone(),
            jwks_uri: None,
            leeway_secs: 30,
            jwks_refresh_secs: 30,
        }],
        ..Config::default()
    };
    let running = app::start(config.clone()).await.unwrap();
    app::link_identity(
        &config,
        "acme",
        "full@acme.test",
        &hydra.issuer,
        &hydra.client_id,
    )
    .await
    .unwrap();
    let client = |token: String| Client {
        http: reqwest::Client::new(),
        addr: running.address,
        token: Some(token),
    };
    let me = "{ me { user { email } tenant { slug } role } }";

    // When the integrator calls `me` with a Hydra token for Hearth
    let token = hydra.token(&hydra.audience).await;
    let data = client(token.clone()).data(me, json!({})).await.unwrap();

    // Then it is acme's Full member, with that membership's role
    assert_eq!(data["me"]["user"]["email"], "full@acme.test");
    assert_eq!(data["me"]["tenant"]["slug"], "acme");
    assert_eq!(data["me"]["role"], "FULL");
    // And the scope follows: it sees acme's devices
    let devices = client(token).device_ids().await.unwrap();
    assert!(!devices.is_empty());

    // When the same client presents a token for another audience
    let other = hydra.token(&hydra.other_audience).await;
    let res = client(other).gql(me, json!({})).await.unwrap();
    // Then it is refused, with nothing but the code
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    assert!(
        res["data"].is_null() || res["data"]["me"].is_null(),
        "{res}"
    );

    // When Hydra rotates to a new signing key
    let new_kid = format!("rotated-{}", uuid::Uuid::new_v4());
    hydra.rotate(&new_kid).await;
    let rotated = hydra.token(&hydra.audience).await;
    assert_eq!(kid(&rotated), new_kid, "Hydra signs with the new key");

    // Then the first token signed with it is accepted (one JWKS refresh)
    let data = client(rotated).data(me, json!({})).await.unwrap();
    assert_eq!(data["me"]["role"], "FULL");

    running.stop().await;
}

#[tokio::test]
async fn a_hydra_token_for_an_unlinked_subject_is_unauthenticated() {
    let Some(hydra) = Hydra::from_env() else {
        return;
    };
    // Given acme trusting Hydra, but no link for the client id (and client
    // credentials carry no email)
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        demo: true,
        sim_base_port: 0,
        oidc: vec![OidcProviderConfig {
            tenant: "acme".into(),
            issuer: hydra.issuer.clone(),
            audience: hydra.audience.clone(),
            jwks_uri: None,
            leeway_secs: 30,
            jwks_refresh_secs: 30,
        }],
        ..Config::default()
    };
    let running = app::start(config).await.unwrap();

    // When its valid token is presented
    let token = hydra.token(&hydra.audience).await;
    let res = Client {
        http: reqwest::Client::new(),
        addr: running.address,
        token: Some(token),
    }
    .gql("{ me { role } }", json!({}))
    .await
    .unwrap();

    // Then the caller is unauthenticated: a valid token is not a membership
    assert_eq!(
        error_code(&res).as_deref(),
        Some("UNAUTHENTICATED"),
        "{res}"
    );
    running.stop().await;
}
