//! `bootstrap`: berth as one AWS Lambda function answering every `/v2/` route over an S3 bucket.
//!
//! Configuration comes from the environment the template sets (`BERTH_S3_BUCKET`, and
//! optionally `BERTH_S3_PREFIX`, `BERTH_S3_ENDPOINT`, `BERTH_S3_PATH_STYLE`,
//! `BERTH_S3_PUBLIC_ENDPOINT`, `BERTH_REDIRECT_TTL`); the region and credentials from Lambda's.
//! Authentication is required: `BERTH_AUTH` is an `s3://bucket/key` policy (read once at
//! init, and again every 30 s after: `BERTH_AUTH_RELOAD`) or `none`; tokens are signed with
//! `BERTH_AUTH_SECRET`, or with the SSM parameter `BERTH_AUTH_SECRET_SSM` names (read at init);
//! `BERTH_AUTH_SERVICE`, `BERTH_PUBLIC_URL` and `BERTH_TOKEN_TTL` are optional.
//! Everything is built once, before the first invocation; logs are JSON lines on stdout for
//! CloudWatch.

use std::sync::Arc;
use std::time::Duration;

use berth_core::auth::policy::Policy;
use berth_core::auth::{Auth, AuthConfig, PolicySource};

use berth_core::{Config, Registry};
use berth_s3::{S3Options, S3Storage};
use lambda_http::{Error, service_fn};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The policy object, read again every [`RELOAD`] while the instance lives.
struct S3Policy(Arc<S3Storage>, String);

#[async_trait::async_trait]
impl PolicySource for S3Policy {
    async fn read(&self) -> Result<String, String> {
        self.0.read_uri(&self.1).await
    }
}

/// How often an instance reads the policy again (`BERTH_AUTH_RELOAD` overrides).
const RELOAD: Duration = Duration::from_secs(30);

/// The auth of the function, from `BERTH_AUTH*`; refuses to start without an explicit choice.
async fn auth(store: &Arc<S3Storage>) -> Result<Option<Auth>, Error> {
    let source = env("BERTH_AUTH").ok_or("BERTH_AUTH is not set: give an s3://bucket/key policy, or `none`")?;
    if source == "none" {
        tracing::warn!("authentication is off (BERTH_AUTH=none): anyone can push and delete");
        return Ok(None);
    }
    let reader = Arc::new(S3Policy(store.clone(), source.clone()));
    let policy = Policy::parse(&reader.read().await?).map_err(|e| format!("auth policy {source}: {e}"))?;
    let reload = match env("BERTH_AUTH_RELOAD") {
        Some(every) => humantime::parse_duration(&every).map_err(|e| format!("BERTH_AUTH_RELOAD {every:?}: {e}"))?,
        None => RELOAD,
    };
    let token_ttl = match env("BERTH_TOKEN_TTL") {
        Some(ttl) => humantime::parse_duration(&ttl).map_err(|e| format!("BERTH_TOKEN_TTL {ttl:?}: {e}"))?,
        None => Duration::from_secs(300),
    };
    let auth = Auth::new(AuthConfig {
        policy,
        secret: secret().await?,
        service: env("BERTH_AUTH_SERVICE").unwrap_or_else(|| "berth".into()),
        public_url: env("BERTH_PUBLIC_URL"),
        token_ttl,
        refresh_ttl: Duration::from_secs(30 * 24 * 3600),
        reload: Some((reader, reload)),
    })?;
    tracing::info!(policy = source, "authentication on");
    Ok(Some(auth))
}

/// The token signing secret: `BERTH_AUTH_SECRET`, or the SSM parameter `BERTH_AUTH_SECRET_SSM`
/// names (read at init, so the secret is not in the function's configuration).
async fn secret() -> Result<Vec<u8>, Error> {
    let secret = match (env("BERTH_AUTH_SECRET"), env("BERTH_AUTH_SECRET_SSM")) {
        (Some(_), Some(_)) => return Err("set BERTH_AUTH_SECRET or BERTH_AUTH_SECRET_SSM, not both".into()),
        (Some(secret), None) => secret,
        (None, Some(name)) => berth_s3::ssm::read_parameter(&name, "us-east-1").await?,
        (None, None) => return Err("BERTH_AUTH_SECRET or BERTH_AUTH_SECRET_SSM must be set".into()),
    };
    Ok(secret.trim().as_bytes().to_vec())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .with_ansi(false)
        .init();
    let bucket = env("BERTH_S3_BUCKET").ok_or("BERTH_S3_BUCKET is not set")?;
    let redirect_ttl = match env("BERTH_REDIRECT_TTL") {
        Some(ttl) => humantime::parse_duration(&ttl).map_err(|e| format!("BERTH_REDIRECT_TTL {ttl:?}: {e}"))?,
        None => Config::default().redirect_ttl,
    };
    let store = S3Storage::new(S3Options {
        bucket,
        region: env("BERTH_S3_REGION").or_else(|| env("AWS_REGION")).unwrap_or_else(|| "us-east-1".into()),
        endpoint: env("BERTH_S3_ENDPOINT"),
        public_endpoint: env("BERTH_S3_PUBLIC_ENDPOINT"),
        path_style: env("BERTH_S3_PATH_STYLE").is_some_and(|v| v == "true" || v == "1"),
        prefix: env("BERTH_S3_PREFIX").unwrap_or_default(),
    })
    .await;
    let config = Config { max_body: Some(berth_lambda::MAX_BODY), redirect_ttl, ..Config::default() };
    let store = Arc::new(store);
    let auth = auth(&store).await?;
    let mut registry = Registry::new(store, config);
    if let Some(auth) = auth {
        registry = registry.with_auth(auth);
    }
    lambda_http::run(service_fn(move |request| {
        let registry = registry.clone();
        async move { Ok::<_, Error>(berth_lambda::handle(&registry, request).await) }
    }))
    .await
}
