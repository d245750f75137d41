//! Entities and value objects. Constructors refuse invalid values.

mod access;
mod alarm;
mod area;
mod audit;
mod device;
mod notification;
mod profile;
mod reading;
mod session;
mod tenant;
mod two_factor;
mod user;

pub use access::{DeviceScope, Membership, Role, WriteLevel};
pub use alarm::{
    Acknowledgement, Alarm, AlarmCondition, AlarmRule, AlarmState, AlarmTarget, ScheduleWindow,
    ThresholdDirection, WeeklySchedule, MAX_RULE_DURATION, MAX_RULE_NAME,
};
pub use area::{Area, AreaTree};
pub use audit::{AuditEntry, AuditOutcome};
pub use device::{Device, Endpoint};
pub use notification::{
    AlarmNotice, AlarmTransition, Language, NotificationChannel, NotificationFailure,
    NotificationSettings, Recipient, Severity, Webhook, WebhookSecret,
};
pub use profile::{DeviceProfile, FieldAddress, PointDefinition, PointOption};
pub use reading::{aggregate_sorted, Aggregate, HistoryBucket, HistoryQuery, Quality, Reading};
pub use session::{RefreshSession, RefreshTokenHash};
pub use tenant::{Tenant, TenantSlug};
pub use two_factor::{
    otpauth_uri, totp, totp_step, RecoveryCodeHash, TotpSecret, TwoFactorEnrolment,
    TOTP_PERIOD_SECS,
};
pub use user::{EmailAddress, PasswordHash, User};
