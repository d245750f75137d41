//! The stored shape of an alarm rule: a versioned DTO of its own. Every enum
//! is spelled here as a string, every duration as whole milliseconds
//! (`*_ms`), every instant as an RFC 3339 string with its full precision, so
//! renaming or reshaping a domain type never changes what is on disk.
//!
//! Reading goes through the `schema_version` a document carries; a version
//! this build does not know is refused (a newer Hearth wrote it).

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, SecondsFormat, Utc, Weekday};
use hearth_domain::ids::{AlarmRuleId, AreaId, DeviceId, PointKey, TenantId};
use hearth_domain::model::{
    AlarmCondition, AlarmRule, AlarmTarget, EmailAddress, Language, NotificationSettings,
    Recipient, ScheduleWindow, Severity, ThresholdDirection, Webhook, WebhookSecret,
    WeeklySchedule,
};
use mongodb::bson::{self, Bson, Document};
use serde::{Deserialize, Serialize};

/// The shape this build writes.
pub const RULE_SCHEMA_VERSION: i32 = 1;

pub const ID: &str = "_id";
pub const SCHEMA: &str = "schema_version";
/// Marks the version document a deletion left (no rule content).
pub const DELETED: &str = "deleted";

/// One write of an alarm rule as stored, schema version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlarmRuleV1 {
    /// `<tenant>/<rule id>#<version>`.
    #[serde(rename = "_id")]
    pub key: String,
    pub rule_id: String,
    pub tenant_id: String,
    pub schema_version: i32,
    /// The rule's version (BSON has no unsigned integers).
    pub version: i64,
    pub name: String,
    pub enabled: bool,
    /// "critical", "major", "minor" or "warning".
    pub severity: String,
    pub target: StoredTargetV1,
    pub condition: StoredConditionV1,
    pub schedule: Option<StoredScheduleV1>,
    pub notifications: StoredNotificationsV1,
    /// RFC 3339, UTC, nanoseconds kept.
    pub updated_at: String,
}

/// Which devices, tagged by `kind`: "device", "area" or "tenant".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredTargetV1 {
    Device { device_id: String },
    Area { area_id: String },
    Tenant,
}

/// The condition, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredConditionV1 {
    Threshold {
        point: String,
        /// "above" or "below".
        direction: String,
        limit: f64,
        hysteresis: f64,
        on_delay_ms: i64,
        off_delay_ms: i64,
    },
    Offline {
        after_ms: i64,
    },
    Stale {
        point: String,
        after_ms: i64,
    },
    Consumption {
        point: String,
        max_increase: f64,
        window_start_minute: i32,
    },
    RateOfChange {
        point: String,
        max_change: f64,
        over_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredScheduleV1 {
    /// An IANA name, e.g. "Europe/Copenhagen".
    pub time_zone: String,
    pub windows: Vec<StoredWindowV1>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredWindowV1 {
    /// "mon" … "sun".
    pub day: String,
    pub start_minute: i32,
    pub end_minute: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredNotificationsV1 {
    pub recipients: Vec<StoredRecipientV1>,
    pub delay_ms: i64,
    pub notify_on_clear: bool,
    pub webhook: Option<StoredWebhookV1>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecipientV1 {
    pub email: String,
    /// "en", "de" or "da".
    pub language: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredWebhookV1 {
    pub url: String,
    /// The signing secret: the notifier needs it back as it was.
    pub secret: String,
}

fn millis(what: &str, d: Duration) -> anyhow::Result<i64> {
    // Whole milliseconds only: a sub-millisecond part would not come back.
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        bail!("{what} of {d:?} is not a whole number of milliseconds");
    }
    i64::try_from(d.as_millis()).with_context(|| format!("{what} of {d:?} is too long"))
}

fn duration(what: &str, ms: i64) -> anyhow::Result<Duration> {
    u64::try_from(ms)
        .map(Duration::from_millis)
        .with_context(|| format!("stored {what} of {ms} ms is negative"))
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Major => "major",
        Severity::Minor => "minor",
        Severity::Warning => "warning",
    }
}

fn severity(name: &str) -> anyhow::Result<Severity> {
    Ok(match name {
        "critical" => Severity::Critical,
        "major" => Severity::Major,
        "minor" => Severity::Minor,
        "warning" => Severity::Warning,
        other => bail!("unknown severity {other:?}"),
    })
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

fn day(name: &str) -> anyhow::Result<Weekday> {
    Ok(match name {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        other => bail!("unknown day {other:?}"),
    })
}

fn language_name(l: Language) -> &'static str {
    match l {
        Language::En => "en",
        Language::De => "de",
        Language::Da => "da",
    }
}

fn language(name: &str) -> anyhow::Result<Language> {
    Ok(match name {
        "en" => Language::En,
        "de" => Language::De,
        "da" => Language::Da,
        other => bail!("unknown language {other:?}"),
    })
}

fn point(name: String) -> anyhow::Result<PointKey> {
    PointKey::new(name).context("stored point key")
}

fn minute(what: &str, m: i32) -> anyhow::Result<u16> {
    u16::try_from(m).with_context(|| format!("stored {what} {m} is out of range"))
}

impl StoredAlarmRuleV1 {
    /// The document to store for `rule` under `key`.
    pub fn from_domain(rule: &AlarmRule, key: String) -> anyhow::Result<Self> {
        let condition = match &rule.condition {
            AlarmCondition::Threshold {
                point,
                direction,
                limit,
                hysteresis,
                on_delay,
                off_delay,
            } => StoredConditionV1::Threshold {
                point: point.as_str().to_owned(),
                direction: match direction {
                    ThresholdDirection::Above => "above",
                    ThresholdDirection::Below => "below",
                }
                .to_owned(),
                limit: *limit,
                hysteresis: *hysteresis,
                on_delay_ms: millis("on delay", *on_delay)?,
                off_delay_ms: millis("off delay", *off_delay)?,
            },
            AlarmCondition::Offline { after } => StoredConditionV1::Offline {
                after_ms: millis("offline after", *after)?,
            },
            AlarmCondition::Stale { point, after } => StoredConditionV1::Stale {
                point: point.as_str().to_owned(),
                after_ms: millis("stale after", *after)?,
            },
            AlarmCondition::Consumption {
                point,
                max_increase,
                window_start_minute,
            } => StoredConditionV1::Consumption {
                point: point.as_str().to_owned(),
                max_increase: *max_increase,
                window_start_minute: i32::from(*window_start_minute),
            },
            AlarmCondition::RateOfChange {
                point,
                max_change,
                over,
            } => StoredConditionV1::RateOfChange {
                point: point.as_str().to_owned(),
                max_change: *max_change,
                over_ms: millis("rate period", *over)?,
            },
        };
        Ok(Self {
            key,
            rule_id: rule.id.to_string(),
            tenant_id: rule.tenant_id.to_string(),
            schema_version: RULE_SCHEMA_VERSION,
            version: i64::try_from(rule.version).context("rule version")?,
            name: rule.name.clone(),
            enabled: rule.enabled,
            severity: severity_name(rule.severity).to_owned(),
            target: match &rule.target {
                AlarmTarget::Device(d) => StoredTargetV1::Device {
                    device_id: d.to_string(),
                },
                AlarmTarget::Area(a) => StoredTargetV1::Area {
                    area_id: a.to_string(),
                },
                AlarmTarget::Tenant => StoredTargetV1::Tenant,
            },
            condition,
            schedule: rule.schedule.as_ref().map(|s| StoredScheduleV1 {
                time_zone: s.time_zone.name().to_owned(),
                windows: s
                    .windows
                    .iter()
                    .map(|w| StoredWindowV1 {
                        day: day_name(w.day).to_owned(),
                        start_minute: i32::from(w.start_minute),
                        end_minute: i32::from(w.end_minute),
                    })
                    .collect(),
            }),
            notifications: StoredNotificationsV1 {
                recipients: rule
                    .notifications
                    .recipients
                    .iter()
                    .map(|r| StoredRecipientV1 {
                        email: r.email.as_str().to_owned(),
                        language: language_name(r.language).to_owned(),
                    })
                    .collect(),
                delay_ms: millis("notification delay", rule.notifications.delay)?,
                notify_on_clear: rule.notifications.notify_on_clear,
                webhook: rule
                    .notifications
                    .webhook
                    .as_ref()
                    .map(|w| StoredWebhookV1 {
                        url: w.url.clone(),
                        secret: w.secret.expose().to_owned(),
                    }),
            },
            updated_at: rule.updated_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        })
    }

    pub fn into_domain(self) -> anyhow::Result<AlarmRule> {
        let id: AlarmRuleId = self.rule_id.parse().context("stored rule id")?;
        let inner = || -> anyhow::Result<AlarmRule> {
            let condition = match self.condition {
                StoredConditionV1::Threshold {
                    point: p,
                    direction,
                    limit,
                    hysteresis,
                    on_delay_ms,
                    off_delay_ms,
                } => AlarmCondition::Threshold {
                    point: point(p)?,
                    direction: match direction.as_str() {
                        "above" => ThresholdDirection::Above,
                        "below" => ThresholdDirection::Below,
                        other => bail!("unknown direction {other:?}"),
                    },
                    limit,
                    hysteresis,
                    on_delay: duration("on delay", on_delay_ms)?,
                    off_delay: duration("off delay", off_delay_ms)?,
                },
                StoredConditionV1::Offline { after_ms } => AlarmCondition::Offline {
                    after: duration("offline after", after_ms)?,
                },
                StoredConditionV1::Stale { point: p, after_ms } => AlarmCondition::Stale {
                    point: point(p)?,
                    after: duration("stale after", after_ms)?,
                },
                StoredConditionV1::Consumption {
                    point: p,
                    max_increase,
                    window_start_minute,
                } => AlarmCondition::Consumption {
                    point: point(p)?,
                    max_increase,
                    window_start_minute: minute("window start", window_start_minute)?,
                },
                StoredConditionV1::RateOfChange {
                    point: p,
                    max_change,
                    over_ms,
                } => AlarmCondition::RateOfChange {
                    point: point(p)?,
                    max_change,
                    over: duration("rate period", over_ms)?,
                },
            };
            let schedule = self
                .schedule
                .map(|s| -> anyhow::Result<WeeklySchedule> {
                    let windows = s
                        .windows
                        .into_iter()
                        .map(|w| {
                            Ok(ScheduleWindow {
                                day: day(&w.day)?,
                                start_minute: minute("window start", w.start_minute)?,
                                end_minute: minute("window end", w.end_minute)?,
                            })
                        })
                        .collect::<anyhow::Result<_>>()?;
                    Ok(WeeklySchedule::new(&s.time_zone, windows)?)
                })
                .transpose()?;
            let notifications = NotificationSettings {
                recipients: self
                    .notifications
                    .recipients
                    .into_iter()
                    .map(|r| {
                        Ok(Recipient {
                            email: EmailAddress::new(&r.email)?,
                            language: language(&r.language)?,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
                delay: duration("notification delay", self.notifications.delay_ms)?,
                notify_on_clear: self.notifications.notify_on_clear,
                webhook: self
                    .notifications
                    .webhook
                    .map(|w| -> anyhow::Result<Webhook> {
                        Ok(Webhook::new(&w.url, WebhookSecret::new(w.secret)?)?)
                    })
                    .transpose()?,
            };
            Ok(AlarmRule {
                id,
                tenant_id: self.tenant_id.parse::<TenantId>()?,
                name: self.name,
                enabled: self.enabled,
                severity: severity(&self.severity)?,
                target: match self.target {
                    StoredTargetV1::Device { device_id } => {
                        AlarmTarget::Device(device_id.parse::<DeviceId>()?)
                    }
                    StoredTargetV1::Area { area_id } => {
                        AlarmTarget::Area(area_id.parse::<AreaId>()?)
                    }
                    StoredTargetV1::Tenant => AlarmTarget::Tenant,
                },
                condition,
                schedule,
                notifications,
                version: u64::try_from(self.version).context("negative version")?,
                updated_at: DateTime::parse_from_rfc3339(&self.updated_at)
                    .context("updated_at")?
                    .with_timezone(&Utc),
            })
        };
        inner().with_context(|| format!("stored alarm rule {id}"))
    }
}

/// A stored rule document, whatever schema wrote it, as a domain rule.
pub fn read_rule(document: Document) -> anyhow::Result<AlarmRule> {
    let key = document.get_str(ID).unwrap_or("?").to_owned();
    let schema = match document.get(SCHEMA) {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        other => bail!("stored alarm rule {key}: schema_version is {other:?}, not an integer"),
    };
    match schema {
        1 => bson::from_document::<StoredAlarmRuleV1>(document)
            .with_context(|| format!("stored alarm rule {key} (schema 1)"))?
            .into_domain(),
        newer => Err(anyhow!(
            "stored alarm rule {key} has schema_version {newer}, which this build cannot read \
             (it reads up to {RULE_SCHEMA_VERSION}); was it written by a newer Hearth?"
        )),
    }
}

/// The document to store for `rule` under `key`.
pub fn write_rule(rule: &AlarmRule, key: String) -> anyhow::Result<Document> {
    let stored = StoredAlarmRuleV1::from_domain(rule, key)?;
    bson::to_document(&stored).context("alarm rule as a BSON document")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use mongodb::bson::doc;

    fn uuid(n: u8) -> uuid::Uuid {
        uuid::Uuid::from_bytes([n; 16])
    }

    fn rule(condition: AlarmCondition) -> AlarmRule {
        AlarmRule {
            id: AlarmRuleId::from_uuid(uuid(1)),
            tenant_id: TenantId::from_uuid(uuid(2)),
            name: "Flow too hot".into(),
            enabled: true,
            severity: Severity::Major,
            target: AlarmTarget::Area(AreaId::from_uuid(uuid(3))),
            condition,
            schedule: Some(
                WeeklySchedule::new(
                    "Europe/Copenhagen",
                    vec![ScheduleWindow {
                        day: Weekday::Tue,
                        start_minute: 360,
                        end_minute: 1440,
                    }],
                )
                .expect("schedule"),
            ),
            notifications: NotificationSettings {
                recipients: vec![Recipient {
                    email: EmailAddress::new("ops@acme.test").expect("email"),
                    language: Language::Da,
                }],
                delay: Duration::from_secs(300),
                notify_on_clear: true,
                webhook: Some(
                    Webhook::new(
                        "https://hooks.acme.test/x",
                        WebhookSecret::new("0123456789abcdef").expect("secret"),
                    )
                    .expect("webhook"),
                ),
            },
            version: 3,
            updated_at: Utc
                .timestamp_opt(1_790_000_000, 123_456_789)
                .single()
                .expect("instant"),
        }
    }

    fn threshold() -> AlarmCondition {
        AlarmCondition::Threshold {
            point: PointKey::new("flow_temp").expect("key"),
            direction: ThresholdDirection::Above,
            limit: 90.0,
            hysteresis: 2.5,
            on_delay: Duration::from_secs(60),
            off_delay: Duration::from_millis(1_500),
        }
    }

    #[test]
    fn the_stored_shape_is_pinned() {
        // Given a rule with every field set
        let r = rule(threshold());
        // When it is turned into its stored document
        let stored = write_rule(&r, "t/r#3".into()).expect("converts");
        // Then the document is exactly this: a domain rename must not change it
        let expected = doc! {
            "_id": "t/r#3",
            "rule_id": "01010101-0101-0101-0101-010101010101",
            "tenant_id": "02020202-0202-0202-0202-020202020202",
            "schema_version": 1,
            "version": 3_i64,
            "name": "Flow too hot",
            "enabled": true,
            "severity": "major",
            "target": { "kind": "area", "area_id": "03030303-0303-0303-0303-030303030303" },
            "condition": {
                "kind": "threshold", "point": "flow_temp", "direction": "above",
                "limit": 90.0, "hysteresis": 2.5, "on_delay_ms": 60_000_i64, "off_delay_ms": 1_500_i64,
            },
            "schedule": {
                "time_zone": "Europe/Copenhagen",
                "windows": [{ "day": "tue", "start_minute": 360, "end_minute": 1440 }],
            },
            "notifications": {
                "recipients": [{ "email": "ops@acme.test", "language": "da" }],
                "delay_ms": 300_000_i64,
                "notify_on_clear": true,
                "webhook": { "url": "https://hooks.acme.test/x", "secret": "0123456789abcdef" },
            },
            "updated_at": "2026-09-21T14:13:20.123456789Z",
        };
        assert_eq!(stored, expected);
    }

    #[test]
    fn every_condition_and_target_round_trips() {
        let point = || PointKey::new("energy").expect("key");
        for (condition, target) in [
            (threshold(), AlarmTarget::Tenant),
            (
                AlarmCondition::Offline {
                    after: Duration::from_secs(600),
                },
                AlarmTarget::Device(DeviceId::from_uuid(uuid(9))),
            ),
            (
                AlarmCondition::Stale {
                    point: point(),
                    after: Duration::from_millis(2_250),
                },
                AlarmTarget::Area(AreaId::from_uuid(uuid(8))),
            ),
            (
                AlarmCondition::Consumption {
                    point: point(),
                    max_increase: 12.5,
                    window_start_minute: 1439,
                },
                AlarmTarget::Tenant,
            ),
            (
                AlarmCondition::RateOfChange {
                    point: point(),
                    max_change: 4.0,
                    over: Duration::from_secs(900),
                },
                AlarmTarget::Tenant,
            ),
        ] {
            // Given a rule; When it is written and read back; Then it is equal
            let mut r = rule(condition);
            r.target = target;
            r.schedule = None;
            r.notifications.webhook = None;
            let read = read_rule(write_rule(&r, "k".into()).expect("writes")).expect("reads");
            assert_eq!(read, r);
        }
    }

    #[test]
    fn a_sub_millisecond_duration_is_refused_not_rounded() {
        let mut r = rule(threshold());
        r.notifications.delay = Duration::from_micros(1_500);
        let err = write_rule(&r, "k".into()).expect_err("1.5 ms does not fit");
        assert!(format!("{err:#}").contains("notification delay"), "{err:#}");
    }

    #[test]
    fn unreadable_documents_are_errors_not_panics() {
        let good = write_rule(&rule(threshold()), "k".into()).expect("writes");
        let with = |key: &str, value: Bson| {
            let mut d = good.clone();
            d.insert(key, value);
            d
        };
        for (what, stored) in [
            ("newer schema", with("schema_version", Bson::Int32(2))),
            ("no schema", {
                let mut d = good.clone();
                d.remove("schema_version");
                d
            }),
            ("bad severity", with("severity", "fatal".into())),
            ("bad tenant", with("tenant_id", "acme".into())),
            (
                "bad condition",
                with("condition", Bson::Document(doc! { "kind": "telepathy" })),
            ),
            (
                "negative delay",
                with(
                    "condition",
                    Bson::Document(doc! { "kind": "offline", "after_ms": -1_i64 }),
                ),
            ),
            ("bad time", with("updated_at", "yesterday".into())),
        ] {
            assert!(read_rule(stored).is_err(), "{what} was read");
        }
    }
}
