//! Login, tenant switching, token authentication and `me`.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;

use std::sync::Arc;

use super::hashing::{HashingError, HashingPool};
use super::throttle::{LoginLimits, LoginThrottle};
use crate::error::DomainError;
use crate::ids::{TenantId, UserId};
use crate::model::{EmailAddress, Membership, PasswordHash, Role, Tenant, TenantSlug, User};
use crate::ports::{PasswordHasher, TenantRepository, TokenError, TokenService, UserRepository};
use crate::principal::Principal;

/// A freshly issued bearer token.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
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
    /// Too many failed attempts for this account or from this address, or
    /// too many logins waiting for a password check: nothing was checked.
    #[error("too many login attempts; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<DomainError> for LoginError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::Internal(e) => LoginError::Internal(e),
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
        LoginError::Internal(err.into())
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
    principals: Arc<PrincipalCache>,
    throttle: Arc<LoginThrottle>,
    hashing: HashingPool,
}

impl AuthService {
    pub(crate) fn new(
        tenants: Arc<dyn TenantRepository>,
        users: Arc<dyn UserRepository>,
        passwords: Arc<dyn PasswordHasher>,
        tokens: Arc<dyn TokenService>,
        hashing: HashingPool,
        limits: LoginLimits,
    ) -> Self {
        Self {
            tenants,
            users,
            passwords,
            tokens,
            principals: Arc::default(),
            throttle: Arc::new(LoginThrottle::new(limits)),
            hashing,
        }
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
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        tenant: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Session, LoginError> {
        let attempt = self.throttle.admit(email, client).map_err(|retry_after| {
            tracing::debug!(?client, "Login refused unchecked: throttled.");
            LoginError::RateLimited { retry_after }
        })?;
        let outcome = self.check_login(email, password, tenant).await;
        match &outcome {
            Ok(_) => attempt.succeeded(),
            Err(LoginError::InvalidCredentials) => attempt.failed(),
            Err(LoginError::RateLimited { .. } | LoginError::Internal(_)) => attempt.abandoned(),
        }
        outcome
    }

    async fn check_login(
        &self,
        email: &str,
        password: &str,
        tenant: Option<&str>,
    ) -> Result<Session, LoginError> {
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
        Ok(self.issue(&membership).await?)
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
        self.issue(&membership).await
    }

    /// Resolves a bearer token to the principal it stands for. The token's
    /// signature and expiry are checked on every call; the membership behind
    /// it is re-read at most [`PrincipalCache::TTL`] later, so a revoked or
    /// changed role takes effect within that time on every replica.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, DomainError> {
        let claims = self.tokens.verify(token).map_err(|e| match e {
            TokenError::Expired | TokenError::Invalid => DomainError::Unauthenticated,
        })?;
        // A token issued before the user's last logout stands for nobody,
        // whether the principal comes from the cache or the store.
        let revoked = |valid_from: Option<DateTime<Utc>>| {
            valid_from.is_some_and(|from| claims.issued_at < from)
        };
        if let Some((principal, valid_from)) = self.principals.get(claims.user_id, claims.tenant_id)
        {
            if revoked(valid_from) {
                return Err(DomainError::Unauthenticated);
            }
            return Ok(principal);
        }
        let (membership, user) = tokio::join!(
            self.users.membership(claims.user_id, claims.tenant_id),
            self.users.user(claims.user_id),
        );
        match (user?, membership?) {
            (Some(user), Some(m)) if !user.disabled && !revoked(user.tokens_valid_from) => {
                let valid_from = user.tokens_valid_from;
                let principal = Principal {
                    user_id: user.id,
                    email: user.email,
                    tenant_id: m.tenant_id,
                    role: m.role,
                    scope: m.scope,
                };
                self.principals.put(principal.clone(), valid_from);
                Ok(principal)
            }
            _ => Err(DomainError::Unauthenticated),
        }
    }

    /// Ends every session of the caller: all their tokens issued until now,
    /// for every tenant, are refused from the next request on (open
    /// subscriptions end at their next session check). Logging in again
    /// issues a new one.
    pub async fn logout(&self, principal: &Principal) -> Result<(), DomainError> {
        // Tokens carry their issue time in milliseconds: the mark is the
        // start of the next millisecond, so every token issued until now is
        // before it and a login a millisecond later is not.
        let next_ms = Utc::now().timestamp_millis().saturating_add(1);
        let from = DateTime::from_timestamp_millis(next_ms)
            .ok_or_else(|| DomainError::Internal(anyhow::anyhow!("clock out of range")))?;
        if !self.users.revoke_tokens(principal.user_id, from).await? {
            return Err(DomainError::Unauthenticated);
        }
        self.principals.entries.invalidate_all();
        Ok(())
    }

    /// Drops the cached principal of `user` in `tenant`: their next request
    /// reads the membership (and whether they are disabled) again.
    pub(crate) fn forget_principal(&self, user: UserId, tenant: TenantId) {
        self.principals.entries.invalidate(&(user, tenant));
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

    async fn issue(&self, membership: &Membership) -> Result<Session, DomainError> {
        let tenant = self
            .tenants
            .tenant(membership.tenant_id)
            .await?
            .ok_or_else(|| DomainError::Internal(anyhow::anyhow!("membership without tenant")))?;
        let (token, claims) = self
            .tokens
            .issue(membership.user_id, membership.tenant_id)
            .map_err(DomainError::Internal)?;
        Ok(Session {
            token,
            tenant,
            role: membership.role,
            expires_at: claims.expires_at,
        })
    }
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
    entries: moka::sync::Cache<(UserId, TenantId), CachedPrincipal>,
}

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

    fn get(&self, user: UserId, tenant: TenantId) -> Option<CachedPrincipal> {
        self.entries.get(&(user, tenant))
    }

    fn put(&self, principal: Principal, tokens_valid_from: Option<DateTime<Utc>>) {
        self.entries.insert(
            (principal.user_id, principal.tenant_id),
            (principal, tokens_valid_from),
        );
    }
}
