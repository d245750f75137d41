//! Alarm notifications: an [`AlarmNotifier`](hearth_domain::ports::AlarmNotifier)
//! that holds raises for the rule's delay, then mails each recipient in their
//! language over SMTP (lettre) and posts a signed webhook, with retries and a
//! dead-letter record through [`NotificationFailureLog`](hearth_domain::ports::NotificationFailureLog).

mod catalogue;
mod clock;
mod config;
mod email;
mod engine;
mod memory;
mod webhook;

pub use catalogue::{render, RenderedMail};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{NotifierConfig, SmtpConfig, SmtpPassword, SmtpTls};
pub use email::{check_sender, EmailError, EmailSender};
pub use engine::{Notifier, NotifierStats};
pub use memory::MemoryFailureLog;
pub use webhook::{sign, WebhookPayload, WebhookSender, SIGNATURE_HEADER, TIMESTAMP_HEADER};
