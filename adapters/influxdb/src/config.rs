//! Where the InfluxDB store writes and how it reads back; checked once at
//! start so a typo fails there, naming the key, instead of at the first poll.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::error::InfluxError;

/// How history is read. Writes are the same line protocol either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryLanguage {
    /// `/api/v2/query`: InfluxDB 1.8+ (with `flux-enabled`) and 2.x.
    #[default]
    Flux,
    /// The v1 `/query` endpoint: every version, and the only query path of
    /// InfluxDB 3 and Cloud Serverless, which run no Flux.
    #[serde(rename = "influxql")]
    InfluxQl,
}

/// An API token (2.x/3.x) or `user:password` (1.x with auth). Never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

#[derive(Debug, Clone)]
pub struct InfluxConfig {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Organisation for `/api/v2/*`; 1.x ignores it, so it may be empty there.
    pub org: String,
    /// Where readings go: a 2.x/3.x bucket, or `database/retention-policy` on 1.x.
    pub bucket: String,
    /// The InfluxQL database; when unset, the bucket up to its `/` (with the
    /// part after it as retention policy).
    pub database: Option<String>,
    pub token: Option<Token>,
    pub query_language: QueryLanguage,
    /// Per request; a hung server must not hold a poll batch forever.
    pub timeout: Duration,
}

impl InfluxConfig {
    /// A config with the defaults: Flux, no token, no org, 30 s timeout.
    pub fn new(url: impl Into<String>, bucket: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            org: String::new(),
            bucket: bucket.into(),
            database: None,
            token: None,
            query_language: QueryLanguage::Flux,
            timeout: Duration::from_secs(30),
        }
    }

    /// The base URL, checked; errors name the offending key.
    pub(crate) fn base_url(&self) -> Result<Url, InfluxError> {
        let url = Url::parse(self.url.trim()).map_err(|err| {
            InfluxError::Config(format!("`url` {:?} is not a URL: {err}", self.url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(InfluxError::Config(format!(
                "`url` {:?} must start with http:// or https://",
                self.url
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(InfluxError::Config(format!(
                "`url` {:?} must have no query or fragment",
                self.url
            )));
        }
        Ok(url)
    }

    pub(crate) fn validate(&self) -> Result<(), InfluxError> {
        self.base_url()?;
        if self.bucket.trim().is_empty() {
            return Err(InfluxError::Config("`bucket` must not be empty".into()));
        }
        if self
            .database
            .as_deref()
            .is_some_and(|db| db.trim().is_empty())
        {
            return Err(InfluxError::Config(
                "`database` must not be empty when set".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(InfluxError::Config("the timeout must be above zero".into()));
        }
        Ok(())
    }

    /// `(database, retention policy)` for InfluxQL's `db` and `rp` parameters.
    pub(crate) fn influxql_target(&self) -> (&str, Option<&str>) {
        if let Some(db) = &self.database {
            return (db, None);
        }
        match self.bucket.split_once('/') {
            Some((db, rp)) if !rp.is_empty() => (db, Some(rp)),
            Some((db, _)) => (db, None),
            None => (&self.bucket, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_influxql_target_follows_the_bucket_unless_a_database_is_named() {
        // Given a 1.x bucket `db/rp`
        let mut config = InfluxConfig::new("http://127.0.0.1:8086", "hearth/autogen");
        // Then InfluxQL reads that database and retention policy
        assert_eq!(config.influxql_target(), ("hearth", Some("autogen")));
        // When a database is named
        config.database = Some("other".into());
        // Then it wins, with the server's default retention policy
        assert_eq!(config.influxql_target(), ("other", None));
        // And a plain 2.x bucket name is its own database (DBRP mapping)
        assert_eq!(
            InfluxConfig::new("http://h", "readings").influxql_target(),
            ("readings", None)
        );
    }

    #[test]
    fn bad_configs_name_the_key() {
        let bad = |config: InfluxConfig| config.validate().map_err(|e| e.to_string()).unwrap_err();
        assert!(bad(InfluxConfig::new("not a url", "b")).contains("`url`"));
        assert!(bad(InfluxConfig::new("ftp://h", "b")).contains("`url`"));
        assert!(bad(InfluxConfig::new("http://h?x=1", "b")).contains("`url`"));
        assert!(bad(InfluxConfig::new("http://h", " ")).contains("`bucket`"));
        let mut no_db = InfluxConfig::new("http://h", "b");
        no_db.database = Some(String::new());
        assert!(bad(no_db).contains("`database`"));
        assert!(InfluxConfig::new("https://h:8086/", "b").validate().is_ok());
    }

    #[test]
    fn the_token_is_never_printed() {
        let mut config = InfluxConfig::new("http://h", "b");
        config.token = Some(Token::new("s3cr3t-token"));
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("***"));
    }
}
