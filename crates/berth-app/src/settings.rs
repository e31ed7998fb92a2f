//! Every setting of berth and its default, declared once: [`Settings`] is one clap argument
//! struct. `berth serve` parses it from its command line, where every flag can also be given as
//! its `BERTH_*` environment variable; the Lambda function parses the same struct from its
//! environment alone ([`Settings::from_env`]). The README's configuration tables are checked
//! against it by a test, so the two cannot drift apart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// The region used when neither `--s3-region` nor the AWS environment or profile names one.
pub const FALLBACK_REGION: &str = "us-east-1";

/// Every setting of a berth deployment.
#[derive(Args, Clone)]
pub struct Settings {
    /// Address to listen on (`berth serve`; the Lambda function has none).
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Where `berth serve` answers `/metrics` (Prometheus text): `listen` (on `--listen`, beside
    /// the registry), an address of its own (e.g. `127.0.0.1:9090`), or `off`.
    #[arg(long, env = "BERTH_METRICS_LISTEN", default_value = "listen", value_parser = parse_metrics_at)]
    pub metrics_listen: MetricsAt,
    /// TLS certificate chain (PEM) for `berth serve` to speak HTTPS (and HTTP/2) itself; read
    /// again when the file changes. Needs --tls-key.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM). Needs --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How long a client has to send a request's head (`berth serve`): a connection that
    /// trickles it (slowloris) is closed after this.
    #[arg(long, env = "BERTH_REQUEST_HEAD_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_head_timeout: Duration,
    /// How long a request body may go without a byte before the request fails (`berth serve`).
    #[arg(long, env = "BERTH_BODY_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub body_idle_timeout: Duration,
    /// Storage backend.
    #[arg(long, value_enum, env = "BERTH_STORAGE", default_value = "fs")]
    pub storage: StorageKind,
    /// Data directory of the fs backend.
    #[arg(long, env = "BERTH_ROOT", default_value = "./berth-data")]
    pub root: PathBuf,
    /// Size of the parts uploads are streamed to storage in, in MiB (5 to 5120).
    #[arg(long, env = "BERTH_PART_SIZE_MIB", default_value_t = 8, value_parser = clap::value_parser!(u64).range(5..=5120))]
    pub part_size_mib: u64,
    /// Memory all uploads together may hold in part buffers on the way to storage, in MiB (at
    /// least 8): an upload that needs more waits, reading nothing from its client, until parts
    /// already received are stored, so no number of uploads, fast or stalled, holds more.
    #[arg(long, env = "BERTH_UPLOAD_MEMORY_MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(8..))]
    pub upload_memory_mib: u64,
    /// How long the presigned URLs of blob redirects stay valid (e.g. 900s, 15m, 1h).
    #[arg(long, env = "BERTH_REDIRECT_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub redirect_ttl: Duration,
    /// Smallest blob, in bytes, whose GET is redirected to storage; smaller ones are served by
    /// berth (one ranged read, no second connection for the client). 0 redirects every blob.
    #[arg(long, env = "BERTH_REDIRECT_MIN_SIZE", default_value_t = 256 * 1024)]
    pub redirect_min_size: u64,
    /// Base URL of an upload host (`berth serve --storage s3` over the same bucket, with the same
    /// auth policy and secret): upload sessions are handed to it, for deployments that cannot
    /// take large request bodies (Lambda).
    #[arg(long, env = "BERTH_UPLOAD_URL", value_parser = check_url)]
    pub upload_url: Option<String>,
    /// How long an upload URL stays usable without credentials after each answer that hands it out.
    #[arg(long, env = "BERTH_UPLOAD_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub upload_ttl: Duration,
    /// Serve the web UI at `/` (`false`: the registry API only).
    #[arg(long, env = "BERTH_UI", default_value_t = true, action = clap::ArgAction::Set)]
    pub ui: bool,
    /// Origins whose web pages may call the registry API (CORS), comma-separated, e.g.
    /// `https://ui.example.com`; `*` lets any origin in. None by default: CORS is off.
    #[arg(long = "cors-origin", env = "BERTH_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Garbage collection removes nothing younger than this (links, blobs, upload sessions,
    /// referrers whose subject is gone): pushes in progress keep what they uploaded. Give
    /// `berth serve` the grace of every collector: under an hour, it checks each blob it stores
    /// against collections.
    #[arg(long = "gc-grace", visible_alias = "grace", env = "BERTH_GC_GRACE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub gc_grace: Duration,
    /// Retention policy of garbage collection (a TOML file, or `s3://bucket/key` with --storage
    /// s3): which tags and untagged manifests it removes. Without one it removes no tag.
    #[arg(long = "gc-retention", visible_alias = "retention", env = "BERTH_GC_RETENTION")]
    pub gc_retention: Option<String>,
    /// Run garbage collection this often inside `berth serve` (and the Lambda's collector).
    #[arg(long, env = "BERTH_GC_EVERY", value_parser = humantime::parse_duration)]
    pub gc_every: Option<Duration>,
    /// Log line format.
    #[arg(long, value_enum, env = "BERTH_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// What to log, in `tracing`'s `EnvFilter` syntax (`info`, `debug`, `berth_core=debug,info`).
    #[arg(long, env = "BERTH_LOG", default_value = "info", value_parser = check_filter)]
    pub log: String,
    /// Behind a reverse proxy: take the client's address (which failed logins are counted by)
    /// from the last entry of `X-Forwarded-For`, which the proxy appends. Only with a proxy that
    /// sets it: clients could otherwise choose their address.
    #[arg(long, env = "BERTH_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// The S3 backend.
    #[command(flatten)]
    pub s3: S3Settings,
    /// Authentication.
    #[command(flatten)]
    pub auth: AuthSettings,
    /// Largest request body the deployment can take: fixed by the shell (the Lambda's payload
    /// limit), not a flag.
    #[arg(skip)]
    pub max_body: Option<u64>,
}

/// Where the S3 backend keeps its data. Credentials come from the standard AWS chain
/// (environment, profile, web identity, container or instance role).
#[derive(Args, Clone)]
pub struct S3Settings {
    /// Bucket to store blobs, manifests and upload state in.
    #[arg(long, env = "BERTH_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Region of the bucket (and of SSM Parameter Store); by default the AWS environment's
    /// (`AWS_REGION`) or profile's, else us-east-1.
    #[arg(long, env = "BERTH_S3_REGION")]
    pub s3_region: Option<String>,
    /// Endpoint URL of an S3-compatible server (MinIO, …); AWS when unset.
    #[arg(long, env = "BERTH_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Use path-style addressing (`endpoint/bucket/key`), as most local servers need.
    #[arg(long, env = "BERTH_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Endpoint URL that clients use to reach storage when it differs from `--s3-endpoint`;
    /// redirects are signed for it.
    #[arg(long, env = "BERTH_S3_PUBLIC_ENDPOINT")]
    pub s3_public_endpoint: Option<String>,
    /// Key prefix inside the bucket, to share a bucket with other data.
    #[arg(long, env = "BERTH_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,
}

/// Who may do what (see the README's "Authentication"). Tokens are HS256 JWTs signed with the
/// secret; the secret is never logged.
#[derive(Args, Clone)]
pub struct AuthSettings {
    /// The auth policy: a TOML file, `s3://bucket/key` (with --storage s3), or `none` to let
    /// anyone pull, push and delete. Required with --storage s3; without it a local backend is open.
    #[arg(long, env = "BERTH_AUTH")]
    pub auth: Option<String>,
    /// Token signing secret (at least 32 bytes), the same on every instance. Prefer
    /// --auth-secret-file or --auth-secret-ssm: command lines are visible to other local users.
    #[arg(long, env = "BERTH_AUTH_SECRET", hide_env_values = true, conflicts_with_all = ["auth_secret_file", "auth_secret_ssm"])]
    pub auth_secret: Option<String>,
    /// File holding the token signing secret.
    #[arg(long, env = "BERTH_AUTH_SECRET_FILE", conflicts_with = "auth_secret_ssm")]
    pub auth_secret_file: Option<PathBuf>,
    /// SSM Parameter Store parameter (a SecureString) holding the token signing secret, read at
    /// start-up; `/aws/reference/secretsmanager/<id>` reads a Secrets Manager secret.
    #[arg(long, env = "BERTH_AUTH_SECRET_SSM")]
    pub auth_secret_ssm: Option<String>,
    /// Service name in challenges and the audience of tokens.
    #[arg(long, env = "BERTH_AUTH_SERVICE", default_value = "berth")]
    pub auth_service: String,
    /// URL clients reach the registry at (the token realm is `<url>/token`); by default the
    /// request's Host and X-Forwarded-Proto.
    #[arg(long, env = "BERTH_PUBLIC_URL", value_parser = check_url)]
    pub public_url: Option<String>,
    /// Lifetime of access tokens.
    #[arg(long, env = "BERTH_TOKEN_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// How often the policy is read again; a changed policy applies without a restart.
    #[arg(long, env = "BERTH_AUTH_RELOAD", default_value = "30s", value_parser = humantime::parse_duration)]
    pub auth_reload: Duration,
    /// Lifetime of refresh tokens (what `docker login` keeps).
    #[arg(long, env = "BERTH_REFRESH_TOKEN_TTL", default_value = "30days", value_parser = humantime::parse_duration)]
    pub refresh_token_ttl: Duration,
}

/// Where the registry keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StorageKind {
    /// A directory on the local filesystem (`--root`).
    Fs,
    /// Process memory: everything is lost on exit. For tests and demos.
    Memory,
    /// An S3 bucket (`--s3-bucket`), on AWS or any S3-compatible server (`--s3-endpoint`).
    S3,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable key=value lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A command whose only arguments are the settings, for parsing them from the environment.
#[derive(Parser)]
#[command(name = "berth")]
struct EnvOnly {
    #[command(flatten)]
    settings: Settings,
}

impl Settings {
    /// The settings given by the environment alone (`BERTH_*`), the others at their defaults:
    /// how the Lambda function, which has no command line, is configured.
    pub fn from_env() -> Result<Self, clap::Error> {
        EnvOnly::try_parse_from(["berth"]).map(|parsed| parsed.settings)
    }

    /// The engine's configuration.
    pub fn config(&self) -> berth_core::Config {
        berth_core::Config {
            part_size: (self.part_size_mib * 1024 * 1024) as usize,
            upload_memory: (self.upload_memory_mib * 1024 * 1024) as usize,
            gc_grace: self.gc_grace,
            redirect_ttl: self.redirect_ttl,
            redirect_min_size: self.redirect_min_size,
            max_body: self.max_body,
            public_url: self.auth.public_url.clone(),
            trust_forwarded_for: self.trust_forwarded_for,
            upload_url: self.upload_url.clone(),
            upload_ttl: self.upload_ttl,
        }
    }
}

impl Settings {
    /// The web front's settings.
    pub fn site(&self) -> berth_web::SiteConfig {
        berth_web::SiteConfig {
            ui: self.ui,
            cors_origins: self.cors_origins.clone(),
            public_url: self.auth.public_url.clone(),
        }
    }
}

/// Where `/metrics` is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsAt {
    /// On `--listen`, beside the registry.
    Listen,
    /// On a listener of its own.
    Address(SocketAddr),
    /// Nowhere.
    Off,
}

fn parse_metrics_at(value: &str) -> Result<MetricsAt, String> {
    match value {
        "listen" => Ok(MetricsAt::Listen),
        "off" => Ok(MetricsAt::Off),
        address => address
            .parse()
            .map(MetricsAt::Address)
            .map_err(|_| format!("{address:?} is neither `listen`, `off` nor an address like 127.0.0.1:9090")),
    }
}

fn check_url(url: &str) -> Result<String, String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(url.trim_end_matches('/').to_string())
    } else {
        Err(format!("{url:?} must start with https:// or http://"))
    }
}

fn check_filter(filter: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(filter).map(|_| filter.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        EnvOnly::try_parse_from(std::iter::once("berth").chain(args.iter().copied())).map(|p| p.settings)
    }

    #[test]
    fn flags_are_checked() {
        let settings = parse(&["--public-url", "https://r.example.com/", "--part-size-mib", "16"]).unwrap();
        assert_eq!(settings.auth.public_url.as_deref(), Some("https://r.example.com"));
        assert_eq!(settings.config().part_size, 16 * 1024 * 1024);
        assert!(parse(&["--public-url", "r.example.com"]).is_err());
        assert!(parse(&["--part-size-mib", "4"]).is_err());
        assert!(parse(&["--log", "info,[[["]).is_err());
        assert!(parse(&["--auth-secret", "x", "--auth-secret-file", "f"]).is_err());
        assert!(parse(&["--tls-cert", "cert.pem"]).is_err(), "a certificate without its key");
        assert_eq!(parse(&[]).unwrap().metrics_listen, MetricsAt::Listen);
        assert_eq!(parse(&["--metrics-listen", "off"]).unwrap().metrics_listen, MetricsAt::Off);
        let at = parse(&["--metrics-listen", "127.0.0.1:9090"]).unwrap().metrics_listen;
        assert_eq!(at, MetricsAt::Address(([127, 0, 0, 1], 9090).into()));
        assert!(parse(&["--metrics-listen", "everywhere"]).is_err());
    }

    /// One row of a README configuration table: flag, environment variable, default.
    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Row {
        flag: String,
        env: String,
        default: String,
    }

    /// What the README should say of each setting: `` `value` `` for a default clap fills in,
    /// `off` for a switch, and words (anything not in backticks) where berth decides at run time.
    fn from_settings() -> Vec<Row> {
        let command = EnvOnly::command();
        let mut rows: Vec<Row> = command
            .get_arguments()
            .filter(|a| a.get_long().is_some())
            .map(|a| {
                let defaults: Vec<String> =
                    a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
                let default = match (a.get_action(), defaults.as_slice()) {
                    (clap::ArgAction::SetTrue, _) => "off".to_string(),
                    (_, [value]) if !value.is_empty() => format!("`{value}`"),
                    _ => "(none)".to_string(),
                };
                Row {
                    flag: format!("`--{}`", a.get_long().unwrap_or_default()),
                    env: format!("`{}`", a.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()),
                    default,
                }
            })
            .collect();
        rows.sort();
        rows
    }

    /// Every row of the README's tables that starts with a flag.
    fn from_readme() -> Vec<Row> {
        let readme = include_str!("../../../README.md");
        let mut rows: Vec<Row> = readme
            .lines()
            .filter(|l| l.starts_with("| `--"))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
                let default = match cells.get(2).copied().unwrap_or_default() {
                    d if d.starts_with('`') || d == "off" => d.to_string(),
                    _ => "(none)".to_string(),
                };
                Row { flag: cells[0].to_string(), env: cells.get(1).unwrap_or(&"").to_string(), default }
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn the_sam_template_sets_only_settings_that_exist() {
        // The function's variables and the upload service's.
        let known: Vec<String> = from_settings().into_iter().map(|r| r.env.trim_matches('`').to_string()).collect();
        let template = include_str!("../../../template.yaml");
        let set: Vec<&str> = template
            .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .filter(|word| word.starts_with("BERTH_"))
            .collect();
        assert!(set.contains(&"BERTH_STORAGE"), "the function must be told to use S3");
        for name in set {
            assert!(known.iter().any(|k| k == name), "template.yaml sets {name}, which is no setting of berth");
        }
    }

    #[test]
    fn the_readme_lists_every_setting_with_its_default() {
        let (documented, declared) = (from_readme(), from_settings());
        let missing: Vec<&Row> = declared.iter().filter(|r| !documented.contains(r)).collect();
        let stale: Vec<&Row> = documented.iter().filter(|r| !declared.contains(r)).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "the README's configuration tables and Settings differ\n  not (or not so) in the README: {missing:#?}\n  \
             in the README only: {stale:#?}"
        );
    }
}
