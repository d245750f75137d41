//! What the notifier needs to know: sender address, queue and retry limits,
//! and how to reach the SMTP server.

use std::fmt;
use std::time::Duration;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text: only for a relay on loopback or a trusted network.
    None,
    /// Plain connect, then STARTTLS (required, not opportunistic); port 587.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS); port 465.
    Tls,
}

/// The SMTP password: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpPassword(String);

impl SmtpPassword {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SmtpPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Where mail goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SmtpPassword>,
    /// Per SMTP command (connect, each reply).
    pub timeout: Duration,
}

/// Limits and addresses of the notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    /// The `From:` of every mail, e.g. `Hearth <alarms@example.com>`.
    pub from: String,
    /// Notices waiting to be looked at; beyond it `submit` drops (counted,
    /// recorded as a dead letter) rather than wait.
    pub queue_size: usize,
    /// Raises held for their delay at once; beyond it new raises are dropped
    /// the same way.
    pub max_pending: usize,
    /// Attempts after the first, per mail and per webhook call.
    pub retries: u32,
    /// Wait before the first retry; doubled after each, at most 60 s.
    pub backoff: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How often held raises are checked against the clock.
    pub tick: Duration,
    pub webhook_timeout: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            from: "Hearth <hearth@localhost>".into(),
            queue_size: 10_000,
            max_pending: 100_000,
            retries: 3,
            backoff: Duration::from_secs(2),
            concurrency: 8,
            tick: Duration::from_millis(250),
            webhook_timeout: Duration::from_secs(10),
        }
    }
}
