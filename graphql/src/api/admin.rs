//! Administration (DESIGN.md, "GraphQL contract"): `users`, `createUser`,
//! `setMembership`, `removeMembership`, `addGuest`, `disableUser`,
//! `enableUser`, `resetPassword`, `deleteUser`, `roles`, `areas`,
//! `createArea`, `renameArea`, `moveArea`, `deleteArea`, `createDevice`,
//! `updateDevice`, `deleteDevice`. Every decision is the admin use case's;
//! this module only converts arguments and results.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use hearth_domain::model::{self, DeviceScope, Endpoint};
use hearth_domain::services::{AdminService, DeviceInput as DomainDeviceInput, NewUser, UserView};
use hearth_domain::{AreaId, DeviceId, ProfileId, UserId};

use super::auth::Role;
use super::devices::{Area, Device};
use super::error::{bad_input, from_domain};
use super::{parse_id, principal, services};

/// Which devices of the tenant a membership covers.
#[derive(SimpleObject)]
pub struct Scope {
    pub all_devices: bool,
    /// Granted areas (each covering its subtree); empty with `allDevices`.
    pub area_ids: Vec<ID>,
    /// Single granted devices; empty with `allDevices`.
    pub device_ids: Vec<ID>,
}

impl From<DeviceScope> for Scope {
    fn from(scope: DeviceScope) -> Self {
        match scope {
            DeviceScope::All => Scope {
                all_devices: true,
                area_ids: Vec::new(),
                device_ids: Vec::new(),
            },
            DeviceScope::Restricted { areas, devices } => Scope {
                all_devices: false,
                area_ids: areas.iter().map(|a| ID(a.to_string())).collect(),
                device_ids: devices.iter().map(|d| ID(d.to_string())).collect(),
            },
        }
    }
}

/// A scope to set: every device (`allDevices: true`, lists ignored), or the
/// listed areas with their subtrees plus the listed devices.
#[derive(InputObject)]
pub struct ScopeInput {
    pub all_devices: bool,
    pub area_ids: Option<Vec<ID>>,
    pub device_ids: Option<Vec<ID>>,
}

/// Most ids one scope may list (the use case checks each exists).
const MAX_SCOPE_IDS: usize = 1_000;

impl ScopeInput {
    fn into_domain(self) -> async_graphql::Result<DeviceScope> {
        if self.all_devices {
            return Ok(DeviceScope::All);
        }
        let areas = self.area_ids.unwrap_or_default();
        let devices = self.device_ids.unwrap_or_default();
        if areas.len() + devices.len() > MAX_SCOPE_IDS {
            return Err(bad_input(format!(
                "a scope lists at most {MAX_SCOPE_IDS} ids"
            )));
        }
        Ok(DeviceScope::Restricted {
            areas: areas
                .iter()
                .map(|a| parse_id::<AreaId>(a, "area"))
                .collect::<Result<_, _>>()?,
            devices: devices
                .iter()
                .map(|d| parse_id::<DeviceId>(d, "device"))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A member of the active tenant as its Admin sees them.
#[derive(SimpleObject)]
pub struct TenantUser {
    pub id: ID,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub scope: Scope,
    pub disabled: bool,
    /// Also a member of other tenants (a guest here, or with guest access
    /// elsewhere): their account is not this tenant's to disable or delete.
    pub has_other_tenants: bool,
}

impl From<UserView> for TenantUser {
    fn from(v: UserView) -> Self {
        TenantUser {
            id: ID(v.user.id.to_string()),
            email: v.user.email.to_string(),
            display_name: v.user.display_name,
            role: v.role.into(),
            scope: v.scope.into(),
            disabled: v.user.disabled,
            has_other_tenants: v.has_other_tenants,
        }
    }
}

#[derive(SimpleObject)]
pub struct UserConnectionFields {
    pub total_count: u64,
}

/// A created user; `oneTimePassword` is set (and shown only now) when no
/// password was given.
#[derive(SimpleObject)]
pub struct CreateUserPayload {
    pub user: TenantUser,
    pub one_time_password: Option<String>,
}

/// A replaced password; `oneTimePassword` as for `createUser`.
#[derive(SimpleObject)]
pub struct ResetPasswordPayload {
    pub one_time_password: Option<String>,
}

/// One row of the "compare roles" table, read from the policy.
#[derive(SimpleObject)]
pub struct RoleCapabilities {
    pub role: Role,
    /// Capability names: view, acknowledge, write_basic, write_limited,
    /// write_full, manage_devices, manage_users.
    pub capabilities: Vec<String>,
}

#[derive(InputObject)]
pub struct CreateUserInput {
    pub email: String,
    pub display_name: String,
    /// Omitted: a one-time password is generated and returned once.
    pub password: Option<String>,
    pub role: Role,
    pub scope: ScopeInput,
}

#[derive(InputObject)]
pub struct EndpointInput {
    pub host: String,
    pub port: i32,
    pub unit_id: i64,
}

#[derive(InputObject)]
pub struct DeviceInput {
    pub name: String,
    pub area_id: Option<ID>,
    pub profile_id: String,
    pub endpoint: EndpointInput,
}

impl DeviceInput {
    fn into_domain(self) -> async_graphql::Result<DomainDeviceInput> {
        let port = u16::try_from(self.endpoint.port)
            .map_err(|_| bad_input("`port` must be 1 to 65535"))?;
        let unit = u32::try_from(self.endpoint.unit_id)
            .map_err(|_| bad_input("`unitId` is out of range"))?;
        let endpoint =
            Endpoint::new(self.endpoint.host, port, unit).map_err(|e| bad_input(e.to_string()))?;
        Ok(DomainDeviceInput {
            name: self.name,
            area_id: self
                .area_id
                .as_ref()
                .map(|a| parse_id::<AreaId>(a, "area"))
                .transpose()?,
            profile_id: ProfileId::new(self.profile_id).map_err(|e| bad_input(e.to_string()))?,
            endpoint,
        })
    }
}

fn area(a: model::Area) -> Area {
    Area {
        id: ID(a.id.to_string()),
        name: a.name,
        parent_id: a.parent_id.map(|p| ID(p.to_string())),
    }
}

#[derive(Default)]
pub struct AdminQueries;

#[Object]
impl AdminQueries {
    /// Members of the active tenant with role and scope (Admin only).
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 200 (50 when omitted).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, TenantUser, UserConnectionFields, EmptyFields>>
    {
        let principal = principal(ctx)?;
        let first = first.unwrap_or(50);
        if first < 1 || i64::from(first) > AdminService::MAX_PAGE as i64 {
            return Err(bad_input(format!(
                "`first` must be 1 to {}",
                AdminService::MAX_PAGE
            )));
        }
        let offset = match after {
            None => 0,
            Some(cursor) => cursor
                .parse::<u64>()
                .map(|c| c.saturating_add(1))
                .map_err(|_| bad_input("`after` is not a cursor from this connection"))?,
        };
        let page = services(ctx)
            .admin
            .users(principal, offset, first as u64)
            .await
            .map_err(from_domain)?;
        let end = offset + page.items.len() as u64;
        let mut connection = Connection::with_additional_fields(
            offset > 0,
            end < page.total,
            UserConnectionFields {
                total_count: page.total,
            },
        );
        connection.edges.extend(
            page.items
                .into_iter()
                .enumerate()
                .map(|(i, v)| Edge::new((offset + i as u64).to_string(), TenantUser::from(v))),
        );
        Ok(connection)
    }

    /// What each role may do, read from the access policy.
    async fn roles(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RoleCapabilities>> {
        let principal = principal(ctx)?;
        let table = services(ctx)
            .admin
            .roles(principal)
            .await
            .map_err(from_domain)?;
        Ok(table
            .into_iter()
            .map(|r| RoleCapabilities {
                role: r.role.into(),
                capabilities: r.capabilities,
            })
            .collect())
    }

    /// The tenant's areas, flat, each with its parent: all of them for
    /// members covering the tenant, else the granted subtrees.
    async fn areas(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Area>> {
        let principal = principal(ctx)?;
        let areas = services(ctx)
            .admin
            .areas(principal)
            .await
            .map_err(from_domain)?;
        Ok(areas.into_iter().map(area).collect())
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Creates a user of the active tenant (Admin only).
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        input: CreateUserInput,
    ) -> async_graphql::Result<CreateUserPayload> {
        let principal = principal(ctx)?;
        if input.email.len() > 320 || input.password.as_ref().is_some_and(|p| p.len() > 1024) {
            return Err(bad_input("email or password too long"));
        }
        let created = services(ctx)
            .admin
            .create_user(
                principal,
                NewUser {
                    email: input.email,
                    display_name: input.display_name,
                    password: input.password,
                    role: input.role.into(),
                    scope: input.scope.into_domain()?,
                },
            )
            .await
            .map_err(from_domain)?;
        Ok(CreateUserPayload {
            user: created.user.into(),
            one_time_password: created.one_time_password,
        })
    }

    /// Changes a member's role and device scope (Admin only).
    async fn set_membership(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: Role,
        scope: ScopeInput,
    ) -> async_graphql::Result<TenantUser> {
        let principal = principal(ctx)?;
        let user = parse_id::<UserId>(&user_id, "user")?;
        services(ctx)
            .admin
            .set_membership(principal, user, role.into(), scope.into_domain()?)
            .await
            .map(TenantUser::from)
            .map_err(from_domain)
    }

    /// Removes a member (or guest) from the active tenant (Admin only).
    async fn remove_membership(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
    ) -> async_graphql::Result<bool> {
        let principal = principal(ctx)?;
        let user = parse_id::<UserId>(&user_id, "user")?;
        services(ctx)
            .admin
            .remove_membership(principal, user)
            .await
            .map_err(from_domain)
    }

    /// Gives an existing user of another tenant a membership (Admin only).
    async fn add_guest(
        &self,
        ctx: &Context<'_>,
        email: String,
        role: Role,
        scope: ScopeInput,
    ) -> async_graphql::Result<TenantUser> {
        let principal = principal(ctx)?;
        if email.len() > 320 {
            return Err(bad_input("email too long"));
        }
        services(ctx)
            .admin
            .add_guest(principal, &email, role.into(), scope.into_domain()?)
            .await
            .map(TenantUser::from)
            .map_err(from_domain)
    }

    /// Disables a user of this tenant: no login, and their tokens stop
    /// working on the next request (Admin only).
    async fn disable_user(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
    ) -> async_graphql::Result<TenantUser> {
        let principal = principal(ctx)?;
        let user = parse_id::<UserId>(&user_id, "user")?;
        services(ctx)
            .admin
            .set_user_disabled(principal, user, true)
            .await
            .map(TenantUser::from)
            .map_err(from_domain)
    }

    /// Re-enables a disabled user of this tenant (Admin only).
    async fn enable_user(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
    ) -> async_graphql::Result<TenantUser> {
        let principal = principal(ctx)?;
        let user = parse_id::<UserId>(&user_id, "user")?;
        services(ctx)
            .admin
            .set_user_disabled(principal, user, false)
            .await
            .map(TenantUser::from)
            .map_err(from_domain)
    }

    /// Sets a user's password, or a generated one-time password when
    /// omitted (Admin only, users of this tenant alone).
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        password: Option<String>,
    ) -> async_graphql::Result<ResetPasswordPayload> {
        let principal = principal(ctx)?;
        let user = parse_id::<UserId>(&user_id, "user")?;
        if password.as_ref().is_some_and(|p| p.len() > 1024) {
            return Err(bad_input("password too long"));
        }
        services(ctx)
            .admin
            .reset_password(principal, user, password)
            .await
            .map(|one_time_password| ResetPasswordPayload { one_time_password })
            .map_err(from_domain)
    }

    /// Deletes a user of this tenant alone, with their account (Admin only).
    async fn delete_user(&self, ctx: &Context<'_>, user_id: ID) -> async_graphql::Result<bool> {
        let principal = principal(ctx)?;
        let user = parse_id::<UserId>(&user_id, "user")?;
        services(ctx)
            .admin
            .delete_user(principal, user)
            .await
            .map_err(from_domain)
    }

    /// A new area, at the top or under `parentId` (at most 6 levels).
    async fn create_area(
        &self,
        ctx: &Context<'_>,
        name: String,
        parent_id: Option<ID>,
    ) -> async_graphql::Result<Area> {
        let principal = principal(ctx)?;
        let parent = parent_id
            .as_ref()
            .map(|p| parse_id::<AreaId>(p, "area"))
            .transpose()?;
        services(ctx)
            .admin
            .create_area(principal, &name, parent)
            .await
            .map(area)
            .map_err(from_domain)
    }

    async fn rename_area(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: String,
    ) -> async_graphql::Result<Area> {
        let principal = principal(ctx)?;
        let id = parse_id::<AreaId>(&id, "area")?;
        services(ctx)
            .admin
            .rename_area(principal, id, &name)
            .await
            .map(area)
            .map_err(from_domain)
    }

    /// Moves an area with its subtree under `parentId` (or to the top when
    /// omitted); a cycle or more than 6 levels is `BAD_USER_INPUT`.
    async fn move_area(
        &self,
        ctx: &Context<'_>,
        id: ID,
        parent_id: Option<ID>,
    ) -> async_graphql::Result<Area> {
        let principal = principal(ctx)?;
        let id = parse_id::<AreaId>(&id, "area")?;
        let parent = parent_id
            .as_ref()
            .map(|p| parse_id::<AreaId>(p, "area"))
            .transpose()?;
        services(ctx)
            .admin
            .move_area(principal, id, parent)
            .await
            .map(area)
            .map_err(from_domain)
    }

    /// Deletes an empty area; one with child areas or devices is `CONFLICT`.
    async fn delete_area(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let principal = principal(ctx)?;
        let id = parse_id::<AreaId>(&id, "area")?;
        services(ctx)
            .admin
            .delete_area(principal, id)
            .await
            .map_err(from_domain)
    }

    /// A new device; the poller starts polling it at once.
    async fn create_device(
        &self,
        ctx: &Context<'_>,
        input: DeviceInput,
    ) -> async_graphql::Result<Device> {
        let principal = principal(ctx)?;
        let s = services(ctx);
        let device = s
            .admin
            .create_device(principal, input.into_domain()?)
            .await
            .map_err(from_domain)?;
        s.devices
            .device(principal, device.id)
            .await
            .map(Device::from)
            .map_err(from_domain)
    }

    /// Replaces a device's name, area, profile and endpoint.
    async fn update_device(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: DeviceInput,
    ) -> async_graphql::Result<Device> {
        let principal = principal(ctx)?;
        let id = parse_id::<DeviceId>(&id, "device")?;
        let s = services(ctx);
        let device = s
            .admin
            .update_device(principal, id, input.into_domain()?)
            .await
            .map_err(from_domain)?;
        s.devices
            .device(principal, device.id)
            .await
            .map(Device::from)
            .map_err(from_domain)
    }

    async fn delete_device(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let principal = principal(ctx)?;
        let id = parse_id::<DeviceId>(&id, "device")?;
        services(ctx)
            .admin
            .delete_device(principal, id)
            .await
            .map_err(from_domain)
    }
}
