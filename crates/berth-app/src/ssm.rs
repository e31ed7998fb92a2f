//! Secrets kept in AWS Systems Manager Parameter Store, for deployments on AWS: the token
//! signing secret of `berth serve --auth-secret-ssm` and of the Lambda (`BERTH_AUTH_SECRET_SSM`),
//! read once at start-up so that it never appears in a command line or a function's
//! configuration.
//!
//! A `SecureString` parameter is decrypted on read (the caller needs `ssm:GetParameter`, and
//! `kms:Decrypt` for a customer-managed key). A Secrets Manager secret is read through the same
//! call as `/aws/reference/secretsmanager/<secret id>` (which needs
//! `secretsmanager:GetSecretValue` as well). The endpoint follows the SDK's configuration, so
//! `AWS_ENDPOINT_URL_SSM` points it at a local server in tests.

use aws_sdk_ssm::error::ProvideErrorMetadata;

/// The value of parameter `name` in `region`, decrypted.
pub(crate) async fn read_parameter(name: &str, region: &str) -> Result<String, String> {
    let client = aws_sdk_ssm::Client::new(&berth_s3::sdk_config(region).await);
    let answer = client.get_parameter().name(name).with_decryption(true).send().await.map_err(|e| {
        let service = e.as_service_error();
        match service.and_then(|s| s.code()) {
            Some("ParameterNotFound") => format!("SSM parameter {name:?} does not exist"),
            Some(code) => format!(
                "cannot read SSM parameter {name:?}: {code}: {}",
                service.and_then(|s| s.message()).unwrap_or_default()
            ),
            None => format!("cannot read SSM parameter {name:?}: {}", berth_s3::unanswered(&e)),
        }
    })?;
    answer
        .parameter
        .and_then(|p| p.value)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("SSM parameter {name:?} has no value"))
}
