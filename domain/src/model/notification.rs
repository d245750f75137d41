//! What an alarm tells people and systems: the notice, who gets it, in which
//! language, after which delay. Shared by alarm evaluation (which produces
//! notices) and notification delivery (which sends them).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::InvalidValue;
use crate::ids::{AlarmId, AlarmRuleId, DeviceId, PointKey, TenantId};
use crate::model::EmailAddress;

/// How urgent an alarm is, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

/// A language notices are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    En,
    De,
    Da,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Da => "da",
        }
    }
}

impl FromStr for Language {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "en" => Ok(Language::En),
            "de" => Ok(Language::De),
            "da" => Ok(Language::Da),
            _ => Err(InvalidValue::new(
                "language",
                format!("`{}` is not one of en, de, da", crate::error::quoted(s)),
            )),
        }
    }
}

/// A person who is mailed about a rule's alarms, in their language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub email: EmailAddress,
    pub language: Language,
}

/// The shared secret a webhook's HMAC-SHA256 signature is keyed with. Never
/// logged or shown; at least 16 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        if (16..=256).contains(&value.len()) {
            Ok(Self(value))
        } else {
            Err(InvalidValue::new(
                "webhook secret",
                "must be 16 to 256 bytes",
            ))
        }
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// An integrator's endpoint that receives signed JSON notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `https://…`, or `http://` to a loopback host only.
    pub url: String,
    pub secret: WebhookSecret,
}

impl Webhook {
    pub fn new(url: &str, secret: WebhookSecret) -> Result<Self, InvalidValue> {
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| {
                lower
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            });
        let ok = url.len() <= 2048
            && !url.chars().any(char::is_whitespace)
            && (lower.starts_with("https://") && url.len() > "https://".len() || loopback);
        if ok {
            Ok(Self {
                url: url.to_owned(),
                secret,
            })
        } else {
            Err(InvalidValue::new(
                "webhook url",
                "must be https:// (or http:// to a loopback host) and at most 2048 characters",
            ))
        }
    }
}

/// How a rule's alarms are announced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotificationSettings {
    pub recipients: Vec<Recipient>,
    /// A raised alarm is announced only once it has stayed raised this long;
    /// one that clears sooner sends nothing at all.
    pub delay: Duration,
    /// Also announce the clearing of an alarm whose raise was announced.
    pub notify_on_clear: bool,
    pub webhook: Option<Webhook>,
}

/// What happened to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmTransition {
    Raised,
    Acknowledged,
    Cleared,
}

/// One thing to tell about one alarm. Carries names, not just ids, so a
/// notice can be written without reading the stores again.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmNotice {
    pub tenant_id: TenantId,
    pub alarm_id: AlarmId,
    pub rule_id: AlarmRuleId,
    pub rule_name: String,
    pub severity: Severity,
    pub device_id: DeviceId,
    pub device_name: String,
    pub point: Option<PointKey>,
    pub transition: AlarmTransition,
    /// When the transition happened (not when the notice is sent).
    pub at: DateTime<Utc>,
    /// The value that raised or cleared it, when there is one.
    pub value: Option<f64>,
    /// A short language-neutral description, e.g. `flow_temp above 90 for 60 s`.
    pub message: String,
}

/// Which way a notice was to leave Hearth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationChannel {
    Email,
    Webhook,
    /// Never got to a channel: the notifier's queue (or its pending set)
    /// was full and the notice was dropped.
    Queue,
}

impl NotificationChannel {
    pub fn code(self) -> &'static str {
        match self {
            NotificationChannel::Email => "email",
            NotificationChannel::Webhook => "webhook",
            NotificationChannel::Queue => "queue",
        }
    }
}

impl FromStr for NotificationChannel {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "email" => Ok(NotificationChannel::Email),
            "webhook" => Ok(NotificationChannel::Webhook),
            "queue" => Ok(NotificationChannel::Queue),
            _ => Err(InvalidValue::new(
                "notification channel",
                format!(
                    "`{}` is not one of email, webhook, queue",
                    crate::error::quoted(s)
                ),
            )),
        }
    }
}

/// A dead letter: a notice that was not delivered after every attempt.
/// Says where it was going and why it failed, never a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationFailure {
    pub tenant_id: TenantId,
    pub alarm_id: AlarmId,
    pub rule_id: AlarmRuleId,
    pub rule_name: String,
    pub transition: AlarmTransition,
    pub channel: NotificationChannel,
    /// The recipient's address or the webhook's URL; empty for `Queue`.
    pub target: String,
    /// How many times delivery was tried (0 for `Queue`).
    pub attempts: u32,
    /// The last error, short and free of secrets.
    pub error: String,
    pub failed_at: DateTime<Utc>,
}

impl NotificationFailure {
    /// The longest `error` stored; longer ones are cut at a char boundary.
    pub const MAX_ERROR_LEN: usize = 500;

    /// `error` cut to [`Self::MAX_ERROR_LEN`] bytes.
    pub fn truncated_error(error: &str) -> String {
        let mut end = error.len().min(Self::MAX_ERROR_LEN);
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error[..end].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_by_code() {
        assert_eq!("DA".parse::<Language>().ok(), Some(Language::Da));
        assert!("fr".parse::<Language>().is_err());
    }

    #[test]
    fn webhooks_need_https_or_loopback() {
        let secret = || WebhookSecret::new("0123456789abcdef").ok();
        let hook = |url: &str| secret().and_then(|s| Webhook::new(url, s).ok());
        assert!(hook("https://hooks.example.com/hearth").is_some());
        assert!(hook("http://127.0.0.1:9000/h").is_some());
        assert!(hook("http://localhost/h").is_some());
        assert!(hook("http://localhost.evil.com/h").is_none());
        assert!(hook("http://example.com/h").is_none());
        assert!(hook("https://").is_none());
        assert!(WebhookSecret::new("short").is_err());
    }

    #[test]
    fn failure_errors_are_cut_at_a_char_boundary() {
        let long = "ø".repeat(400);
        let cut = NotificationFailure::truncated_error(&long);
        assert!(cut.len() <= NotificationFailure::MAX_ERROR_LEN);
        assert!(cut.chars().all(|c| c == 'ø'));
        assert_eq!(
            "webhook".parse::<NotificationChannel>().ok(),
            Some(NotificationChannel::Webhook)
        );
    }
}
