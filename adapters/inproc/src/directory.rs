//! In-memory [`Directory`]: the store behind use-case tests and the baseline
//! the SQL adapter is benchmarked against. Same semantics as `hearth-sql`,
//! checked by the shared contract suite, including the referential checks the
//! SQL schema enforces with foreign keys.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_domain::model::{
    Area, AuditEntry, AuditOutcome, Device, EmailAddress, Membership, PasswordHash,
    RecoveryCodeHash, RefreshSession, RefreshTokenHash, Tenant, TwoFactorEnrolment, User,
};
use hearth_domain::ports::{
    AreaRepository, AuditCursor, AuditFilter, AuditLog, AuditRecord, DeviceFilter,
    DeviceRepository, IdentityLinks, Page, PlatformOperators, SessionRepository, TenantRepository,
    TwoFactorRepository, UserRepository,
};
use hearth_domain::{AreaId, DeviceId, SessionFamily, StoreError, TenantId, UserId};

/// Tenants, users, memberships, areas, devices and audit log in hash maps
/// behind one lock, so the secondary indexes can never disagree with the rows.
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    tenants: HashMap<TenantId, Tenant>,
    tenant_by_slug: HashMap<String, TenantId>,
    users: HashMap<UserId, User>,
    user_by_email: HashMap<String, UserId>,
    memberships: HashMap<(UserId, TenantId), Membership>,
    /// Each user's tenants in membership creation order ("oldest first").
    membership_order: HashMap<UserId, Vec<TenantId>>,
    /// When each membership was created, for "oldest first" across users.
    membership_seq: HashMap<(UserId, TenantId), u64>,
    /// The last membership creation number handed out.
    membership_next: u64,
    areas: HashMap<AreaId, Area>,
    areas_of: HashMap<TenantId, Vec<AreaId>>,
    devices: HashMap<DeviceId, Device>,
    /// Each tenant's device ids kept sorted by (name, id), so listings walk
    /// them in order without sorting and name conflicts are a binary search.
    devices_of: HashMap<TenantId, Vec<DeviceId>>,
    /// Each tenant's entries sorted by their cursor (at, arrival), oldest first.
    audit_of: HashMap<TenantId, Vec<AuditRecord>>,
    /// The last arrival number handed out, across tenants.
    audit_seq: u64,
    /// (tenant, issuer, subject) → user: external identity links.
    identities: HashMap<(TenantId, String, String), UserId>,
    /// Refresh tokens by hash.
    sessions: HashMap<RefreshTokenHash, RefreshSession>,
    /// Two-factor enrolments (with their unused recovery codes) by user.
    two_factor: HashMap<UserId, TwoFactorEnrolment>,
    /// Tenants that require two-factor login.
    two_factor_required: HashSet<TenantId>,
    /// Platform operators.
    operators: HashSet<UserId>,
}

impl MemoryDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }

    /// Takes a device of `tenant` out of the directory; `true` when it had
    /// it. The same as the port's `delete_device`, callable without a runtime.
    pub fn remove_device(&self, tenant: TenantId, id: DeviceId) -> bool {
        remove_device(&mut self.write(), tenant, id)
    }
}

/// Removes a device of `tenant` from the rows and the tenant's order.
fn remove_device(s: &mut State, tenant: TenantId, id: DeviceId) -> bool {
    // Another tenant's device is as unknown as a missing one.
    let known = s.devices.get(&id).is_some_and(|d| d.tenant_id == tenant);
    if !known {
        return false;
    }
    s.devices.remove(&id);
    if let Some(order) = s.devices_of.get_mut(&tenant) {
        order.retain(|d| *d != id);
    }
    true
}

/// Inserts a device in its tenant's (name, id) order; `Conflict` when the
/// name is taken.
fn insert_device(s: &mut State, device: &Device) -> Result<(), StoreError> {
    require_tenant(s, device.tenant_id)?;
    require_area(s, device.tenant_id, device.area_id)?;
    let State {
        devices,
        devices_of,
        ..
    } = s;
    let order = devices_of.entry(device.tenant_id).or_default();
    let key = |id: &DeviceId| devices.get(id).map(|d| (d.name.as_str(), *id));
    let at = order.partition_point(|id| key(id) < Some((device.name.as_str(), device.id)));
    // The first device at or after the new name holds it if it is taken.
    let taken = order[at..]
        .first()
        .and_then(|id| devices.get(id))
        .is_some_and(|d| d.name == device.name)
        || at > 0
            && order
                .get(at - 1)
                .and_then(|id| devices.get(id))
                .is_some_and(|d| d.name == device.name);
    if taken {
        return Err(StoreError::Conflict(format!(
            "a device named `{}` already exists in this tenant",
            device.name
        )));
    }
    order.insert(at, device.id);
    devices.insert(device.id, device.clone());
    Ok(())
}

/// Mirrors a violated foreign key in the SQL schema: a bug in the caller, not
/// a conflict the user could resolve.
fn dangling(what: &str) -> StoreError {
    StoreError::Backend(anyhow!("{what}"))
}

fn require_tenant(state: &State, tenant: TenantId) -> Result<(), StoreError> {
    if state.tenants.contains_key(&tenant) {
        Ok(())
    } else {
        Err(dangling("unknown tenant"))
    }
}

/// An area id that exists *in this tenant*; another tenant's area is as
/// unknown as a missing one.
fn require_area(state: &State, tenant: TenantId, area: Option<AreaId>) -> Result<(), StoreError> {
    match area {
        None => Ok(()),
        Some(id) if state.areas.get(&id).is_some_and(|a| a.tenant_id == tenant) => Ok(()),
        Some(_) => Err(dangling("unknown area in this tenant")),
    }
}

/// Case-insensitive substring test without allocating in the common ASCII case.
fn contains_ignore_case(haystack: &str, needle_lower: &str) -> bool {
    if needle_lower.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle_lower.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle_lower.as_bytes());
        return h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    haystack.to_lowercase().contains(needle_lower)
}

/// Membership test over a caller's id list: a scan for the usual handful of
/// ids, a hash set once scanning it for every device would cost more.
enum IdSet<'a, T> {
    Few(&'a [T]),
    Many(HashSet<&'a T>),
}

impl<'a, T: Eq + Hash> IdSet<'a, T> {
    const SCAN_LIMIT: usize = 16;

    fn new(ids: &'a [T]) -> Self {
        if ids.len() <= Self::SCAN_LIMIT {
            IdSet::Few(ids)
        } else {
            IdSet::Many(ids.iter().collect())
        }
    }

    fn contains(&self, id: &T) -> bool {
        match self {
            IdSet::Few(ids) => ids.contains(id),
            IdSet::Many(ids) => ids.contains(id),
        }
    }
}

#[async_trait]
impl TenantRepository for MemoryDirectory {
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut s = self.write();
        if s.tenants.contains_key(&tenant.id) || s.tenant_by_slug.contains_key(tenant.slug.as_str())
        {
            return Err(StoreError::Conflict(format!(
                "a tenant with this id or the slug `{}` already exists",
                tenant.slug.as_str()
            )));
        }
        s.tenant_by_slug
            .insert(tenant.slug.as_str().to_owned(), tenant.id);
        s.tenants.insert(tenant.id, tenant.clone());
        Ok(())
    }

    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        Ok(self.read().tenants.get(&id).cloned())
    }

    async fn tenant_by_slug(&self, slug: &str) -> Result<Option<Tenant>, StoreError> {
        let s = self.read();
        Ok(s.tenant_by_slug
            .get(slug)
            .and_then(|id| s.tenants.get(id))
            .cloned())
    }
}

#[async_trait]
impl UserRepository for MemoryDirectory {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let mut s = self.write();
        if s.user_by_email.contains_key(user.email.as_str()) {
            return Err(StoreError::Conflict(
                "a user with this email already exists".into(),
            ));
        }
        if s.users.contains_key(&user.id) {
            return Err(StoreError::Conflict(
                "a user with this id already exists".into(),
            ));
        }
        s.user_by_email
            .insert(user.email.as_str().to_owned(), user.id);
        s.users.insert(user.id, user.clone());
        Ok(())
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.read().users.get(&id).cloned())
    }

    async fn user_by_email(&self, email: &EmailAddress) -> Result<Option<User>, StoreError> {
        let s = self.read();
        Ok(s.user_by_email
            .get(email.as_str())
            .and_then(|id| s.users.get(id))
            .cloned())
    }

    async fn set_password(&self, id: UserId, hash: &PasswordHash) -> Result<(), StoreError> {
        match self.write().users.get_mut(&id) {
            Some(user) => {
                user.password_hash = Some(hash.clone());
                Ok(())
            }
            None => Err(dangling("set_password: unknown user")),
        }
    }

    async fn upsert_membership(&self, membership: &Membership) -> Result<(), StoreError> {
        let mut s = self.write();
        if !s.users.contains_key(&membership.user_id) {
            return Err(dangling("membership of an unknown user"));
        }
        require_tenant(&s, membership.tenant_id)?;
        let key = (membership.user_id, membership.tenant_id);
        // Replacing keeps the membership's place in the creation order.
        if s.memberships.insert(key, membership.clone()).is_none() {
            s.membership_next += 1;
            let seq = s.membership_next;
            s.membership_seq.insert(key, seq);
            s.membership_order
                .entry(membership.user_id)
                .or_default()
                .push(membership.tenant_id);
        }
        Ok(())
    }

    async fn memberships_of(&self, user: UserId) -> Result<Vec<Membership>, StoreError> {
        let s = self.read();
        let Some(order) = s.membership_order.get(&user) else {
            return Ok(Vec::new());
        };
        Ok(order
            .iter()
            .filter_map(|tenant| s.memberships.get(&(user, *tenant)).cloned())
            .collect())
    }

    async fn membership(
        &self,
        user: UserId,
        tenant: TenantId,
    ) -> Result<Option<Membership>, StoreError> {
        Ok(self.read().memberships.get(&(user, tenant)).cloned())
    }

    async fn remove_membership(&self, user: UserId, tenant: TenantId) -> Result<bool, StoreError> {
        let mut s = self.write();
        let removed = s.memberships.remove(&(user, tenant)).is_some();
        s.membership_seq.remove(&(user, tenant));
        if let Some(order) = s.membership_order.get_mut(&user) {
            order.retain(|t| *t != tenant);
        }
        Ok(removed)
    }

    async fn memberships_in(&self, tenant: TenantId) -> Result<Vec<Membership>, StoreError> {
        let s = self.read();
        // Oldest first across users: walk each user's order, then sort by
        // the position the store handed out (insertion into `memberships`).
        let mut found: Vec<&Membership> = s
            .memberships
            .values()
            .filter(|m| m.tenant_id == tenant)
            .collect();
        found.sort_by_key(|m| s.membership_seq.get(&(m.user_id, m.tenant_id)).copied());
        Ok(found.into_iter().cloned().collect())
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, StoreError> {
        Ok(match self.write().users.get_mut(&id) {
            Some(user) => {
                user.disabled = disabled;
                true
            }
            None => false,
        })
    }

    async fn revoke_tokens(&self, id: UserId, from: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(match self.write().users.get_mut(&id) {
            Some(user) => {
                // Stores keep microseconds (like SQL), so a read-back agrees.
                user.tokens_valid_from = DateTime::from_timestamp_micros(from.timestamp_micros());
                true
            }
            None => false,
        })
    }

    async fn delete_user(&self, id: UserId) -> Result<bool, StoreError> {
        let mut s = self.write();
        let Some(user) = s.users.remove(&id) else {
            return Ok(false);
        };
        s.user_by_email.remove(user.email.as_str());
        s.memberships.retain(|(u, _), _| *u != id);
        s.membership_seq.retain(|(u, _), _| *u != id);
        s.membership_order.remove(&id);
        s.sessions.retain(|_, session| session.user_id != id);
        s.two_factor.remove(&id);
        s.operators.remove(&id);
        Ok(true)
    }
}

#[async_trait]
impl AreaRepository for MemoryDirectory {
    async fn insert_area(&self, area: &Area) -> Result<(), StoreError> {
        let mut s = self.write();
        if s.areas.contains_key(&area.id) {
            return Err(StoreError::Conflict(
                "an area with this id already exists".into(),
            ));
        }
        require_tenant(&s, area.tenant_id)?;
        require_area(&s, area.tenant_id, area.parent_id)?;
        s.areas_of.entry(area.tenant_id).or_default().push(area.id);
        s.areas.insert(area.id, area.clone());
        Ok(())
    }

    async fn areas(&self, tenant: TenantId) -> Result<Vec<Area>, StoreError> {
        let s = self.read();
        Ok(s.areas_of
            .get(&tenant)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| s.areas.get(id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn update_area(&self, area: &Area) -> Result<bool, StoreError> {
        let mut s = self.write();
        let known = s
            .areas
            .get(&area.id)
            .is_some_and(|a| a.tenant_id == area.tenant_id);
        if !known {
            return Ok(false);
        }
        require_area(&s, area.tenant_id, area.parent_id)?;
        s.areas.insert(area.id, area.clone());
        Ok(true)
    }

    async fn delete_area(&self, tenant: TenantId, id: AreaId) -> Result<bool, StoreError> {
        let mut s = self.write();
        let known = s.areas.get(&id).is_some_and(|a| a.tenant_id == tenant);
        if !known {
            return Ok(false);
        }
        // The SQL foreign keys refuse to orphan children or devices.
        let referenced = s.areas.values().any(|a| a.parent_id == Some(id))
            || s.devices.values().any(|d| d.area_id == Some(id));
        if referenced {
            return Err(dangling("the area still has children or devices"));
        }
        s.areas.remove(&id);
        if let Some(order) = s.areas_of.get_mut(&tenant) {
            order.retain(|a| *a != id);
        }
        Ok(true)
    }
}

#[async_trait]
impl DeviceRepository for MemoryDirectory {
    async fn insert_device(&self, device: &Device) -> Result<(), StoreError> {
        let mut s = self.write();
        if s.devices.contains_key(&device.id) {
            return Err(StoreError::Conflict(
                "a device with this id already exists".into(),
            ));
        }
        insert_device(&mut s, device)
    }

    async fn device(&self, tenant: TenantId, id: DeviceId) -> Result<Option<Device>, StoreError> {
        Ok(self
            .read()
            .devices
            .get(&id)
            .filter(|d| d.tenant_id == tenant)
            .cloned())
    }

    async fn devices(
        &self,
        tenant: TenantId,
        filter: &DeviceFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Device>, StoreError> {
        let needle = filter.search.as_deref().map(str::to_lowercase);
        let s = self.read();
        let Some(order) = s.devices_of.get(&tenant) else {
            return Ok(Page {
                items: Vec::new(),
                total: 0,
            });
        };
        let areas = filter.areas.as_deref().map(IdSet::new);
        let also = IdSet::new(&filter.also_devices);
        let matches = |d: &Device| {
            let in_scope = match &areas {
                None => true,
                Some(areas) => {
                    d.area_id.is_some_and(|a| areas.contains(&a)) || also.contains(&d.id)
                }
            };
            in_scope
                && needle
                    .as_deref()
                    .is_none_or(|n| contains_ignore_case(&d.name, n))
        };
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut items = Vec::with_capacity(limit.min(order.len()));
        let mut total = 0u64;
        // `devices_of` only holds this tenant's ids, so isolation is by
        // construction; the tenant check below is belt and braces.
        for d in order.iter().filter_map(|id| s.devices.get(id)) {
            if d.tenant_id != tenant || !matches(d) {
                continue;
            }
            let index = usize::try_from(total).unwrap_or(usize::MAX);
            if index >= offset && items.len() < limit {
                items.push(d.clone());
            }
            total += 1;
        }
        Ok(Page { items, total })
    }

    async fn all_devices(&self) -> Result<Vec<Device>, StoreError> {
        let s = self.read();
        let mut tenants: Vec<&TenantId> = s.devices_of.keys().collect();
        tenants.sort();
        Ok(tenants
            .into_iter()
            .filter_map(|t| s.devices_of.get(t))
            .flatten()
            .filter_map(|id| s.devices.get(id))
            .cloned()
            .collect())
    }

    async fn update_device(&self, device: &Device) -> Result<bool, StoreError> {
        let mut s = self.write();
        let Some(old) = s
            .devices
            .get(&device.id)
            .filter(|d| d.tenant_id == device.tenant_id)
            .cloned()
        else {
            return Ok(false);
        };
        require_area(&s, device.tenant_id, device.area_id)?;
        remove_device(&mut s, device.tenant_id, device.id);
        if let Err(err) = insert_device(&mut s, device) {
            // Put the old row back: a refused update changes nothing.
            insert_device(&mut s, &old)?;
            return Err(err);
        }
        Ok(true)
    }

    async fn delete_device(&self, tenant: TenantId, id: DeviceId) -> Result<bool, StoreError> {
        Ok(remove_device(&mut self.write(), tenant, id))
    }
}

#[async_trait]
impl AuditLog for MemoryDirectory {
    async fn append_audit(
        &self,
        entry: &AuditEntry,
        coalesce_within: chrono::Duration,
    ) -> Result<(), StoreError> {
        let mut s = self.write();
        require_tenant(&s, entry.tenant_id)?;
        s.audit_seq += 1;
        let seq = s.audit_seq;
        let log = s.audit_of.entry(entry.tenant_id).or_default();
        if entry.outcome == AuditOutcome::Refused && coalesce_within > chrono::Duration::zero() {
            // Only entries begun within the window can absorb, and the log
            // is sorted by `at`: walk back from the newest until the window ends.
            let since = entry.at - coalesce_within;
            let latest = log
                .iter_mut()
                .rev()
                .take_while(|r| r.entry.at > since)
                .find(|r| r.entry.same_refusal(entry));
            if let Some(record) = latest {
                let run = &mut record.entry;
                run.count = run.count.saturating_add(entry.count);
                run.last_at = run.last_at.max(entry.last_at);
                run.old_value = entry.old_value;
                run.new_value = entry.new_value;
                run.detail.clone_from(&entry.detail);
                return Ok(());
            }
        }
        let cursor = AuditCursor { at: entry.at, seq };
        // Sequence numbers only grow, so this lands after every entry at the
        // same instant: ties keep arrival order.
        let index = log.partition_point(|r| r.cursor < cursor);
        log.insert(
            index,
            AuditRecord {
                cursor,
                entry: entry.clone(),
            },
        );
        Ok(())
    }

    async fn audit(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let s = self.read();
        let Some(log) = s.audit_of.get(&tenant) else {
            return Ok(Vec::new());
        };
        let end = after.map_or(log.len(), |c| log.partition_point(|r| r.cursor < c));
        let devices = filter.devices.as_deref().map(IdSet::new);
        let matches = |e: &AuditEntry| {
            let about = match (&devices, e.device_id) {
                (None, _) => true,
                (Some(set), Some(id)) => set.contains(&id),
                (Some(_), None) => false,
            };
            about
                && filter.actor.is_none_or(|a| e.actor == a)
                && filter.from.is_none_or(|from| e.last_at >= from)
                && filter.to.is_none_or(|to| e.at < to)
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        // Belt and braces: the per-tenant log only holds this tenant's entries.
        Ok(log[..end]
            .iter()
            .rev()
            .filter(|r| r.entry.tenant_id == tenant && matches(&r.entry))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl IdentityLinks for MemoryDirectory {
    async fn link_identity(
        &self,
        tenant: TenantId,
        issuer: &str,
        subject: &str,
        user: UserId,
    ) -> Result<(), StoreError> {
        let mut s = self.write();
        // The SQL schema's foreign key: a link points at a membership.
        if !s.memberships.contains_key(&(user, tenant)) {
            return Err(StoreError::Backend(anyhow!(
                "an identity link needs a membership of the user in the tenant"
            )));
        }
        s.identities
            .insert((tenant, issuer.to_owned(), subject.to_owned()), user);
        Ok(())
    }

    async fn linked_user(
        &self,
        tenant: TenantId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<UserId>, StoreError> {
        let s = self.read();
        let user = s
            .identities
            .get(&(tenant, issuer.to_owned(), subject.to_owned()))
            .copied();
        // Links go with the membership they point at, as in SQL.
        Ok(user.filter(|u| s.memberships.contains_key(&(*u, tenant))))
    }
}

#[async_trait]
impl SessionRepository for MemoryDirectory {
    async fn insert_session(&self, session: &RefreshSession) -> Result<(), StoreError> {
        let mut s = self.write();
        // The foreign keys of the SQL schema.
        if !s.users.contains_key(&session.user_id) || !s.tenants.contains_key(&session.tenant_id) {
            return Err(StoreError::Backend(anyhow!(
                "a session of an unknown user or tenant"
            )));
        }
        if s.sessions.contains_key(&session.token_hash) {
            return Err(StoreError::Conflict("refresh token".into()));
        }
        let mut stored = session.clone();
        // Stores keep microseconds (like SQL), so a read-back agrees.
        stored.issued_at = micros(stored.issued_at);
        stored.expires_at = micros(stored.expires_at);
        s.sessions.insert(session.token_hash.clone(), stored);
        Ok(())
    }

    async fn session(&self, hash: &RefreshTokenHash) -> Result<Option<RefreshSession>, StoreError> {
        Ok(self.read().sessions.get(hash).cloned())
    }

    async fn retire_session(&self, hash: &RefreshTokenHash) -> Result<bool, StoreError> {
        Ok(match self.write().sessions.get_mut(hash) {
            Some(session) if !session.retired => {
                session.retired = true;
                true
            }
            _ => false,
        })
    }

    async fn revoke_family(&self, family: SessionFamily) -> Result<u64, StoreError> {
        let mut s = self.write();
        let before = s.sessions.len();
        s.sessions.retain(|_, session| session.family != family);
        Ok((before - s.sessions.len()) as u64)
    }

    async fn revoke_user_sessions(&self, user: UserId) -> Result<u64, StoreError> {
        let mut s = self.write();
        let before = s.sessions.len();
        s.sessions.retain(|_, session| session.user_id != user);
        Ok((before - s.sessions.len()) as u64)
    }

    async fn family_active(
        &self,
        family: SessionFamily,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.read().sessions.values().any(|session| {
            session.family == family && !session.retired && session.expires_at > now
        }))
    }
}

#[async_trait]
impl TwoFactorRepository for MemoryDirectory {
    async fn put_two_factor(&self, enrolment: &TwoFactorEnrolment) -> Result<(), StoreError> {
        let mut s = self.write();
        if !s.users.contains_key(&enrolment.user_id) {
            return Err(dangling("put_two_factor: unknown user"));
        }
        s.two_factor.insert(enrolment.user_id, enrolment.clone());
        Ok(())
    }

    async fn two_factor(&self, user: UserId) -> Result<Option<TwoFactorEnrolment>, StoreError> {
        Ok(self.read().two_factor.get(&user).cloned())
    }

    async fn confirm_two_factor(&self, user: UserId, step: u64) -> Result<bool, StoreError> {
        Ok(match self.write().two_factor.get_mut(&user) {
            Some(e) if !e.confirmed => {
                e.confirmed = true;
                e.last_step = Some(step);
                true
            }
            _ => false,
        })
    }

    async fn use_totp_step(&self, user: UserId, step: u64) -> Result<bool, StoreError> {
        Ok(match self.write().two_factor.get_mut(&user) {
            Some(e) if e.confirmed && e.last_step.is_none_or(|last| last < step) => {
                e.last_step = Some(step);
                true
            }
            _ => false,
        })
    }

    async fn use_recovery_code(
        &self,
        user: UserId,
        code: &RecoveryCodeHash,
    ) -> Result<bool, StoreError> {
        Ok(match self.write().two_factor.get_mut(&user) {
            Some(e) => {
                let before = e.recovery_codes.len();
                e.recovery_codes.retain(|c| c != code);
                e.recovery_codes.len() < before
            }
            None => false,
        })
    }

    async fn delete_two_factor(&self, user: UserId) -> Result<bool, StoreError> {
        Ok(self.write().two_factor.remove(&user).is_some())
    }

    async fn two_factor_required(&self, tenant: TenantId) -> Result<bool, StoreError> {
        Ok(self.read().two_factor_required.contains(&tenant))
    }

    async fn set_two_factor_required(
        &self,
        tenant: TenantId,
        required: bool,
    ) -> Result<bool, StoreError> {
        let mut s = self.write();
        if !s.tenants.contains_key(&tenant) {
            return Ok(false);
        }
        if required {
            s.two_factor_required.insert(tenant);
        } else {
            s.two_factor_required.remove(&tenant);
        }
        Ok(true)
    }
}

#[async_trait]
impl PlatformOperators for MemoryDirectory {
    async fn grant_operator(&self, user: UserId) -> Result<bool, StoreError> {
        let mut s = self.write();
        if !s.users.contains_key(&user) {
            return Err(dangling("grant_operator: unknown user"));
        }
        Ok(s.operators.insert(user))
    }

    async fn revoke_operator(&self, user: UserId) -> Result<bool, StoreError> {
        Ok(self.write().operators.remove(&user))
    }

    async fn is_operator(&self, user: UserId) -> Result<bool, StoreError> {
        Ok(self.read().operators.contains(&user))
    }
}

fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_directory_contract() {
        hearth_domain::contract::directory::directory_contract(&MemoryDirectory::new()).await;
    }

    #[tokio::test]
    async fn a_removed_device_is_gone_from_every_read_and_its_name_is_free() {
        // Given a tenant with two devices
        let directory = MemoryDirectory::new();
        let tenant = Tenant {
            id: TenantId::new(),
            slug: hearth_domain::model::TenantSlug::new("acme").expect("valid slug"),
            name: "Acme".into(),
        };
        directory.insert_tenant(&tenant).await.expect("stored");
        let device = |name: &str| Device {
            id: DeviceId::new(),
            tenant_id: tenant.id,
            area_id: None,
            name: name.into(),
            profile_id: hearth_domain::ProfileId::new("p").expect("valid id"),
            endpoint: hearth_domain::model::Endpoint::new("127.0.0.1", 502, 1)
                .expect("valid endpoint"),
        };
        let (gone, kept) = (device("a"), device("b"));
        for d in [&gone, &kept] {
            directory.insert_device(d).await.expect("stored");
        }

        // When one is removed, and removed again, and through another tenant
        let removed = directory.remove_device(tenant.id, gone.id);
        let again = directory.remove_device(tenant.id, gone.id);
        let foreign = directory.remove_device(TenantId::new(), kept.id);

        // Then only the first removal did something
        assert_eq!((removed, again, foreign), (true, false, false));
        // And no read returns it, while the other device stays
        let listed = directory
            .devices(tenant.id, &DeviceFilter::default(), 0, 10)
            .await
            .expect("listed");
        assert_eq!(listed.items, vec![kept.clone()]);
        assert_eq!(listed.total, 1);
        assert_eq!(
            directory.device(tenant.id, gone.id).await.ok().flatten(),
            None
        );
        assert_eq!(directory.all_devices().await.ok(), Some(vec![kept]));
        // And its name can be used again
        directory
            .insert_device(&device("a"))
            .await
            .expect("the name is free");
    }

    #[test]
    fn id_sets_agree_whether_scanned_or_hashed() {
        let ids: Vec<DeviceId> = (0..40).map(|_| DeviceId::new()).collect();
        for n in [0, 3, 16, 17, 40] {
            let set = IdSet::new(&ids[..n]);
            assert!(
                ids[..n].iter().all(|id| set.contains(id)),
                "{n} ids: a member is missing"
            );
            assert!(
                !set.contains(&DeviceId::new()),
                "{n} ids: a stranger is found"
            );
        }
    }

    #[test]
    fn ignores_case_without_allocating_for_ascii() {
        assert!(contains_ignore_case("Boiler House", "house"));
        assert!(!contains_ignore_case("Boiler", "boilers"));
        assert!(contains_ignore_case("Übergabe Nord", "über"));
        assert!(contains_ignore_case("x", ""));
    }
}
