//! Two-factor login for local accounts (TOTP, RFC 6238): enrolment with an
//! `otpauth://` URI and ten single-use recovery codes, confirmation with a
//! first code, the code step of a login, and turning it off again.
//!
//! Every code is checked against the user's last used step, so a code works
//! once; wrong codes count against the login throttle like wrong passwords.
//! Secrets are stored sealed by the [`SecretSealer`] the composition root
//! chose; without one, enrolment and code checks are unavailable (a login
//! that needs a code then fails rather than skipping it).

use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;

use super::auth::{AuthService, ChallengeKind, LoginError, PendingLogin, Session};
use super::Policy;
use crate::error::{DomainError, InvalidValue};
use crate::ids::{TenantId, UserId};
use crate::model::{otpauth_uri, RecoveryCodeHash, TotpSecret, TwoFactorEnrolment};
use crate::ports::{Action, SecretSealer, TwoFactorRepository};
use crate::principal::Principal;

/// A user's two-factor state as they see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoFactorStatus {
    /// Confirmed: logins ask for a code.
    pub enabled: bool,
    /// Enrolled but not yet confirmed with a first code.
    pub pending: bool,
    /// The active tenant requires two-factor login of every member.
    pub required: bool,
    pub recovery_codes_left: usize,
}

/// A new enrolment, shown once: the secret for the authenticator app and
/// the recovery codes.
#[derive(Debug, Clone)]
pub struct NewTwoFactor {
    /// Base32, for typing into an app.
    pub secret: String,
    pub otpauth_uri: String,
    pub recovery_codes: Vec<String>,
}

/// Who is enrolling: a signed-in member, or a login that must enrol first
/// (its challenge, of kind `Enrol`).
#[derive(Debug, Clone, Copy)]
pub enum Enrollee<'a> {
    Member(&'a Principal),
    Challenge(&'a str),
}

/// Enrolment, confirmation, code checks and disabling of two-factor login.
#[derive(Clone)]
pub struct TwoFactorService {
    auth: AuthService,
    store: Arc<dyn TwoFactorRepository>,
    policy: Policy,
    sealer: Option<Arc<dyn SecretSealer>>,
}

impl TwoFactorService {
    /// Recovery codes issued per enrolment.
    pub const RECOVERY_CODES: usize = 10;

    pub(crate) fn new(
        auth: AuthService,
        store: Arc<dyn TwoFactorRepository>,
        policy: Policy,
    ) -> Self {
        Self {
            auth,
            store,
            policy,
            sealer: None,
        }
    }

    pub(crate) fn with_sealer(mut self, sealer: Arc<dyn SecretSealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// The caller's own two-factor state; any member may ask.
    pub async fn status(&self, principal: &Principal) -> Result<TwoFactorStatus, DomainError> {
        self.policy.require_tenant(principal, Action::View)?;
        self.status_of(principal.user_id, principal.tenant_id).await
    }

    async fn status_of(
        &self,
        user: UserId,
        tenant: TenantId,
    ) -> Result<TwoFactorStatus, DomainError> {
        let (enrolment, required) = tokio::join!(
            self.store.two_factor(user),
            self.store.two_factor_required(tenant)
        );
        let enrolment = enrolment?;
        Ok(TwoFactorStatus {
            enabled: enrolment.as_ref().is_some_and(|e| e.confirmed),
            pending: enrolment.as_ref().is_some_and(|e| !e.confirmed),
            required: required?,
            recovery_codes_left: enrolment.map_or(0, |e| e.recovery_codes.len()),
        })
    }

    /// Starts (or restarts) an enrolment: a new secret and recovery codes,
    /// effective once confirmed. Refused (`Conflict`) while a confirmed
    /// enrolment exists: disable it first.
    pub async fn enrol(&self, who: Enrollee<'_>) -> Result<NewTwoFactor, DomainError> {
        let (user, email) = match who {
            Enrollee::Member(principal) => {
                self.policy.require_tenant(principal, Action::View)?;
                (principal.user_id, principal.email.clone())
            }
            Enrollee::Challenge(challenge) => {
                let pending = self.enrol_challenge(challenge)?;
                (pending.user_id, pending.email)
            }
        };
        if self
            .store
            .two_factor(user)
            .await?
            .is_some_and(|e| e.confirmed)
        {
            return Err(DomainError::Conflict(
                "two-factor login is already on; disable it first".into(),
            ));
        }
        let secret = TotpSecret::generate();
        let sealed_secret = self
            .sealer()?
            .seal(secret.as_bytes(), &user.to_string())
            .map_err(DomainError::Internal)?;
        let codes: Vec<String> = (0..Self::RECOVERY_CODES)
            .map(|_| RecoveryCodeHash::generate_code())
            .collect();
        let recovery_codes = codes
            .iter()
            .filter_map(|c| RecoveryCodeHash::of(user, c))
            .collect();
        self.store
            .put_two_factor(&TwoFactorEnrolment {
                user_id: user,
                sealed_secret,
                confirmed: false,
                last_step: None,
                recovery_codes,
            })
            .await?;
        tracing::info!(%user, "Two-factor enrolment started.");
        Ok(NewTwoFactor {
            secret: secret.to_base32(),
            otpauth_uri: otpauth_uri(email.as_str(), &secret),
            recovery_codes: codes,
        })
    }

    /// Confirms a pending enrolment with a code of the new secret. Through
    /// an enrolment challenge, the login it was waiting for completes: the
    /// session is returned. A wrong code is `BAD_USER_INPUT` and counts
    /// against the login throttle.
    pub async fn confirm(
        &self,
        who: Enrollee<'_>,
        code: &str,
        client: Option<IpAddr>,
    ) -> Result<(TwoFactorStatus, Option<Session>), DomainError> {
        let (user, email, tenant, pending) = match who {
            Enrollee::Member(principal) => {
                self.policy.require_tenant(principal, Action::View)?;
                (
                    principal.user_id,
                    principal.email.clone(),
                    principal.tenant_id,
                    None,
                )
            }
            Enrollee::Challenge(challenge) => {
                let pending = self.enrol_challenge(challenge)?;
                (
                    pending.user_id,
                    pending.email.clone(),
                    pending.tenant_id,
                    Some((challenge, pending)),
                )
            }
        };
        let attempt = self.auth.admit_code(&email, client)?;
        let enrolment = match self.store.two_factor(user).await {
            Ok(Some(e)) if !e.confirmed => e,
            Ok(_) => {
                attempt.abandoned();
                return Err(DomainError::Conflict(
                    "no enrolment is waiting for confirmation".into(),
                ));
            }
            Err(e) => {
                attempt.abandoned();
                return Err(e.into());
            }
        };
        let secret = match self.secret(&enrolment) {
            Ok(secret) => secret,
            Err(e) => {
                attempt.abandoned();
                return Err(e);
            }
        };
        let step = secret.matching_step(code, Utc::now());
        let confirmed = match step {
            Some(step) => self.store.confirm_two_factor(user, step).await,
            None => Ok(false),
        };
        match confirmed {
            Ok(true) => attempt.succeeded(),
            Ok(false) => {
                attempt.failed();
                if let Some((challenge, pending)) = pending {
                    self.auth.challenge_failed(challenge, pending);
                }
                return Err(wrong_code());
            }
            Err(e) => {
                attempt.abandoned();
                return Err(e.into());
            }
        }
        tracing::info!(%user, "Two-factor login turned on.");
        let session = match pending {
            Some((challenge, pending)) => Some(self.auth.finish_login(challenge, &pending).await?),
            None => None,
        };
        Ok((self.status_of(user, tenant).await?, session))
    }

    /// Turns two-factor login off, with a current code or a recovery code.
    /// Refused (`Forbidden`) while the active tenant requires it.
    pub async fn disable(
        &self,
        principal: &Principal,
        code: &str,
        client: Option<IpAddr>,
    ) -> Result<TwoFactorStatus, DomainError> {
        self.policy.require_tenant(principal, Action::View)?;
        if self.store.two_factor_required(principal.tenant_id).await? {
            return Err(DomainError::Forbidden(
                "this tenant requires two-factor login".into(),
            ));
        }
        let attempt = self.auth.admit_code(&principal.email, client)?;
        match self.check_code(principal.user_id, code).await {
            Ok(true) => attempt.succeeded(),
            Ok(false) => {
                attempt.failed();
                return Err(wrong_code());
            }
            Err(e) => {
                attempt.abandoned();
                return Err(e);
            }
        }
        self.store.delete_two_factor(principal.user_id).await?;
        tracing::info!(user = %principal.user_id, "Two-factor login turned off.");
        self.status_of(principal.user_id, principal.tenant_id).await
    }

    /// The code step of a login: a current code of the user's authenticator
    /// or one of their recovery codes (used up by this). Wrong, replayed or
    /// malformed codes and unknown challenges are all `InvalidCode`.
    pub async fn verify(
        &self,
        challenge: &str,
        code: &str,
        client: Option<IpAddr>,
    ) -> Result<Session, LoginError> {
        let pending = self
            .auth
            .pending_login(challenge)
            .filter(|p| p.kind == ChallengeKind::Verify)
            .ok_or(LoginError::InvalidCode)?;
        let attempt = self.auth.admit_code(&pending.email, client)?;
        match self.check_code(pending.user_id, code).await {
            Ok(true) => attempt.succeeded(),
            Ok(false) => {
                attempt.failed();
                tracing::info!(user = %pending.user_id, "Login refused: wrong second-factor code.");
                self.auth.challenge_failed(challenge, pending);
                return Err(LoginError::InvalidCode);
            }
            Err(e) => {
                attempt.abandoned();
                return Err(e.into());
            }
        }
        Ok(self.auth.finish_login(challenge, &pending).await?)
    }

    /// Whether `code` is an unused current code or an unused recovery code
    /// of the user's confirmed enrolment; using it up if so.
    async fn check_code(&self, user: UserId, code: &str) -> Result<bool, DomainError> {
        let Some(enrolment) = self.store.two_factor(user).await?.filter(|e| e.confirmed) else {
            return Ok(false);
        };
        if let Some(hash) = RecoveryCodeHash::of(user, code) {
            let used = self.store.use_recovery_code(user, &hash).await?;
            if used {
                tracing::info!(%user, "A recovery code was used.");
            }
            return Ok(used);
        }
        let secret = self.secret(&enrolment)?;
        match secret.matching_step(code, Utc::now()) {
            // Older than or equal to the last used step: a replay.
            Some(step) => Ok(self.store.use_totp_step(user, step).await?),
            None => Ok(false),
        }
    }

    fn enrol_challenge(&self, challenge: &str) -> Result<PendingLogin, DomainError> {
        self.auth
            .pending_login(challenge)
            .filter(|p| p.kind == ChallengeKind::Enrol)
            .ok_or(DomainError::Unauthenticated)
    }

    fn sealer(&self) -> Result<&Arc<dyn SecretSealer>, DomainError> {
        self.sealer.as_ref().ok_or_else(|| {
            DomainError::Unavailable(anyhow::anyhow!(
                "two-factor secrets cannot be sealed: no key is configured"
            ))
        })
    }

    fn secret(&self, enrolment: &TwoFactorEnrolment) -> Result<TotpSecret, DomainError> {
        let bytes = self
            .sealer()?
            .open(&enrolment.sealed_secret, &enrolment.user_id.to_string())
            .map_err(DomainError::Internal)?;
        TotpSecret::from_bytes(&bytes).ok_or_else(|| {
            DomainError::Internal(anyhow::anyhow!("a stored two-factor secret is malformed"))
        })
    }
}

fn wrong_code() -> DomainError {
    InvalidValue::new("code", "wrong, expired or already used code").into()
}
