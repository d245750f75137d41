//! GraphQL requests out of HTTP requests, within size limits enforced before
//! anything is parsed: a POST body is read only up to its limit (a larger
//! `Content-Length` is refused unread, a chunked body that grows past it is
//! cut off), a GET query string is measured before it is decoded. A refusal
//! is an HTTP status with a GraphQL error body coded `BAD_USER_INPUT`.
//!
//! Request bodies arrive before authentication, so whatever they cost, any
//! anonymous client can make the server pay it.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::api::error::{truncate_message, MAX_ERROR_MESSAGE_CHARS};
use crate::api::Code;

/// Largest POST body accepted (bytes): a document at its limit
/// ([`crate::limits::MAX_QUERY_BYTES`]) leaves plenty of room for variables.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest GET query string accepted (bytes, still percent-encoded). GET is
/// for short queries; longer ones belong in a POST body. (Past 64 KB the
/// `http` crate refuses the URI itself, with a bare 414.)
pub const MAX_QUERY_STRING_BYTES: usize = 32 * 1024;

/// Size limits of the HTTP transport; [`Default`] is the consts above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub max_query_string_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: MAX_BODY_BYTES,
            max_query_string_bytes: MAX_QUERY_STRING_BYTES,
        }
    }
}

/// Why an HTTP request carries no GraphQL request we will run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the query string is {length} bytes long, more than the limit of {limit}")]
    QueryStringTooLong { length: usize, limit: usize },
    #[error("multipart requests (file uploads) are not supported; send application/json")]
    Multipart,
    #[error("POST bodies must be application/json, this one is declared as {0}")]
    UnsupportedMediaType(String),
    #[error("mutations are not run over GET; send them with POST")]
    MutationOverGet,
    #[error("the request body could not be read")]
    Unreadable,
    #[error("the request is not a GraphQL request: {0}")]
    Malformed(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::QueryStringTooLong { .. } => StatusCode::URI_TOO_LONG,
            Refusal::Multipart | Refusal::UnsupportedMediaType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Refusal::MutationOverGet => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Unreadable | Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut message = self.to_string();
        // JSON errors quote the input (`invalid type: string "…"`).
        truncate_message(&mut message, MAX_ERROR_MESSAGE_CHARS);
        let body = serde_json::json!({
            "errors": [{ "message": message, "extensions": { "code": Code::BadUserInput.as_str() } }]
        });
        let mut response = (self.status(), body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/graphql-response+json"),
        );
        response
    }
}

/// Reads a POST body of at most `limits.max_body_bytes` and decodes it.
pub async fn from_post(
    headers: &HeaderMap,
    body: Body,
    limits: &HttpLimits,
) -> Result<async_graphql::Request, Refusal> {
    let limit = limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::BodyTooLarge { limit });
    }
    // After the size: a 20 MB body is refused as too large whatever it
    // claims to be.
    crate::http_media::check_content_type(headers)?;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(Refusal::BodyTooLarge { limit });
        }
        Err(err) => {
            tracing::debug!(error = %err, "Reading a request body failed.");
            return Err(Refusal::Unreadable);
        }
    };
    from_json(&bytes)
}

/// Decodes a JSON request body: one request object, or (as async-graphql
/// accepts) an array holding exactly one.
pub fn from_json(bytes: &[u8]) -> Result<async_graphql::Request, Refusal> {
    let malformed = |err: serde_json::Error| Refusal::Malformed(err.to_string());
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let mut batch: Vec<async_graphql::Request> =
            serde_json::from_slice(bytes).map_err(malformed)?;
        if batch.len() != 1 {
            return Err(Refusal::Malformed(
                "batches of several requests are not supported".into(),
            ));
        }
        return batch
            .pop()
            .ok_or_else(|| Refusal::Malformed("empty batch".into()));
    }
    serde_json::from_slice(bytes).map_err(malformed)
}

/// Decodes a GET query string of at most `limits.max_query_string_bytes`.
pub fn from_query_string(
    query: Option<&str>,
    limits: &HttpLimits,
) -> Result<async_graphql::Request, Refusal> {
    let query = query.unwrap_or_default();
    if query.len() > limits.max_query_string_bytes {
        return Err(Refusal::QueryStringTooLong {
            length: query.len(),
            limit: limits.max_query_string_bytes,
        });
    }
    parse_get(query)
}

/// The spec's GET parameters. async-graphql's own parser reads the operation
/// name from `operation_name`; the spec (and every client) says
/// `operationName`, so both are read here.
#[derive(serde::Deserialize)]
struct GetParams {
    #[serde(default)]
    query: String,
    #[serde(rename = "operationName", alias = "operation_name")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

fn parse_get(query: &str) -> Result<async_graphql::Request, Refusal> {
    let params: GetParams =
        serde_urlencoded::from_str(query).map_err(|err| Refusal::Malformed(err.to_string()))?;
    let mut request = async_graphql::Request::new(params.query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables {
        let json: serde_json::Value = serde_json::from_str(&variables)
            .map_err(|err| Refusal::Malformed(format!("invalid variables: {err}")))?;
        request = request.variables(async_graphql::Variables::from_json(json));
    }
    if let Some(extensions) = params.extensions {
        request.extensions = serde_json::from_str(&extensions)
            .map_err(|err| Refusal::Malformed(format!("invalid extensions: {err}")))?;
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        // Given a request that declares 20 MB but carries nothing
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("20000000"));
        // When it is read
        let refused = from_post(&headers, Body::empty(), &HttpLimits::default()).await;
        // Then it is refused as too large, before the body is looked at
        assert_eq!(
            refused.err(),
            Some(Refusal::BodyTooLarge {
                limit: MAX_BODY_BYTES
            })
        );
    }

    #[tokio::test]
    async fn a_body_that_grows_past_the_limit_is_cut_off() {
        // Given a body without a declared length, one byte over a small limit
        let limits = HttpLimits {
            max_body_bytes: 1_000,
            ..HttpLimits::default()
        };
        let body = Body::from(vec![b' '; 1_001]);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // When it is read
        let refused = from_post(&headers, body, &limits).await;
        // Then it is refused as too large with status 413
        let refusal = refused.err();
        assert_eq!(refusal, Some(Refusal::BodyTooLarge { limit: 1_000 }));
        assert_eq!(
            refusal.map(|r| r.status()),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn json_bodies_are_one_request_or_a_batch_of_one() {
        // Given a request object, a batch of one, a batch of two and garbage
        let single = br#"{"query":"{ __typename }","variables":{"a":1}}"#;
        let batch_of_one = br#" [{"query":"{ __typename }"}]"#;
        let batch_of_two = br#"[{"query":"{ a }"},{"query":"{ b }"}]"#;
        // Then the first two decode and the others are malformed
        assert_eq!(
            from_json(single).map(|r| r.query).ok().as_deref(),
            Some("{ __typename }")
        );
        assert!(from_json(batch_of_one).is_ok());
        assert!(matches!(
            from_json(batch_of_two),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            from_json(b"{not json"),
            Err(Refusal::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn refusals_are_graphql_errors_with_bounded_messages() {
        // Given a body whose JSON error would quote a 100 kB string
        let body = format!(
            r#"{{"query": "{{ a }}", "variables": "{}"}}"#,
            "x".repeat(100_000)
        );
        let refusal = from_json(body.as_bytes()).err();
        // When it is answered
        let response = refusal.map(IntoResponse::into_response);
        let (status, bytes) = match response {
            Some(r) => {
                let status = r.status();
                let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap_or_default();
                (status, bytes)
            }
            None => (StatusCode::OK, Default::default()),
        };
        // Then it is a 400 with a coded GraphQL error of bounded size
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        assert!(bytes.len() < 1_000, "{} bytes", bytes.len());
    }

    #[test]
    fn long_query_strings_are_refused_before_decoding() {
        // Given a query string one byte over the limit
        let query = format!("query={}", "a".repeat(MAX_QUERY_STRING_BYTES));
        // Then it is refused with 414
        let refused = from_query_string(Some(&query), &HttpLimits::default()).err();
        assert_eq!(refused.map(|r| r.status()), Some(StatusCode::URI_TOO_LONG));
        // And a normal one decodes, its operation name under the spec's key
        let ok = from_query_string(
            Some("query=%7B__typename%7D&operationName=Q&variables=%7B%22a%22%3A1%7D"),
            &HttpLimits::default(),
        );
        let ok = ok.ok();
        assert_eq!(ok.as_ref().map(|r| r.query.as_str()), Some("{__typename}"));
        assert_eq!(
            ok.as_ref().and_then(|r| r.operation_name.as_deref()),
            Some("Q")
        );
        assert_eq!(
            ok.map(|r| r.variables.into_value().to_string()).as_deref(),
            Some("{a: 1}")
        );
    }
}
