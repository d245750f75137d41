//! Platform operations (not a tenant's): `createTenant`, for platform
//! operators only (granted by `hearth operator grant`).

use async_graphql::{Context, Object, SimpleObject, ID};

use super::auth::Tenant;
use super::error::{bad_input, from_domain};
use super::{principal, services};

/// A new tenant and its first Admin; the password is shown once.
#[derive(SimpleObject)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub admin_id: ID,
    pub admin_email: String,
    /// The Admin's one-time password. Not shown again.
    pub one_time_password: String,
}

#[derive(Default)]
pub struct PlatformMutation;

#[Object]
impl PlatformMutation {
    /// Creates a tenant and its first Admin (a new user with a generated
    /// one-time password). Platform operators only: everyone else, tenant
    /// Admins included, is `FORBIDDEN`. A taken slug or email is `CONFLICT`.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        slug: String,
        name: String,
        admin_email: String,
    ) -> async_graphql::Result<CreatedTenant> {
        let principal = principal(ctx)?;
        if slug.len() > 256 || name.len() > 1024 || admin_email.len() > 320 {
            return Err(bad_input("slug, name or adminEmail too long"));
        }
        let created = services(ctx)
            .platform
            .create_tenant(principal, &slug, &name, &admin_email)
            .await
            .map_err(from_domain)?;
        Ok(CreatedTenant {
            tenant: created.tenant.into(),
            admin_id: ID(created.admin.id.to_string()),
            admin_email: created.admin.email.to_string(),
            one_time_password: created.one_time_password,
        })
    }
}
