//! Domain errors to GraphQL errors with `extensions.code`, and the schema
//! wrapper that gives every other error (parse, validation, limits) a code too.

use std::sync::Arc;

use async_graphql::{Data, ErrorExtensions, Executor, Request, Response, ServerError};
use futures::stream::{BoxStream, StreamExt};
use hearth_domain::services::LoginError;
use hearth_domain::DomainError;

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
        DomainError::Internal(err) => internal(err),
    }
}

pub fn from_login(err: LoginError) -> async_graphql::Error {
    match err {
        LoginError::InvalidCredentials => {
            coded(Code::Unauthenticated, "invalid email, password or tenant")
        }
        LoginError::RateLimited { retry_after } => rate_limited(retry_after),
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

pub fn bad_input(message: impl Into<String>) -> async_graphql::Error {
    coded(Code::BadUserInput, message)
}

/// The schema as served: every error raised before any resolver ran
/// (syntax, validation, depth and complexity limits, argument coercion) gets
/// a `BAD_USER_INPUT` code; resolver errors already carry their own.
///
/// A wrapper rather than an async-graphql extension: an extension is called
/// around every field resolution, which costs several per cent of a device
/// listing's CPU time.
#[derive(Clone)]
pub struct CodedSchema(pub super::HearthSchema);

fn add_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        ensure_code(error);
    }
    response
}

fn ensure_code(error: &mut ServerError) {
    let has_code = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .is_some();
    if !has_code {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", Code::BadUserInput.as_str());
    }
}

impl Executor for CodedSchema {
    async fn execute(&self, request: Request) -> Response {
        add_codes(self.0.execute(request).await)
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        self.0
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
