//! The `hearth` binary: parse the command line and run it.

use clap::Parser;

// glibc's allocator spends a fifth of a device listing's CPU time in
// malloc/free; mimalloc is markedly cheaper for async-graphql's many small
// allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = hearth::cli::Cli::parse();
    hearth::cli::init_tracing();
    match hearth::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = ?err, "Hearth stopped with an error.");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
