//! Use cases. [`Hearth`] holds the ports; each submodule adds one group of
//! operations to it. Every operation that acts for a user takes the
//! [`Principal`](crate::Principal) and asks the authorizer first.

mod auth;
mod control;
mod devices;
mod hashing;
mod history;
mod ingest;
mod live;
mod profiles;
mod throttle;

use std::sync::Arc;

pub use auth::{LoginError, MeView, MembershipView, Session};
pub use control::{AuditPage, AuditQuery, WriteOutcome, WriteStatus};
pub use devices::{DevicePage, DeviceQuery, DeviceView, PointView};
pub use ingest::{ReadingWriter, ReadingWriterStats};
pub use live::LiveUpdate;
pub use throttle::LoginLimits;

use crate::error::DomainError;
use crate::ports::{
    Action, Authorizer, AuthzError, Directory, DocumentStore, FieldGateway, LiveBus,
    PasswordHasher, ReadingStore, Resource, TokenService,
};
use crate::principal::Principal;

/// Every port the use cases need, chosen by the composition root.
#[derive(Clone)]
pub struct Ports {
    pub directory: Arc<dyn Directory>,
    pub documents: Arc<dyn DocumentStore>,
    pub readings: Arc<dyn ReadingStore>,
    pub live: Arc<dyn LiveBus>,
    pub field: Arc<dyn FieldGateway>,
    pub authorizer: Arc<dyn Authorizer>,
    pub passwords: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn TokenService>,
}

/// The application: use cases over a set of ports.
#[derive(Clone)]
pub struct Hearth {
    ports: Ports,
    writer: ReadingWriter,
    principals: Arc<auth::PrincipalCache>,
    throttle: Arc<throttle::LoginThrottle>,
    hashing: hashing::HashingPool,
}

impl Hearth {
    /// Builds the application. Must be called inside a Tokio runtime: the
    /// batched reading writer runs as a task.
    pub fn new(ports: Ports) -> Self {
        Self::with_login_limits(ports, LoginLimits::default())
    }

    /// Like [`Hearth::new`], with login throttling and hashing limits of its own.
    pub fn with_login_limits(ports: Ports, limits: LoginLimits) -> Self {
        let writer = ReadingWriter::spawn(ports.readings.clone());
        Self {
            ports,
            writer,
            principals: Arc::default(),
            hashing: hashing::HashingPool::new(&limits),
            throttle: Arc::new(throttle::LoginThrottle::new(limits)),
        }
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Asks the policy; any denial or policy failure is an error.
    fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<(), AuthzError> {
        self.ports
            .authorizer
            .authorize(principal, action, resource)
            .inspect_err(|err| {
                if let AuthzError::Policy(reason) = err {
                    tracing::error!(%reason, "Policy evaluation failed; denying.");
                }
            })
    }

    /// Denials of tenant-wide actions are reported as `Forbidden`.
    fn require_tenant(&self, principal: &Principal, action: Action) -> Result<(), DomainError> {
        self.authorize(principal, action, &Resource::Tenant(principal.tenant_id))
            .map_err(|_| DomainError::Forbidden(format!("{action:?} is not allowed for your role")))
    }
}
