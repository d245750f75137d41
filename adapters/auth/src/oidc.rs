//! OIDC bearer tokens from a tenant's own identity provider: the
//! [`ExternalTokenVerifier`] port, checking signature (RS256/ES256 keys of
//! the provider's JWKS, by `kid`), issuer, audience and `exp`/`nbf`.
//!
//! Why it is strict where it is:
//! - the algorithm is taken from the *key* (its `kty`/curve), never from the
//!   token, and the token's `alg` must equal it: `none`, HS* and HS/RS key
//!   confusion fail before any signature check;
//! - a `kid` that is not in the cached key set triggers one JWKS refresh,
//!   at most once per [`OidcProviderConfig::jwks_refresh_secs`] per
//!   provider, so a flood of made-up `kid`s cannot turn Hearth into a
//!   traffic amplifier against the provider;
//! - tokens and JWKS documents are size-capped, fetches time out.
//!
//! Which Hearth user a verified token stands for is the domain's decision
//! (`AuthService`); this adapter only says which tenant's provider vouched
//! for which subject (and, if the provider verified it, which email).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use hearth_domain::model::{EmailAddress, TenantSlug};
use hearth_domain::ports::{ExternalIdentity, ExternalTokenVerifier, TokenError};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Longest bearer token looked at; real access tokens are a few KiB at most,
/// and nothing is decoded before this check.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Largest discovery or JWKS document read from a provider.
pub const MAX_DOCUMENT_LEN: usize = 256 * 1024;
/// How long one discovery or JWKS request may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again on the next use, so a key the
/// provider withdrew stops working without waiting for an unknown `kid`.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

fn default_leeway() -> u64 {
    60
}

fn default_refresh() -> u64 {
    30
}

/// One tenant's identity provider (`[[auth.oidc]]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Slug of the tenant whose users this provider vouches for.
    pub tenant: String,
    /// Exactly the `iss` of its tokens (and the discovery base URL).
    pub issuer: String,
    /// The `aud` a token must carry to be meant for Hearth.
    pub audience: String,
    /// Where the keys are; discovered from
    /// `{issuer}/.well-known/openid-configuration` when absent.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Least time between two refreshes triggered by unknown `kid`s.
    #[serde(default = "default_refresh")]
    pub jwks_refresh_secs: u64,
}

/// Why a provider list was refused at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcSetupError {
    #[error("auth.oidc: tenant {0:?} is not a valid tenant slug")]
    Tenant(String),
    #[error("auth.oidc: {0}")]
    Url(String),
    #[error("auth.oidc: leeway_secs {0} is more than 300 seconds")]
    Leeway(u64),
    /// Two tenants accepting the same tokens would make a token's tenant a
    /// guess: refused.
    #[error("auth.oidc: issuer {issuer} with audience {audience} is configured twice")]
    Duplicate { issuer: String, audience: String },
    #[error("auth.oidc: cannot build the HTTP client: {0}")]
    Client(String),
}

/// Why one token was refused. Callers outside this module see only
/// [`TokenError`]; the detail is for logs and tests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    #[error("token longer than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("algorithm not allowed (RS256 and ES256 only)")]
    DisallowedAlgorithm,
    #[error("token header has no kid")]
    MissingKid,
    #[error("no provider is configured for this issuer")]
    UnknownIssuer,
    #[error("the provider has no key with this kid")]
    UnknownKid,
    #[error("the token's algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("bad signature")]
    BadSignature,
    #[error("a required claim is missing or malformed")]
    MissingClaim,
    #[error("the token is accepted by more than one tenant's provider")]
    Ambiguous,
    #[error("the provider's keys are unavailable: {0}")]
    Unavailable(String),
}

impl From<OidcError> for TokenError {
    fn from(err: OidcError) -> Self {
        match err {
            OidcError::Expired => TokenError::Expired,
            OidcError::Unavailable(_) => TokenError::Unavailable,
            _ => TokenError::Invalid,
        }
    }
}

/// Where a provider's keys come from (HTTP in production, a counter in
/// tests).
#[async_trait]
pub trait JwksSource: Send + Sync + 'static {
    async fn fetch(&self) -> Result<Vec<Jwk>, OidcError>;
}

/// Fetches the JWKS over HTTP, discovering its URL once when not configured.
pub struct HttpJwks {
    client: reqwest::Client,
    issuer: String,
    configured: Option<String>,
    discovered: tokio::sync::Mutex<Option<String>>,
}

impl HttpJwks {
    pub fn new(issuer: &str, jwks_uri: Option<&str>) -> Result<Self, OidcSetupError> {
        check_url(issuer)?;
        if let Some(uri) = jwks_uri {
            check_url(uri)?;
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            // A redirect could lead off to plain HTTP; providers serve keys
            // where they say they do.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcSetupError::Client(e.to_string()))?;
        Ok(Self {
            client,
            issuer: issuer.trim_end_matches('/').to_owned(),
            configured: jwks_uri.map(str::to_owned),
            discovered: tokio::sync::Mutex::new(None),
        })
    }

    async fn jwks_uri(&self) -> Result<String, OidcError> {
        if let Some(uri) = &self.configured {
            return Ok(uri.clone());
        }
        let mut discovered = self.discovered.lock().await;
        if let Some(uri) = discovered.as_ref() {
            return Ok(uri.clone());
        }
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let body = get_capped(&self.client, &url).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Unavailable(format!("discovery document: {e}")))?;
        // OIDC Discovery 1.0, 4.3: the document must name the issuer it was
        // fetched for, or it is someone else's.
        if doc.issuer.trim_end_matches('/') != self.issuer {
            return Err(OidcError::Unavailable(
                "discovery document names another issuer".into(),
            ));
        }
        check_url(&doc.jwks_uri).map_err(|e| OidcError::Unavailable(e.to_string()))?;
        *discovered = Some(doc.jwks_uri.clone());
        Ok(doc.jwks_uri)
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<Vec<Jwk>, OidcError> {
        let uri = self.jwks_uri().await?;
        let body = get_capped(&self.client, &uri).await?;
        parse_jwks(&body)
    }
}

/// Parses a JWKS, keeping every key `jsonwebtoken` understands: one key of
/// an unknown type must not make the provider's other keys unusable.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, OidcError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body)
        .map_err(|e| OidcError::Unavailable(format!("JWKS document: {e}")))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .collect())
}

/// Keys are only fetched over TLS, or from loopback (a provider beside
/// Hearth, and tests).
fn check_url(url: &str) -> Result<(), OidcSetupError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| OidcSetupError::Url(format!("{url}: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(OidcSetupError::Url(format!(
            "{url}: only https (or http on loopback) is accepted"
        ))),
    }
}

/// GET with the size cap enforced while reading, not after.
async fn get_capped(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, OidcError> {
    let unavailable = |e: reqwest::Error| OidcError::Unavailable(e.without_url().to_string());
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(unavailable)?
        .error_for_status()
        .map_err(unavailable)?;
    let too_large = || OidcError::Unavailable(format!("document over {MAX_DOCUMENT_LEN} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > MAX_DOCUMENT_LEN as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
        if body.len().saturating_add(chunk.len()) > MAX_DOCUMENT_LEN {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A usable key: what it verifies with, and the one algorithm it allows.
#[derive(Clone)]
struct Key {
    decoding: DecodingKey,
    algorithm: Algorithm,
}

/// The algorithm a JWK can verify, from its type alone: RSA → RS256,
/// EC P-256 → ES256, anything else (symmetric `oct` keys above all) none.
fn usable_key(jwk: &Jwk) -> Option<(String, Key)> {
    let kid = jwk.common.key_id.clone()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let (algorithm, declared) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        _ => return None,
    };
    // A key published for another algorithm (RS512, PS256, ...) is not
    // used for RS256 just because its type fits.
    if jwk.common.key_algorithm.is_some_and(|a| a != declared) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some((
        kid,
        Key {
            decoding,
            algorithm,
        },
    ))
}

/// The keys as last fetched; cloned out (two `Arc`s) for each lookup.
#[derive(Clone, Default)]
struct Snapshot {
    keys: Arc<HashMap<String, Key>>,
    loaded_at: Option<Instant>,
}

impl Snapshot {
    fn fresh_key(&self, kid: &str, now: Instant) -> Option<Key> {
        let fresh = self
            .loaded_at
            .is_some_and(|t| now.duration_since(t) < KEYS_MAX_AGE);
        fresh.then(|| self.keys.get(kid).cloned()).flatten()
    }
}

struct Provider {
    config: OidcProviderConfig,
    tenant: TenantSlug,
    source: Arc<dyn JwksSource>,
    /// Read without waiting by every token with a known `kid`.
    current: std::sync::RwLock<Snapshot>,
    /// Held across a fetch, so concurrent requests with a new `kid` wait
    /// for one fetch instead of each starting their own. Holds the time of
    /// the last fetch that counts against the refresh rate limit.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    validation: Validation,
}

impl Provider {
    fn snapshot(&self) -> Snapshot {
        // A panicking writer cannot leave a half-written snapshot (it is
        // replaced whole), so a poisoned lock's value is still good.
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, snapshot: Snapshot) {
        match self.current.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }

    /// The key for `kid`, fetching the JWKS when none is loaded yet, when
    /// the loaded one is old, or (rate-limited) when `kid` is unknown.
    async fn key(&self, kid: &str) -> Result<Key, OidcError> {
        if let Some(key) = self.snapshot().fresh_key(kid, Instant::now()) {
            return Ok(key);
        }
        let mut last_refresh = self.refresh.lock().await;
        // Another request may have fetched while this one waited.
        let snapshot = self.snapshot();
        let now = Instant::now();
        if let Some(key) = snapshot.fresh_key(kid, now) {
            return Ok(key);
        }
        let interval = Duration::from_secs(self.config.jwks_refresh_secs);
        let may_refresh = last_refresh.is_none_or(|t| now.duration_since(t) >= interval);
        if !may_refresh {
            // Rate-limited: serve what is cached (even if old), else refuse.
            return match (snapshot.keys.get(kid), snapshot.loaded_at) {
                (Some(key), _) => Ok(key.clone()),
                (None, Some(_)) => Err(OidcError::UnknownKid),
                (None, None) => Err(OidcError::Unavailable("retrying later".into())),
            };
        }
        let first_load = snapshot.loaded_at.is_none();
        // Counted before the fetch, so a failing provider is not hammered.
        *last_refresh = Some(now);
        match self.source.fetch().await {
            Ok(jwks) => {
                let keys: Arc<HashMap<String, Key>> =
                    Arc::new(jwks.iter().filter_map(usable_key).collect());
                tracing::debug!(
                    issuer = %self.config.issuer,
                    keys = keys.len(),
                    "OIDC keys loaded."
                );
                self.store(Snapshot {
                    keys: keys.clone(),
                    loaded_at: Some(Instant::now()),
                });
                // The first successful load is not a refresh: a key rotated
                // right after start is still picked up by one.
                if first_load {
                    *last_refresh = None;
                }
                keys.get(kid).cloned().ok_or(OidcError::UnknownKid)
            }
            Err(err) => {
                tracing::warn!(issuer = %self.config.issuer, %err, "OIDC keys could not be fetched.");
                // An old set still serves the keys it has.
                match (first_load, snapshot.keys.get(kid)) {
                    (true, _) => Err(err),
                    (false, Some(key)) => Ok(key.clone()),
                    (false, None) => Err(OidcError::UnknownKid),
                }
            }
        }
    }
}

/// The claims read from a verified token; the registered ones are checked
/// by `jsonwebtoken` itself.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    email: Option<String>,
    /// Some providers send `"true"`; only a JSON `true` counts.
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

/// Verifies tokens of every configured provider.
pub struct OidcVerifier {
    providers: Vec<Provider>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.providers.iter().map(|p| &p.config.issuer))
            .finish()
    }
}

impl OidcVerifier {
    /// Providers fetching their keys over HTTP.
    pub fn new(configs: Vec<OidcProviderConfig>) -> Result<Self, OidcSetupError> {
        let mut with_sources = Vec::with_capacity(configs.len());
        for config in configs {
            let source: Arc<dyn JwksSource> =
                Arc::new(HttpJwks::new(&config.issuer, config.jwks_uri.as_deref())?);
            with_sources.push((config, source));
        }
        Self::with_sources(with_sources)
    }

    /// Providers with the key sources given (tests count fetches this way).
    pub fn with_sources(
        configs: Vec<(OidcProviderConfig, Arc<dyn JwksSource>)>,
    ) -> Result<Self, OidcSetupError> {
        let mut providers: Vec<Provider> = Vec::with_capacity(configs.len());
        for (config, source) in configs {
            let tenant = TenantSlug::new(config.tenant.as_str())
                .map_err(|_| OidcSetupError::Tenant(config.tenant.clone()))?;
            if config.leeway_secs > 300 {
                return Err(OidcSetupError::Leeway(config.leeway_secs));
            }
            if providers
                .iter()
                .any(|p| p.config.issuer == config.issuer && p.config.audience == config.audience)
            {
                return Err(OidcSetupError::Duplicate {
                    issuer: config.issuer,
                    audience: config.audience,
                });
            }
            // The algorithm is replaced by the key's own for each token;
            // RS256 here is only a placeholder.
            let mut validation = Validation::new(Algorithm::RS256);
            validation.set_issuer(&[config.issuer.as_str()]);
            validation.set_audience(&[config.audience.as_str()]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.validate_nbf = true;
            validation.leeway = config.leeway_secs;
            providers.push(Provider {
                config,
                tenant,
                source,
                current: std::sync::RwLock::default(),
                refresh: tokio::sync::Mutex::new(None),
                validation,
            });
        }
        Ok(Self { providers })
    }

    /// Whether any provider is configured.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Verifies `token`, saying exactly why it was refused.
    pub async fn verify_detailed(&self, token: &str) -> Result<ExternalIdentity, OidcError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(OidcError::TooLarge);
        }
        // The raw `alg` first: `none` is not even a name `jsonwebtoken`
        // parses, and it must be refused as what it is.
        if !matches!(raw_alg(token)?.as_str(), "RS256" | "ES256") {
            return Err(OidcError::DisallowedAlgorithm);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| OidcError::Malformed)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(OidcError::DisallowedAlgorithm);
        }
        let kid = header.kid.ok_or(OidcError::MissingKid)?;
        // The issuer picks the providers to try; it is read unverified here
        // and verified with the signature below.
        let issuer = unverified_issuer(token)?;
        let mut accepted = None;
        let mut refusal = OidcError::UnknownIssuer;
        for provider in self.providers.iter().filter(|p| p.config.issuer == issuer) {
            match verify_with(provider, &kid, header.alg, token).await {
                Ok(identity) if accepted.is_none() => accepted = Some(identity),
                Ok(_) => return Err(OidcError::Ambiguous),
                // Same issuer, another tenant's audience: try the next one,
                // but report the most telling refusal.
                Err(OidcError::WrongAudience) if refusal != OidcError::UnknownIssuer => {}
                Err(err) => refusal = err,
            }
        }
        accepted.ok_or(refusal)
    }
}

async fn verify_with(
    provider: &Provider,
    kid: &str,
    alg: Algorithm,
    token: &str,
) -> Result<ExternalIdentity, OidcError> {
    let key = provider.key(kid).await?;
    if key.algorithm != alg {
        return Err(OidcError::AlgorithmMismatch);
    }
    let mut validation = provider.validation.clone();
    validation.algorithms = vec![key.algorithm];
    let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|e| {
        match e.kind() {
            ErrorKind::ExpiredSignature => OidcError::Expired,
            ErrorKind::ImmatureSignature => OidcError::NotYetValid,
            ErrorKind::InvalidAudience => OidcError::WrongAudience,
            ErrorKind::InvalidIssuer => OidcError::WrongIssuer,
            ErrorKind::InvalidSignature => OidcError::BadSignature,
            ErrorKind::InvalidAlgorithm => OidcError::AlgorithmMismatch,
            ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => OidcError::MissingClaim,
            _ => OidcError::Malformed,
        }
    })?;
    let claims = data.claims;
    if claims.sub.is_empty() {
        return Err(OidcError::MissingClaim);
    }
    let verified_email = match (&claims.email, &claims.email_verified) {
        (Some(email), Some(serde_json::Value::Bool(true))) => EmailAddress::new(email).ok(),
        _ => None,
    };
    Ok(ExternalIdentity {
        tenant: provider.tenant.clone(),
        issuer: provider.config.issuer.clone(),
        subject: claims.sub,
        verified_email,
        expires_at: chrono::DateTime::from_timestamp(claims.exp, 0)
            .ok_or(OidcError::MissingClaim)?,
    })
}

/// One part of a compact JWT, base64url-decoded and parsed, unverified.
fn unverified_part<T: serde::de::DeserializeOwned>(token: &str, n: usize) -> Result<T, OidcError> {
    let part = token.split('.').nth(n).ok_or(OidcError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| OidcError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| OidcError::Malformed)
}

/// The header's `alg` as written.
fn raw_alg(token: &str) -> Result<String, OidcError> {
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    Ok(unverified_part::<Alg>(token, 0)?.alg)
}

/// The `iss` of a token whose signature is not checked yet.
fn unverified_issuer(token: &str) -> Result<String, OidcError> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    unverified_part::<Iss>(token, 1)?
        .iss
        .ok_or(OidcError::MissingClaim)
}

#[async_trait]
impl ExternalTokenVerifier for OidcVerifier {
    async fn verify(&self, token: &str) -> Result<ExternalIdentity, TokenError> {
        self.verify_detailed(token).await.map_err(|err| {
            tracing::debug!(%err, "OIDC token refused.");
            TokenError::from(err)
        })
    }
}
