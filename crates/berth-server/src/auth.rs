//! `--auth` and friends: builds the engine's [`Auth`] from a policy file, an `s3://` object, or
//! nothing (`--auth none`, or no flag on a local backend, where the registry stays open).

use std::path::Path;

use berth_core::auth::{Auth, AuthConfig, MIN_SECRET_LEN, policy::Policy};
use berth_s3::S3Storage;

use crate::{AuthArgs, StorageKind};

/// The auth of a `berth serve`: `Ok(None)` leaves the registry open.
pub async fn setup(args: &AuthArgs, storage: StorageKind, s3: Option<&S3Storage>) -> Result<Option<Auth>, String> {
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
    let text = match (source.starts_with("s3://"), s3) {
        (true, Some(s3)) => s3.read_uri(source).await?,
        (true, None) => return Err(format!("--auth {source}: an s3:// policy needs --storage s3")),
        (false, _) => {
            std::fs::read_to_string(source).map_err(|e| format!("cannot read the auth policy {source}: {e}"))?
        }
    };
    let policy = Policy::parse(&text).map_err(|e| format!("auth policy {source}: {e}"))?;
    let secret = match (&args.auth_secret, &args.auth_secret_file) {
        (Some(secret), _) => secret.trim().as_bytes().to_vec(),
        (None, Some(path)) => read_secret(path)?,
        (None, None) if matches!(storage, StorageKind::S3) => {
            return Err(format!(
                "--auth needs --auth-secret-file or BERTH_AUTH_SECRET with --storage s3: every instance \
                 must sign tokens with the same secret (at least {MIN_SECRET_LEN} bytes, e.g. `openssl rand -base64 48`)"
            ));
        }
        (None, None) => {
            tracing::warn!("no --auth-secret-file: tokens are signed with a random key and end with this process");
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
    })?;
    tracing::info!(policy = source, service = %args.auth_service, "authentication on");
    Ok(Some(auth))
}

fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim().as_bytes().to_vec())
}
