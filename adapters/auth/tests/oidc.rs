//! The OIDC verifier against keys generated here (RSA 2048 and P-256): one
//! accepted token of each kind, and every way a token must be refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hearth_auth::oidc::{
    parse_jwks, JwksSource, OidcError, OidcProviderConfig, OidcSetupError, OidcVerifier,
    MAX_TOKEN_LEN,
};
use hearth_domain::ports::{ExternalTokenVerifier, TokenError};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.acme.example";
const AUDIENCE: &str = "hearth";

struct RsaKey {
    encoding: EncodingKey,
    jwk: Value,
    /// The public modulus, what an attacker would use as an HMAC secret.
    public_bytes: Vec<u8>,
}

fn rsa_key(kid: &str) -> RsaKey {
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let der = key.to_pkcs1_der().unwrap();
    let n = key.n().to_bytes_be();
    RsaKey {
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&n),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        }),
        public_bytes: n,
    }
}

struct EcKey {
    encoding: EncodingKey,
    jwk: Value,
}

fn ec_key(kid: &str) -> EcKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    EcKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "kid": kid, "crv": "P-256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    }
}

/// Keys are slow to make unoptimised: one set per test binary.
struct Keys {
    rsa: RsaKey,
    /// Never published: signs the "wrong signature" and "rotated" tokens.
    rsa_other: RsaKey,
    ec: EcKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: rsa_key("rsa-1"),
        rsa_other: rsa_key("rsa-2"),
        ec: ec_key("ec-1"),
    })
}

/// A JWKS served from memory that counts its fetches and can be rotated.
#[derive(Default)]
struct CountingJwks {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
}

impl CountingJwks {
    fn with(keys: Vec<Value>) -> Arc<Self> {
        Arc::new(Self {
            keys: Mutex::new(keys),
            fetches: AtomicUsize::new(0),
        })
    }
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JwksSource for CountingJwks {
    async fn fetch(&self) -> Result<Vec<Jwk>, OidcError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let body = json!({ "keys": *self.keys.lock().unwrap() }).to_string();
        parse_jwks(body.as_bytes())
    }
}

fn config(tenant: &str, audience: &str) -> OidcProviderConfig {
    OidcProviderConfig {
        tenant: tenant.into(),
        issuer: ISSUER.into(),
        audience: audience.into(),
        jwks_uri: None,
        leeway_secs: 60,
        jwks_refresh_secs: 30,
    }
}

/// The verifier for tenant `acme` with the published RSA and EC keys.
fn verifier() -> (OidcVerifier, Arc<CountingJwks>) {
    let k = keys();
    let jwks = CountingJwks::with(vec![k.rsa.jwk.clone(), k.ec.jwk.clone()]);
    let source: Arc<dyn JwksSource> = jwks.clone();
    let verifier = OidcVerifier::with_sources(vec![(config("acme", AUDIENCE), source)]).unwrap();
    (verifier, jwks)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice@idp",
        "iat": now(), "exp": now() + 300,
    })
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, "rsa-1", &keys().rsa.encoding, claims)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// A compact JWT with any header, unsigned (the signature part is given).
fn forged(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

// ------------------------------------------------------------- accepted

#[tokio::test]
async fn an_rs256_token_of_the_tenants_provider_names_tenant_and_subject() {
    // Given the provider of tenant acme and a token signed with its RSA key
    let (verifier, jwks) = verifier();
    let token = rs256(&claims());

    // When it is verified
    let identity = verifier.verify_detailed(&token).await.unwrap();

    // Then it names acme's provider and the subject; keys were fetched once
    assert_eq!(identity.tenant.as_str(), "acme");
    assert_eq!(identity.issuer, ISSUER);
    assert_eq!(identity.subject, "alice@idp");
    assert_eq!(identity.verified_email, None);
    assert_eq!(jwks.fetches(), 1);

    // And a second token costs no further fetch (the keys are cached)
    verifier.verify_detailed(&token).await.unwrap();
    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test]
async fn an_es256_token_signed_with_the_p256_key_is_accepted() {
    // Given a token signed with the provider's P-256 key
    let (verifier, _) = verifier();
    let token = sign(Algorithm::ES256, "ec-1", &keys().ec.encoding, &claims());

    // When it is verified, Then it is accepted
    let identity = verifier.verify_detailed(&token).await.unwrap();
    assert_eq!(identity.subject, "alice@idp");
}

#[tokio::test]
async fn an_email_counts_only_when_the_provider_verified_it() {
    let (verifier, _) = verifier();
    let email = |verified: Value| {
        rs256(&with(
            with(claims(), "email", json!("alice@acme.example")),
            "email_verified",
            verified,
        ))
    };

    // Given tokens with an email marked verified, unverified, or as a string
    // When they are verified
    let verified = verifier.verify_detailed(&email(json!(true))).await.unwrap();
    let unverified = verifier
        .verify_detailed(&email(json!(false)))
        .await
        .unwrap();
    let stringly = verifier
        .verify_detailed(&email(json!("true")))
        .await
        .unwrap();

    // Then only the JSON `true` yields an email
    assert_eq!(
        verified.verified_email.map(|e| e.as_str().to_owned()),
        Some("alice@acme.example".to_owned())
    );
    assert_eq!(unverified.verified_email, None);
    assert_eq!(stringly.verified_email, None);
}

#[tokio::test]
async fn a_token_just_past_exp_within_the_leeway_is_accepted() {
    // Given a token that expired 10 s ago, with 60 s of leeway
    let (verifier, _) = verifier();
    let token = rs256(&with(claims(), "exp", json!(now() - 10)));

    // When it is verified, Then clock skew is forgiven
    assert!(verifier.verify_detailed(&token).await.is_ok());
}

// ------------------------------------------------------------- refused

async fn refused(token: &str) -> OidcError {
    let (verifier, _) = verifier();
    let detailed = verifier.verify_detailed(token).await.unwrap_err();
    // Through the port every refusal is a bare TokenError.
    let port = ExternalTokenVerifier::verify(&verifier, token)
        .await
        .unwrap_err();
    let expected = match detailed {
        OidcError::Expired => TokenError::Expired,
        OidcError::Unavailable(_) => TokenError::Unavailable,
        _ => TokenError::Invalid,
    };
    assert_eq!(port, expected);
    detailed
}

#[tokio::test]
async fn a_token_of_an_unconfigured_issuer_is_refused() {
    // Given a token signed with the right key but another issuer
    let token = rs256(&with(claims(), "iss", json!("https://evil.example")));
    // When verified, Then no provider takes it
    assert_eq!(refused(&token).await, OidcError::UnknownIssuer);
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let token = rs256(&with(claims(), "aud", json!("another-api")));
    assert_eq!(refused(&token).await, OidcError::WrongAudience);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    // Given a token expired beyond the 60 s leeway
    let token = rs256(&with(claims(), "exp", json!(now() - 120)));
    assert_eq!(refused(&token).await, OidcError::Expired);
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    // Given a token whose nbf lies beyond the leeway in the future
    let token = rs256(&with(claims(), "nbf", json!(now() + 120)));
    assert_eq!(refused(&token).await, OidcError::NotYetValid);
}

#[tokio::test]
async fn alg_none_is_refused() {
    // Given an unsigned token naming a published kid
    let token = forged(
        &json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}),
        &claims(),
        "",
    );
    assert_eq!(refused(&token).await, OidcError::DisallowedAlgorithm);
}

#[tokio::test]
async fn hs256_signed_with_the_public_rsa_key_is_refused() {
    // Given the classic key confusion: HMAC keyed with the public key bytes
    let token = sign(
        Algorithm::HS256,
        "rsa-1",
        &EncodingKey::from_secret(&keys().rsa.public_bytes),
        &claims(),
    );
    assert_eq!(refused(&token).await, OidcError::DisallowedAlgorithm);
}

#[tokio::test]
async fn an_es256_header_on_an_rsa_kid_is_refused() {
    // Given a token claiming ES256 but pointing at the RSA key: the key's
    // type decides the algorithm, never the token
    let token = sign(Algorithm::ES256, "rsa-1", &keys().ec.encoding, &claims());
    assert_eq!(refused(&token).await, OidcError::AlgorithmMismatch);
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    // Given a token with a published kid, signed by an unpublished key
    let token = sign(
        Algorithm::RS256,
        "rsa-1",
        &keys().rsa_other.encoding,
        &claims(),
    );
    assert_eq!(refused(&token).await, OidcError::BadSignature);
}

#[tokio::test]
async fn tokens_missing_sub_exp_or_aud_are_refused() {
    for claim in ["sub", "exp", "aud"] {
        // Given a valid token without one required claim
        let token = rs256(&without(claims(), claim));
        // When verified, Then it is refused for the missing claim
        assert_eq!(refused(&token).await, OidcError::MissingClaim, "{claim}");
    }
    // And an issuer-less token finds no provider at all
    let token = rs256(&without(claims(), "iss"));
    assert_eq!(refused(&token).await, OidcError::MissingClaim);
}

#[tokio::test]
async fn a_token_without_kid_is_refused() {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let token = jsonwebtoken::encode(&header, &claims(), &keys().rsa.encoding).unwrap();
    assert_eq!(refused(&token).await, OidcError::MissingKid);
}

#[tokio::test]
async fn an_oversized_token_is_refused_before_parsing() {
    // Given a token padded beyond the limit with a huge claim
    let token = rs256(&with(claims(), "pad", json!("x".repeat(MAX_TOKEN_LEN))));
    assert!(token.len() > MAX_TOKEN_LEN);
    assert_eq!(refused(&token).await, OidcError::TooLarge);
}

#[tokio::test]
async fn garbage_is_refused_as_malformed() {
    assert_eq!(refused("not.a.jwt").await, OidcError::Malformed);
    assert_eq!(refused("").await, OidcError::Malformed);
}

// ------------------------------------------------------- key rotation

#[tokio::test]
async fn an_unknown_kid_triggers_one_refresh_then_is_rate_limited() {
    // Given a verifier whose keys are loaded
    let (verifier, jwks) = verifier();
    verifier.verify_detailed(&rs256(&claims())).await.unwrap();
    assert_eq!(jwks.fetches(), 1);

    // When a token with an unknown kid arrives
    let unknown = sign(
        Algorithm::RS256,
        "rsa-2",
        &keys().rsa_other.encoding,
        &claims(),
    );
    let first = verifier.verify_detailed(&unknown).await;

    // Then the keys are fetched once more, and the token is still refused
    assert_eq!(first.unwrap_err(), OidcError::UnknownKid);
    assert_eq!(jwks.fetches(), 2);

    // When more unknown kids follow within the refresh interval
    for _ in 0..5 {
        let again = verifier.verify_detailed(&unknown).await;
        assert_eq!(again.unwrap_err(), OidcError::UnknownKid);
    }
    // Then no further fetch happened
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_share_one_refresh() {
    // Given a verifier whose keys are loaded
    let (verifier, jwks) = verifier();
    verifier.verify_detailed(&rs256(&claims())).await.unwrap();
    let verifier = Arc::new(verifier);

    // When twenty requests with an unknown kid arrive at once
    let unknown = sign(
        Algorithm::RS256,
        "rsa-2",
        &keys().rsa_other.encoding,
        &claims(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (verifier, token) = (verifier.clone(), unknown.clone());
        tasks.spawn(async move { verifier.verify_detailed(&token).await });
    }
    while let Some(result) = tasks.join_next().await {
        // Then each is refused
        assert_eq!(result.unwrap().unwrap_err(), OidcError::UnknownKid);
    }
    // And the provider was asked once more, not twenty times
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_the_unknown_kid_refresh() {
    // Given a verifier with the old keys loaded
    let (verifier, jwks) = verifier();
    verifier.verify_detailed(&rs256(&claims())).await.unwrap();

    // When the provider publishes a new key and signs with it
    jwks.keys.lock().unwrap().push(keys().rsa_other.jwk.clone());
    let rotated = sign(
        Algorithm::RS256,
        "rsa-2",
        &keys().rsa_other.encoding,
        &claims(),
    );

    // Then the first token with the new kid is accepted after one refresh
    let identity = verifier.verify_detailed(&rotated).await.unwrap();
    assert_eq!(identity.subject, "alice@idp");
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn a_symmetric_key_in_the_jwks_is_never_used() {
    // Given a provider whose JWKS also lists an `oct` key
    let secret = b"a-shared-secret-of-32-bytes-or-more!!";
    let oct = json!({"kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode(secret)});
    let jwks = CountingJwks::with(vec![oct, keys().rsa.jwk.clone()]);
    let source: Arc<dyn JwksSource> = jwks.clone();
    let verifier = OidcVerifier::with_sources(vec![(config("acme", AUDIENCE), source)]).unwrap();

    // When a token names it (as RS256, so the alg check passes)
    let hs = sign(
        Algorithm::HS256,
        "hmac",
        &EncodingKey::from_secret(secret),
        &claims(),
    );
    let mut parts: Vec<&str> = hs.split('.').collect();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "hmac"}).to_string());
    parts[0] = &header;
    let token = parts.join(".");

    // Then it is unknown: the key set holds RSA and P-256 keys only
    let err = verifier.verify_detailed(&token).await.unwrap_err();
    assert_eq!(err, OidcError::UnknownKid);
    // And the RSA key beside it still works
    assert!(verifier.verify_detailed(&rs256(&claims())).await.is_ok());
}

// ------------------------------------------------ tenants and config

#[tokio::test]
async fn one_issuer_serves_two_tenants_by_audience_and_overlap_is_refused() {
    // Given one provider configured for acme (aud "hearth") and for
    // globex (aud "hearth-globex")
    let k = keys();
    let jwks = CountingJwks::with(vec![k.rsa.jwk.clone()]);
    let source: Arc<dyn JwksSource> = jwks.clone();
    let verifier = OidcVerifier::with_sources(vec![
        (config("acme", AUDIENCE), source.clone()),
        (config("globex", "hearth-globex"), source),
    ])
    .unwrap();

    // When a token for globex's audience is verified
    let globex = rs256(&with(claims(), "aud", json!("hearth-globex")));
    let identity = verifier.verify_detailed(&globex).await.unwrap();

    // Then it belongs to globex, not acme
    assert_eq!(identity.tenant.as_str(), "globex");

    // When a token names both audiences
    let both = rs256(&with(claims(), "aud", json!([AUDIENCE, "hearth-globex"])));
    // Then no tenant gets it
    assert_eq!(
        verifier.verify_detailed(&both).await.unwrap_err(),
        OidcError::Ambiguous
    );
}

#[test]
fn config_refusals_are_typed() {
    let source = || -> Arc<dyn JwksSource> { CountingJwks::with(vec![]) };
    // Given the same issuer and audience for two tenants
    let dup = OidcVerifier::with_sources(vec![
        (config("acme", AUDIENCE), source()),
        (config("globex", AUDIENCE), source()),
    ]);
    assert!(matches!(dup, Err(OidcSetupError::Duplicate { .. })));

    // Given a tenant that is no slug, or an absurd leeway
    let bad_tenant = OidcVerifier::with_sources(vec![(config("Not A Slug!", AUDIENCE), source())]);
    assert!(matches!(bad_tenant, Err(OidcSetupError::Tenant(_))));
    let mut lenient = config("acme", AUDIENCE);
    lenient.leeway_secs = 3600;
    let lenient = OidcVerifier::with_sources(vec![(lenient, source())]);
    assert_eq!(lenient.unwrap_err(), OidcSetupError::Leeway(3600));

    // Given keys over plain HTTP off loopback
    let mut plain = config("acme", AUDIENCE);
    plain.issuer = "http://idp.example".into();
    assert!(matches!(
        OidcVerifier::new(vec![plain]),
        Err(OidcSetupError::Url(_))
    ));
    // But loopback HTTP (a provider beside Hearth) is fine
    let mut local = config("acme", AUDIENCE);
    local.issuer = "http://127.0.0.1:4444".into();
    assert!(OidcVerifier::new(vec![local]).is_ok());
}

// ------------------------------------------------ over HTTP (loopback)

/// A throwaway HTTP/1.1 server on loopback, on a plain thread: its
/// discovery document names itself as issuer and its `/jwks` as key URL,
/// where it serves `jwks`. Returns its base URL and a request counter.
fn serve_provider(jwks: String, discovered_issuer: Option<&str>) -> (String, Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes = [
        (
            "/.well-known/openid-configuration".to_owned(),
            json!({
                "issuer": discovered_issuer.unwrap_or(&base),
                "jwks_uri": format!("{base}/jwks"),
            })
            .to_string(),
        ),
        ("/jwks".to_owned(), jwks),
    ];
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
            let (status, body) = routes
                .iter()
                .find(|(p, _)| *p == path)
                .map_or(("404 Not Found", String::new()), |(_, b)| {
                    ("200 OK", b.clone())
                });
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, hits)
}

fn http_verifier(issuer: &str) -> OidcVerifier {
    let mut config = config("acme", AUDIENCE);
    config.issuer = issuer.to_owned();
    OidcVerifier::new(vec![config]).unwrap()
}

fn jwks_document() -> String {
    json!({ "keys": [keys().rsa.jwk.clone()] }).to_string()
}

#[tokio::test]
async fn keys_are_discovered_and_fetched_over_http_once() {
    // Given a provider on loopback serving discovery and its JWKS
    let (base, hits) = serve_provider(jwks_document(), None);
    let verifier = http_verifier(&base);
    let token = rs256(&with(claims(), "iss", json!(base)));

    // When two tokens are verified
    let first = verifier.verify_detailed(&token).await;
    let second = verifier.verify_detailed(&token).await;

    // Then both are accepted, and the provider saw two requests in all
    // (discovery and keys), not four
    assert_eq!(first.unwrap().subject, "alice@idp");
    assert!(second.is_ok());
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_oversized_jwks_is_refused_as_unavailable() {
    // Given a provider whose JWKS document is larger than the cap
    let padding = "x".repeat(hearth_auth::oidc::MAX_DOCUMENT_LEN);
    let huge = json!({ "keys": [keys().rsa.jwk.clone()], "pad": padding }).to_string();
    let (base, _) = serve_provider(huge, None);
    let verifier = http_verifier(&base);
    let token = rs256(&with(claims(), "iss", json!(base)));

    // When a token is verified
    let detailed = verifier.verify_detailed(&token).await.unwrap_err();
    let port = ExternalTokenVerifier::verify(&verifier, &token)
        .await
        .unwrap_err();

    // Then the keys are unavailable (an outage, not the caller's fault)
    assert!(
        matches!(detailed, OidcError::Unavailable(_)),
        "{detailed:?}"
    );
    assert_eq!(port, TokenError::Unavailable);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_not_trusted() {
    // Given a provider whose discovery document claims to be someone else
    let (base, _) = serve_provider(jwks_document(), Some("https://someone-else.example"));
    let verifier = http_verifier(&base);
    let token = rs256(&with(claims(), "iss", json!(base)));

    // When a token is verified, Then its keys are never used
    let err = verifier.verify_detailed(&token).await.unwrap_err();
    assert!(matches!(err, OidcError::Unavailable(_)), "{err:?}");
}
