//! Command line: `serve`, `simulate`, `schema`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::app::{self, Config};

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
    /// Run simulated ECL-Comfort-like controllers speaking Modbus TCP.
    Simulate(SimulateArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Seed demo tenants and users, start simulated controllers and poll them.
    #[arg(long)]
    pub demo: bool,
    #[arg(long, env = "HEARTH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the embedded stores keep their files.
    #[arg(long, env = "HEARTH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Relational store URL (`mysql://…`); the embedded SQLite under
    /// --data-dir when absent.
    #[arg(long, env = "HEARTH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// First TCP port of the demo's simulated controllers (0: any free ports).
    #[arg(long, env = "HEARTH_SIM_BASE_PORT", default_value_t = 15020)]
    pub sim_base_port: u16,
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
        Command::Simulate(args) => app::simulate(args.devices, args.base_port, args.host).await,
        Command::Serve(args) => {
            let config = Config {
                listen: args.listen,
                data_dir: args.data_dir,
                database_url: args.database_url,
                demo: args.demo,
                sim_base_port: args.sim_base_port,
                ws: Default::default(),
                login: Default::default(),
                http: Default::default(),
            };
            let running = app::start(config).await?;
            tracing::info!(address = %running.address, "Hearth is serving GraphQL at http://{}/graphql.", running.address);
            shutdown_signal().await;
            tracing::info!("Shutting down.");
            running.stop().await;
            Ok(())
        }
    }
}

/// Ctrl-C, or SIGTERM (container runtimes and Kubernetes stop with it).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "Cannot listen for Ctrl-C.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
