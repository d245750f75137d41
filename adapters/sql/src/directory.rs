//! [`SqlDirectory`]: the `Directory` port on a SeaORM connection pool.
//!
//! Every tenant-owned read filters on `tenant_id` in SQL, whatever else the
//! caller asks for, and the schema's composite foreign keys stop a row from
//! pointing into another tenant.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_domain::model::{
    Area, AuditEntry, AuditOutcome, Device, EmailAddress, Membership, PasswordHash, RefreshSession,
    RefreshTokenHash, Tenant, User,
};
use hearth_domain::ports::{
    AreaRepository, AuditCursor, AuditFilter, AuditLog, AuditRecord, DeviceFilter,
    DeviceRepository, IdentityLinks, Page, SessionRepository, TenantRepository, UserRepository,
};
use hearth_domain::{AreaId, DeviceId, SessionFamily, StoreError, TenantId, UserId};
use sea_orm::sea_query::{Expr, Func, LikeExpr, OnConflict};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::entity::{
    areas, audit_log, devices, memberships, micros, sessions, tenants, user_identities, users,
};
use crate::error::{backend, invalid_row, on_insert, SqlError};
use crate::migration::Migrator;

/// The character that escapes `%`, `_` and itself in LIKE patterns. Not `\`:
/// MySQL treats backslash specially in string literals, SQLite does not.
const LIKE_ESCAPE: char = '!';

/// Tenants, users, memberships, areas, devices and the audit log in SQLite
/// or MySQL/MariaDB.
#[derive(Debug, Clone)]
pub struct SqlDirectory {
    pub(crate) db: DatabaseConnection,
}

impl SqlDirectory {
    /// Opens a pool on `url` (`sqlite:///abs/path/hearth.db?mode=rwc`,
    /// `mysql://user:pass@host:3306/hearth`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_pool(url, 10).await
    }

    /// [`Self::connect`] with at most `pool_size` connections to a server
    /// database (SQLite keeps its own small pool whatever is asked).
    pub async fn connect_with_pool(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        Self::open(url, pool_size, true).await
    }

    /// Opens a pool of at most `pool_size` connections; applies pending
    /// migrations when `migrate`, else refuses a schema that is behind
    /// (naming what is pending, to be applied by `hearth migrate`).
    pub async fn open(url: &str, pool_size: u32, migrate: bool) -> Result<Self, StoreError> {
        let db = Self::pool(url, pool_size).await?;
        if migrate {
            Migrator::up(&db, None)
                .await
                .map_err(backend("could not migrate the relational database"))?;
        } else {
            let pending = pending_migrations(&db).await?;
            if !pending.is_empty() {
                return Err(StoreError::Backend(anyhow::anyhow!(
                    "the relational schema is behind: {} migration(s) pending ({}); run `hearth migrate` \
                     or set stores.relational.migrate_on_start = true",
                    pending.len(),
                    pending.join(", ")
                )));
            }
        }
        tracing::debug!(backend = ?db.get_database_backend(), "Relational directory ready.");
        Ok(Self { db })
    }

    /// Applies the pending migrations to the database at `url` and returns
    /// their names, oldest first (none: the schema was up to date).
    pub async fn migrate(url: &str) -> Result<Vec<String>, StoreError> {
        let db = Self::pool(url, 1).await?;
        let pending = pending_migrations(&db).await?;
        Migrator::up(&db, None)
            .await
            .map_err(backend("could not migrate the relational database"))?;
        db.close()
            .await
            .map_err(backend("could not close the relational database"))?;
        Ok(pending)
    }

    /// One cheap round trip (`SELECT 1` or the driver's ping), for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .ping()
            .await
            .map_err(backend("the relational database does not answer"))
    }

    async fn pool(url: &str, pool_size: u32) -> Result<DatabaseConnection, StoreError> {
        let mut options = ConnectOptions::new(url);
        // Statement logging at info would drown the service's own logs.
        options
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(10))
            .min_connections(1);
        if url.starts_with("sqlite:") {
            // SQLite has one writer at a time; more connections only add
            // lock contention. A private in-memory database lives in one
            // connection, so it must not have a second.
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            options.max_connections(if memory { 1 } else { 4 });
            options.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    // WAL makes NORMAL safe against corruption; only the last
                    // commits before a power cut may be lost.
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
            });
        } else {
            options.max_connections(pool_size.max(1));
        }
        Database::connect(options)
            .await
            .map_err(backend("could not connect to the relational database"))
    }

    /// SQLite in `<dir>/hearth.db`, created if missing.
    pub async fn sqlite_in(dir: &Path) -> Result<Self, StoreError> {
        Self::connect(&Self::sqlite_url(dir)?).await
    }

    /// The URL of the SQLite database in `<dir>/hearth.db`, created if missing.
    pub fn sqlite_url(dir: &Path) -> Result<String, StoreError> {
        let path = dir.join("hearth.db");
        let path = path.to_str().ok_or_else(|| {
            StoreError::Backend(anyhow::anyhow!(
                "the data directory {} is not valid UTF-8",
                dir.display()
            ))
        })?;
        // sqlx percent-decodes the path, so a literal `%`, `?` or `#` must be encoded.
        let path = path
            .replace('%', "%25")
            .replace('?', "%3F")
            .replace('#', "%23");
        Ok(format!("sqlite://{path}?mode=rwc"))
    }
}

/// Names of the migrations not yet applied, oldest first.
async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, StoreError> {
    Ok(Migrator::get_pending_migrations(db)
        .await
        .map_err(backend("could not read the applied migrations"))?
        .iter()
        .map(|m| m.name().to_owned())
        .collect())
}

/// `needle` lower-cased and escaped for `LIKE '%…%' ESCAPE '!'`.
fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 4);
    pattern.push('%');
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_') || c == LIKE_ESCAPE {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The `WHERE` of a device listing, or `None` when nothing can match.
fn device_condition(tenant: TenantId, filter: &DeviceFilter) -> Option<Condition> {
    // Always first: whatever the filter says, only this tenant's rows.
    let mut condition = Condition::all().add(devices::Column::TenantId.eq(tenant.to_string()));
    if let Some(areas) = &filter.areas {
        if areas.is_empty() && filter.also_devices.is_empty() {
            return None;
        }
        let mut scope = Condition::any();
        if !areas.is_empty() {
            scope = scope.add(devices::Column::AreaId.is_in(areas.iter().map(ToString::to_string)));
        }
        if !filter.also_devices.is_empty() {
            scope = scope.add(
                devices::Column::Id.is_in(filter.also_devices.iter().map(ToString::to_string)),
            );
        }
        condition = condition.add(scope);
    }
    if let Some(search) = &filter.search {
        // LOWER on both sides: the MySQL columns use a binary collation.
        let name = Expr::expr(Func::lower(Expr::col((
            devices::Entity,
            devices::Column::Name,
        ))));
        condition =
            condition.add(name.like(LikeExpr::new(contains_pattern(search)).escape(LIKE_ESCAPE)));
    }
    Some(condition)
}

/// SQLite binds integers as i64; anything beyond is "unbounded" anyway.
fn clamp(n: u64) -> u64 {
    n.min(i64::MAX as u64)
}

async fn insert_user(db: &impl ConnectionTrait, user: &User) -> Result<(), StoreError> {
    users::Entity::insert(users::Model::from_domain(user).into_active_model())
        .exec_without_returning(db)
        .await
        .map_err(on_insert("could not insert a user", || {
            "a user with this email already exists".to_owned()
        }))?;
    Ok(())
}

async fn upsert_membership(
    db: &impl ConnectionTrait,
    membership: &Membership,
) -> Result<(), StoreError> {
    let (user_id, tenant_id, role, scope) = memberships::Model::columns(membership)?;
    let row = memberships::ActiveModel {
        seq: NotSet,
        user_id: Set(user_id),
        tenant_id: Set(tenant_id),
        role: Set(role),
        scope: Set(scope),
    };
    // One atomic statement (ON CONFLICT / ON DUPLICATE KEY): the row keeps
    // its `seq`, so a replaced membership keeps its place.
    memberships::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([memberships::Column::UserId, memberships::Column::TenantId])
                .update_columns([memberships::Column::Role, memberships::Column::Scope])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map_err(backend("could not upsert a membership"))?;
    Ok(())
}

#[async_trait]
impl TenantRepository for SqlDirectory {
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        tenants::Entity::insert(tenants::Model::from_domain(tenant).into_active_model())
            .exec_without_returning(&self.db)
            .await
            .map_err(on_insert("could not insert a tenant", || {
                format!(
                    "a tenant with this id or the slug `{}` already exists",
                    tenant.slug.as_str()
                )
            }))?;
        Ok(())
    }

    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        tenants::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await
            .map_err(backend("could not load a tenant"))?
            .map(tenants::Model::try_into_domain)
            .transpose()
    }

    async fn tenant_by_slug(&self, slug: &str) -> Result<Option<Tenant>, StoreError> {
        tenants::Entity::find()
            .filter(tenants::Column::Slug.eq(slug))
            .one(&self.db)
            .await
            .map_err(backend("could not load a tenant by slug"))?
            .map(tenants::Model::try_into_domain)
            .transpose()
    }
}

#[async_trait]
impl UserRepository for SqlDirectory {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        insert_user(&self.db, user).await
    }

    async fn insert_user_with_memberships(
        &self,
        user: &User,
        memberships: &[Membership],
    ) -> Result<(), StoreError> {
        // A transaction: the server may go away between the rows, and a user
        // without memberships must not remain (dropping an uncommitted
        // transaction rolls it back, on the server too when the connection
        // is lost).
        let txn = self
            .db
            .begin()
            .await
            .map_err(backend("could not begin creating a user"))?;
        insert_user(&txn, user).await?;
        for membership in memberships {
            upsert_membership(&txn, membership).await?;
        }
        txn.commit()
            .await
            .map_err(backend("could not commit a new user"))
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        users::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await
            .map_err(backend("could not load a user"))?
            .map(users::Model::try_into_domain)
            .transpose()
    }

    async fn user_by_email(&self, email: &EmailAddress) -> Result<Option<User>, StoreError> {
        users::Entity::find()
            .filter(users::Column::Email.eq(email.as_str()))
            .one(&self.db)
            .await
            .map_err(backend("could not load a user by email"))?
            .map(users::Model::try_into_domain)
            .transpose()
    }

    async fn set_password(&self, id: UserId, hash: &PasswordHash) -> Result<(), StoreError> {
        let result = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(hash.as_phc()))
            .filter(users::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend("could not set a password"))?;
        // MySQL counts matched rows here too (sqlx sets CLIENT_FOUND_ROWS),
        // so re-setting the same hash is not mistaken for a missing user.
        if result.rows_affected == 0 {
            return Err(SqlError::NotFound("set_password: unknown user").into());
        }
        Ok(())
    }

    async fn upsert_membership(&self, membership: &Membership) -> Result<(), StoreError> {
        upsert_membership(&self.db, membership).await
    }

    async fn memberships_of(&self, user: UserId) -> Result<Vec<Membership>, StoreError> {
        memberships::Entity::find()
            .filter(memberships::Column::UserId.eq(user.to_string()))
            .order_by_asc(memberships::Column::Seq)
            .all(&self.db)
            .await
            .map_err(backend("could not list memberships"))?
            .into_iter()
            .map(memberships::Model::try_into_domain)
            .collect()
    }

    async fn membership(
        &self,
        user: UserId,
        tenant: TenantId,
    ) -> Result<Option<Membership>, StoreError> {
        memberships::Entity::find()
            .filter(memberships::Column::UserId.eq(user.to_string()))
            .filter(memberships::Column::TenantId.eq(tenant.to_string()))
            .one(&self.db)
            .await
            .map_err(backend("could not load a membership"))?
            .map(memberships::Model::try_into_domain)
            .transpose()
    }

    async fn remove_membership(&self, user: UserId, tenant: TenantId) -> Result<bool, StoreError> {
        let deleted = memberships::Entity::delete_many()
            .filter(memberships::Column::UserId.eq(user.to_string()))
            .filter(memberships::Column::TenantId.eq(tenant.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend("could not remove a membership"))?;
        Ok(deleted.rows_affected > 0)
    }

    async fn memberships_in(&self, tenant: TenantId) -> Result<Vec<Membership>, StoreError> {
        memberships::Entity::find()
            .filter(memberships::Column::TenantId.eq(tenant.to_string()))
            .order_by_asc(memberships::Column::Seq)
            .all(&self.db)
            .await
            .map_err(backend("could not list a tenant's memberships"))?
            .into_iter()
            .map(memberships::Model::try_into_domain)
            .collect()
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, StoreError> {
        let result = users::Entity::update_many()
            .col_expr(users::Column::Disabled, Expr::value(disabled))
            .filter(users::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend("could not disable a user"))?;
        // Matched rows on MySQL too (CLIENT_FOUND_ROWS), see `set_password`.
        Ok(result.rows_affected > 0)
    }

    async fn revoke_tokens(&self, id: UserId, from: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = users::Entity::update_many()
            .col_expr(users::Column::TokensValidFrom, Expr::value(micros(from)))
            .filter(users::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend("could not revoke a user's tokens"))?;
        Ok(result.rows_affected > 0)
    }

    async fn delete_user(&self, id: UserId) -> Result<bool, StoreError> {
        // Memberships go with the user (ON DELETE CASCADE), in one statement.
        let deleted = users::Entity::delete_by_id(id.to_string())
            .exec(&self.db)
            .await
            .map_err(backend("could not delete a user"))?;
        Ok(deleted.rows_affected > 0)
    }
}

#[async_trait]
impl AreaRepository for SqlDirectory {
    async fn insert_area(&self, area: &Area) -> Result<(), StoreError> {
        areas::Entity::insert(areas::Model::from_domain(area).into_active_model())
            .exec_without_returning(&self.db)
            .await
            .map_err(on_insert(
                "could not insert an area (unknown tenant or parent?)",
                || "an area with this id already exists".to_owned(),
            ))?;
        Ok(())
    }

    async fn areas(&self, tenant: TenantId) -> Result<Vec<Area>, StoreError> {
        areas::Entity::find()
            .filter(areas::Column::TenantId.eq(tenant.to_string()))
            .order_by_asc(areas::Column::Name)
            .order_by_asc(areas::Column::Id)
            .all(&self.db)
            .await
            .map_err(backend("could not list areas"))?
            .into_iter()
            .map(areas::Model::try_into_domain)
            .collect()
    }

    async fn update_area(&self, area: &Area) -> Result<bool, StoreError> {
        let result = areas::Entity::update_many()
            .col_expr(areas::Column::Name, Expr::value(area.name.clone()))
            .col_expr(
                areas::Column::ParentId,
                Expr::value(area.parent_id.map(|p| p.to_string())),
            )
            .filter(areas::Column::TenantId.eq(area.tenant_id.to_string()))
            .filter(areas::Column::Id.eq(area.id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend(
                "could not update an area (parent in another tenant?)",
            ))?;
        Ok(result.rows_affected > 0)
    }

    async fn delete_area(&self, tenant: TenantId, id: AreaId) -> Result<bool, StoreError> {
        let deleted = areas::Entity::delete_many()
            .filter(areas::Column::TenantId.eq(tenant.to_string()))
            .filter(areas::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend(
                "could not delete an area (children or devices left?)",
            ))?;
        Ok(deleted.rows_affected > 0)
    }
}

#[async_trait]
impl DeviceRepository for SqlDirectory {
    async fn insert_device(&self, device: &Device) -> Result<(), StoreError> {
        devices::Entity::insert(devices::Model::from_domain(device).into_active_model())
            .exec_without_returning(&self.db)
            .await
            .map_err(on_insert(
                "could not insert a device (unknown tenant or area?)",
                || {
                    format!(
                        "a device named `{}` already exists in this tenant",
                        device.name
                    )
                },
            ))?;
        Ok(())
    }

    async fn device(&self, tenant: TenantId, id: DeviceId) -> Result<Option<Device>, StoreError> {
        devices::Entity::find()
            .filter(devices::Column::TenantId.eq(tenant.to_string()))
            .filter(devices::Column::Id.eq(id.to_string()))
            .one(&self.db)
            .await
            .map_err(backend("could not load a device"))?
            .map(devices::Model::try_into_domain)
            .transpose()
    }

    async fn devices(
        &self,
        tenant: TenantId,
        filter: &DeviceFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Device>, StoreError> {
        let Some(condition) = device_condition(tenant, filter) else {
            return Ok(Page {
                items: Vec::new(),
                total: 0,
            });
        };
        let total = devices::Entity::find()
            .filter(condition.clone())
            .count(&self.db)
            .await
            .map_err(backend("could not count devices"))?;
        if limit == 0 || offset >= total {
            return Ok(Page {
                items: Vec::new(),
                total,
            });
        }
        let items = devices::Entity::find()
            .filter(condition)
            .order_by_asc(devices::Column::Name)
            .order_by_asc(devices::Column::Id)
            .offset(clamp(offset))
            .limit(clamp(limit))
            .all(&self.db)
            .await
            .map_err(backend("could not list devices"))?
            .into_iter()
            .map(devices::Model::try_into_domain)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, total })
    }

    async fn all_devices(&self) -> Result<Vec<Device>, StoreError> {
        devices::Entity::find()
            .order_by_asc(devices::Column::TenantId)
            .order_by_asc(devices::Column::Name)
            .order_by_asc(devices::Column::Id)
            .all(&self.db)
            .await
            .map_err(backend("could not list all devices"))?
            .into_iter()
            .map(devices::Model::try_into_domain)
            .collect()
    }

    async fn update_device(&self, device: &Device) -> Result<bool, StoreError> {
        let row = devices::Model::from_domain(device);
        let result = devices::Entity::update_many()
            .col_expr(devices::Column::AreaId, Expr::value(row.area_id))
            .col_expr(devices::Column::Name, Expr::value(row.name))
            .col_expr(devices::Column::ProfileId, Expr::value(row.profile_id))
            .col_expr(devices::Column::Host, Expr::value(row.host))
            .col_expr(devices::Column::Port, Expr::value(row.port))
            .col_expr(devices::Column::Unit, Expr::value(row.unit))
            .filter(devices::Column::TenantId.eq(row.tenant_id))
            .filter(devices::Column::Id.eq(row.id))
            .exec(&self.db)
            .await
            .map_err(on_insert(
                "could not update a device (unknown area?)",
                || {
                    format!(
                        "a device named `{}` already exists in this tenant",
                        device.name
                    )
                },
            ))?;
        Ok(result.rows_affected > 0)
    }

    async fn delete_device(&self, tenant: TenantId, id: DeviceId) -> Result<bool, StoreError> {
        let deleted = devices::Entity::delete_many()
            .filter(devices::Column::TenantId.eq(tenant.to_string()))
            .filter(devices::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend("could not delete a device"))?;
        Ok(deleted.rows_affected > 0)
    }
}

#[async_trait]
impl AuditLog for SqlDirectory {
    async fn append_audit(
        &self,
        entry: &AuditEntry,
        coalesce_within: chrono::Duration,
    ) -> Result<(), StoreError> {
        if entry.outcome == AuditOutcome::Refused && coalesce_within > chrono::Duration::zero() {
            if let Some(run) = self.latest_refusal(entry, coalesce_within).await? {
                // A plain UPDATE by id: `count = count + n` is atomic, so
                // concurrent refusals never lose a count. (Two first refusals
                // racing may both insert: one row more, nothing lost.)
                let last_at = micros(entry.last_at);
                let result = audit_log::Entity::update_many()
                    .col_expr(
                        audit_log::Column::Count,
                        Expr::col(audit_log::Column::Count).add(count_column(entry.count)),
                    )
                    .col_expr(
                        audit_log::Column::LastAt,
                        Expr::case(Expr::col(audit_log::Column::LastAt).lt(last_at), last_at)
                            .finally(Expr::col(audit_log::Column::LastAt))
                            .into(),
                    )
                    .col_expr(audit_log::Column::OldValue, Expr::value(entry.old_value))
                    .col_expr(audit_log::Column::NewValue, Expr::value(entry.new_value))
                    .col_expr(audit_log::Column::Detail, Expr::value(entry.detail.clone()))
                    .filter(audit_log::Column::Id.eq(run))
                    .exec(&self.db)
                    .await
                    .map_err(backend("could not coalesce an audit entry"))?;
                if result.rows_affected > 0 {
                    return Ok(());
                }
            }
        }
        let row = audit_log::ActiveModel {
            id: NotSet,
            tenant_id: Set(entry.tenant_id.to_string()),
            at: Set(micros(entry.at)),
            actor: Set(entry.actor.to_string()),
            action: Set(entry.action.clone()),
            device_id: Set(entry.device_id.map(|d| d.to_string())),
            point: Set(entry.point.as_ref().map(|p| p.as_str().to_owned())),
            old_value: Set(entry.old_value),
            new_value: Set(entry.new_value),
            outcome: Set(entry.outcome.as_str().to_owned()),
            detail: Set(entry.detail.clone()),
            count: Set(count_column(entry.count)),
            last_at: Set(micros(entry.last_at)),
        };
        audit_log::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(backend("could not append to the audit log"))?;
        Ok(())
    }

    async fn audit(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let Some(condition) = audit_condition(tenant, filter, after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        audit_log::Entity::find()
            .filter(condition)
            .order_by_desc(audit_log::Column::At)
            .order_by_desc(audit_log::Column::Id)
            .limit(clamp(limit))
            .all(&self.db)
            .await
            .map_err(backend("could not read the audit log"))?
            .into_iter()
            .map(|row| {
                let seq = u64::try_from(row.id)
                    .map_err(|e| invalid_row("audit_log", &row.id.to_string(), e))?;
                let entry = row.try_into_domain()?;
                Ok(AuditRecord {
                    cursor: AuditCursor { at: entry.at, seq },
                    entry,
                })
            })
            .collect()
    }
}

impl SqlDirectory {
    /// The id of the latest refused entry of `entry`'s key begun within the
    /// window before it (served by `ix_audit_log_refusals`).
    async fn latest_refusal(
        &self,
        entry: &AuditEntry,
        window: chrono::Duration,
    ) -> Result<Option<i64>, StoreError> {
        let since = entry.at.checked_sub_signed(window).map_or(i64::MIN, micros);
        let mut key = Condition::all()
            .add(audit_log::Column::TenantId.eq(entry.tenant_id.to_string()))
            .add(audit_log::Column::Actor.eq(entry.actor.to_string()))
            .add(audit_log::Column::Outcome.eq(AuditOutcome::Refused.as_str()))
            .add(audit_log::Column::Action.eq(entry.action.as_str()))
            .add(audit_log::Column::At.gt(since));
        key = key.add(match entry.device_id {
            Some(device) => audit_log::Column::DeviceId.eq(device.to_string()),
            None => audit_log::Column::DeviceId.is_null(),
        });
        key = key.add(match &entry.point {
            Some(point) => audit_log::Column::Point.eq(point.as_str()),
            None => audit_log::Column::Point.is_null(),
        });
        audit_log::Entity::find()
            .select_only()
            .column(audit_log::Column::Id)
            .filter(key)
            .order_by_desc(audit_log::Column::At)
            .order_by_desc(audit_log::Column::Id)
            .limit(1)
            .into_tuple::<i64>()
            .one(&self.db)
            .await
            .map_err(backend("could not look up the latest refusal"))
    }
}

/// Counts beyond `i64::MAX` are not reachable; saturate rather than wrap.
fn count_column(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The `WHERE` of an audit listing, or `None` when nothing can match.
fn audit_condition(
    tenant: TenantId,
    filter: &AuditFilter,
    after: Option<AuditCursor>,
) -> Option<Condition> {
    // Always first: whatever the filter says, only this tenant's rows.
    let mut condition = Condition::all().add(audit_log::Column::TenantId.eq(tenant.to_string()));
    if let Some(devices) = &filter.devices {
        if devices.is_empty() {
            return None;
        }
        // `IN` never matches NULL: tenant-level entries are left out.
        condition = condition
            .add(audit_log::Column::DeviceId.is_in(devices.iter().map(ToString::to_string)));
    }
    if let Some(actor) = filter.actor {
        condition = condition.add(audit_log::Column::Actor.eq(actor.to_string()));
    }
    if let Some(from) = filter.from {
        condition = condition.add(audit_log::Column::LastAt.gte(micros(from)));
    }
    if let Some(to) = filter.to {
        condition = condition.add(audit_log::Column::At.lt(micros(to)));
    }
    if let Some(cursor) = after {
        let at = micros(cursor.at);
        let seq = i64::try_from(cursor.seq).unwrap_or(i64::MAX);
        condition = condition.add(
            Condition::any().add(audit_log::Column::At.lt(at)).add(
                Condition::all()
                    .add(audit_log::Column::At.eq(at))
                    .add(audit_log::Column::Id.lt(seq)),
            ),
        );
    }
    Some(condition)
}

#[async_trait]
impl IdentityLinks for SqlDirectory {
    async fn link_identity(
        &self,
        tenant: TenantId,
        issuer: &str,
        subject: &str,
        user: UserId,
    ) -> Result<(), StoreError> {
        let row = user_identities::ActiveModel {
            tenant_id: Set(tenant.to_string()),
            issuer: Set(issuer.to_owned()),
            subject: Set(subject.to_owned()),
            user_id: Set(user.to_string()),
        };
        user_identities::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    user_identities::Column::TenantId,
                    user_identities::Column::Issuer,
                    user_identities::Column::Subject,
                ])
                .update_column(user_identities::Column::UserId)
                .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(backend("could not store an identity link"))?;
        Ok(())
    }

    async fn linked_user(
        &self,
        tenant: TenantId,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<UserId>, StoreError> {
        let row = user_identities::Entity::find()
            .filter(user_identities::Column::TenantId.eq(tenant.to_string()))
            .filter(user_identities::Column::Issuer.eq(issuer))
            .filter(user_identities::Column::Subject.eq(subject))
            .one(&self.db)
            .await
            .map_err(backend("could not load an identity link"))?;
        row.map(|r| {
            r.user_id
                .parse::<UserId>()
                .map_err(|e| invalid_row("user_identities", &r.subject, e))
        })
        .transpose()
    }
}

#[async_trait]
impl SessionRepository for SqlDirectory {
    async fn insert_session(&self, session: &RefreshSession) -> Result<(), StoreError> {
        sessions::Entity::insert(sessions::Model::from_domain(session).into_active_model())
            .exec_without_returning(&self.db)
            .await
            .map_err(on_insert("could not insert a session", || {
                "refresh token".to_owned()
            }))?;
        Ok(())
    }

    async fn session(&self, hash: &RefreshTokenHash) -> Result<Option<RefreshSession>, StoreError> {
        sessions::Entity::find_by_id(hash.as_str().to_owned())
            .one(&self.db)
            .await
            .map_err(backend("could not read a session"))?
            .map(sessions::Model::into_domain)
            .transpose()
    }

    async fn retire_session(&self, hash: &RefreshTokenHash) -> Result<bool, StoreError> {
        // One conditional UPDATE: of two concurrent rotations, only one
        // sees a row it changed.
        let result = sessions::Entity::update_many()
            .col_expr(sessions::Column::Retired, Expr::value(true))
            .filter(sessions::Column::TokenHash.eq(hash.as_str()))
            .filter(sessions::Column::Retired.eq(false))
            .exec(&self.db)
            .await
            .map_err(backend("could not retire a session"))?;
        Ok(result.rows_affected == 1)
    }

    async fn revoke_family(&self, family: SessionFamily) -> Result<u64, StoreError> {
        let result = sessions::Entity::delete_many()
            .filter(sessions::Column::Family.eq(family.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend("could not revoke a session family"))?;
        Ok(result.rows_affected)
    }

    async fn revoke_user_sessions(&self, user: UserId) -> Result<u64, StoreError> {
        let result = sessions::Entity::delete_many()
            .filter(sessions::Column::UserId.eq(user.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend("could not revoke a user's sessions"))?;
        Ok(result.rows_affected)
    }

    async fn family_active(
        &self,
        family: SessionFamily,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let live = sessions::Entity::find()
            .filter(sessions::Column::Family.eq(family.to_string()))
            .filter(sessions::Column::Retired.eq(false))
            .filter(sessions::Column::ExpiresAt.gt(micros(now)))
            .count(&self.db)
            .await
            .map_err(backend("could not check a session family"))?;
        Ok(live > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards_and_the_escape() {
        assert_eq!(contains_pattern("Pump_A"), "%pump!_a%");
        assert_eq!(contains_pattern("100%!"), "%100!%!!%");
        assert_eq!(contains_pattern("a\\b"), "%a\\b%");
    }
}
