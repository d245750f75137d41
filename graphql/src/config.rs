//! Typed configuration: defaults, then a TOML file (`--config FILE` or
//! `HEARTH_CONFIG`), then `HEARTH_*` environment variables (nested keys with
//! `__`: `HEARTH_HTTP__MAX_BODY_BYTES`), then command-line flags. Every key
//! is checked at start and a bad one fails naming it; README.md documents
//! them all. `hearth config` prints the effective result with secrets masked.
//!
//! [`Settings`] is what the file says; [`Settings::resolve`] turns it into
//! the runtime [`crate::app::Config`] the composition root builds from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use hearth_auth::Argon2Cost;
use hearth_domain::services::LoginLimits;
use hearth_domain::services::PollerConfig;
use hearth_influxdb::{InfluxConfig, QueryLanguage, Token};
use hearth_modbus::GatewayConfig;
use serde::{Deserialize, Serialize, Serializer};

use crate::app::Config;
use crate::http_request::HttpLimits;
use crate::limits::QueryLimits;
use crate::server::HttpOptions;
use crate::ws::WsLimits;

/// Top-level keys read from `HEARTH_*` variables. Other `HEARTH_*`
/// variables (the compose file's `HEARTH_MONGODB_URL`, test switches such as
/// `HEARTH_TEST_MYSQL_URL`) are not configuration and are left alone.
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "demo",
    "sim_base_port",
    "stores",
    "auth",
    "login",
    "http",
    "ws",
    "modbus",
    "bus",
    "writer",
    "retention",
    "notifications",
];

/// Why the configuration cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("invalid configuration: `{key}` {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// A secret: read like any string, never printed.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// Everything Hearth can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where the embedded stores (and the generated token secret) live.
    pub data_dir: PathBuf,
    /// Seed demo tenants and users, start simulated controllers, poll them.
    pub demo: bool,
    /// First TCP port of the demo's simulated controllers (0: any free ports).
    pub sim_base_port: u16,
    pub stores: Stores,
    pub auth: Auth,
    pub login: Login,
    pub http: Http,
    pub ws: Ws,
    pub modbus: Modbus,
    pub bus: Bus,
    pub writer: Writer,
    pub retention: Retention,
    pub notifications: Notifications,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            demo: false,
            sim_base_port: 15020,
            stores: Stores::default(),
            auth: Auth::default(),
            login: LoginLimits::default().into(),
            http: Http::default(),
            ws: WsLimits::default().into(),
            modbus: Modbus::default(),
            bus: Bus::default(),
            writer: Writer::default(),
            retention: Retention::default(),
            notifications: Notifications::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Stores {
    pub relational: Relational,
    pub documents: Documents,
    pub readings: Readings,
    pub live: Live,
}

/// The relational store's adapter.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RelationalAdapter {
    /// SQLite in `data_dir/hearth.db`.
    #[default]
    Embedded,
    /// MySQL or MariaDB at `url`.
    Mysql,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Relational {
    pub adapter: RelationalAdapter,
    /// `mysql://user:password@host:3306/hearth`; only with `adapter = "mysql"`.
    pub url: Option<Secret>,
    /// Most connections in the pool (MySQL; SQLite keeps its own small pool).
    pub pool_size: u32,
    /// Apply pending migrations when `serve` starts. When `false`, `serve`
    /// refuses a schema that is behind and `hearth migrate` applies them
    /// (e.g. one migration job before rolling out several instances).
    pub migrate_on_start: bool,
}

impl Default for Relational {
    fn default() -> Self {
        Self {
            adapter: RelationalAdapter::Embedded,
            url: None,
            pool_size: 10,
            migrate_on_start: true,
        }
    }
}

/// Only the adapters that exist today; a name of one that does not is
/// refused by serde naming the key and the accepted values.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddedOnly {
    #[default]
    Embedded,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InprocOnly {
    #[default]
    Inproc,
}

/// The document store's adapter.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DocumentsAdapter {
    /// redb in `data_dir`.
    #[default]
    Embedded,
    /// MongoDB (or FerretDB) at `url`.
    Mongodb,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Documents {
    pub adapter: DocumentsAdapter,
    /// `mongodb://user:password@host:27017`; only with `adapter = "mongodb"`.
    pub url: Option<Secret>,
    /// The MongoDB database holding Hearth's collections.
    pub database: String,
}

impl Default for Documents {
    fn default() -> Self {
        Self {
            adapter: DocumentsAdapter::Embedded,
            url: None,
            database: "hearth".to_owned(),
        }
    }
}

/// The reading store's adapter.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReadingsAdapter {
    /// redb in `data_dir/readings.redb`.
    #[default]
    Embedded,
    /// InfluxDB 1.8+, 2.x or 3.x at `url`.
    Influxdb,
}

/// The reading store; every key but `adapter` is for `adapter = "influxdb"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Readings {
    pub adapter: ReadingsAdapter,
    /// `http(s)://host:8086`.
    pub url: Option<String>,
    /// Organisation (2.x, 3.x); 1.x ignores it.
    pub org: Option<String>,
    /// Bucket written to (and read by Flux); `database/retention-policy` on 1.x.
    pub bucket: Option<String>,
    /// InfluxQL database; defaults to the bucket up to its `/`.
    pub database: Option<String>,
    /// API token, or `user:password` on 1.x with auth.
    pub token: Option<Secret>,
    /// `flux` or `influxql` (InfluxDB 3 and Cloud Serverless run no Flux).
    pub query_language: QueryLanguage,
    /// Per request to InfluxDB.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Bytes of batches kept in `data_dir/influxdb-spool` while InfluxDB is
    /// away, replayed in order when it returns; 0: none kept.
    pub spool_max_bytes: u64,
    /// On InfluxDB 1.x, create the InfluxQL database at start when missing
    /// (2.x and 3.x buckets are provisioned with the server).
    pub create_database: bool,
}

impl Default for Readings {
    fn default() -> Self {
        Self {
            adapter: ReadingsAdapter::Embedded,
            url: None,
            org: None,
            bucket: None,
            database: None,
            token: None,
            query_language: QueryLanguage::Flux,
            timeout: Duration::from_secs(30),
            spool_max_bytes: 1 << 30,
            create_database: true,
        }
    }
}

impl Readings {
    /// InfluxDB's settings when it is chosen, as given; [`Self::validate`]
    /// checks them.
    fn influxdb(&self) -> Option<InfluxConfig> {
        if self.adapter != ReadingsAdapter::Influxdb {
            return None;
        }
        let mut config = InfluxConfig::new(
            self.url.clone().unwrap_or_default(),
            self.bucket.clone().unwrap_or_default(),
        );
        config.org = self.org.clone().unwrap_or_default();
        config.database = self.database.clone();
        config.token = self.token.as_ref().map(|t| Token::new(t.expose()));
        config.query_language = self.query_language;
        config.timeout = self.timeout;
        Some(config)
    }

    /// Every key checked at start, so a bad one fails there, named.
    fn validate(&self) -> Result<(), ConfigError> {
        let Some(config) = self.influxdb() else {
            let set = [
                ("stores.readings.url", self.url.is_some()),
                ("stores.readings.org", self.org.is_some()),
                ("stores.readings.bucket", self.bucket.is_some()),
                ("stores.readings.database", self.database.is_some()),
                ("stores.readings.token", self.token.is_some()),
            ];
            return match set.into_iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(invalid(
                    key,
                    "is only for adapter \"influxdb\"; the embedded store lives in data_dir",
                )),
                None => Ok(()),
            };
        };
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(invalid(
                "stores.readings.url",
                "must be an http:// or https:// URL when stores.readings.adapter is \"influxdb\"",
            ));
        }
        if config.bucket.trim().is_empty() {
            return Err(invalid(
                "stores.readings.bucket",
                "is required when stores.readings.adapter is \"influxdb\" (`database/autogen` on InfluxDB 1.x)",
            ));
        }
        at_least_ms("stores.readings.timeout", self.timeout)?;
        // The adapter's own checks (URL syntax, an empty database) name the
        // key without its section.
        hearth_influxdb::InfluxReadings::new(config)
            .map(drop)
            .map_err(|e| invalid("stores.readings", e.to_string()))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Live {
    pub adapter: InprocOnly,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// The token signing secret itself (best from `HEARTH_AUTH__TOKEN_SECRET`).
    pub token_secret: Option<Secret>,
    /// A file holding the secret; used when `token_secret` is absent.
    pub token_secret_file: Option<PathBuf>,
    /// How long an access token is valid (15 min by default: clients renew
    /// it with the refresh token `login` returns).
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// Argon2id memory per password hash, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes over that memory.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// Tenants' own OIDC providers (`[[auth.oidc]]`), whose bearer tokens
    /// authenticate linked or email-verified members of that tenant.
    pub oidc: Vec<hearth_auth::OidcProviderConfig>,
    /// The 32-byte AES-256 key that seals two-factor secrets; by default
    /// `data_dir/two-factor.key`, created (mode 0600) on first start.
    pub two_factor_key_file: Option<PathBuf>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            token_secret: None,
            token_secret_file: None,
            token_lifetime: Duration::from_secs(15 * 60),
            argon2_memory_kib: Argon2Cost::OWASP.memory_kib,
            argon2_iterations: Argon2Cost::OWASP.iterations,
            argon2_parallelism: Argon2Cost::OWASP.parallelism,
            oidc: Vec::new(),
            two_factor_key_file: None,
        }
    }
}

/// [`LoginLimits`] as configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Login {
    pub account_free_failures: u32,
    pub address_free_failures: u32,
    #[serde(with = "humantime_serde")]
    pub first_lockout: Duration,
    #[serde(with = "humantime_serde")]
    pub max_lockout: Duration,
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
    pub max_tracked: usize,
    pub hashing_permits: usize,
    pub max_waiting_logins: usize,
}

impl Default for Login {
    fn default() -> Self {
        LoginLimits::default().into()
    }
}

impl From<LoginLimits> for Login {
    fn from(l: LoginLimits) -> Self {
        Self {
            account_free_failures: l.account_free_failures,
            address_free_failures: l.address_free_failures,
            first_lockout: l.first_lockout,
            max_lockout: l.max_lockout,
            forget_after: l.forget_after,
            max_tracked: l.max_tracked,
            hashing_permits: l.hashing_permits,
            max_waiting_logins: l.max_waiting_logins,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    pub max_body_bytes: usize,
    pub max_query_string_bytes: usize,
    pub max_query_bytes: usize,
    pub max_tokens: usize,
    pub max_nesting: usize,
    pub max_expanded_fields: u64,
    pub max_aliases: u64,
    pub max_root_fields: u64,
    pub max_directives: u64,
    /// Serve GraphiQL to browsers at `/graphql`.
    pub graphiql: bool,
    /// Origins (`https://ops.example.com`) browsers may call the API from.
    pub cors_origins: Vec<String>,
}

impl Default for Http {
    fn default() -> Self {
        let body = HttpLimits::default();
        let query = QueryLimits::default();
        Self {
            max_body_bytes: body.max_body_bytes,
            max_query_string_bytes: body.max_query_string_bytes,
            max_query_bytes: query.max_query_bytes,
            max_tokens: query.max_tokens,
            max_nesting: query.max_nesting,
            max_expanded_fields: query.max_expanded_fields,
            max_aliases: query.max_aliases,
            max_root_fields: query.max_root_fields,
            max_directives: query.max_directives,
            graphiql: true,
            cors_origins: Vec::new(),
        }
    }
}

/// [`WsLimits`] as configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Ws {
    pub max_message_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub init_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
    pub max_subscriptions: usize,
    pub max_connections_per_user: usize,
    pub max_pending_handshakes: usize,
    pub max_id_len: usize,
    #[serde(with = "humantime_serde")]
    pub session_check_interval: Duration,
}

impl Default for Ws {
    fn default() -> Self {
        WsLimits::default().into()
    }
}

impl From<WsLimits> for Ws {
    fn from(w: WsLimits) -> Self {
        Self {
            max_message_bytes: w.max_message_bytes,
            init_timeout: w.init_timeout,
            keepalive_interval: w.keepalive_interval,
            peer_timeout: w.peer_timeout,
            max_subscriptions: w.max_subscriptions,
            max_connections_per_user: w.max_connections_per_user,
            max_pending_handshakes: w.max_pending_handshakes,
            max_id_len: w.max_id_len,
            session_check_interval: w.session_check_interval,
        }
    }
}

/// The Modbus gateway's timeouts and the poller's pacing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Modbus {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    pub max_gap: u16,
    #[serde(with = "humantime_serde")]
    pub max_start_offset: Duration,
    /// Longest wait between attempts on an unreachable device.
    #[serde(with = "humantime_serde")]
    pub backoff_cap: Duration,
    #[serde(with = "humantime_serde")]
    pub replan_every: Duration,
    /// How often devices and profiles are re-read; `0s`: never by itself.
    #[serde(with = "humantime_serde")]
    pub reload_every: Duration,
}

impl Default for Modbus {
    fn default() -> Self {
        let gateway = GatewayConfig::default();
        let poller = PollerConfig::default();
        Self {
            connect_timeout: gateway.connect_timeout,
            request_timeout: gateway.request_timeout,
            idle_timeout: gateway.idle_timeout,
            max_gap: gateway.max_gap,
            max_start_offset: poller.max_start_offset,
            backoff_cap: poller.backoff_cap,
            replan_every: gateway.replan_every,
            reload_every: poller.reload_every.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Bus {
    /// Live events buffered per subscriber before it lags.
    pub capacity: usize,
}

impl Default for Bus {
    fn default() -> Self {
        Self {
            capacity: hearth_inproc::bus::DEFAULT_CAPACITY,
        }
    }
}

/// Alarm notifications (mail and webhooks). Off by default: nothing is
/// sent and dead letters are still listed (none are written).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Notifications {
    pub enabled: bool,
    /// `From:` of every alarm mail, e.g. `Hearth <alarms@example.com>`.
    pub from: String,
    /// Notices waiting for the notifier; beyond it they are dropped (and
    /// recorded as dead letters) so alarm evaluation never waits.
    pub queue_size: usize,
    /// Attempts after the first, per mail and per webhook call.
    pub retries: u32,
    /// Wait before the first retry, doubled after each (at most 60 s).
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    pub smtp: Smtp,
}

impl Default for Notifications {
    fn default() -> Self {
        let d = hearth_notify::NotifierConfig::default();
        Self {
            enabled: false,
            from: d.from,
            queue_size: d.queue_size,
            retries: d.retries,
            retry_backoff: d.backoff,
            webhook_timeout: d.webhook_timeout,
            smtp: Smtp::default(),
        }
    }
}

/// The SMTP server alarm mail goes through.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    /// `none` (loopback relays only), `starttls` (required) or `tls` (SMTPS).
    pub tls: hearth_notify::SmtpTls,
    pub username: Option<String>,
    /// Best from `HEARTH_NOTIFICATIONS__SMTP__PASSWORD`; never printed.
    pub password: Option<Secret>,
    /// Per SMTP command.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Smtp {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            tls: hearth_notify::SmtpTls::Starttls,
            username: None,
            password: None,
            timeout: Duration::from_secs(30),
        }
    }
}

impl Notifications {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.smtp.host.trim().is_empty() {
            return Err(invalid(
                "notifications.smtp.host",
                "is required when notifications.enabled is true",
            ));
        }
        positive("notifications.smtp.port", u64::from(self.smtp.port))?;
        positive("notifications.queue_size", self.queue_size as u64)?;
        if self.retries > 20 {
            return Err(invalid("notifications.retries", "must be at most 20"));
        }
        if self.smtp.timeout.is_zero() || self.webhook_timeout.is_zero() {
            return Err(invalid(
                "notifications.smtp.timeout",
                "and notifications.webhook_timeout must be above zero",
            ));
        }
        if self.smtp.password.is_some() != self.smtp.username.is_some() {
            return Err(invalid(
                "notifications.smtp.password",
                "and notifications.smtp.username go together",
            ));
        }
        if let Err(e) = hearth_notify::check_sender(&self.from) {
            return Err(invalid("notifications.from", e.to_string()));
        }
        Ok(())
    }

    fn smtp_config(&self) -> hearth_notify::SmtpConfig {
        hearth_notify::SmtpConfig {
            host: self.smtp.host.trim().to_owned(),
            port: self.smtp.port,
            tls: self.smtp.tls,
            username: self.smtp.username.clone(),
            password: self
                .smtp
                .password
                .as_ref()
                .map(|p| hearth_notify::SmtpPassword::new(p.expose())),
            timeout: self.smtp.timeout,
        }
    }

    /// The notifier to start, when enabled.
    fn resolve(&self) -> Option<crate::app::NotificationsConfig> {
        self.enabled.then(|| crate::app::NotificationsConfig {
            notifier: hearth_notify::NotifierConfig {
                from: self.from.clone(),
                queue_size: self.queue_size,
                retries: self.retries,
                backoff: self.retry_backoff,
                webhook_timeout: self.webhook_timeout,
                ..hearth_notify::NotifierConfig::default()
            },
            smtp: self.smtp_config(),
        })
    }
}

/// The reading writer's batching. Checked and printed, but the writer still
/// uses its built-in values (`ReadingWriter::MAX_BATCH`, `MAX_DELAY`) until
/// the use-case restructuring makes them parameters; a value other than the
/// built-in one is refused rather than silently ignored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Writer {
    pub batch_size: usize,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

impl Default for Writer {
    fn default() -> Self {
        Self {
            batch_size: hearth_domain::services::ReadingWriter::MAX_BATCH,
            max_delay: hearth_domain::services::ReadingWriter::MAX_DELAY,
        }
    }
}

/// How long readings are kept in the embedded store: raw readings and each
/// rollup level, `0s` for ever, whole days only (the engine drops whole day
/// or hour chunks). `tenants.<slug>` overrides any of them for one tenant;
/// a key it leaves out is the default's. InfluxDB ignores all of this: there
/// retention is the bucket's (2.x) or retention policy's (1.x) job. Audit
/// retention is not enforced yet, so only `audit = "0s"` is accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    #[serde(with = "humantime_serde")]
    pub raw: Duration,
    #[serde(with = "humantime_serde")]
    pub rollup_1m: Duration,
    #[serde(with = "humantime_serde")]
    pub rollup_15m: Duration,
    #[serde(with = "humantime_serde")]
    pub rollup_1h: Duration,
    #[serde(with = "humantime_serde")]
    pub rollup_1d: Duration,
    /// How often `serve` enforces it (and once at start).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub audit: Duration,
    pub tenants: BTreeMap<String, TenantHorizons>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw: Duration::ZERO,
            rollup_1m: Duration::ZERO,
            rollup_15m: Duration::ZERO,
            rollup_1h: Duration::ZERO,
            rollup_1d: Duration::ZERO,
            interval: Duration::from_secs(3_600),
            audit: Duration::ZERO,
            tenants: BTreeMap::new(),
        }
    }
}

/// Horizons of raw readings and of the 1 min, 15 min, 1 h and 1 day rollups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Horizons {
    raw: Duration,
    rollup_1m: Duration,
    rollup_15m: Duration,
    rollup_1h: Duration,
    rollup_1d: Duration,
}

/// One tenant's overrides; `None` keeps the default's horizon.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TenantHorizons {
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub raw: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub rollup_1m: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub rollup_15m: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub rollup_1h: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub rollup_1d: Option<Duration>,
}

impl TenantHorizons {
    fn over(&self, default: Horizons) -> Horizons {
        Horizons {
            raw: self.raw.unwrap_or(default.raw),
            rollup_1m: self.rollup_1m.unwrap_or(default.rollup_1m),
            rollup_15m: self.rollup_15m.unwrap_or(default.rollup_15m),
            rollup_1h: self.rollup_1h.unwrap_or(default.rollup_1h),
            rollup_1d: self.rollup_1d.unwrap_or(default.rollup_1d),
        }
    }
}

const DAY: u64 = 86_400;

/// Whole days, `None` for `0s` (for ever).
fn days(key: &str, value: Duration) -> Result<Option<u32>, String> {
    if value.is_zero() {
        return Ok(None);
    }
    if value.subsec_nanos() != 0 || !value.as_secs().is_multiple_of(DAY) {
        return Err(format!(
            "{key}: must be whole days (\"30d\") or \"0s\" for ever"
        ));
    }
    u32::try_from(value.as_secs() / DAY)
        .map(Some)
        .map_err(|_| format!("{key}: too long"))
}

impl Horizons {
    /// The engine's policy, or why these horizons are refused (the message
    /// names the key under `prefix`).
    fn policy(&self, prefix: &str) -> Result<hearth_embedded::RetentionPolicy, String> {
        let raw = days(&format!("{prefix}raw"), self.raw)?;
        let mut rollup_days = [None; 4];
        for (slot, (name, value)) in rollup_days.iter_mut().zip([
            ("rollup_1m", self.rollup_1m),
            ("rollup_15m", self.rollup_15m),
            ("rollup_1h", self.rollup_1h),
            ("rollup_1d", self.rollup_1d),
        ]) {
            let key = format!("{prefix}{name}");
            *slot = days(&key, value)?;
            // Rollups answer long ranges; one that goes before the raw data
            // it summarises leaves ranges with raw readings but no rollups.
            if let Some(rollup) = *slot {
                if raw.is_none_or(|raw| rollup < raw) {
                    return Err(format!(
                        "{key}: must not be shorter than {prefix}raw (0s, for ever, counts as longest)"
                    ));
                }
            }
        }
        Ok(hearth_embedded::RetentionPolicy {
            raw_days: raw,
            rollup_days,
        })
    }
}

/// Retention resolved for the engine; tenants still named by slug, which
/// the composition root turns into ids once the directory is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    pub default: hearth_embedded::RetentionPolicy,
    pub tenants: Vec<(String, hearth_embedded::RetentionPolicy)>,
    pub interval: Duration,
}

impl Retention {
    fn validate(&self) -> Result<(), ConfigError> {
        self.resolve().map(|_| ())
    }

    fn horizons(&self) -> Horizons {
        Horizons {
            raw: self.raw,
            rollup_1m: self.rollup_1m,
            rollup_15m: self.rollup_15m,
            rollup_1h: self.rollup_1h,
            rollup_1d: self.rollup_1d,
        }
    }

    fn resolve(&self) -> Result<RetentionConfig, ConfigError> {
        if !self.audit.is_zero() {
            return Err(invalid(
                "retention.audit",
                "is not enforced yet; only \"0s\" (keep everything) is accepted",
            ));
        }
        if self.interval < Duration::from_secs(60) {
            return Err(invalid("retention.interval", "must be at least 1m"));
        }
        let default = self
            .horizons()
            .policy("retention.")
            .map_err(|reason| invalid("retention", reason))?;
        let mut tenants = Vec::new();
        for (slug, horizons) in &self.tenants {
            let policy = horizons
                .over(self.horizons())
                .policy(&format!("retention.tenants.{slug}."))
                .map_err(|reason| invalid("retention.tenants", reason))?;
            tenants.push((slug.clone(), policy));
        }
        Ok(RetentionConfig {
            default,
            tenants,
            interval: self.interval,
        })
    }
}

/// One `HEARTH_*` variable as a figment provider, named so an error says
/// where a bad value came from.
struct EnvVar {
    key: String,
    value: figment::value::Value,
}

impl figment::Provider for EnvVar {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("HEARTH_* environment variables")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let nested = figment::util::nest(&self.key, self.value.clone());
        let dict = nested.into_dict().unwrap_or_default();
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// Command-line values that win over file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub demo: bool,
    pub sim_base_port: Option<u16>,
    /// `--database-url`: MySQL at this URL.
    pub database_url: Option<String>,
}

impl Settings {
    /// Defaults, then `file` (if any), then `HEARTH_*` variables from `env`
    /// (pairs, so tests need not touch the process environment), then
    /// `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(invalid(
                    "config",
                    format!("names {}, which is not a readable file", file.display()),
                ));
            }
            figment = figment.merge(Toml::file(file));
        }
        // Not figment's `Env` provider: it reads the process environment
        // itself, and tests pass theirs.
        for (name, value) in env {
            let Some(key) = name.strip_prefix("HEARTH_") else {
                continue;
            };
            let key = key.to_ascii_lowercase().replace("__", ".");
            let top = key.split('.').next().unwrap_or_default();
            if !ENV_KEYS.contains(&top) {
                continue;
            }
            let value: figment::value::Value = match value.parse() {
                Ok(value) => value,
                Err(never) => match never {},
            };
            figment = figment.merge(EnvVar { key, value });
        }
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        if let Some(listen) = overrides.listen {
            settings.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            settings.data_dir = dir.clone();
        }
        if overrides.demo {
            settings.demo = true;
        }
        if let Some(port) = overrides.sim_base_port {
            settings.sim_base_port = port;
        }
        if let Some(url) = &overrides.database_url {
            settings.stores.relational.adapter = RelationalAdapter::Mysql;
            settings.stores.relational.url = Some(Secret(url.clone()));
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value a type alone does not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rel = &self.stores.relational;
        match (rel.adapter, rel.url.as_ref().map(Secret::expose)) {
            (RelationalAdapter::Mysql, None) => {
                return Err(invalid(
                    "stores.relational.url",
                    "is required when stores.relational.adapter is \"mysql\"",
                ))
            }
            (RelationalAdapter::Mysql, Some(url)) if !url.starts_with("mysql://") => {
                return Err(invalid("stores.relational.url", "must be a mysql:// URL"))
            }
            (RelationalAdapter::Embedded, Some(_)) => {
                return Err(invalid(
                    "stores.relational.url",
                    "is only for adapter \"mysql\"; the embedded store lives in data_dir",
                ))
            }
            _ => {}
        }
        positive("stores.relational.pool_size", rel.pool_size as u64)?;
        let docs = &self.stores.documents;
        match (docs.adapter, docs.url.as_ref().map(Secret::expose)) {
            (DocumentsAdapter::Mongodb, None) => {
                return Err(invalid(
                    "stores.documents.url",
                    "is required when stores.documents.adapter is \"mongodb\"",
                ))
            }
            // No DNS resolver is built in, so no `mongodb+srv://`.
            (DocumentsAdapter::Mongodb, Some(url)) if !url.starts_with("mongodb://") => {
                return Err(invalid(
                    "stores.documents.url",
                    "must be a mongodb:// URL (mongodb+srv:// is not supported)",
                ))
            }
            (DocumentsAdapter::Embedded, Some(_)) => {
                return Err(invalid(
                    "stores.documents.url",
                    "is only for adapter \"mongodb\"; the embedded store lives in data_dir",
                ))
            }
            _ => {}
        }
        // MongoDB's rules for database names.
        if docs.database.is_empty()
            || docs.database.len() > 63
            || docs.database.contains([
                '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
            ])
        {
            return Err(invalid(
                "stores.documents.database",
                "must be 1 to 63 characters without /\\. \"$*<>:|?",
            ));
        }
        self.stores.readings.validate()?;
        self.notifications.validate()?;
        if self.auth.token_secret.is_some() && self.auth.token_secret_file.is_some() {
            return Err(invalid(
                "auth.token_secret_file",
                "cannot be set together with auth.token_secret",
            ));
        }
        if let Some(secret) = &self.auth.token_secret {
            if secret.expose().len() < hearth_auth::MIN_SECRET_LEN {
                return Err(invalid(
                    "auth.token_secret",
                    format!("must be at least {} bytes", hearth_auth::MIN_SECRET_LEN),
                ));
            }
        }
        // Slugs, URLs (TLS off loopback), leeway and duplicates: checked
        // by building the verifier, which makes no request yet.
        if let Err(e) = hearth_auth::OidcVerifier::new(self.auth.oidc.clone()) {
            return Err(invalid("auth.oidc", e.to_string()));
        }
        at_least("auth.token_lifetime", self.auth.token_lifetime, 60)?;
        if self.auth.token_lifetime > Duration::from_secs(30 * 24 * 3600) {
            return Err(invalid("auth.token_lifetime", "must be at most 30 days"));
        }
        // argon2's own bounds: at least one pass and one lane, and 8 KiB
        // of memory per lane.
        positive(
            "auth.argon2_iterations",
            u64::from(self.auth.argon2_iterations),
        )?;
        positive(
            "auth.argon2_parallelism",
            u64::from(self.auth.argon2_parallelism),
        )?;
        if u64::from(self.auth.argon2_memory_kib) < 8 * u64::from(self.auth.argon2_parallelism) {
            return Err(invalid(
                "auth.argon2_memory_kib",
                "must be at least 8 KiB per lane (8 × auth.argon2_parallelism)",
            ));
        }
        let l = &self.login;
        positive("login.max_tracked", l.max_tracked as u64)?;
        positive("login.hashing_permits", l.hashing_permits as u64)?;
        if l.max_lockout < l.first_lockout {
            return Err(invalid(
                "login.max_lockout",
                "must not be shorter than login.first_lockout",
            ));
        }
        let h = &self.http;
        for (key, value) in [
            ("http.max_body_bytes", h.max_body_bytes as u64),
            (
                "http.max_query_string_bytes",
                h.max_query_string_bytes as u64,
            ),
            ("http.max_query_bytes", h.max_query_bytes as u64),
            ("http.max_tokens", h.max_tokens as u64),
            ("http.max_nesting", h.max_nesting as u64),
            ("http.max_expanded_fields", h.max_expanded_fields),
            ("http.max_aliases", h.max_aliases),
            ("http.max_root_fields", h.max_root_fields),
            ("http.max_directives", h.max_directives),
        ] {
            positive(key, value)?;
        }
        for origin in &h.cors_origins {
            let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.trim_end_matches('/').contains(['*', ' '])
                && axum::http::HeaderValue::from_str(origin).is_ok();
            if !ok {
                return Err(invalid(
                    "http.cors_origins",
                    format!(
                        "holds {}, which is no origin (scheme://host[:port], no wildcards)",
                        hearth_domain::error::quoted(origin)
                    ),
                ));
            }
        }
        let w = &self.ws;
        for (key, value) in [
            ("ws.max_message_bytes", w.max_message_bytes),
            ("ws.max_subscriptions", w.max_subscriptions),
            ("ws.max_connections_per_user", w.max_connections_per_user),
            ("ws.max_pending_handshakes", w.max_pending_handshakes),
            ("ws.max_id_len", w.max_id_len),
        ] {
            positive(key, value as u64)?;
        }
        for (key, value) in [
            ("ws.init_timeout", w.init_timeout),
            ("ws.keepalive_interval", w.keepalive_interval),
            ("ws.peer_timeout", w.peer_timeout),
            ("ws.session_check_interval", w.session_check_interval),
            ("modbus.connect_timeout", self.modbus.connect_timeout),
            ("modbus.request_timeout", self.modbus.request_timeout),
            ("modbus.idle_timeout", self.modbus.idle_timeout),
            ("modbus.backoff_cap", self.modbus.backoff_cap),
            ("modbus.replan_every", self.modbus.replan_every),
        ] {
            at_least_ms(key, value)?;
        }
        if w.peer_timeout <= w.keepalive_interval {
            return Err(invalid(
                "ws.peer_timeout",
                "must be longer than ws.keepalive_interval",
            ));
        }
        positive("bus.capacity", self.bus.capacity as u64)?;
        let built_in = Writer::default();
        if self.writer != built_in {
            return Err(invalid(
                "writer",
                format!(
                    "cannot be changed yet (batch_size = {}, max_delay = {:?} are built in)",
                    built_in.batch_size, built_in.max_delay
                ),
            ));
        }
        self.retention.validate()
    }

    fn argon2_cost(&self) -> Argon2Cost {
        Argon2Cost {
            memory_kib: self.auth.argon2_memory_kib,
            iterations: self.auth.argon2_iterations,
            parallelism: self.auth.argon2_parallelism,
        }
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self)
            .map_err(|e| invalid("config", format!("cannot be printed: {e}")))
    }

    /// The runtime configuration the composition root builds from.
    pub fn resolve(&self) -> Config {
        let h = &self.http;
        let m = &self.modbus;
        let l = &self.login;
        let w = &self.ws;
        Config {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            database_url: match self.stores.relational.adapter {
                RelationalAdapter::Embedded => None,
                RelationalAdapter::Mysql => self
                    .stores
                    .relational
                    .url
                    .as_ref()
                    .map(|u| u.expose().to_owned()),
            },
            pool_size: self.stores.relational.pool_size,
            migrate_on_start: self.stores.relational.migrate_on_start,
            documents: match (&self.stores.documents.adapter, &self.stores.documents.url) {
                (DocumentsAdapter::Mongodb, Some(url)) => crate::app::DocumentsConfig::Mongodb {
                    url: url.expose().to_owned(),
                    database: self.stores.documents.database.clone(),
                },
                // validate() refuses mongodb without a URL.
                _ => crate::app::DocumentsConfig::Embedded,
            },
            influxdb: self.stores.readings.influxdb(),
            influxdb_spool_bytes: self.stores.readings.spool_max_bytes,
            influxdb_create_database: self.stores.readings.create_database,
            demo: self.demo,
            sim_base_port: self.sim_base_port,
            ws: WsLimits {
                max_message_bytes: w.max_message_bytes,
                init_timeout: w.init_timeout,
                keepalive_interval: w.keepalive_interval,
                peer_timeout: w.peer_timeout,
                max_subscriptions: w.max_subscriptions,
                max_connections_per_user: w.max_connections_per_user,
                max_pending_handshakes: w.max_pending_handshakes,
                max_id_len: w.max_id_len,
                session_check_interval: w.session_check_interval,
            },
            login: LoginLimits {
                account_free_failures: l.account_free_failures,
                address_free_failures: l.address_free_failures,
                first_lockout: l.first_lockout,
                max_lockout: l.max_lockout,
                forget_after: l.forget_after,
                max_tracked: l.max_tracked,
                hashing_permits: l.hashing_permits,
                max_waiting_logins: l.max_waiting_logins,
            },
            http: HttpOptions {
                limits: HttpLimits {
                    max_body_bytes: h.max_body_bytes,
                    max_query_string_bytes: h.max_query_string_bytes,
                },
                query: QueryLimits {
                    max_query_bytes: h.max_query_bytes,
                    max_tokens: h.max_tokens,
                    max_nesting: h.max_nesting,
                    max_expanded_fields: h.max_expanded_fields,
                    max_aliases: h.max_aliases,
                    max_root_fields: h.max_root_fields,
                    max_directives: h.max_directives,
                },
                graphiql: h.graphiql,
                cors_origins: h.cors_origins.clone(),
            },
            token_secret: match (&self.auth.token_secret, &self.auth.token_secret_file) {
                (Some(secret), _) => {
                    crate::app::TokenSecret::Value(secret.expose().as_bytes().to_vec())
                }
                (None, Some(file)) => crate::app::TokenSecret::File(file.clone()),
                (None, None) => crate::app::TokenSecret::InDataDir,
            },
            token_lifetime: self.auth.token_lifetime,
            oidc: self.auth.oidc.clone(),
            two_factor_key_file: self.auth.two_factor_key_file.clone(),
            argon2: self.argon2_cost(),
            gateway: GatewayConfig {
                connect_timeout: m.connect_timeout,
                request_timeout: m.request_timeout,
                idle_timeout: m.idle_timeout,
                max_gap: m.max_gap,
                replan_every: m.replan_every,
            },
            poller: PollerConfig {
                max_start_offset: m.max_start_offset,
                backoff_cap: m.backoff_cap,
                reload_every: (!m.reload_every.is_zero()).then_some(m.reload_every),
            },
            alarm_evaluation: hearth_domain::services::AlarmEvaluatorConfig::default(),
            bus_capacity: self.bus.capacity,
            // Validated at load; an unchecked `Settings` keeps everything.
            retention: self.retention.resolve().unwrap_or_default(),
            notifications: self.notifications.resolve(),
        }
    }
}

fn positive(key: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(())
}

fn at_least(key: &'static str, value: Duration, secs: u64) -> Result<(), ConfigError> {
    if value < Duration::from_secs(secs) {
        return Err(invalid(key, format!("must be at least {secs} s")));
    }
    Ok(())
}

fn at_least_ms(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value < Duration::from_millis(1) {
        return Err(invalid(key, "must be at least 1ms"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_toml(text: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| invalid("config", e.to_string()))?;
        let file = dir.path().join("hearth.toml");
        std::fs::write(&file, text).map_err(|e| invalid("config", e.to_string()))?;
        Settings::load(Some(&file), env(vars), &Overrides::default())
    }

    #[test]
    fn file_then_environment_then_flags() {
        // Given a file, environment variables and a flag that overlap
        let file = "listen = \"127.0.0.1:9000\"\n[http]\nmax_body_bytes = 2048\ngraphiql = false\n[ws]\ninit_timeout = \"3s\"\n";
        let vars = [
            ("HEARTH_HTTP__MAX_BODY_BYTES", "4096"),
            ("HEARTH_MONGODB_URL", "mongodb://elsewhere"),
            ("HEARTH_AUTH__TOKEN_LIFETIME", "2h"),
        ];
        let dir = tempfile::tempdir().map_err(|e| invalid("config", e.to_string()));
        let path = dir.as_ref().map(|d| d.path().join("h.toml")).ok();
        let written = path.as_ref().map(|p| std::fs::write(p, file));
        assert!(matches!(written, Some(Ok(()))));
        let overrides = Overrides {
            listen: "127.0.0.1:9100".parse().ok(),
            ..Overrides::default()
        };
        // When they are loaded
        let settings = Settings::load(path.as_deref(), env(&vars), &overrides);
        // Then the environment wins over the file and the flag over both;
        // unrelated HEARTH_* variables are ignored
        let settings = match settings {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(settings.listen.port(), 9100);
        assert_eq!(settings.http.max_body_bytes, 4096);
        assert!(!settings.http.graphiql);
        assert_eq!(settings.ws.init_timeout, Duration::from_secs(3));
        assert_eq!(settings.auth.token_lifetime, Duration::from_secs(7200));
        let config = settings.resolve();
        assert_eq!(config.http.limits.max_body_bytes, 4096);
        assert_eq!(config.ws.init_timeout, Duration::from_secs(3));
    }

    #[test]
    fn bad_values_fail_naming_their_key() {
        for (text, vars, key) in [
            (
                "[stores.relational]\nadapter = \"postgres\"\n",
                vec![],
                "stores.relational.adapter",
            ),
            (
                "[stores.documents]\nadapter = \"couchdb\"\n",
                vec![],
                "stores.documents.adapter",
            ),
            (
                "[stores.documents]\nadapter = \"mongodb\"\n",
                vec![],
                "stores.documents.url",
            ),
            (
                "[stores.documents]\nadapter = \"mongodb\"\nurl = \"http://db:27017\"\n",
                vec![],
                "stores.documents.url",
            ),
            (
                "[stores.documents]\nurl = \"mongodb://db:27017\"\n",
                vec![],
                "stores.documents.url",
            ),
            (
                "[stores.documents]\nadapter = \"mongodb\"\nurl = \"mongodb://db\"\ndatabase = \"a.b\"\n",
                vec![],
                "stores.documents.database",
            ),
            (
                "[http]\nmax_body_bytes = 0\n",
                vec![],
                "http.max_body_bytes",
            ),
            ("[http]\nmax_bodybytes = 10\n", vec![], "max_bodybytes"),
            ("[ws]\ninit_timeout = \"soon\"\n", vec![], "ws.init_timeout"),
            (
                "[stores.relational]\nadapter = \"mysql\"\n",
                vec![],
                "stores.relational.url",
            ),
            (
                "",
                vec![("HEARTH_AUTH__TOKEN_SECRET", "short")],
                "auth.token_secret",
            ),
            (
                "",
                vec![("HEARTH_HTTP__CORS_ORIGINS", "[\"*\"]")],
                "http.cors_origins",
            ),
            (
                "[auth]\nargon2_memory_kib = 1\n",
                vec![],
                "auth.argon2_memory_kib",
            ),
            (
                "[[auth.oidc]]\ntenant = \"acme\"\nissuer = \"http://idp.example\"\naudience = \"hearth\"\n",
                vec![],
                "auth.oidc",
            ),
            (
                "[[auth.oidc]]\ntenant = \"acme\"\nissuer = \"https://idp.example\"\n",
                vec![],
                "audience",
            ),
            ("[retention]\nreadings = \"30d\"\n", vec![], "readings"),
            ("[retention]\nraw = \"-30d\"\n", vec![], "retention.raw"),
            ("[retention]\nraw = \"36h\"\n", vec![], "retention.raw"),
            (
                "[retention]\nraw = \"30d\"\nrollup_1h = \"7d\"\n",
                vec![],
                "retention.rollup_1h",
            ),
            (
                "[retention.tenants.acme]\nraw = \"30d\"\nrollup_1d = \"10d\"\n",
                vec![],
                "retention.tenants.acme.rollup_1d",
            ),
            (
                "[retention.tenants.acme]\nhourly = \"30d\"\n",
                vec![],
                "hourly",
            ),
            ("[retention]\naudit = \"30d\"\n", vec![], "retention.audit"),
            ("[writer]\nbatch_size = 10\n", vec![], "writer"),
        ] {
            // Given a configuration with one bad key
            // When it is loaded
            let result = load_toml(text, &vars);
            // Then loading fails and the message names the key
            let message = match result {
                Ok(_) => panic!("{text} {vars:?} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(message.contains(key), "{key}: {message}");
        }
    }

    #[test]
    fn oidc_providers_are_read_per_tenant_with_defaults() {
        // Given two tenants' providers, one with its own JWKS URL and leeway
        let settings = load_toml(
            "[[auth.oidc]]\ntenant = \"acme\"\nissuer = \"https://login.acme.example\"\n\
             audience = \"hearth\"\n\
             [[auth.oidc]]\ntenant = \"globex\"\nissuer = \"https://idp.globex.example/\"\n\
             audience = \"hearth-globex\"\njwks_uri = \"https://idp.globex.example/keys\"\n\
             leeway_secs = 10\n",
            &[],
        );
        // When they are resolved
        let config = match settings {
            Ok(s) => s.resolve(),
            Err(e) => panic!("{e}"),
        };
        // Then both arrive, defaults filled in where not given
        assert_eq!(config.oidc.len(), 2);
        assert_eq!(config.oidc[0].tenant, "acme");
        assert_eq!(config.oidc[0].leeway_secs, 60);
        assert_eq!(config.oidc[0].jwks_refresh_secs, 30);
        assert_eq!(config.oidc[0].jwks_uri, None);
        assert_eq!(
            config.oidc[1].jwks_uri.as_deref(),
            Some("https://idp.globex.example/keys")
        );
        assert_eq!(config.oidc[1].leeway_secs, 10);
    }

    #[test]
    fn influxdb_is_chosen_by_config_and_bad_keys_are_named() {
        // Given InfluxDB settings with a token, read through InfluxQL
        let settings = load_toml(
            "[stores.readings]\nadapter = \"influxdb\"\nurl = \"http://influx:8086\"\n\
             bucket = \"hearth/autogen\"\ntoken = \"hunter3-token\"\nquery_language = \"influxql\"\n",
            &[],
        );
        let settings = match settings {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        // Then the runtime config carries them to the composition root
        let influx = settings.resolve().influxdb;
        assert!(
            matches!(&influx, Some(c) if c.bucket == "hearth/autogen"
                && c.query_language == QueryLanguage::InfluxQl
                && c.token.is_some()),
            "{influx:?}"
        );
        // And the printed config masks the token
        let printed = settings.to_toml().unwrap_or_default();
        assert!(printed.contains("adapter = \"influxdb\""), "{printed}");
        assert!(!printed.contains("hunter3"), "{printed}");
        // And the default stays embedded
        assert!(Settings::default().resolve().influxdb.is_none());

        for (text, key) in [
            ("adapter = \"timescale\"\n", "stores.readings.adapter"),
            ("adapter = \"influxdb\"\n", "stores.readings.url"),
            ("adapter = \"influxdb\"\nurl = \"influx:8086\"\nbucket = \"b\"\n", "stores.readings.url"),
            ("adapter = \"influxdb\"\nurl = \"http://influx:8086\"\n", "stores.readings.bucket"),
            (
                "adapter = \"influxdb\"\nurl = \"http://h\"\nbucket = \"b\"\nquery_language = \"sql\"\n",
                "query_language",
            ),
            (
                "adapter = \"influxdb\"\nurl = \"http://h\"\nbucket = \"b\"\ntimeout = \"0s\"\n",
                "stores.readings.timeout",
            ),
            ("url = \"http://influx:8086\"\n", "stores.readings.url"),
            ("token = \"t\"\n", "stores.readings.token"),
        ] {
            // Given one bad [stores.readings] key
            let text = format!("[stores.readings]\n{text}");
            // Then loading fails naming it
            let message = match load_toml(&text, &[]) {
                Ok(_) => panic!("{text} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(message.contains(key), "{key}: {message}");
        }
    }

    #[tokio::test]
    async fn retention_by_tenant_slug_drops_old_chunks_and_keeps_new_ones() {
        use chrono::{Duration as Span, TimeZone, Utc};
        use hearth_domain::model::{Aggregate, HistoryQuery, Quality, Reading, Tenant, TenantSlug};
        use hearth_domain::ports::ReadingStore;
        use hearth_domain::{DeviceId, PointKey, SystemPrincipal, TenantId};

        // Given a config that keeps raw readings for ever except acme's,
        // kept for two days, printed and read back by `hearth config`
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let text = format!(
            "data_dir = {:?}\n[retention]\nrollup_1d = \"0s\"\n[retention.tenants.acme]\nraw = \"2d\"\n",
            dir.path().display().to_string()
        );
        let settings = load_toml(&text, &[]).expect("valid retention");
        let printed = settings.to_toml().expect("printable");
        assert!(printed.contains("[retention.tenants.acme]"), "{printed}");
        let config = load_toml(&printed, &[]).expect("reads back").resolve();
        // And the composition root's stores with acme and another tenant
        let (services, _, _, store) = crate::app::build_with_store(&config).await.expect("built");
        let store = store.expect("the embedded reading store");
        let system = SystemPrincipal::provisioner();
        let mut series = Vec::new();
        for slug in ["acme", "other"] {
            let tenant = Tenant {
                id: TenantId::new(),
                slug: TenantSlug::new(slug).expect("valid slug"),
                name: slug.into(),
            };
            services
                .provisioning
                .create_tenant(&system, &tenant)
                .await
                .expect("tenant created");
            series.push((tenant.id, DeviceId::new()));
        }
        // And ten days of hourly readings for each
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date");
        let point = PointKey::new("flow").expect("valid key");
        for (tenant, device) in &series {
            let batch: Vec<Reading> = (0..240)
                .map(|h| Reading {
                    tenant_id: *tenant,
                    device_id: *device,
                    point: point.clone(),
                    timestamp: start + Span::seconds(h * 3_600 + 30),
                    value: h as f64,
                    quality: Quality::Good,
                })
                .collect();
            store.append(&batch).await.expect("appended");
        }

        // When the slugs are resolved as at start and retention runs at the
        // end of the tenth day (the engine's clock seam: `now` is given)
        let retention = crate::app::resolve_retention(&services, &config.retention)
            .await
            .expect("slugs resolve");
        store.set_retention(retention);
        let now = start + Span::days(10);
        let dropped = store.enforce_retention(now).await.expect("enforced");

        // Then acme keeps two days of raw readings, the other tenant all ten
        assert!(dropped > 0, "old chunks were dropped");
        let mut kept = Vec::new();
        for (tenant, device) in &series {
            let query = HistoryQuery::new(
                *tenant,
                *device,
                point.clone(),
                start + Span::seconds(1),
                now,
                86_400,
                Aggregate::Count,
            )
            .expect("valid query");
            let buckets = store.history(&query).await.expect("history");
            kept.push(buckets.iter().map(|b| b.value).sum::<f64>());
        }
        assert_eq!(kept, vec![48.0, 240.0]);

        // And a slug no tenant has refuses the start, naming the key
        let unknown = load_toml(
            &format!(
                "data_dir = {:?}\n[retention.tenants.nobody]\nraw = \"2d\"\n",
                dir.path().display().to_string()
            ),
            &[],
        )
        .expect("valid shape")
        .resolve();
        let refused = crate::app::resolve_retention(&services, &unknown.retention)
            .await
            .err()
            .map(|e| format!("{e:#}"));
        assert!(
            refused
                .as_deref()
                .is_some_and(|m| m.contains("retention.tenants.nobody")),
            "{refused:?}"
        );
    }

    #[test]
    fn every_key_is_documented_in_the_readme() {
        // Given the README and every key of the printed defaults
        let readme = include_str!("../../README.md");
        let printed = match Settings::default().to_toml() {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        // Then each section and each key appears in the README's example
        for line in printed.lines().filter(|l| !l.trim().is_empty()) {
            let key = line.split(" =").next().unwrap_or(line).trim();
            assert!(readme.contains(key), "README.md does not document {key}");
        }
        for key in ["token_secret", "token_secret_file", "url = "] {
            assert!(readme.contains(key), "README.md does not document {key}");
        }
    }

    #[test]
    fn the_printed_config_masks_secrets_and_reads_back() {
        // Given a configuration with a token secret and database passwords
        let secret = "s".repeat(64);
        let settings = load_toml(
            "[stores.relational]\nadapter = \"mysql\"\nurl = \"mysql://hearth:hunter2@db:3306/hearth\"\n\
             [stores.documents]\nadapter = \"mongodb\"\nurl = \"mongodb://hearth:swordfish@docs:27017\"\n",
            &[("HEARTH_AUTH__TOKEN_SECRET", secret.as_str())],
        );
        let settings = match settings {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        // When it is printed
        let printed = match settings.to_toml() {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        // Then neither secret appears, and the rest is there as TOML
        assert!(!printed.contains(&secret), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("swordfish"), "{printed}");
        assert!(printed.contains("adapter = \"mongodb\""), "{printed}");
        assert!(printed.contains("[stores.relational]"), "{printed}");
        assert!(printed.contains("adapter = \"mysql\""), "{printed}");
        let back: Result<toml::Value, _> = toml::from_str(&printed);
        assert!(back.is_ok(), "{printed}");
    }

    #[test]
    fn notifications_resolve_to_the_notifier_and_mask_the_smtp_password() {
        // Given notifications on, with an SMTP password from the environment
        let settings = load_toml(
            "[notifications]\nenabled = true\nfrom = \"Hearth <alarms@acme.example>\"\nretries = 5\n\
             [notifications.smtp]\nhost = \"smtp.acme.example\"\nport = 465\ntls = \"tls\"\n\
             username = \"hearth\"\n",
            &[("HEARTH_NOTIFICATIONS__SMTP__PASSWORD", "hunter4-smtp")],
        );
        let settings = match settings {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        // When resolved and printed
        let config = settings.resolve();
        let printed = match settings.to_toml() {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        // Then the notifier gets them, and the password shows nowhere
        let Some(n) = config.notifications.as_ref() else {
            panic!("notifications enabled but not resolved")
        };
        assert_eq!(n.smtp.host, "smtp.acme.example");
        assert_eq!(
            (n.smtp.port, n.smtp.tls),
            (465, hearth_notify::SmtpTls::Tls)
        );
        assert_eq!(n.notifier.retries, 5);
        assert_eq!(
            n.smtp.password.as_ref().map(|p| p.expose()),
            Some("hunter4-smtp")
        );
        assert!(!printed.contains("hunter4"), "{printed}");
        assert!(!format!("{config:?}").contains("hunter4"));
        assert!(!format!("{settings:?}").contains("hunter4"));
        // And off (the default) there is no notifier
        assert!(Settings::default().resolve().notifications.is_none());
    }

    #[test]
    fn enabled_notifications_need_a_host_and_a_valid_sender() {
        for (text, key) in [
            ("[notifications]\nenabled = true\n", "notifications.smtp.host"),
            (
                "[notifications]\nenabled = true\nfrom = \"not an address\"\n[notifications.smtp]\nhost = \"h\"\n",
                "notifications.from",
            ),
            (
                "[notifications]\nenabled = true\n[notifications.smtp]\nhost = \"h\"\npassword = \"p\"\n",
                "notifications.smtp.password",
            ),
            (
                "[notifications.smtp]\ntls = \"ssl\"\n",
                "notifications.smtp.tls",
            ),
        ] {
            match load_toml(text, &[]) {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => assert!(e.to_string().contains(key), "{key}: {e}"),
            }
        }
    }
}
