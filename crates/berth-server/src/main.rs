//! The `berth` binary: `berth serve` runs the registry over the filesystem (the default),
//! memory or an S3 bucket; `berth user` hashes a password for the auth policy. Every flag of
//! `serve` is also an environment variable (`BERTH_<FLAG>`).

mod auth;
mod serve;
mod user;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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
    Serve(Box<ServeArgs>),
    /// Hash a password and print the `[users]` line of an auth policy.
    User(UserArgs),
}

#[derive(clap::Args)]
struct UserArgs {
    /// The user name.
    name: String,
    /// Write a bcrypt hash (as `htpasswd -B` does) instead of argon2id.
    #[arg(long)]
    bcrypt: bool,
}

/// Where the registry keeps its data.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum StorageKind {
    /// A directory on the local filesystem (`--root`).
    Fs,
    /// Process memory: everything is lost on exit. For tests and demos.
    Memory,
    /// An S3 bucket (`--s3-bucket`), on AWS or any S3-compatible server (`--s3-endpoint`).
    S3,
}

/// Log line format.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable key=value lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Storage backend.
    #[arg(long, value_enum, env = "BERTH_STORAGE", default_value = "fs")]
    storage: StorageKind,
    /// Data directory of the fs backend.
    #[arg(long, env = "BERTH_ROOT", default_value = "./berth-data")]
    root: PathBuf,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    auth: AuthArgs,
    /// How long the presigned URLs of blob redirects stay valid (e.g. 900s, 15m, 1h).
    #[arg(long, env = "BERTH_REDIRECT_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    redirect_ttl: std::time::Duration,
    /// Size of the parts uploads are streamed in, in MiB (at least 5).
    #[arg(long, env = "BERTH_PART_SIZE_MIB", default_value_t = 8, value_parser = clap::value_parser!(u64).range(5..=5120))]
    part_size_mib: u64,
    /// Log line format.
    #[arg(long, value_enum, env = "BERTH_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Behind a reverse proxy: take the client's address (which failed logins are counted by)
    /// from the last entry of `X-Forwarded-For`, which the proxy appends. Only with a proxy that
    /// sets it: clients could otherwise choose their address.
    #[arg(long, env = "BERTH_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
}

/// Where the S3 backend keeps its data. Credentials come from the standard AWS chain
/// (environment, profile, web identity, container or instance role).
#[derive(clap::Args)]
struct S3Args {
    /// Bucket to store blobs, manifests and upload state in.
    #[arg(long, env = "BERTH_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Region of the bucket.
    #[arg(long, env = "BERTH_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Endpoint URL of an S3-compatible server (MinIO, …); AWS when unset.
    #[arg(long, env = "BERTH_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Use path-style addressing (`endpoint/bucket/key`), as most local servers need.
    #[arg(long, env = "BERTH_S3_PATH_STYLE")]
    s3_path_style: bool,
    /// Endpoint URL that clients use to reach storage when it differs from `--s3-endpoint`;
    /// redirects are signed for it.
    #[arg(long, env = "BERTH_S3_PUBLIC_ENDPOINT")]
    s3_public_endpoint: Option<String>,
    /// Key prefix inside the bucket, to share a bucket with other data.
    #[arg(long, env = "BERTH_S3_PREFIX", default_value = "")]
    s3_prefix: String,
}

/// Who may do what (see the README's "Authentication"). Tokens are HS256 JWTs signed with the
/// secret; the secret is never logged.
#[derive(clap::Args)]
struct AuthArgs {
    /// The auth policy: a TOML file, `s3://bucket/key` (with --storage s3), or `none` to let
    /// anyone pull, push and delete. Required with --storage s3; without it a local backend is open.
    #[arg(long, env = "BERTH_AUTH")]
    auth: Option<String>,
    /// Token signing secret (at least 32 bytes), the same on every instance. Prefer
    /// --auth-secret-file or --auth-secret-ssm: command lines are visible to other local users.
    #[arg(long, env = "BERTH_AUTH_SECRET", hide_env_values = true, conflicts_with_all = ["auth_secret_file", "auth_secret_ssm"])]
    auth_secret: Option<String>,
    /// File holding the token signing secret.
    #[arg(long, env = "BERTH_AUTH_SECRET_FILE", conflicts_with = "auth_secret_ssm")]
    auth_secret_file: Option<PathBuf>,
    /// SSM Parameter Store parameter (a SecureString) holding the token signing secret, read at
    /// start-up; `/aws/reference/secretsmanager/<id>` reads a Secrets Manager secret.
    #[arg(long, env = "BERTH_AUTH_SECRET_SSM")]
    auth_secret_ssm: Option<String>,
    /// Service name in challenges and the audience of tokens.
    #[arg(long, env = "BERTH_AUTH_SERVICE", default_value = "berth")]
    auth_service: String,
    /// URL clients reach the registry at (the token realm is `<url>/token`); by default the
    /// request's Host and X-Forwarded-Proto.
    #[arg(long, env = "BERTH_PUBLIC_URL")]
    public_url: Option<String>,
    /// Lifetime of access tokens.
    #[arg(long, env = "BERTH_TOKEN_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    token_ttl: std::time::Duration,
    /// How often the policy is read again; a changed policy applies without a restart.
    #[arg(long, env = "BERTH_AUTH_RELOAD", default_value = "30s", value_parser = humantime::parse_duration)]
    auth_reload: std::time::Duration,
    /// Lifetime of refresh tokens (what `docker login` keeps).
    #[arg(long, env = "BERTH_REFRESH_TOKEN_TTL", default_value = "30days", value_parser = humantime::parse_duration)]
    refresh_token_ttl: std::time::Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::User(args) => {
            return match user::run(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve::run(*args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
