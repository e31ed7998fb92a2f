//! Two `berth serve` processes on one bucket (moto), clients spread across both: 16 concurrent
//! skopeo pushes of images that share a base layer, half of them racing for the same tag, then
//! pulls from the other instance while tags are deleted. Every push that succeeded pulls back
//! byte for byte, the raced tag ends on one of the images written to it, a pull either gets a
//! whole image or a clean "unknown", and `berth fsck` finds nothing wrong.

use std::process::Command;
use std::time::Duration;

use super::fsck::assert_clean;
use super::layout::{Layout, tar};
use super::server::Server;
use crate::common::{S3Kind, S3Server, describe, http, random_bytes, require_tool, run, sha256, unique};

fn skopeo(args: &[&str]) -> std::process::Output {
    run(Command::new("skopeo").arg("--insecure-policy").args(args), Duration::from_secs(300))
}

#[test]
fn two_instances_on_one_bucket_lose_nothing() {
    let test = "two_instances_on_one_bucket_lose_nothing";
    if !require_tool("skopeo", test) {
        return;
    }
    let Some(S3Server { endpoint, bucket }) = S3Server::require(S3Kind::Moto, test) else { return };
    let prefix = format!("instances/{}", unique());
    let servers = [Server::start_s3(&endpoint, &bucket, &prefix), Server::start_s3(&endpoint, &bucket, &prefix)];
    let dir = tempfile::tempdir().unwrap();
    let base = tar(&[("base.bin", &random_bytes(3 << 20, 100))]);

    // 16 images sharing the base layer; pushes 0..8 go to repository "shared" and race for its
    // tag "latest", the others to repositories of their own.
    let images: Vec<(Layout, String, String)> = (0..16u64)
        .map(|i| {
            let src = Layout::create(&dir.path().join(format!("src-{i}")));
            let own = tar(&[("own.bin", &random_bytes(((i as usize) + 1) * 300_000, 200 + i))]);
            let image = src.image("amd64", &[base.clone(), own]);
            src.tag("v1", &image.manifest);
            let target = if i < 8 { "shared:latest".to_string() } else { format!("own-{i}:v1") };
            (src, target, image.manifest.digest)
        })
        .collect();
    let pushed: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, (src, target, _))| {
                let server = &servers[i % 2];
                scope.spawn(move || {
                    let dest = format!("docker://{}/race/{target}", server.host());
                    let out =
                        skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &src.name("v1"), &dest]);
                    if !out.status.success() {
                        eprintln!("push {i} to {target} failed: {}", describe(&out));
                    }
                    out.status.success()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(pushed.iter().all(|ok| *ok), "pushes failed: {pushed:?}");

    // Pulls from the instance that did not take the push, while the even tags of repositories of
    // their own are deleted through the other one.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pulled: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let deleter = scope.spawn(|| {
            rt.block_on(async {
                for (i, (_, target, digest)) in images.iter().enumerate().skip(8).step_by(2) {
                    let repo = target.split(':').next().unwrap();
                    let url = servers[i % 2].url(&format!("/v2/race/{repo}/manifests/{digest}"));
                    let r = http().delete(url).send().await.unwrap();
                    assert_eq!(r.status(), 202, "delete {target}");
                }
            })
        });
        let handles: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, (_, target, _))| {
                let server = &servers[(i + 1) % 2];
                let back = dir.path().join(format!("back-{i}"));
                scope.spawn(move || {
                    let from = format!("docker://{}/race/{target}", server.host());
                    let dest = format!("oci:{}:v1", back.display());
                    let out = skopeo(&["copy", "--preserve-digests", "--src-tls-verify=false", &from, &dest]);
                    if out.status.success() {
                        Ok(Layout::open(&back).reference("v1").digest)
                    } else {
                        Err(String::from_utf8_lossy(&out.stderr).to_string())
                    }
                })
            })
            .collect();
        deleter.join().unwrap();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let raced: Vec<&String> = images[..8].iter().map(|(_, _, digest)| digest).collect();
    for (i, result) in pulled.iter().enumerate() {
        let deleted = i >= 8 && i % 2 == 0;
        match result {
            // skopeo verifies every blob's digest: a pull that succeeded got whole content.
            Ok(digest) if i < 8 => assert!(raced.contains(&digest), "pull {i}: {digest} was never pushed to the tag"),
            Ok(digest) => assert_eq!(digest, &images[i].2, "pull {i}"),
            Err(e) if deleted => assert!(e.contains("manifest unknown"), "pull {i} of a deleted tag: {e}"),
            Err(e) => panic!("pull {i} failed: {e}"),
        }
    }
    // The raced tag ends on one of the images written to it, the same on both instances.
    let tags: Vec<String> = servers
        .iter()
        .map(|server| {
            let out = skopeo(&[
                "inspect",
                "--tls-verify=false",
                "--raw",
                &format!("docker://{}/race/shared:latest", server.host()),
            ]);
            assert!(out.status.success(), "{}", describe(&out));
            sha256(&out.stdout)
        })
        .collect();
    assert_eq!(tags[0], tags[1], "the instances disagree on the tag");
    assert!(raced.contains(&&tags[0]), "the tag names {}, which was never pushed to it", tags[0]);

    let args = ["--storage", "s3", "--s3-path-style", "--s3-endpoint", &endpoint, "--s3-bucket", &bucket];
    assert_clean(&[&args[..], &["--s3-prefix", &prefix]].concat());
}
