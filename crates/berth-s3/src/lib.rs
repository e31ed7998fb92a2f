//! S3 backend of berth's [`Storage`] trait, on aws-sdk-s3.
//!
//! The mapping is direct: conditional writes are `If-None-Match: *` / `If-Match` on PutObject and
//! CompleteMultipartUpload; a conditional copy (CopyObject has no destination condition) is a
//! multipart upload of parallel UploadPartCopy ranges completed with the condition, which also
//! copies objects beyond CopyObject's 5 GiB; blobs are served by presigned GET URLs, signed for
//! the endpoint clients use (`public_endpoint`) when it differs from berth's own. Every S3 request
//! is recorded with [`berth_storage::calls::record`], so each registry request's storage cost is known.

mod errors;

pub use self::errors::unanswered;

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream as SdkStream, DateTime};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as SdkPart};
use aws_smithy_http_client::tls;
use berth_storage::{
    ByteStream, CompletedPart, Condition, GetObject, ListPage, ObjectMeta, Result, Storage, StorageError,
};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use errors::classify;

/// Size of the ranges a conditional or large copy is split into (UploadPartCopy).
const COPY_PART: u64 = 256 * 1024 * 1024;
/// Largest object an unconditional copy makes with one CopyObject (S3's limit is 5 GiB).
const COPY_OBJECT_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// UploadPartCopy requests in flight for one copy.
const COPY_PARALLELISM: usize = 8;

/// How to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Bucket name.
    pub bucket: String,
    /// Region (any value for most S3-compatible servers).
    pub region: String,
    /// Endpoint URL berth talks to; `None` for AWS.
    pub endpoint: Option<String>,
    /// Endpoint presigned URLs are signed for, when clients reach storage by another address.
    pub public_endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most local servers.
    pub path_style: bool,
    /// Prefix under which every key is stored, to share a bucket.
    pub prefix: String,
}

/// The AWS SDK configuration each of berth's clients starts from (S3, SSM): credentials and
/// settings from the standard chain (environment, profile, role), in `region`, with an HTTPS
/// client on rustls with ring.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .http_client(https)
        .load()
        .await
}

/// Objects in an S3 bucket.
pub struct S3Storage {
    client: Client,
    presigner: Client,
    bucket: String,
    prefix: String,
}

impl S3Storage {
    /// Builds clients from the standard AWS configuration chain (environment, profile, role).
    /// Makes no request; call [`S3Storage::check`] to verify the bucket.
    pub async fn new(options: S3Options) -> Self {
        let shared = sdk_config(&options.region).await;
        let client_for = |endpoint: Option<&String>| {
            let mut builder = aws_sdk_s3::config::Builder::from(&shared).force_path_style(options.path_style);
            if let Some(endpoint) = endpoint {
                // S3-compatible servers differ in their support of streaming checksums: send and
                // check them only where an operation requires it.
                builder = builder
                    .endpoint_url(endpoint)
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
            }
            Client::from_conf(builder.build())
        };
        let client = client_for(options.endpoint.as_ref());
        let presigner = client_for(options.public_endpoint.as_ref().or(options.endpoint.as_ref()));
        let mut prefix = options.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Self { client, presigner, bucket: options.bucket, prefix }
    }

    /// Verifies at start-up that the bucket answers with these credentials and that the server
    /// enforces conditional writes (dedupe and tag races depend on them). One line on failure.
    pub async fn check(&self) -> std::result::Result<(), String> {
        berth_storage::calls::record("HeadBucket");
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| format!("bucket {:?} is not usable: {}", self.bucket, errors::describe(&e)))?;
        let probe = format!("_berth/probe/{}", uuid::Uuid::new_v4().simple());
        let first = self.put(&probe, Bytes::from_static(b"probe"), Condition::CreateOnly).await;
        let second = self.put(&probe, Bytes::from_static(b"probe"), Condition::CreateOnly).await;
        let _ = self.delete(&probe).await;
        match (first, second) {
            (Ok(_), Err(StorageError::PreconditionFailed(_))) => Ok(()),
            (Err(e), _) => Err(format!("cannot write to bucket {:?}: {e}", self.bucket)),
            (Ok(_), _) => Err(format!(
                "the S3 server of bucket {:?} ignores conditional writes (If-None-Match: *); berth needs them",
                self.bucket
            )),
        }
    }

    /// Reads a whole small object named by an `s3://bucket/key` URI (any bucket these
    /// credentials can read), as text: the auth policy of S3 and Lambda deployments.
    pub async fn read_uri(&self, uri: &str) -> std::result::Result<String, String> {
        let (bucket, key) = uri
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(|| format!("{uri:?} is not an s3://bucket/key URI"))?;
        let object = self.client.get_object().bucket(bucket).key(key).send().await.map_err(|e| {
            match e.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => format!("cannot read {uri}: no such object"),
                _ => format!("cannot read {uri}: {}", errors::describe(&e)),
            }
        })?;
        let bytes = object.body.collect().await.map_err(|e| format!("cannot read {uri}: {e}"))?.into_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{uri} is not UTF-8 text"))
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn copy_source(&self, key: &str) -> String {
        let path = format!("{}/{}", self.bucket, self.full(key));
        path.split('/').map(percent_encode).collect::<Vec<_>>().join("/")
    }

    /// An object's metadata; `modified` is S3's `LastModified` in whole seconds (as HEAD gives
    /// it; listings have milliseconds), or now for a write's answer.
    fn meta(&self, key: &str, size: u64, etag: Option<String>, modified: Option<DateTime>) -> ObjectMeta {
        let modified = match modified {
            Some(t) => UNIX_EPOCH + Duration::from_secs(t.secs().max(0) as u64),
            None => SystemTime::now(),
        };
        ObjectMeta { key: key.to_string(), size, etag: etag.unwrap_or_default(), modified }
    }

    async fn copy_in_parts(&self, src: &str, dst: &str, size: u64, cond: Condition) -> Result<ObjectMeta> {
        let upload_id = self.create_multipart(dst).await?;
        let ranges: Vec<(u32, Range<u64>)> = (0..size.div_ceil(COPY_PART))
            .map(|i| (i as u32 + 1, i * COPY_PART..((i + 1) * COPY_PART).min(size)))
            .collect();
        let source = self.copy_source(src);
        let (full_dst, upload) = (self.full(dst), upload_id.clone());
        let parts: Result<Vec<CompletedPart>> = futures_util::stream::iter(ranges)
            .map(|(number, range)| {
                berth_storage::calls::record("UploadPartCopy");
                let request = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(&full_dst)
                    .upload_id(&upload)
                    .part_number(number as i32)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1));
                async move {
                    let out = request.send().await.map_err(|e| classify("UploadPartCopy", src, e))?;
                    let etag = out.copy_part_result.and_then(|r| r.e_tag).unwrap_or_default();
                    Ok(CompletedPart { number, etag, size: range.end - range.start })
                }
            })
            .buffered(COPY_PARALLELISM)
            .try_collect()
            .await;
        let completed = match parts {
            Ok(parts) => self.complete_multipart(dst, &upload_id, &parts, cond).await,
            Err(e) => Err(e),
        };
        if completed.is_err() {
            let _ = self.abort_multipart(dst, &upload_id).await;
        }
        completed
    }
}

/// Percent-encodes one path segment of a copy source (RFC 3986 unreserved characters pass).
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn body_stream(body: SdkStream) -> ByteStream {
    Box::pin(futures_util::stream::unfold(body, |mut body| async move {
        body.next().await.map(|chunk| (chunk.map_err(StorageError::backend), body))
    }))
}

/// Parses `bytes <first>-<last>/<total>`.
fn parse_content_range(value: &str) -> Option<(Range<u64>, u64)> {
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    Some((first..last + 1, total.parse().ok()?))
}

#[async_trait::async_trait]
impl Storage for S3Storage {
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        berth_storage::calls::record("HeadObject");
        let out = self.client.head_object().bucket(&self.bucket).key(self.full(key)).send().await;
        let out = out.map_err(|e| classify("HeadObject", key, e))?;
        Ok(self.meta(key, out.content_length.unwrap_or(0) as u64, out.e_tag, out.last_modified))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetObject> {
        let mut request = self.client.get_object().bucket(&self.bucket).key(self.full(key));
        if let Some(r) = &range {
            if r.start >= r.end {
                return Err(StorageError::InvalidRange(key.to_string()));
            }
            request = request.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        berth_storage::calls::record("GetObject");
        let out = request.send().await.map_err(|e| classify("GetObject", key, e))?;
        let length = out.content_length.unwrap_or(0) as u64;
        let (range, size) = match out.content_range.as_deref().and_then(parse_content_range) {
            Some((range, total)) => (range, total),
            None => (0..length, length),
        };
        Ok(GetObject { meta: self.meta(key, size, out.e_tag, out.last_modified), range, body: body_stream(out.body) })
    }

    async fn put(&self, key: &str, body: Bytes, cond: Condition) -> Result<ObjectMeta> {
        let size = body.len() as u64;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .content_length(size as i64)
            .body(SdkStream::from(body));
        request = match cond {
            Condition::Overwrite => request,
            Condition::CreateOnly => request.if_none_match("*"),
            Condition::IfMatch(etag) => request.if_match(etag),
        };
        berth_storage::calls::record("PutObject");
        let out = request.send().await.map_err(|e| classify("PutObject", key, e))?;
        Ok(self.meta(key, size, out.e_tag, None))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        berth_storage::calls::record("DeleteObject");
        match self.client.delete_object().bucket(&self.bucket).key(self.full(key)).send().await {
            Ok(_) => Ok(()),
            Err(e) => match classify("DeleteObject", key, e) {
                StorageError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn copy(&self, src: &str, dst: &str, cond: Condition) -> Result<ObjectMeta> {
        let size = self.head(src).await?.size;
        if size == 0 {
            return self.put(dst, Bytes::new(), cond).await;
        }
        if cond == Condition::Overwrite && size <= COPY_OBJECT_MAX {
            berth_storage::calls::record("CopyObject");
            let out = self
                .client
                .copy_object()
                .bucket(&self.bucket)
                .key(self.full(dst))
                .copy_source(self.copy_source(src))
                .send()
                .await
                .map_err(|e| classify("CopyObject", src, e))?;
            let result = out.copy_object_result;
            let (etag, modified) = result.map_or((None, None), |r| (r.e_tag, r.last_modified));
            return Ok(self.meta(dst, size, etag, modified));
        }
        self.copy_in_parts(src, dst, size, cond).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let want = (limit - objects.len()).min(1000) as i32;
            let mut request =
                self.client.list_objects_v2().bucket(&self.bucket).prefix(self.full(prefix)).max_keys(want);
            request = match (&token, start_after) {
                (Some(t), _) => request.continuation_token(t),
                (None, Some(after)) => request.start_after(self.full(after)),
                (None, None) => request,
            };
            berth_storage::calls::record("ListObjectsV2");
            let out = request.send().await.map_err(|e| classify("ListObjectsV2", prefix, e))?;
            let truncated = out.is_truncated.unwrap_or(false);
            objects.extend(out.contents.unwrap_or_default().into_iter().filter_map(|o| {
                let key = o.key?.strip_prefix(&self.prefix)?.to_string();
                Some(self.meta(&key, o.size.unwrap_or(0) as u64, o.e_tag, o.last_modified))
            }));
            token = out.next_continuation_token;
            if !truncated || token.is_none() || objects.len() >= limit {
                return Ok(ListPage { objects, truncated });
            }
        }
    }

    async fn create_multipart(&self, key: &str) -> Result<String> {
        berth_storage::calls::record("CreateMultipartUpload");
        let out = self.client.create_multipart_upload().bucket(&self.bucket).key(self.full(key)).send().await;
        out.map_err(|e| classify("CreateMultipartUpload", key, e))?
            .upload_id
            .ok_or_else(|| StorageError::backend("CreateMultipartUpload returned no upload id"))
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, _offset: u64, body: Bytes) -> Result<String> {
        berth_storage::calls::record("UploadPart");
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .part_number(number as i32)
            .content_length(body.len() as i64)
            .body(SdkStream::from(body))
            .send()
            .await
            .map_err(|e| classify("UploadPart", key, e))?;
        out.e_tag.ok_or_else(|| StorageError::backend("UploadPart returned no ETag"))
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        cond: Condition,
    ) -> Result<ObjectMeta> {
        let sdk_parts: Vec<SdkPart> =
            parts.iter().map(|p| SdkPart::builder().part_number(p.number as i32).e_tag(&p.etag).build()).collect();
        let mut request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(sdk_parts)).build());
        request = match cond {
            Condition::Overwrite => request,
            Condition::CreateOnly => request.if_none_match("*"),
            Condition::IfMatch(etag) => request.if_match(etag),
        };
        berth_storage::calls::record("CompleteMultipartUpload");
        let out = request.send().await.map_err(|e| classify("CompleteMultipartUpload", key, e))?;
        Ok(self.meta(key, parts.iter().map(|p| p.size).sum(), out.e_tag, None))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        berth_storage::calls::record("AbortMultipartUpload");
        let out = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .send()
            .await;
        match out.map_err(|e| classify("AbortMultipartUpload", key, e)) {
            Ok(_) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<Option<String>> {
        let config = PresigningConfig::expires_in(ttl).map_err(StorageError::backend)?;
        let request = self.presigner.get_object().bucket(&self.bucket).key(self.full(key)).presigned(config).await;
        // Presigning signs locally: no call is made, so none is recorded.
        let request = request.map_err(|e| StorageError::backend(format!("{key}: cannot presign: {e}")))?;
        Ok(Some(request.uri().to_string()))
    }
}
