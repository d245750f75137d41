//! The traits adapters implement. Each documents its contract; the shared
//! suites in `contract` (feature `contract`) check every implementation.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};

use crate::error::InvalidValue;
use crate::error::StoreError;
use crate::ids::{
    AlarmId, AlarmRuleId, AreaId, DeviceId, ProfileId, SessionFamily, TenantId, UserId,
};
use crate::model::{
    Acknowledgement, Alarm, AlarmNotice, AlarmRule, AlarmState, AlarmTransition, Area, AuditEntry,
    Device, DeviceProfile, EmailAddress, Endpoint, HistoryBucket, HistoryQuery, Membership,
    NotificationSettings, PasswordHash, PointDefinition, Reading, RefreshSession, RefreshTokenHash,
    Severity, Tenant, User, WriteLevel,
};
use crate::principal::{Principal, SystemPrincipal};

// ---------------------------------------------------------------- relational

/// Which devices a listing may return; built by the use case from the
/// caller's scope, so out-of-scope devices never leave the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceFilter {
    /// `None`: any area (including none). `Some`: only devices in these areas.
    pub areas: Option<Vec<AreaId>>,
    /// Devices allowed regardless of `areas` (single-device scope grants).
    pub also_devices: Vec<DeviceId>,
    /// Case-insensitive substring of the device name.
    pub search: Option<String>,
}

/// One page of a listing plus the total number of matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Which audit entries a listing may return; built by the use case from the
/// caller's scope and filters, so entries about out-of-scope devices never
/// leave the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// `None`: every entry, tenant-level ones (no device) included.
    /// `Some`: only entries about these devices; never tenant-level ones.
    pub devices: Option<Vec<DeviceId>>,
    /// Only entries of this actor.
    pub actor: Option<UserId>,
    /// Only entries active at or after this instant (`last_at >= from`).
    pub from: Option<DateTime<Utc>>,
    /// Only entries begun before this instant (`at < to`).
    pub to: Option<DateTime<Utc>>,
}

/// A position in the audit log: entries order by `at` then by the store's
/// arrival sequence, both descending. Stable: coalescing never moves an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditCursor {
    pub at: DateTime<Utc>,
    /// Assigned by the store on insertion, increasing, unique per store.
    pub seq: u64,
}

impl std::fmt::Display for AuditCursor {
    /// Microseconds (what every store keeps) and the sequence number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.at.timestamp_micros(), self.seq)
    }
}

impl std::str::FromStr for AuditCursor {
    type Err = crate::error::InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || crate::error::InvalidValue::new("cursor", "not a cursor of this listing");
        let (micros, seq) = s.split_once(':').ok_or_else(invalid)?;
        let at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?;
        let seq = seq.parse::<u64>().map_err(|_| invalid())?;
        Ok(Self { at, seq })
    }
}

/// A stored audit entry and its position.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub cursor: AuditCursor,
    pub entry: AuditEntry,
}

/// Tenants. Every tenant-owned read of the repositories below takes the
/// tenant id and MUST NOT return rows of another tenant, whatever the other
/// arguments say.
#[async_trait]
pub trait TenantRepository: Send + Sync + 'static {
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
    async fn tenant_by_slug(&self, slug: &str) -> Result<Option<Tenant>, StoreError>;
}

/// Users and their memberships (a membership is part of the user aggregate:
/// it has no life without the user).
#[async_trait]
pub trait UserRepository: Send + Sync + 'static {
    /// MUST return `Conflict` when the email is taken.
    async fn insert_user(&self, user: &User) -> Result<(), StoreError>;
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn user_by_email(&self, email: &EmailAddress) -> Result<Option<User>, StoreError>;
    async fn set_password(&self, id: UserId, hash: &PasswordHash) -> Result<(), StoreError>;

    /// Inserts or replaces the membership of `(user, tenant)`.
    async fn upsert_membership(&self, membership: &Membership) -> Result<(), StoreError>;
    /// Inserts `user` (as [`Self::insert_user`]) with its `memberships`.
    /// Stores that can fail mid-way (a server that goes away) MUST override
    /// this so it is all or nothing: a user without the memberships it was
    /// created with must never remain. The default suits stores that cannot
    /// fail between the two writes (in memory).
    async fn insert_user_with_memberships(
        &self,
        user: &User,
        memberships: &[Membership],
    ) -> Result<(), StoreError> {
        self.insert_user(user).await?;
        for membership in memberships {
            self.upsert_membership(membership).await?;
        }
        Ok(())
    }
    /// All memberships of a user, oldest first.
    async fn memberships_of(&self, user: UserId) -> Result<Vec<Membership>, StoreError>;
    async fn membership(
        &self,
        user: UserId,
        tenant: TenantId,
    ) -> Result<Option<Membership>, StoreError>;
    /// Deletes the membership of `(user, tenant)`; `true` when there was one.
    /// The user's other memberships keep their order.
    async fn remove_membership(&self, user: UserId, tenant: TenantId) -> Result<bool, StoreError>;
    /// Every membership in one tenant, oldest first (the admin's user list).
    async fn memberships_in(&self, tenant: TenantId) -> Result<Vec<Membership>, StoreError>;
    /// Disables or re-enables a user; `false` when there is no such user.
    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, StoreError>;
    /// Deletes a user with all their memberships; `false` when there was none.
    async fn delete_user(&self, id: UserId) -> Result<bool, StoreError>;
    /// Sets the instant before which the user's tokens are refused
    /// (`User::tokens_valid_from`); `false` when there is no such user.
    async fn revoke_tokens(&self, id: UserId, from: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// The area tree of each tenant.
#[async_trait]
pub trait AreaRepository: Send + Sync + 'static {
    async fn insert_area(&self, area: &Area) -> Result<(), StoreError>;
    async fn areas(&self, tenant: TenantId) -> Result<Vec<Area>, StoreError>;
    /// Replaces name and parent of the area with `area.id` in `area.tenant_id`;
    /// `false` when the tenant has no such area. The caller checks the tree
    /// rules (no cycle, depth); the store only keeps parents in the tenant.
    async fn update_area(&self, area: &Area) -> Result<bool, StoreError>;
    /// Deletes an area of the tenant; `false` when there was none. The
    /// caller makes sure it has no children and no devices.
    async fn delete_area(&self, tenant: TenantId, id: AreaId) -> Result<bool, StoreError>;
}

/// Devices.
#[async_trait]
pub trait DeviceRepository: Send + Sync + 'static {
    /// MUST return `Conflict` when the tenant already has a device of that name.
    async fn insert_device(&self, device: &Device) -> Result<(), StoreError>;
    async fn device(&self, tenant: TenantId, id: DeviceId) -> Result<Option<Device>, StoreError>;
    /// Devices ordered by name then id, `offset`/`limit` applied after filtering.
    async fn devices(
        &self,
        tenant: TenantId,
        filter: &DeviceFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Device>, StoreError>;
    /// Every device of every tenant. Only the ingest use case calls this, for
    /// a system principal the policy allows to read every endpoint.
    async fn all_devices(&self) -> Result<Vec<Device>, StoreError>;
    /// Replaces the device with `device.id` in `device.tenant_id`; `false`
    /// when the tenant has no such device. MUST return `Conflict` when the
    /// new name is another device's of the tenant.
    async fn update_device(&self, device: &Device) -> Result<bool, StoreError>;
    /// Deletes a device of the tenant; `false` when there was none.
    async fn delete_device(&self, tenant: TenantId, id: DeviceId) -> Result<bool, StoreError>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends an entry, or coalesces it: when `entry` is `Refused` and the
    /// latest `Refused` entry of the same tenant, actor, action, device and
    /// point ([`AuditEntry::same_refusal`]) began less than `coalesce_within`
    /// before `entry.at`, that entry MUST absorb it instead of a row being
    /// added: `count += entry.count`, `last_at` = the later of the two, and
    /// `old_value`, `new_value` and `detail` become the new entry's; its `at`
    /// and position never change. A zero window never coalesces. Concurrent
    /// appends MUST NOT lose counts; they MAY occasionally add a row that
    /// could have been absorbed.
    async fn append_audit(
        &self,
        entry: &AuditEntry,
        coalesce_within: chrono::Duration,
    ) -> Result<(), StoreError>;
    /// The tenant's entries matching `filter`, newest `at` first (ties: last
    /// appended first), starting after `after`, at most `limit`.
    async fn audit(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u64,
    ) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Refresh tokens ([`RefreshSession`]), found by their hash.
#[async_trait]
pub trait SessionRepository: Send + Sync + 'static {
    /// Stores a new, unretired token. MUST return `Conflict` when the hash
    /// is taken.
    async fn insert_session(&self, session: &RefreshSession) -> Result<(), StoreError>;
    async fn session(&self, hash: &RefreshTokenHash) -> Result<Option<RefreshSession>, StoreError>;
    /// Marks the token retired. MUST return `true` to exactly one caller
    /// when several retire the same unretired token at once (one rotation
    /// wins), and `false` when it is already retired or unknown.
    async fn retire_session(&self, hash: &RefreshTokenHash) -> Result<bool, StoreError>;
    /// Deletes every token of the family; how many there were.
    async fn revoke_family(&self, family: SessionFamily) -> Result<u64, StoreError>;
    /// Deletes every token of the user, all families; how many there were.
    async fn revoke_user_sessions(&self, user: UserId) -> Result<u64, StoreError>;
    /// Whether the family still has an unretired token that has not expired
    /// at `now` (access tokens of a revoked family stand for nobody).
    async fn family_active(
        &self,
        family: SessionFamily,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// A relational store serving every repository above (the SQL and in-memory
/// adapters each are one). Only the composition root and the contract suite
/// name it; use cases hold the single repositories they need.
pub trait Directory:
    TenantRepository
    + UserRepository
    + AreaRepository
    + DeviceRepository
    + AuditLog
    + IdentityLinks
    + SessionRepository
{
}

impl<T> Directory for T where
    T: TenantRepository
        + UserRepository
        + AreaRepository
        + DeviceRepository
        + AuditLog
        + IdentityLinks
        + SessionRepository
{
}

// ----------------------------------------------------------------- documents

/// Device profiles (and later alarm rules and layouts) as documents.
///
/// Ownership rule: a profile is built in (`tenant_id: None`) or owned by one
/// tenant, and another tenant's id is never replaced or returned. Reads
/// scoped to a tenant see built-ins and that tenant's own profiles only.
#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// Inserts the profile, or replaces the one with this id when it has the
    /// same owner (the same tenant, or both built in). MUST return
    /// `Conflict`, and change nothing, when the id belongs to another owner.
    async fn put_profile(&self, profile: &DeviceProfile) -> Result<(), StoreError>;
    /// The profile with this id if it is built in or owned by `tenant`;
    /// `None` for another tenant's profile, exactly as for a missing one.
    async fn profile(
        &self,
        tenant: TenantId,
        id: &ProfileId,
    ) -> Result<Option<DeviceProfile>, StoreError>;
    /// Built-in profiles plus those owned by `tenant`, ordered by id.
    async fn profiles(&self, tenant: TenantId) -> Result<Vec<DeviceProfile>, StoreError>;
}

// --------------------------------------------------------------- time series

/// Persisted readings.
#[async_trait]
pub trait ReadingStore: Send + Sync + 'static {
    /// Appends a batch atomically: all or none. A reading with the same
    /// (tenant, device, point, timestamp) as a stored one replaces it.
    async fn append(&self, batch: &[Reading]) -> Result<(), StoreError>;
    /// Buckets of the query, oldest first; empty buckets are omitted.
    async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryBucket>, StoreError>;
}

// ---------------------------------------------------------------------- live

/// A device went on- or offline.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatus {
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub online: bool,
    pub at: DateTime<Utc>,
}

/// The readings of one poll of one device, shared rather than copied: the
/// bus hands the same batch to every subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingBatch {
    tenant_id: TenantId,
    device_id: DeviceId,
    readings: Arc<[Reading]>,
}

impl ReadingBatch {
    /// `None` when empty or when a reading belongs to another device.
    pub fn new(tenant_id: TenantId, device_id: DeviceId, readings: Vec<Reading>) -> Option<Self> {
        let same_device = readings
            .iter()
            .all(|r| r.tenant_id == tenant_id && r.device_id == device_id);
        (!readings.is_empty() && same_device).then(|| Self {
            tenant_id,
            device_id,
            readings: readings.into(),
        })
    }
    pub fn readings(&self) -> &Arc<[Reading]> {
        &self.readings
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    Reading(Reading),
    /// Several readings of one device at once (one poll).
    Readings(ReadingBatch),
    Status(DeviceStatus),
    /// An alarm was raised, acknowledged or cleared. Routed like the other
    /// events by the alarm's tenant and device; live value and status
    /// subscribers ignore it, and it is never recorded as latest state.
    Alarm(AlarmEvent),
}

/// One transition of one alarm, shared rather than copied.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmEvent {
    pub transition: AlarmTransition,
    /// The alarm after the transition.
    pub alarm: Arc<Alarm>,
}

impl LiveEvent {
    pub fn tenant_id(&self) -> TenantId {
        match self {
            LiveEvent::Reading(r) => r.tenant_id,
            LiveEvent::Readings(b) => b.tenant_id,
            LiveEvent::Status(s) => s.tenant_id,
            LiveEvent::Alarm(a) => a.alarm.tenant_id,
        }
    }
    pub fn device_id(&self) -> DeviceId {
        match self {
            LiveEvent::Reading(r) => r.device_id,
            LiveEvent::Readings(b) => b.device_id,
            LiveEvent::Status(s) => s.device_id,
            LiveEvent::Alarm(a) => a.alarm.device_id,
        }
    }
}

/// What a subscriber receives: an event, or word that it fell behind and
/// `n` events were dropped for it alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Event(LiveEvent),
    Lagged(u64),
}

/// Latest values and live events.
pub trait LiveBus: Send + Sync + 'static {
    /// Records the event as the latest state and fans it out. Never blocks on
    /// subscribers.
    fn publish(&self, event: LiveEvent);
    /// Events of one tenant only, from now on. A slow subscriber MUST NOT slow
    /// others; it gets `Delivery::Lagged` instead.
    fn subscribe(&self, tenant: TenantId) -> BoxStream<'static, Delivery>;
    /// Events of the listed devices of one tenant only. Same promises as
    /// `subscribe`; implementations SHOULD route per device so that a
    /// subscriber's cost grows with what it watches, not with the tenant.
    fn subscribe_devices(
        &self,
        tenant: TenantId,
        devices: &[DeviceId],
    ) -> BoxStream<'static, Delivery> {
        let wanted: std::collections::HashSet<DeviceId> = devices.iter().copied().collect();
        self.subscribe(tenant)
            .filter(move |d| {
                futures::future::ready(match d {
                    Delivery::Event(e) => wanted.contains(&e.device_id()),
                    Delivery::Lagged(_) => true,
                })
            })
            .boxed()
    }
    /// The latest reading of each point of a device.
    fn latest(&self, tenant: TenantId, device: DeviceId) -> Vec<Reading>;
    /// The device's last known status, `None` if never polled.
    fn status(&self, tenant: TenantId, device: DeviceId) -> Option<DeviceStatus>;
}

/// Who is watching which device right now, for the poller: a device that
/// somebody watches live may be polled at its profile's live interval.
/// Separate from [`LiveBus`] because interest is not delivery: with several
/// replicas the watcher may sit on another replica than the poller, and an
/// adapter may answer from shared state rather than local subscriptions.
pub trait WatchInterest: Send + Sync + 'static {
    /// Whether a subscription made with [`LiveBus::subscribe_devices`] that
    /// names this device is open. Tenant-wide subscriptions (dashboards,
    /// integrations) do not count. MUST turn false once those subscriptions
    /// are dropped. An adapter that cannot tell answers `false` (devices are
    /// then polled at their normal interval).
    fn is_watched(&self, tenant: TenantId, device: DeviceId) -> bool;
}

/// For buses that know nothing of interest: nobody is ever watching.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWatchInterest;

impl WatchInterest for NoWatchInterest {
    fn is_watched(&self, _: TenantId, _: DeviceId) -> bool {
        false
    }
}

// --------------------------------------------------------------------- field

#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// No connection or no answer in time.
    #[error("device did not answer: {0}")]
    Unreachable(String),
    /// The device answered and refused the request (an exception code, an
    /// error class): it is there, but will not do this.
    #[error("device refused the request: {0}")]
    Refused(String),
    /// The answer did not fit the request.
    #[error("malformed answer: {0}")]
    Protocol(String),
    /// The profile does not say how to reach this point (its field address
    /// is missing or not this protocol's). Nothing was sent.
    #[error("{0}")]
    Unaddressable(InvalidValue),
}

/// A value read from a device: the index of its point in the profile's
/// `points` and the engineering value (scaled, in the point's unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointValue {
    pub point: usize,
    pub value: f64,
}

/// Reads every point of one profile from one device, again and again (the
/// poller holds one per device). It keeps whatever plan the protocol needs
/// between reads: which requests cover which points, which of them the
/// device refused.
#[async_trait]
pub trait PointReader: Send + Sync + 'static {
    /// Clears `values` and fills it with every point the device served, in
    /// no particular order. An unreachable device fails the whole read; a
    /// point the device refuses is left out (and the reader says so once).
    async fn read(&mut self, values: &mut Vec<PointValue>) -> Result<(), FieldError>;
}

/// Point-level access to field devices: definitions in, typed values out.
/// How a point is addressed (address maps, word order, scaling, object ids)
/// and how a refusal is spelled (exception codes) is the adapter's business,
/// read from the points' [`FieldAddress`](crate::model::FieldAddress).
/// Implementations keep at most one request in flight per device.
///
/// A second protocol is a second adapter; a routing adapter in front of both
/// can pick one per profile from an entry of the field addresses, without
/// any change here.
#[async_trait]
pub trait FieldGateway: Send + Sync + 'static {
    /// Checks that every point of the profile carries an address this
    /// gateway understands, and that writable points can be written. Called
    /// before a profile is stored and before its devices are polled.
    fn check_profile(&self, profile: &DeviceProfile) -> Result<(), InvalidValue>;

    /// Checks an endpoint against the protocol's rules (e.g. the unit range).
    fn check_endpoint(&self, endpoint: &Endpoint) -> Result<(), InvalidValue>;

    /// Checks that the device can hold `value` at this point (resolution,
    /// value width) without sending anything, and returns the value as
    /// the device will hold it: what reading the point back gives after a
    /// write that landed.
    fn check_value(&self, point: &PointDefinition, value: f64) -> Result<f64, InvalidValue>;

    /// A reader of every point of `profile` from `device`.
    fn reader(
        &self,
        device: &Device,
        profile: &DeviceProfile,
    ) -> Result<Box<dyn PointReader>, InvalidValue>;

    /// Reads one point now.
    async fn read_point(&self, device: &Device, point: &PointDefinition)
        -> Result<f64, FieldError>;

    /// Writes one point, once: never repeated behind the caller's back, since
    /// a write that may have landed must be reported as it is. A value that
    /// [`check_value`](Self::check_value) refuses never reaches the wire
    /// (`Unaddressable` or `Refused` before sending).
    async fn write_point(
        &self,
        device: &Device,
        point: &PointDefinition,
        value: f64,
    ) -> Result<(), FieldError>;
}

// ---------------------------------------------------------------- identities

/// Password hashing (argon2id in the default adapter).
pub trait PasswordHasher: Send + Sync + 'static {
    fn hash(&self, password: &str) -> Result<PasswordHash, anyhow::Error>;
    /// MUST take about as long for a wrong password as for a right one.
    fn verify(&self, password: &str, hash: &PasswordHash) -> bool;
    /// Burns the time of one verification, for unknown users (no timing oracle).
    fn verify_dummy(&self, password: &str);
}

/// What a bearer token asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub expires_at: DateTime<Utc>,
    /// When the token was issued, to the millisecond where the token says
    /// so: a logout revokes every token issued before it.
    pub issued_at: DateTime<Utc>,
    /// The refresh-token family the token was issued with, if any: when it
    /// is revoked (logout, theft detected) the token stands for nobody.
    pub session: Option<SessionFamily>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
    /// The token could not be checked: an external identity provider's
    /// keys are unreachable. Not the caller's fault, so not `Invalid`.
    #[error("token issuer unavailable")]
    Unavailable,
}

/// Issues and verifies bearer tokens bound to one tenant.
pub trait TokenService: Send + Sync + 'static {
    fn issue(
        &self,
        user: UserId,
        tenant: TenantId,
        session: Option<SessionFamily>,
    ) -> Result<(String, TokenClaims), anyhow::Error>;
    fn verify(&self, token: &str) -> Result<TokenClaims, TokenError>;
}

// ------------------------------------------------------------- authorization

/// What a caller wants to do. The policy maps each to a capability name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See devices, live values, history.
    View,
    AcknowledgeAlarms,
    WritePoint(WriteLevel),
    ManageDevices,
    ManageUsers,
    /// Change what applies to the whole tenant (profiles; alarm rules
    /// later): managing devices *and* a membership that covers every device,
    /// so a guest scoped to one area cannot reach beyond it this way.
    ManageTenant,
}

/// What the action is done to.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// The tenant as a whole (listings, admin operations).
    Tenant(TenantId),
    /// One device, with its area and that area's ancestors (nearest first),
    /// so scope rules can match an area grant anywhere above it.
    Device {
        tenant_id: TenantId,
        device_id: DeviceId,
        area_path: Vec<AreaId>,
    },
    /// What no tenant owns: the built-in device profiles.
    Builtins,
}

/// What an internal job wants to do. The policy maps each to a capability
/// name of its own, granted to system roles only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemAction {
    /// Read a device's endpoint and profile (to poll it).
    ReadEndpoints,
    /// Create or change a tenant's users, memberships, areas and devices,
    /// or store the built-in profiles (`Resource::Tenant` of the tenant, or
    /// `Resource::Builtins`).
    Provision,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("not allowed")]
    Denied,
    /// The policy engine failed; treated as a denial by callers.
    #[error("policy evaluation failed: {0}")]
    Policy(String),
}

/// The one place that decides who may do what (DESIGN.md, "Access model").
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok(())` only when the policy allows it; any doubt is `Err`.
    fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<(), AuthzError>;

    /// The same for an internal job: `Ok(())` only when a rule of the policy
    /// grants `action` on `resource` to the job's role.
    fn authorize_system(
        &self,
        system: &SystemPrincipal,
        action: SystemAction,
        resource: &Resource,
    ) -> Result<(), AuthzError>;

    /// The capabilities each role has, as the policy states them (the
    /// "compare roles" table), roles in [`Role::ALL`](crate::model::Role::ALL) order.
    fn role_capabilities(&self) -> Vec<RoleCapabilities>;
}

/// One row of the "compare roles" table: a role and the capability names
/// the policy grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleCapabilities {
    pub role: crate::model::Role,
    pub capabilities: Vec<String>,
}

// ------------------------------------------------------ external identities

/// Who an external identity provider (OIDC) vouches for: a subject of one
/// tenant's provider, and the email the provider verified, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The tenant whose configured provider accepted the token.
    pub tenant: crate::model::TenantSlug,
    pub issuer: String,
    /// `sub`: a user's id at the provider, or an integrator's client id.
    pub subject: String,
    /// Only when the provider said `email_verified: true`.
    pub verified_email: Option<EmailAddress>,
    /// The token's `exp`.
    pub expires_at: DateTime<Utc>,
}

/// Verifies bearer tokens Hearth did not issue itself (OIDC providers).
/// Every refusal is `TokenError`; why is for the adapter's logs only.
#[async_trait]
pub trait ExternalTokenVerifier: Send + Sync + 'static {
    async fn verify(&self, token: &str) -> Result<ExternalIdentity, TokenError>;
}

/// Links of a provider's subject to a Hearth user, per tenant.
#[async_trait]
pub trait IdentityLinks: Send + Sync + 'static {
    /// Creates or re-points the link of `(tenant, issuer, subject)`.
    async fn link_identity(
        &self,
        tenant: TenantId,
        issuer: &str,
        subject: &str,
        user: UserId,
    ) -> Result<(), StoreError>;
    /// The user linked to `(tenant, issuer, subject)`, if any.
    async fn linked_user(
        &self,
        tenant: TenantId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<UserId>, StoreError>;
}

// ------------------------------------------------------------ notifications

/// Where alarm evaluation hands its notices. `submit` MUST return at once,
/// whatever the channels behind it are doing: evaluation never waits for
/// mail or webhooks. Delays, retries and dead letters are the
/// implementation's business.
pub trait AlarmNotifier: Send + Sync + 'static {
    fn submit(&self, notice: AlarmNotice, settings: &NotificationSettings);
}

/// For installations and tests without notifications: drops every notice.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotifications;

impl AlarmNotifier for NoNotifications {
    fn submit(&self, _: AlarmNotice, _: &NotificationSettings) {}
}

// -------------------------------------------------------------------- alarms

/// Alarm rules as documents (DESIGN.md: the document store holds them).
///
/// Ownership rule: a rule belongs to exactly one tenant; reads and writes
/// name the tenant, and another tenant's rule behaves exactly as a missing
/// one (never returned, never replaced, never deleted).
#[async_trait]
pub trait AlarmRuleStore: Send + Sync + 'static {
    /// Stores `rule` (whose `version` is the new version). With
    /// `expected: None` it MUST be new (an existing id of any tenant is
    /// `Conflict`); with `Some(v)` the stored rule of the same tenant MUST be
    /// at version `v` (else `Conflict`, or `NotFound` when there is none).
    /// Nothing changes on an error.
    async fn put_alarm_rule(
        &self,
        rule: &AlarmRule,
        expected: Option<u64>,
    ) -> Result<(), StoreError>;
    /// The tenant's rule with this id, `None` for another tenant's.
    async fn alarm_rule(
        &self,
        tenant: TenantId,
        id: AlarmRuleId,
    ) -> Result<Option<AlarmRule>, StoreError>;
    /// The tenant's rules, ordered by id.
    async fn alarm_rules(&self, tenant: TenantId) -> Result<Vec<AlarmRule>, StoreError>;
    /// Every tenant's rules, for the evaluator at start (a system job).
    async fn all_alarm_rules(&self) -> Result<Vec<AlarmRule>, StoreError>;
    /// Deletes the tenant's rule; `false` when it had none with this id.
    async fn delete_alarm_rule(
        &self,
        tenant: TenantId,
        id: AlarmRuleId,
    ) -> Result<bool, StoreError>;
}

/// Which alarms a listing returns; built by the use case from the caller's
/// scope (like [`DeviceFilter`]), so out-of-scope alarms never leave the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmFilter {
    /// `None`: any state.
    pub states: Option<Vec<AlarmState>>,
    pub severities: Option<Vec<Severity>>,
    /// `None`: any device of the tenant. `Some`: only these devices.
    pub devices: Option<Vec<DeviceId>>,
    /// Raised at or after.
    pub from: Option<DateTime<Utc>>,
    /// Raised before.
    pub to: Option<DateTime<Utc>>,
}

/// Alarm occurrences (relational), newest first in listings.
#[async_trait]
pub trait AlarmStore: Send + Sync + 'static {
    /// Inserts a new raised alarm. MUST be `Conflict` (changing nothing) when
    /// an active alarm of the same (rule, device, point) exists.
    async fn insert_alarm(&self, alarm: &Alarm) -> Result<(), StoreError>;
    /// Acknowledges an active alarm of the tenant. `NotFound` for a missing
    /// or other tenant's alarm; `Conflict` when already cleared.
    /// Acknowledging twice keeps the first acknowledgement and is `Conflict`.
    async fn acknowledge_alarm(
        &self,
        tenant: TenantId,
        id: AlarmId,
        ack: &Acknowledgement,
    ) -> Result<Alarm, StoreError>;
    /// Clears an active alarm; `Conflict` when already cleared.
    async fn clear_alarm(
        &self,
        tenant: TenantId,
        id: AlarmId,
        at: DateTime<Utc>,
    ) -> Result<Alarm, StoreError>;
    async fn alarm(&self, tenant: TenantId, id: AlarmId) -> Result<Option<Alarm>, StoreError>;
    /// Newest first (raised_at, then id), `offset`/`limit` paging.
    async fn alarms(
        &self,
        tenant: TenantId,
        filter: &AlarmFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Alarm>, StoreError>;
    /// Every tenant's active alarms, for the evaluator at start: open alarms
    /// survive a restart and are never raised twice.
    async fn active_alarms(&self) -> Result<Vec<Alarm>, StoreError>;
}
