//! `bootstrap`: berth as one AWS Lambda function answering every `/v2/` route over an S3 bucket.
//!
//! Configuration comes from the environment the template sets (`BERTH_S3_BUCKET`, and
//! optionally `BERTH_S3_PREFIX`, `BERTH_S3_ENDPOINT`, `BERTH_S3_PATH_STYLE`,
//! `BERTH_S3_PUBLIC_ENDPOINT`, `BERTH_REDIRECT_TTL`); the region and credentials from Lambda's.
//! Everything is built once, before the first invocation, without network calls; logs are JSON
//! lines on stdout for CloudWatch.

use std::sync::Arc;

use berth_core::{Config, Registry};
use berth_s3::{S3Options, S3Storage};
use lambda_http::{Error, service_fn};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
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
    let registry = Registry::new(Arc::new(store), config);
    lambda_http::run(service_fn(move |request| {
        let registry = registry.clone();
        async move { Ok::<_, Error>(berth_lambda::handle(&registry, request).await) }
    }))
    .await
}
