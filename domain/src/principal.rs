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
