//! The acting identity every use case receives.

use crate::ids::{TenantId, UserId};
use crate::model::{DeviceScope, EmailAddress, Role};

/// An authenticated user acting within exactly one tenant (the one their
/// token is bound to), with that membership's role and device scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub email: EmailAddress,
    pub tenant_id: TenantId,
    pub role: Role,
    pub scope: DeviceScope,
}

/// What an internal job is, as the policy knows it. Each has its own rules
/// in `hearth.polar`; none is a user and none acts within one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemRole {
    /// The field layer: reads every device's endpoint and profile to poll it.
    Poller,
    /// Seeding and provisioning: creates tenants, users, areas, devices and
    /// memberships, and stores the built-in profiles.
    Provisioner,
}

impl SystemRole {
    /// The policy's name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemRole::Poller => "poller",
            SystemRole::Provisioner => "provisioner",
        }
    }
}

/// An internal job acting on its own behalf. Its rights are rules of the
/// policy like everybody's, checked by the same `Authorizer`: holding one
/// grants nothing the policy does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SystemPrincipal {
    role: SystemRole,
}

impl SystemPrincipal {
    pub const fn new(role: SystemRole) -> Self {
        Self { role }
    }
    pub const fn poller() -> Self {
        Self::new(SystemRole::Poller)
    }
    pub const fn provisioner() -> Self {
        Self::new(SystemRole::Provisioner)
    }
    pub fn role(&self) -> SystemRole {
        self.role
    }
}
