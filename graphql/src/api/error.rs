//! Domain errors to GraphQL errors with `extensions.code`, and the schema
//! wrapper that checks every document's cost before it runs and gives every
//! other error (parse, validation, limits) a code and a bounded size too.

use std::sync::Arc;

use async_graphql::{Data, ErrorExtensions, Executor, Request, Response, ServerError};
use futures::stream::{self, BoxStream, StreamExt};
use hearth_domain::services::LoginError;
use hearth_domain::DomainError;

use crate::limits::{self, QueryLimits};

/// Longest error message a client gets, in characters: messages quote
/// input (names, values, ids), and the input must not make them long.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 300;

/// Most errors one response carries; the rest are summarised in one more.
/// Validation reports every unknown field, so a document of thousands of
/// them would otherwise get an answer many times its size.
pub const MAX_ERRORS: usize = 50;

/// The codes of DESIGN.md's GraphQL contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    DeviceUnreachable,
    Conflict,
    /// Too many attempts; `extensions.retryAfter` says how many seconds to wait.
    RateLimited,
    /// A store or service Hearth depends on is down; retry later.
    Unavailable,
    Internal,
    /// A live subscriber fell behind and updates were dropped for it.
    Lagged,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::DeviceUnreachable => "DEVICE_UNREACHABLE",
            Code::Conflict => "CONFLICT",
            Code::RateLimited => "RATE_LIMITED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
            Code::Lagged => "LAGGED",
        }
    }
}

pub fn coded(code: Code, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code.as_str()))
}

pub fn from_domain(err: DomainError) -> async_graphql::Error {
    match err {
        DomainError::Unauthenticated => coded(Code::Unauthenticated, "authentication required"),
        DomainError::Forbidden(why) => coded(Code::Forbidden, format!("forbidden: {why}")),
        DomainError::NotFound(what) => coded(Code::NotFound, format!("{what} not found")),
        DomainError::InvalidInput(invalid) => coded(Code::BadUserInput, invalid.to_string()),
        DomainError::DeviceUnreachable(why) => coded(
            Code::DeviceUnreachable,
            format!("device unreachable: {why}"),
        ),
        DomainError::Conflict(what) => coded(Code::Conflict, format!("conflict: {what}")),
        DomainError::RateLimited { retry_after } => rate_limited(retry_after),
        DomainError::Unavailable(err) => unavailable(err),
        DomainError::Internal(err) => internal(err),
    }
}

pub fn from_login(err: LoginError) -> async_graphql::Error {
    match err {
        LoginError::InvalidCredentials => {
            coded(Code::Unauthenticated, "invalid email, password or tenant")
        }
        LoginError::InvalidCode => coded(
            Code::Unauthenticated,
            "invalid or expired two-factor code or challenge",
        ),
        LoginError::SecondFactorRequired => coded(
            Code::Unauthenticated,
            "this account signs in with a second factor",
        ),
        LoginError::RateLimited { retry_after } => rate_limited(retry_after),
        LoginError::Unavailable(err) => unavailable(err),
        LoginError::Internal(err) => internal(err),
    }
}

/// `RATE_LIMITED` with `extensions.retryAfter`: whole seconds, rounded up,
/// at least 1 (a client retrying after 0 s would only be refused again).
pub fn rate_limited(retry_after: std::time::Duration) -> async_graphql::Error {
    let seconds = retry_after
        .as_secs()
        .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
        .max(1);
    async_graphql::Error::new(format!("too many attempts; retry after {seconds} s")).extend_with(
        |_, e| {
            e.set("code", Code::RateLimited.as_str());
            e.set("retryAfter", seconds);
        },
    )
}

/// Logs the cause; the client sees only that something failed.
pub fn internal(err: anyhow::Error) -> async_graphql::Error {
    tracing::error!(error = ?err, "Internal error while serving a request.");
    coded(Code::Internal, "internal error")
}

/// Logs the cause; the client learns only that a store is down and that
/// retrying later makes sense (nothing was changed).
pub fn unavailable(err: anyhow::Error) -> async_graphql::Error {
    tracing::warn!(error = ?err, "A store is unavailable while serving a request.");
    coded(Code::Unavailable, "a store is unavailable; retry later")
}

pub fn bad_input(message: impl Into<String>) -> async_graphql::Error {
    coded(Code::BadUserInput, message)
}

/// The schema as served: every document passes [`limits`] first (HTTP and
/// WebSocket operations alike, both come through here); every error raised
/// before any resolver ran (syntax, validation, limits, argument coercion)
/// gets a `BAD_USER_INPUT` code, resolver errors keep their own; messages
/// and the number of errors are bounded.
///
/// A wrapper rather than an async-graphql extension: an extension is called
/// around every field resolution, which costs several per cent of a device
/// listing's CPU time.
#[derive(Clone)]
pub struct CodedSchema {
    schema: super::HearthSchema,
    limits: QueryLimits,
}

impl CodedSchema {
    /// `schema` behind the default [`QueryLimits`].
    pub fn new(schema: super::HearthSchema) -> Self {
        Self::with_limits(schema, QueryLimits::default())
    }

    pub fn with_limits(schema: super::HearthSchema, limits: QueryLimits) -> Self {
        Self { schema, limits }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    pub fn schema(&self) -> &super::HearthSchema {
        &self.schema
    }
}

fn add_codes(mut response: Response) -> Response {
    if response.errors.len() > MAX_ERRORS {
        let left_out = response.errors.split_off(MAX_ERRORS);
        let code = left_out
            .first()
            .and_then(|e| e.extensions.as_ref())
            .and_then(|e| e.get("code"))
            .cloned();
        let mut summary = ServerError::new(
            format!("{} more errors were left out", left_out.len()),
            None,
        );
        if let Some(code) = code {
            summary
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", code);
        }
        response.errors.push(summary);
    }
    for error in &mut response.errors {
        ensure_code(error);
        truncate_message(&mut error.message, MAX_ERROR_MESSAGE_CHARS);
    }
    response
}

/// Cuts `message` to `max_chars` characters (on a character boundary) and
/// marks the cut with `…`.
pub(crate) fn truncate_message(message: &mut String, max_chars: usize) {
    if let Some((cut, _)) = message.char_indices().nth(max_chars) {
        message.truncate(cut);
        message.push('…');
    }
}

/// Gives an uncoded error its code. Errors raised before any resolver ran
/// (syntax, validation, variables, limits) carry no `path`: the client's
/// document or input is at fault, `BAD_USER_INPUT`. Errors with a `path`
/// come from execution, where every resolver codes its own errors; the only
/// uncoded ones the client causes are argument coercion failures, which
/// async-graphql words in two fixed ways. Anything else is a bug or an
/// unmapped failure on our side: `INTERNAL`, never blamed on the input.
fn ensure_code(error: &mut ServerError) {
    let has_code = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .is_some();
    if has_code {
        return;
    }
    let code = if error.path.is_empty() || is_argument_coercion(&error.message) {
        Code::BadUserInput
    } else {
        tracing::error!(message = %error.message, path = ?error.path, "A resolver error had no code.");
        error.message = "internal error".into();
        Code::Internal
    };
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
}

/// The messages of async-graphql's `InputValueError` (argument values that
/// do not parse as their input type).
fn is_argument_coercion(message: &str) -> bool {
    message.starts_with("Failed to parse \"") || message.starts_with("Expected input type \"")
}

impl Executor for CodedSchema {
    async fn execute(&self, mut request: Request) -> Response {
        if let Err(refused) = limits::check_request(&mut request, &self.limits) {
            return add_codes(Response::from_errors(vec![refused]));
        }
        add_codes(self.schema.execute(request).await)
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        if let Err(refused) = limits::check_request(&mut request, &self.limits) {
            return stream::once(async move { add_codes(Response::from_errors(vec![refused])) })
                .boxed();
        }
        self.schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default())
            .map(add_codes)
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_store_outage_is_unavailable_and_quotes_nothing_of_the_cause() {
        // Given a store outage as the ports report it, for a use case and a login
        let store = || {
            hearth_domain::StoreError::Unavailable(anyhow::anyhow!(
                "connection refused: mysql://hearth:secret@db:3306"
            ))
        };
        let use_case = from_domain(DomainError::from(store()));
        let login = from_login(LoginError::from(store()));
        // Then both are UNAVAILABLE, and the cause (a URL) stays in the logs
        for err in [use_case, login] {
            let code = err.extensions.as_ref().and_then(|e| e.get("code")).cloned();
            assert_eq!(
                code,
                Some(async_graphql::Value::from(Code::Unavailable.as_str()))
            );
            assert!(!err.message.contains("secret"), "{}", err.message);
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        // Given messages of one-byte and of multi-byte characters, and a short one
        let mut ascii = "a".repeat(1_000_000);
        let mut wide = "€".repeat(1_000);
        let mut short = String::from("fine");
        // When they are truncated
        truncate_message(&mut ascii, MAX_ERROR_MESSAGE_CHARS);
        truncate_message(&mut wide, MAX_ERROR_MESSAGE_CHARS);
        truncate_message(&mut short, MAX_ERROR_MESSAGE_CHARS);
        // Then the long ones keep the bound plus the ellipsis, the short one is untouched
        assert_eq!(ascii.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(ascii.ends_with('…'));
        assert_eq!(wide.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert_eq!(short, "fine");
    }

    #[test]
    fn many_errors_are_summarised_and_every_error_gets_a_code() {
        // Given a response with far more errors than the bound, none coded
        let errors = (0..1_000)
            .map(|i| ServerError::new(format!("error {i}"), None))
            .collect();
        // When codes are added
        let response = add_codes(Response::from_errors(errors));
        // Then the first MAX_ERRORS remain, plus one summary, all coded
        assert_eq!(response.errors.len(), MAX_ERRORS + 1);
        assert_eq!(
            response.errors[MAX_ERRORS].message,
            format!("{} more errors were left out", 1_000 - MAX_ERRORS)
        );
        assert!(response.errors.iter().all(|e| e
            .extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .is_some()));
    }

    #[test]
    fn uncoded_execution_errors_are_internal_and_pre_execution_errors_bad_input() {
        // Given an uncoded validation error (no path), an uncoded resolver
        // error (with a path) and an uncoded argument coercion error
        let validation = ServerError::new("Unknown field \"nope\"", None);
        let mut resolver = ServerError::new("Data `Hearth` does not exist.", None);
        resolver.path = vec![async_graphql::PathSegment::Field("devices".into())];
        let mut coercion = ServerError::new("Failed to parse \"Int\": only integers", None);
        coercion.path = vec![async_graphql::PathSegment::Field("devices".into())];
        // When codes are added
        let response = add_codes(Response::from_errors(vec![validation, resolver, coercion]));
        // Then input errors are BAD_USER_INPUT and the resolver's is INTERNAL, its detail hidden
        let codes: Vec<_> = response
            .errors
            .iter()
            .map(|e| {
                e.extensions
                    .as_ref()
                    .and_then(|x| x.get("code"))
                    .cloned()
                    .unwrap_or(async_graphql::Value::Null)
            })
            .collect();
        assert_eq!(
            codes,
            ["BAD_USER_INPUT", "INTERNAL", "BAD_USER_INPUT"].map(async_graphql::Value::from)
        );
        assert_eq!(response.errors[1].message, "internal error");
    }

    #[test]
    fn rate_limited_says_when_to_retry_in_whole_seconds_rounded_up() {
        for (wait, expected) in [
            (Duration::from_millis(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(900), 900),
            (Duration::ZERO, 1u64),
        ] {
            let err = from_login(LoginError::RateLimited { retry_after: wait });
            let ext = err.extensions.unwrap_or_default();
            assert_eq!(
                ext.get("code"),
                Some(&async_graphql::Value::from("RATE_LIMITED")),
                "{wait:?}"
            );
            assert_eq!(
                ext.get("retryAfter"),
                Some(&async_graphql::Value::from(expected)),
                "{wait:?}"
            );
        }
    }
}
