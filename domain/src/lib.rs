//! Hearth's hexagon core: entities, use cases and the ports adapters implement.
//!
//! Nothing here knows about HTTP, GraphQL, SQL, document or time-series
//! databases, or any field protocol. Every use case takes the acting [`Principal`] and asks
//! the [`Authorizer`](ports::Authorizer) before it touches data.

pub mod error;
pub mod ids;
pub mod model;
pub mod ports;
pub mod principal;
pub mod services;

#[cfg(feature = "contract")]
pub mod contract;

pub use error::{DomainError, StoreError};
pub use ids::{
    AlarmId, AlarmRuleId, AreaId, DeviceId, PointKey, ProfileId, SessionFamily, TenantId, UserId,
};
pub use principal::{Principal, SystemPrincipal, SystemRole};
