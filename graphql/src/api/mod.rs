//! The GraphQL schema: one query, mutation and subscription object per
//! resource, merged. `build_schema` returns a builder so the server adds
//! transport concerns and tests reuse the same schema.

mod admin;
mod alarms;
mod auth;
mod control;
mod devices;
pub mod error;
mod history;
mod live;
mod points;
mod profiles;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema, SchemaBuilder};
use hearth_domain::services::Services;
use hearth_domain::Principal;

pub use error::{Code, CodedSchema};
pub use live::AccessChanges;

#[derive(MergedObject, Default)]
pub struct Query(
    auth::AuthQuery,
    admin::AdminQueries,
    devices::DeviceQueries,
    history::HistoryQueries,
    control::AuditQueries,
    profiles::ProfileQueries,
    alarms::AlarmQueries,
);

/// Changes. A request runs each mutation field at most once: a mutation
/// operation naming the same field twice (through aliases or fragments) is
/// refused with `BAD_USER_INPUT` before anything runs, so one request is
/// at most one `login` (one password check) and one `writeParameter`.
/// Send several requests to do several things.
#[derive(MergedObject, Default)]
pub struct Mutation(
    auth::AuthMutation,
    admin::AdminMutation,
    control::ControlMutation,
    profiles::ProfileMutation,
    alarms::AlarmMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(live::LiveSubscription, alarms::AlarmSubscription);

pub type HearthSchema = Schema<Query, Mutation, Subscription>;

/// Nesting deeper than this is refused before execution.
pub const MAX_DEPTH: usize = 12;
/// Summed field complexity above this is refused before execution.
pub const MAX_COMPLEXITY: usize = 2_000;

/// The schema with its limits; callers add `Services` (and nothing else is
/// needed). The cost of a document as a whole (expanded fields, aliases,
/// tokens...) is checked before any of these, by [`CodedSchema`].
pub fn build_schema(services: Services) -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(services)
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(crate::limits::MAX_NESTING)
    .limit_directives(crate::limits::MAX_DIRECTIVES_PER_FIELD)
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

/// The bearer token a request came with (`logout` ends its session).
#[derive(Debug, Clone)]
pub struct BearerToken(pub std::sync::Arc<str>);

/// Who is calling, as established by the transport from a bearer token.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// A token was presented but is forged, malformed, expired or revoked.
    Rejected,
    /// The token could not be checked: a store behind authentication failed.
    /// Not the caller's fault, so never answered as `UNAUTHENTICATED` (a
    /// client would drop a good token and log its user out).
    Unavailable,
    User(Box<Principal>),
}

pub(crate) fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    // The schema is always built by `build_schema`, which installs it.
    ctx.data_unchecked::<Services>()
}

/// The authenticated principal, or `UNAUTHENTICATED`.
pub(crate) fn principal<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Principal> {
    match ctx.data_opt::<Caller>() {
        Some(Caller::User(p)) => Ok(p),
        Some(Caller::Rejected) => Err(error::coded(
            Code::Unauthenticated,
            "invalid or expired token",
        )),
        Some(Caller::Unavailable) => Err(error::coded(
            Code::Unavailable,
            "the token could not be checked now; retry later",
        )),
        _ => Err(error::coded(
            Code::Unauthenticated,
            "authentication required",
        )),
    }
}

/// Longest `ID` argument looked at: every id Hearth issues is a hyphenated
/// UUID (36 characters), so anything longer is refused unparsed.
pub const MAX_ID_LEN: usize = 64;

/// Parses an `ID` argument into a typed id, or `BAD_USER_INPUT`. The id must
/// look like a UUID (hex digits and hyphens, at most [`MAX_ID_LEN`]) before
/// it is parsed, and the error quotes at most a short prefix of it.
pub(crate) fn parse_id<T: std::str::FromStr>(
    id: &async_graphql::ID,
    what: &str,
) -> async_graphql::Result<T> {
    let text = id.as_str();
    let plausible =
        text.len() <= MAX_ID_LEN && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    plausible
        .then(|| text.parse::<T>().ok())
        .flatten()
        .ok_or_else(|| {
            error::bad_input(format!(
                "`{}` is not a valid {what} id",
                hearth_domain::error::quoted(text)
            ))
        })
}

#[cfg(test)]
mod tests {
    use hearth_domain::DeviceId;

    #[test]
    fn ids_are_checked_by_shape_and_never_echoed_whole() {
        // Given a valid id, a huge one, and one of the right length but wrong characters
        let valid = DeviceId::new().to_string();
        let huge = async_graphql::ID("a".repeat(1_000_000));
        let wrong = async_graphql::ID("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz".into());
        // Then the valid one parses, and the others are refused with a short message
        assert!(super::parse_id::<DeviceId>(&async_graphql::ID(valid), "device").is_ok());
        for id in [huge, wrong] {
            let err = super::parse_id::<DeviceId>(&id, "device").err();
            let message = err.map(|e| e.message).unwrap_or_default();
            assert!(message.ends_with("is not a valid device id"), "{message}");
            assert!(message.len() < 100, "{} bytes", message.len());
        }
    }

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
