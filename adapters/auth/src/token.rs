//! The [`TokenService`] port for local accounts: HS256 JWTs bound to one
//! tenant, and the on-disk signing secret of the embedded deployment.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use hearth_domain::ids::{SessionFamily, TenantId, UserId};
use hearth_domain::ports::{TokenClaims, TokenError, TokenService};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// HS256 keys shorter than the hash output make brute force cheaper than it
/// should be (RFC 7518, 3.2).
pub const MIN_SECRET_LEN: usize = 32;
/// Length of a secret made by [`load_or_create_secret`].
const NEW_SECRET_LEN: usize = 64;
/// File name of the secret inside the data directory.
pub const SECRET_FILE: &str = "token.secret";
/// Issuer and audience: tokens of other systems sharing a secret by accident
/// are still refused.
const ISSUER: &str = "hearth";
const AUDIENCE: &str = "hearth";
/// How far in the future an `iat` may lie: clocks of replicas drift a little,
/// a token minted "later" than that was not minted by us now.
const IAT_LEEWAY_SECS: i64 = 60;

/// Why a token service could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenSetupError {
    #[error("the token secret has {len} bytes; at least {MIN_SECRET_LEN} are required")]
    SecretTooShort { len: usize },
    #[error("the token lifetime must be positive")]
    NonPositiveTtl,
}

/// The JWT body. Field names are the registered claim names plus `tid`.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    tid: String,
    iat: i64,
    exp: i64,
    iss: String,
    aud: String,
    /// Not set by `issue` (a replica whose clock lags would refuse fresh
    /// tokens); checked when present. Typed, so a malformed one is refused
    /// rather than skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    /// `iat` in milliseconds, so a logout and a login within one second
    /// are told apart. Must agree with `iat` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat_ms: Option<i64>,
    /// The refresh-token family (session) the token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// Issues and verifies HS256 tokens with one shared secret.
pub struct JwtTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("JwtTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl JwtTokens {
    /// Refuses secrets shorter than [`MIN_SECRET_LEN`] and non-positive lifetimes.
    pub fn new(secret: &[u8], ttl: Duration) -> Result<Self, TokenSetupError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenSetupError::SecretTooShort { len: secret.len() });
        }
        if ttl <= Duration::zero() {
            return Err(TokenSetupError::NonPositiveTtl);
        }
        // Only HS256 is accepted, whatever the header claims: this is what
        // shuts out `alg: none` and algorithm-confusion tricks.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // A token with `nbf` is refused before that instant.
        validation.validate_nbf = true;
        // One issuer signs and checks, so `expires_at` is exact: no leeway.
        validation.leeway = 0;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        })
    }

    fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }
}

impl TokenService for JwtTokens {
    fn issue(
        &self,
        user: UserId,
        tenant: TenantId,
        session: Option<SessionFamily>,
    ) -> Result<(String, TokenClaims), anyhow::Error> {
        let now_ms = Utc::now().timestamp_millis();
        let now = now_ms.div_euclid(1000);
        let issued_at = DateTime::from_timestamp_millis(now_ms)
            .ok_or_else(|| anyhow::anyhow!("token issue time {now_ms} is out of range"))?;
        let exp = now.saturating_add(self.ttl.num_seconds().max(1));
        // JWT times are whole seconds; report exactly what `verify` will.
        let expires_at = DateTime::from_timestamp(exp, 0)
            .ok_or_else(|| anyhow::anyhow!("token expiry {exp} is out of range"))?;
        let claims = Claims {
            sub: user.to_string(),
            tid: tenant.to_string(),
            iat: now,
            exp,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            nbf: None,
            iat_ms: Some(now_ms),
            sid: session.map(|s| s.to_string()),
        };
        let token = self
            .sign(&claims)
            .map_err(|err| anyhow::anyhow!("could not sign the token: {err}"))?;
        Ok((
            token,
            TokenClaims {
                user_id: user,
                tenant_id: tenant,
                expires_at,
                issued_at,
                session,
            },
        ))
    }

    fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        // The signature is checked before the claims, so a forged token is
        // `Invalid`, never `Expired`.
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        // jsonwebtoken does not look at `iat`. One from the future means the
        // key signed something it should not have (or a clock is far off):
        // either way not a token to trust.
        if claims.iat > Utc::now().timestamp().saturating_add(IAT_LEEWAY_SECS) {
            return Err(TokenError::Invalid);
        }
        let iat_ms = match claims.iat_ms {
            Some(ms) if ms.div_euclid(1000) == claims.iat => ms,
            Some(_) => return Err(TokenError::Invalid),
            None => claims.iat.saturating_mul(1000),
        };
        Ok(TokenClaims {
            issued_at: DateTime::from_timestamp_millis(iat_ms).ok_or(TokenError::Invalid)?,
            user_id: claims.sub.parse().map_err(|_| TokenError::Invalid)?,
            tenant_id: claims.tid.parse().map_err(|_| TokenError::Invalid)?,
            expires_at: DateTime::from_timestamp(claims.exp, 0).ok_or(TokenError::Invalid)?,
            session: claims
                .sid
                .map(|sid| sid.parse().map_err(|_| TokenError::Invalid))
                .transpose()?,
        })
    }
}

/// Reads the signing secret from `<dir>/token.secret`, or creates one of 64
/// random bytes there (mode 0600), so tokens survive restarts of the
/// embedded deployment.
pub fn load_or_create_secret(dir: &Path) -> io::Result<Vec<u8>> {
    let path = dir.join(SECRET_FILE);
    match fs::read(&path) {
        Ok(secret) => return checked(secret),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    fs::create_dir_all(dir)?;
    let mut secret = vec![0u8; NEW_SECRET_LEN];
    OsRng.fill_bytes(&mut secret);
    let mut options = OpenOptions::new();
    // `create_new` so two processes starting at once never overwrite each
    // other's secret: the loser reads the winner's.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(&secret)?;
            file.sync_all()?;
            Ok(secret)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let mut existing = Vec::new();
            fs::File::open(&path)?.read_to_end(&mut existing)?;
            checked(existing)
        }
        Err(err) => Err(err),
    }
}

/// A secret file that was truncated or hand-edited must not weaken tokens.
fn checked(secret: Vec<u8>) -> io::Result<Vec<u8>> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{SECRET_FILE} holds {} bytes; at least {MIN_SECRET_LEN} are required",
                secret.len()
            ),
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

    fn tokens() -> JwtTokens {
        JwtTokens::new(SECRET, Duration::hours(1)).expect("a long enough secret")
    }

    fn claims(sub: String, tid: String, exp: i64) -> Claims {
        Claims {
            sub,
            tid,
            iat: Utc::now().timestamp(),
            exp,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            nbf: None,
            iat_ms: None,
            sid: None,
        }
    }

    fn later() -> i64 {
        Utc::now().timestamp() + 600
    }

    #[test]
    fn issued_tokens_verify_to_the_same_claims() {
        let tokens = tokens();
        let (user, tenant) = (UserId::new(), TenantId::new());
        let (token, issued) = tokens.issue(user, tenant, None).expect("issuing works");
        assert_eq!(issued.user_id, user);
        assert_eq!(issued.tenant_id, tenant);
        assert!(issued.expires_at > Utc::now() + Duration::minutes(59));
        assert_eq!(tokens.verify(&token), Ok(issued));
    }

    #[test]
    fn a_tampered_token_is_invalid() {
        let tokens = tokens();
        let (token, _) = tokens
            .issue(UserId::new(), TenantId::new(), None)
            .expect("issuing works");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        // Swap the body for one naming another tenant, keep the signature.
        let forged_body = serde_json::to_vec(&claims(
            UserId::new().to_string(),
            TenantId::new().to_string(),
            later(),
        ))
        .expect("claims serialise");
        let forged = format!("{}.{}.{}", parts[0], b64(&forged_body), parts[2]);
        assert_eq!(tokens.verify(&forged), Err(TokenError::Invalid));
        // Flip one signature character.
        let mut sig = parts[2].to_owned();
        let last = if sig.ends_with('A') { "B" } else { "A" };
        sig.replace_range(sig.len() - 1.., last);
        let flipped = format!("{}.{}.{}", parts[0], parts[1], sig);
        assert_eq!(tokens.verify(&flipped), Err(TokenError::Invalid));
        assert_eq!(tokens.verify("not.a.token"), Err(TokenError::Invalid));
        assert_eq!(tokens.verify(""), Err(TokenError::Invalid));
    }

    #[test]
    fn an_expired_token_is_expired_but_a_forged_expired_one_is_invalid() {
        let tokens = tokens();
        let past = Utc::now().timestamp() - 10;
        let expired = tokens
            .sign(&claims(
                UserId::new().to_string(),
                TenantId::new().to_string(),
                past,
            ))
            .expect("signing works");
        assert_eq!(tokens.verify(&expired), Err(TokenError::Expired));

        let other = JwtTokens::new(&[7u8; 32], Duration::hours(1)).expect("a long enough secret");
        let forged = other
            .sign(&claims(
                UserId::new().to_string(),
                TenantId::new().to_string(),
                past,
            ))
            .expect("signing works");
        assert_eq!(tokens.verify(&forged), Err(TokenError::Invalid));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let tokens = tokens();
        let body = serde_json::to_vec(&claims(
            UserId::new().to_string(),
            TenantId::new().to_string(),
            later(),
        ))
        .expect("claims serialise");
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None","typ":"JWT"}"#,
            r#"{"typ":"JWT"}"#,
        ] {
            let unsigned = format!("{}.{}.", b64(header.as_bytes()), b64(&body));
            assert_eq!(
                tokens.verify(&unsigned),
                Err(TokenError::Invalid),
                "{header}"
            );
        }
        // A correctly keyed HS512 token is still refused: only HS256 is ours.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(
                UserId::new().to_string(),
                TenantId::new().to_string(),
                later(),
            ),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("signing works");
        assert_eq!(tokens.verify(&hs512), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_from_another_secret_is_invalid() {
        let ours = tokens();
        let theirs = JwtTokens::new(&[42u8; 64], Duration::hours(1)).expect("a long enough secret");
        let (token, _) = theirs
            .issue(UserId::new(), TenantId::new(), None)
            .expect("issuing works");
        assert_eq!(ours.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn wrong_issuer_audience_or_ids_are_invalid() {
        let tokens = tokens();
        let (user, tenant) = (UserId::new().to_string(), TenantId::new().to_string());
        let mut wrong_iss = claims(user.clone(), tenant.clone(), later());
        wrong_iss.iss = "someone-else".to_owned();
        let mut wrong_aud = claims(user.clone(), tenant.clone(), later());
        wrong_aud.aud = "someone-else".to_owned();
        let bad_user = claims("admin".to_owned(), tenant.clone(), later());
        let bad_tenant = claims(user, "acme".to_owned(), later());
        for claims in [wrong_iss, wrong_aud, bad_user, bad_tenant] {
            let token = tokens.sign(&claims).expect("signing works");
            assert_eq!(
                tokens.verify(&token),
                Err(TokenError::Invalid),
                "{claims:?}"
            );
        }
    }

    #[test]
    fn a_token_not_yet_valid_is_invalid() {
        // Given tokens signed with our own secret, with `nbf` set
        let tokens = tokens();
        let now = Utc::now().timestamp();
        let with_nbf = |nbf: i64| {
            let mut c = claims(
                UserId::new().to_string(),
                TenantId::new().to_string(),
                later(),
            );
            c.nbf = Some(nbf);
            tokens.sign(&c).expect("signing works")
        };
        // When `nbf` lies ahead (by a minute; no leeway), Then it is refused
        assert_eq!(
            tokens.verify(&with_nbf(now + 300)),
            Err(TokenError::Invalid)
        );
        assert_eq!(tokens.verify(&with_nbf(now + 60)), Err(TokenError::Invalid));
        // And one already past verifies
        assert!(tokens.verify(&with_nbf(now - 10)).is_ok());
        // And a malformed `nbf` is refused, not skipped
        let mut body = serde_json::to_value(claims(
            UserId::new().to_string(),
            TenantId::new().to_string(),
            later(),
        ))
        .expect("claims serialise");
        body["nbf"] = serde_json::json!("never");
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &body,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("signing works");
        assert_eq!(tokens.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_issued_in_the_future_is_invalid() {
        // Given tokens signed with our own secret, claiming to be issued later
        let tokens = tokens();
        let now = Utc::now().timestamp();
        let issued_at = |iat: i64| {
            let mut c = claims(
                UserId::new().to_string(),
                TenantId::new().to_string(),
                later(),
            );
            c.iat = iat;
            tokens.sign(&c).expect("signing works")
        };
        // When `iat` is well beyond the leeway, Then it is refused
        assert_eq!(
            tokens.verify(&issued_at(now + IAT_LEEWAY_SECS + 120)),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            tokens.verify(&issued_at(now + 86_400)),
            Err(TokenError::Invalid)
        );
        // And small clock skew within the leeway, or the past, is accepted
        assert!(tokens.verify(&issued_at(now + 10)).is_ok());
        assert!(tokens.verify(&issued_at(now - 3600)).is_ok());
    }

    #[test]
    fn issued_tokens_carry_no_nbf() {
        // So a replica whose clock lags a little still accepts a fresh token.
        let tokens = tokens();
        let (token, _) = tokens
            .issue(UserId::new(), TenantId::new(), None)
            .expect("issuing works");
        let body = token.split('.').nth(1).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.decode(body).expect("base64 body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert!(body.get("nbf").is_none(), "{body}");
        assert!(body["iat"]
            .as_i64()
            .is_some_and(|iat| iat <= Utc::now().timestamp()));
    }

    #[test]
    fn short_secrets_and_empty_lifetimes_are_refused() {
        assert_eq!(
            JwtTokens::new(&[1u8; 31], Duration::hours(1)).err(),
            Some(TokenSetupError::SecretTooShort { len: 31 })
        );
        assert_eq!(
            JwtTokens::new(&[1u8; 32], Duration::zero()).err(),
            Some(TokenSetupError::NonPositiveTtl)
        );
    }

    #[test]
    fn the_secret_is_created_once_private_and_then_reused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let first = load_or_create_secret(dir.path()).expect("created");
        assert_eq!(first.len(), NEW_SECRET_LEN);
        assert_eq!(load_or_create_secret(dir.path()).expect("read back"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SECRET_FILE))
                .expect("the file exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_truncated_secret_file_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        fs::write(dir.path().join(SECRET_FILE), b"short").expect("written");
        let err = load_or_create_secret(dir.path()).expect_err("too short");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
