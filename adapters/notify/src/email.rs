//! The SMTP channel: one mail per recipient through a pooled lettre transport.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::catalogue::RenderedMail;
use crate::config::{SmtpConfig, SmtpTls};

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// The configuration cannot work (bad `from`, TLS setup failed).
    #[error("invalid mail configuration: {0}")]
    Config(String),
    /// This one mail cannot be built (a recipient address lettre refuses).
    #[error("mail not built: {0}")]
    Message(String),
    /// The server refused or could not be reached; worth retrying.
    #[error("SMTP: {0}")]
    Smtp(String),
}

impl EmailError {
    /// A refused address or message will fail the same way again.
    pub fn is_permanent(&self) -> bool {
        matches!(self, EmailError::Config(_) | EmailError::Message(_))
    }
}

/// Sends rendered mails through one SMTP server.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSender")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// Checks a `From:` address the way [`EmailSender::new`] will (config
/// validation runs outside the runtime the sender needs).
pub fn check_sender(from: &str) -> Result<(), EmailError> {
    parse_sender(from).map(drop)
}

fn parse_sender(from: &str) -> Result<Mailbox, EmailError> {
    from.parse()
        .map_err(|e| EmailError::Config(format!("from address: {e}")))
}

impl EmailSender {
    /// Must be called inside a Tokio runtime: the connection pool runs as a task.
    pub fn new(smtp: &SmtpConfig, from: &str) -> Result<Self, EmailError> {
        let from = parse_sender(from)?;
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(|e| EmailError::Config(format!("STARTTLS: {e}")))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .map_err(|e| EmailError::Config(format!("TLS: {e}")))?,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Builds and sends one mail; `Smtp` errors are worth a retry.
    pub async fn send(&self, to: &str, mail: &RenderedMail) -> Result<(), EmailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| EmailError::Message(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| EmailError::Message(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| EmailError::Smtp(e.to_string()))
    }
}
