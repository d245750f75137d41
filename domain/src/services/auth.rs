//! Login, tenant switching, token authentication, refresh-token rotation,
//! logout and `me`.
//!
//! A login opens a session family: a short-lived access token (bearer) and
//! an opaque refresh token, stored only as its hash. `refresh` retires the
//! presented refresh token and issues a new pair in the same family; a
//! retired token presented again means it was copied, so the whole family
//! is revoked (its access tokens included) and its holder must log in.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;

use std::sync::Arc;

use super::hashing::{HashingError, HashingPool};
use super::throttle::{LoginLimits, LoginThrottle};
use crate::error::DomainError;
use crate::ids::{SessionFamily, TenantId, UserId};
use crate::model::{
    EmailAddress, Membership, PasswordHash, RefreshSession, RefreshTokenHash, Role, Tenant,
    TenantSlug, User,
};
use crate::ports::{
    ExternalTokenVerifier, IdentityLinks, PasswordHasher, SessionRepository, TenantRepository,
    TokenClaims, TokenError, TokenService, TwoFactorRepository, UserRepository,
};
use crate::principal::Principal;

/// A freshly issued bearer token and the refresh token that renews it.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    /// Opaque; exchanged once for a new pair by `AuthService::refresh`.
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
    pub tenant: Tenant,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Error)]
pub enum LoginError {
    /// Unknown email, wrong password, or no membership in the asked tenant:
    /// deliberately indistinguishable.
    #[error("invalid email, password or tenant")]
    InvalidCredentials,
    /// A wrong, replayed or malformed second-factor code, or an unknown or
    /// expired challenge: deliberately indistinguishable.
    #[error("invalid or expired two-factor code or challenge")]
    InvalidCode,
    /// The password was right, but the account signs in with a second
    /// factor: only [`AuthService::begin_login`] can go on from here.
    #[error("a second factor is required")]
    SecondFactorRequired,
    /// Too many failed attempts for this account or from this address, or
    /// too many logins waiting for a password check: nothing was checked.
    #[error("too many login attempts; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// A store needed to check the credentials is down: nothing was checked.
    #[error("a store is unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<DomainError> for LoginError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::Internal(e) => LoginError::Internal(e),
            DomainError::Unavailable(e) => LoginError::Unavailable(e),
            DomainError::RateLimited { retry_after } => LoginError::RateLimited { retry_after },
            DomainError::Unauthenticated => LoginError::InvalidCode,
            other => LoginError::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

impl From<HashingError> for LoginError {
    fn from(err: HashingError) -> Self {
        match err {
            HashingError::Busy => LoginError::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            HashingError::Failed(e) => LoginError::Internal(e.into()),
        }
    }
}

impl From<crate::error::StoreError> for LoginError {
    fn from(err: crate::error::StoreError) -> Self {
        match err {
            crate::error::StoreError::Unavailable(e) => LoginError::Unavailable(e),
            other => LoginError::Internal(other.into()),
        }
    }
}

/// How far a login got: done, or waiting for a second factor.
#[derive(Debug, Clone)]
pub enum LoginStep {
    Session(Session),
    /// The password was right; `verifyTwoFactor` (kind `Verify`) or
    /// enrolment (kind `Enrol`) with the challenge finishes the login.
    TwoFactor(TwoFactorChallenge),
}

/// What the client must do before a login completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// Send a code of the enrolled authenticator (or a recovery code).
    Verify,
    /// The tenant requires two-factor login and the user has not enrolled:
    /// the challenge allows enrolling and confirming, nothing else.
    Enrol,
}

/// A half-done login, handed to the client once.
#[derive(Debug, Clone)]
pub struct TwoFactorChallenge {
    /// Opaque, 256 random bits; kept only as its hash.
    pub token: String,
    pub kind: ChallengeKind,
    pub expires_at: DateTime<Utc>,
}

/// A challenge as the server remembers it.
#[derive(Debug, Clone)]
pub(crate) struct PendingLogin {
    pub(crate) user_id: UserId,
    pub(crate) email: EmailAddress,
    pub(crate) tenant_id: TenantId,
    pub(crate) kind: ChallengeKind,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) failures: u32,
}

/// Pending second-factor logins by the hash of their challenge. In memory:
/// a challenge lives minutes, and a client that lands on another replica
/// logs in again (a shared store would lift this when scaling out).
pub(crate) struct Challenges {
    entries: moka::sync::Cache<RefreshTokenHash, PendingLogin>,
}

impl Default for Challenges {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(
                    u64::try_from(AuthService::CHALLENGE_TTL.num_seconds()).unwrap_or(300),
                ))
                .build(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MembershipView {
    pub tenant: Tenant,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct MeView {
    pub user: User,
    pub tenant: Tenant,
    pub role: Role,
    pub memberships: Vec<MembershipView>,
}

/// Login, tenant switching, token authentication and `me`.
#[derive(Clone)]
pub struct AuthService {
    tenants: Arc<dyn TenantRepository>,
    users: Arc<dyn UserRepository>,
    passwords: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenService>,
    sessions: Arc<dyn SessionRepository>,
    principals: Arc<PrincipalCache>,
    throttle: Arc<LoginThrottle>,
    hashing: HashingPool,
    two_factor: Arc<dyn TwoFactorRepository>,
    challenges: Arc<Challenges>,
    /// Tokens of tenants' own identity providers (OIDC); `None`: only
    /// Hearth's own tokens are accepted.
    external: Option<ExternalTokens>,
}

/// The verifier of external tokens and the links of their subjects to users.
#[derive(Clone)]
struct ExternalTokens {
    verifier: Arc<dyn ExternalTokenVerifier>,
    links: Arc<dyn IdentityLinks>,
}

impl AuthService {
    /// How long a refresh token may wait to be used. Each use rotates it,
    /// so an active client never meets this; an idle one logs in again.
    pub const REFRESH_TTL: chrono::Duration = chrono::Duration::days(30);
    /// How long a second-factor challenge waits for its code.
    pub const CHALLENGE_TTL: chrono::Duration = chrono::Duration::minutes(5);
    /// Wrong codes one challenge takes before it is dropped (the login
    /// throttle counts them too).
    pub const CHALLENGE_MAX_FAILURES: u32 = 5;

    #[allow(clippy::too_many_arguments)] // one per port it uses
    pub(crate) fn new(
        tenants: Arc<dyn TenantRepository>,
        users: Arc<dyn UserRepository>,
        passwords: Arc<dyn PasswordHasher>,
        tokens: Arc<dyn TokenService>,
        sessions: Arc<dyn SessionRepository>,
        hashing: HashingPool,
        limits: LoginLimits,
        two_factor: Arc<dyn TwoFactorRepository>,
    ) -> Self {
        Self {
            tenants,
            users,
            passwords,
            tokens,
            sessions,
            principals: Arc::default(),
            throttle: Arc::new(LoginThrottle::new(limits)),
            hashing,
            two_factor,
            challenges: Arc::default(),
            external: None,
        }
    }

    /// Also accepts bearer tokens `verifier` vouches for, mapped to users
    /// through `links` or a verified email (see `external_claims`).
    pub(crate) fn with_external_tokens(
        mut self,
        verifier: Arc<dyn ExternalTokenVerifier>,
        links: Arc<dyn IdentityLinks>,
    ) -> Self {
        self.external = Some(ExternalTokens { verifier, links });
        self
    }

    /// Verifies a password and issues a token bound to one tenant: the one
    /// named by `tenant` (id or slug), or the user's first membership.
    ///
    /// Throttled per account and per `client` address (see [`LoginLimits`]):
    /// during a lock-out the attempt is refused as `RateLimited` before any
    /// lookup or hashing. A right password with a tenant the user does not
    /// belong to counts as a failure like any other `InvalidCredentials`, so
    /// the throttle never tells a right password from a wrong one.
    ///
    /// [`LoginLimits`]: super::LoginLimits
    ///
    /// An account with two-factor login gets no session from this:
    /// `SecondFactorRequired` (see [`Self::begin_login`]).
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        tenant: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Session, LoginError> {
        match self.begin_login(email, password, tenant, client).await? {
            LoginStep::Session(session) => Ok(session),
            LoginStep::TwoFactor(_) => Err(LoginError::SecondFactorRequired),
        }
    }

    /// [`Self::login`], going on to a second-factor challenge when the user
    /// enrolled one, or an enrolment challenge when the tenant requires two
    /// factors and the user has none yet. A right password with a challenge
    /// settles the throttle as neither success nor failure: only the code
    /// clears earlier failures.
    pub async fn begin_login(
        &self,
        email: &str,
        password: &str,
        tenant: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<LoginStep, LoginError> {
        let attempt = self.throttle.admit(email, client).map_err(|retry_after| {
            tracing::debug!(?client, "Login refused unchecked: throttled.");
            LoginError::RateLimited { retry_after }
        })?;
        let outcome = self.check_login(email, password, tenant).await;
        match &outcome {
            Ok(LoginStep::Session(_)) => attempt.succeeded(),
            Ok(LoginStep::TwoFactor(_)) => attempt.abandoned(),
            Err(LoginError::InvalidCredentials | LoginError::InvalidCode) => attempt.failed(),
            Err(
                LoginError::RateLimited { .. }
                | LoginError::SecondFactorRequired
                | LoginError::Unavailable(_)
                | LoginError::Internal(_),
            ) => attempt.abandoned(),
        }
        outcome
    }

    async fn check_login(
        &self,
        email: &str,
        password: &str,
        tenant: Option<&str>,
    ) -> Result<LoginStep, LoginError> {
        let user = match EmailAddress::new(email) {
            Ok(email) => self.users.user_by_email(&email).await?,
            Err(_) => None,
        };
        // A disabled user is answered like an unknown one, at the same cost.
        let user = user.filter(|u| !u.disabled);
        let Some((user, hash)) = user.and_then(|u| u.password_hash.clone().map(|h| (u, h))) else {
            self.verify_password(password, None).await?;
            return Err(LoginError::InvalidCredentials);
        };
        if !self.verify_password(password, Some(hash)).await? {
            tracing::info!(user = %user.id, "Login refused: wrong password.");
            return Err(LoginError::InvalidCredentials);
        }
        let memberships = self.users.memberships_of(user.id).await?;
        let membership = match tenant {
            None => memberships.first().cloned(),
            Some(selector) => self.find_membership(&memberships, selector).await?,
        };
        let Some(membership) = membership else {
            return Err(LoginError::InvalidCredentials);
        };
        let enrolled = self
            .two_factor
            .two_factor(user.id)
            .await?
            .is_some_and(|e| e.confirmed);
        let kind = if enrolled {
            ChallengeKind::Verify
        } else if self
            .two_factor
            .two_factor_required(membership.tenant_id)
            .await?
        {
            ChallengeKind::Enrol
        } else {
            return Ok(LoginStep::Session(self.issue(&membership, None).await?));
        };
        Ok(LoginStep::TwoFactor(self.challenge(
            &user,
            membership.tenant_id,
            kind,
        )))
    }

    /// Remembers a half-done login and returns its challenge.
    fn challenge(&self, user: &User, tenant: TenantId, kind: ChallengeKind) -> TwoFactorChallenge {
        let token = new_refresh_token();
        let expires_at = Utc::now() + Self::CHALLENGE_TTL;
        self.challenges.entries.insert(
            RefreshTokenHash::of(&token),
            PendingLogin {
                user_id: user.id,
                email: user.email.clone(),
                tenant_id: tenant,
                kind,
                expires_at,
                failures: 0,
            },
        );
        TwoFactorChallenge {
            token,
            kind,
            expires_at,
        }
    }

    /// The pending login of `challenge`, unless unknown or expired.
    pub(crate) fn pending_login(&self, challenge: &str) -> Option<PendingLogin> {
        if challenge.is_empty() || challenge.len() > 256 {
            return None;
        }
        let key = RefreshTokenHash::of(challenge);
        let pending = self.challenges.entries.get(&key)?;
        if pending.expires_at <= Utc::now() {
            self.challenges.entries.invalidate(&key);
            return None;
        }
        Some(pending)
    }

    /// Counts a wrong code against the challenge; after
    /// [`Self::CHALLENGE_MAX_FAILURES`] it is dropped.
    pub(crate) fn challenge_failed(&self, challenge: &str, mut pending: PendingLogin) {
        let key = RefreshTokenHash::of(challenge);
        pending.failures += 1;
        if pending.failures >= Self::CHALLENGE_MAX_FAILURES {
            self.challenges.entries.invalidate(&key);
        } else {
            self.challenges.entries.insert(key, pending);
        }
    }

    /// Ends a challenge and issues the session it was waiting for, if the
    /// user is still enabled and a member of the tenant.
    pub(crate) async fn finish_login(
        &self,
        challenge: &str,
        pending: &PendingLogin,
    ) -> Result<Session, DomainError> {
        self.challenges
            .entries
            .invalidate(&RefreshTokenHash::of(challenge));
        let (user, membership) = tokio::join!(
            self.users.user(pending.user_id),
            self.users.membership(pending.user_id, pending.tenant_id),
        );
        match (user?, membership?) {
            (Some(user), Some(m)) if !user.disabled => self.issue(&m, None).await,
            _ => Err(DomainError::Unauthenticated),
        }
    }

    /// Admits a second-factor attempt for `email` through the login
    /// throttle, or says how long to wait.
    pub(crate) fn admit_code(
        &self,
        email: &EmailAddress,
        client: Option<IpAddr>,
    ) -> Result<super::throttle::Attempt<'_>, DomainError> {
        self.throttle
            .admit(email.as_str(), client)
            .map_err(|retry_after| DomainError::RateLimited { retry_after })
    }

    /// Checks a password on the blocking pool; without a hash (unknown user)
    /// it burns the same time and answers `false`.
    async fn verify_password(
        &self,
        password: &str,
        hash: Option<PasswordHash>,
    ) -> Result<bool, HashingError> {
        let hasher = self.passwords.clone();
        let password = password.to_owned();
        self.hashing
            .try_run(move || match hash {
                Some(hash) => hasher.verify(&password, &hash),
                None => {
                    hasher.verify_dummy(&password);
                    false
                }
            })
            .await
    }

    /// Hashes a new password on the blocking pool (never on the async
    /// workers), waiting for a permit however busy logins keep it.
    pub async fn hash_password(&self, password: &str) -> Result<PasswordHash, DomainError> {
        let hasher = self.passwords.clone();
        let password = password.to_owned();
        self.hashing
            .run(move || hasher.hash(&password))
            .await
            .map_err(|e| DomainError::Internal(e.into()))?
            .map_err(DomainError::Internal)
    }

    /// A new token for another tenant the caller is a member of. Tenants the
    /// caller does not belong to, existing or not, are all `Forbidden`.
    pub async fn switch_tenant(
        &self,
        principal: &Principal,
        tenant: &str,
    ) -> Result<Session, DomainError> {
        let memberships = self.users.memberships_of(principal.user_id).await?;
        let membership = self
            .find_membership(&memberships, tenant)
            .await?
            .ok_or_else(|| DomainError::Forbidden("you are not a member of that tenant".into()))?;
        if self
            .two_factor
            .two_factor_required(membership.tenant_id)
            .await?
            && !self
                .two_factor
                .two_factor(principal.user_id)
                .await?
                .is_some_and(|e| e.confirmed)
        {
            return Err(DomainError::Forbidden(
                "that tenant requires two-factor login: enrol first".into(),
            ));
        }
        self.issue(&membership, None).await
    }

    /// Exchanges a refresh token for a new access token and a new refresh
    /// token of the same session family, retiring the presented one. Refused
    /// (`Unauthenticated`) when the token is unknown, expired or revoked,
    /// when the user is disabled, logged out everywhere after it was issued,
    /// or no longer a member of its tenant. A retired token presented again
    /// revokes its whole family: whoever holds the newer one logs in again.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, DomainError> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(DomainError::Unauthenticated);
        }
        let hash = RefreshTokenHash::of(refresh_token);
        let Some(stored) = self.sessions.session(&hash).await? else {
            return Err(DomainError::Unauthenticated);
        };
        if stored.retired {
            tracing::warn!(user = %stored.user_id, family = %stored.family, "A retired refresh token was presented again; revoking its session family.");
            self.revoke_family(stored.family).await?;
            return Err(DomainError::Unauthenticated);
        }
        if stored.expires_at <= Utc::now() {
            return Err(DomainError::Unauthenticated);
        }
        let (user, membership) = tokio::join!(
            self.users.user(stored.user_id),
            self.users.membership(stored.user_id, stored.tenant_id),
        );
        let logged_out = |user: &User| {
            user.tokens_valid_from
                .is_some_and(|from| stored.issued_at < from)
        };
        let membership = match (user?, membership?) {
            (Some(user), Some(m)) if !user.disabled && !logged_out(&user) => m,
            _ => {
                self.revoke_family(stored.family).await?;
                return Err(DomainError::Unauthenticated);
            }
        };
        // The new token is stored before the old one is retired, so the
        // family never looks ended to a request checking it in between.
        let renewed = self.issue(&membership, Some(stored.family)).await?;
        if !self.sessions.retire_session(&hash).await? {
            // Another request rotated it first: the same token used twice.
            tracing::warn!(user = %stored.user_id, family = %stored.family, "A refresh token was used twice at once; revoking its session family.");
            self.revoke_family(stored.family).await?;
            return Err(DomainError::Unauthenticated);
        }
        Ok(renewed)
    }

    async fn revoke_family(&self, family: SessionFamily) -> Result<(), DomainError> {
        self.sessions.revoke_family(family).await?;
        self.principals.entries.invalidate_all();
        Ok(())
    }

    /// Resolves a bearer token to the principal it stands for. The token's
    /// signature and expiry are checked on every call; the membership behind
    /// it is re-read at most [`PrincipalCache::TTL`] later, so a revoked or
    /// changed role takes effect within that time on every replica.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, DomainError> {
        let claims = match self.tokens.verify(token) {
            Ok(claims) => claims,
            // Not one of ours: perhaps the tenant's identity provider's.
            Err(TokenError::Invalid) if self.external.is_some() => {
                self.external_claims(token).await?
            }
            Err(TokenError::Expired | TokenError::Invalid | TokenError::Unavailable) => {
                return Err(DomainError::Unauthenticated)
            }
        };
        // A token issued before the user's last logout stands for nobody,
        // whether the principal comes from the cache or the store.
        let revoked = |valid_from: Option<DateTime<Utc>>| {
            valid_from.is_some_and(|from| claims.issued_at < from)
        };
        let key = (claims.user_id, claims.tenant_id, claims.session);
        if let Some((principal, valid_from)) = self.principals.get(&key) {
            if revoked(valid_from) {
                return Err(DomainError::Unauthenticated);
            }
            return Ok(principal);
        }
        let family_active = async {
            match claims.session {
                Some(family) => self.sessions.family_active(family, Utc::now()).await,
                // A token issued without a refresh token (none are, today)
                // answers to the user-wide logout mark only.
                None => Ok(true),
            }
        };
        let (membership, user, active) = tokio::join!(
            self.users.membership(claims.user_id, claims.tenant_id),
            self.users.user(claims.user_id),
            family_active,
        );
        match (user?, membership?, active?) {
            (Some(user), Some(m), true) if !user.disabled && !revoked(user.tokens_valid_from) => {
                let valid_from = user.tokens_valid_from;
                let principal = Principal {
                    user_id: user.id,
                    email: user.email,
                    tenant_id: m.tenant_id,
                    role: m.role,
                    scope: m.scope,
                };
                self.principals.put(key, principal.clone(), valid_from);
                Ok(principal)
            }
            _ => Err(DomainError::Unauthenticated),
        }
    }

    /// A token of a tenant's identity provider, as the user it stands for:
    /// the one its subject is linked to in that tenant, or else the user
    /// with the email the provider verified. Membership, role and scope are
    /// then looked up like for Hearth's own tokens, so a user who is not a
    /// member of the provider's tenant gets nothing. Every failure is the
    /// same `Unauthenticated`: the caller learns nothing about why.
    async fn external_claims(&self, token: &str) -> Result<TokenClaims, DomainError> {
        let external = self.external.as_ref().ok_or(DomainError::Unauthenticated)?;
        let identity = external.verifier.verify(token).await.map_err(|e| match e {
            // A good token must not be answered "unauthenticated" just
            // because the provider is down: that is an outage.
            TokenError::Unavailable => DomainError::Unavailable(anyhow::anyhow!(
                "the identity provider's keys are unavailable"
            )),
            TokenError::Expired | TokenError::Invalid => DomainError::Unauthenticated,
        })?;
        let tenant = self
            .tenants
            .tenant_by_slug(identity.tenant.as_str())
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        let linked = external
            .links
            .linked_user(tenant.id, &identity.issuer, &identity.subject)
            .await?;
        let user_id = match (linked, &identity.verified_email) {
            (Some(user), _) => Some(user),
            (None, Some(email)) => self.users.user_by_email(email).await?.map(|u| u.id),
            (None, None) => None,
        };
        let Some(user_id) = user_id else {
            tracing::info!(
                tenant = %tenant.id,
                issuer = %identity.issuer,
                "External token refused: no linked or verified user."
            );
            return Err(DomainError::Unauthenticated);
        };
        Ok(TokenClaims {
            user_id,
            tenant_id: tenant.id,
            expires_at: identity.expires_at,
            // The provider's token lives by the provider's rules (its `exp`,
            // its revocation): Hearth's logout does not reach it, while a
            // disabled user or a removed membership still does.
            issued_at: Utc::now(),
            session: None,
        })
    }

    /// Ends the session the caller's `token` belongs to: its refresh tokens
    /// and its access tokens are refused from the next request on (open
    /// subscriptions end at their next session check). With `all_sessions`,
    /// or for a token of no session family, every session of the caller
    /// ends: all their tokens issued until now, for every tenant.
    pub async fn logout(
        &self,
        principal: &Principal,
        token: &str,
        all_sessions: bool,
    ) -> Result<(), DomainError> {
        let family = match self.tokens.verify(token) {
            Ok(claims)
                if claims.user_id == principal.user_id
                    && claims.tenant_id == principal.tenant_id =>
            {
                claims.session
            }
            _ => return Err(DomainError::Unauthenticated),
        };
        match family {
            Some(family) if !all_sessions => self.revoke_family(family).await,
            _ => self.logout_everywhere(principal).await,
        }
    }

    async fn logout_everywhere(&self, principal: &Principal) -> Result<(), DomainError> {
        // Tokens carry their issue time in milliseconds: the mark is the
        // start of the next millisecond, so every token issued until now is
        // before it and a login a millisecond later is not.
        let next_ms = Utc::now().timestamp_millis().saturating_add(1);
        let from = DateTime::from_timestamp_millis(next_ms)
            .ok_or_else(|| DomainError::Internal(anyhow::anyhow!("clock out of range")))?;
        if !self.users.revoke_tokens(principal.user_id, from).await? {
            return Err(DomainError::Unauthenticated);
        }
        self.sessions
            .revoke_user_sessions(principal.user_id)
            .await?;
        self.principals.entries.invalidate_all();
        Ok(())
    }

    /// Drops the cached principal of `user` in `tenant`: their next request
    /// reads the membership (and whether they are disabled) again.
    pub(crate) fn forget_principal(&self, user: UserId, tenant: TenantId) {
        // Keys carry the session family too; this is rare (an admin
        // changed a membership), so everyone re-reads.
        let _ = (user, tenant);
        self.principals.entries.invalidate_all();
    }

    /// Drops every cached principal (an area moved: scopes over it changed).
    pub(crate) fn forget_all_principals(&self) {
        self.principals.entries.invalidate_all();
    }

    pub async fn me(&self, principal: &Principal) -> Result<MeView, DomainError> {
        let user = self
            .users
            .user(principal.user_id)
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        let mut memberships = Vec::new();
        for m in self.users.memberships_of(principal.user_id).await? {
            if let Some(tenant) = self.tenants.tenant(m.tenant_id).await? {
                memberships.push(MembershipView {
                    tenant,
                    role: m.role,
                });
            }
        }
        let tenant = memberships
            .iter()
            .find(|m| m.tenant.id == principal.tenant_id)
            .map(|m| m.tenant.clone())
            .ok_or(DomainError::Unauthenticated)?;
        Ok(MeView {
            user,
            tenant,
            role: principal.role,
            memberships,
        })
    }

    async fn find_membership(
        &self,
        memberships: &[Membership],
        selector: &str,
    ) -> Result<Option<Membership>, DomainError> {
        let tenant_id = match selector.parse::<TenantId>() {
            Ok(id) => Some(id),
            Err(_) => match TenantSlug::new(selector.trim()) {
                Ok(slug) => self
                    .tenants
                    .tenant_by_slug(slug.as_str())
                    .await?
                    .map(|t| t.id),
                // Not even shaped like a slug (a megabyte of text, say):
                // no tenant has it, and the store need not be asked.
                Err(_) => None,
            },
        };
        Ok(tenant_id.and_then(|id| memberships.iter().find(|m| m.tenant_id == id).cloned()))
    }

    /// A new access token and refresh token for `membership`, in `family`
    /// (a rotation) or in a new one (a login).
    async fn issue(
        &self,
        membership: &Membership,
        family: Option<SessionFamily>,
    ) -> Result<Session, DomainError> {
        let tenant = self
            .tenants
            .tenant(membership.tenant_id)
            .await?
            .ok_or_else(|| DomainError::Internal(anyhow::anyhow!("membership without tenant")))?;
        let family = family.unwrap_or_default();
        let refresh_token = new_refresh_token();
        let now = Utc::now();
        let stored = RefreshSession {
            token_hash: RefreshTokenHash::of(&refresh_token),
            family,
            user_id: membership.user_id,
            tenant_id: membership.tenant_id,
            // Stores keep microseconds; compare like with like.
            issued_at: DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now),
            expires_at: now + Self::REFRESH_TTL,
            retired: false,
        };
        self.sessions.insert_session(&stored).await?;
        let (token, claims) = self
            .tokens
            .issue(membership.user_id, membership.tenant_id, Some(family))
            .map_err(DomainError::Internal)?;
        Ok(Session {
            token,
            refresh_token,
            refresh_expires_at: stored.expires_at,
            tenant,
            role: membership.role,
            expires_at: claims.expires_at,
        })
    }
}

/// 256 random bits, URL-safe: the refresh token a client keeps.
fn new_refresh_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Recently resolved principals, so a burst of requests with one token costs
/// one membership lookup rather than one per request.
///
/// A `moka` cache: entries expire [`Self::TTL`] after they were resolved
/// (never refreshed by reads, so a changed role is seen within the TTL), and
/// beyond [`Self::MAX_ENTRIES`] the least useful ones are evicted rather
/// than the map growing with every token ever seen.
pub(crate) struct PrincipalCache {
    /// The principal and the user's `tokens_valid_from`, which every
    /// token's issue time is checked against.
    entries: moka::sync::Cache<CacheKey, CachedPrincipal>,
}

/// A token's user, tenant and session family.
type CacheKey = (UserId, TenantId, Option<SessionFamily>);

type CachedPrincipal = (Principal, Option<DateTime<Utc>>);

impl Default for PrincipalCache {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(Self::MAX_ENTRIES)
                .time_to_live(Self::TTL)
                .build(),
        }
    }
}

impl PrincipalCache {
    /// How stale a role or scope may be after it changed in the store.
    pub const TTL: Duration = Duration::from_secs(1);
    /// How many principals are kept at most.
    const MAX_ENTRIES: u64 = 10_000;

    fn get(&self, key: &CacheKey) -> Option<CachedPrincipal> {
        self.entries.get(key)
    }

    fn put(&self, key: CacheKey, principal: Principal, tokens_valid_from: Option<DateTime<Utc>>) {
        self.entries.insert(key, (principal, tokens_valid_from));
    }
}
