//! The GraphQL schema: one query, mutation and subscription object per
//! resource, merged. `build_schema` returns a builder so the server adds
//! transport concerns and tests reuse the same schema.

mod auth;
mod control;
mod devices;
pub mod error;
mod history;
mod live;
mod profiles;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema, SchemaBuilder};
use hearth_domain::services::Hearth;
use hearth_domain::Principal;

pub use error::{Code, CodedSchema};

#[derive(MergedObject, Default)]
pub struct Query(
    auth::AuthQuery,
    devices::DeviceQueries,
    history::HistoryQueries,
    control::AuditQueries,
    profiles::ProfileQueries,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    auth::AuthMutation,
    control::ControlMutation,
    profiles::ProfileMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(live::LiveSubscription);

pub type HearthSchema = Schema<Query, Mutation, Subscription>;

/// Nesting deeper than this is refused before execution.
pub const MAX_DEPTH: usize = 12;
/// Summed field complexity above this is refused before execution.
pub const MAX_COMPLEXITY: usize = 2_000;

/// The schema with its limits; callers add `Hearth` (and nothing else is needed).
pub fn build_schema(hearth: Hearth) -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(hearth)
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
}

/// The SDL clients compile against (`hearth schema`, `schema.graphql`).
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .finish()
    .sdl()
}

/// The network address a request came from (the TCP peer), for throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Who is calling, as established by the transport from a bearer token.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// A token was presented but is forged, malformed, expired or revoked.
    Rejected,
    User(Box<Principal>),
}

pub(crate) fn hearth<'a>(ctx: &Context<'a>) -> &'a Hearth {
    // The schema is always built by `build_schema`, which installs it.
    ctx.data_unchecked::<Hearth>()
}

/// The authenticated principal, or `UNAUTHENTICATED`.
pub(crate) fn principal<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Principal> {
    match ctx.data_opt::<Caller>() {
        Some(Caller::User(p)) => Ok(p),
        Some(Caller::Rejected) => Err(error::coded(
            Code::Unauthenticated,
            "invalid or expired token",
        )),
        _ => Err(error::coded(
            Code::Unauthenticated,
            "authentication required",
        )),
    }
}

/// Parses an `ID` argument into a typed id, or `BAD_USER_INPUT`.
pub(crate) fn parse_id<T: std::str::FromStr>(
    id: &async_graphql::ID,
    what: &str,
) -> async_graphql::Result<T> {
    id.parse::<T>()
        .map_err(|_| error::bad_input(format!("`{}` is not a valid {what} id", id.as_str())))
}

#[cfg(test)]
mod tests {
    /// `schema.graphql` is what integrators compile against: it must be
    /// exactly what the code serves. Regenerate with `hearth schema > schema.graphql`.
    #[test]
    fn checked_in_schema_matches_the_code() {
        let checked_in = include_str!("../../../schema.graphql");
        assert!(
            checked_in == super::sdl(),
            "schema.graphql is out of date: run `cargo run -p hearth -- schema > schema.graphql`"
        );
    }
}
