//! Classifies S3 errors into the storage contract's variants by HTTP status and error code,
//! not by exact messages: S3-compatible servers disagree on codes (an unknown key is
//! `NoSuchKey`, `NotFound` or a bare 404; an expired presign 400 or 403).

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use berth_storage::StorageError;

/// Maps an SDK error of `operation` on `key` to a storage error, and records how the call ended.
pub(crate) fn classify<E, R>(operation: &'static str, key: &str, err: SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    SdkError<E, R>: HasStatus,
{
    let status = err.status();
    let code = err.as_service_error().and_then(|e| e.code()).unwrap_or_default().to_string();
    let error = match (status, code.as_str()) {
        (Some(404), _) | (_, "NoSuchKey" | "NoSuchUpload" | "NotFound") => StorageError::NotFound(key.to_string()),
        // 409 ConditionalRequestConflict: another conditional write to the key is in progress.
        (Some(412 | 409), _) | (_, "PreconditionFailed") => StorageError::PreconditionFailed(key.to_string()),
        (Some(416), _) | (_, "InvalidRange") => StorageError::InvalidRange(key.to_string()),
        (_, "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall") => {
            StorageError::Invalid(format!("{operation} {key}: {}", DisplayErrorContext(&err)))
        }
        _ => StorageError::Backend(format!("{operation} {key}: {}", DisplayErrorContext(&err)).into()),
    };
    berth_storage::calls::failed(operation, &error);
    error
}

/// One line describing an SDK error, for start-up messages.
pub(crate) fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    SdkError<E, R>: HasStatus,
{
    match (err.status(), err.as_service_error().and_then(|e| e.code())) {
        (Some(403), _) => "access denied (check the credentials and the bucket policy)".to_string(),
        (Some(404), _) => "no such bucket".to_string(),
        (Some(status), Some(code)) => format!("HTTP {status} {code}"),
        (Some(status), None) => format!("HTTP {status}"),
        (None, _) => unanswered(err),
    }
}

/// One line saying why an AWS request got no answer (no credentials, a server that cannot be
/// reached, a timeout), for start-up messages: the cause at the end of the error's chain, not
/// the SDK's nested debug text.
pub fn unanswered(err: &(dyn std::error::Error + 'static)) -> String {
    let chain = || std::iter::successors(Some(err), |e| e.source());
    let cause = chain().last().map_or_else(String::new, ToString::to_string);
    match chain().find_map(|e| e.downcast_ref::<CredentialsError>()) {
        Some(CredentialsError::CredentialsNotLoaded(_)) => "no AWS credentials found: set AWS_ACCESS_KEY_ID and \
            AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an IAM role"
            .to_string(),
        Some(_) => format!("cannot load AWS credentials: {cause}"),
        None => format!("no answer from the server: {cause}"),
    }
}

/// The HTTP status of a failed request, when a response arrived.
pub(crate) trait HasStatus {
    fn status(&self) -> Option<u16>;
}

impl<E> HasStatus for SdkError<E, aws_sdk_s3::config::http::HttpResponse> {
    fn status(&self) -> Option<u16> {
        self.raw_response().map(|r| r.status().as_u16())
    }
}
