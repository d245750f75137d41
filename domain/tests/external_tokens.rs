//! `AuthService::authenticate` with tokens of tenants' own identity
//! providers: mapped by identity link or verified email to a *member* of
//! the provider's tenant, with that membership's role and scope, and
//! `Unauthenticated` for everything else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use hearth_domain::model::{EmailAddress, Role, TenantSlug};
use hearth_domain::ports::{ExternalIdentity, ExternalTokenVerifier, TokenError};
use hearth_domain::principal::SystemPrincipal;
use hearth_domain::services::Services;
use hearth_domain::DomainError;
use support::{world, World};

const ISSUER: &str = "https://idp.example";

/// Vouches for `ext|tenant|subject|email` (email `-` for none); refuses
/// anything else.
struct StandInVerifier;

#[async_trait]
impl ExternalTokenVerifier for StandInVerifier {
    async fn verify(&self, token: &str) -> Result<ExternalIdentity, TokenError> {
        let parts: Vec<&str> = token.split('|').collect();
        let ["ext", tenant, subject, email] = parts[..] else {
            return Err(TokenError::Invalid);
        };
        Ok(ExternalIdentity {
            tenant: TenantSlug::new(tenant).map_err(|_| TokenError::Invalid)?,
            issuer: ISSUER.into(),
            subject: subject.into(),
            verified_email: (email != "-").then(|| EmailAddress::new(email).unwrap()),
            expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        })
    }
}

async fn setup() -> (World, Services) {
    let w = world().await;
    let services = w
        .services
        .clone()
        .with_external_tokens(Arc::new(StandInVerifier));
    (w, services)
}

#[tokio::test]
async fn a_linked_subject_authenticates_as_the_member_with_its_role_and_scope() {
    // Given acme's Full member scoped to north, linked to subject "s-1"
    let (w, services) = setup().await;
    let scoped = w.acme_north_full.clone();
    services
        .provisioning
        .link_identity(
            &SystemPrincipal::provisioner(),
            w.acme.tenant.id,
            ISSUER,
            "s-1",
            scoped.user_id,
        )
        .await
        .unwrap();

    // When acme's provider vouches for "s-1"
    let principal = services.auth.authenticate("ext|acme|s-1|-").await.unwrap();

    // Then it is that member, with exactly the membership's role and scope
    assert_eq!(principal, scoped);
}

#[tokio::test]
async fn a_verified_email_of_a_member_authenticates_with_that_membership() {
    // Given the guest: Basic in acme, Admin in globex
    let (w, services) = setup().await;
    let email = w.guest.email.as_str().to_owned();

    // When each tenant's provider vouches for the guest's verified email
    let in_acme = services
        .auth
        .authenticate(&format!("ext|acme|x|{email}"))
        .await
        .unwrap();
    let in_globex = services
        .auth
        .authenticate(&format!("ext|globex|x|{email}"))
        .await
        .unwrap();

    // Then each is the membership of that tenant, never the other's
    assert_eq!(
        (in_acme.tenant_id, in_acme.role),
        (w.acme.tenant.id, Role::Basic)
    );
    assert_eq!(
        (in_globex.tenant_id, in_globex.role),
        (w.globex.tenant.id, Role::Admin)
    );
}

#[tokio::test]
async fn a_provider_cannot_authenticate_someone_outside_its_tenant() {
    // Given acme's scoped member, a member of acme only, linked in acme
    let (w, services) = setup().await;
    let acme_only = w.acme_north_full.clone();
    services
        .provisioning
        .link_identity(
            &SystemPrincipal::provisioner(),
            w.acme.tenant.id,
            ISSUER,
            "s-1",
            acme_only.user_id,
        )
        .await
        .unwrap();

    // When globex's provider vouches for the same subject, or for that
    // user's verified email
    let by_subject = services.auth.authenticate("ext|globex|s-1|-").await;
    let by_email = services
        .auth
        .authenticate(&format!("ext|globex|y|{}", acme_only.email.as_str()))
        .await;

    // Then neither gets in: links are per tenant, and email needs membership
    assert!(
        matches!(by_subject, Err(DomainError::Unauthenticated)),
        "{by_subject:?}"
    );
    assert!(
        matches!(by_email, Err(DomainError::Unauthenticated)),
        "{by_email:?}"
    );
}

#[tokio::test]
async fn unknown_subjects_tenants_and_refused_tokens_are_all_unauthenticated() {
    let (_w, services) = setup().await;
    for token in [
        // an unlinked subject without an email
        "ext|acme|nobody|-",
        // a verified email no user has
        "ext|acme|nobody|nobody@nowhere.test",
        // a provider of a tenant that does not exist
        "ext|initech|s-1|-",
        // what the verifier refuses
        "not-a-token",
    ] {
        // When it is presented, Then it is refused without detail
        let result = services.auth.authenticate(token).await;
        assert!(
            matches!(result, Err(DomainError::Unauthenticated)),
            "{token}: {result:?}"
        );
    }
}

#[tokio::test]
async fn without_a_verifier_external_tokens_are_refused_and_own_tokens_still_work() {
    // Given the services without external tokens
    let w = world().await;

    // When an external token is presented, Then it is refused
    let email = w.guest.email.as_str().to_owned();
    let result = w
        .services
        .auth
        .authenticate(&format!("ext|acme|x|{email}"))
        .await;
    assert!(matches!(result, Err(DomainError::Unauthenticated)));

    // And with a verifier, Hearth's own tokens still authenticate
    let (w, services) = setup().await;
    let (token, _) = hearth_domain::ports::TokenService::issue(
        w.tokens.as_ref(),
        w.guest.user_id,
        w.acme.tenant.id,
        None,
    )
    .unwrap();
    let principal = services.auth.authenticate(&token).await.unwrap();
    assert_eq!(principal.user_id, w.guest.user_id);
}

#[tokio::test]
async fn a_link_needs_a_membership_and_sane_values() {
    let (w, services) = setup().await;
    let provisioner = SystemPrincipal::provisioner();
    let acme_only = w.acme_north_full.user_id;

    // When a user is linked in a tenant they are not a member of
    let outsider = services
        .provisioning
        .link_identity(&provisioner, w.globex.tenant.id, ISSUER, "s", acme_only)
        .await;
    // Then it is bad input
    assert!(
        matches!(outsider, Err(DomainError::InvalidInput(_))),
        "{outsider:?}"
    );

    // When the subject is empty or the issuer absurdly long
    let empty = services
        .provisioning
        .link_identity(&provisioner, w.acme.tenant.id, ISSUER, "", acme_only)
        .await;
    let long = services
        .provisioning
        .link_identity(
            &provisioner,
            w.acme.tenant.id,
            &"x".repeat(600),
            "s",
            acme_only,
        )
        .await;
    // Then both are bad input
    assert!(matches!(empty, Err(DomainError::InvalidInput(_))));
    assert!(matches!(long, Err(DomainError::InvalidInput(_))));
}
