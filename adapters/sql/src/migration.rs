//! Schema migrations, run by `SqlDirectory::connect`. One code path for
//! SQLite and MySQL/MariaDB: portable column types only (strings with explicit
//! lengths so MySQL can index them, BIGINT microseconds for time, JSON as
//! text), and composite foreign keys so no row can point into another tenant.

use sea_orm_migration::prelude::*;

pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_directory::Migration),
            Box::new(m20250601_000002_audit_coalescing::Migration),
            Box::new(m20261129_000003_wide_units::Migration),
            Box::new(m20261129_000004_access::Migration),
            Box::new(m20261129_000005_identity_links::Migration),
            Box::new(m20261129_000006_sessions::Migration),
            Box::new(m20261203_000007_alarms::Migration),
        ]
    }
}

/// Length of a hyphenated UUID.
const ID: u32 = 36;

mod m20250101_000001_directory {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::sea_orm::DbBackend;

    use super::ID;

    #[derive(DeriveMigrationName)]
    pub(crate) struct Migration;

    #[derive(DeriveIden)]
    enum Tenants {
        Table,
        Id,
        Slug,
        Name,
    }

    #[derive(DeriveIden)]
    enum Users {
        Table,
        Id,
        Email,
        DisplayName,
        PasswordHash,
    }

    #[derive(DeriveIden)]
    enum Memberships {
        Table,
        Seq,
        UserId,
        TenantId,
        Role,
        Scope,
    }

    #[derive(DeriveIden)]
    enum Areas {
        Table,
        Id,
        TenantId,
        ParentId,
        Name,
    }

    #[derive(DeriveIden)]
    enum Devices {
        Table,
        Id,
        TenantId,
        AreaId,
        Name,
        ProfileId,
        Host,
        Port,
        Unit,
    }

    #[derive(DeriveIden)]
    enum AuditLog {
        Table,
        Id,
        TenantId,
        At,
        Actor,
        Action,
        DeviceId,
        Point,
        OldValue,
        NewValue,
        Outcome,
        Detail,
    }

    fn id_col<T: IntoIden>(name: T) -> ColumnDef {
        ColumnDef::new(name).string_len(ID).not_null().to_owned()
    }

    /// MySQL's default collations compare case- and accent-insensitively,
    /// which would make `Boiler` and `boiler` one device name and order names
    /// differently from SQLite. A binary collation keeps both backends equal.
    /// (These are MySQL-only table options; SQLite would reject them.)
    fn portable(manager: &SchemaManager, table: &mut TableCreateStatement) -> TableCreateStatement {
        if manager.get_database_backend() == DbBackend::MySql {
            table
                .engine("InnoDB")
                .character_set("utf8mb4")
                .collate("utf8mb4_bin");
        }
        table.to_owned()
    }

    fn fk_tenant<T: IntoIden + 'static>(table: T, column: T) -> ForeignKeyCreateStatement {
        ForeignKey::create()
            .from(table, column)
            .to(Tenants::Table, Tenants::Id)
            .on_delete(ForeignKeyAction::Cascade)
            .to_owned()
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(portable(
                    manager,
                    Table::create()
                        .table(Tenants::Table)
                        .col(id_col(Tenants::Id).primary_key())
                        .col(ColumnDef::new(Tenants::Slug).string_len(40).not_null())
                        .col(ColumnDef::new(Tenants::Name).text().not_null())
                        .index(
                            Index::create()
                                .name("ux_tenants_slug")
                                .col(Tenants::Slug)
                                .unique(),
                        ),
                ))
                .await?;

            manager
                .create_table(portable(
                    manager,
                    Table::create()
                        .table(Users::Table)
                        .col(id_col(Users::Id).primary_key())
                        .col(ColumnDef::new(Users::Email).string_len(254).not_null())
                        .col(ColumnDef::new(Users::DisplayName).text().not_null())
                        .col(ColumnDef::new(Users::PasswordHash).text().null())
                        .index(
                            Index::create()
                                .name("ux_users_email")
                                .col(Users::Email)
                                .unique(),
                        ),
                ))
                .await?;

            manager
                .create_table(portable(
                    manager,
                    Table::create()
                        .table(Memberships::Table)
                        .col(
                            ColumnDef::new(Memberships::Seq)
                                .big_integer()
                                .not_null()
                                .auto_increment()
                                .primary_key(),
                        )
                        .col(id_col(Memberships::UserId))
                        .col(id_col(Memberships::TenantId))
                        .col(ColumnDef::new(Memberships::Role).string_len(16).not_null())
                        .col(ColumnDef::new(Memberships::Scope).text().not_null())
                        .index(
                            Index::create()
                                .name("ux_memberships_user_tenant")
                                .col(Memberships::UserId)
                                .col(Memberships::TenantId)
                                .unique(),
                        )
                        .foreign_key(
                            ForeignKey::create()
                                .from(Memberships::Table, Memberships::UserId)
                                .to(Users::Table, Users::Id)
                                .on_delete(ForeignKeyAction::Cascade),
                        )
                        .foreign_key(&mut fk_tenant(Memberships::Table, Memberships::TenantId)),
                ))
                .await?;

            manager
                .create_table(portable(
                    manager,
                    Table::create()
                        .table(Areas::Table)
                        .col(id_col(Areas::Id).primary_key())
                        .col(id_col(Areas::TenantId))
                        .col(ColumnDef::new(Areas::ParentId).string_len(ID).null())
                        .col(ColumnDef::new(Areas::Name).text().not_null())
                        // Target of the tenant-bound foreign keys below; also
                        // serves every `WHERE tenant_id = ?` on areas.
                        .index(
                            Index::create()
                                .name("ux_areas_tenant_id")
                                .col(Areas::TenantId)
                                .col(Areas::Id)
                                .unique(),
                        )
                        .foreign_key(&mut fk_tenant(Areas::Table, Areas::TenantId))
                        // A parent in another tenant has no matching (tenant_id, id).
                        .foreign_key(
                            ForeignKey::create()
                                .from_tbl(Areas::Table)
                                .from_col(Areas::TenantId)
                                .from_col(Areas::ParentId)
                                .to_tbl(Areas::Table)
                                .to_col(Areas::TenantId)
                                .to_col(Areas::Id),
                        ),
                ))
                .await?;

            manager
                .create_table(portable(
                    manager,
                    Table::create()
                        .table(Devices::Table)
                        .col(id_col(Devices::Id).primary_key())
                        .col(id_col(Devices::TenantId))
                        .col(ColumnDef::new(Devices::AreaId).string_len(ID).null())
                        // 255 characters keeps the unique index within MySQL's
                        // 3072-byte key limit in utf8mb4.
                        .col(ColumnDef::new(Devices::Name).string_len(255).not_null())
                        .col(ColumnDef::new(Devices::ProfileId).string_len(64).not_null())
                        .col(ColumnDef::new(Devices::Host).string_len(253).not_null())
                        .col(ColumnDef::new(Devices::Port).integer().not_null())
                        .col(ColumnDef::new(Devices::Unit).small_integer().not_null())
                        // Unique per tenant, and the index listings walk in
                        // (tenant_id, name) order.
                        .index(
                            Index::create()
                                .name("ux_devices_tenant_name")
                                .col(Devices::TenantId)
                                .col(Devices::Name)
                                .unique(),
                        )
                        .foreign_key(&mut fk_tenant(Devices::Table, Devices::TenantId))
                        .foreign_key(
                            ForeignKey::create()
                                .from_tbl(Devices::Table)
                                .from_col(Devices::TenantId)
                                .from_col(Devices::AreaId)
                                .to_tbl(Areas::Table)
                                .to_col(Areas::TenantId)
                                .to_col(Areas::Id),
                        ),
                ))
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("ix_devices_tenant_area")
                        .table(Devices::Table)
                        .col(Devices::TenantId)
                        .col(Devices::AreaId)
                        .to_owned(),
                )
                .await?;

            manager
                .create_table(portable(
                    manager,
                    Table::create()
                        .table(AuditLog::Table)
                        .col(
                            ColumnDef::new(AuditLog::Id)
                                .big_integer()
                                .not_null()
                                .auto_increment()
                                .primary_key(),
                        )
                        .col(id_col(AuditLog::TenantId))
                        .col(ColumnDef::new(AuditLog::At).big_integer().not_null())
                        // No foreign keys on actor or device: the log records
                        // attempts, and must outlive what it mentions.
                        .col(id_col(AuditLog::Actor))
                        .col(ColumnDef::new(AuditLog::Action).text().not_null())
                        .col(ColumnDef::new(AuditLog::DeviceId).string_len(ID).null())
                        .col(ColumnDef::new(AuditLog::Point).string_len(64).null())
                        .col(ColumnDef::new(AuditLog::OldValue).double().null())
                        .col(ColumnDef::new(AuditLog::NewValue).double().null())
                        .col(ColumnDef::new(AuditLog::Outcome).string_len(16).not_null())
                        .col(ColumnDef::new(AuditLog::Detail).text().not_null())
                        .foreign_key(&mut fk_tenant(AuditLog::Table, AuditLog::TenantId)),
                ))
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("ix_audit_log_tenant_at")
                        .table(AuditLog::Table)
                        .col(AuditLog::TenantId)
                        .col(AuditLog::At)
                        .col(AuditLog::Id)
                        .to_owned(),
                )
                .await?;
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            // Children first, for the foreign keys.
            for table in [
                AuditLog::Table.into_iden(),
                Devices::Table.into_iden(),
                Areas::Table.into_iden(),
                Memberships::Table.into_iden(),
                Users::Table.into_iden(),
                Tenants::Table.into_iden(),
            ] {
                manager
                    .drop_table(Table::drop().table(table).if_exists().to_owned())
                    .await?;
            }
            Ok(())
        }
    }
}

/// Coalesced refusals: `count` and `last_at` on audit entries, and the
/// indexes that find the latest refusal of an (actor, ...) key and list a
/// scoped caller's devices' entries without scanning the tenant's log.
mod m20250601_000002_audit_coalescing {
    use sea_orm_migration::prelude::*;

    pub(crate) struct Migration;

    // Named by hand: `DeriveMigrationName` uses the file's stem, which the
    // first migration already took ("migration"), and that recorded name
    // must not change under existing databases.
    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20250601_000002_audit_coalescing"
        }
    }

    #[derive(DeriveIden)]
    enum AuditLog {
        Table,
        TenantId,
        At,
        Actor,
        DeviceId,
        Outcome,
        Count,
        LastAt,
    }

    const REFUSALS: &str = "ix_audit_log_refusals";
    const BY_DEVICE: &str = "ix_audit_log_tenant_device_at";

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            // One column per statement: SQLite alters one thing at a time.
            // Existing rows each stand for one attempt.
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditLog::Table)
                        .add_column(
                            ColumnDef::new(AuditLog::Count)
                                .big_integer()
                                .not_null()
                                .default(1),
                        )
                        .to_owned(),
                )
                .await?;
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditLog::Table)
                        .add_column(
                            ColumnDef::new(AuditLog::LastAt)
                                .big_integer()
                                .not_null()
                                .default(0),
                        )
                        .to_owned(),
                )
                .await?;
            // ... and their last attempt was their only one.
            manager
                .exec_stmt(
                    Query::update()
                        .table(AuditLog::Table)
                        .value(AuditLog::LastAt, Expr::col(AuditLog::At))
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name(REFUSALS)
                        .table(AuditLog::Table)
                        .col(AuditLog::TenantId)
                        .col(AuditLog::Actor)
                        .col(AuditLog::Outcome)
                        .col(AuditLog::At)
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name(BY_DEVICE)
                        .table(AuditLog::Table)
                        .col(AuditLog::TenantId)
                        .col(AuditLog::DeviceId)
                        .col(AuditLog::At)
                        .to_owned(),
                )
                .await?;
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            for name in [BY_DEVICE, REFUSALS] {
                manager
                    .drop_index(Index::drop().name(name).table(AuditLog::Table).to_owned())
                    .await?;
            }
            for column in [AuditLog::LastAt, AuditLog::Count] {
                manager
                    .alter_table(
                        Table::alter()
                            .table(AuditLog::Table)
                            .drop_column(column)
                            .to_owned(),
                    )
                    .await?;
            }
            Ok(())
        }
    }
}

/// Device units wider than a byte: the endpoint's unit is the protocol's
/// station number (a BACnet device instance runs to 4,194,303), no longer a
/// Modbus unit id. SQLite stores any integer in the column already (type
/// affinity), and its ALTER cannot change a column's type, so only MySQL
/// needs the change.
mod m20261129_000003_wide_units {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::sea_orm::DatabaseBackend;

    pub(crate) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261129_000003_wide_units"
        }
    }

    #[derive(DeriveIden)]
    enum Devices {
        Table,
        Unit,
    }

    async fn unit_column(manager: &SchemaManager<'_>, column: ColumnDef) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::MySql {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .modify_column(column)
                    .to_owned(),
            )
            .await
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            unit_column(
                manager,
                ColumnDef::new(Devices::Unit)
                    .big_integer()
                    .not_null()
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            unit_column(
                manager,
                ColumnDef::new(Devices::Unit)
                    .small_integer()
                    .not_null()
                    .to_owned(),
            )
            .await
        }
    }
}

/// Administration and sessions: a user can be disabled (kept, with their
/// memberships and audit trail, but unable to log in or use a token), and
/// a logout refuses the user's tokens issued before it. Existing users stay
/// enabled, their tokens valid.
mod m20261129_000004_access {
    use sea_orm_migration::prelude::*;

    pub(crate) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261129_000004_access"
        }
    }

    #[derive(DeriveIden)]
    enum Users {
        Table,
        Disabled,
        TokensValidFrom,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(
                            ColumnDef::new(Users::Disabled)
                                .boolean()
                                .not_null()
                                .default(false),
                        )
                        .to_owned(),
                )
                .await?;
            // One column per statement: SQLite alters one thing at a time.
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(ColumnDef::new(Users::TokensValidFrom).big_integer().null())
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            for column in [Users::TokensValidFrom, Users::Disabled] {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Users::Table)
                            .drop_column(column)
                            .to_owned(),
                    )
                    .await?;
            }
            Ok(())
        }
    }
}

/// Number 5: links of an external identity provider's subject to a Hearth
/// user in one tenant (OIDC tokens authenticate as that user there).
mod m20261129_000005_identity_links {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::sea_orm::DbBackend;

    use super::ID;

    pub(crate) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261129_000005_identity_links"
        }
    }

    #[derive(DeriveIden)]
    enum UserIdentities {
        Table,
        TenantId,
        Issuer,
        Subject,
        UserId,
    }

    #[derive(DeriveIden)]
    enum Memberships {
        Table,
        UserId,
        TenantId,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let mut table = Table::create()
                .table(UserIdentities::Table)
                .col(
                    ColumnDef::new(UserIdentities::TenantId)
                        .string_len(ID)
                        .not_null(),
                )
                // 255 + 255 + 36 characters keep the key within MySQL's
                // 3072-byte index limit in utf8mb4.
                .col(
                    ColumnDef::new(UserIdentities::Issuer)
                        .string_len(255)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(UserIdentities::Subject)
                        .string_len(255)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(UserIdentities::UserId)
                        .string_len(ID)
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(UserIdentities::TenantId)
                        .col(UserIdentities::Issuer)
                        .col(UserIdentities::Subject),
                )
                // A link points at a membership, not just a user: it can
                // never name a user of another tenant, and it goes when the
                // membership goes.
                .foreign_key(
                    ForeignKey::create()
                        .from_col(UserIdentities::UserId)
                        .from_col(UserIdentities::TenantId)
                        .to_tbl(Memberships::Table)
                        .to_col(Memberships::UserId)
                        .to_col(Memberships::TenantId)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned();
            if manager.get_database_backend() == DbBackend::MySql {
                // Exact issuer and subject matches, as on SQLite.
                table
                    .engine("InnoDB")
                    .character_set("utf8mb4")
                    .collate("utf8mb4_bin");
            }
            manager.create_table(table).await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(UserIdentities::Table).to_owned())
                .await
        }
    }
}

mod m20261129_000006_sessions {
    //! Refresh tokens, one row per token issued, by the SHA-256 of the token.
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::sea_orm::DbBackend;

    pub(crate) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261129_000006_sessions"
        }
    }

    #[derive(DeriveIden)]
    enum Sessions {
        Table,
        TokenHash,
        Family,
        UserId,
        TenantId,
        IssuedAt,
        ExpiresAt,
        Retired,
    }

    #[derive(DeriveIden)]
    enum Users {
        Table,
        Id,
    }

    #[derive(DeriveIden)]
    enum Tenants {
        Table,
        Id,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let mut table = Table::create();
            table
                .table(Sessions::Table)
                .col(
                    ColumnDef::new(Sessions::TokenHash)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Sessions::Family).string_len(36).not_null())
                .col(ColumnDef::new(Sessions::UserId).string_len(36).not_null())
                .col(ColumnDef::new(Sessions::TenantId).string_len(36).not_null())
                .col(ColumnDef::new(Sessions::IssuedAt).big_integer().not_null())
                .col(ColumnDef::new(Sessions::ExpiresAt).big_integer().not_null())
                .col(
                    ColumnDef::new(Sessions::Retired)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                // A deleted user or tenant takes its sessions along.
                .foreign_key(
                    ForeignKey::create()
                        .from(Sessions::Table, Sessions::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Sessions::Table, Sessions::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                );
            // The same table options as the other tables (binary collation).
            if manager.get_database_backend() == DbBackend::MySql {
                table
                    .engine("InnoDB")
                    .character_set("utf8mb4")
                    .collate("utf8mb4_bin");
            }
            manager.create_table(table.to_owned()).await?;
            // Separate statements: SQLite has no inline non-unique index.
            manager
                .create_index(
                    Index::create()
                        .name("ix_sessions_family")
                        .table(Sessions::Table)
                        .col(Sessions::Family)
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("ix_sessions_user")
                        .table(Sessions::Table)
                        .col(Sessions::UserId)
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(Sessions::Table).to_owned())
                .await
        }
    }
}

mod m20261203_000007_alarms {
    //! Alarm occurrences. `active_key` is (tenant, rule, device, point) while
    //! the alarm is raised or acknowledged and NULL once cleared: a unique
    //! index on it is "at most one active alarm per (rule, device, point)",
    //! enforced by the database on both backends (NULLs never collide).
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::sea_orm::DbBackend;

    use super::ID;

    pub(crate) struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261203_000007_alarms"
        }
    }

    #[derive(DeriveIden)]
    enum Alarms {
        Table,
        Id,
        TenantId,
        RuleId,
        RuleName,
        Severity,
        DeviceId,
        Point,
        State,
        Message,
        Value,
        RaisedAt,
        AckBy,
        AckAt,
        AckComment,
        ClearedAt,
        ActiveKey,
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let mut table = Table::create();
            table
                .table(Alarms::Table)
                .col(
                    ColumnDef::new(Alarms::Id)
                        .string_len(ID)
                        .not_null()
                        .primary_key(),
                )
                // No foreign keys: an alarm is history and outlives its
                // rule (a document) and its device.
                .col(ColumnDef::new(Alarms::TenantId).string_len(ID).not_null())
                .col(ColumnDef::new(Alarms::RuleId).string_len(ID).not_null())
                .col(ColumnDef::new(Alarms::RuleName).string_len(200).not_null())
                .col(ColumnDef::new(Alarms::Severity).string_len(16).not_null())
                .col(ColumnDef::new(Alarms::DeviceId).string_len(ID).not_null())
                .col(ColumnDef::new(Alarms::Point).string_len(64).null())
                .col(ColumnDef::new(Alarms::State).string_len(16).not_null())
                .col(ColumnDef::new(Alarms::Message).text().not_null())
                .col(ColumnDef::new(Alarms::Value).double().null())
                .col(ColumnDef::new(Alarms::RaisedAt).big_integer().not_null())
                .col(ColumnDef::new(Alarms::AckBy).string_len(ID).null())
                .col(ColumnDef::new(Alarms::AckAt).big_integer().null())
                .col(ColumnDef::new(Alarms::AckComment).text().null())
                .col(ColumnDef::new(Alarms::ClearedAt).big_integer().null())
                .col(ColumnDef::new(Alarms::ActiveKey).string_len(180).null());
            if manager.get_database_backend() == DbBackend::MySql {
                table
                    .engine("InnoDB")
                    .character_set("utf8mb4")
                    .collate("utf8mb4_bin");
            }
            manager.create_table(table.to_owned()).await?;
            manager
                .create_index(
                    Index::create()
                        .name("ux_alarms_active_key")
                        .table(Alarms::Table)
                        .col(Alarms::ActiveKey)
                        .unique()
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("ix_alarms_tenant_raised")
                        .table(Alarms::Table)
                        .col(Alarms::TenantId)
                        .col(Alarms::RaisedAt)
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name("ix_alarms_state")
                        .table(Alarms::Table)
                        .col(Alarms::State)
                        .to_owned(),
                )
                .await
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table(Alarms::Table).to_owned())
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Database, EntityTrait};
    use sea_orm_migration::MigratorTrait;

    use super::Migrator;
    use crate::entity::audit_log;

    #[tokio::test]
    async fn audit_rows_written_before_coalescing_stand_for_one_attempt_each() {
        // Given a database at the first migration with an audit row in it
        let db = Database::connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite");
        Migrator::up(&db, Some(1)).await.expect("first migration");
        db.execute_unprepared(
            "INSERT INTO tenants (id, slug, name) VALUES ('t', 'acme', 'Acme');
             INSERT INTO audit_log (tenant_id, at, actor, action, device_id, point,
               old_value, new_value, outcome, detail)
             VALUES ('t', 1700000000123456, 'u', 'write_parameter', NULL, NULL,
               NULL, 21.5, 'refused', 'old row');",
        )
        .await
        .expect("seed a version-1 row");

        // When the rest of the migrations run
        Migrator::up(&db, None).await.expect("later migrations");

        // Then the row counts once, last seen when it happened
        let rows = audit_log::Entity::find()
            .all(&db)
            .await
            .expect("read the log");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].count, rows[0].last_at), (1, 1_700_000_000_123_456));

        // And the migration can be rolled back and applied again
        Migrator::down(&db, Some(1)).await.expect("roll back");
        Migrator::up(&db, None).await.expect("re-apply");
        let rows = audit_log::Entity::find()
            .all(&db)
            .await
            .expect("read the log");
        assert_eq!(rows[0].last_at, rows[0].at);
    }
}
