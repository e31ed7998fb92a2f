//! The `berth` binary: `berth serve` runs the registry over the filesystem (the default),
//! memory or an S3 bucket; `berth gc` collects garbage; `berth fsck` checks storage for
//! consistency; `berth user` hashes a password for the auth policy; `berth health` checks a
//! running registry. Every flag of `serve` is also an environment variable (`BERTH_<FLAG>`); see
//! `berth_app::Settings`.

use std::process::ExitCode;

use berth_app::Settings;
use berth_server::fsck::{self, FsckArgs};
use berth_server::gc::{self, GcArgs};
use berth_server::{health, user};
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
    /// Collect garbage: what no tag reaches, blobs no repository links, idle upload sessions.
    Gc(GcArgs),
    /// Check storage for consistency (blob bytes, links, manifests, tags, upload sessions);
    /// exits non-zero when something is wrong. Writes nothing.
    Fsck(FsckArgs),
    /// Hash a password and print the `[users]` line of an auth policy.
    User(user::UserArgs),
    /// Check that the registry on `--listen` answers (exit status 0), as health checks do.
    Health(Box<Settings>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(settings) => berth_server::run(&settings).await,
        Command::Gc(args) => gc::run(&args).await,
        Command::Fsck(args) => fsck::run(&args).await,
        Command::User(args) => user::run(&args),
        Command::Health(settings) => health::run(&settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One line on stderr, whatever the log format: the log may not have started yet.
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}
