//! Alarms: `alarmRules`, `putAlarmRule`, `deleteAlarmRule` (Admin, and Full
//! covering every device), `alarms` (anyone, within their device scope),
//! `acknowledgeAlarm` (every role but Read-only, within scope) and the
//! `alarmEvents` subscription (scope-filtered, following access changes).
//! GraphQL types here are the edge's own; conversions to the domain's
//! happen in this file, and a webhook secret is never returned.

use std::time::Duration;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{
    Context, Enum, InputObject, Object, OneofObject, SimpleObject, Subscription, ID,
};
use chrono::{DateTime, Utc, Weekday};
use futures::stream::{Stream, StreamExt};
use hearth_domain::model::{self, AlarmCondition, AlarmTarget};
use hearth_domain::services::{
    AlarmQuery, AlarmRuleInput, AlarmService, LiveUpdate, NotificationInput, WebhookInput,
};
use hearth_domain::{AlarmId, AlarmRuleId, AreaId, DeviceId, PointKey};

use super::error::{bad_input, coded, from_domain, Code};
use super::live::{lagged, updates};
use super::{parse_id, principal, services};

fn alarm_service<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a AlarmService> {
    services(ctx).alarms().ok_or_else(|| {
        coded(
            Code::Unavailable,
            "alarms are not configured on this server",
        )
    })
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "model::Severity")]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "model::AlarmState")]
pub enum AlarmState {
    Raised,
    Acknowledged,
    Cleared,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "model::AlarmTransition")]
pub enum AlarmTransition {
    Raised,
    Acknowledged,
    Cleared,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "model::ThresholdDirection")]
pub enum ThresholdDirection {
    Above,
    Below,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "model::Language")]
pub enum Language {
    En,
    De,
    Da,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl From<Day> for Weekday {
    fn from(d: Day) -> Self {
        match d {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }
}

impl From<Weekday> for Day {
    fn from(d: Weekday) -> Self {
        match d {
            Weekday::Mon => Day::Mon,
            Weekday::Tue => Day::Tue,
            Weekday::Wed => Day::Wed,
            Weekday::Thu => Day::Thu,
            Weekday::Fri => Day::Fri,
            Weekday::Sat => Day::Sat,
            Weekday::Sun => Day::Sun,
        }
    }
}

// ------------------------------------------------------------- output

/// Exactly one of the fields is set.
#[derive(SimpleObject)]
pub struct AlarmTargetView {
    pub device_id: Option<ID>,
    pub area_id: Option<ID>,
    /// Every device of the tenant.
    pub tenant: bool,
}

#[derive(SimpleObject, InputObject)]
#[graphql(input_name = "ThresholdInput")]
pub struct Threshold {
    pub point: String,
    pub direction: ThresholdDirection,
    pub limit: f64,
    pub hysteresis: f64,
    pub on_delay_seconds: i32,
    pub off_delay_seconds: i32,
}

#[derive(SimpleObject, InputObject)]
#[graphql(input_name = "OfflineInput")]
pub struct Offline {
    pub after_seconds: i32,
}

#[derive(SimpleObject, InputObject)]
#[graphql(input_name = "StaleInput")]
pub struct Stale {
    pub point: String,
    pub after_seconds: i32,
}

#[derive(SimpleObject, InputObject)]
#[graphql(input_name = "ConsumptionInput")]
pub struct Consumption {
    pub point: String,
    pub max_increase: f64,
    /// Minutes after local midnight the daily window starts (0 to 1439).
    pub window_start_minute: i32,
}

#[derive(SimpleObject, InputObject)]
#[graphql(input_name = "RateOfChangeInput")]
pub struct RateOfChange {
    pub point: String,
    pub max_change: f64,
    pub over_seconds: i32,
}

/// Exactly one of the fields is set: the rule's kind.
#[derive(SimpleObject, Default)]
pub struct AlarmConditionView {
    pub threshold: Option<Threshold>,
    pub offline: Option<Offline>,
    pub stale: Option<Stale>,
    pub consumption: Option<Consumption>,
    pub rate_of_change: Option<RateOfChange>,
}

#[derive(SimpleObject, InputObject, Clone, Copy)]
#[graphql(input_name = "ScheduleWindowInput")]
pub struct ScheduleWindow {
    pub day: Day,
    pub start_minute: i32,
    /// Exclusive; 1440 is midnight.
    pub end_minute: i32,
}

#[derive(SimpleObject)]
pub struct Schedule {
    /// IANA name, e.g. `Europe/Copenhagen`.
    pub time_zone: String,
    pub windows: Vec<ScheduleWindow>,
}

#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "RecipientInput")]
pub struct Recipient {
    pub email: String,
    #[graphql(default_with = "Language::En")]
    pub language: Language,
}

/// The secret is write-only: it is never returned.
#[derive(SimpleObject)]
pub struct WebhookView {
    pub url: String,
}

#[derive(SimpleObject)]
pub struct Notifications {
    pub recipients: Vec<Recipient>,
    pub delay_seconds: i32,
    pub notify_on_clear: bool,
    pub webhook: Option<WebhookView>,
}

#[derive(SimpleObject)]
pub struct AlarmRule {
    pub id: ID,
    pub name: String,
    pub enabled: bool,
    pub severity: Severity,
    pub target: AlarmTargetView,
    pub condition: AlarmConditionView,
    /// Null: always active.
    pub schedule: Option<Schedule>,
    pub notifications: Notifications,
    /// Pass as `expectedVersion` to change the rule.
    pub version: i32,
    pub updated_at: DateTime<Utc>,
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl From<model::AlarmRule> for AlarmRule {
    fn from(r: model::AlarmRule) -> Self {
        let target = match r.target {
            AlarmTarget::Device(d) => AlarmTargetView {
                device_id: Some(ID(d.to_string())),
                area_id: None,
                tenant: false,
            },
            AlarmTarget::Area(a) => AlarmTargetView {
                device_id: None,
                area_id: Some(ID(a.to_string())),
                tenant: false,
            },
            AlarmTarget::Tenant => AlarmTargetView {
                device_id: None,
                area_id: None,
                tenant: true,
            },
        };
        let mut condition = AlarmConditionView::default();
        match r.condition {
            AlarmCondition::Threshold {
                point,
                direction,
                limit,
                hysteresis,
                on_delay,
                off_delay,
            } => {
                condition.threshold = Some(Threshold {
                    point: point.to_string(),
                    direction: direction.into(),
                    limit,
                    hysteresis,
                    on_delay_seconds: secs(on_delay),
                    off_delay_seconds: secs(off_delay),
                })
            }
            AlarmCondition::Offline { after } => {
                condition.offline = Some(Offline {
                    after_seconds: secs(after),
                })
            }
            AlarmCondition::Stale { point, after } => {
                condition.stale = Some(Stale {
                    point: point.to_string(),
                    after_seconds: secs(after),
                })
            }
            AlarmCondition::Consumption {
                point,
                max_increase,
                window_start_minute,
            } => {
                condition.consumption = Some(Consumption {
                    point: point.to_string(),
                    max_increase,
                    window_start_minute: i32::from(window_start_minute),
                })
            }
            AlarmCondition::RateOfChange {
                point,
                max_change,
                over,
            } => {
                condition.rate_of_change = Some(RateOfChange {
                    point: point.to_string(),
                    max_change,
                    over_seconds: secs(over),
                })
            }
        }
        AlarmRule {
            id: ID(r.id.to_string()),
            name: r.name,
            enabled: r.enabled,
            severity: r.severity.into(),
            target,
            condition,
            schedule: r.schedule.map(|s| Schedule {
                time_zone: s.time_zone.name().to_owned(),
                windows: s
                    .windows
                    .iter()
                    .map(|w| ScheduleWindow {
                        day: w.day.into(),
                        start_minute: i32::from(w.start_minute),
                        end_minute: i32::from(w.end_minute),
                    })
                    .collect(),
            }),
            notifications: Notifications {
                recipients: r
                    .notifications
                    .recipients
                    .iter()
                    .map(|x| Recipient {
                        email: x.email.as_str().to_owned(),
                        language: x.language.into(),
                    })
                    .collect(),
                delay_seconds: secs(r.notifications.delay),
                notify_on_clear: r.notifications.notify_on_clear,
                webhook: r.notifications.webhook.map(|w| WebhookView { url: w.url }),
            },
            version: i32::try_from(r.version).unwrap_or(i32::MAX),
            updated_at: r.updated_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct Acknowledgement {
    pub by: ID,
    pub at: DateTime<Utc>,
    pub comment: String,
}

#[derive(SimpleObject)]
pub struct Alarm {
    pub id: ID,
    pub state: AlarmState,
    pub severity: Severity,
    pub device_id: ID,
    /// Null for device-level conditions (offline).
    pub point: Option<String>,
    pub message: String,
    pub raised_at: DateTime<Utc>,
    pub rule_id: ID,
    pub rule_name: String,
    /// The value that raised it, if any.
    pub value: Option<f64>,
    pub acknowledgement: Option<Acknowledgement>,
    pub cleared_at: Option<DateTime<Utc>>,
}

impl From<&model::Alarm> for Alarm {
    fn from(a: &model::Alarm) -> Self {
        Alarm {
            id: ID(a.id.to_string()),
            state: a.state.into(),
            severity: a.severity.into(),
            device_id: ID(a.device_id.to_string()),
            point: a.point.as_ref().map(ToString::to_string),
            message: a.message.clone(),
            raised_at: a.raised_at,
            rule_id: ID(a.rule_id.to_string()),
            rule_name: a.rule_name.clone(),
            value: a.value,
            acknowledgement: a.acknowledgement.as_ref().map(|k| Acknowledgement {
                by: ID(k.by.to_string()),
                at: k.at,
                comment: k.comment.clone(),
            }),
            cleared_at: a.cleared_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct AlarmEvent {
    pub transition: AlarmTransition,
    pub alarm: Alarm,
}

#[derive(SimpleObject)]
pub struct AlarmConnectionFields {
    /// All alarms matching the filter, across pages.
    pub total_count: u64,
}

// -------------------------------------------------------------- input

/// Exactly one field: a device, an area (and its subtree) or the whole tenant.
#[derive(OneofObject)]
pub enum AlarmTargetInput {
    DeviceId(ID),
    AreaId(ID),
    /// Must be `true`.
    Tenant(bool),
}

/// Exactly one field: the rule's kind.
#[derive(OneofObject)]
pub enum AlarmConditionInput {
    Threshold(Threshold),
    Offline(Offline),
    Stale(Stale),
    Consumption(Consumption),
    RateOfChange(RateOfChange),
}

#[derive(InputObject)]
pub struct ScheduleInput {
    pub time_zone: String,
    pub windows: Vec<ScheduleWindow>,
}

#[derive(InputObject)]
#[graphql(name = "WebhookInput")]
pub struct WebhookInputGql {
    pub url: String,
    /// Write-only, 16 to 256 bytes; omit on an update to keep the stored one.
    pub secret: Option<String>,
}

#[derive(InputObject)]
pub struct NotificationsInput {
    #[graphql(default)]
    pub recipients: Vec<Recipient>,
    #[graphql(default)]
    pub delay_seconds: i32,
    #[graphql(default)]
    pub notify_on_clear: bool,
    pub webhook: Option<WebhookInputGql>,
}

#[derive(InputObject)]
pub struct PutAlarmRuleInput {
    /// Omit to create; with `expectedVersion` to replace that rule.
    pub id: Option<ID>,
    /// The version the rule was read at; a newer stored one is `CONFLICT`.
    pub expected_version: Option<i32>,
    pub name: String,
    #[graphql(default = true)]
    pub enabled: bool,
    pub severity: Severity,
    pub target: AlarmTargetInput,
    pub condition: AlarmConditionInput,
    /// Omit for always active.
    pub schedule: Option<ScheduleInput>,
    pub notifications: Option<NotificationsInput>,
}

fn duration(seconds: i32, what: &str) -> async_graphql::Result<Duration> {
    u64::try_from(seconds)
        .map(Duration::from_secs)
        .map_err(|_| bad_input(format!("`{what}` must not be negative")))
}

fn point(key: &str) -> async_graphql::Result<PointKey> {
    PointKey::new(key).map_err(|e| bad_input(e.to_string()))
}

fn minute(m: i32, what: &str) -> async_graphql::Result<u16> {
    u16::try_from(m)
        .ok()
        .filter(|m| *m <= 1440)
        .ok_or_else(|| bad_input(format!("`{what}` must be 0 to 1440")))
}

impl PutAlarmRuleInput {
    fn into_domain(self) -> async_graphql::Result<AlarmRuleInput> {
        let target = match self.target {
            AlarmTargetInput::DeviceId(id) => {
                AlarmTarget::Device(parse_id::<DeviceId>(&id, "device")?)
            }
            AlarmTargetInput::AreaId(id) => AlarmTarget::Area(parse_id::<AreaId>(&id, "area")?),
            AlarmTargetInput::Tenant(true) => AlarmTarget::Tenant,
            AlarmTargetInput::Tenant(false) => {
                return Err(bad_input("`target.tenant` must be true when given"))
            }
        };
        let condition = match self.condition {
            AlarmConditionInput::Threshold(t) => AlarmCondition::Threshold {
                point: point(&t.point)?,
                direction: t.direction.into(),
                limit: t.limit,
                hysteresis: t.hysteresis,
                on_delay: duration(t.on_delay_seconds, "onDelaySeconds")?,
                off_delay: duration(t.off_delay_seconds, "offDelaySeconds")?,
            },
            AlarmConditionInput::Offline(o) => AlarmCondition::Offline {
                after: duration(o.after_seconds, "afterSeconds")?,
            },
            AlarmConditionInput::Stale(s) => AlarmCondition::Stale {
                point: point(&s.point)?,
                after: duration(s.after_seconds, "afterSeconds")?,
            },
            AlarmConditionInput::Consumption(c) => AlarmCondition::Consumption {
                point: point(&c.point)?,
                max_increase: c.max_increase,
                window_start_minute: minute(c.window_start_minute, "windowStartMinute")?,
            },
            AlarmConditionInput::RateOfChange(r) => AlarmCondition::RateOfChange {
                point: point(&r.point)?,
                max_change: r.max_change,
                over: duration(r.over_seconds, "overSeconds")?,
            },
        };
        let schedule = match self.schedule {
            None => None,
            Some(s) => {
                let mut windows = Vec::with_capacity(s.windows.len());
                for w in s.windows {
                    windows.push(model::ScheduleWindow {
                        day: w.day.into(),
                        start_minute: minute(w.start_minute, "startMinute")?,
                        end_minute: minute(w.end_minute, "endMinute")?,
                    });
                }
                Some(
                    model::WeeklySchedule::new(&s.time_zone, windows)
                        .map_err(|e| bad_input(e.to_string()))?,
                )
            }
        };
        let notifications = match self.notifications {
            None => NotificationInput::default(),
            Some(n) => {
                let mut recipients = Vec::with_capacity(n.recipients.len());
                for r in n.recipients {
                    recipients.push(model::Recipient {
                        email: model::EmailAddress::new(&r.email)
                            .map_err(|e| bad_input(e.to_string()))?,
                        language: r.language.into(),
                    });
                }
                NotificationInput {
                    recipients,
                    delay: duration(n.delay_seconds, "delaySeconds")?,
                    notify_on_clear: n.notify_on_clear,
                    webhook: match n.webhook {
                        None => None,
                        Some(w) => Some(WebhookInput {
                            url: w.url,
                            secret: w
                                .secret
                                .map(model::WebhookSecret::new)
                                .transpose()
                                .map_err(|e| bad_input(e.to_string()))?,
                        }),
                    },
                }
            }
        };
        Ok(AlarmRuleInput {
            id: self
                .id
                .as_ref()
                .map(|id| parse_id::<AlarmRuleId>(id, "alarm rule"))
                .transpose()?,
            expected_version: self
                .expected_version
                .map(|v| {
                    u64::try_from(v).map_err(|_| bad_input("`expectedVersion` must be positive"))
                })
                .transpose()?,
            name: self.name,
            enabled: self.enabled,
            severity: self.severity.into(),
            target,
            condition,
            schedule,
            notifications,
        })
    }
}

// ---------------------------------------------------------- resolvers

#[derive(Default)]
pub struct AlarmQueries;

#[Object]
impl AlarmQueries {
    /// The tenant's alarm rules, by id (Admin; Full covering every device).
    async fn alarm_rules(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<AlarmRule>> {
        let principal = principal(ctx)?;
        Ok(alarm_service(ctx)?
            .alarm_rules(principal)
            .await
            .map_err(from_domain)?
            .into_iter()
            .map(AlarmRule::from)
            .collect())
    }

    /// Alarms of devices in the caller's scope, newest first.
    #[allow(clippy::too_many_arguments)]
    async fn alarms(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only alarms in these states (one or a list).")] state: Option<
            Vec<AlarmState>,
        >,
        #[graphql(desc = "Only alarms of these severities (one or a list).")] severity: Option<
            Vec<Severity>,
        >,
        #[graphql(desc = "Only alarms of this device.")] device_id: Option<ID>,
        #[graphql(desc = "Only alarms of devices in this area or below it.")] area_id: Option<ID>,
        #[graphql(desc = "RFC 3339: raised at or after.")] from: Option<DateTime<Utc>>,
        #[graphql(desc = "RFC 3339: raised before.")] to: Option<DateTime<Utc>>,
        #[graphql(desc = "Page size, 1 to 200 (50 when omitted).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Alarm, AlarmConnectionFields, EmptyFields>> {
        let principal = principal(ctx)?;
        let first = first.unwrap_or(50);
        if first < 1 || i64::from(first) > AlarmService::MAX_PAGE as i64 {
            return Err(bad_input(format!(
                "`first` must be 1 to {}",
                AlarmService::MAX_PAGE
            )));
        }
        let offset = match after {
            None => 0,
            Some(cursor) => cursor
                .parse::<u64>()
                .map(|c| c + 1)
                .map_err(|_| bad_input("`after` is not a cursor from this connection"))?,
        };
        let query = AlarmQuery {
            states: state.map(|s| s.into_iter().map(Into::into).collect()),
            severities: severity.map(|s| s.into_iter().map(Into::into).collect()),
            device: device_id
                .as_ref()
                .map(|d| parse_id::<DeviceId>(d, "device"))
                .transpose()?,
            area: area_id
                .as_ref()
                .map(|a| parse_id::<AreaId>(a, "area"))
                .transpose()?,
            from,
            to,
            offset,
            limit: first as u64,
        };
        let page = alarm_service(ctx)?
            .alarms(principal, query)
            .await
            .map_err(from_domain)?;
        let end = offset + page.items.len() as u64;
        let mut connection = Connection::with_additional_fields(
            offset > 0,
            end < page.total,
            AlarmConnectionFields {
                total_count: page.total,
            },
        );
        connection.edges.extend(
            page.items
                .iter()
                .enumerate()
                .map(|(i, a)| Edge::new((offset + i as u64).to_string(), Alarm::from(a))),
        );
        Ok(connection)
    }
}

#[derive(Default)]
pub struct AlarmMutation;

#[Object]
impl AlarmMutation {
    /// Creates (no `id`) or replaces (`id` and `expectedVersion`) an alarm
    /// rule (Admin; Full covering every device). Audited.
    async fn put_alarm_rule(
        &self,
        ctx: &Context<'_>,
        input: PutAlarmRuleInput,
    ) -> async_graphql::Result<AlarmRule> {
        let principal = principal(ctx)?;
        let input = input.into_domain()?;
        alarm_service(ctx)?
            .put_alarm_rule(principal, input)
            .await
            .map(AlarmRule::from)
            .map_err(from_domain)
    }

    /// Deletes an alarm rule (Admin; Full covering every device). Audited.
    async fn delete_alarm_rule(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let principal = principal(ctx)?;
        let id = parse_id::<AlarmRuleId>(&id, "alarm rule")?;
        alarm_service(ctx)?
            .delete_alarm_rule(principal, id)
            .await
            .map_err(from_domain)
    }

    /// Acknowledges an active alarm of a device in the caller's scope
    /// (every role but Read-only). Audited.
    async fn acknowledge_alarm(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default, desc = "At most 500 characters.")] comment: String,
    ) -> async_graphql::Result<Alarm> {
        let principal = principal(ctx)?;
        let id = parse_id::<AlarmId>(&id, "alarm")?;
        alarm_service(ctx)?
            .acknowledge_alarm(principal, id, &comment)
            .await
            .map(|a| Alarm::from(&a))
            .map_err(from_domain)
    }
}

#[derive(Default)]
pub struct AlarmSubscription;

#[Subscription]
impl AlarmSubscription {
    /// Alarms raised, acknowledged and cleared on devices in the caller's
    /// scope, from now on; narrowed in place when the caller's access changes.
    async fn alarm_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<AlarmEvent>>> {
        Ok(updates(ctx, &[]).await?.filter_map(|update| {
            futures::future::ready(match update {
                LiveUpdate::Alarm(e) => Some(Ok(AlarmEvent {
                    transition: e.transition.into(),
                    alarm: Alarm::from(e.alarm.as_ref()),
                })),
                LiveUpdate::Lagged(n) => Some(Err(lagged(n))),
                LiveUpdate::Reading(_) | LiveUpdate::Readings(_) | LiveUpdate::Status(_) => None,
            })
        }))
    }
}
