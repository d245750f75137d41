//! Use cases, grouped into capability services. Each service holds only the
//! ports it uses; every operation that acts for somebody takes the acting
//! [`Principal`] (or, for internal jobs, a [`SystemPrincipal`]) and asks the
//! authorizer first. The composition root builds them all with
//! [`Services::new`]; nothing hands the ports back out.
//!
//! [`SystemPrincipal`]: crate::SystemPrincipal

mod access;
mod admin;
mod alarm_eval;
mod alarm_runner;
mod alarms;
mod audit;
mod auth;
mod control;
mod devices;
mod hashing;
mod history;
mod ingest;
mod live;
mod notifications;
mod platform;
mod poller;
mod profiles;
mod provisioning;
mod throttle;
mod two_factor;

use std::sync::Arc;

pub use access::{area_in_scope, covers_tenant, device_in_scope, scope_filter};
pub use admin::{AdminService, CreatedUser, DeviceInput, NewUser, UserView};
pub use alarm_eval::{AlarmEngine, DeviceIndex, DeviceInfo, Transition};
pub use alarm_runner::{
    AlarmEvaluator, AlarmEvaluatorConfig, AlarmEvaluatorHandle, AlarmEvaluatorStats, AlarmOutlet,
    DeviceSource,
};
pub use alarms::{
    AlarmAdapters, AlarmQuery, AlarmRuleInput, AlarmService, NotificationInput, WebhookInput,
};
pub use auth::{
    AuthService, ChallengeKind, LoginError, LoginStep, MeView, MembershipView, Session,
    TwoFactorChallenge,
};
pub use control::{AuditPage, AuditQuery, ControlService, WriteOutcome, WriteStatus};
pub use devices::{DevicePage, DeviceQuery, DeviceService, DeviceView, PointView};
pub use history::{HistoryService, SeriesHistory};
pub use ingest::{IngestService, PollTarget, ReadingWriter, ReadingWriterStats};
pub use live::{LiveService, LiveUpdate};
pub use notifications::{FailurePage, NotificationService};
pub use platform::{CreatedTenant, PlatformService};
pub use poller::{DevicePoller, Poller, PollerConfig, PollerError, PollerHandle};
pub use profiles::ProfileService;
pub use provisioning::ProvisioningService;
pub use throttle::LoginLimits;
pub use two_factor::{Enrollee, NewTwoFactor, TwoFactorService, TwoFactorStatus};

use crate::error::DomainError;
use crate::ports::{
    Action, AlarmNotifier, Authorizer, AuthzError, Directory, DocumentStore, ExternalTokenVerifier,
    FieldGateway, IdentityLinks, LiveBus, NotificationFailureLog, PasswordHasher, ReadingStore,
    Resource, SecretSealer, TokenService, WatchInterest,
};
use crate::principal::Principal;

/// The adapters the composition root chose, handed to [`Services::new`] and
/// consumed there: the services split them up, and no service gives a port
/// back, so nothing outside the use cases can write around the policy.
pub struct Adapters {
    pub directory: Arc<dyn Directory>,
    pub documents: Arc<dyn DocumentStore>,
    pub readings: Arc<dyn ReadingStore>,
    pub live: Arc<dyn LiveBus>,
    /// Who watches which device (often the live bus itself).
    pub watch: Arc<dyn WatchInterest>,
    pub field: Arc<dyn FieldGateway>,
    pub authorizer: Arc<dyn Authorizer>,
    pub passwords: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn TokenService>,
}

/// Every capability service, cheap to clone (each is a few `Arc`s).
#[derive(Clone)]
pub struct Services {
    pub auth: AuthService,
    pub devices: DeviceService,
    pub control: ControlService,
    pub live: LiveService,
    pub history: HistoryService,
    pub profiles: ProfileService,
    pub ingest: IngestService,
    pub provisioning: ProvisioningService,
    /// Kept for `with_external_tokens`.
    links: Arc<dyn IdentityLinks>,
    pub admin: AdminService,
    /// Dead letters of alarm notifications; none kept until
    /// [`Services::with_notifications`] names a log.
    pub notifications: NotificationService,
    /// Where alarm evaluation hands its notices (drops them until
    /// [`Services::with_notifications`] names a notifier).
    pub notifier: Arc<dyn AlarmNotifier>,
    pub two_factor: TwoFactorService,
    pub platform: PlatformService,
    /// Alarm rules and alarms, once [`Self::with_alarms`] gave their stores.
    alarms: Option<AlarmService>,
    /// What [`Self::alarm_service`] builds on.
    alarm_parts: (access::DeviceAccess, Arc<dyn LiveBus>, audit::AuditTrail),
}

impl Services {
    /// Builds every service. Must be called inside a Tokio runtime: the
    /// batched reading writer runs as a task.
    pub fn new(adapters: Adapters, limits: LoginLimits) -> Self {
        let Adapters {
            directory,
            documents,
            readings,
            live,
            watch,
            field,
            authorizer,
            passwords,
            tokens,
        } = adapters;
        let policy = Policy(authorizer);
        let access = access::DeviceAccess::new(
            directory.clone(),
            directory.clone(),
            documents.clone(),
            policy.clone(),
        );
        let audit = audit::AuditTrail::new(directory.clone());
        let hashing = hashing::HashingPool::new(&limits);
        // Admin changes to devices wake the poller's supervisor through this.
        let device_changes = Arc::new(tokio::sync::Notify::new());
        let auth = AuthService::new(
            directory.clone(),
            directory.clone(),
            passwords.clone(),
            tokens,
            directory.clone(),
            hashing.clone(),
            limits,
            directory.clone(),
        );
        let links: Arc<dyn IdentityLinks> = directory.clone();
        let admin = AdminService::new(
            directory.clone(),
            directory.clone(),
            directory.clone(),
            documents.clone(),
            field.clone(),
            policy.clone(),
            audit.clone(),
            auth.clone(),
            device_changes.clone(),
            directory.clone(),
        );
        let two_factor = TwoFactorService::new(auth.clone(), directory.clone(), policy.clone());
        let provisioning = ProvisioningService::new(
            directory.clone(),
            directory.clone(),
            directory.clone(),
            directory.clone(),
            documents.clone(),
            field.clone(),
            policy.clone(),
            passwords,
            hashing,
        )
        .with_identity_links(links.clone());
        let platform = PlatformService::new(
            directory.clone(),
            directory.clone(),
            directory.clone(),
            provisioning.clone(),
            audit.clone(),
        );
        let alarm_parts = (access.clone(), live.clone(), audit.clone());
        Self {
            alarms: None,
            alarm_parts,
            admin,
            notifications: NotificationService::new(
                policy.clone(),
                Arc::new(crate::ports::NoFailureLog),
            ),
            notifier: Arc::new(crate::ports::NoNotifications),
            two_factor,
            devices: DeviceService::new(access.clone(), live.clone()),
            control: ControlService::new(
                access.clone(),
                field.clone(),
                live.clone(),
                audit.clone(),
            ),
            live: LiveService::new(access.clone(), live.clone()),
            history: HistoryService::new(access.clone(), readings.clone()),
            profiles: ProfileService::new(
                documents,
                directory.clone(),
                field.clone(),
                policy.clone(),
                audit,
            ),
            ingest: IngestService::new(
                access,
                live,
                watch,
                ReadingWriter::spawn(readings),
                device_changes,
            ),
            provisioning,
            platform,
            auth,
            links,
        }
    }

    /// Hands alarm notices to `notifier` and lists the dead letters it
    /// writes to `failures`.
    pub fn with_notifications(
        mut self,
        notifier: Arc<dyn AlarmNotifier>,
        failures: Arc<dyn NotificationFailureLog>,
    ) -> Self {
        self.notifier = notifier;
        self.notifications = NotificationService::new(self.notifications.policy(), failures);
        self
    }

    /// The alarm service over the given stores and notifier. The
    /// composition root builds it once and shares it (its rule-change
    /// counter is its own).
    pub fn alarm_service(&self, adapters: AlarmAdapters) -> AlarmService {
        let (access, live, audit) = self.alarm_parts.clone();
        AlarmService::new(access, live, audit, adapters)
    }

    /// Starts alarm evaluation over `alarms` (the service the API uses, so
    /// rule changes reach the evaluator), following the live bus and
    /// reading devices through the same access as every use case.
    pub fn spawn_alarm_evaluator(
        &self,
        alarms: &AlarmService,
        config: AlarmEvaluatorConfig,
    ) -> AlarmEvaluatorHandle {
        let (access, live, _) = self.alarm_parts.clone();
        AlarmEvaluator::spawn(Arc::new(alarms.clone()), Arc::new(access), live, config)
    }

    /// The same services with alarm handling over these stores (see
    /// [`Self::alarms`]).
    pub fn with_alarms(mut self, adapters: AlarmAdapters) -> Self {
        self.alarms = Some(self.alarm_service(adapters));
        self
    }

    /// The alarm service installed by [`Self::with_alarms`], if any.
    pub fn alarms(&self) -> Option<&AlarmService> {
        self.alarms.as_ref()
    }

    /// Also accepts bearer tokens of tenants' own identity providers
    /// (OIDC), each mapped to a member of the provider's tenant.
    pub fn with_external_tokens(mut self, verifier: Arc<dyn ExternalTokenVerifier>) -> Self {
        self.auth = self.auth.with_external_tokens(verifier, self.links.clone());
        self
    }

    /// Seals two-factor secrets with `sealer`; without it, enrolment and
    /// code checks are unavailable.
    pub fn with_secret_sealer(mut self, sealer: Arc<dyn SecretSealer>) -> Self {
        self.two_factor = self.two_factor.with_sealer(sealer);
        self
    }
}

/// The authorizer as the services use it: denials and policy failures are
/// one kind of "no", the latter logged.
#[derive(Clone)]
pub(crate) struct Policy(Arc<dyn Authorizer>);

impl Policy {
    /// Asks the policy; any denial or policy failure is an error.
    pub(crate) fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<(), AuthzError> {
        self.0
            .authorize(principal, action, resource)
            .inspect_err(log_policy_failure)
    }

    /// The same for an internal job.
    pub(crate) fn authorize_system(
        &self,
        system: &crate::SystemPrincipal,
        action: crate::ports::SystemAction,
        resource: &Resource,
    ) -> Result<(), DomainError> {
        self.0
            .authorize_system(system, action, resource)
            .inspect_err(log_policy_failure)
            .map_err(|_| {
                DomainError::Forbidden(format!(
                    "{action:?} is not allowed for system role {}",
                    system.role().as_str()
                ))
            })
    }

    /// Denials of tenant-wide actions are reported as `Forbidden`.
    pub(crate) fn require_tenant(
        &self,
        principal: &Principal,
        action: Action,
    ) -> Result<(), DomainError> {
        self.authorize(principal, action, &Resource::Tenant(principal.tenant_id))
            .map_err(|_| DomainError::Forbidden(format!("{action:?} is not allowed for your role")))
    }

    /// The "compare roles" table as the policy states it.
    pub(crate) fn role_capabilities(&self) -> Vec<crate::ports::RoleCapabilities> {
        self.0.role_capabilities()
    }

    /// Whether the caller may act on (and see) the tenant as a whole.
    pub(crate) fn tenant_wide(&self, principal: &Principal) -> bool {
        self.authorize(
            principal,
            Action::ManageTenant,
            &Resource::Tenant(principal.tenant_id),
        )
        .is_ok()
    }
}

fn log_policy_failure(err: &AuthzError) {
    if let AuthzError::Policy(reason) = err {
        tracing::error!(%reason, "Policy evaluation failed; denying.");
    }
}
