//! `GET /export/history.csv?deviceId=…&points=a,b&from=…&to=…&bucketSeconds=…&aggregate=…`:
//! the numbers `historySeries` returns, as CSV (`timestamp,point,value`,
//! oldest first, points in the order asked), for the bearer token's caller
//! under the same authorization.
//!
//! Streamed: the range is read in windows of [`WINDOW_BUCKETS`] buckets,
//! each written out before the next is read, so a month of one-second
//! buckets never sits in memory. Windows start on bucket boundaries of the
//! whole range, so every bucket is the one `historySeries` would return.
//! Errors before the first byte get a status and a small JSON body
//! `{"code": "...", "message": "..."}` (codes as in GraphQL's
//! `extensions.code`); a store failure mid-stream aborts the response.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use futures::StreamExt;
use hearth_domain::model::{Aggregate, HistoryQuery};
use hearth_domain::services::{AuthService, HistoryService, SeriesHistory};
use hearth_domain::{DeviceId, DomainError, PointKey, Principal};
use serde::Deserialize;

use crate::api::error::Code;
use crate::api::Caller;

/// Buckets per point read from the store at a time.
pub const WINDOW_BUCKETS: i64 = 1_000;
/// Buckets per point one export may cover: 1,000 windows.
pub const MAX_EXPORT_BUCKETS: i64 = 1_000_000;

#[derive(Clone)]
struct ExportState {
    auth: AuthService,
    history: HistoryService,
    limits: crate::http_request::HttpLimits,
}

/// The export route; merged into the server's router by the composition root.
pub fn routes(
    auth: AuthService,
    history: HistoryService,
    limits: crate::http_request::HttpLimits,
) -> Router {
    Router::new()
        .route("/export/history.csv", get(export))
        .with_state(ExportState {
            auth,
            history,
            limits,
        })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    device_id: String,
    points: String,
    from: String,
    to: String,
    bucket_seconds: Option<i64>,
    aggregate: Option<String>,
}

/// A validated export request.
struct Export {
    device: DeviceId,
    points: Vec<PointKey>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_seconds: i64,
    aggregate: Aggregate,
}

fn refuse(status: StatusCode, code: Code, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "code": code.as_str(), "message": message.into() });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad_input(message: impl Into<String>) -> Response {
    refuse(StatusCode::BAD_REQUEST, Code::BadUserInput, message)
}

fn from_domain(err: DomainError) -> Response {
    match err {
        DomainError::Unauthenticated => refuse(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "authentication required",
        ),
        DomainError::Forbidden(why) => refuse(
            StatusCode::FORBIDDEN,
            Code::Forbidden,
            format!("forbidden: {why}"),
        ),
        DomainError::NotFound(what) => refuse(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            format!("{what} not found"),
        ),
        DomainError::InvalidInput(invalid) => bad_input(invalid.to_string()),
        DomainError::Conflict(what) => refuse(
            StatusCode::CONFLICT,
            Code::Conflict,
            format!("conflict: {what}"),
        ),
        DomainError::DeviceUnreachable(why) => refuse(
            StatusCode::BAD_GATEWAY,
            Code::DeviceUnreachable,
            format!("device unreachable: {why}"),
        ),
        DomainError::RateLimited { .. } => refuse(
            StatusCode::TOO_MANY_REQUESTS,
            Code::RateLimited,
            "too many attempts; retry later",
        ),
        DomainError::Unavailable(err) => {
            tracing::warn!(error = ?err, "A history export found a store unavailable.");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                "a store is unavailable; try again shortly",
            )
        }
        DomainError::Internal(err) => {
            tracing::error!(error = ?err, "A history export failed.");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Internal,
                "internal error",
            )
        }
    }
}

fn parse_aggregate(text: Option<&str>) -> Option<Aggregate> {
    match text.map(str::to_ascii_uppercase).as_deref() {
        None | Some("MEAN") => Some(Aggregate::Mean),
        Some("MIN") => Some(Aggregate::Min),
        Some("MAX") => Some(Aggregate::Max),
        Some("LAST") => Some(Aggregate::Last),
        Some("COUNT") => Some(Aggregate::Count),
        Some(_) => None,
    }
}

/// The request's parameters, or why they are refused (a 400).
fn parse(query: Option<&str>) -> Result<Export, String> {
    let params: Params = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| format!("invalid query parameters: {e}"))?;
    let device = params
        .device_id
        .parse::<DeviceId>()
        .map_err(|_| String::from("`deviceId` is not a valid device id"))?;
    let points = params
        .points
        .split(',')
        .map(|p| PointKey::new(p.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let time = |name: &str, text: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| format!("`{name}` must be an RFC 3339 time"))
    };
    let from = time("from", &params.from)?;
    let to = time("to", &params.to)?;
    if from >= to {
        return Err(String::from("`from` must be before `to`"));
    }
    let bucket_seconds = params
        .bucket_seconds
        .unwrap_or_else(|| HistoryQuery::auto_bucket_seconds(from, to));
    if !(1..=31 * 86_400).contains(&bucket_seconds) {
        return Err(String::from("`bucketSeconds` must be 1 s to 31 days"));
    }
    if (to - from).num_seconds() / bucket_seconds > MAX_EXPORT_BUCKETS {
        return Err(format!("at most {MAX_EXPORT_BUCKETS} buckets per export"));
    }
    let aggregate = parse_aggregate(params.aggregate.as_deref())
        .ok_or_else(|| String::from("`aggregate` must be MEAN, MIN, MAX, LAST or COUNT"))?;
    Ok(Export {
        device,
        points,
        from,
        to,
        bucket_seconds,
        aggregate,
    })
}

impl Export {
    /// The `index`th window, `None` past the end.
    fn window(&self, index: i64) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let span = Duration::seconds(self.bucket_seconds * WINDOW_BUCKETS);
        let start = self.from + span * i32::try_from(index).ok()?;
        (start < self.to).then(|| (start, (start + span).min(self.to)))
    }

    async fn read(
        &self,
        history: &HistoryService,
        principal: &Principal,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<Vec<SeriesHistory>, DomainError> {
        history
            .history_series(
                principal,
                self.device,
                self.points.clone(),
                from,
                to,
                Some(self.bucket_seconds),
                self.aggregate,
            )
            .await
    }
}

/// CSV rows of one window, by time then by the order the points were asked.
fn rows(series: &[SeriesHistory], header: bool) -> Result<Vec<u8>, csv::Error> {
    let mut rows: Vec<(DateTime<Utc>, usize, f64)> = series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.buckets.iter().map(move |b| (b.timestamp, i, b.value)))
        .collect();
    rows.sort_by_key(|(t, i, _)| (*t, *i));
    let mut out = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 40));
    if header {
        out.write_record(["timestamp", "point", "value"])?;
    }
    for (timestamp, i, value) in rows {
        out.write_record([
            timestamp
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
                .as_str(),
            series[i].point.as_str(),
            value.to_string().as_str(),
        ])?;
    }
    out.into_inner().map_err(|e| e.into_error().into())
}

async fn export(State(state): State<ExportState>, request: Request) -> Response {
    // The same query string bound as `GET /graphql`: a long list of points
    // is refused before anything is decoded or looked up.
    let length = request.uri().query().map_or(0, str::len);
    if length > state.limits.max_query_string_bytes {
        return refuse(
            StatusCode::URI_TOO_LONG,
            Code::BadUserInput,
            format!(
                "the query string is {length} bytes long, more than the limit of {}",
                state.limits.max_query_string_bytes
            ),
        );
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match crate::server::caller(&state.auth, authorization).await {
        Caller::User(principal) => *principal,
        Caller::Anonymous | Caller::Rejected => {
            return from_domain(DomainError::Unauthenticated);
        }
        Caller::Unavailable => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                "authentication is unavailable; retry later",
            )
        }
    };
    let export = match parse(request.uri().query()) {
        Ok(export) => export,
        Err(message) => return bad_input(message),
    };
    // The first window is read before answering, so refusals (scope, a
    // missing device or point) get their status rather than a cut stream.
    let Some(first_window) = export.window(0) else {
        return bad_input("empty range");
    };
    let first = match export.read(&state.history, &principal, first_window).await {
        Ok(first) => first,
        Err(err) => return from_domain(err),
    };
    let first = match rows(&first, true) {
        Ok(bytes) => bytes,
        Err(err) => return from_domain(DomainError::Internal(err.into())),
    };
    let rest = futures::stream::unfold(
        (1i64, export, state.history, principal),
        |(index, export, history, principal)| async move {
            let window = export.window(index)?;
            let chunk = match export.read(&history, &principal, window).await {
                Ok(series) => rows(&series, false).map_err(std::io::Error::other),
                Err(err) => {
                    tracing::error!(error = ?err, "A history export failed mid-stream.");
                    Err(std::io::Error::other("history export failed"))
                }
            };
            Some((chunk, (index + 1, export, history, principal)))
        },
    );
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"history.csv\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
