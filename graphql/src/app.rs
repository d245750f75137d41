//! Composition root: builds the adapters chosen by config, the use cases on
//! top of them, and starts the server (and the demo plant).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use hearth_auth::{
    load_or_create_secret, Argon2Cost, Argon2Hasher, JwtTokens, OidcVerifier, OsoAuthorizer,
};
use hearth_domain::ports::{
    AlarmNotifier, AlarmRuleStore, Directory, DocumentStore, NoNotifications,
    NotificationFailureLog, ReadingStore,
};
use hearth_domain::services::{
    Adapters, AlarmAdapters, AlarmEvaluatorConfig, AlarmEvaluatorHandle, LoginLimits, Poller,
    PollerConfig, PollerHandle, Services,
};
use hearth_domain::SystemPrincipal;
use hearth_embedded::{
    EmbeddedAlarmRules, EmbeddedDocuments, EmbeddedReadings, Retention, RetentionPolicy,
};
use hearth_influxdb::InfluxReadings;
use hearth_inproc::bus::InProcessBus;
use hearth_modbus::{GatewayConfig, ModbusGateway, Simulator};
use hearth_mongodb::MongoDocuments;
use hearth_sql::SqlDirectory;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api;
use crate::readiness::Readiness;

/// What the composition root builds from: [`crate::config::Settings`]
/// resolved into the adapters' own types. [`Default`] is the defaults of
/// every key.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// MySQL URL; the embedded SQLite under `data_dir` when absent.
    pub database_url: Option<String>,
    /// Most connections to a server database.
    pub pool_size: u32,
    /// Apply pending relational migrations at start (else refuse to start
    /// when some are pending).
    pub migrate_on_start: bool,
    /// Where device profiles live.
    pub documents: DocumentsConfig,
    /// InfluxDB for readings; the embedded store under `data_dir` when absent.
    pub influxdb: Option<hearth_influxdb::InfluxConfig>,
    /// Bound of InfluxDB's outage spool in `data_dir/influxdb-spool`; 0: none.
    pub influxdb_spool_bytes: u64,
    /// On InfluxDB 1.x, create the database at start when missing.
    pub influxdb_create_database: bool,
    pub demo: bool,
    /// 0: the demo's simulated controllers take any free ports.
    pub sim_base_port: u16,
    /// WebSocket limits (handshake deadline, keepalive, subscriptions).
    pub ws: crate::ws::WsLimits,
    /// Login throttling and password hashing limits.
    pub login: LoginLimits,
    /// HTTP limits, query limits, GraphiQL, CORS.
    pub http: crate::server::HttpOptions,
    pub token_secret: TokenSecret,
    /// How long a login token is valid.
    pub token_lifetime: std::time::Duration,
    /// Tenants' OIDC providers; empty: only Hearth's own tokens.
    pub oidc: Vec<hearth_auth::OidcProviderConfig>,
    /// The key sealing two-factor secrets; `None`: `data_dir/two-factor.key`.
    pub two_factor_key_file: Option<PathBuf>,
    pub argon2: Argon2Cost,
    pub gateway: GatewayConfig,
    pub poller: PollerConfig,
    /// Alarm evaluation's tick and device reload period.
    pub alarm_evaluation: AlarmEvaluatorConfig,
    /// Live events buffered per subscriber.
    pub bus_capacity: usize,
    /// Retention of the embedded reading store (InfluxDB keeps its own).
    pub retention: crate::config::RetentionConfig,
    /// Alarm mail and webhooks; `None`: notices are dropped (NoNotifications).
    pub notifications: Option<NotificationsConfig>,
}

/// The notifier to start (`[notifications]` with `enabled = true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationsConfig {
    pub notifier: hearth_notify::NotifierConfig,
    pub smtp: hearth_notify::SmtpConfig,
}

impl Default for Config {
    fn default() -> Self {
        crate::config::Settings::default().resolve()
    }
}

/// The document store to build.
#[derive(Clone, PartialEq, Eq)]
pub enum DocumentsConfig {
    /// redb under `data_dir`.
    Embedded,
    /// A MongoDB database; the URL may hold a password.
    Mongodb { url: String, database: String },
}

impl std::fmt::Debug for DocumentsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocumentsConfig::Embedded => f.write_str("Embedded"),
            DocumentsConfig::Mongodb { database, .. } => f
                .debug_struct("Mongodb")
                .field("url", &"***")
                .field("database", database)
                .finish(),
        }
    }
}

/// Where the token signing secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSecret {
    /// Given in the configuration.
    Value(Vec<u8>),
    /// Read from this file.
    File(PathBuf),
    /// `token.secret` in the data directory, created on first start.
    InDataDir,
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSecret::Value(_) => f.write_str("Value(***)"),
            TokenSecret::File(path) => f.debug_tuple("File").field(path).finish(),
            TokenSecret::InDataDir => f.write_str("InDataDir"),
        }
    }
}

impl TokenSecret {
    fn load(&self, data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
        let secret = match self {
            TokenSecret::Value(secret) => secret.clone(),
            TokenSecret::File(path) => {
                let mut secret = std::fs::read(path).with_context(|| {
                    format!("auth.token_secret_file: cannot read {}", path.display())
                })?;
                // A file written by an editor or `echo` ends in a newline
                // that is no part of the secret.
                while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    secret.pop();
                }
                secret
            }
            TokenSecret::InDataDir => {
                load_or_create_secret(data_dir).context("cannot read or create the token secret")?
            }
        };
        anyhow::ensure!(
            secret.len() >= hearth_auth::MIN_SECRET_LEN,
            "auth.token_secret: must be at least {} bytes",
            hearth_auth::MIN_SECRET_LEN
        );
        Ok(secret)
    }
}

/// A started server, with what it started.
pub struct Running {
    pub address: SocketAddr,
    pub services: Services,
    pub simulator: Option<Simulator>,
    poller: Option<PollerHandle>,
    evaluator: Option<AlarmEvaluatorHandle>,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    retention: Option<JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(poller) = self.poller.take() {
            poller.stop().await;
        }
        if let Some(evaluator) = self.evaluator.take() {
            evaluator.stop().await;
        }
        if let Some(task) = self.retention.take() {
            task.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        // Persist what is queued and release the stores, so the same data
        // directory can be opened again at once.
        self.services.ingest.reading_writer().shutdown().await;
        if let Some(mut sim) = self.simulator.take() {
            sim.stop();
        }
    }

    /// Write requests the demo's simulated controllers received, in total.
    pub fn simulated_write_requests(&self) -> u64 {
        self.simulator
            .as_ref()
            .map(|s| s.devices().iter().map(|d| d.handle.write_requests()).sum())
            .unwrap_or(0)
    }
}

/// Builds every adapter and the application from config.
pub async fn build(config: &Config) -> anyhow::Result<(Services, Arc<ModbusGateway>, Readiness)> {
    let (services, gateway, readiness, _) = build_with_store(config).await?;
    Ok((services, gateway, readiness))
}

/// [`build`], and the embedded reading store when it is the one chosen, for
/// the retention task.
pub(crate) async fn build_with_store(
    config: &Config,
) -> anyhow::Result<(
    Services,
    Arc<ModbusGateway>,
    Readiness,
    Option<EmbeddedReadings>,
)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let (sql, relational_adapter) = open_sql(config).await?;
    let directory: Arc<dyn Directory> = Arc::new(sql.clone());
    // Dead letters live in the relational store, listed whether or not
    // notifications are on (an admin may look after turning them off).
    let failures: Arc<dyn NotificationFailureLog> = Arc::new(sql.clone());
    let mut mongo = None;
    let documents: Arc<dyn DocumentStore> = match &config.documents {
        DocumentsConfig::Embedded => Arc::new(
            EmbeddedDocuments::open(&config.data_dir).context("cannot open the document store")?,
        ),
        DocumentsConfig::Mongodb { url, database } => {
            let store = MongoDocuments::connect(url, database)
                .await
                .context("stores.documents.url: cannot open the MongoDB document store")?;
            mongo = Some(store.clone());
            Arc::new(store)
        }
    };
    let mut influx_store = None;
    let mut embedded_readings = None;
    let readings: Arc<dyn ReadingStore> = match &config.influxdb {
        Some(influx) => {
            let store = match config.influxdb_spool_bytes {
                0 => InfluxReadings::new(influx.clone()),
                bound => InfluxReadings::with_spool(
                    influx.clone(),
                    &config.data_dir.join("influxdb-spool"),
                    bound,
                ),
            }
            .context("stores.readings: cannot set up InfluxDB")?;
            if config.influxdb_create_database {
                // Not fatal: InfluxDB may still be starting, and the spool
                // keeps readings until it answers.
                match store.ensure_database().await {
                    Ok(Some(database)) => {
                        tracing::info!(%database, "InfluxDB 1.x database ready.");
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "Could not make sure the InfluxDB database exists.");
                    }
                }
            }
            influx_store = Some(store.clone());
            Arc::new(store)
        }
        None => {
            let store = EmbeddedReadings::open(&config.data_dir)
                .context("cannot open the reading store")?;
            embedded_readings = Some(store.clone());
            Arc::new(store)
        }
    };
    // Alarm rules are documents (MongoDB when the documents are, else
    // embedded), alarms are relational rows next to the directory's.
    let alarm_rules: Arc<dyn AlarmRuleStore> = match mongodb_alarm_rules(mongo.as_ref()) {
        Some(store) => store,
        None => Arc::new(
            EmbeddedAlarmRules::open(&config.data_dir)
                .context("cannot open the alarm rule store")?,
        ),
    };
    let notifier = build_notifier(config.notifications.as_ref(), failures.clone())?;
    let alarm_adapters = AlarmAdapters {
        rules: alarm_rules,
        alarms: Arc::new(sql.clone()),
        notifier: notifier.clone(),
    };
    let readiness = Readiness::new((relational_adapter, sql), mongo, influx_store);
    let gateway = Arc::new(ModbusGateway::new(config.gateway.clone()));
    let secret = config.token_secret.load(&config.data_dir)?;
    let token_lifetime = chrono::Duration::from_std(config.token_lifetime)
        .context("auth.token_lifetime: out of range")?;
    // The in-process bus knows its own subscriptions: it is also who
    // watches which device.
    let bus = Arc::new(InProcessBus::with_capacity(config.bus_capacity));
    let adapters = Adapters {
        directory,
        documents,
        readings,
        live: bus.clone(),
        watch: bus,
        field: gateway.clone(),
        authorizer: Arc::new(OsoAuthorizer::new().context("cannot load the access policy")?),
        passwords: Arc::new(
            Argon2Hasher::with_cost(config.argon2)
                .context("auth.argon2_memory_kib, argon2_iterations, argon2_parallelism: cannot set up password hashing")?,
        ),
        tokens: Arc::new(
            JwtTokens::new(&secret, token_lifetime).context("auth.token_secret: invalid")?,
        ),
    };
    let key_path = config
        .two_factor_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(hearth_auth::SEALING_KEY_FILE));
    let key = hearth_auth::load_or_create_sealing_key(&key_path).with_context(|| {
        format!(
            "auth.two_factor_key_file: cannot read or create {}",
            key_path.display()
        )
    })?;
    let sealer = hearth_auth::AesGcmSealer::new(&key).context("auth.two_factor_key_file")?;
    let mut services =
        Services::new(adapters, config.login.clone()).with_secret_sealer(Arc::new(sealer));
    services = services
        .with_notifications(notifier, failures)
        .with_alarms(alarm_adapters);
    if !config.oidc.is_empty() {
        let verifier = OidcVerifier::new(config.oidc.clone()).context("auth.oidc: invalid")?;
        services = services.with_external_tokens(Arc::new(verifier));
    }
    Ok((services, gateway, readiness, embedded_readings))
}

/// The real notifier when `[notifications]` is enabled, else one that drops
/// every notice. Must run inside the Tokio runtime (it starts its tasks).
fn build_notifier(
    config: Option<&NotificationsConfig>,
    failures: Arc<dyn NotificationFailureLog>,
) -> anyhow::Result<Arc<dyn AlarmNotifier>> {
    let Some(config) = config else {
        return Ok(Arc::new(NoNotifications));
    };
    let email = hearth_notify::EmailSender::new(&config.smtp, &config.notifier.from)
        .context("notifications.smtp: cannot set up the mail sender")?;
    let webhook =
        hearth_notify::WebhookSender::new(config.notifier.webhook_timeout).map_err(|e| {
            anyhow::anyhow!("notifications.webhook_timeout: cannot set up webhooks: {e}")
        })?;
    let (notifier, _task) = hearth_notify::Notifier::start(
        config.notifier.clone(),
        email,
        webhook,
        failures,
        Arc::new(hearth_notify::SystemClock::new()),
    );
    tracing::info!(
        host = %config.smtp.host,
        port = config.smtp.port,
        tls = ?config.smtp.tls,
        "Alarm notifications on."
    );
    Ok(Arc::new(notifier))
}

/// The alarm rule store when `[stores.documents] adapter = "mongodb"`: the
/// document store itself, since [`MongoDocuments`] implements
/// [`AlarmRuleStore`] too (one database, one connection pool, one layout
/// marker, the tenant in every key). `None` for the embedded adapter, whose
/// rules live beside its documents in `data_dir`.
pub fn mongodb_alarm_rules(documents: Option<&MongoDocuments>) -> Option<Arc<dyn AlarmRuleStore>> {
    documents.map(|store| Arc::new(store.clone()) as Arc<dyn AlarmRuleStore>)
}

/// The relational store `config` names (MySQL, or SQLite under `data_dir`),
/// migrated on open unless `stores.relational.migrate_on_start` is off.
/// Also returns the adapter's name.
async fn open_sql(config: &Config) -> anyhow::Result<(SqlDirectory, &'static str)> {
    let (relational_url, relational_adapter) = relational_url(config)?;
    let sql = SqlDirectory::open(&relational_url, config.pool_size, config.migrate_on_start)
        .await
        .context(match relational_adapter {
            "mysql" => "stores.relational.url: cannot open the relational store",
            _ => "cannot open the embedded relational store",
        })?;
    Ok((sql, relational_adapter))
}

/// The relational store's URL (MySQL, or SQLite under `data_dir`) and the
/// adapter's name.
fn relational_url(config: &Config) -> anyhow::Result<(String, &'static str)> {
    match &config.database_url {
        Some(url) => Ok((url.clone(), "mysql")),
        None => Ok((
            SqlDirectory::sqlite_url(&config.data_dir)
                .context("cannot open the embedded relational store")?,
            "embedded",
        )),
    }
}

/// `hearth migrate`: applies the pending relational migrations to the
/// configured store and returns their names (none: already up to date).
pub async fn migrate(config: &Config) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let (url, _) = relational_url(config)?;
    SqlDirectory::migrate(&url)
        .await
        .context("cannot migrate the relational store")
}

/// `hearth user link-identity`: links subject `subject` of identity provider
/// `issuer` to the user with `email` in tenant `tenant` (a slug), so that
/// provider's tokens for the subject authenticate as that member. Opens the
/// relational store only (the server may be running meanwhile); the link is
/// made through the provisioning use case, as the provisioner.
pub async fn link_identity(
    config: &Config,
    tenant: &str,
    email: &str,
    issuer: &str,
    subject: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let directory: Arc<dyn Directory> = Arc::new(open_sql(config).await?.0);
    let email = hearth_domain::model::EmailAddress::new(email).context("--email")?;
    let user = directory
        .user_by_email(&email)
        .await?
        .with_context(|| format!("no user has the email {}", email.as_str()))?;
    let services = directory_services(config, directory)?;
    let system = SystemPrincipal::provisioner();
    let tenant = services
        .provisioning
        .tenant_by_slug(&system, tenant)
        .await?
        .with_context(|| format!("no tenant has the slug {tenant}"))?;
    services
        .provisioning
        .link_identity(&system, tenant.id, issuer, subject, user.id)
        .await?;
    Ok(())
}

/// Services over the relational store alone, for commands that may run
/// while the server does (they touch no other store). Only the
/// provisioning and platform use cases and the directory matter; the other
/// ports are in-memory stand-ins that nothing touches.
fn directory_services(config: &Config, directory: Arc<dyn Directory>) -> anyhow::Result<Services> {
    let bus = Arc::new(InProcessBus::with_capacity(1));
    Ok(Services::new(
        Adapters {
            directory,
            documents: Arc::new(hearth_inproc::documents::MemoryDocuments::new()),
            readings: Arc::new(hearth_inproc::readings::MemoryReadings::new()),
            live: bus.clone(),
            watch: bus,
            field: Arc::new(ModbusGateway::new(GatewayConfig::default())),
            authorizer: Arc::new(OsoAuthorizer::new().context("cannot load the access policy")?),
            passwords: Arc::new(Argon2Hasher::with_cost(config.argon2)?),
            tokens: Arc::new(JwtTokens::new(
                &config.token_secret.load(&config.data_dir)?,
                chrono::Duration::minutes(1),
            )?),
        },
        config.login.clone(),
    ))
}

/// `hearth operator grant|revoke`: grants or revokes the platform operator
/// role (creating tenants through GraphQL) of the user with `email`, as the
/// provisioner. Opens the relational store only. `false`: nothing changed.
pub async fn set_operator(config: &Config, email: &str, granted: bool) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let directory: Arc<dyn Directory> = Arc::new(open_sql(config).await?.0);
    let services = directory_services(config, directory)?;
    Ok(services
        .platform
        .set_operator(&SystemPrincipal::provisioner(), email, granted)
        .await?)
}

/// Resolves the per-tenant retention's slugs to ids (an unknown slug refuses
/// the start: a typo would otherwise silently keep that tenant's data for
/// ever, or drop it by the default).
pub(crate) async fn resolve_retention(
    services: &Services,
    config: &crate::config::RetentionConfig,
) -> anyhow::Result<Retention> {
    let mut tenants = std::collections::HashMap::new();
    for (slug, policy) in &config.tenants {
        let tenant = services
            .provisioning
            .tenant_by_slug(&SystemPrincipal::provisioner(), slug)
            .await
            .with_context(|| format!("retention.tenants.{slug}: cannot look up the tenant"))?
            .with_context(|| format!("retention.tenants.{slug}: no tenant has this slug"))?;
        tenants.insert(tenant.id, *policy);
    }
    Ok(Retention {
        default: config.default,
        tenants,
    })
}

/// Enforces retention on the embedded store now and then every `interval`.
/// The engine runs it on a blocking thread, so ingest is never stalled by a
/// task of this runtime; it holds the writer lock only for one transaction.
fn spawn_retention(store: EmbeddedReadings, interval: std::time::Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The first tick is immediate: once at start.
            ticks.tick().await;
            match store.enforce_retention(chrono::Utc::now()).await {
                Ok(0) => tracing::debug!("Retention dropped nothing."),
                Ok(dropped) => tracing::info!(dropped, "Retention dropped old chunks and rollups."),
                Err(err) => tracing::error!(error = %err, "Retention could not be enforced."),
            }
        }
    })
}

/// What `hearth tenant create` made. The password is shown once and never
/// stored in clear.
#[derive(Debug)]
pub struct CreatedTenant {
    pub tenant: hearth_domain::model::Tenant,
    pub admin_email: String,
    pub one_time_password: String,
}

/// Creates a tenant and its first Admin in the configured stores, as the
/// provisioner system principal (DESIGN.md, "Production start"). The Admin
/// gets a generated one-time password. A taken slug or email is refused
/// and nothing is created for a taken slug.
pub async fn create_tenant(
    config: &Config,
    slug: &str,
    name: &str,
    admin_email: &str,
) -> anyhow::Result<CreatedTenant> {
    let (services, _, _) = build(config).await?;
    // The same use case as GraphQL's `createTenant`, as the provisioner.
    let created = services
        .platform
        .create(&SystemPrincipal::provisioner(), slug, name, admin_email)
        .await
        .context("cannot create the tenant (--slug, --name, --admin-email)")?;
    services.ingest.reading_writer().shutdown().await;
    Ok(CreatedTenant {
        tenant: created.tenant,
        admin_email: created.admin.email.as_str().to_owned(),
        one_time_password: created.one_time_password,
    })
}

/// Builds everything, seeds the demo when asked, and serves on `config.listen`.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let (services, gateway, readiness, embedded_readings) = build_with_store(&config).await?;
    // Built-in profiles are code; storing them at every start keeps the
    // document store in step with the running version.
    services
        .provisioning
        .put_builtin_profile(
            &SystemPrincipal::provisioner(),
            &hearth_modbus::ecl_comfort_310(),
        )
        .await
        .context("cannot store the built-in device profiles")?;
    let mut simulator = None;
    if config.demo {
        let sim = Simulator::start(crate::demo::DEVICE_COUNT, config.sim_base_port, IpAddr::from([127, 0, 0, 1]))
            .await
            .with_context(|| {
                format!(
                    "cannot start the simulated controllers on ports from {} (choose others with --sim-base-port)",
                    config.sim_base_port
                )
            })?;
        let addresses: Vec<SocketAddr> = sim.devices().iter().map(|d| d.addr).collect();
        crate::demo::seed(&services.provisioning, &addresses)
            .await
            .context("cannot seed the demo")?;
        simulator = Some(sim);
    }
    // After the demo's seeding, so its tenants' slugs resolve.
    let retention = resolve_retention(&services, &config.retention).await?;
    // Everything kept for ever (the default): no task, nothing to drop.
    let configured = config.retention.default != RetentionPolicy::default()
        || !config.retention.tenants.is_empty();
    let retention_task = match embedded_readings {
        Some(store) if configured => {
            store.set_retention(retention);
            Some(spawn_retention(store, config.retention.interval))
        }
        None if configured => {
            tracing::warn!("Retention is not applied to InfluxDB; set the bucket's retention (2.x) or retention policy (1.x) there.");
            None
        }
        _ => None,
    };
    // Every device in the directory is polled, demo or not.
    let poller = Some(Poller::spawn_with(
        services.ingest.clone(),
        gateway,
        config.poller.clone(),
    ));
    // After the poller: evaluation follows what it publishes, on its own
    // tasks, and never holds it up.
    let evaluator = services
        .alarms()
        .map(|alarms| services.spawn_alarm_evaluator(alarms, config.alarm_evaluation.clone()));
    let schema = api::build_schema(services.clone()).finish();
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let app = crate::server::router_with(
        schema,
        services.auth.clone(),
        config.ws.clone(),
        config.http.clone(),
        crate::export::routes(
            services.auth.clone(),
            services.history.clone(),
            config.http.limits,
        ),
    )
    .merge(readiness.routes());
    let server = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        })
        .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "The HTTP server stopped.");
        }
    });
    Ok(Running {
        address,
        services,
        simulator,
        poller,
        evaluator,
        shutdown: Some(tx),
        server,
        retention: retention_task,
    })
}

/// `hearth simulate`: controllers only, until Ctrl-C.
pub async fn simulate(devices: usize, base_port: u16, host: IpAddr) -> anyhow::Result<()> {
    let sim = Simulator::start(devices, base_port, host)
        .await
        .with_context(|| format!("cannot bind simulated controllers from port {base_port}"))?;
    for (i, device) in sim.devices().iter().enumerate() {
        tracing::info!(device = i, addr = %device.addr, "Simulated controller listening.");
    }
    crate::signals::shutdown_signal().await;
    Ok(())
}
