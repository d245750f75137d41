//! `notificationFailures`: the alarm notices that could not be delivered
//! (dead letters), for the active tenant's admins. The use case decides who
//! may see them; this module only converts.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use hearth_domain::ports::RecordedFailure;
use hearth_domain::services::NotificationService;

use super::error::{bad_input, from_domain};
use super::{principal, services};

/// Which way the notice was to leave Hearth.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "hearth_domain::model::NotificationChannel")]
pub enum NotificationChannel {
    Email,
    Webhook,
    /// Dropped before any channel: the notifier was overloaded.
    Queue,
}

/// What happened to the alarm the notice was about.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "hearth_domain::model::AlarmTransition")]
pub enum NotificationTransition {
    Raised,
    Acknowledged,
    Cleared,
}

/// One notice that was not delivered after every attempt.
#[derive(SimpleObject)]
pub struct NotificationFailure {
    pub alarm_id: ID,
    pub rule_id: ID,
    pub rule_name: String,
    pub transition: NotificationTransition,
    pub channel: NotificationChannel,
    /// The recipient's address or the webhook URL (without its query).
    pub target: String,
    pub attempts: u32,
    /// The last error, e.g. the SMTP server's reply.
    pub error: String,
    pub failed_at: DateTime<Utc>,
}

impl From<RecordedFailure> for NotificationFailure {
    fn from(r: RecordedFailure) -> Self {
        let f = r.failure;
        Self {
            alarm_id: ID(f.alarm_id.to_string()),
            rule_id: ID(f.rule_id.to_string()),
            rule_name: f.rule_name,
            transition: f.transition.into(),
            channel: f.channel.into(),
            target: f.target,
            attempts: f.attempts,
            error: f.error,
            failed_at: f.failed_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct NotificationFailureConnectionFields {
    pub total_count: u64,
}

#[derive(Default)]
pub struct NotificationQueries;

#[Object]
impl NotificationQueries {
    /// Alarm notices of the active tenant that could not be delivered,
    /// newest first (Admin only).
    async fn notification_failures(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (50 when omitted).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<
        Connection<String, NotificationFailure, NotificationFailureConnectionFields, EmptyFields>,
    > {
        let principal = principal(ctx)?;
        let first = first.unwrap_or(50);
        let first = u32::try_from(first)
            .ok()
            .filter(|f| (1..=NotificationService::MAX_PAGE).contains(f))
            .ok_or_else(|| {
                bad_input(format!(
                    "`first` must be 1 to {}",
                    NotificationService::MAX_PAGE
                ))
            })?;
        let after = after
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| bad_input("`after` is not a cursor from this connection"))
            })
            .transpose()?;
        let page = services(ctx)
            .notifications
            .notification_failures(principal, first, after)
            .await
            .map_err(from_domain)?;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            page.has_more,
            NotificationFailureConnectionFields {
                total_count: page.total,
            },
        );
        connection.edges.extend(
            page.items
                .into_iter()
                .map(|r| Edge::new(r.seq.to_string(), NotificationFailure::from(r))),
        );
        Ok(connection)
    }
}
