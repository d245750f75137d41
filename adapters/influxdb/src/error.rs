//! The InfluxDB adapter's error; details go to logs through
//! `StoreError::Backend`, never to clients.

use hearth_domain::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// The config cannot work (bad URL, missing bucket...); found at start.
    #[error("invalid InfluxDB config: {0}")]
    Config(String),
    /// No answer: refused, reset, timed out, TLS failure.
    #[error("InfluxDB request to {endpoint} failed: {source}")]
    Transport {
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The v2 client (`influxdb2`) got no answer or an error status.
    #[error("InfluxDB request to {endpoint} failed: {source}")]
    Client {
        endpoint: &'static str,
        #[source]
        source: influxdb2::RequestError,
    },
    /// An answer other than success; `body` is cut short, it is for logs.
    #[error("InfluxDB {endpoint} answered {status}: {body}")]
    Status {
        endpoint: &'static str,
        status: reqwest::StatusCode,
        body: String,
    },
    /// The query ran but reported an error inside a successful answer
    /// (InfluxQL puts errors in a 200 body, Flux in an `error` table).
    #[error("InfluxDB query failed: {0}")]
    Query(String),
    /// The answer did not have the shape this adapter asked for.
    #[error("unexpected InfluxDB answer: {0}")]
    Malformed(String),
    /// Line protocol has no NaN or infinity; the whole batch is refused so
    /// that a batch stays all-or-nothing.
    #[error(
        "reading {point} at {timestamp} has the non-finite value {value}; InfluxDB cannot store it"
    )]
    NonFinite {
        point: String,
        timestamp: String,
        value: f64,
    },
    /// The outage spool cannot take or give back a batch (full, disk error).
    #[error("outage spool: {0}")]
    Spool(String),
    /// A tag value line protocol cannot carry (a line break).
    #[error("{0} cannot be written as an InfluxDB tag")]
    Unwritable(String),
}

impl InfluxError {
    /// InfluxDB is away or overloaded, so the same request may succeed
    /// later: no answer, a 5xx, or 429. Anything else (bad request, auth,
    /// missing bucket) would fail again and is not worth keeping.
    pub fn is_outage(&self) -> bool {
        match self {
            InfluxError::Transport { .. } => true,
            InfluxError::Client { source, .. } => match source {
                influxdb2::RequestError::ReqwestProcessing { .. } => true,
                influxdb2::RequestError::Http { status, .. } => {
                    status.is_server_error() || status.as_u16() == 429
                }
                _ => false,
            },
            InfluxError::Status { status, .. } => {
                status.is_server_error() || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }
}

impl From<InfluxError> for StoreError {
    fn from(err: InfluxError) -> Self {
        // An outage is the client's `UNAVAILABLE` (retry later), not a fault.
        if err.is_outage() {
            StoreError::Unavailable(anyhow::Error::new(err))
        } else {
            StoreError::Backend(anyhow::Error::new(err))
        }
    }
}

/// At most this much of an error body goes into a log line: a proxy may
/// answer with a whole HTML page.
const BODY_LIMIT: usize = 512;

pub(crate) fn shorten(mut body: String) -> String {
    if body.len() > BODY_LIMIT {
        let mut cut = BODY_LIMIT;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push('…');
    }
    body
}
