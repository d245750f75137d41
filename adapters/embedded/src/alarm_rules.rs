//! [`AlarmRuleStore`] in `<data dir>/alarm_rules.redb`: each rule as a
//! versioned JSON document (`StoredRule`) keyed by its id. The document
//! shape is this module's own, so renaming or reshaping a domain type never
//! makes stored rules unreadable: a new shape is a new variant, and old
//! variants keep being read.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc, Weekday};
use hearth_domain::model::{
    AlarmCondition, AlarmRule, AlarmTarget, EmailAddress, Language, NotificationSettings,
    Recipient, ScheduleWindow, Severity, ThresholdDirection, Webhook, WebhookSecret,
    WeeklySchedule,
};
use hearth_domain::ports::AlarmRuleStore;
use hearth_domain::{AlarmRuleId, AreaId, DeviceId, PointKey, StoreError, TenantId};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::EmbeddedError;

/// Rule id (hyphenated, lowercase: sorts as the UUID's bytes) -> `StoredRule` JSON.
const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("alarm_rules");

/// A stored rule, tagged with its document version.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "v")]
enum StoredRule {
    #[serde(rename = "1")]
    V1(RuleV1),
}

#[derive(Debug, Serialize, Deserialize)]
struct RuleV1 {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    enabled: bool,
    severity: String,
    target: TargetV1,
    condition: ConditionV1,
    schedule: Option<ScheduleV1>,
    notifications: NotificationsV1,
    version: u64,
    updated_at_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TargetV1 {
    Device { device_id: Uuid },
    Area { area_id: Uuid },
    Tenant,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ConditionV1 {
    Threshold {
        point: String,
        above: bool,
        limit: f64,
        hysteresis: f64,
        on_delay_ms: u64,
        off_delay_ms: u64,
    },
    Offline {
        after_ms: u64,
    },
    Stale {
        point: String,
        after_ms: u64,
    },
    Consumption {
        point: String,
        max_increase: f64,
        window_start_minute: u16,
    },
    RateOfChange {
        point: String,
        max_change: f64,
        over_ms: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct ScheduleV1 {
    time_zone: String,
    /// (day 0 = Monday, start minute, end minute)
    windows: Vec<(u8, u16, u16)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NotificationsV1 {
    /// (email, language code)
    recipients: Vec<(String, String)>,
    delay_ms: u64,
    notify_on_clear: bool,
    webhook: Option<(String, String)>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn severity_code(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Major => "major",
        Severity::Minor => "minor",
        Severity::Warning => "warning",
    }
}

impl From<&AlarmRule> for StoredRule {
    fn from(rule: &AlarmRule) -> Self {
        let target = match &rule.target {
            AlarmTarget::Device(d) => TargetV1::Device {
                device_id: d.as_uuid(),
            },
            AlarmTarget::Area(a) => TargetV1::Area {
                area_id: a.as_uuid(),
            },
            AlarmTarget::Tenant => TargetV1::Tenant,
        };
        let condition = match &rule.condition {
            AlarmCondition::Threshold {
                point,
                direction,
                limit,
                hysteresis,
                on_delay,
                off_delay,
            } => ConditionV1::Threshold {
                point: point.as_str().to_owned(),
                above: *direction == ThresholdDirection::Above,
                limit: *limit,
                hysteresis: *hysteresis,
                on_delay_ms: ms(*on_delay),
                off_delay_ms: ms(*off_delay),
            },
            AlarmCondition::Offline { after } => ConditionV1::Offline {
                after_ms: ms(*after),
            },
            AlarmCondition::Stale { point, after } => ConditionV1::Stale {
                point: point.as_str().to_owned(),
                after_ms: ms(*after),
            },
            AlarmCondition::Consumption {
                point,
                max_increase,
                window_start_minute,
            } => ConditionV1::Consumption {
                point: point.as_str().to_owned(),
                max_increase: *max_increase,
                window_start_minute: *window_start_minute,
            },
            AlarmCondition::RateOfChange {
                point,
                max_change,
                over,
            } => ConditionV1::RateOfChange {
                point: point.as_str().to_owned(),
                max_change: *max_change,
                over_ms: ms(*over),
            },
        };
        let n = &rule.notifications;
        StoredRule::V1(RuleV1 {
            id: rule.id.as_uuid(),
            tenant_id: rule.tenant_id.as_uuid(),
            name: rule.name.clone(),
            enabled: rule.enabled,
            severity: severity_code(rule.severity).to_owned(),
            target,
            condition,
            schedule: rule.schedule.as_ref().map(|s| ScheduleV1 {
                time_zone: s.time_zone.name().to_owned(),
                windows: s
                    .windows
                    .iter()
                    .map(|w| {
                        (
                            w.day.num_days_from_monday() as u8,
                            w.start_minute,
                            w.end_minute,
                        )
                    })
                    .collect(),
            }),
            notifications: NotificationsV1 {
                recipients: n
                    .recipients
                    .iter()
                    .map(|r| (r.email.as_str().to_owned(), r.language.code().to_owned()))
                    .collect(),
                delay_ms: ms(n.delay),
                notify_on_clear: n.notify_on_clear,
                webhook: n
                    .webhook
                    .as_ref()
                    .map(|w| (w.url.clone(), w.secret.expose().to_owned())),
            },
            version: rule.version,
            updated_at_ms: rule.updated_at.timestamp_millis(),
        })
    }
}

fn corrupt(id: Uuid, what: impl std::fmt::Display) -> EmbeddedError {
    EmbeddedError::Corrupt(format!("alarm rule {id}: {what}"))
}

impl StoredRule {
    fn into_domain(self) -> Result<AlarmRule, EmbeddedError> {
        let StoredRule::V1(r) = self;
        let id = r.id;
        let key = |p: String| PointKey::new(p).map_err(|e| corrupt(id, e));
        let condition = match r.condition {
            ConditionV1::Threshold {
                point,
                above,
                limit,
                hysteresis,
                on_delay_ms,
                off_delay_ms,
            } => AlarmCondition::Threshold {
                point: key(point)?,
                direction: if above {
                    ThresholdDirection::Above
                } else {
                    ThresholdDirection::Below
                },
                limit,
                hysteresis,
                on_delay: Duration::from_millis(on_delay_ms),
                off_delay: Duration::from_millis(off_delay_ms),
            },
            ConditionV1::Offline { after_ms } => AlarmCondition::Offline {
                after: Duration::from_millis(after_ms),
            },
            ConditionV1::Stale { point, after_ms } => AlarmCondition::Stale {
                point: key(point)?,
                after: Duration::from_millis(after_ms),
            },
            ConditionV1::Consumption {
                point,
                max_increase,
                window_start_minute,
            } => AlarmCondition::Consumption {
                point: key(point)?,
                max_increase,
                window_start_minute,
            },
            ConditionV1::RateOfChange {
                point,
                max_change,
                over_ms,
            } => AlarmCondition::RateOfChange {
                point: key(point)?,
                max_change,
                over: Duration::from_millis(over_ms),
            },
        };
        let severity = match r.severity.as_str() {
            "critical" => Severity::Critical,
            "major" => Severity::Major,
            "minor" => Severity::Minor,
            "warning" => Severity::Warning,
            other => return Err(corrupt(id, format!("severity `{other}`"))),
        };
        let schedule = match r.schedule {
            None => None,
            Some(s) => {
                let mut windows = Vec::with_capacity(s.windows.len());
                for (day, start_minute, end_minute) in s.windows {
                    let day = Weekday::try_from(day).map_err(|e| corrupt(id, e))?;
                    windows.push(ScheduleWindow {
                        day,
                        start_minute,
                        end_minute,
                    });
                }
                Some(WeeklySchedule::new(&s.time_zone, windows).map_err(|e| corrupt(id, e))?)
            }
        };
        let mut recipients = Vec::with_capacity(r.notifications.recipients.len());
        for (email, language) in r.notifications.recipients {
            recipients.push(Recipient {
                email: EmailAddress::new(&email).map_err(|e| corrupt(id, e))?,
                language: language.parse::<Language>().map_err(|e| corrupt(id, e))?,
            });
        }
        let webhook = match r.notifications.webhook {
            None => None,
            Some((url, secret)) => Some(
                WebhookSecret::new(secret)
                    .and_then(|s| Webhook::new(&url, s))
                    .map_err(|e| corrupt(id, e))?,
            ),
        };
        Ok(AlarmRule {
            id: AlarmRuleId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            name: r.name,
            enabled: r.enabled,
            severity,
            target: match r.target {
                TargetV1::Device { device_id } => {
                    AlarmTarget::Device(DeviceId::from_uuid(device_id))
                }
                TargetV1::Area { area_id } => AlarmTarget::Area(AreaId::from_uuid(area_id)),
                TargetV1::Tenant => AlarmTarget::Tenant,
            },
            condition,
            schedule,
            notifications: NotificationSettings {
                recipients,
                delay: Duration::from_millis(r.notifications.delay_ms),
                notify_on_clear: r.notifications.notify_on_clear,
                webhook,
            },
            version: r.version,
            updated_at: DateTime::<Utc>::from_timestamp_millis(r.updated_at_ms)
                .ok_or_else(|| corrupt(id, "updated_at out of range"))?,
        })
    }
}

fn decode(bytes: &[u8]) -> Result<AlarmRule, EmbeddedError> {
    serde_json::from_slice::<StoredRule>(bytes)
        .map_err(|e| EmbeddedError::Corrupt(format!("alarm rule document: {e}")))?
        .into_domain()
}

/// The embedded default [`AlarmRuleStore`]. Rules are few and read at
/// evaluator start and by admins, so reads go to the file every time.
#[derive(Clone)]
pub struct EmbeddedAlarmRules {
    db: Arc<Database>,
}

impl EmbeddedAlarmRules {
    /// Opens or creates `<dir>/alarm_rules.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::open_inner(dir)?)
    }

    fn open_inner(dir: &Path) -> Result<Self, EmbeddedError> {
        let db = crate::open_database(dir, "alarm_rules.redb")?;
        let txn = db.begin_write()?;
        txn.open_table(RULES)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    async fn scan(
        &self,
        keep: impl Fn(&AlarmRule) -> bool + Send + 'static,
    ) -> Result<Vec<AlarmRule>, StoreError> {
        let db = self.db.clone();
        Ok(crate::blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(RULES)?;
            let mut rules = Vec::new();
            for entry in table.iter()? {
                let (_, bytes) = entry?;
                let rule = decode(bytes.value())?;
                if keep(&rule) {
                    rules.push(rule);
                }
            }
            Ok(rules)
        })
        .await?)
    }
}

#[async_trait]
impl AlarmRuleStore for EmbeddedAlarmRules {
    async fn put_alarm_rule(
        &self,
        rule: &AlarmRule,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let id = rule.id.to_string();
        let tenant = rule.tenant_id;
        let json = serde_json::to_vec(&StoredRule::from(rule))
            .map_err(|e| EmbeddedError::Corrupt(format!("cannot encode alarm rule: {e}")))?;
        let db = self.db.clone();
        crate::blocking(move || {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(RULES)?;
                let stored = match table.get(id.as_str())? {
                    Some(bytes) => Some(decode(bytes.value())?),
                    None => None,
                };
                let refusal = match (expected, &stored) {
                    (None, Some(_)) => {
                        Some(StoreError::Conflict(format!("alarm rule `{id}` exists")))
                    }
                    (None, None) => None,
                    (Some(_), None) => Some(StoreError::NotFound("alarm rule".into())),
                    (Some(_), Some(s)) if s.tenant_id != tenant => {
                        Some(StoreError::NotFound("alarm rule".into()))
                    }
                    (Some(v), Some(s)) if s.version != v => Some(StoreError::Conflict(format!(
                        "alarm rule `{id}` is at version {}, not {v}",
                        s.version
                    ))),
                    (Some(_), Some(_)) => None,
                };
                if let Some(refusal) = refusal {
                    // Dropping the transaction aborts it.
                    return Ok(Err(refusal));
                }
                table.insert(id.as_str(), json.as_slice())?;
            }
            txn.commit()?;
            Ok(Ok(()))
        })
        .await?
    }

    async fn alarm_rule(
        &self,
        tenant: TenantId,
        id: AlarmRuleId,
    ) -> Result<Option<AlarmRule>, StoreError> {
        let db = self.db.clone();
        let rule = crate::blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(RULES)?;
            match table.get(id.to_string().as_str())? {
                Some(bytes) => Ok(Some(decode(bytes.value())?)),
                None => Ok(None),
            }
        })
        .await?;
        Ok(rule.filter(|r| r.tenant_id == tenant))
    }

    async fn alarm_rules(&self, tenant: TenantId) -> Result<Vec<AlarmRule>, StoreError> {
        self.scan(move |r| r.tenant_id == tenant).await
    }

    async fn all_alarm_rules(&self) -> Result<Vec<AlarmRule>, StoreError> {
        self.scan(|_| true).await
    }

    async fn delete_alarm_rule(
        &self,
        tenant: TenantId,
        id: AlarmRuleId,
    ) -> Result<bool, StoreError> {
        let db = self.db.clone();
        Ok(crate::blocking(move || {
            let key = id.to_string();
            let txn = db.begin_write()?;
            let deleted = {
                let mut table = txn.open_table(RULES)?;
                let owned = match table.get(key.as_str())? {
                    Some(bytes) => decode(bytes.value())?.tenant_id == tenant,
                    None => false,
                };
                if owned {
                    table.remove(key.as_str())?;
                }
                owned
            };
            txn.commit()?;
            Ok(deleted)
        })
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 document as written today must keep reading, whatever
    /// the domain types are renamed to later.
    #[test]
    fn version_one_documents_stay_readable() {
        let doc = r#"{"v":"1","id":"7b0e8c1a-3f7e-4d2a-9a51-0d6c2b8f4e11",
            "tenant_id":"0f8e2a34-5b6c-4d7e-8f90-a1b2c3d4e5f6","name":"Frost",
            "enabled":true,"severity":"critical",
            "target":{"kind":"area","area_id":"11111111-2222-4333-8444-555555555555"},
            "condition":{"kind":"threshold","point":"outdoor","above":false,"limit":-15.0,
              "hysteresis":1.0,"on_delay_ms":60000,"off_delay_ms":0},
            "schedule":{"time_zone":"Europe/Berlin","windows":[[0,360,1320]]},
            "notifications":{"recipients":[["ops@acme.test","de"]],"delay_ms":300000,
              "notify_on_clear":true,"webhook":null},
            "version":3,"updated_at_ms":1780000000000}"#;
        let rule = decode(doc.as_bytes());
        assert!(rule.is_ok(), "{rule:?}");
        let Ok(rule) = rule else { return };
        assert_eq!(rule.name, "Frost");
        assert_eq!(rule.version, 3);
        assert_eq!(rule.severity, Severity::Critical);
        assert!(matches!(
            rule.condition,
            AlarmCondition::Threshold {
                direction: ThresholdDirection::Below,
                ..
            }
        ));
        assert_eq!(
            rule.schedule
                .map(|s| (s.time_zone.name().to_owned(), s.windows[0].day)),
            Some(("Europe/Berlin".to_owned(), Weekday::Mon))
        );
        assert_eq!(rule.notifications.recipients[0].language, Language::De);
        assert!(decode(br#"{"v":"9"}"#).is_err());
    }
}
