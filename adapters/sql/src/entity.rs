//! SeaORM entities, one per table, and their conversions to and from domain
//! types. Private to the crate: nothing outside sees a `Model`.
//!
//! Ids are stored as their hyphenated string (36 characters), timestamps as
//! microseconds since the Unix epoch, which both SQLite and MySQL index and
//! compare the same way.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use hearth_domain::model::{
    Area, AuditEntry, AuditOutcome, Device, DeviceScope, EmailAddress, Endpoint, Membership,
    PasswordHash, RefreshSession, RefreshTokenHash, Role, Tenant, TenantSlug, User,
};
use hearth_domain::{
    AreaId, DeviceId, PointKey, ProfileId, SessionFamily, StoreError, TenantId, UserId,
};

use crate::error::invalid_row;

pub(crate) mod tenants {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub slug: String,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub email: String,
        pub display_name: String,
        pub password_hash: Option<String>,
        pub disabled: bool,
        /// Microseconds since the epoch.
        pub tokens_valid_from: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod sessions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// Hex SHA-256 of the refresh token.
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub family: String,
        pub user_id: String,
        pub tenant_id: String,
        /// Microseconds since the epoch.
        pub issued_at: i64,
        /// Microseconds since the epoch.
        pub expires_at: i64,
        pub retired: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod two_factor {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "two_factor")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub sealed_secret: String,
        pub confirmed: bool,
        pub last_step: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod recovery_codes {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "recovery_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Hex SHA-256 of the user id and the code.
        #[sea_orm(primary_key, auto_increment = false)]
        pub code_hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod tenant_security {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenant_security")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        pub two_factor_required: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod platform_operators {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "platform_operators")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// Microseconds since the epoch.
        pub granted_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod memberships {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        /// Creation order: "oldest first" sorts on it, and an upsert keeps it.
        #[sea_orm(primary_key)]
        pub seq: i64,
        pub user_id: String,
        pub tenant_id: String,
        pub role: String,
        /// `DeviceScope` as JSON text (portable; no JSON column type needed).
        pub scope: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod user_identities {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_identities")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub issuer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject: String,
        pub user_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod areas {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "areas")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub parent_id: Option<String>,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod devices {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub area_id: Option<String>,
        pub name: String,
        pub profile_id: String,
        pub host: String,
        pub port: i32,
        pub unit: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod audit_log {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// Arrival order, the tie-breaker for entries with the same `at`.
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: String,
        /// Microseconds since the Unix epoch.
        pub at: i64,
        pub actor: String,
        pub action: String,
        pub device_id: Option<String>,
        pub point: Option<String>,
        pub old_value: Option<f64>,
        pub new_value: Option<f64>,
        pub outcome: String,
        pub detail: String,
        /// Identical refused attempts this row stands for (migration 2).
        pub count: i64,
        /// Microseconds since the Unix epoch of the last of them (migration 2).
        pub last_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Parses one stored column, naming the table and row on failure.
fn parse<T>(table: &'static str, row: &str, column: &str, value: &str) -> Result<T, StoreError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| invalid_row(table, row, format!("{column}: {e}")))
}

fn parse_opt<T>(
    table: &'static str,
    row: &str,
    column: &str,
    value: Option<&str>,
) -> Result<Option<T>, StoreError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    value.map(|v| parse(table, row, column, v)).transpose()
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

impl tenants::Model {
    pub(crate) fn from_domain(t: &Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            slug: t.slug.as_str().to_owned(),
            name: t.name.clone(),
        }
    }

    pub(crate) fn try_into_domain(self) -> Result<Tenant, StoreError> {
        const T: &str = "tenants";
        Ok(Tenant {
            id: parse(T, &self.id, "id", &self.id)?,
            slug: TenantSlug::new(self.slug).map_err(|e| invalid_row(T, &self.id, e))?,
            name: self.name,
        })
    }
}

impl users::Model {
    pub(crate) fn from_domain(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.as_str().to_owned(),
            display_name: u.display_name.clone(),
            password_hash: u.password_hash.as_ref().map(|h| h.as_phc().to_owned()),
            disabled: u.disabled,
            tokens_valid_from: u.tokens_valid_from.map(micros),
        }
    }

    pub(crate) fn try_into_domain(self) -> Result<User, StoreError> {
        const T: &str = "users";
        Ok(User {
            id: parse::<UserId>(T, &self.id, "id", &self.id)?,
            email: EmailAddress::new(&self.email).map_err(|e| invalid_row(T, &self.id, e))?,
            display_name: self.display_name,
            password_hash: self.password_hash.map(PasswordHash::from_phc),
            disabled: self.disabled,
            tokens_valid_from: self
                .tokens_valid_from
                .map(|at| {
                    DateTime::from_timestamp_micros(at)
                        .ok_or_else(|| invalid_row(T, &self.id, "tokens_valid_from out of range"))
                })
                .transpose()?,
        })
    }
}

impl memberships::Model {
    /// The row to insert; `seq` is left to the database.
    pub(crate) fn columns(m: &Membership) -> Result<(String, String, String, String), StoreError> {
        let scope = serde_json::to_string(&m.scope).map_err(|e| {
            StoreError::Backend(anyhow::Error::new(e).context("could not encode a device scope"))
        })?;
        Ok((
            m.user_id.to_string(),
            m.tenant_id.to_string(),
            m.role.as_str().to_owned(),
            scope,
        ))
    }

    pub(crate) fn try_into_domain(self) -> Result<Membership, StoreError> {
        const T: &str = "memberships";
        let row = self.seq.to_string();
        let scope: DeviceScope = serde_json::from_str(&self.scope)
            .map_err(|e| invalid_row(T, &row, format!("scope: {e}")))?;
        Ok(Membership {
            user_id: parse(T, &row, "user_id", &self.user_id)?,
            tenant_id: parse(T, &row, "tenant_id", &self.tenant_id)?,
            role: parse::<Role>(T, &row, "role", &self.role)?,
            scope,
        })
    }
}

impl areas::Model {
    pub(crate) fn from_domain(a: &Area) -> Self {
        Self {
            id: a.id.to_string(),
            tenant_id: a.tenant_id.to_string(),
            parent_id: a.parent_id.map(|p| p.to_string()),
            name: a.name.clone(),
        }
    }

    pub(crate) fn try_into_domain(self) -> Result<Area, StoreError> {
        const T: &str = "areas";
        Ok(Area {
            id: parse::<AreaId>(T, &self.id, "id", &self.id)?,
            tenant_id: parse::<TenantId>(T, &self.id, "tenant_id", &self.tenant_id)?,
            parent_id: parse_opt(T, &self.id, "parent_id", self.parent_id.as_deref())?,
            name: self.name,
        })
    }
}

impl devices::Model {
    pub(crate) fn from_domain(d: &Device) -> Self {
        Self {
            id: d.id.to_string(),
            tenant_id: d.tenant_id.to_string(),
            area_id: d.area_id.map(|a| a.to_string()),
            name: d.name.clone(),
            profile_id: d.profile_id.as_str().to_owned(),
            host: d.endpoint.host.clone(),
            port: i32::from(d.endpoint.port),
            unit: i64::from(d.endpoint.unit),
        }
    }

    pub(crate) fn try_into_domain(self) -> Result<Device, StoreError> {
        const T: &str = "devices";
        let id = &self.id;
        let port =
            u16::try_from(self.port).map_err(|e| invalid_row(T, id, format!("port: {e}")))?;
        let unit =
            u32::try_from(self.unit).map_err(|e| invalid_row(T, id, format!("unit: {e}")))?;
        Ok(Device {
            id: parse::<DeviceId>(T, id, "id", id)?,
            tenant_id: parse::<TenantId>(T, id, "tenant_id", &self.tenant_id)?,
            area_id: parse_opt(T, id, "area_id", self.area_id.as_deref())?,
            profile_id: ProfileId::new(self.profile_id).map_err(|e| invalid_row(T, id, e))?,
            endpoint: Endpoint::new(self.host, port, unit).map_err(|e| invalid_row(T, id, e))?,
            name: self.name,
        })
    }
}

impl audit_log::Model {
    pub(crate) fn try_into_domain(self) -> Result<AuditEntry, StoreError> {
        const T: &str = "audit_log";
        let row = self.id.to_string();
        let at = DateTime::from_timestamp_micros(self.at)
            .ok_or_else(|| invalid_row(T, &row, "at out of range"))?;
        let last_at = DateTime::from_timestamp_micros(self.last_at)
            .ok_or_else(|| invalid_row(T, &row, "last_at out of range"))?;
        let count =
            u64::try_from(self.count).map_err(|e| invalid_row(T, &row, format!("count: {e}")))?;
        let outcome = AuditOutcome::parse(&self.outcome)
            .ok_or_else(|| invalid_row(T, &row, format!("outcome `{}`", self.outcome)))?;
        Ok(AuditEntry {
            tenant_id: parse(T, &row, "tenant_id", &self.tenant_id)?,
            at,
            actor: parse(T, &row, "actor", &self.actor)?,
            action: self.action,
            device_id: parse_opt(T, &row, "device_id", self.device_id.as_deref())?,
            point: self
                .point
                .map(PointKey::new)
                .transpose()
                .map_err(|e| invalid_row(T, &row, e))?,
            old_value: self.old_value,
            new_value: self.new_value,
            outcome,
            detail: self.detail,
            count,
            last_at,
        })
    }
}

impl sessions::Model {
    pub(crate) fn from_domain(s: &RefreshSession) -> Self {
        Self {
            token_hash: s.token_hash.as_str().to_owned(),
            family: s.family.to_string(),
            user_id: s.user_id.to_string(),
            tenant_id: s.tenant_id.to_string(),
            issued_at: micros(s.issued_at),
            expires_at: micros(s.expires_at),
            retired: s.retired,
        }
    }

    pub(crate) fn into_domain(self) -> Result<RefreshSession, StoreError> {
        let bad = |reason: &str| invalid_row("sessions", &self.family, reason);
        Ok(RefreshSession {
            token_hash: RefreshTokenHash::from_stored(&self.token_hash)
                .ok_or_else(|| bad("token_hash"))?,
            family: SessionFamily::from_str(&self.family).map_err(|_| bad("family"))?,
            user_id: UserId::from_str(&self.user_id).map_err(|_| bad("user_id"))?,
            tenant_id: TenantId::from_str(&self.tenant_id).map_err(|_| bad("tenant_id"))?,
            issued_at: DateTime::from_timestamp_micros(self.issued_at)
                .ok_or_else(|| bad("issued_at"))?,
            expires_at: DateTime::from_timestamp_micros(self.expires_at)
                .ok_or_else(|| bad("expires_at"))?,
            retired: self.retired,
        })
    }
}
