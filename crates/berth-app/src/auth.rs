//! Authentication from the settings: the policy from a file, an `s3://` object, or nothing
//! (`--auth none`, or no `--auth` on a local backend listening on loopback, where the registry
//! stays open), read again
//! every `--auth-reload`; the signing secret from a flag, a file or SSM Parameter Store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_auth::{Auth, AuthConfig, MIN_SECRET_LEN, Policy, PolicySource};
use berth_s3::S3Storage;

use crate::{Settings, StartError, StorageKind, ssm};

/// The auth of a registry: `Ok(None)` leaves it open.
pub(crate) async fn setup(
    settings: &Settings,
    s3: Option<Arc<S3Storage>>,
    region: &str,
) -> Result<Option<Auth>, StartError> {
    let args = &settings.auth;
    let source = match args.auth.as_deref() {
        Some("none") => {
            tracing::warn!("authentication is off (--auth none): anyone who reaches berth can push and delete");
            return Ok(None);
        }
        Some(source) => source,
        None => {
            tracing::warn!("no --auth given: the registry is open to everyone who reaches its port on this machine");
            return Ok(None);
        }
    };
    let reader: Arc<dyn PolicySource> = match (source.starts_with("s3://"), s3) {
        (true, Some(s3)) => Arc::new(Source::S3(s3, source.to_string())),
        (true, None) => {
            return Err(StartError::Settings(format!("--auth {source}: an s3:// policy needs --storage s3")));
        }
        (false, _) => Arc::new(Source::File(PathBuf::from(source))),
    };
    let text = reader.read().await.map_err(StartError::Auth)?;
    let policy = Policy::parse(&text).map_err(|e| StartError::Auth(format!("auth policy {source}: {e}")))?;
    let secret = secret(settings, region).await?;
    let auth = Auth::new(AuthConfig {
        policy,
        secret,
        service: args.auth_service.clone(),
        token_ttl: args.token_ttl,
        refresh_ttl: args.refresh_token_ttl,
        reload: Some((reader, args.auth_reload)),
    })
    .map_err(StartError::Auth)?;
    tracing::info!(policy = source, service = %args.auth_service, "authentication on");
    Ok(Some(auth))
}

/// Refuses, before anything starts, to run open (no `--auth`) where that was hardly meant: over
/// S3 (and so in Lambda), or listening beyond loopback. `--auth none` says it was.
pub(crate) fn refuse_open(settings: &Settings) -> Result<(), StartError> {
    if settings.auth.auth.is_some() {
        return Ok(());
    }
    if settings.storage == StorageKind::S3 {
        return Err(StartError::Settings(
            "--storage s3 needs --auth <policy file or s3://bucket/key> (or --auth none to run open, which lets \
             anyone push and delete)"
                .into(),
        ));
    }
    if !settings.listen.ip().is_loopback() {
        return Err(StartError::Settings(format!(
            "--listen {} is reachable from other machines: give --auth <policy file>, or --auth none to run open \
             (anyone who reaches the port can push and delete)",
            settings.listen
        )));
    }
    Ok(())
}

/// The token signing secret: given, from a file, or from SSM; a random one (tokens die with the
/// process) only for a local backend.
async fn secret(settings: &Settings, region: &str) -> Result<Vec<u8>, StartError> {
    let args = &settings.auth;
    let text = match (&args.auth_secret, &args.auth_secret_file, &args.auth_secret_ssm) {
        (Some(secret), ..) => secret.clone(),
        (_, Some(path), _) => read_secret(path)?,
        (.., Some(name)) => ssm::read_parameter(name, region).await.map_err(StartError::Auth)?,
        (None, None, None) if settings.storage == StorageKind::S3 => {
            return Err(StartError::Settings(format!(
                "--auth needs --auth-secret-file, --auth-secret-ssm or BERTH_AUTH_SECRET with --storage s3: every \
                 instance must sign tokens with the same secret (at least {MIN_SECRET_LEN} bytes, e.g. `openssl rand \
                 -base64 48`)"
            )));
        }
        (None, None, None) => {
            tracing::warn!(
                "no --auth-secret, --auth-secret-file or --auth-secret-ssm: tokens are signed with a random key and \
                 end with this process"
            );
            return Ok([uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat());
        }
    };
    Ok(text.trim().as_bytes().to_vec())
}

/// The secret in `path`; warns when others may read the file.
fn read_secret(path: &Path) -> Result<String, StartError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| StartError::Auth(format!("cannot read {}: {e}", path.display())))?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            tracing::warn!(
                "the signing secret {} is readable by other users (mode {mode:03o}): whoever reads it can sign \
                 tokens; chmod 600 it",
                path.display()
            );
        }
    }
    Ok(text)
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
