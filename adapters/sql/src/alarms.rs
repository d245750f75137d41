//! [`AlarmStore`] on the directory's connection: one row per alarm. "One
//! active alarm per (rule, device, point)" is the unique index on
//! `active_key` (NULL once cleared), so it holds across replicas; every
//! transition is one conditional UPDATE, so two concurrent acknowledgements
//! cannot both win.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_domain::model::{Acknowledgement, Alarm, AlarmState, Severity};
use hearth_domain::ports::{AlarmFilter, AlarmStore, Page};
use hearth_domain::{AlarmId, AlarmRuleId, DeviceId, PointKey, StoreError, TenantId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::directory::SqlDirectory;
use crate::entity::micros;
use crate::error::{backend, invalid_row, on_insert};

mod rows {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alarms")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub rule_id: String,
        pub rule_name: String,
        pub severity: String,
        pub device_id: String,
        pub point: Option<String>,
        pub state: String,
        pub message: String,
        pub value: Option<f64>,
        /// Microseconds since the epoch, like every timestamp here.
        pub raised_at: i64,
        pub ack_by: Option<String>,
        pub ack_at: Option<i64>,
        pub ack_comment: Option<String>,
        pub cleared_at: Option<i64>,
        /// (tenant, rule, device, point) while active, NULL once cleared.
        pub active_key: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn state_code(s: AlarmState) -> &'static str {
    match s {
        AlarmState::Raised => "raised",
        AlarmState::Acknowledged => "acknowledged",
        AlarmState::Cleared => "cleared",
    }
}

fn severity_code(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Major => "major",
        Severity::Minor => "minor",
        Severity::Warning => "warning",
    }
}

fn active_key(a: &Alarm) -> String {
    match &a.point {
        Some(p) => format!(
            "{}:{}:{}:{}",
            a.tenant_id,
            a.rule_id,
            a.device_id,
            p.as_str()
        ),
        None => format!("{}:{}:{}", a.tenant_id, a.rule_id, a.device_id),
    }
}

impl rows::Model {
    fn from_domain(a: &Alarm) -> Self {
        Self {
            id: a.id.to_string(),
            tenant_id: a.tenant_id.to_string(),
            rule_id: a.rule_id.to_string(),
            rule_name: a.rule_name.clone(),
            severity: severity_code(a.severity).to_owned(),
            device_id: a.device_id.to_string(),
            point: a.point.as_ref().map(|p| p.as_str().to_owned()),
            state: state_code(a.state).to_owned(),
            message: a.message.clone(),
            value: a.value,
            raised_at: micros(a.raised_at),
            ack_by: a.acknowledgement.as_ref().map(|k| k.by.to_string()),
            ack_at: a.acknowledgement.as_ref().map(|k| micros(k.at)),
            ack_comment: a.acknowledgement.as_ref().map(|k| k.comment.clone()),
            cleared_at: a.cleared_at.map(micros),
            active_key: a.state.is_active().then(|| active_key(a)),
        }
    }

    fn into_domain(self) -> Result<Alarm, StoreError> {
        let bad = |reason: &str| invalid_row("alarms", &self.id, reason);
        let time =
            |t: i64, what: &str| DateTime::<Utc>::from_timestamp_micros(t).ok_or_else(|| bad(what));
        let acknowledgement = match (&self.ack_by, self.ack_at) {
            (Some(by), Some(at)) => Some(Acknowledgement {
                by: UserId::from_str(by).map_err(|_| bad("ack_by"))?,
                at: time(at, "ack_at")?,
                comment: self.ack_comment.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Alarm {
            id: AlarmId::from_str(&self.id).map_err(|_| bad("id"))?,
            tenant_id: TenantId::from_str(&self.tenant_id).map_err(|_| bad("tenant_id"))?,
            rule_id: AlarmRuleId::from_str(&self.rule_id).map_err(|_| bad("rule_id"))?,
            rule_name: self.rule_name.clone(),
            severity: match self.severity.as_str() {
                "critical" => Severity::Critical,
                "major" => Severity::Major,
                "minor" => Severity::Minor,
                "warning" => Severity::Warning,
                _ => return Err(bad("severity")),
            },
            device_id: DeviceId::from_str(&self.device_id).map_err(|_| bad("device_id"))?,
            point: match &self.point {
                Some(p) => Some(PointKey::new(p.clone()).map_err(|_| bad("point"))?),
                None => None,
            },
            state: match self.state.as_str() {
                "raised" => AlarmState::Raised,
                "acknowledged" => AlarmState::Acknowledged,
                "cleared" => AlarmState::Cleared,
                _ => return Err(bad("state")),
            },
            message: self.message.clone(),
            value: self.value,
            raised_at: time(self.raised_at, "raised_at")?,
            acknowledgement,
            cleared_at: self.cleared_at.map(|t| time(t, "cleared_at")).transpose()?,
        })
    }
}

fn clamp(n: u64) -> u64 {
    n.min(i64::MAX as u64)
}

/// The listing condition, `None` when it can match nothing.
fn condition(tenant: TenantId, filter: &AlarmFilter) -> Option<Condition> {
    let mut c = Condition::all().add(rows::Column::TenantId.eq(tenant.to_string()));
    if let Some(states) = &filter.states {
        c = c.add(rows::Column::State.is_in(states.iter().map(|s| state_code(*s))));
    }
    if let Some(severities) = &filter.severities {
        c = c.add(rows::Column::Severity.is_in(severities.iter().map(|s| severity_code(*s))));
    }
    if let Some(devices) = &filter.devices {
        if devices.is_empty() {
            return None;
        }
        c = c.add(rows::Column::DeviceId.is_in(devices.iter().map(ToString::to_string)));
    }
    if let Some(from) = filter.from {
        c = c.add(rows::Column::RaisedAt.gte(micros(from)));
    }
    if let Some(to) = filter.to {
        c = c.add(rows::Column::RaisedAt.lt(micros(to)));
    }
    Some(c)
}

impl SqlDirectory {
    async fn read_alarm(&self, tenant: TenantId, id: AlarmId) -> Result<Option<Alarm>, StoreError> {
        rows::Entity::find_by_id(id.to_string())
            .filter(rows::Column::TenantId.eq(tenant.to_string()))
            .one(&self.db)
            .await
            .map_err(backend("could not read an alarm"))?
            .map(rows::Model::into_domain)
            .transpose()
    }

    /// After a conditional UPDATE: the changed row, or why nothing changed.
    async fn after_transition(
        &self,
        tenant: TenantId,
        id: AlarmId,
        changed: bool,
        refused: &str,
    ) -> Result<Alarm, StoreError> {
        match self.read_alarm(tenant, id).await? {
            Some(alarm) if changed => Ok(alarm),
            Some(_) => Err(StoreError::Conflict(refused.to_owned())),
            None => Err(StoreError::NotFound("alarm".into())),
        }
    }
}

#[async_trait]
impl AlarmStore for SqlDirectory {
    async fn insert_alarm(&self, alarm: &Alarm) -> Result<(), StoreError> {
        rows::Entity::insert(rows::Model::from_domain(alarm).into_active_model())
            .exec_without_returning(&self.db)
            .await
            .map_err(on_insert("could not insert an alarm", || {
                "an active alarm of this rule, device and point exists".to_owned()
            }))?;
        Ok(())
    }

    async fn acknowledge_alarm(
        &self,
        tenant: TenantId,
        id: AlarmId,
        ack: &Acknowledgement,
    ) -> Result<Alarm, StoreError> {
        let result = rows::Entity::update_many()
            .col_expr(
                rows::Column::State,
                Expr::value(state_code(AlarmState::Acknowledged)),
            )
            .col_expr(rows::Column::AckBy, Expr::value(ack.by.to_string()))
            .col_expr(rows::Column::AckAt, Expr::value(micros(ack.at)))
            .col_expr(rows::Column::AckComment, Expr::value(ack.comment.clone()))
            .filter(rows::Column::Id.eq(id.to_string()))
            .filter(rows::Column::TenantId.eq(tenant.to_string()))
            .filter(rows::Column::State.eq(state_code(AlarmState::Raised)))
            .exec(&self.db)
            .await
            .map_err(backend("could not acknowledge an alarm"))?;
        self.after_transition(
            tenant,
            id,
            result.rows_affected == 1,
            "the alarm is already acknowledged or cleared",
        )
        .await
    }

    async fn clear_alarm(
        &self,
        tenant: TenantId,
        id: AlarmId,
        at: DateTime<Utc>,
    ) -> Result<Alarm, StoreError> {
        let result = rows::Entity::update_many()
            .col_expr(
                rows::Column::State,
                Expr::value(state_code(AlarmState::Cleared)),
            )
            .col_expr(rows::Column::ClearedAt, Expr::value(micros(at)))
            .col_expr(rows::Column::ActiveKey, Expr::value(Option::<String>::None))
            .filter(rows::Column::Id.eq(id.to_string()))
            .filter(rows::Column::TenantId.eq(tenant.to_string()))
            .filter(rows::Column::State.ne(state_code(AlarmState::Cleared)))
            .exec(&self.db)
            .await
            .map_err(backend("could not clear an alarm"))?;
        self.after_transition(
            tenant,
            id,
            result.rows_affected == 1,
            "the alarm is already cleared",
        )
        .await
    }

    async fn alarm(&self, tenant: TenantId, id: AlarmId) -> Result<Option<Alarm>, StoreError> {
        self.read_alarm(tenant, id).await
    }

    async fn alarms(
        &self,
        tenant: TenantId,
        filter: &AlarmFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Alarm>, StoreError> {
        let Some(condition) = condition(tenant, filter) else {
            return Ok(Page {
                items: Vec::new(),
                total: 0,
            });
        };
        let total = rows::Entity::find()
            .filter(condition.clone())
            .count(&self.db)
            .await
            .map_err(backend("could not count alarms"))?;
        if limit == 0 || offset >= total {
            return Ok(Page {
                items: Vec::new(),
                total,
            });
        }
        let items = rows::Entity::find()
            .filter(condition)
            .order_by_desc(rows::Column::RaisedAt)
            .order_by_desc(rows::Column::Id)
            .offset(clamp(offset))
            .limit(clamp(limit))
            .all(&self.db)
            .await
            .map_err(backend("could not list alarms"))?
            .into_iter()
            .map(rows::Model::into_domain)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, total })
    }

    async fn active_alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        rows::Entity::find()
            .filter(rows::Column::State.ne(state_code(AlarmState::Cleared)))
            .order_by_asc(rows::Column::RaisedAt)
            .all(&self.db)
            .await
            .map_err(backend("could not list active alarms"))?
            .into_iter()
            .map(rows::Model::into_domain)
            .collect()
    }
}
