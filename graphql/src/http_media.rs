//! GraphQL over HTTP media types (the GraphQL-over-HTTP spec): which
//! response type a client accepts, which request body types we read, and the
//! HTTP response a GraphQL response becomes under each.
//!
//! `application/json` is the legacy type: always 200, as every client
//! written before the spec expects. `application/graphql-response+json`
//! lets the status speak: a request that never reached execution (syntax,
//! validation, limits, variables) is a 400 and its body has no `data` entry,
//! so a client can tell "your request is wrong" from "a field failed".

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http_request::Refusal;

/// `application/graphql-response+json`.
pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
/// `application/json`.
pub const JSON: &str = "application/json";

/// The response media type a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    /// `application/json`: 200 for every GraphQL response.
    Json,
    /// `application/graphql-response+json`: 4xx for request errors.
    GraphqlResponseJson,
}

impl ResponseType {
    pub fn content_type(self) -> &'static str {
        match self {
            ResponseType::Json => JSON,
            ResponseType::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
        }
    }
}

/// Picks the response type from `Accept`: the acceptable type of highest
/// `q`, the spec's own type winning a tie (a client that names it knows it);
/// wildcards and a missing header mean `application/json`, which the spec
/// asks servers to keep serving to clients that predate it. `None`: the
/// client accepts neither (406).
pub fn negotiate(headers: &HeaderMap) -> Option<ResponseType> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Some(ResponseType::Json);
    };
    let Ok(accept) = accept.to_str() else {
        return Some(ResponseType::Json);
    };
    if accept.trim().is_empty() {
        return Some(ResponseType::Json);
    }
    // (q in thousandths, preference on a tie, type)
    let mut best: Option<(u16, u8, ResponseType)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q.is_nan() || q <= 0.0 {
            continue;
        }
        let q = (q.min(1.0) * 1000.0) as u16;
        let (rank, kind) = match media.as_str() {
            GRAPHQL_RESPONSE_JSON => (2, ResponseType::GraphqlResponseJson),
            JSON => (1, ResponseType::Json),
            "application/*" | "*/*" => (0, ResponseType::Json),
            _ => continue,
        };
        if best.is_none_or(|(bq, br, _)| (q, rank) > (bq, br)) {
            best = Some((q, rank, kind));
        }
    }
    best.map(|(_, _, kind)| kind)
}

/// The 406 for a client that accepts no type we produce.
pub fn not_acceptable() -> Response {
    let mut response = (
        StatusCode::NOT_ACCEPTABLE,
        format!("/graphql answers with {GRAPHQL_RESPONSE_JSON} or {JSON}; the Accept header allows neither"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// Whether a POST body's declared type is one we read: `application/json`
/// (any parameters, e.g. `charset=utf-8`). The spec has servers reject a
/// POST without `Content-Type` rather than guess.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let Some(declared) = declared else {
        return Err(Refusal::UnsupportedMediaType("none".into()));
    };
    let media = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media.starts_with("multipart/") {
        return Err(Refusal::Multipart);
    }
    if media == JSON {
        Ok(())
    } else {
        Err(Refusal::UnsupportedMediaType(hearth_domain::error::quoted(
            &media,
        )))
    }
}

/// Whether `response` is a request error: it never reached execution, so it
/// has no data and every error lacks a `path` (field errors always have one,
/// even when they null the whole `data`).
pub fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The HTTP response for `response` under `kind`.
pub fn respond(response: async_graphql::Response, kind: ResponseType) -> Response {
    let request_error = is_request_error(&response);
    let (status, body) = if kind == ResponseType::GraphqlResponseJson && request_error {
        // The spec: a request error's body has no `data` entry at all.
        let body = serde_json::json!({ "errors": response.errors });
        (StatusCode::BAD_REQUEST, serde_json::to_string(&body))
    } else {
        (StatusCode::OK, serde_json::to_string(&response))
    };
    let body = match body {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "A GraphQL response could not be serialised.");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut http = Response::new(Body::from(body));
    *http.status_mut() = status;
    let headers = http.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type()),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    if response.is_ok() {
        if let Some(value) = response
            .cache_control
            .value()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(header::CACHE_CONTROL, value);
        }
    }
    headers.extend(response.http_headers);
    http
}

/// A [`Refusal`] under `kind` (its status stays: a 413 is a 413 for either).
pub fn refuse(refusal: Refusal, kind: ResponseType) -> Response {
    let mut response = refusal.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(header::ACCEPT, value);
        }
        headers
    }

    #[test]
    fn accept_picks_the_highest_q_and_the_spec_type_on_a_tie() {
        use ResponseType::*;
        for (header, expected) in [
            ("", Some(Json)),
            ("*/*", Some(Json)),
            ("application/json", Some(Json)),
            (
                "application/graphql-response+json",
                Some(GraphqlResponseJson),
            ),
            (
                "application/graphql-response+json, application/json;q=0.9",
                Some(GraphqlResponseJson),
            ),
            (
                "application/json, application/graphql-response+json",
                Some(GraphqlResponseJson),
            ),
            (
                "application/graphql-response+json;q=0.5, application/json",
                Some(Json),
            ),
            ("text/html,application/xhtml+xml,*/*;q=0.8", Some(Json)),
            ("application/json;q=0, text/plain", None),
            ("text/plain", None),
        ] {
            assert_eq!(negotiate(&accept(header)), expected, "{header}");
        }
    }

    #[test]
    fn only_json_bodies_are_read() {
        // Given bodies declared as JSON (with a charset), form data, none and multipart
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            check_content_type(&headers)
        };
        // Then only JSON is accepted, the others are refused with 415
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON; charset=utf-8").is_ok());
        for refused in [
            "application/x-www-form-urlencoded",
            "",
            "multipart/form-data; boundary=x",
        ] {
            let status = with(refused).err().map(|r| r.status());
            assert_eq!(
                status,
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "{refused}"
            );
        }
    }

    #[test]
    fn request_errors_are_told_from_field_errors_by_their_path() {
        // Given a validation error and a field error that nulled all data
        let validation =
            async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
                "Unknown field",
                None,
            )]);
        let mut field_error = async_graphql::ServerError::new("forbidden", None);
        field_error.path = vec![async_graphql::PathSegment::Field("me".into())];
        let field = async_graphql::Response::from_errors(vec![field_error]);
        // Then only the first is a request error
        assert!(is_request_error(&validation));
        assert!(!is_request_error(&field));
    }
}
