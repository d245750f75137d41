//! `login`, `switchTenant` and `me`.

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use hearth_domain::model;
use hearth_domain::services::{MeView, Session};

use super::error::{from_domain, from_login};
use super::{principal, services, BearerToken, ClientAddr};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "hearth_domain::model::Role")]
pub enum Role {
    Admin,
    Full,
    Limited,
    Basic,
    ReadOnly,
}

#[derive(SimpleObject, Clone)]
pub struct Tenant {
    pub id: ID,
    pub slug: String,
    pub name: String,
}

impl From<model::Tenant> for Tenant {
    fn from(t: model::Tenant) -> Self {
        Tenant {
            id: ID(t.id.to_string()),
            slug: t.slug.as_str().to_string(),
            name: t.name,
        }
    }
}

#[derive(SimpleObject)]
pub struct User {
    pub id: ID,
    pub email: String,
    pub display_name: String,
}

#[derive(SimpleObject)]
pub struct Membership {
    pub tenant: Tenant,
    pub role: Role,
}

#[derive(SimpleObject)]
pub struct Me {
    pub user: User,
    /// The tenant the token is bound to.
    pub tenant: Tenant,
    /// Role in the active tenant.
    pub role: Role,
    pub memberships: Vec<Membership>,
}

impl From<MeView> for Me {
    fn from(me: MeView) -> Self {
        Me {
            user: User {
                id: ID(me.user.id.to_string()),
                email: me.user.email.to_string(),
                display_name: me.user.display_name,
            },
            tenant: me.tenant.into(),
            role: me.role.into(),
            memberships: me
                .memberships
                .into_iter()
                .map(|m| Membership {
                    tenant: m.tenant.into(),
                    role: m.role.into(),
                })
                .collect(),
        }
    }
}

/// A bearer token bound to one tenant, and the refresh token that renews it.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Short-lived (15 minutes unless configured otherwise); send it as
    /// `Authorization: Bearer …`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// Opaque and single-use: `refreshToken(token:)` exchanges it for a new
    /// pair. Using one a second time ends the whole session.
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
    pub tenant: Tenant,
    pub role: Role,
}

impl From<Session> for AuthPayload {
    fn from(s: Session) -> Self {
        AuthPayload {
            token: s.token,
            expires_at: s.expires_at,
            refresh_token: s.refresh_token,
            refresh_expires_at: s.refresh_expires_at,
            tenant: s.tenant.into(),
            role: s.role.into(),
        }
    }
}

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The caller, their active tenant and role, and all their memberships.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let principal = principal(ctx)?;
        services(ctx)
            .auth
            .me(principal)
            .await
            .map(Me::from)
            .map_err(from_domain)
    }
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Exchanges email and password for a token bound to `tenantId` (an id or
    /// slug), or to the user's first membership when omitted. Repeated
    /// failures for an account or from an address are answered with
    /// `RATE_LIMITED` and `extensions.retryAfter` (seconds) for a while.
    /// An account with two-factor login gets no token yet: `challenge` and
    /// `twoFactorRequired` (or `twoFactorEnrolmentRequired`) say what next.
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        tenant_id: Option<ID>,
    ) -> async_graphql::Result<super::two_factor::LoginPayload> {
        if email.len() > 320 || password.len() > 1024 {
            return Err(from_login(
                hearth_domain::services::LoginError::InvalidCredentials,
            ));
        }
        // The TCP peer, when the transport knows it (HTTP); throttling then
        // also counts failures per address, not only per account.
        let client = ctx.data_opt::<ClientAddr>().map(|ClientAddr(ip)| *ip);
        services(ctx)
            .auth
            .begin_login(
                &email,
                &password,
                tenant_id.as_ref().map(|t| t.as_str()),
                client,
            )
            .await
            .map(super::two_factor::LoginPayload::from)
            .map_err(from_login)
    }

    /// Ends the caller's session: this login's access and refresh tokens stop
    /// working, open subscriptions included. With `allSessions: true`, every
    /// session of the caller ends (all their tokens, every tenant).
    async fn logout(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] all_sessions: bool,
    ) -> async_graphql::Result<bool> {
        let principal = principal(ctx)?;
        let token = ctx
            .data_opt::<BearerToken>()
            .map(|BearerToken(t)| t.clone())
            .unwrap_or_default();
        services(ctx)
            .auth
            .logout(principal, &token, all_sessions)
            .await
            .map(|()| true)
            .map_err(from_domain)
    }

    /// Exchanges a refresh token for a new access token and a new refresh
    /// token (the presented one is retired). `UNAUTHENTICATED` when it is
    /// unknown, expired or already used (a reuse also ends the session it
    /// belongs to), or when the user was disabled or removed from the
    /// tenant: log in again.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        token: String,
    ) -> async_graphql::Result<AuthPayload> {
        services(ctx)
            .auth
            .refresh(&token)
            .await
            .map(AuthPayload::from)
            .map_err(from_domain)
    }

    /// A new token for another tenant the caller is a member of.
    async fn switch_tenant(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
    ) -> async_graphql::Result<AuthPayload> {
        let principal = principal(ctx)?;
        services(ctx)
            .auth
            .switch_tenant(principal, tenant_id.as_str())
            .await
            .map(AuthPayload::from)
            .map_err(from_domain)
    }
}
