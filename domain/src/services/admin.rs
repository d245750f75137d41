//! Administration of one tenant by its members (DESIGN.md, "Access model"):
//! users, guests, roles and device scopes (Admin only, `manage_users`), and
//! the area tree and devices (Admin and unscoped Full, `manage_tenant`).
//!
//! Every change is authorized through the policy and audited with who did
//! it, what, and the state before and after. A changed membership or a
//! disabled user drops the affected cached principals at once, so the
//! change holds on that user's next request; a changed device wakes the
//! poller instead of waiting for its periodic reload.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use rand::distributions::{Alphanumeric, DistString};
use tokio::sync::Notify;

use super::access::covers_tenant;
use super::audit::AuditTrail;
use super::auth::AuthService;
use super::Policy;
use crate::error::{DomainError, InvalidValue};
use crate::ids::{AreaId, DeviceId, ProfileId, TenantId, UserId};
use crate::model::{
    Area, AreaTree, AuditEntry, AuditOutcome, Device, DeviceScope, EmailAddress, Endpoint,
    Membership, Role, User,
};
use crate::ports::{
    Action, AreaRepository, DeviceFilter, DeviceRepository, DocumentStore, FieldGateway, Page,
    RoleCapabilities, TwoFactorRepository, UserRepository,
};
use crate::principal::Principal;

/// A member of the tenant as the admin sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct UserView {
    pub user: User,
    pub role: Role,
    pub scope: DeviceScope,
    /// Whether the user also belongs to other tenants (a guest here, or
    /// somebody who has guests elsewhere): their account is not this
    /// tenant's to disable, delete or reset.
    pub has_other_tenants: bool,
}

/// What `create_user` needs.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    /// `None`: a one-time password is generated and returned once.
    pub password: Option<String>,
    pub role: Role,
    pub scope: DeviceScope,
}

/// A created user, with the generated one-time password when none was given.
#[derive(Debug, Clone)]
pub struct CreatedUser {
    pub user: UserView,
    pub one_time_password: Option<String>,
}

/// What `create_device` and `update_device` need.
#[derive(Debug, Clone)]
pub struct DeviceInput {
    pub name: String,
    pub area_id: Option<AreaId>,
    pub profile_id: ProfileId,
    pub endpoint: Endpoint,
}

/// Users, memberships, areas and devices of the caller's tenant.
#[derive(Clone)]
pub struct AdminService {
    users: Arc<dyn UserRepository>,
    areas: Arc<dyn AreaRepository>,
    devices: Arc<dyn DeviceRepository>,
    documents: Arc<dyn DocumentStore>,
    field: Arc<dyn FieldGateway>,
    policy: Policy,
    audit: AuditTrail,
    auth: AuthService,
    device_changes: Arc<Notify>,
    two_factor: Arc<dyn TwoFactorRepository>,
}

impl AdminService {
    /// Deepest an area tree may be: a root area is at level 1.
    pub const MAX_AREA_DEPTH: usize = 6;
    /// Longest user display name, area name or device name.
    pub const MAX_NAME_LEN: usize = 200;
    /// Shortest and longest password an admin may set.
    pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=256;
    /// Most users one page may hold.
    pub const MAX_PAGE: u64 = 200;
    /// Length of a generated one-time password (alphanumeric, ~119 bits).
    const ONE_TIME_PASSWORD_LEN: usize = 20;

    #[allow(clippy::too_many_arguments)] // one per port it uses
    pub(crate) fn new(
        users: Arc<dyn UserRepository>,
        areas: Arc<dyn AreaRepository>,
        devices: Arc<dyn DeviceRepository>,
        documents: Arc<dyn DocumentStore>,
        field: Arc<dyn FieldGateway>,
        policy: Policy,
        audit: AuditTrail,
        auth: AuthService,
        device_changes: Arc<Notify>,
        two_factor: Arc<dyn TwoFactorRepository>,
    ) -> Self {
        Self {
            users,
            areas,
            devices,
            documents,
            field,
            policy,
            audit,
            auth,
            device_changes,
            two_factor,
        }
    }

    // ------------------------------------------------------------- roles

    /// The "compare roles" table, read from the policy. Every member may
    /// see it (it says what roles mean, nothing about the tenant).
    pub async fn roles(&self, principal: &Principal) -> Result<Vec<RoleCapabilities>, DomainError> {
        self.policy.require_tenant(principal, Action::View)?;
        Ok(self.policy.role_capabilities())
    }

    // ------------------------------------------------------------- users

    /// The tenant's members, oldest membership first, with role and scope.
    pub async fn users(
        &self,
        principal: &Principal,
        offset: u64,
        limit: u64,
    ) -> Result<Page<UserView>, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        if limit == 0 || limit > Self::MAX_PAGE {
            return Err(
                InvalidValue::new("first", format!("must be 1 to {}", Self::MAX_PAGE)).into(),
            );
        }
        let members = self.users.memberships_in(principal.tenant_id).await?;
        let total = members.len() as u64;
        let mut items = Vec::new();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        for m in members.into_iter().skip(start).take(take) {
            if let Some(view) = self.view(m).await? {
                items.push(view);
            }
        }
        Ok(Page { items, total })
    }

    /// Creates a user of this tenant with a membership. Without a password
    /// a one-time password is generated and returned (shown once).
    pub async fn create_user(
        &self,
        principal: &Principal,
        input: NewUser,
    ) -> Result<CreatedUser, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        let email = EmailAddress::new(&input.email)?;
        let display_name = check_name("display name", &input.display_name)?;
        let scope = self.check_scope(principal.tenant_id, input.scope).await?;
        let (password, one_time_password) = match input.password {
            Some(p) => (check_password(p)?, None),
            None => {
                let p = Alphanumeric
                    .sample_string(&mut rand::thread_rng(), Self::ONE_TIME_PASSWORD_LEN);
                (p.clone(), Some(p))
            }
        };
        let hash = self.auth.hash_password(&password).await?;
        let user = User {
            id: UserId::new(),
            email,
            display_name,
            password_hash: Some(hash),
            disabled: false,
            tokens_valid_from: None,
        };
        self.users.insert_user(&user).await?;
        let membership = Membership {
            user_id: user.id,
            tenant_id: principal.tenant_id,
            role: input.role,
            scope,
        };
        self.users.upsert_membership(&membership).await?;
        self.record(
            principal,
            "create_user",
            None,
            format!(
                "user {} ({}): before: none; after: {}",
                user.id,
                user.email,
                describe(&membership)
            ),
        )
        .await;
        Ok(CreatedUser {
            user: UserView {
                user,
                role: membership.role,
                scope: membership.scope,
                has_other_tenants: false,
            },
            one_time_password,
        })
    }

    /// Changes the role and scope of a member of this tenant. Refused when it
    /// would leave the tenant without an Admin.
    pub async fn set_membership(
        &self,
        principal: &Principal,
        user: UserId,
        role: Role,
        scope: DeviceScope,
    ) -> Result<UserView, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        let before = self.member(principal.tenant_id, user).await?;
        let scope = self.check_scope(principal.tenant_id, scope).await?;
        if before.role == Role::Admin && role != Role::Admin {
            self.keep_an_admin(principal.tenant_id, user).await?;
        }
        let after = Membership {
            role,
            scope,
            ..before.clone()
        };
        self.users.upsert_membership(&after).await?;
        self.auth.forget_principal(user, principal.tenant_id);
        self.record(
            principal,
            "set_membership",
            None,
            format!(
                "user {user}: before: {}; after: {}",
                describe(&before),
                describe(&after)
            ),
        )
        .await;
        self.view(after)
            .await?
            .ok_or_else(|| DomainError::NotFound("user".into()))
    }

    /// Removes a member (a guest, or a user of this tenant) from the tenant.
    /// Their account stays; tokens for this tenant stop working.
    pub async fn remove_membership(
        &self,
        principal: &Principal,
        user: UserId,
    ) -> Result<bool, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        let before = self.member(principal.tenant_id, user).await?;
        if before.role == Role::Admin {
            self.keep_an_admin(principal.tenant_id, user).await?;
        }
        let removed = self
            .users
            .remove_membership(user, principal.tenant_id)
            .await?;
        self.auth.forget_principal(user, principal.tenant_id);
        self.record(
            principal,
            "remove_membership",
            None,
            format!("user {user}: before: {}; after: none", describe(&before)),
        )
        .await;
        Ok(removed)
    }

    /// Gives an existing user (usually of another tenant) a membership here.
    pub async fn add_guest(
        &self,
        principal: &Principal,
        email: &str,
        role: Role,
        scope: DeviceScope,
    ) -> Result<UserView, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        let email = EmailAddress::new(email)?;
        let scope = self.check_scope(principal.tenant_id, scope).await?;
        let user = self
            .users
            .user_by_email(&email)
            .await?
            .ok_or_else(|| DomainError::NotFound("user".into()))?;
        if self
            .users
            .membership(user.id, principal.tenant_id)
            .await?
            .is_some()
        {
            return Err(DomainError::Conflict(
                "the user is already a member of this tenant".into(),
            ));
        }
        let membership = Membership {
            user_id: user.id,
            tenant_id: principal.tenant_id,
            role,
            scope,
        };
        self.users.upsert_membership(&membership).await?;
        self.record(
            principal,
            "add_guest",
            None,
            format!(
                "user {} ({}): before: none; after: {}",
                user.id,
                user.email,
                describe(&membership)
            ),
        )
        .await;
        self.view(membership)
            .await?
            .ok_or_else(|| DomainError::NotFound("user".into()))
    }

    /// Disables (or re-enables) a user of this tenant: a disabled user can
    /// neither log in nor use a token they hold.
    pub async fn set_user_disabled(
        &self,
        principal: &Principal,
        user: UserId,
        disabled: bool,
    ) -> Result<UserView, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        let membership = self.own_account(principal, user).await?;
        if disabled && membership.role == Role::Admin {
            self.keep_an_admin(principal.tenant_id, user).await?;
        }
        self.users.set_disabled(user, disabled).await?;
        self.auth.forget_principal(user, principal.tenant_id);
        self.record(
            principal,
            if disabled {
                "disable_user"
            } else {
                "enable_user"
            },
            None,
            format!(
                "user {user}: before: disabled={}; after: disabled={disabled}",
                !disabled
            ),
        )
        .await;
        self.view(membership)
            .await?
            .ok_or_else(|| DomainError::NotFound("user".into()))
    }

    /// Sets a new password for a user of this tenant. Without one a
    /// one-time password is generated and returned (shown once).
    pub async fn reset_password(
        &self,
        principal: &Principal,
        user: UserId,
        password: Option<String>,
    ) -> Result<Option<String>, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        self.own_account(principal, user).await?;
        let (password, one_time) = match password {
            Some(p) => (check_password(p)?, None),
            None => {
                let p = Alphanumeric
                    .sample_string(&mut rand::thread_rng(), Self::ONE_TIME_PASSWORD_LEN);
                (p.clone(), Some(p))
            }
        };
        let hash = self.auth.hash_password(&password).await?;
        self.users.set_password(user, &hash).await?;
        self.record(
            principal,
            "reset_password",
            None,
            format!("user {user}: password replaced"),
        )
        .await;
        Ok(one_time)
    }

    /// Deletes a user of this tenant with their account.
    pub async fn delete_user(
        &self,
        principal: &Principal,
        user: UserId,
    ) -> Result<bool, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        let membership = self.own_account(principal, user).await?;
        if membership.role == Role::Admin {
            self.keep_an_admin(principal.tenant_id, user).await?;
        }
        let deleted = self.users.delete_user(user).await?;
        self.auth.forget_principal(user, principal.tenant_id);
        self.record(
            principal,
            "delete_user",
            None,
            format!(
                "user {user}: before: {}; after: none",
                describe(&membership)
            ),
        )
        .await;
        Ok(deleted)
    }

    // -------------------------------------------------------- two-factor

    /// Requires (or stops requiring) two-factor login of every member of
    /// the tenant. Members without an enrolment must enrol at their next
    /// login; sessions already open go on. Returns the new setting.
    pub async fn set_two_factor_required(
        &self,
        principal: &Principal,
        required: bool,
    ) -> Result<bool, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        let before = self
            .two_factor
            .two_factor_required(principal.tenant_id)
            .await?;
        if !self
            .two_factor
            .set_two_factor_required(principal.tenant_id, required)
            .await?
        {
            return Err(DomainError::NotFound("tenant".into()));
        }
        self.record(
            principal,
            "set_two_factor_required",
            None,
            format!("tenant: before: two_factor_required={before}; after: two_factor_required={required}"),
        )
        .await;
        Ok(required)
    }

    /// Removes a user's two-factor enrolment (a lost phone): they log in
    /// with their password again, or enrol anew where it is required. The
    /// same refusals as `reset_password`: not one's own account, not a
    /// guest whose account belongs to other tenants too. `false` when the
    /// user had no enrolment.
    pub async fn reset_two_factor(
        &self,
        principal: &Principal,
        user: UserId,
    ) -> Result<bool, DomainError> {
        self.policy.require_tenant(principal, Action::ManageUsers)?;
        self.own_account(principal, user).await?;
        let removed = self.two_factor.delete_two_factor(user).await?;
        self.record(
            principal,
            "reset_two_factor",
            None,
            format!("user {user}: before: enrolled={removed}; after: enrolled=false"),
        )
        .await;
        Ok(removed)
    }

    // ------------------------------------------------------------- areas

    /// The tenant's areas, flat: all of them for members covering the
    /// tenant, else the granted areas with their subtrees.
    pub async fn areas(&self, principal: &Principal) -> Result<Vec<Area>, DomainError> {
        self.policy.require_tenant(principal, Action::View)?;
        let areas = self.areas.areas(principal.tenant_id).await?;
        match &principal.scope {
            _ if covers_tenant(principal.role, &principal.scope) => Ok(areas),
            DeviceScope::All => Ok(areas),
            DeviceScope::Restricted { areas: granted, .. } => {
                let visible = AreaTree::new(&areas).subtree(granted);
                Ok(areas
                    .into_iter()
                    .filter(|a| visible.contains(&a.id))
                    .collect())
            }
        }
    }

    pub async fn create_area(
        &self,
        principal: &Principal,
        name: &str,
        parent: Option<AreaId>,
    ) -> Result<Area, DomainError> {
        self.policy
            .require_tenant(principal, Action::ManageTenant)?;
        let name = check_name("area name", name)?;
        let areas = self.areas.areas(principal.tenant_id).await?;
        let tree = AreaTree::new(&areas);
        if let Some(parent) = parent {
            if !tree.contains(parent) {
                return Err(InvalidValue::new("parentId", "no such area").into());
            }
            if tree.path(parent).len() + 1 > Self::MAX_AREA_DEPTH {
                return Err(too_deep());
            }
        }
        let area = Area {
            id: AreaId::new(),
            tenant_id: principal.tenant_id,
            parent_id: parent,
            name,
        };
        self.areas.insert_area(&area).await?;
        self.record(
            principal,
            "create_area",
            None,
            format!(
                "area {}: before: none; after: {}",
                area.id,
                describe_area(&area)
            ),
        )
        .await;
        Ok(area)
    }

    pub async fn rename_area(
        &self,
        principal: &Principal,
        id: AreaId,
        name: &str,
    ) -> Result<Area, DomainError> {
        self.policy
            .require_tenant(principal, Action::ManageTenant)?;
        let name = check_name("area name", name)?;
        let (before, _) = self.area(principal.tenant_id, id).await?;
        let after = Area {
            name,
            ..before.clone()
        };
        self.replace_area(principal, "rename_area", &before, after)
            .await
    }

    /// Moves an area (with its subtree) under another parent, or to the top.
    /// Refused when the parent lies inside the area's own subtree (a cycle)
    /// or the subtree would end up deeper than [`Self::MAX_AREA_DEPTH`].
    pub async fn move_area(
        &self,
        principal: &Principal,
        id: AreaId,
        parent: Option<AreaId>,
    ) -> Result<Area, DomainError> {
        self.policy
            .require_tenant(principal, Action::ManageTenant)?;
        let (before, areas) = self.area(principal.tenant_id, id).await?;
        let tree = AreaTree::new(&areas);
        let subtree = tree.subtree(&[id]);
        let parent_depth = match parent {
            None => 0,
            Some(p) if !tree.contains(p) => {
                return Err(InvalidValue::new("parentId", "no such area").into())
            }
            Some(p) if subtree.contains(&p) => {
                return Err(InvalidValue::new(
                    "parentId",
                    "an area cannot move below itself or its own descendants",
                )
                .into())
            }
            Some(p) => tree.path(p).len(),
        };
        // How many levels the moved subtree spans, the area itself included.
        let own_depth = tree.path(id).len();
        let height = subtree
            .iter()
            .map(|a| tree.path(*a).len() + 1 - own_depth)
            .max()
            .unwrap_or(1);
        if parent_depth + height > Self::MAX_AREA_DEPTH {
            return Err(too_deep());
        }
        let after = Area {
            parent_id: parent,
            ..before.clone()
        };
        self.replace_area(principal, "move_area", &before, after)
            .await
    }

    /// Deletes an area that has neither child areas nor devices.
    pub async fn delete_area(
        &self,
        principal: &Principal,
        id: AreaId,
    ) -> Result<bool, DomainError> {
        self.policy
            .require_tenant(principal, Action::ManageTenant)?;
        let (before, areas) = self.area(principal.tenant_id, id).await?;
        if areas.iter().any(|a| a.parent_id == Some(id)) {
            return Err(DomainError::Conflict("the area has child areas".into()));
        }
        let filter = DeviceFilter {
            areas: Some(vec![id]),
            ..DeviceFilter::default()
        };
        if self
            .devices
            .devices(principal.tenant_id, &filter, 0, 1)
            .await?
            .total
            > 0
        {
            return Err(DomainError::Conflict("the area has devices".into()));
        }
        let deleted = self.areas.delete_area(principal.tenant_id, id).await?;
        self.record(
            principal,
            "delete_area",
            None,
            format!("area {id}: before: {}; after: none", describe_area(&before)),
        )
        .await;
        Ok(deleted)
    }

    // ----------------------------------------------------------- devices

    pub async fn create_device(
        &self,
        principal: &Principal,
        input: DeviceInput,
    ) -> Result<Device, DomainError> {
        self.policy
            .require_tenant(principal, Action::ManageTenant)?;
        let device = self
            .check_device(principal.tenant_id, DeviceId::new(), input)
            .await?;
        self.devices.insert_device(&device).await?;
        self.device_changes.notify_one();
        self.record(
            principal,
            "create_device",
            Some(device.id),
            format!("before: none; after: {}", describe_device(&device)),
        )
        .await;
        Ok(device)
    }

    /// Replaces a device's name, area, profile and endpoint.
    pub async fn update_device(
        &self,
        principal: &Principal,
        id: DeviceId,
        input: DeviceInput,
    ) -> Result<Device, DomainError> {
        self.policy
            .require_tenant(principal, Action::ManageTenant)?;
        let before = self
            .devices
            .device(principal.tenant_id, id)
            .await?
            .ok_or_else(|| DomainError::NotFound("device".into()))?;
        let after = self.check_device(principal.tenant_id, id, input).await?;
        if !self.devices.update_device(&after).await? {
            return Err(DomainError::NotFound("device".into()));
        }
        self.device_changes.notify_one();
        self.record(
            principal,
            "update_device",
            Some(id),
            format!(
                "before: {}; after: {}",
                describe_device(&before),
                describe_device(&after)
            ),
        )
        .await;
        Ok(after)
    }

    pub async fn delete_device(
        &self,
        principal: &Principal,
        id: DeviceId,
    ) -> Result<bool, DomainError> {
        self.policy
            .require_tenant(principal, Action::ManageTenant)?;
        let before = self
            .devices
            .device(principal.tenant_id, id)
            .await?
            .ok_or_else(|| DomainError::NotFound("device".into()))?;
        let deleted = self.devices.delete_device(principal.tenant_id, id).await?;
        self.device_changes.notify_one();
        self.record(
            principal,
            "delete_device",
            Some(id),
            format!("before: {}; after: none", describe_device(&before)),
        )
        .await;
        Ok(deleted)
    }

    // ----------------------------------------------------------- helpers

    /// The membership of `user` in `tenant`, or `NotFound` (a user of
    /// another tenant is as unknown as a missing one).
    async fn member(&self, tenant: TenantId, user: UserId) -> Result<Membership, DomainError> {
        self.users
            .membership(user, tenant)
            .await?
            .ok_or_else(|| DomainError::NotFound("user".into()))
    }

    /// A member whose account belongs to this tenant alone, and who is not
    /// the caller: the account-wide operations (disable, delete, reset)
    /// would otherwise reach into other tenants or lock the caller out.
    async fn own_account(
        &self,
        principal: &Principal,
        user: UserId,
    ) -> Result<Membership, DomainError> {
        let membership = self.member(principal.tenant_id, user).await?;
        if user == principal.user_id {
            return Err(DomainError::Conflict(
                "you cannot do this to your own account".into(),
            ));
        }
        let memberships = self.users.memberships_of(user).await?;
        if memberships
            .iter()
            .any(|m| m.tenant_id != principal.tenant_id)
        {
            return Err(DomainError::Forbidden(
                "the user also belongs to other tenants; remove their membership instead".into(),
            ));
        }
        Ok(membership)
    }

    /// `Conflict` unless another enabled Admin than `leaving` remains.
    async fn keep_an_admin(&self, tenant: TenantId, leaving: UserId) -> Result<(), DomainError> {
        for m in self.users.memberships_in(tenant).await? {
            if m.role == Role::Admin && m.user_id != leaving {
                let enabled = self
                    .users
                    .user(m.user_id)
                    .await?
                    .is_some_and(|u| !u.disabled);
                if enabled {
                    return Ok(());
                }
            }
        }
        Err(DomainError::Conflict(
            "the tenant would be left without an enabled admin".into(),
        ))
    }

    async fn view(&self, m: Membership) -> Result<Option<UserView>, DomainError> {
        let Some(user) = self.users.user(m.user_id).await? else {
            return Ok(None);
        };
        let others = self.users.memberships_of(m.user_id).await?;
        Ok(Some(UserView {
            user,
            role: m.role,
            has_other_tenants: others.iter().any(|o| o.tenant_id != m.tenant_id),
            scope: m.scope,
        }))
    }

    /// A scope whose areas and devices all exist in the tenant, without
    /// duplicates; anything else is `BAD_USER_INPUT` (another tenant's ids
    /// are as unknown as missing ones).
    async fn check_scope(
        &self,
        tenant: TenantId,
        scope: DeviceScope,
    ) -> Result<DeviceScope, DomainError> {
        let DeviceScope::Restricted { areas, devices } = scope else {
            return Ok(DeviceScope::All);
        };
        const MAX_GRANTS: usize = 1_000;
        if areas.len() + devices.len() > MAX_GRANTS {
            return Err(InvalidValue::new("scope", format!("at most {MAX_GRANTS} grants")).into());
        }
        let known: HashSet<AreaId> = self
            .areas
            .areas(tenant)
            .await?
            .iter()
            .map(|a| a.id)
            .collect();
        if areas.iter().any(|a| !known.contains(a)) {
            return Err(InvalidValue::new("scope", "unknown area").into());
        }
        for d in &devices {
            if self.devices.device(tenant, *d).await?.is_none() {
                return Err(InvalidValue::new("scope", "unknown device").into());
            }
        }
        let mut areas_out = Vec::new();
        for a in areas {
            if !areas_out.contains(&a) {
                areas_out.push(a);
            }
        }
        let mut devices_out = Vec::new();
        for d in devices {
            if !devices_out.contains(&d) {
                devices_out.push(d);
            }
        }
        Ok(DeviceScope::Restricted {
            areas: areas_out,
            devices: devices_out,
        })
    }

    async fn area(&self, tenant: TenantId, id: AreaId) -> Result<(Area, Vec<Area>), DomainError> {
        let areas = self.areas.areas(tenant).await?;
        let area = areas
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| DomainError::NotFound("area".into()))?;
        Ok((area, areas))
    }

    async fn replace_area(
        &self,
        principal: &Principal,
        action: &str,
        before: &Area,
        after: Area,
    ) -> Result<Area, DomainError> {
        if !self.areas.update_area(&after).await? {
            return Err(DomainError::NotFound("area".into()));
        }
        // Scopes over areas cover subtrees: a move changes who sees what.
        self.auth.forget_all_principals();
        self.record(
            principal,
            action,
            None,
            format!(
                "area {}: before: {}; after: {}",
                after.id,
                describe_area(before),
                describe_area(&after)
            ),
        )
        .await;
        Ok(after)
    }

    async fn check_device(
        &self,
        tenant: TenantId,
        id: DeviceId,
        input: DeviceInput,
    ) -> Result<Device, DomainError> {
        let name = check_name("device name", &input.name)?;
        if let Some(area) = input.area_id {
            let known = self.areas.areas(tenant).await?.iter().any(|a| a.id == area);
            if !known {
                return Err(InvalidValue::new("areaId", "no such area").into());
            }
        }
        if self
            .documents
            .profile(tenant, &input.profile_id)
            .await?
            .is_none()
        {
            return Err(InvalidValue::new("profileId", "no such profile").into());
        }
        self.field.check_endpoint(&input.endpoint)?;
        Ok(Device {
            id,
            tenant_id: tenant,
            area_id: input.area_id,
            name,
            profile_id: input.profile_id,
            endpoint: input.endpoint,
        })
    }

    async fn record(
        &self,
        principal: &Principal,
        action: &str,
        device: Option<DeviceId>,
        detail: String,
    ) {
        let at = Utc::now();
        self.audit
            .record(AuditEntry {
                tenant_id: principal.tenant_id,
                at,
                actor: principal.user_id,
                action: action.to_owned(),
                device_id: device,
                point: None,
                old_value: None,
                new_value: None,
                outcome: AuditOutcome::Confirmed,
                detail,
                count: 1,
                last_at: at,
            })
            .await;
    }
}

fn too_deep() -> DomainError {
    InvalidValue::new(
        "parentId",
        format!(
            "areas nest at most {} levels deep",
            AdminService::MAX_AREA_DEPTH
        ),
    )
    .into()
}

fn check_name(what: &'static str, name: &str) -> Result<String, InvalidValue> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > AdminService::MAX_NAME_LEN {
        return Err(InvalidValue::new(
            what,
            format!("must be 1 to {} characters", AdminService::MAX_NAME_LEN),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            what,
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn check_password(password: String) -> Result<String, InvalidValue> {
    let len = password.chars().count();
    if AdminService::PASSWORD_LEN.contains(&len) {
        Ok(password)
    } else {
        Err(InvalidValue::new(
            "password",
            format!(
                "must be {} to {} characters",
                AdminService::PASSWORD_LEN.start(),
                AdminService::PASSWORD_LEN.end()
            ),
        ))
    }
}

fn describe(m: &Membership) -> String {
    let scope = match &m.scope {
        DeviceScope::All => "all devices".to_owned(),
        DeviceScope::Restricted { areas, devices } => {
            let list = |ids: Vec<String>| ids.join(",");
            format!(
                "areas [{}] devices [{}]",
                list(areas.iter().map(ToString::to_string).collect()),
                list(devices.iter().map(ToString::to_string).collect())
            )
        }
    };
    format!("role {} scope {scope}", m.role)
}

fn describe_area(a: &Area) -> String {
    match a.parent_id {
        Some(p) => format!("`{}` under {p}", a.name),
        None => format!("`{}` at the top", a.name),
    }
}

fn describe_device(d: &Device) -> String {
    format!(
        "`{}` area {} profile {} endpoint {}:{} unit {}",
        d.name,
        d.area_id
            .map(|a| a.to_string())
            .unwrap_or_else(|| "none".into()),
        d.profile_id,
        d.endpoint.host,
        d.endpoint.port,
        d.endpoint.unit
    )
}
