//! Two-factor login (TOTP): `twoFactor`, `enrolTwoFactor`,
//! `confirmTwoFactor`, `disableTwoFactor`, `verifyTwoFactor`, and for
//! admins `setTwoFactorRequired` and `resetTwoFactor`. Every decision is the
//! use case's; this module converts arguments and results.

use async_graphql::{Context, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use hearth_domain::services::{Enrollee, NewTwoFactor, TwoFactorStatus as Status};
use hearth_domain::UserId;

use super::auth::AuthPayload;
use super::error::{bad_input, from_domain, from_login};
use super::{parse_id, principal, services, ClientAddr};

/// Longest code or challenge looked at (codes are 6 digits or 19
/// characters, challenges 64).
const MAX_INPUT: usize = 256;

/// The caller's two-factor login.
#[derive(SimpleObject)]
pub struct TwoFactorStatus {
    /// On: every login asks for a code.
    pub enabled: bool,
    /// Enrolled, waiting for `confirmTwoFactor`.
    pub pending: bool,
    /// The active tenant requires two-factor login of every member.
    pub required: bool,
    pub recovery_codes_left: i32,
}

impl From<Status> for TwoFactorStatus {
    fn from(s: Status) -> Self {
        Self {
            enabled: s.enabled,
            pending: s.pending,
            required: s.required,
            recovery_codes_left: i32::try_from(s.recovery_codes_left).unwrap_or(i32::MAX),
        }
    }
}

/// A new enrolment, shown once.
#[derive(SimpleObject)]
pub struct TwoFactorEnrolment {
    /// Base32 TOTP secret, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/Hearth:<email>?secret=…&issuer=Hearth`, for a QR code.
    pub otpauth_uri: String,
    /// Ten single-use codes for when the phone is lost. Not shown again.
    pub recovery_codes: Vec<String>,
}

impl From<NewTwoFactor> for TwoFactorEnrolment {
    fn from(n: NewTwoFactor) -> Self {
        Self {
            secret: n.secret,
            otpauth_uri: n.otpauth_uri,
            recovery_codes: n.recovery_codes,
        }
    }
}

/// The outcome of `confirmTwoFactor`.
#[derive(SimpleObject)]
pub struct TwoFactorConfirmation {
    pub status: TwoFactorStatus,
    /// With an enrolment `challenge`: the session the login was waiting for.
    pub session: Option<AuthPayload>,
}

/// What a login returns: a session, or what to do first.
#[derive(SimpleObject)]
pub struct LoginPayload {
    /// `null` while a second factor is pending; else as in `AuthPayload`.
    pub token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub refresh_token: Option<String>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub tenant: Option<super::auth::Tenant>,
    pub role: Option<super::auth::Role>,
    /// Send a code with `verifyTwoFactor(challenge, code)`.
    pub two_factor_required: bool,
    /// The tenant requires two-factor login and the user has none yet:
    /// `enrolTwoFactor(challenge)` then `confirmTwoFactor(code, challenge)`.
    pub two_factor_enrolment_required: bool,
    pub challenge: Option<String>,
    pub challenge_expires_at: Option<DateTime<Utc>>,
}

impl From<hearth_domain::services::LoginStep> for LoginPayload {
    fn from(step: hearth_domain::services::LoginStep) -> Self {
        use hearth_domain::services::{ChallengeKind, LoginStep};
        match step {
            LoginStep::Session(s) => {
                let auth = AuthPayload::from(s);
                Self {
                    token: Some(auth.token),
                    expires_at: Some(auth.expires_at),
                    refresh_token: Some(auth.refresh_token),
                    refresh_expires_at: Some(auth.refresh_expires_at),
                    tenant: Some(auth.tenant),
                    role: Some(auth.role),
                    two_factor_required: false,
                    two_factor_enrolment_required: false,
                    challenge: None,
                    challenge_expires_at: None,
                }
            }
            LoginStep::TwoFactor(c) => Self {
                token: None,
                expires_at: None,
                refresh_token: None,
                refresh_expires_at: None,
                tenant: None,
                role: None,
                two_factor_required: c.kind == ChallengeKind::Verify,
                two_factor_enrolment_required: c.kind == ChallengeKind::Enrol,
                challenge: Some(c.token),
                challenge_expires_at: Some(c.expires_at),
            },
        }
    }
}

fn client(ctx: &Context<'_>) -> Option<std::net::IpAddr> {
    ctx.data_opt::<ClientAddr>().map(|ClientAddr(ip)| *ip)
}

fn check_len(what: &str, value: &str) -> async_graphql::Result<()> {
    if value.len() > MAX_INPUT {
        return Err(bad_input(format!("{what} too long")));
    }
    Ok(())
}

/// The enrollee: the challenge when given, else the signed-in caller.
fn enrollee<'a>(
    ctx: &Context<'a>,
    challenge: &'a Option<String>,
) -> async_graphql::Result<Enrollee<'a>> {
    match challenge {
        Some(c) => {
            check_len("challenge", c)?;
            Ok(Enrollee::Challenge(c))
        }
        None => Ok(Enrollee::Member(principal(ctx)?)),
    }
}

#[derive(Default)]
pub struct TwoFactorQuery;

#[Object]
impl TwoFactorQuery {
    /// The caller's own two-factor login (any member).
    async fn two_factor(&self, ctx: &Context<'_>) -> async_graphql::Result<TwoFactorStatus> {
        let principal = principal(ctx)?;
        services(ctx)
            .two_factor
            .status(principal)
            .await
            .map(TwoFactorStatus::from)
            .map_err(from_domain)
    }
}

#[derive(Default)]
pub struct TwoFactorMutation;

#[Object]
impl TwoFactorMutation {
    /// Starts enrolment: a new secret and ten recovery codes, shown once,
    /// effective after `confirmTwoFactor`. Signed in, or with the enrolment
    /// `challenge` of a login that must enrol first. `CONFLICT` while
    /// two-factor login is on.
    async fn enrol_two_factor(
        &self,
        ctx: &Context<'_>,
        challenge: Option<String>,
    ) -> async_graphql::Result<TwoFactorEnrolment> {
        let who = enrollee(ctx, &challenge)?;
        services(ctx)
            .two_factor
            .enrol(who)
            .await
            .map(TwoFactorEnrolment::from)
            .map_err(from_domain)
    }

    /// Turns two-factor login on with a first code of the new secret. With
    /// an enrolment `challenge`, also completes that login (`session`).
    /// Wrong codes are `BAD_USER_INPUT` and count against the login throttle.
    async fn confirm_two_factor(
        &self,
        ctx: &Context<'_>,
        code: String,
        challenge: Option<String>,
    ) -> async_graphql::Result<TwoFactorConfirmation> {
        check_len("code", &code)?;
        let who = enrollee(ctx, &challenge)?;
        let (status, session) = services(ctx)
            .two_factor
            .confirm(who, &code, client(ctx))
            .await
            .map_err(from_domain)?;
        Ok(TwoFactorConfirmation {
            status: status.into(),
            session: session.map(AuthPayload::from),
        })
    }

    /// Turns two-factor login off, with a current code or a recovery code
    /// (any member; `FORBIDDEN` while the tenant requires it).
    async fn disable_two_factor(
        &self,
        ctx: &Context<'_>,
        code: String,
    ) -> async_graphql::Result<TwoFactorStatus> {
        check_len("code", &code)?;
        let principal = principal(ctx)?;
        services(ctx)
            .two_factor
            .disable(principal, &code, client(ctx))
            .await
            .map(TwoFactorStatus::from)
            .map_err(from_domain)
    }

    /// Completes a login that answered `twoFactorRequired`: a current code
    /// of the authenticator, or a recovery code (used up). Wrong, replayed
    /// or expired: `UNAUTHENTICATED`, counted like wrong passwords.
    async fn verify_two_factor(
        &self,
        ctx: &Context<'_>,
        challenge: String,
        code: String,
    ) -> async_graphql::Result<AuthPayload> {
        if challenge.len() > MAX_INPUT || code.len() > MAX_INPUT {
            return Err(from_login(hearth_domain::services::LoginError::InvalidCode));
        }
        services(ctx)
            .two_factor
            .verify(&challenge, &code, client(ctx))
            .await
            .map(AuthPayload::from)
            .map_err(from_login)
    }

    /// Requires (or stops requiring) two-factor login of every member of
    /// the tenant (Admin only, audited). Returns the new setting.
    async fn set_two_factor_required(
        &self,
        ctx: &Context<'_>,
        required: bool,
    ) -> async_graphql::Result<bool> {
        let principal = principal(ctx)?;
        services(ctx)
            .admin
            .set_two_factor_required(principal, required)
            .await
            .map_err(from_domain)
    }

    /// Removes a user's two-factor enrolment, e.g. after a lost phone
    /// (Admin only, audited; users of this tenant alone, not oneself).
    /// `false` when they had none.
    async fn reset_two_factor(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
    ) -> async_graphql::Result<bool> {
        let principal = principal(ctx)?;
        let user = parse_id::<UserId>(&user_id, "user")?;
        services(ctx)
            .admin
            .reset_two_factor(principal, user)
            .await
            .map_err(from_domain)
    }
}
