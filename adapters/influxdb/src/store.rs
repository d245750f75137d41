//! [`InfluxReadings`]: the [`ReadingStore`] port over InfluxDB's HTTP API.

use std::sync::Arc;

use async_trait::async_trait;
use hearth_domain::model::{HistoryBucket, HistoryQuery, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::StoreError;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, Url};
use serde_json::json;

use crate::config::{InfluxConfig, QueryLanguage};
use crate::error::{shorten, InfluxError};
use crate::line_protocol::encode_batch;
use crate::spool::{Spool, SpoolState};
use crate::{flux, influxql};

struct Inner {
    client: reqwest::Client,
    /// The v2 API client for writes; `None` when InfluxDB is
    /// reached under a path prefix (`https://host/influx`), which the crate
    /// cannot address (it replaces the URL's path), and `client` serves.
    v2: Option<influxdb2::Client>,
    /// Where writes go while InfluxDB is away; `None`: failures are errors.
    spool: Option<Spool>,
    config: InfluxConfig,
    ping: Url,
    write: Url,
    flux: Url,
    influxql: Url,
}

/// Readings in an InfluxDB bucket (one point per reading, see
/// [`encode_batch`]), history aggregated by the server.
///
/// All-or-nothing: a batch is one write request, so it is refused whole
/// when it cannot be encoded, and InfluxDB applies one request to one shard
/// at once. A batch spanning two shard groups (7 days apart by default) is
/// two shard writes on the server's side; the poller's batches span seconds.
/// A failed write may be retried as is: the same series and timestamp
/// overwrite, so a replay never doubles a reading.
#[derive(Clone)]
pub struct InfluxReadings {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for InfluxReadings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxReadings")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl InfluxReadings {
    /// Checks the config and builds the HTTP client; does not contact the
    /// server (see [`ping`](Self::ping)), so Hearth can start while
    /// InfluxDB is still coming up.
    pub fn new(config: InfluxConfig) -> Result<Self, InfluxError> {
        Self::build(config, None)
    }

    /// Like [`new`](Self::new), and batches InfluxDB cannot take because it
    /// is away (no answer, 5xx, 429) are kept in `dir`, up to `max_bytes`,
    /// and replayed in order before the next write once it answers; what
    /// an earlier run left there is replayed too. `append` then succeeds
    /// as soon as the batch is on disk.
    pub fn with_spool(
        config: InfluxConfig,
        dir: &std::path::Path,
        max_bytes: u64,
    ) -> Result<Self, InfluxError> {
        Self::build(config, Some(Spool::open(dir, max_bytes)?))
    }

    fn build(config: InfluxConfig, spool: Option<Spool>) -> Result<Self, InfluxError> {
        config.validate()?;
        let mut base = config.base_url()?;
        // `join` replaces the last path segment unless the base ends in `/`
        // (InfluxDB behind a proxy at `https://host/influx`).
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let endpoint = |path: &str| {
            base.join(path)
                .map_err(|err| InfluxError::Config(format!("`url` cannot take {path}: {err}")))
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|err| InfluxError::Config(format!("HTTP client: {err}")))?;
        let v2 = if base.path() == "/" {
            let token = config
                .token
                .as_ref()
                .map(|t| t.expose().to_owned())
                .unwrap_or_default();
            let builder = reqwest011::Client::builder().timeout(config.timeout);
            Some(
                influxdb2::ClientBuilder::with_builder(
                    builder,
                    base.as_str(),
                    config.org.clone(),
                    token,
                )
                .build()
                .map_err(|err| InfluxError::Config(format!("InfluxDB v2 client: {err}")))?,
            )
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                v2,
                spool,
                ping: endpoint("ping")?,
                write: endpoint("api/v2/write")?,
                flux: endpoint("api/v2/query")?,
                influxql: endpoint("query")?,
                config,
            }),
        })
    }

    /// Batches waiting in the outage spool for InfluxDB to return; `None`
    /// without a spool. Cheap: no lock, no I/O.
    pub fn spooled_batches(&self) -> Option<u64> {
        self.inner.spool.as_ref().map(Spool::waiting)
    }

    pub fn config(&self) -> &InfluxConfig {
        &self.inner.config
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.inner.config.token {
            Some(token) => request.header(AUTHORIZATION, format!("Token {}", token.expose())),
            None => request,
        }
    }

    async fn send(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Response, InfluxError> {
        let response = self
            .authorized(request)
            .send()
            .await
            .map_err(|source| InfluxError::Transport { endpoint, source })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // The body explains the failure ("partial write", "bucket not
        // found"); unreadable, it is left out rather than masking the status.
        let body = response.text().await.unwrap_or_default();
        Err(InfluxError::Status {
            endpoint,
            status,
            body: shorten(body),
        })
    }

    /// `/ping`: answers 204 on 1.x, 2.x and 3.x when the server is up
    /// (`/ready` and `/health` are not on every version).
    pub async fn ping(&self) -> Result<(), InfluxError> {
        let request = self.inner.client.get(self.inner.ping.clone());
        self.send("/ping", request).await.map(drop)
    }

    /// On InfluxDB 1.x (told by `/ping`'s `X-Influxdb-Version`: not 2.x or 3.x), creates
    /// the InfluxQL database readings go to, when missing (`CREATE
    /// DATABASE` is idempotent there); returns its name. 2.x and 3.x
    /// buckets are provisioned with the server (`None`): a token allowed to
    /// write need not be allowed to create buckets.
    pub async fn ensure_database(&self) -> Result<Option<String>, InfluxError> {
        let request = self.inner.client.get(self.inner.ping.clone());
        let response = self.send("/ping", request).await?;
        let version = response
            .headers()
            .get("x-influxdb-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // 2.x says `v2.7.10`, 3.x `3.0.1`; a 1.x built from source (as in
        // CI) says `unknown`, so only a known newer version skips.
        let newer = version.trim_start_matches('v');
        if newer.starts_with("2.") || newer.starts_with("3.") {
            return Ok(None);
        }
        let (database, _) = self.inner.config.influxql_target();
        let statement = format!("CREATE DATABASE {}", influxql::identifier(database));
        let mut url = self.inner.influxql.clone();
        url.query_pairs_mut().append_pair("q", &statement);
        // A write statement: 1.x takes it only as a POST.
        let request = self.inner.client.post(url);
        self.send("/query", request).await?;
        Ok(Some(database.to_owned()))
    }

    /// Posts a line-protocol body with microsecond timestamps as one write
    /// request. Public for the throughput bench, which compares the adapter
    /// to a bare post of the same body.
    pub async fn write_line_protocol(&self, body: String) -> Result<(), InfluxError> {
        let config = &self.inner.config;
        if let Some(v2) = &self.inner.v2 {
            // The write path of influxdb2 0.5.2 has no unwrap (checked), so
            // it runs in place, without a task of its own.
            return v2
                .write_line_protocol_with_precision(
                    &config.org,
                    &config.bucket,
                    body,
                    influxdb2::api::write::TimestampPrecision::Microseconds,
                )
                .await
                .map_err(|source| InfluxError::Client {
                    endpoint: "/api/v2/write",
                    source,
                });
        }
        let mut url = self.inner.write.clone();
        {
            let mut query = url.query_pairs_mut();
            if !config.org.is_empty() {
                query.append_pair("org", &config.org);
            }
            query
                .append_pair("bucket", &config.bucket)
                .append_pair("precision", "us");
        }
        let request = self
            .inner
            .client
            .post(url)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        self.send("/api/v2/write", request).await.map(drop)
    }

    /// Posts spooled bodies oldest first until the spool is empty or
    /// InfluxDB is still away. A body it refuses for good is set aside (and
    /// logged) so it cannot hold back every later one.
    async fn replay(&self, spool: &Spool, state: &mut SpoolState) -> Result<(), InfluxError> {
        while let Some((sequence, body)) = spool.oldest(state).await? {
            match self.write_line_protocol(body).await {
                Ok(()) => spool.pop(state, false).await?,
                Err(err) if err.is_outage() => return Err(err),
                Err(err) => {
                    tracing::error!(error = %err, sequence, "InfluxDB refused a spooled batch; it is kept aside as .rejected.");
                    spool.pop(state, true).await?;
                }
            }
        }
        Ok(())
    }

    async fn append_spooled(&self, spool: &Spool, body: String) -> Result<(), InfluxError> {
        // One append at a time while a spool exists: replay order is write order.
        let mut state = spool.state.lock().await;
        if let Err(err) = self.replay(spool, &mut state).await {
            tracing::debug!(error = %err, "InfluxDB still unavailable; replay postponed.");
        }
        if state.is_empty() {
            // The clone keeps the body for the spool should this post fail.
            match self.write_line_protocol(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(err) if err.is_outage() => {
                    tracing::warn!(error = %err, "InfluxDB unavailable; spooling readings on disk.");
                }
                Err(err) => return Err(err),
            }
        }
        spool.push(&mut state, &body).await
    }

    async fn history_flux(&self, query: &HistoryQuery) -> Result<Vec<HistoryBucket>, InfluxError> {
        let config = &self.inner.config;
        // Flux answers are read here, not by influxdb2's `query_raw`: 0.5.2
        // unwraps while parsing them, and takes a 200 answer that is not
        // Flux CSV at all (a proxy's HTML error page) for an empty result,
        // which would show as "no data" instead of an error.
        let mut url = self.inner.flux.clone();
        if !config.org.is_empty() {
            url.query_pairs_mut().append_pair("org", &config.org);
        }
        // Header row on, annotations off: the parser needs column names only.
        let body = json!({
            "query": flux::history_query(&config.bucket, query),
            "type": "flux",
            "dialect": { "header": true, "annotations": [], "delimiter": "," },
        });
        let request = self
            .inner
            .client
            .post(url)
            .header(ACCEPT, "application/csv")
            .json(&body);
        let csv = self
            .send("/api/v2/query", request)
            .await?
            .text()
            .await
            .map_err(|source| InfluxError::Transport {
                endpoint: "/api/v2/query",
                source,
            })?;
        flux::parse_buckets(&csv)
    }

    async fn history_influxql(
        &self,
        query: &HistoryQuery,
    ) -> Result<Vec<HistoryBucket>, InfluxError> {
        let (database, retention_policy) = self.inner.config.influxql_target();
        let mut url = self.inner.influxql.clone();
        {
            let mut params = url.query_pairs_mut();
            params.append_pair("db", database);
            if let Some(rp) = retention_policy {
                params.append_pair("rp", rp);
            }
            params
                .append_pair("epoch", "ns")
                .append_pair("q", &influxql::history_statement(query));
        }
        let request = self
            .inner
            .client
            .get(url)
            .header(ACCEPT, "application/json");
        let body = self
            .send("/query", request)
            .await?
            .bytes()
            .await
            .map_err(|source| InfluxError::Transport {
                endpoint: "/query",
                source,
            })?;
        influxql::parse_buckets(&body)
    }
}

#[async_trait]
impl ReadingStore for InfluxReadings {
    async fn append(&self, batch: &[Reading]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let body = encode_batch(batch)?;
        match &self.inner.spool {
            Some(spool) => Ok(self.append_spooled(spool, body).await?),
            None => Ok(self.write_line_protocol(body).await?),
        }
    }

    async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryBucket>, StoreError> {
        let buckets = match self.inner.config.query_language {
            QueryLanguage::Flux => self.history_flux(query).await?,
            QueryLanguage::InfluxQl => self.history_influxql(query).await?,
        };
        Ok(buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_a_path_prefix() {
        // Given InfluxDB behind a proxy under /influx (no trailing slash)
        let store =
            InfluxReadings::new(InfluxConfig::new("https://h/influx", "b")).expect("valid config");
        // Then every endpoint stays under that prefix
        assert_eq!(store.inner.write.as_str(), "https://h/influx/api/v2/write");
        assert_eq!(store.inner.flux.as_str(), "https://h/influx/api/v2/query");
        assert_eq!(store.inner.influxql.as_str(), "https://h/influx/query");
        assert_eq!(store.inner.ping.as_str(), "https://h/influx/ping");
    }

    #[test]
    fn a_bad_config_is_refused_at_construction() {
        assert!(InfluxReadings::new(InfluxConfig::new("localhost:8086", "b")).is_err());
        assert!(InfluxReadings::new(InfluxConfig::new("http://h", "")).is_err());
    }
}
