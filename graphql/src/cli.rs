//! Command line: `serve`, `config`, `migrate`, `simulate`, `schema`, `user`, `tenant`,
//! `operator`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Overrides, Settings};
use crate::{app, signals};

#[derive(Parser, Debug)]
#[command(
    name = "hearth",
    version,
    about = "Multi-tenant cloud SCADA for heating, cooling and ventilation plants"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the GraphQL API (and, with --demo, seed and simulate a demo plant).
    Serve(ServeArgs),
    /// Print the effective configuration (defaults, file, environment and
    /// flags merged) as TOML, secrets masked, and check it.
    Config(ServeArgs),
    /// Run simulated ECL-Comfort-like controllers speaking Modbus TCP.
    Simulate(SimulateArgs),
    /// Apply the pending relational migrations to the configured store
    /// (`stores.relational`), print what was applied; safe to run again.
    Migrate(ServeArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Manage users from the command line.
    #[command(subcommand)]
    User(UserCommand),
    /// Platform operations on tenants (for the platform operator, not a
    /// tenant role).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Grant or revoke the platform operator role: who may create tenants
    /// through GraphQL (`createTenant`). Not a tenant role.
    #[command(subcommand)]
    Operator(OperatorCommand),
}

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Make the user with this email a platform operator.
    Grant(OperatorArgs),
    /// Take the platform operator role away from the user with this email.
    Revoke(OperatorArgs),
}

#[derive(Args, Debug)]
pub struct OperatorArgs {
    /// Email of an existing user.
    #[arg(long)]
    pub email: String,
    /// Which stores: the same flags as `serve`.
    #[command(flatten)]
    pub store: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Link a subject of a tenant's OIDC provider (a person's `sub`, or an
    /// integrator's client id) to a member of that tenant, so the
    /// provider's bearer tokens for it authenticate as that member.
    LinkIdentity(LinkIdentityArgs),
}

#[derive(Args, Debug)]
pub struct LinkIdentityArgs {
    #[command(flatten)]
    pub store: ServeArgs,
    /// Slug of the tenant.
    #[arg(long)]
    pub tenant: String,
    /// Email of the user, who must be a member of the tenant.
    #[arg(long)]
    pub email: String,
    /// The provider's issuer, exactly as in its tokens' `iss`.
    #[arg(long)]
    pub issuer: String,
    /// The token subject (`sub`) to link.
    #[arg(long)]
    pub subject: String,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant and its first Admin; prints the Admin's one-time
    /// password once.
    Create(TenantCreateArgs),
}

#[derive(Args, Debug)]
pub struct TenantCreateArgs {
    /// The tenant's short name in URLs and logins (lowercase, digits, `-`).
    #[arg(long)]
    pub slug: String,
    /// The tenant's display name.
    #[arg(long)]
    pub name: String,
    /// Email of the first Admin (a new user).
    #[arg(long)]
    pub admin_email: String,
    /// Which stores to create it in: the same flags as `serve`.
    #[command(flatten)]
    pub stores: ServeArgs,
}

/// Flags win over the environment and the configuration file; without a
/// flag, the key's value comes from those (see README.md).
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Seed demo tenants and users, start simulated controllers and poll them.
    #[arg(long)]
    pub demo: bool,
    /// Address to listen on (key `listen`, default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the embedded stores keep their files (key `data_dir`, default ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// MySQL URL (`mysql://…`) for the relational store; the embedded
    /// SQLite under the data directory when absent.
    #[arg(long, env = "HEARTH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// First TCP port of the demo's simulated controllers (0: any free
    /// ports; key `sim_base_port`, default 15020).
    #[arg(long)]
    pub sim_base_port: Option<u16>,
}

impl ServeArgs {
    /// The settings these flags select, from the process environment.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            demo: self.demo,
            sim_base_port: self.sim_base_port,
            database_url: self.database_url.clone(),
        };
        Ok(Settings::load(
            self.config.as_deref(),
            std::env::vars(),
            &overrides,
        )?)
    }
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    #[arg(long, default_value_t = 15020)]
    pub base_port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn,tokio_modbus=warn")
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Schema => {
            print!("{}", crate::api::sdl());
            Ok(())
        }
        Command::Tenant(TenantCommand::Create(args)) => {
            let config = args.stores.settings()?.resolve();
            let created =
                app::create_tenant(&config, &args.slug, &args.name, &args.admin_email).await?;
            println!(
                "Created tenant `{}` ({}) with Admin {}.\nOne-time password (shown once): {}",
                created.tenant.slug.as_str(),
                created.tenant.id,
                created.admin_email,
                created.one_time_password
            );
            Ok(())
        }
        Command::Operator(command) => {
            let (args, granted) = match command {
                OperatorCommand::Grant(args) => (args, true),
                OperatorCommand::Revoke(args) => (args, false),
            };
            let config = args.store.settings()?.resolve();
            let changed = app::set_operator(&config, &args.email, granted).await?;
            let state = if granted {
                "a platform operator"
            } else {
                "no platform operator"
            };
            if changed {
                println!("{} is now {state}", args.email);
            } else {
                println!("{} was {state} already", args.email);
            }
            Ok(())
        }
        Command::Simulate(args) => app::simulate(args.devices, args.base_port, args.host).await,
        Command::Migrate(args) => {
            let config = args.settings()?.resolve();
            let applied = app::migrate(&config).await?;
            if applied.is_empty() {
                println!("relational store: up to date, nothing applied");
            }
            for name in &applied {
                println!("applied {name}");
            }
            Ok(())
        }
        Command::Config(args) => {
            print!("{}", args.settings()?.to_toml()?);
            Ok(())
        }
        Command::User(UserCommand::LinkIdentity(args)) => {
            let config = args.store.settings()?.resolve();
            app::link_identity(
                &config,
                &args.tenant,
                &args.email,
                &args.issuer,
                &args.subject,
            )
            .await?;
            println!(
                "linked {} of {} to {} in {}",
                args.subject, args.issuer, args.email, args.tenant
            );
            Ok(())
        }
        Command::Serve(args) => {
            let config = args.settings()?.resolve();
            let running = app::start(config).await?;
            tracing::info!(address = %running.address, "Hearth is serving GraphQL at http://{}/graphql.", running.address);
            signals::shutdown_signal().await;
            tracing::info!("Shutting down.");
            running.stop().await;
            Ok(())
        }
    }
}
