//! Alarm rules and the alarm lifecycle: rule management (Admin, and Full
//! with a membership covering every device), alarm listings within the
//! caller's device scope, acknowledgement (every role but Read-only, within
//! scope), and the system side the evaluator drives (`raise`, `clear`).
//! Every transition is stored, published on the live bus and handed to the
//! notifier; every human change is audited.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::access::{area_in_scope, covers_tenant, device_resource, scope_filter, DeviceAccess};
use super::audit::AuditTrail;
use crate::error::{DomainError, InvalidValue, StoreError};
use crate::ids::{AlarmId, AlarmRuleId, AreaId, DeviceId, PointKey, TenantId};
use crate::model::{
    Acknowledgement, Alarm, AlarmCondition, AlarmNotice, AlarmRule, AlarmState, AlarmTarget,
    AlarmTransition, AreaTree, AuditEntry, AuditOutcome, NotificationSettings, Recipient, Severity,
    Webhook, WebhookSecret, WeeklySchedule,
};
use crate::ports::{
    Action, AlarmEvent, AlarmFilter, AlarmNotifier, AlarmRuleStore, AlarmStore, DeviceFilter,
    LiveBus, LiveEvent, Page,
};
use crate::principal::Principal;

/// The ports alarm handling needs beyond those of [`super::Adapters`].
pub struct AlarmAdapters {
    pub rules: Arc<dyn AlarmRuleStore>,
    pub alarms: Arc<dyn AlarmStore>,
    pub notifier: Arc<dyn AlarmNotifier>,
}

/// A webhook as an editor sends it: the secret may be left out on an
/// update to keep the stored one (it is write-only, never shown).
#[derive(Debug, Clone)]
pub struct WebhookInput {
    pub url: String,
    pub secret: Option<WebhookSecret>,
}

/// Notification settings as an editor sends them.
#[derive(Debug, Clone, Default)]
pub struct NotificationInput {
    pub recipients: Vec<Recipient>,
    pub delay: std::time::Duration,
    pub notify_on_clear: bool,
    pub webhook: Option<WebhookInput>,
}

/// A rule to create (`id` and `expected_version` both `None`, or an id of
/// the caller's choosing) or to replace (`id` and `expected_version`).
#[derive(Debug, Clone)]
pub struct AlarmRuleInput {
    pub id: Option<AlarmRuleId>,
    pub expected_version: Option<u64>,
    pub name: String,
    pub enabled: bool,
    pub severity: Severity,
    pub target: AlarmTarget,
    pub condition: AlarmCondition,
    pub schedule: Option<WeeklySchedule>,
    pub notifications: NotificationInput,
}

/// What a listing of alarms asks for; scope is added by the use case.
#[derive(Debug, Clone, Default)]
pub struct AlarmQuery {
    pub states: Option<Vec<AlarmState>>,
    pub severities: Option<Vec<Severity>>,
    pub device: Option<DeviceId>,
    /// The area and its whole subtree.
    pub area: Option<AreaId>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub offset: u64,
    pub limit: u64,
}

/// Alarm rules and alarms.
#[derive(Clone)]
pub struct AlarmService {
    access: DeviceAccess,
    rules: Arc<dyn AlarmRuleStore>,
    alarms: Arc<dyn AlarmStore>,
    notifier: Arc<dyn AlarmNotifier>,
    live: Arc<dyn LiveBus>,
    audit: AuditTrail,
    /// Raised by one on every stored rule change, for the evaluator.
    generation: Arc<watch::Sender<u64>>,
}

impl AlarmService {
    /// Most alarms one page may hold.
    pub const MAX_PAGE: u64 = 200;
    /// Longest acknowledgement comment, in characters.
    pub const MAX_COMMENT: usize = 500;
    /// Most rules per tenant.
    pub const MAX_RULES: usize = 10_000;

    pub(crate) fn new(
        access: DeviceAccess,
        live: Arc<dyn LiveBus>,
        audit: AuditTrail,
        adapters: AlarmAdapters,
    ) -> Self {
        Self {
            access,
            rules: adapters.rules,
            alarms: adapters.alarms,
            notifier: adapters.notifier,
            live,
            audit,
            generation: Arc::new(watch::channel(0).0),
        }
    }

    /// A receiver that sees a new value whenever any tenant's rules change
    /// (put or delete): the evaluator reloads its rules then.
    pub fn rule_changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    // ------------------------------------------------------------- rules

    /// The tenant's rules, ordered by id (Admin, or Full covering every device).
    pub async fn alarm_rules(&self, principal: &Principal) -> Result<Vec<AlarmRule>, DomainError> {
        self.access
            .policy
            .require_tenant(principal, Action::ManageTenant)?;
        Ok(self.rules.alarm_rules(principal.tenant_id).await?)
    }

    /// Creates or replaces a rule. A replace names the version it was read
    /// at; a concurrent change in between is `Conflict`.
    pub async fn put_alarm_rule(
        &self,
        principal: &Principal,
        input: AlarmRuleInput,
    ) -> Result<AlarmRule, DomainError> {
        self.access
            .policy
            .require_tenant(principal, Action::ManageTenant)?;
        let tenant = principal.tenant_id;
        let before = match (input.id, input.expected_version) {
            (Some(id), Some(_)) => Some(
                self.rules
                    .alarm_rule(tenant, id)
                    .await?
                    .ok_or_else(|| DomainError::NotFound("alarm rule".into()))?,
            ),
            (None, Some(_)) => {
                return Err(InvalidValue::new(
                    "expectedVersion",
                    "only with the id of the rule to replace",
                )
                .into())
            }
            _ => None,
        };
        if before.is_none() && self.rules.alarm_rules(tenant).await?.len() >= Self::MAX_RULES {
            return Err(InvalidValue::new(
                "alarm rules",
                format!("at most {} per tenant", Self::MAX_RULES),
            )
            .into());
        }
        self.check_target(tenant, &input.target).await?;
        let webhook = match input.notifications.webhook {
            None => None,
            Some(hook) => {
                let secret = match hook.secret {
                    Some(secret) => secret,
                    None => before
                        .as_ref()
                        .and_then(|b| b.notifications.webhook.as_ref())
                        .map(|w| w.secret.clone())
                        .ok_or_else(|| {
                            InvalidValue::new("webhook secret", "required for a new webhook")
                        })?,
                };
                Some(Webhook::new(&hook.url, secret)?)
            }
        };
        let rule = AlarmRule {
            id: input.id.unwrap_or_default(),
            tenant_id: tenant,
            name: input.name.trim().to_owned(),
            enabled: input.enabled,
            severity: input.severity,
            target: input.target,
            condition: input.condition,
            schedule: input.schedule,
            notifications: NotificationSettings {
                recipients: input.notifications.recipients,
                delay: input.notifications.delay,
                notify_on_clear: input.notifications.notify_on_clear,
                webhook,
            },
            version: input.expected_version.map_or(1, |v| v.saturating_add(1)),
            // Whole milliseconds: what every rule store keeps.
            updated_at: DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
                .unwrap_or_else(Utc::now),
        };
        rule.validate()?;
        self.rules
            .put_alarm_rule(&rule, input.expected_version)
            .await
            .map_err(|err| match err {
                StoreError::Conflict(_) if input.expected_version.is_some() => {
                    DomainError::Conflict(
                        "the rule was changed meanwhile; reload it and try again".into(),
                    )
                }
                StoreError::Conflict(_) => DomainError::Conflict("the rule id is taken".into()),
                StoreError::NotFound(_) => DomainError::NotFound("alarm rule".into()),
                other => other.into(),
            })?;
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
        self.record(
            principal,
            "put_alarm_rule",
            None,
            format!(
                "before: {}; after: {}",
                before.as_ref().map_or("none".into(), describe_rule),
                describe_rule(&rule)
            ),
        )
        .await;
        Ok(rule)
    }

    /// Deletes a rule; its active alarms stay until cleared by the evaluator.
    pub async fn delete_alarm_rule(
        &self,
        principal: &Principal,
        id: AlarmRuleId,
    ) -> Result<bool, DomainError> {
        self.access
            .policy
            .require_tenant(principal, Action::ManageTenant)?;
        let before = self
            .rules
            .alarm_rule(principal.tenant_id, id)
            .await?
            .ok_or_else(|| DomainError::NotFound("alarm rule".into()))?;
        let deleted = self
            .rules
            .delete_alarm_rule(principal.tenant_id, id)
            .await?;
        if deleted {
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
            self.record(
                principal,
                "delete_alarm_rule",
                None,
                format!("before: {}; after: none", describe_rule(&before)),
            )
            .await;
        }
        Ok(deleted)
    }

    /// A device or area target must be the tenant's own; another tenant's
    /// is as unknown as a missing one (the same words, as for devices).
    async fn check_target(
        &self,
        tenant: TenantId,
        target: &AlarmTarget,
    ) -> Result<(), DomainError> {
        match target {
            AlarmTarget::Tenant => Ok(()),
            AlarmTarget::Device(id) => match self.access.device(tenant, *id).await? {
                Some(_) => Ok(()),
                None => Err(InvalidValue::new("target deviceId", "no such device").into()),
            },
            AlarmTarget::Area(id) => {
                if self.access.areas(tenant).await?.iter().any(|a| a.id == *id) {
                    Ok(())
                } else {
                    Err(InvalidValue::new("target areaId", "no such area").into())
                }
            }
        }
    }

    // ------------------------------------------------------------ alarms

    /// Alarms of devices in the caller's scope, newest first. A device or
    /// area filter the caller cannot see is `NotFound`, as a missing one;
    /// an area filter covers its subtree (the part of it in scope).
    pub async fn alarms(
        &self,
        principal: &Principal,
        query: AlarmQuery,
    ) -> Result<Page<Alarm>, DomainError> {
        self.access.policy.require_tenant(principal, Action::View)?;
        if query.limit == 0 || query.limit > Self::MAX_PAGE {
            return Err(
                InvalidValue::new("first", format!("must be 1 to {}", Self::MAX_PAGE)).into(),
            );
        }
        let tenant = principal.tenant_id;
        let devices = if let Some(device) = query.device {
            self.access.visible_device(principal, device).await?;
            Some(vec![device])
        } else if let Some(area) = query.area {
            let areas = self.access.areas(tenant).await?;
            let tree = AreaTree::new(&areas);
            // An area outside the caller's scope is answered as one that
            // does not exist, like `devices(areaId:)`: an empty page would
            // tell that it does.
            if !area_in_scope(principal.role, &principal.scope, &tree, area) {
                return Err(DomainError::NotFound("area".into()));
            }
            let mut filter = scope_filter(principal.role, &principal.scope, &tree);
            let wanted = tree.subtree(&[area]);
            filter.areas = Some(match filter.areas.take() {
                None => wanted.into_iter().collect(),
                Some(allowed) => allowed.into_iter().filter(|a| wanted.contains(a)).collect(),
            });
            filter.also_devices.clear();
            Some(self.device_ids(tenant, &filter).await?)
        } else if covers_tenant(principal.role, &principal.scope) {
            None
        } else {
            Some(
                self.access
                    .devices_in_scope(principal)
                    .await?
                    .into_iter()
                    .collect(),
            )
        };
        let filter = AlarmFilter {
            states: query.states,
            severities: query.severities,
            devices,
            from: query.from,
            to: query.to,
        };
        Ok(self
            .alarms
            .alarms(tenant, &filter, query.offset, query.limit)
            .await?)
    }

    /// Every device id through a store filter.
    async fn device_ids(
        &self,
        tenant: TenantId,
        filter: &DeviceFilter,
    ) -> Result<Vec<DeviceId>, DomainError> {
        let mut ids = HashSet::new();
        let mut offset = 0;
        loop {
            let page = self.access.page(tenant, filter, offset, 200).await?;
            let n = page.items.len() as u64;
            ids.extend(page.items.into_iter().map(|d| d.id));
            offset += n;
            if n == 0 || offset >= page.total {
                return Ok(ids.into_iter().collect());
            }
        }
    }

    /// Acknowledges an active alarm of a device in the caller's scope
    /// (`NotFound` otherwise); Read-only is `Forbidden`; an alarm already
    /// acknowledged or cleared is `Conflict`.
    pub async fn acknowledge_alarm(
        &self,
        principal: &Principal,
        id: AlarmId,
        comment: &str,
    ) -> Result<Alarm, DomainError> {
        let comment = comment.trim();
        if comment.chars().count() > Self::MAX_COMMENT {
            return Err(InvalidValue::new(
                "comment",
                format!("at most {} characters", Self::MAX_COMMENT),
            )
            .into());
        }
        let not_found = || DomainError::NotFound("alarm".into());
        let alarm = self
            .alarms
            .alarm(principal.tenant_id, id)
            .await?
            .ok_or_else(not_found)?;
        let (device, areas) = self
            .access
            .visible_device(principal, alarm.device_id)
            .await
            .map_err(|err| match err {
                DomainError::NotFound(_) => not_found(),
                other => other,
            })?;
        let resource = device_resource(&device, &AreaTree::new(&areas));
        self.access
            .policy
            .authorize(principal, Action::AcknowledgeAlarms, &resource)
            .map_err(|_| {
                DomainError::Forbidden("acknowledging alarms is not allowed for your role".into())
            })?;
        let ack = Acknowledgement {
            by: principal.user_id,
            at: Utc::now(),
            comment: comment.to_owned(),
        };
        let acked = self
            .alarms
            .acknowledge_alarm(principal.tenant_id, id, &ack)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => not_found(),
                StoreError::Conflict(_) => {
                    DomainError::Conflict("the alarm is already acknowledged or cleared".into())
                }
                other => other.into(),
            })?;
        self.record(
            principal,
            "acknowledge_alarm",
            Some(acked.device_id),
            format!(
                "alarm {} of rule `{}`: {}",
                acked.id,
                acked.rule_name,
                if comment.is_empty() {
                    "no comment"
                } else {
                    comment
                }
            ),
        )
        .await;
        let settings = self.settings(acked.tenant_id, acked.rule_id).await;
        self.announce(
            &acked,
            AlarmTransition::Acknowledged,
            ack.at,
            None,
            &device.name,
            &settings,
        );
        Ok(acked)
    }

    // ------------------------------------------------------- system side

    /// Every tenant's rules, for the evaluator at start and after
    /// [`Self::rule_changes`].
    pub async fn all_rules(&self) -> Result<Vec<AlarmRule>, DomainError> {
        Ok(self.rules.all_alarm_rules().await?)
    }

    /// Every tenant's active alarms, for the evaluator at start.
    pub async fn active_alarms(&self) -> Result<Vec<Alarm>, DomainError> {
        Ok(self.alarms.active_alarms().await?)
    }

    /// Raises an alarm of `rule` on `device` (the evaluator's call): stores
    /// it, publishes it and submits the notice. When one is already active
    /// for (rule, device, point), that one is returned and nothing else
    /// happens. The device must be the rule's tenant's (else `NotFound`).
    pub async fn raise(
        &self,
        rule: &AlarmRule,
        device: DeviceId,
        point: Option<PointKey>,
        value: Option<f64>,
        at: DateTime<Utc>,
        message: String,
    ) -> Result<Alarm, DomainError> {
        let tenant = rule.tenant_id;
        let device = self
            .access
            .device(tenant, device)
            .await?
            .ok_or_else(|| DomainError::NotFound("device".into()))?;
        let alarm = Alarm {
            id: AlarmId::new(),
            tenant_id: tenant,
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            severity: rule.severity,
            device_id: device.id,
            point,
            state: AlarmState::Raised,
            message,
            value: value.filter(|v| v.is_finite()),
            raised_at: at,
            acknowledgement: None,
            cleared_at: None,
        };
        match self.alarms.insert_alarm(&alarm).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                if let Some(active) = self.active_of(&alarm).await? {
                    return Ok(active);
                }
                // Cleared in between: raise anew.
                self.alarms.insert_alarm(&alarm).await?;
            }
            Err(err) => return Err(err.into()),
        }
        self.announce(
            &alarm,
            AlarmTransition::Raised,
            at,
            alarm.value,
            &device.name,
            &rule.notifications,
        );
        Ok(alarm)
    }

    /// The active alarm of the same (rule, device, point) as `alarm`.
    async fn active_of(&self, alarm: &Alarm) -> Result<Option<Alarm>, DomainError> {
        let filter = AlarmFilter {
            states: Some(vec![AlarmState::Raised, AlarmState::Acknowledged]),
            devices: Some(vec![alarm.device_id]),
            ..AlarmFilter::default()
        };
        let mut offset = 0;
        loop {
            let page = self
                .alarms
                .alarms(alarm.tenant_id, &filter, offset, Self::MAX_PAGE)
                .await?;
            let n = page.items.len() as u64;
            if let Some(found) = page
                .items
                .into_iter()
                .find(|a| a.rule_id == alarm.rule_id && a.point == alarm.point)
            {
                return Ok(Some(found));
            }
            offset += n;
            if n == 0 || offset >= page.total {
                return Ok(None);
            }
        }
    }

    /// Clears an active alarm (the evaluator's call): stores, publishes,
    /// submits the notice. An alarm already cleared is `Conflict`.
    pub async fn clear(
        &self,
        tenant: TenantId,
        id: AlarmId,
        at: DateTime<Utc>,
        value: Option<f64>,
    ) -> Result<Alarm, DomainError> {
        let cleared = self
            .alarms
            .clear_alarm(tenant, id, at)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => DomainError::NotFound("alarm".into()),
                other => other.into(),
            })?;
        let device_name = self
            .access
            .device(tenant, cleared.device_id)
            .await?
            .map(|d| d.name)
            .unwrap_or_default();
        let settings = self.settings(tenant, cleared.rule_id).await;
        self.announce(
            &cleared,
            AlarmTransition::Cleared,
            at,
            value.filter(|v| v.is_finite()),
            &device_name,
            &settings,
        );
        Ok(cleared)
    }

    /// The rule's notification settings; none when the rule is gone or the
    /// store fails (a notice is not worth failing a transition for).
    async fn settings(&self, tenant: TenantId, rule: AlarmRuleId) -> NotificationSettings {
        match self.rules.alarm_rule(tenant, rule).await {
            Ok(Some(rule)) => rule.notifications,
            Ok(None) => NotificationSettings::default(),
            Err(err) => {
                tracing::warn!(error = %err, %rule, "Could not read an alarm rule's notification settings; sending no notice.");
                NotificationSettings::default()
            }
        }
    }

    fn announce(
        &self,
        alarm: &Alarm,
        transition: AlarmTransition,
        at: DateTime<Utc>,
        value: Option<f64>,
        device_name: &str,
        settings: &NotificationSettings,
    ) {
        self.live.publish(LiveEvent::Alarm(AlarmEvent {
            transition,
            alarm: Arc::new(alarm.clone()),
        }));
        self.notifier.submit(
            AlarmNotice {
                tenant_id: alarm.tenant_id,
                alarm_id: alarm.id,
                rule_id: alarm.rule_id,
                rule_name: alarm.rule_name.clone(),
                severity: alarm.severity,
                device_id: alarm.device_id,
                device_name: device_name.to_owned(),
                point: alarm.point.clone(),
                transition,
                at,
                value,
                message: alarm.message.clone(),
            },
            settings,
        );
    }

    async fn record(
        &self,
        principal: &Principal,
        action: &str,
        device: Option<DeviceId>,
        detail: String,
    ) {
        let at = Utc::now();
        self.audit
            .record(AuditEntry {
                tenant_id: principal.tenant_id,
                at,
                actor: principal.user_id,
                action: action.to_owned(),
                device_id: device,
                point: None,
                old_value: None,
                new_value: None,
                outcome: AuditOutcome::Confirmed,
                detail,
                count: 1,
                last_at: at,
            })
            .await;
    }
}

/// A rule for the audit log: everything but the webhook secret.
fn describe_rule(rule: &AlarmRule) -> String {
    let target = match &rule.target {
        AlarmTarget::Device(d) => format!("device {d}"),
        AlarmTarget::Area(a) => format!("area {a}"),
        AlarmTarget::Tenant => "tenant".into(),
    };
    format!(
        "rule {} v{} `{}` {} {:?} on {target}: {:?}; schedule: {}; recipients: {}; delay {} s; notify on clear: {}; webhook: {}",
        rule.id,
        rule.version,
        rule.name,
        if rule.enabled { "enabled" } else { "disabled" },
        rule.severity,
        rule.condition,
        rule.schedule.as_ref().map_or("always".into(), |s| format!(
            "{} windows in {}",
            s.windows.len(),
            s.time_zone
        )),
        rule.notifications
            .recipients
            .iter()
            .map(|r| format!("{} ({})", r.email.as_str(), r.language.code()))
            .collect::<Vec<_>>()
            .join(", "),
        rule.notifications.delay.as_secs(),
        rule.notifications.notify_on_clear,
        rule.notifications
            .webhook
            .as_ref()
            .map_or("none", |w| w.url.as_str()),
    )
}
