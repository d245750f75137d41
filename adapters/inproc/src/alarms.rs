//! In-memory [`AlarmRuleStore`] and [`AlarmStore`]: the semantics of the
//! embedded and SQL stores without a file or server, for use-case tests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_domain::model::{Acknowledgement, Alarm, AlarmRule, AlarmState};
use hearth_domain::ports::{AlarmFilter, AlarmRuleStore, AlarmStore, Page};
use hearth_domain::{AlarmId, AlarmRuleId, StoreError, TenantId};
use parking_lot::RwLock;

/// Rules keyed by id; a `BTreeMap` so listings come out ordered by id.
#[derive(Default)]
pub struct MemoryAlarmRules {
    rules: RwLock<BTreeMap<AlarmRuleId, AlarmRule>>,
}

impl MemoryAlarmRules {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl AlarmRuleStore for MemoryAlarmRules {
    async fn put_alarm_rule(
        &self,
        rule: &AlarmRule,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut rules = self.rules.write();
        let stored = rules.get(&rule.id);
        match (expected, stored) {
            (None, Some(_)) => {
                return Err(StoreError::Conflict(format!(
                    "alarm rule `{}` exists",
                    rule.id
                )))
            }
            (None, None) => {}
            (Some(_), None) => return Err(StoreError::NotFound("alarm rule".into())),
            (Some(_), Some(s)) if s.tenant_id != rule.tenant_id => {
                return Err(StoreError::NotFound("alarm rule".into()))
            }
            (Some(v), Some(s)) if s.version != v => {
                return Err(StoreError::Conflict(format!(
                    "alarm rule `{}` is at version {}, not {v}",
                    rule.id, s.version
                )))
            }
            (Some(_), Some(_)) => {}
        }
        rules.insert(rule.id, rule.clone());
        Ok(())
    }

    async fn alarm_rule(
        &self,
        tenant: TenantId,
        id: AlarmRuleId,
    ) -> Result<Option<AlarmRule>, StoreError> {
        Ok(self
            .rules
            .read()
            .get(&id)
            .filter(|r| r.tenant_id == tenant)
            .cloned())
    }

    async fn alarm_rules(&self, tenant: TenantId) -> Result<Vec<AlarmRule>, StoreError> {
        Ok(self
            .rules
            .read()
            .values()
            .filter(|r| r.tenant_id == tenant)
            .cloned()
            .collect())
    }

    async fn all_alarm_rules(&self) -> Result<Vec<AlarmRule>, StoreError> {
        Ok(self.rules.read().values().cloned().collect())
    }

    async fn delete_alarm_rule(
        &self,
        tenant: TenantId,
        id: AlarmRuleId,
    ) -> Result<bool, StoreError> {
        let mut rules = self.rules.write();
        if rules.get(&id).is_some_and(|r| r.tenant_id == tenant) {
            rules.remove(&id);
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

/// Alarms in insertion order; small enough for tests to scan.
#[derive(Default)]
pub struct MemoryAlarms {
    alarms: RwLock<Vec<Alarm>>,
}

impl MemoryAlarms {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Whether `alarm` passes `filter` (the tenant is checked by the caller).
pub fn alarm_matches(alarm: &Alarm, filter: &AlarmFilter) -> bool {
    filter
        .states
        .as_ref()
        .is_none_or(|s| s.contains(&alarm.state))
        && filter
            .severities
            .as_ref()
            .is_none_or(|s| s.contains(&alarm.severity))
        && filter
            .devices
            .as_ref()
            .is_none_or(|d| d.contains(&alarm.device_id))
        && filter.from.is_none_or(|from| alarm.raised_at >= from)
        && filter.to.is_none_or(|to| alarm.raised_at < to)
}

impl MemoryAlarms {
    fn transition(
        &self,
        tenant: TenantId,
        id: AlarmId,
        change: impl FnOnce(&mut Alarm) -> Result<(), StoreError>,
    ) -> Result<Alarm, StoreError> {
        let mut alarms = self.alarms.write();
        let alarm = alarms
            .iter_mut()
            .find(|a| a.id == id && a.tenant_id == tenant)
            .ok_or_else(|| StoreError::NotFound("alarm".into()))?;
        change(alarm)?;
        Ok(alarm.clone())
    }
}

#[async_trait]
impl AlarmStore for MemoryAlarms {
    async fn insert_alarm(&self, alarm: &Alarm) -> Result<(), StoreError> {
        let mut alarms = self.alarms.write();
        let twin = alarms.iter().any(|a| {
            a.state.is_active()
                && a.tenant_id == alarm.tenant_id
                && a.rule_id == alarm.rule_id
                && a.device_id == alarm.device_id
                && a.point == alarm.point
        });
        if twin || alarms.iter().any(|a| a.id == alarm.id) {
            return Err(StoreError::Conflict(
                "an active alarm of this rule, device and point exists".into(),
            ));
        }
        alarms.push(alarm.clone());
        Ok(())
    }

    async fn acknowledge_alarm(
        &self,
        tenant: TenantId,
        id: AlarmId,
        ack: &Acknowledgement,
    ) -> Result<Alarm, StoreError> {
        self.transition(tenant, id, |alarm| match alarm.state {
            AlarmState::Raised => {
                alarm.state = AlarmState::Acknowledged;
                alarm.acknowledgement = Some(ack.clone());
                Ok(())
            }
            AlarmState::Acknowledged => Err(StoreError::Conflict("already acknowledged".into())),
            AlarmState::Cleared => Err(StoreError::Conflict("already cleared".into())),
        })
    }

    async fn clear_alarm(
        &self,
        tenant: TenantId,
        id: AlarmId,
        at: DateTime<Utc>,
    ) -> Result<Alarm, StoreError> {
        self.transition(tenant, id, |alarm| {
            if alarm.state.is_active() {
                alarm.state = AlarmState::Cleared;
                alarm.cleared_at = Some(at);
                Ok(())
            } else {
                Err(StoreError::Conflict("already cleared".into()))
            }
        })
    }

    async fn alarm(&self, tenant: TenantId, id: AlarmId) -> Result<Option<Alarm>, StoreError> {
        Ok(self
            .alarms
            .read()
            .iter()
            .find(|a| a.id == id && a.tenant_id == tenant)
            .cloned())
    }

    async fn alarms(
        &self,
        tenant: TenantId,
        filter: &AlarmFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Alarm>, StoreError> {
        let mut matching: Vec<Alarm> = self
            .alarms
            .read()
            .iter()
            .filter(|a| a.tenant_id == tenant && alarm_matches(a, filter))
            .cloned()
            .collect();
        matching.sort_by_key(|a| std::cmp::Reverse((a.raised_at, a.id)));
        let total = matching.len() as u64;
        let items = matching
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        Ok(Page { items, total })
    }

    async fn active_alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        Ok(self
            .alarms
            .read()
            .iter()
            .filter(|a| a.state.is_active())
            .cloned()
            .collect())
    }
}
