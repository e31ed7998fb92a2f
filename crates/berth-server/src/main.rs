//! The `berth` binary: `berth serve` runs the registry over the filesystem (the default),
//! memory or an S3 bucket; `berth user` hashes a password for the auth policy; `berth health`
//! checks a running registry. Every flag of `serve` is also an environment variable
//! (`BERTH_<FLAG>`); see `berth_app::Settings`.

use std::process::ExitCode;

use berth_app::Settings;
use berth_server::health;
use berth_server::user::{self, UserArgs};
use clap::{Parser, Subcommand};

/// An OCI Distribution Spec 1.1 container registry.
#[derive(Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry API over HTTP.
    Serve(Box<Settings>),
    /// Hash a password and print the `[users]` line of an auth policy.
    User(UserArgs),
    /// Check that the registry on `--listen` answers (exit status 0), as health checks do.
    Health(Box<Settings>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(settings) => serve(&settings).await,
        Command::User(args) => user::run(&args),
        Command::Health(settings) => health::run(&settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parse, build, run: the registry on `--listen` until SIGINT or SIGTERM.
async fn serve(settings: &Settings) -> Result<(), String> {
    let registry = berth_app::build(settings).await.map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    berth_server::serve(listener, berth_server::app(registry), berth_server::shutdown_signal())
        .await
        .map_err(|e| format!("server failed: {e}"))
}
