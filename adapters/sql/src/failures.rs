//! [`NotificationFailureLog`] on the relational store: one row per dead
//! letter, the auto-increment id as the listing's cursor.

use async_trait::async_trait;
use chrono::DateTime;
use hearth_domain::model::{AlarmTransition, NotificationFailure};
use hearth_domain::ports::{NotificationFailureLog, Page, RecordedFailure};
use hearth_domain::{AlarmId, AlarmRuleId, StoreError, TenantId};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::directory::SqlDirectory;
use crate::entity::micros;
use crate::error::{backend, invalid_row};

pub(crate) mod notification_failures {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_failures")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: String,
        pub alarm_id: String,
        pub rule_id: String,
        pub rule_name: String,
        pub transition: String,
        pub channel: String,
        pub target: String,
        pub attempts: i32,
        pub error: String,
        /// Microseconds since the Unix epoch.
        pub failed_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use notification_failures::{ActiveModel, Column, Entity, Model};

const TABLE: &str = "notification_failures";

fn transition_code(t: AlarmTransition) -> &'static str {
    match t {
        AlarmTransition::Raised => "raised",
        AlarmTransition::Acknowledged => "acknowledged",
        AlarmTransition::Cleared => "cleared",
    }
}

impl Model {
    fn into_domain(self) -> Result<RecordedFailure, StoreError> {
        let row = self.id.to_string();
        let uuid = |column: &str, v: &str| {
            uuid::Uuid::parse_str(v).map_err(|e| invalid_row(TABLE, &row, format!("{column}: {e}")))
        };
        let transition = match self.transition.as_str() {
            "raised" => AlarmTransition::Raised,
            "acknowledged" => AlarmTransition::Acknowledged,
            "cleared" => AlarmTransition::Cleared,
            other => return Err(invalid_row(TABLE, &row, format!("transition `{other}`"))),
        };
        let failure = NotificationFailure {
            tenant_id: TenantId::from_uuid(uuid("tenant_id", &self.tenant_id)?),
            alarm_id: AlarmId::from_uuid(uuid("alarm_id", &self.alarm_id)?),
            rule_id: AlarmRuleId::from_uuid(uuid("rule_id", &self.rule_id)?),
            rule_name: self.rule_name,
            transition,
            channel: self
                .channel
                .parse()
                .map_err(|e| invalid_row(TABLE, &row, format!("channel: {e}")))?,
            target: self.target,
            attempts: u32::try_from(self.attempts)
                .map_err(|e| invalid_row(TABLE, &row, format!("attempts: {e}")))?,
            error: self.error,
            failed_at: DateTime::from_timestamp_micros(self.failed_at)
                .ok_or_else(|| invalid_row(TABLE, &row, "failed_at out of range"))?,
        };
        Ok(RecordedFailure {
            seq: self.id,
            failure,
        })
    }
}

#[async_trait]
impl NotificationFailureLog for SqlDirectory {
    async fn record(&self, f: NotificationFailure) -> Result<(), StoreError> {
        ActiveModel {
            tenant_id: Set(f.tenant_id.to_string()),
            alarm_id: Set(f.alarm_id.to_string()),
            rule_id: Set(f.rule_id.to_string()),
            rule_name: Set(f.rule_name),
            transition: Set(transition_code(f.transition).to_owned()),
            channel: Set(f.channel.code().to_owned()),
            target: Set(f.target),
            attempts: Set(i32::try_from(f.attempts).unwrap_or(i32::MAX)),
            error: Set(NotificationFailure::truncated_error(&f.error)),
            failed_at: Set(micros(f.failed_at)),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map(drop)
        .map_err(backend("record a notification failure"))
    }

    async fn list_failures(
        &self,
        tenant: TenantId,
        first: u32,
        after: Option<i64>,
    ) -> Result<Page<RecordedFailure>, StoreError> {
        let mine = Entity::find().filter(Column::TenantId.eq(tenant.to_string()));
        let total = mine
            .clone()
            .count(&self.db)
            .await
            .map_err(backend("count notification failures"))?;
        let mut page = mine;
        if let Some(after) = after {
            page = page.filter(Column::Id.lt(after));
        }
        let rows = page
            .order_by_desc(Column::Id)
            .limit(u64::from(first))
            .all(&self.db)
            .await
            .map_err(backend("list notification failures"))?;
        let items = rows
            .into_iter()
            .map(Model::into_domain)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, total })
    }
}
