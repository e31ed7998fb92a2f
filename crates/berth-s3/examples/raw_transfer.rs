//! Baseline for the S3 benchmark (bench/s3.sh): moves a file to and from a bucket with
//! aws-sdk-s3 alone, on berth's SDK configuration (`berth_s3::sdk_config`) — multipart upload
//! with the same part size and parallelism as berth, and a server-side CopyObject — and prints
//! the seconds each took. (Downloads are compared with curl, the client of the pull through
//! berth.)
//!
//! Usage: `raw_transfer <endpoint> <bucket> <file> [part MiB]` with credentials in the
//! environment. Prints `upload <s>` and `copy <s>` lines.

use std::time::Instant;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::AsyncReadExt;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, bucket, file, ..] = args.as_slice() else {
        return Err("usage: raw_transfer <endpoint> <bucket> <file> [part MiB]".into());
    };
    let part_size = args.get(4).map_or(Ok(8), |s| s.parse::<usize>())? * 1024 * 1024;
    let shared = berth_s3::sdk_config("us-east-1").await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    let client = Client::from_conf(config);
    let key = format!("raw-bench/{}", std::process::id());

    let started = Instant::now();
    upload(&client, bucket, &key, file, part_size).await?;
    println!("upload {:.3}", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let copy = format!("{key}-copy");
    client.copy_object().bucket(bucket).key(&copy).copy_source(format!("{bucket}/{key}")).send().await?;
    println!("copy {:.3}", started.elapsed().as_secs_f64());

    for k in [key, copy] {
        client.delete_object().bucket(bucket).key(k).send().await?;
    }
    Ok(())
}

/// Multipart upload, 3 parts in flight, as berth streams a PATCH.
async fn upload(client: &Client, bucket: &str, key: &str, file: &str, part_size: usize) -> Result<(), Error> {
    let id = client.create_multipart_upload().bucket(bucket).key(key).send().await?.upload_id.ok_or("no upload id")?;
    let mut file = tokio::fs::File::open(file).await?;
    let mut running = std::collections::VecDeque::new();
    let mut parts = Vec::new();
    for number in 1.. {
        let mut buf = vec![0u8; part_size];
        let mut filled = 0;
        while filled < part_size {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        if running.len() >= 3 {
            let handle: tokio::task::JoinHandle<Result<CompletedPart, Error>> = running.pop_front().ok_or("empty")?;
            parts.push(handle.await??);
        }
        let request =
            client.upload_part().bucket(bucket).key(key).upload_id(&id).part_number(number).body(ByteStream::from(buf));
        running.push_back(tokio::spawn(async move {
            let etag = request.send().await?.e_tag;
            Ok(CompletedPart::builder().part_number(number).set_e_tag(etag).build())
        }));
        if filled < part_size {
            break;
        }
    }
    for handle in running {
        parts.push(handle.await??);
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await?;
    Ok(())
}
