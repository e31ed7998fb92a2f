//! `--auth` and friends: builds the engine's [`Auth`] from a policy file, an `s3://` object, or
//! nothing (`--auth none`, or no flag on a local backend, where the registry stays open), with
//! the signing secret from a flag, a file or SSM Parameter Store. The policy is read again every
//! `--auth-reload`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::auth::{Auth, AuthConfig, MIN_SECRET_LEN, PolicySource, policy::Policy};
use berth_s3::S3Storage;

use crate::{ServeArgs, StorageKind};

/// The auth of a `berth serve`: `Ok(None)` leaves the registry open.
pub async fn setup(serve: &ServeArgs, s3: Option<Arc<S3Storage>>) -> Result<Option<Auth>, String> {
    let (args, storage) = (&serve.auth, serve.storage);
    let source = match args.auth.as_deref() {
        Some("none") => {
            tracing::warn!("authentication is off (--auth none): anyone who reaches this port can push and delete");
            return Ok(None);
        }
        Some(source) => source,
        None if matches!(storage, StorageKind::S3) => {
            return Err("--storage s3 needs --auth <policy file or s3://bucket/key> (or --auth none to \
                        run open, which lets anyone push and delete)"
                .into());
        }
        None => {
            tracing::warn!("no --auth given: the registry is open to everyone who reaches its port");
            return Ok(None);
        }
    };
    let reader: Arc<dyn PolicySource> = match (source.starts_with("s3://"), s3) {
        (true, Some(s3)) => Arc::new(Source::S3(s3, source.to_string())),
        (true, None) => return Err(format!("--auth {source}: an s3:// policy needs --storage s3")),
        (false, _) => Arc::new(Source::File(PathBuf::from(source))),
    };
    let text = reader.read().await?;
    let policy = Policy::parse(&text).map_err(|e| format!("auth policy {source}: {e}"))?;
    let secret = match (&args.auth_secret, &args.auth_secret_file, &args.auth_secret_ssm) {
        (Some(secret), ..) => secret.trim().as_bytes().to_vec(),
        (_, Some(path), _) => read_secret(path)?,
        (.., Some(name)) => berth_s3::ssm::read_parameter(name, &serve.s3.s3_region).await?.trim().as_bytes().to_vec(),
        (None, None, None) if matches!(storage, StorageKind::S3) => {
            return Err(format!(
                "--auth needs --auth-secret-file, --auth-secret-ssm or BERTH_AUTH_SECRET with --storage s3: every \
                 instance must sign tokens with the same secret (at least {MIN_SECRET_LEN} bytes, e.g. `openssl rand \
                 -base64 48`)"
            ));
        }
        (None, None, None) => {
            tracing::warn!(
                "no --auth-secret, --auth-secret-file or --auth-secret-ssm: tokens are signed with a random key and end with this process"
            );
            [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat()
        }
    };
    let auth = Auth::new(AuthConfig {
        policy,
        secret,
        service: args.auth_service.clone(),
        public_url: args.public_url.clone(),
        token_ttl: args.token_ttl,
        refresh_ttl: args.refresh_token_ttl,
        reload: Some((reader, args.auth_reload)),
    })?;
    tracing::info!(policy = source, service = %args.auth_service, "authentication on");
    Ok(Some(auth))
}

fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim().as_bytes().to_vec())
}

/// Where the policy is read from.
enum Source {
    File(PathBuf),
    S3(Arc<S3Storage>, String),
}

#[async_trait::async_trait]
impl PolicySource for Source {
    async fn read(&self) -> Result<String, String> {
        match self {
            Source::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read the auth policy {}: {e}", path.display())),
            Source::S3(s3, uri) => s3.read_uri(uri).await,
        }
    }
}
