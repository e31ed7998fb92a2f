//! The composition root of berth: the one place that knows every setting ([`Settings`]) and
//! builds the registry from them ([`build`]): storage (filesystem, memory or S3), the token
//! signing secret (a flag, a file or SSM Parameter Store), the auth policy (a file or an `s3://`
//! object, read again while the registry runs), logging, and the web front around the registry
//! (the UI, CORS); and the garbage collector
//! ([`collector`]: grace, retention policy). Both shells, `berth serve` and the Lambda function,
//! parse [`Settings`], call [`build`], and run what it returns.

mod auth;
mod logging;
mod settings;
mod ssm;

pub use self::logging::millis;
pub use self::settings::{AuthSettings, FALLBACK_REGION, LogFormat, MetricsAt, S3Settings, Settings, StorageKind};

use std::sync::Arc;
use std::time::Instant;

use aws_config::meta::region::RegionProviderChain;
use berth_core::Registry;
use berth_gc::{Collector, Retention};
use berth_s3::{S3Options, S3Storage};
use berth_storage::{FsStorage, MemoryStorage, Storage};
use berth_web::Site;

/// Why berth cannot start; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings are incomplete or contradict each other.
    #[error("{0}")]
    Settings(String),
    /// The storage backend is not usable (directory, bucket, credentials).
    #[error("{0}")]
    Storage(String),
    /// The auth policy or the signing secret cannot be read or is invalid.
    #[error("{0}")]
    Auth(String),
}

/// Builds the registry the settings describe, with its web front: starts logging, opens and
/// checks storage, and sets up authentication.
pub async fn build(settings: &Settings) -> Result<Site, StartError> {
    logging::init(settings.log_format, &settings.log);
    auth::refuse_open(settings)?;
    let region = region(settings).await;
    let (store, s3) = open_storage(settings, &region).await?;
    let registry = Registry::new(store, settings.config());
    let registry = match auth::setup(settings, s3, &region).await? {
        Some(auth) => registry.with_auth(auth),
        None => registry,
    };
    Ok(Site::new(registry, settings.site()))
}

/// The storage the settings name, opened and checked (`berth fsck` reads it).
pub async fn storage(settings: &Settings) -> Result<Arc<dyn Storage>, StartError> {
    let region = region(settings).await;
    Ok(open_storage(settings, &region).await?.0)
}

/// The garbage collector the settings describe (grace, retention policy), over `store` (a
/// registry's, [`Registry::storage`]) or, without one, over the storage the settings name.
/// `deadline`: when to stop with a checkpoint (a Lambda invocation's end).
pub async fn collector(
    settings: &Settings,
    store: Option<Arc<dyn Storage>>,
    dry_run: bool,
    deadline: Option<Instant>,
) -> Result<Collector, StartError> {
    logging::init(settings.log_format, &settings.log);
    let region = region(settings).await;
    let (store, s3) = match store {
        Some(store) => (store, None),
        None => open_storage(settings, &region).await?,
    };
    let retention = match &settings.gc_retention {
        None => Retention::default(),
        Some(source) => {
            let text = match (source.strip_prefix("s3://"), &s3) {
                (Some(_), Some(s3)) => s3.read_uri(source).await,
                (Some(_), None) if settings.storage == StorageKind::S3 => {
                    s3_storage(settings, &region).await?.read_uri(source).await
                }
                (Some(_), None) => Err(format!("--gc-retention {source}: an s3:// policy needs --storage s3")),
                (None, _) => tokio::fs::read_to_string(source)
                    .await
                    .map_err(|e| format!("cannot read the retention policy {source}: {e}")),
            };
            Retention::parse(&text.map_err(StartError::Settings)?)
                .map_err(|e| StartError::Settings(format!("retention policy {source}: {e}")))?
        }
    };
    Ok(Collector::new(
        store,
        berth_gc::Options { grace: settings.gc_grace, retention: Arc::new(retention), dry_run, deadline },
    ))
}

/// Opens and checks the storage the settings name; the S3 backend is also returned as such (the
/// auth policy may be an object of it).
async fn open_storage(
    settings: &Settings,
    region: &str,
) -> Result<(Arc<dyn Storage>, Option<Arc<S3Storage>>), StartError> {
    Ok(match settings.storage {
        StorageKind::Fs => {
            let store = FsStorage::new(&settings.root).map_err(|e| {
                StartError::Storage(format!("cannot use data directory {}: {e}", settings.root.display()))
            })?;
            tracing::info!(storage = "fs", root = %settings.root.display(), "storage ready");
            (Arc::new(store) as Arc<dyn Storage>, None)
        }
        StorageKind::Memory => {
            tracing::info!(storage = "memory", "storage ready (everything is lost on exit)");
            (Arc::new(MemoryStorage::new()) as Arc<dyn Storage>, None)
        }
        StorageKind::S3 => {
            let s3 = Arc::new(s3_storage(settings, region).await?);
            (s3.clone(), Some(s3))
        }
    })
}

/// Connects to the bucket and checks it before serving: a missing bucket, bad credentials or a
/// server without conditional writes stop the start with one clear line.
async fn s3_storage(settings: &Settings, region: &str) -> Result<S3Storage, StartError> {
    let s3 = &settings.s3;
    let bucket = s3
        .s3_bucket
        .clone()
        .ok_or_else(|| StartError::Settings("--storage s3 needs --s3-bucket (or BERTH_S3_BUCKET)".into()))?;
    let store = S3Storage::new(S3Options {
        bucket: bucket.clone(),
        region: region.to_string(),
        endpoint: s3.s3_endpoint.clone(),
        public_endpoint: s3.s3_public_endpoint.clone(),
        path_style: s3.s3_path_style,
        prefix: s3.s3_prefix.clone(),
    })
    .await;
    store.check().await.map_err(StartError::Storage)?;
    tracing::info!(storage = "s3", bucket, region, "storage ready");
    Ok(store)
}

/// The AWS region of the bucket and of SSM: `--s3-region`, else the environment's
/// (`AWS_REGION`, as Lambda sets it) or the profile's, else [`FALLBACK_REGION`]. Instance
/// metadata is not asked, so that a start off AWS never waits for it.
async fn region(settings: &Settings) -> String {
    if let Some(region) = &settings.s3.s3_region {
        return region.clone();
    }
    let chain = RegionProviderChain::first_try(aws_config::environment::EnvironmentVariableRegionProvider::new())
        .or_else(aws_config::profile::ProfileFileRegionProvider::new());
    chain.region().await.map_or_else(|| FALLBACK_REGION.to_string(), |r| r.to_string())
}
