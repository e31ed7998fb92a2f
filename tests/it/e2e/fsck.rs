//! `berth fsck`: clean after real pushes (on the filesystem here; over S3 the reliability tests
//! end with it), each kind of damage done to the files underneath reported by name, with a
//! non-zero exit; `--repair` removes what cannot be right, and a push mends the rest.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::layout::{Layout, tar};
use super::server::{Server, binary};
use crate::common::{describe, random_bytes, require_tool, run};

/// `berth fsck` with these storage arguments.
pub(crate) fn fsck(storage: &[&str]) -> Output {
    run(Command::new(binary()).arg("fsck").args(storage), Duration::from_secs(300))
}

/// Asserts a clean check.
pub(crate) fn assert_clean(storage: &[&str]) {
    let out = fsck(storage);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(": 0 problems"), "berth fsck: {}", describe(&out));
}

fn digest_path(root: &Path, prefix: &str, digest: &str) -> std::path::PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    root.join(prefix).join(alg).join(hex)
}

#[tokio::test]
async fn fsck_is_clean_after_pushes_and_names_every_kind_of_damage() {
    if !require_tool("skopeo", "fsck_is_clean_after_pushes_and_names_every_kind_of_damage") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let server = Server::start_on(root.path());
    let dir = tempfile::tempdir().unwrap();
    let src = Layout::create(&dir.path().join("src"));
    let amd = src.image("amd64", &[tar(&[("a.bin", &random_bytes(200_000, 1))]), tar(&[("b", b"b")])]);
    let arm = src.image("arm64", &[tar(&[("c.bin", &random_bytes(100_000, 2))])]);
    let index = src.index(&[(&amd, "amd64"), (&arm, "arm64")]);
    src.tag("multi", &index);
    src.tag("single", &amd.manifest);
    for (from, to) in [("multi", "fsck/app:multi"), ("single", "fsck/app:single")] {
        let dest = format!("docker://{}/{to}", server.host());
        let out = run(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false"])
                .args([src.name(from), dest]),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "push: {}", describe(&out));
    }
    drop(server);
    let r = root.path().to_str().unwrap();
    let storage = ["--storage", "fs", "--root", r];
    assert_clean(&storage);

    // Damage, one kind each.
    let repo = root.path().join("repos/fsck/app");
    std::fs::write(digest_path(root.path(), "blobs", &amd.layers[1].digest), b"not b").unwrap();
    std::fs::remove_file(digest_path(root.path(), "blobs", &arm.layers[0].digest)).unwrap();
    std::fs::remove_file(digest_path(&repo, "_manifests", &amd.manifest.digest)).unwrap();
    std::fs::create_dir_all(root.path().join("uploads/0rphan")).unwrap();
    std::fs::write(root.path().join("uploads/0rphan/pending-bytes"), b"bytes").unwrap();

    let out = fsck(&storage);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "fsck passed damaged storage: {}", describe(&out));
    let b = &amd.layers[1].digest;
    let c = &arm.layers[0].digest;
    let m = &amd.manifest.digest;
    for expected in [
        format!("blob blobs/{}: its bytes hash to", b.replace(':', "/")),
        format!("repository fsck/app: links blob {c}, which does not exist"),
        format!("repository fsck/app: manifest {} references blob {c}, which it does not have", arm.manifest.digest),
        format!("repository fsck/app: index {} lists manifest {m}, which it does not have", index.digest),
        format!("repository fsck/app: tag single names manifest {m}, which it does not have"),
        "uploads/0rphan/pending-bytes: upload bytes without a session".to_string(),
        ": 6 problems".to_string(),
    ] {
        assert!(stdout.contains(&expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("berth: 6 problems found"), "{}", describe(&out));
    // Without hashing, the corrupt blob goes unseen and the rest is still found.
    let out = fsck(&[&storage[..], &["--no-hash"]].concat());
    assert!(String::from_utf8_lossy(&out.stdout).contains(": 5 problems"), "{}", describe(&out));

    // --repair removes the corrupt blob, the links to missing blobs (the corrupt one's too, in a
    // second pass), the dangling tag and the orphaned bytes; what only a push mends is left.
    let out = fsck(&[&storage[..], &["--repair"]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "problems are left: {}", describe(&out));
    for expected in [
        format!("repaired: blob blobs/{}: its bytes hash to", b.replace(':', "/")),
        format!("repaired: repository fsck/app: links blob {c}, which does not exist"),
        format!("repaired: repository fsck/app: links blob {b}, which does not exist"),
        format!("repaired: repository fsck/app: tag single names manifest {m}, which it does not have"),
        "repaired: uploads/0rphan/pending-bytes: upload bytes without a session".to_string(),
        ": 2 problems".to_string(),
    ] {
        assert!(stdout.contains(&expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!root.path().join("uploads/0rphan/pending-bytes").exists());

    // Pushing again uploads what was removed; then all is well.
    let server = Server::start_on(root.path());
    let dest = format!("docker://{}/fsck/app:multi", server.host());
    let out = run(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false"])
            .args([src.name("multi"), dest]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "push again: {}", describe(&out));
    drop(server);
    assert_clean(&storage);
}
