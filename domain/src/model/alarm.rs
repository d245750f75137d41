//! Alarm rules (documents a tenant manages) and alarms (what evaluating them
//! on the live stream produced). Shared by rule storage, the evaluator, the
//! alarm store and the API, so every part agrees on one shape.

use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::error::InvalidValue;
use crate::ids::{AlarmId, AlarmRuleId, AreaId, DeviceId, PointKey, TenantId, UserId};
use crate::model::{NotificationSettings, Severity};

/// The longest delay, period or window a rule may name (one week).
pub const MAX_RULE_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rule names are shown in lists and mail subjects.
pub const MAX_RULE_NAME: usize = 120;

/// Which side of a threshold is the alarm side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThresholdDirection {
    Above,
    Below,
}

/// What a rule watches for.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmCondition {
    /// `point` beyond `limit` for `on_delay` raises; back within
    /// `limit ∓ hysteresis` for `off_delay` clears.
    Threshold {
        point: PointKey,
        direction: ThresholdDirection,
        limit: f64,
        hysteresis: f64,
        on_delay: Duration,
        off_delay: Duration,
    },
    /// The device has been offline (or silent) for longer than `after`.
    Offline { after: Duration },
    /// `point` has not been updated for longer than `after`.
    Stale { point: PointKey, after: Duration },
    /// The counter `point` rose by more than `max_increase` within one daily
    /// window starting at `window_start_minute` (minutes after local midnight
    /// in the schedule's time zone, or UTC without a schedule).
    Consumption {
        point: PointKey,
        max_increase: f64,
        window_start_minute: u16,
    },
    /// `point` changed faster than `max_change` within `over` (either way).
    RateOfChange {
        point: PointKey,
        max_change: f64,
        over: Duration,
    },
}

impl AlarmCondition {
    /// The point the condition reads, `None` for device-level conditions.
    pub fn point(&self) -> Option<&PointKey> {
        match self {
            AlarmCondition::Threshold { point, .. }
            | AlarmCondition::Stale { point, .. }
            | AlarmCondition::Consumption { point, .. }
            | AlarmCondition::RateOfChange { point, .. } => Some(point),
            AlarmCondition::Offline { .. } => None,
        }
    }

    /// Refuses non-finite numbers, negative hysteresis, zero or overlong
    /// periods and out-of-range window starts.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let period = |name: &'static str, d: &Duration, zero_ok: bool| {
            if (!zero_ok && d.is_zero()) || *d > MAX_RULE_DURATION {
                Err(InvalidValue::new(
                    name,
                    if zero_ok {
                        "must be at most 7 days"
                    } else {
                        "must be more than 0 s and at most 7 days"
                    },
                ))
            } else {
                Ok(())
            }
        };
        let finite = |name: &'static str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(InvalidValue::new(name, "must be a finite number"))
            }
        };
        match self {
            AlarmCondition::Threshold {
                limit,
                hysteresis,
                on_delay,
                off_delay,
                ..
            } => {
                finite("limit", *limit)?;
                finite("hysteresis", *hysteresis)?;
                if *hysteresis < 0.0 {
                    return Err(InvalidValue::new("hysteresis", "must not be negative"));
                }
                period("on delay", on_delay, true)?;
                period("off delay", off_delay, true)
            }
            AlarmCondition::Offline { after } => period("offline after", after, false),
            AlarmCondition::Stale { after, .. } => period("stale after", after, false),
            AlarmCondition::Consumption {
                max_increase,
                window_start_minute,
                ..
            } => {
                finite("max increase", *max_increase)?;
                if *max_increase < 0.0 {
                    return Err(InvalidValue::new("max increase", "must not be negative"));
                }
                if *window_start_minute >= 24 * 60 {
                    return Err(InvalidValue::new(
                        "window start",
                        "must be a minute of the day, 0 to 1439",
                    ));
                }
                Ok(())
            }
            AlarmCondition::RateOfChange {
                max_change, over, ..
            } => {
                finite("max change", *max_change)?;
                if *max_change <= 0.0 {
                    return Err(InvalidValue::new("max change", "must be more than 0"));
                }
                period("rate period", over, false)
            }
        }
    }
}

/// Which devices a rule applies to, always within the rule's tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmTarget {
    Device(DeviceId),
    /// Every device in this area or any area below it.
    Area(AreaId),
    /// Every device of the tenant.
    Tenant,
}

/// One weekly window: `day` from `start_minute` (inclusive) to `end_minute`
/// (exclusive), minutes after local midnight; `end_minute` 1440 is midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleWindow {
    pub day: Weekday,
    pub start_minute: u16,
    pub end_minute: u16,
}

/// When a rule is active, in a time zone. A rule without a schedule is
/// always active.
#[derive(Debug, Clone, PartialEq)]
pub struct WeeklySchedule {
    pub time_zone: Tz,
    pub windows: Vec<ScheduleWindow>,
}

impl WeeklySchedule {
    /// `time_zone` is an IANA name such as `Europe/Copenhagen`; windows must
    /// not be empty, at most 7 × 8, each with start < end ≤ 1440.
    pub fn new(time_zone: &str, windows: Vec<ScheduleWindow>) -> Result<Self, InvalidValue> {
        let time_zone: Tz = time_zone.trim().parse().map_err(|_| {
            InvalidValue::new(
                "time zone",
                format!(
                    "`{}` is not an IANA time zone name",
                    crate::error::quoted(time_zone)
                ),
            )
        })?;
        if windows.is_empty() || windows.len() > 56 {
            return Err(InvalidValue::new(
                "schedule",
                "needs 1 to 56 windows (omit the schedule for always)",
            ));
        }
        if windows
            .iter()
            .any(|w| w.start_minute >= w.end_minute || w.end_minute > 24 * 60)
        {
            return Err(InvalidValue::new(
                "schedule window",
                "start must be before end, both within 0 to 1440 minutes",
            ));
        }
        Ok(Self { time_zone, windows })
    }

    /// Whether `at` falls into one of the windows, in local time.
    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.time_zone);
        let day = local.weekday();
        let minute = (local.hour() * 60 + local.minute()) as u16;
        self.windows
            .iter()
            .any(|w| w.day == day && w.start_minute <= minute && minute < w.end_minute)
    }
}

/// A tenant's alarm rule, stored as a document with a version for
/// optimistic concurrency (a write naming an older version is `CONFLICT`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRule {
    pub id: AlarmRuleId,
    pub tenant_id: TenantId,
    pub name: String,
    pub enabled: bool,
    pub severity: Severity,
    pub target: AlarmTarget,
    pub condition: AlarmCondition,
    pub schedule: Option<WeeklySchedule>,
    pub notifications: NotificationSettings,
    /// 1 for a new rule, raised by one on every stored change.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl AlarmRule {
    /// Checks the name and the condition; targets are checked against the
    /// tenant's devices and areas by the use case.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let name = self.name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_RULE_NAME
            || name.chars().any(char::is_control)
        {
            return Err(InvalidValue::new(
                "rule name",
                "1 to 120 characters, no control characters",
            ));
        }
        if self.notifications.delay > MAX_RULE_DURATION {
            return Err(InvalidValue::new(
                "notification delay",
                "must be at most 7 days",
            ));
        }
        if self.notifications.recipients.len() > 50 {
            return Err(InvalidValue::new("recipients", "at most 50"));
        }
        self.condition.validate()
    }

    /// Whether the rule is enabled and its schedule (if any) covers `at`.
    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        self.enabled && self.schedule.as_ref().is_none_or(|s| s.is_active(at))
    }
}

/// Where an alarm is in its lifecycle. Raised and acknowledged alarms are
/// active; a cleared one is history (an acknowledgement is kept on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmState {
    Raised,
    Acknowledged,
    Cleared,
}

impl AlarmState {
    pub fn is_active(self) -> bool {
        !matches!(self, AlarmState::Cleared)
    }
}

/// Who acknowledged an alarm, when, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Acknowledgement {
    pub by: UserId,
    pub at: DateTime<Utc>,
    pub comment: String,
}

/// One occurrence of a rule's condition on one device (and point): raised
/// once, maybe acknowledged, cleared once. Raised again later, it is a new
/// alarm with a new id. At most one active alarm exists per
/// (rule, device, point).
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub id: AlarmId,
    pub tenant_id: TenantId,
    pub rule_id: AlarmRuleId,
    pub rule_name: String,
    pub severity: Severity,
    pub device_id: DeviceId,
    pub point: Option<PointKey>,
    pub state: AlarmState,
    /// Language-neutral, e.g. `flow_temp above 90 for 60 s`.
    pub message: String,
    /// The value that raised it, if any.
    pub value: Option<f64>,
    pub raised_at: DateTime<Utc>,
    pub acknowledgement: Option<Acknowledgement>,
    pub cleared_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedules_follow_local_time() {
        let weekday_mornings = (0..5)
            .map(|d| ScheduleWindow {
                day: Weekday::try_from(d as u8).unwrap_or(Weekday::Mon),
                start_minute: 6 * 60,
                end_minute: 12 * 60,
            })
            .collect();
        let s = WeeklySchedule::new("Europe/Copenhagen", weekday_mornings);
        assert!(s.is_ok());
        let Ok(s) = s else { return };
        // Wednesday 2026-12-02 05:30 UTC is 06:30 in Copenhagen (UTC+1).
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 5, 30, 0).single();
        assert_eq!(at.map(|t| s.is_active(t)), Some(true));
        // 04:30 UTC is 05:30 local: before the window.
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 4, 30, 0).single();
        assert_eq!(at.map(|t| s.is_active(t)), Some(false));
        // Saturday.
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 8, 0, 0).single();
        assert_eq!(at.map(|t| s.is_active(t)), Some(false));
        assert!(WeeklySchedule::new("Mars/Olympus", vec![]).is_err());
    }

    #[test]
    fn conditions_refuse_nonsense() {
        let point = PointKey::new("flow_temp").ok();
        let Some(point) = point else { return };
        let ok = AlarmCondition::Threshold {
            point: point.clone(),
            direction: ThresholdDirection::Above,
            limit: 90.0,
            hysteresis: 2.0,
            on_delay: Duration::from_secs(60),
            off_delay: Duration::ZERO,
        };
        assert!(ok.validate().is_ok());
        let bad = AlarmCondition::Threshold {
            point: point.clone(),
            direction: ThresholdDirection::Above,
            limit: f64::NAN,
            hysteresis: 2.0,
            on_delay: Duration::ZERO,
            off_delay: Duration::ZERO,
        };
        assert!(bad.validate().is_err());
        assert!(AlarmCondition::Offline {
            after: Duration::ZERO
        }
        .validate()
        .is_err());
        assert!(AlarmCondition::Consumption {
            point,
            max_increase: 5.0,
            window_start_minute: 1440
        }
        .validate()
        .is_err());
    }
}
