//! `/readyz`: whether this instance can serve, store by store.
//!
//! `/healthz` says the process is alive (restart it when not); `/readyz` says
//! whether its stores answer (send it traffic or not). Each check is one
//! cheap round trip (a ping), bounded by [`CHECK_TIMEOUT`], and a report is
//! reused for [`CACHE_FOR`]: however often `/readyz` is called, the stores
//! see at most one ping each per second, and concurrent callers share one
//! check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hearth_influxdb::InfluxReadings;
use hearth_mongodb::MongoDocuments;
use hearth_sql::SqlDirectory;
use serde::Serialize;

/// How long one report is served before the stores are asked again.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// A store that has not answered within this is reported unavailable.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The stores to check, as the composition root built them.
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

struct Inner {
    relational: (&'static str, SqlDirectory),
    /// `None`: the embedded store, in this process, always there.
    documents: Option<MongoDocuments>,
    /// `None`: the embedded store.
    readings: Option<InfluxReadings>,
    /// The last report and when it was made; the lock also makes
    /// concurrent callers wait for one check instead of starting their own.
    last: tokio::sync::Mutex<Option<(Instant, Arc<Report>)>>,
}

/// What `/readyz` answers (as JSON).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// `true` when every store serving needs answers.
    pub ready: bool,
    pub stores: Stores,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Stores {
    pub relational: StoreState,
    pub documents: StoreState,
    pub readings: StoreState,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoreState {
    /// `embedded`, `mysql`, `mongodb`, `influxdb`.
    pub adapter: &'static str,
    /// `ok`, `unavailable`, or (readings with a spool) `buffering`: the
    /// server is away or the spool not yet replayed; nothing is lost.
    pub state: Condition,
    /// Batches waiting in the InfluxDB spool (only with a spool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spooled_batches: Option<u64>,
}

/// A store's condition.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Ok,
    Unavailable,
    Buffering,
}

impl StoreState {
    fn plain(adapter: &'static str, up: bool) -> Self {
        Self {
            adapter,
            state: if up {
                Condition::Ok
            } else {
                Condition::Unavailable
            },
            spooled_batches: None,
        }
    }
}

impl Readiness {
    pub fn new(
        relational: (&'static str, SqlDirectory),
        documents: Option<MongoDocuments>,
        readings: Option<InfluxReadings>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                relational,
                documents,
                readings,
                last: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The current report: the cached one when younger than [`CACHE_FOR`].
    pub async fn report(&self) -> Arc<Report> {
        let mut last = self.inner.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return report.clone();
            }
        }
        let report = Arc::new(self.check().await);
        *last = Some((Instant::now(), report.clone()));
        report
    }

    async fn check(&self) -> Report {
        let inner = &self.inner;
        let relational = async {
            let (adapter, directory) = &inner.relational;
            StoreState::plain(adapter, answers(directory.ping()).await)
        };
        let documents = async {
            match &inner.documents {
                None => StoreState::plain("embedded", true),
                Some(mongo) => StoreState::plain("mongodb", answers(mongo.ping()).await),
            }
        };
        let readings = async {
            match &inner.readings {
                None => StoreState::plain("embedded", true),
                Some(influx) => {
                    let up = answers(influx.ping()).await;
                    let spooled = influx.spooled_batches();
                    let state = match (up, spooled) {
                        (true, None | Some(0)) => Condition::Ok,
                        // Away or not yet caught up, but nothing is lost.
                        (_, Some(_)) => Condition::Buffering,
                        (false, None) => Condition::Unavailable,
                    };
                    StoreState {
                        adapter: "influxdb",
                        state,
                        spooled_batches: spooled,
                    }
                }
            }
        };
        let (relational, documents, readings) = tokio::join!(relational, documents, readings);
        // Buffering readings still serve: live values flow and the spool
        // keeps what InfluxDB cannot take yet.
        let ready = [&relational, &documents, &readings]
            .iter()
            .all(|s| s.state != Condition::Unavailable);
        Report {
            ready,
            stores: Stores {
                relational,
                documents,
                readings,
            },
        }
    }

    /// The `/readyz` route: 200 when ready, 503 when not, the report as JSON.
    pub fn routes(self) -> Router {
        Router::new().route("/readyz", get(readyz)).with_state(self)
    }
}

/// Whether `ping` succeeded within [`CHECK_TIMEOUT`]; why not is logged.
async fn answers<E: std::fmt::Display>(
    ping: impl std::future::Future<Output = Result<(), E>>,
) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "Readiness: a store does not answer.");
            false
        }
        Err(_) => {
            tracing::warn!(timeout = ?CHECK_TIMEOUT, "Readiness: a store did not answer in time.");
            false
        }
    }
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    let report = readiness.report().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report.as_ref().clone())).into_response()
}
