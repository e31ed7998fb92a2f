//! Garbage collection (`berth-gc`) beside the engine, in-process, over memory, the filesystem
//! and moto (whose conditional writes are atomic): what goes and what stays, retention, dry runs,
//! and the races — a collection in a loop beside concurrent pushes, and each step of the
//! handshakes with requests forced into the worst order by a storage wrapper that stops one
//! chosen call until the test lets it go. Also a run that dies midway, and what a run costs.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::{Config, Registry};
use berth_gc::{Collector, GcError, Options, Outcome, Report, Retention};
use berth_storage::{
    CompletedPart, Condition, FsStorage, GetObject, ListPage, MemoryStorage, ObjectMeta, Storage, StorageError,
};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{Harness, config};
use crate::common::{OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, S3Kind, http, random_bytes, sha256};

/// Memory, the filesystem, and moto when the test script started it.
async fn backends(test: &str) -> Vec<(&'static str, Arc<dyn Storage>, Option<tempfile::TempDir>)> {
    let mut all = Vec::new();
    for (label, store) in super::backends(S3Kind::Moto, test, "gc").await {
        all.push((label, store, None));
    }
    let dir = tempfile::tempdir().unwrap();
    all.push(("fs", Arc::new(FsStorage::new(dir.path()).unwrap()) as Arc<dyn Storage>, Some(dir)));
    all
}

/// The engine's configuration with the collectors' grace of 0: they must agree (see
/// `berth_core::gc`).
fn gc_config() -> Config {
    Config { gc_grace: Duration::ZERO, ..config() }
}

fn registry(store: &Arc<dyn Storage>) -> Harness {
    Harness::over(Registry::new(store.clone(), gc_config()), store.clone())
}

fn collector(store: &Arc<dyn Storage>, grace: Duration, retention: &str, dry_run: bool) -> Collector {
    let retention = Arc::new(Retention::parse(retention).unwrap());
    Collector::new(store.clone(), Options { grace, retention, dry_run, deadline: None })
}

/// One finished collection with grace 0.
async fn collect(store: &Arc<dyn Storage>, retention: &str) -> Report {
    match collector(store, Duration::ZERO, retention, false).run().await.unwrap() {
        Outcome::Finished(report) => report,
        Outcome::Paused(_) => panic!("a run without a deadline paused"),
    }
}

/// An image: config and layers pushed monolithically, the manifest tagged; its digest.
async fn push_image(h: &Harness, name: &str, tag: &str, layers: &[&[u8]]) -> String {
    let manifest = manifest(h, name, layers).await;
    let r = h.put_manifest(name, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    sha256(&manifest)
}

/// The bytes of an image manifest over `layers` (pushed, with a config, into `name`).
async fn manifest(h: &Harness, name: &str, layers: &[&[u8]]) -> Vec<u8> {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"layers\":{}}}", layers.len());
    let c = h.push_blob(name, config.as_bytes()).await;
    let mut descriptors = Vec::new();
    for layer in layers {
        let digest = h.push_blob(name, layer).await;
        descriptors.push(json!({"mediaType": OCI_LAYER, "digest": digest, "size": layer.len()}));
    }
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": c, "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap()
}

/// Whether `name:reference` pulls complete: the manifest, and every blob it names, with bytes of
/// their digests.
async fn pulls(h: &Harness, name: &str, reference: &str) -> Result<(), String> {
    let r = h.get(&format!("/v2/{name}/manifests/{reference}")).await;
    if r.status != StatusCode::OK {
        return Err(format!("manifest {name}:{reference}: {}", r.status));
    }
    let manifest: Value = serde_json::from_slice(&r.body).unwrap();
    let mut digests: Vec<String> =
        manifest["layers"].as_array().into_iter().flatten().map(|l| l["digest"].as_str().unwrap().into()).collect();
    digests.extend(manifest["config"]["digest"].as_str().map(str::to_string));
    for child in manifest["manifests"].as_array().into_iter().flatten() {
        Box::pin(pulls(h, name, child["digest"].as_str().unwrap())).await?;
    }
    for digest in digests {
        let r = h.get(&format!("/v2/{name}/blobs/{digest}")).await;
        let bytes = match r.status {
            StatusCode::OK => r.body.to_vec(),
            // S3: the bytes are where the redirect points.
            StatusCode::TEMPORARY_REDIRECT => {
                let got = http().get(r.location()).send().await.map_err(|e| e.to_string())?;
                if !got.status().is_success() {
                    return Err(format!("blob {digest} of {name}:{reference}: storage answered {}", got.status()));
                }
                got.bytes().await.map_err(|e| e.to_string())?.to_vec()
            }
            status => {
                let body = String::from_utf8_lossy(&r.body);
                let which = if manifest["config"]["digest"] == digest.as_str() { "config" } else { "layer" };
                return Err(format!("{which} blob {digest} of {name}:{reference}: {status} {body}"));
            }
        };
        if sha256(&bytes) != digest {
            return Err(format!("blob {digest} of {name}:{reference}: other bytes"));
        }
    }
    Ok(())
}

async fn keys(store: &Arc<dyn Storage>, prefix: &str) -> Vec<String> {
    store.list(prefix, None, 10_000).await.unwrap().keys()
}

/// The blob keys whose `gc/doomed/` markers are left, each checked to record a deletion (kept
/// for a while after it, see `berth_core::gc`) of a blob that is gone.
async fn deleted_markers(store: &Arc<dyn Storage>) -> Vec<String> {
    let mut blobs = Vec::new();
    for key in keys(store, "gc/doomed/").await {
        let body = store.get(&key, None).await.unwrap().bytes().await.unwrap();
        assert_eq!(body.as_ref(), b"deleted", "{key} is left, and not as the record of a deletion");
        let blob = format!("blobs/{}", key.strip_prefix("gc/doomed/").unwrap());
        assert!(store.head(&blob).await.is_err(), "{key} is left, and {blob} is there");
        blobs.push(blob);
    }
    blobs
}

#[tokio::test]
async fn a_deleted_image_loses_what_only_it_used_and_shared_blobs_stay() {
    for (backend, store, _dir) in backends("a_deleted_image_loses_what_only_it_used_and_shared_blobs_stay").await {
        let h = registry(&store);
        let (shared, only_a, only_b) = (random_bytes(5000, 1), random_bytes(6000, 2), random_bytes(7000, 3));
        let a = push_image(&h, "gc/a", "v1", &[&shared, &only_a]).await;
        push_image(&h, "gc/b", "v1", &[&shared, &only_b]).await;
        let blobs_before = keys(&store, "blobs/").await;

        // Young garbage stays.
        assert_eq!(h.delete(&format!("/v2/gc/a/manifests/{a}")).await.status, StatusCode::ACCEPTED);
        let young = collector(&store, Duration::from_secs(3600), "", false).run().await.unwrap();
        assert_eq!(young.report().links.removed + young.report().blobs.removed, 0, "{backend}: {:?}", young.report());
        assert_eq!(keys(&store, "blobs/").await, blobs_before);

        let report = collect(&store, "").await;
        assert_eq!(report.links.removed, 3, "{backend}: config and 2 layers of gc/a: {report:?}");
        // The config is the same bytes in both images: only gc/a's own layer goes.
        assert_eq!((report.blobs.removed, report.blobs.removed_bytes), (1, 6000), "{backend}: {report:?}");
        assert_eq!(report.repositories.removed, 1, "{backend}: gc/a is empty now");
        let remaining = keys(&store, "blobs/").await;
        assert!(
            remaining.contains(&format!("blobs/sha256/{}", &sha256(&shared)[7..])),
            "{backend}: the shared layer went"
        );
        assert!(!remaining.contains(&format!("blobs/sha256/{}", &sha256(&only_a)[7..])), "{backend}");
        assert_eq!(keys(&store, "repos/gc/a/").await, Vec::<String>::new(), "{backend}");
        assert_eq!(h.get("/v2/_catalog").await.json()["repositories"], json!(["gc/b"]), "{backend}");
        pulls(&h, "gc/b", "v1").await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        let only_a_key = format!("blobs/sha256/{}", &sha256(&only_a)[7..]);
        assert_eq!(deleted_markers(&store).await, vec![only_a_key], "{backend}: markers left");

        // Nothing more to do.
        let again = collect(&store, "").await;
        assert_eq!((again.links.removed, again.blobs.removed), (0, 0), "{backend}: {again:?}");
    }
}

#[tokio::test]
async fn index_entries_and_referrers_of_kept_manifests_stay_the_rest_goes() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let h = registry(&store);
    let untagged = "[[rules]]\nrepositories = [\"**\"]\ndelete_untagged_after = \"0s\"\n";
    let (one, two) = (
        manifest(&h, "multi", &[&random_bytes(3000, 11)]).await,
        manifest(&h, "multi", &[&random_bytes(3000, 12)]).await,
    );
    for m in [&one, &two] {
        assert_eq!(h.put_manifest("multi", &sha256(m), OCI_MANIFEST, m).await.status, StatusCode::CREATED);
    }
    let entry = |m: &Vec<u8>| json!({"mediaType": OCI_MANIFEST, "digest": sha256(m), "size": m.len()});
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry(&one), entry(&two)]}),
    )
    .unwrap();
    assert_eq!(h.put_manifest("multi", "latest", OCI_INDEX, &index).await.status, StatusCode::CREATED);
    // A referrer of an index entry, and one whose subject was never pushed.
    let mut signature: Value = serde_json::from_slice(&manifest(&h, "multi", &[b"signature"]).await).unwrap();
    signature["subject"] = entry(&one);
    let signature = serde_json::to_vec(&signature).unwrap();
    assert_eq!(
        h.put_manifest("multi", &sha256(&signature), OCI_MANIFEST, &signature).await.status,
        StatusCode::CREATED
    );
    let mut orphan: Value = serde_json::from_slice(&manifest(&h, "multi", &[b"orphan"]).await).unwrap();
    orphan["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": sha256(b"never pushed"), "size": 1});
    let orphan = serde_json::to_vec(&orphan).unwrap();
    assert_eq!(h.put_manifest("multi", &sha256(&orphan), OCI_MANIFEST, &orphan).await.status, StatusCode::CREATED);

    let report = collect(&store, untagged).await;
    assert_eq!(report.manifests.removed, 1, "only the referrer whose subject is gone: {report:?}");
    pulls(&h, "multi", "latest").await.unwrap();
    let r = h.get(&format!("/v2/multi/referrers/{}", sha256(&one))).await;
    assert_eq!(r.json()["manifests"][0]["digest"], sha256(&signature), "the referrer of a kept entry stays");
    assert_eq!(h.get(&format!("/v2/multi/manifests/{}", sha256(&orphan))).await.status, StatusCode::NOT_FOUND);

    // Without the index, its entries are untagged and unreferenced, and the signature follows its subject.
    assert_eq!(h.delete(&format!("/v2/multi/manifests/{}", sha256(&index))).await.status, StatusCode::ACCEPTED);
    let report = collect(&store, untagged).await;
    assert_eq!(report.manifests.removed, 3, "{report:?}");
    assert_eq!(keys(&store, "repos/multi/").await, Vec::<String>::new());
    assert_eq!(keys(&store, "blobs/").await, Vec::<String>::new());
}

#[tokio::test]
async fn retention_keeps_the_last_tags_and_patterns_and_a_dry_run_only_tells() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let h = registry(&store);
    for (i, tag) in ["v1", "a", "b", "c", "d"].into_iter().enumerate() {
        push_image(&h, "app", tag, &[&random_bytes(2000, 20 + i as u64)]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    push_image(&h, "other", "a", &[&random_bytes(2000, 30)]).await;
    let policy =
        "[[rules]]\nrepositories = [\"app\"]\nkeep_last = 2\nkeep_tags = [\"v*\"]\ndelete_untagged_after = \"0s\"\n";

    // The grace is the floor under retention too: nothing pushed within it goes.
    let young = collector(&store, Duration::from_secs(3600), policy, false).run().await.unwrap();
    assert_eq!((young.report().tags.removed, young.report().manifests.removed), (0, 0), "{}", young.report());
    assert_eq!(h.get("/v2/app/tags/list").await.json()["tags"], json!(["a", "b", "c", "d", "v1"]));

    let dry = collector(&store, Duration::ZERO, policy, true).run().await.unwrap();
    let lines = dry.report().would_remove.join("\n");
    assert!(lines.contains("app: tag repos/app/_tags/a") && lines.contains("app: tag repos/app/_tags/b"), "{lines}");
    assert!(!lines.contains("_tags/c") && !lines.contains("_tags/v1") && !lines.contains("other:"), "{lines}");
    assert_eq!(dry.report().tags.removed, 2);
    assert_eq!(h.get("/v2/app/tags/list").await.json()["tags"], json!(["a", "b", "c", "d", "v1"]), "a dry run removed");

    let report = collect(&store, policy).await;
    assert_eq!((report.tags.removed, report.manifests.removed), (2, 2), "{report:?}");
    // keep_last counts by push time: d and c are the newest, v1 matches a pattern.
    assert_eq!(h.get("/v2/app/tags/list").await.json()["tags"], json!(["c", "d", "v1"]));
    assert_eq!(h.get("/v2/other/tags/list").await.json()["tags"], json!(["a"]), "no rule names other");
    for tag in ["c", "d", "v1"] {
        pulls(&h, "app", tag).await.unwrap();
    }
    pulls(&h, "other", "a").await.unwrap();
}

#[tokio::test]
async fn a_client_that_skipped_a_blob_after_head_gets_manifest_blob_unknown_not_a_broken_image() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let h = registry(&store);
    let layer = random_bytes(4000, 40);
    let digest = push_image(&h, "skip", "v1", &[&layer]).await;
    let manifest = h.get("/v2/skip/manifests/v1").await.body;
    assert_eq!(h.delete(&format!("/v2/skip/manifests/{digest}")).await.status, StatusCode::ACCEPTED);
    // The client checks: the layer is there, so it does not upload it…
    assert_eq!(h.head(&format!("/v2/skip/blobs/{}", sha256(&layer))).await.status, StatusCode::OK);
    // …and garbage collection removes it before the manifest comes.
    collect(&store, "").await;
    let r = h.put_manifest("skip", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"), "{r:?}");
    assert_eq!(h.get("/v2/skip/manifests/v1").await.status, StatusCode::NOT_FOUND);
}

/// Storage that stops the first call matching a predicate until the test lets it go, and, as a
/// collection killed midway, fails every delete after a number of them.
struct Gated {
    inner: Arc<dyn Storage>,
    gate: Mutex<Option<Gate>>,
    /// Deletes that still succeed; `None`: all do.
    deletes_left: Mutex<Option<usize>>,
}

/// Which call a gate stops: (operation, key) → stop it.
type Matcher = Box<dyn Fn(&str, &str) -> bool + Send>;

struct Gate {
    matches: Matcher,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// The handles of a gate: wait until a call reached it, then let it go.
struct GateHandle {
    reached: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl Gated {
    fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Self { inner, gate: Mutex::new(None), deletes_left: Mutex::new(None) })
    }

    /// Stops the next call `op` (S3's operation name; `PutObject/IfMatch` for a conditional
    /// replace) on a key `matches` accepts.
    fn stop(&self, matches: impl Fn(&str, &str) -> bool + Send + 'static) -> GateHandle {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.gate.lock().unwrap() =
            Some(Gate { matches: Box::new(matches), reached: reached_tx, release: release_rx });
        GateHandle { reached: reached_rx, release: release_tx }
    }

    async fn pass(&self, op: &str, key: &str) {
        let gate = {
            let mut gate = self.gate.lock().unwrap();
            match gate.as_ref() {
                Some(g) if (g.matches)(op, key) => gate.take(),
                _ => None,
            }
        };
        if let Some(gate) = gate {
            let _ = gate.reached.send(());
            let _ = gate.release.await;
        }
    }
}

#[async_trait::async_trait]
impl Storage for Gated {
    async fn head(&self, key: &str) -> berth_storage::Result<ObjectMeta> {
        self.pass("HeadObject", key).await;
        self.inner.head(key).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> berth_storage::Result<GetObject> {
        self.pass("GetObject", key).await;
        self.inner.get(key, range).await
    }
    async fn put(&self, key: &str, body: Bytes, cond: Condition) -> berth_storage::Result<ObjectMeta> {
        let op = if matches!(cond, Condition::IfMatch(_)) { "PutObject/IfMatch" } else { "PutObject" };
        self.pass(op, key).await;
        self.inner.put(key, body, cond).await
    }
    async fn delete(&self, key: &str) -> berth_storage::Result<()> {
        self.pass("DeleteObject", key).await;
        if let Some(left) = self.deletes_left.lock().unwrap().as_mut() {
            if *left == 0 {
                return Err(StorageError::backend("the collector died"));
            }
            *left -= 1;
        }
        self.inner.delete(key).await
    }
    async fn copy(&self, src: &str, dst: &str, cond: Condition) -> berth_storage::Result<ObjectMeta> {
        self.pass("CopyObject", dst).await;
        self.inner.copy(src, dst, cond).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> berth_storage::Result<ListPage> {
        self.pass("ListObjectsV2", prefix).await;
        self.inner.list(prefix, start_after, limit).await
    }
    async fn create_multipart(&self, key: &str) -> berth_storage::Result<String> {
        self.inner.create_multipart(key).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        offset: u64,
        body: Bytes,
    ) -> berth_storage::Result<String> {
        self.inner.upload_part(key, upload_id, number, offset, body).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        cond: Condition,
    ) -> berth_storage::Result<ObjectMeta> {
        self.inner.complete_multipart(key, upload_id, parts, cond).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> berth_storage::Result<()> {
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn presign_get(&self, key: &str, ttl: Duration) -> berth_storage::Result<Option<String>> {
        self.inner.presign_get(key, ttl).await
    }
}

/// A registry over memory, and a collector over the same memory through a gate.
fn gated_pair() -> (Harness, Arc<Gated>, Arc<dyn Storage>) {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let gated = Gated::new(store.clone());
    (registry(&store), gated, store)
}

fn gated_collector(gated: &Arc<Gated>) -> Collector {
    collector(&(gated.clone() as Arc<dyn Storage>), Duration::ZERO, "", false)
}

/// An image pushed into `name` whose manifest was deleted again (its links unreferenced), and
/// the manifest of a new image over the same layer, not pushed yet.
async fn unreferenced_layer(h: &Harness, name: &str, seed: u64) -> Vec<u8> {
    let layer = random_bytes(3000, seed);
    let old = push_image(h, name, "old", &[&layer]).await;
    assert_eq!(h.delete(&format!("/v2/{name}/manifests/{old}")).await.status, StatusCode::ACCEPTED);
    manifest(h, name, &[&layer]).await
}

#[tokio::test]
async fn a_manifest_put_during_a_sweep_waits_and_never_stores_a_manifest_with_removed_links() {
    // The collector has listed the repository and stops before removing its first link; a
    // manifest PUT over those links meanwhile sees the sweep marker, waits for the sweep to end,
    // and is refused, as its links went: nothing half-made becomes visible.
    let (h, gated, store) = gated_pair();
    let manifest = unreferenced_layer(&h, "race", 50).await;
    let gate = gated.stop(|op, key| op == "DeleteObject" && key.starts_with("repos/race/_blobs/"));
    let gc = tokio::spawn({
        let gated = gated.clone();
        async move { gated_collector(&gated).run().await }
    });
    gate.reached.await.unwrap();
    let put = h.put_manifest("race", "new", OCI_MANIFEST, &manifest);
    let release = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        gate.release.send(()).unwrap();
    };
    let (r, ()) = tokio::join!(put, release);
    gc.await.unwrap().unwrap();
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"), "{r:?}");
    assert!(keys(&store, "repos/race/_manifests/").await.is_empty(), "a refused manifest was stored");
    assert!(keys(&store, "repos/race/_tags/").await.is_empty());
}

#[tokio::test]
async fn a_manifest_put_that_announced_itself_before_the_listing_keeps_its_links() {
    // The collector has written its sweep marker and stops before listing the repository; the
    // PUT announces itself and waits; the listing then sees its intent, and the collector leaves
    // the repository alone; the PUT succeeds, complete.
    let (h, gated, store) = gated_pair();
    let manifest = unreferenced_layer(&h, "early", 51).await;
    let gate = gated.stop(|op, key| op == "ListObjectsV2" && key == "repos/early/_");
    let gc = tokio::spawn({
        let gated = gated.clone();
        async move { gated_collector(&gated).run().await }
    });
    gate.reached.await.unwrap();
    let put = h.put_manifest("early", "new", OCI_MANIFEST, &manifest);
    let release = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        gate.release.send(()).unwrap();
    };
    let (r, ()) = tokio::join!(put, release);
    let report = gc.await.unwrap().unwrap();
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(report.report().repositories_busy, 1, "{:?}", report.report());
    pulls(&h, "early", "new").await.unwrap();
    assert_eq!(collect(&store, "").await.links.removed, 0);
    pulls(&h, "early", "new").await.unwrap();
}

#[tokio::test]
async fn a_sweep_leaves_a_repository_with_a_manifest_write_in_progress() {
    // The PUT has announced itself and stops before reading the sweep marker; the collector sees
    // its intent and leaves the repository alone.
    let (h, gated, store) = gated_pair();
    let manifest = unreferenced_layer(&h, "busy", 52).await;
    let registry_store = gated.clone() as Arc<dyn Storage>;
    let gated_registry = Harness::over(Registry::new(registry_store.clone(), gc_config()), registry_store);
    let gate = gated.stop(|op, key| op == "HeadObject" && key == "repos/busy/_gc/sweep");
    let put =
        tokio::spawn(async move { gated_registry.put_manifest("busy", "new", OCI_MANIFEST, &manifest).await.status });
    gate.reached.await.unwrap();
    let report = collector(&store, Duration::ZERO, "", false).run().await.unwrap();
    assert_eq!(report.report().repositories_busy, 1, "{:?}", report.report());
    gate.release.send(()).unwrap();
    assert_eq!(put.await.unwrap(), StatusCode::CREATED);
    pulls(&h, "busy", "new").await.unwrap();
    // The next run finds nothing to remove: every link is referenced.
    let report = collect(&store, "").await;
    assert_eq!((report.links.removed, report.blobs.removed), (0, 0), "{report:?}");
    pulls(&h, "busy", "new").await.unwrap();
}

#[tokio::test]
async fn a_blob_linked_while_doomed_vetoes_its_deletion() {
    // The collector has doomed an unlinked blob, listed every link again, and stops before its
    // swap to Deleting; an upload of the same bytes into another repository links the blob and
    // vetoes; the swap fails, and the blob stays.
    let (h, gated, store) = gated_pair();
    let layer = random_bytes(3000, 53);
    let digest = sha256(&layer);
    let old = push_image(&h, "src", "v1", &[&layer]).await;
    assert_eq!(h.delete(&format!("/v2/src/manifests/{old}")).await.status, StatusCode::ACCEPTED);
    let marker = format!("gc/doomed/sha256/{}", &digest[7..]);
    let gate = gated.stop({
        let marker = marker.clone();
        move |op, key| op == "PutObject/IfMatch" && key == marker
    });
    let gc = tokio::spawn({
        let gated = gated.clone();
        async move { gated_collector(&gated).run().await }
    });
    gate.reached.await.unwrap();
    let r = h.send(Method::POST, &format!("/v2/copy/blobs/uploads/?digest={digest}"), &[], &layer).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(store.get(&marker, None).await.unwrap().bytes().await.unwrap().as_ref(), b"vetoed");
    gate.release.send(()).unwrap();
    let report = gc.await.unwrap().unwrap();
    // The image's config, which nothing links now, goes; the vetoed layer stays.
    assert_eq!(report.report().blobs.removed, 1, "{:?}", report.report());
    assert!(report.report().changed >= 1, "{:?}", report.report());
    assert!(!keys(&store, &format!("blobs/sha256/{}", &digest[7..])).await.is_empty(), "the vetoed blob went");
    assert_eq!(h.get(&format!("/v2/copy/blobs/{digest}")).await.body.as_ref(), layer.as_slice());
    assert_eq!(deleted_markers(&store).await.len(), 1, "the config's deletion is recorded, the veto's marker gone");
}

#[tokio::test]
async fn a_blob_linked_while_deleting_is_uploaded_again() {
    // The collector has swapped the marker to Deleting and stops before deleting; an upload of
    // the same bytes finds the blob stored, links it, waits for the collector, finds the blob
    // gone, unlinks and answers 503; the client's retry stores the bytes again.
    let (h, gated, store) = gated_pair();
    let layer = random_bytes(3000, 54);
    let digest = sha256(&layer);
    let old = push_image(&h, "del", "v1", &[&layer]).await;
    assert_eq!(h.delete(&format!("/v2/del/manifests/{old}")).await.status, StatusCode::ACCEPTED);
    let blob_key = format!("blobs/sha256/{}", &digest[7..]);
    let gate = gated.stop({
        let blob_key = blob_key.clone();
        move |op, key| op == "HeadObject" && key == blob_key
    });
    let gc = tokio::spawn({
        let gated = gated.clone();
        async move { gated_collector(&gated).run().await }
    });
    gate.reached.await.unwrap();
    let uri = format!("/v2/again/blobs/uploads/?digest={digest}");
    let upload = h.send(Method::POST, &uri, &[], &layer);
    let release = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        gate.release.send(()).unwrap();
    };
    let (r, ()) = tokio::join!(upload, release);
    gc.await.unwrap().unwrap();
    assert_eq!((r.status, r.code().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"), "{r:?}");
    assert!(r.header("retry-after").is_some());
    assert_eq!(h.head(&format!("/v2/again/blobs/{digest}")).await.status, StatusCode::NOT_FOUND, "a dangling link");
    let r = h.send(Method::POST, &format!("/v2/again/blobs/uploads/?digest={digest}"), &[], &layer).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(h.get(&format!("/v2/again/blobs/{digest}")).await.body.as_ref(), layer.as_slice());
    assert!(keys(&store, &blob_key).await.len() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collections_in_a_loop_beside_eight_pushers_lose_nothing() {
    const ROUNDS: usize = 16;
    for (backend, store, _dir) in backends("collections_in_a_loop_beside_eight_pushers_lose_nothing").await {
        let h = Arc::new(registry(&store));
        let shared = Arc::new(random_bytes(20_000, 60));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gc = tokio::spawn({
            let (store, done) = (store.clone(), done.clone());
            async move {
                let mut runs = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    match collector(&store, Duration::ZERO, "", false).run().await {
                        Ok(_) | Err(GcError::Busy(_)) => runs += 1,
                        Err(e) => panic!("garbage collection failed: {e}"),
                    }
                    // Grace 0 ends every upload session a run finds; a pause lets some finish.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                runs
            }
        });
        let pushers = (0..8u64).map(|p| {
            let (h, shared) = (h.clone(), shared.clone());
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let (mut refused, mut unavailable) = (0, 0);
                for round in 0..ROUNDS {
                    let name = format!("loop/p{p}");
                    let tag = format!("r{round}");
                    let own = random_bytes(10_000, 1000 + p * 100 + round as u64);
                    // As clients push: HEAD each blob, upload only the missing ones (monolithic,
                    // or a session: POST, PATCH, PUT), then the manifest.
                    let mut descriptors = Vec::new();
                    let config = format!("{{\"pusher\":{p},\"round\":{round}}}");
                    let mut ok = true;
                    for blob in [config.as_bytes(), shared.as_slice(), own.as_slice()] {
                        let digest = sha256(blob);
                        if h.head(&format!("/v2/{name}/blobs/{digest}")).await.status == StatusCode::OK {
                            // Skipped, as docker does: the manifest check decides.
                        } else if round % 2 == 0 {
                            // Monolithic, with the digest known up front.
                            let r = h.send(Method::POST, &format!("/v2/{name}/blobs/uploads/?digest={digest}"), &[], blob).await;
                            if r.status != StatusCode::CREATED {
                                assert_eq!(r.code(), "UNAVAILABLE", "upload: {r:?}");
                                unavailable += 1;
                                ok = false;
                            }
                        } else {
                            let location = h.start(&name).await;
                            let location = h.send(Method::PATCH, &location, &[], blob).await.location();
                            let r = h.send(Method::PUT, &format!("{location}?digest={digest}"), &[], b"").await;
                            if r.status != StatusCode::CREATED {
                                // Blob removed while linked, or the session ended (grace 0 makes
                                // every session idle): the push fails, and is not counted.
                                let code = r.code();
                                assert!(matches!(code.as_str(), "UNAVAILABLE" | "BLOB_UPLOAD_UNKNOWN"), "upload: {r:?}");
                                unavailable += 1;
                                ok = false;
                            }
                        }
                        descriptors.push((digest, blob.len()));
                    }
                    if !ok {
                        continue;
                    }
                    let manifest = serde_json::to_vec(&json!({
                        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": OCI_CONFIG, "digest": descriptors[0].0, "size": descriptors[0].1},
                        "layers": descriptors[1..].iter().map(|(d, s)| json!({"mediaType": OCI_LAYER, "digest": d, "size": s})).collect::<Vec<_>>(),
                    }))
                    .unwrap();
                    let r = h.put_manifest(&name, &tag, OCI_MANIFEST, &manifest).await;
                    match r.status {
                        StatusCode::CREATED => kept.push((name, tag, sha256(&manifest))),
                        StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
                        _ => {
                            assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN", "{r:?}");
                            refused += 1;
                        }
                    }
                    // Garbage for the collector: the round before this one goes.
                    if round % 2 == 1 && let Some((name, _, digest)) = kept.first().cloned() {
                        h.delete(&format!("/v2/{name}/manifests/{digest}")).await;
                        kept.remove(0);
                    }
                }
                (kept, refused, unavailable)
            })
        });
        let results = futures_util::future::join_all(pushers).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let runs = gc.await.unwrap();
        let (mut pushed, mut refused, mut unavailable) = (0, 0, 0);
        for result in results {
            let (kept, r, u) = result.unwrap();
            (refused, unavailable) = (refused + r, unavailable + u);
            for (name, tag, _) in kept {
                pushed += 1;
                pulls(&h, &name, &tag).await.unwrap_or_else(|e| panic!("{backend}: lost: {e}"));
            }
        }
        // One more run with nothing racing: still nothing lost.
        collect(&store, "").await;
        for p in 0..8 {
            let tags: Vec<String> =
                serde_json::from_value(h.get(&format!("/v2/loop/p{p}/tags/list")).await.json()["tags"].clone())
                    .unwrap_or_default();
            for tag in tags {
                pulls(&h, &format!("loop/p{p}"), &tag)
                    .await
                    .unwrap_or_else(|e| panic!("{backend}: lost after the last run: {e}"));
            }
        }
        eprintln!(
            "{backend}: {runs} collections beside 8 pushers: {pushed} tags pushed and intact, {refused} manifests refused, {unavailable} requests unavailable"
        );
        assert!(pushed > 0 && runs > 1, "{backend}: the race did not happen ({pushed} pushes, {runs} runs)");
    }
}

#[tokio::test]
async fn a_collection_that_dies_midway_leaves_everything_consistent_and_the_next_finishes() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let h = registry(&store);
    let mut deleted = Vec::new();
    for i in 0..6u64 {
        let layers = [random_bytes(2000, 700 + i), random_bytes(2000, 799)];
        let digest = push_image(&h, &format!("die/r{i}"), "v1", &[&layers[0], &layers[1]]).await;
        push_image(&h, &format!("die/r{i}"), "v2", &[&random_bytes(2000, 800 + i)]).await;
        if i % 2 == 0 {
            assert_eq!(h.delete(&format!("/v2/die/r{i}/manifests/{digest}")).await.status, StatusCode::ACCEPTED);
            deleted.push(i);
        }
    }
    // What a complete run leaves, on a copy.
    let clean: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    for key in keys(&store, "").await {
        let bytes = store.get(&key, None).await.unwrap().bytes().await.unwrap();
        clean.put(&key, bytes, Condition::Overwrite).await.unwrap();
    }
    collect(&clean, "").await;
    for deletes in [1, 2, 4, 6, 8] {
        let gated = Gated::new(store.clone());
        *gated.deletes_left.lock().unwrap() = Some(deletes);
        let dying: Arc<dyn Storage> = gated;
        let died = collector(&dying, Duration::ZERO, "", false).run().await;
        assert!(died.is_err(), "the collection was meant to die after {deletes} deletes");
        for i in 0..6 {
            pulls(&h, &format!("die/r{i}"), "v2").await.unwrap_or_else(|e| panic!("after {deletes} deletes: {e}"));
            if !deleted.contains(&i) {
                pulls(&h, &format!("die/r{i}"), "v1").await.unwrap_or_else(|e| panic!("after {deletes} deletes: {e}"));
            }
        }
        // The dead collector's checkpoint is its lease: a new one waits until it expires; here
        // it is taken over at once by removing it, as its age would allow.
        store.delete("gc/run").await.unwrap();
    }
    collect(&store, "").await;
    // In the end, what is left is what one complete run leaves.
    // (Markers differ: a run that died between a deletion and its record leaves `Deleting`.)
    let left = |keys: Vec<String>| {
        keys.into_iter().filter(|k| k != "gc/run" && !k.starts_with("gc/doomed/")).collect::<Vec<_>>()
    };
    assert_eq!(left(keys(&store, "").await), left(keys(&clean, "").await));
    for marker in keys(&store, "gc/doomed/").await {
        let blob = format!("blobs/{}", marker.strip_prefix("gc/doomed/").unwrap());
        assert!(store.head(&blob).await.is_err(), "{marker} is left, and {blob} is there");
    }
    assert_eq!(keys(&store, "blobs/").await.len(), 12, "3 configs and layers of the deleted images went");
}

#[tokio::test]
async fn one_collector_at_a_time() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let h = registry(&store);
    push_image(&h, "lease", "v1", &[b"x"]).await;
    // An unfinished run whose checkpoint is fresh belongs to a collector at work.
    let (gated, store2) = (Gated::new(store.clone()), store.clone());
    let gate = gated.stop(|op, key| op == "ListObjectsV2" && key == "repos/");
    let first = tokio::spawn({
        let gated = gated.clone();
        async move { gated_collector(&gated).run().await.map(|o| o.report().clone()) }
    });
    gate.reached.await.unwrap();
    let second = collector(&store2, Duration::ZERO, "", false).run().await;
    assert!(matches!(second, Err(GcError::Busy(_))), "{second:?}");
    gate.release.send(()).unwrap();
    first.await.unwrap().unwrap();
    // Once it finished, the next run starts.
    assert!(collector(&store2, Duration::ZERO, "", false).run().await.is_ok());
    // And a run is due again only after the interval.
    let due = collector(&store2, Duration::ZERO, "", false).run_if_due(Duration::from_secs(3600)).await.unwrap();
    assert!(due.is_none());
}

#[tokio::test]
async fn a_run_with_a_deadline_pauses_and_the_next_continues_where_it_stopped() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let h = registry(&store);
    for i in 0..6u64 {
        let digest = push_image(&h, &format!("pause/r{i}"), "v1", &[&random_bytes(2000, 600 + i)]).await;
        assert_eq!(h.delete(&format!("/v2/pause/r{i}/manifests/{digest}")).await.status, StatusCode::ACCEPTED);
    }
    // A Lambda invocation's end 31 s away: within 30 s of it, a run starts no new repository.
    // The sweep of the third repository is held until that point has passed.
    let gated = Gated::new(store.clone());
    let gate = gated.stop(|op, key| op == "PutObject" && key == "repos/pause/r2/_gc/sweep");
    let deadline = Some(std::time::Instant::now() + Duration::from_secs(31));
    let run = tokio::spawn({
        let store: Arc<dyn Storage> = gated.clone();
        async move {
            let retention = Arc::new(Retention::default());
            Collector::new(store, Options { grace: Duration::ZERO, retention, dry_run: false, deadline }).run().await
        }
    });
    gate.reached.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    gate.release.send(()).unwrap();
    let Outcome::Paused(first) = run.await.unwrap().unwrap() else { panic!("the run did not pause") };
    assert_eq!(first.repositories.examined, 3, "{first}");
    assert_eq!(keys(&store, "repos/pause/r5/").await.len(), 2, "the links of a repository after the pause went");
    // The next run continues with the fourth repository and finishes; its report is the run's.
    let total = collect(&store, "").await;
    assert_eq!(total.repositories.examined, 6, "{total}");
    assert_eq!(total.blobs.removed, 7, "six layers and the config they share: {total}");
    assert_eq!(keys(&store, "repos/").await, Vec::<String>::new());
    assert_eq!(keys(&store, "blobs/").await, Vec::<String>::new());
}

/// A run over 50 repositories and 602 blobs: what it removes, and what it costs in storage calls
/// against the per-object costs the `berth_gc` module doc states (the figures the README quotes).
#[tokio::test]
async fn a_run_over_fifty_repositories_and_six_hundred_blobs_costs_what_the_doc_says() {
    use futures_util::StreamExt;
    for (backend, store) in super::backends(S3Kind::Moto, "a_run_over_fifty_repositories", "gc-cost").await {
        let h = Arc::new(registry(&store));
        let base = Arc::new(random_bytes(3000, 5));
        // Each repository: tags v0..v3, each an image of the shared base layer, 3 layers of its
        // own and the config every image shares. r00..r39 lose v0 and v1; r40..r49 lose all.
        let removed_bytes: u64 = futures_util::stream::iter(0..50u64)
            .map(|r| {
                let (h, base) = (h.clone(), base.clone());
                async move {
                    let name = format!("cost/r{r:02}");
                    let mut removed = 0;
                    for t in 0..4u64 {
                        let own: Vec<Vec<u8>> = (0..3)
                            .map(|l| {
                                random_bytes(1000 + (r * 37 + t * 11 + l) as usize % 500, 10_000 + r * 100 + t * 10 + l)
                            })
                            .collect();
                        let digest = push_image(&h, &name, &format!("v{t}"), &[&base, &own[0], &own[1], &own[2]]).await;
                        if t < 2 || r >= 40 {
                            assert_eq!(
                                h.delete(&format!("/v2/{name}/manifests/{digest}")).await.status,
                                StatusCode::ACCEPTED
                            );
                            removed += own.iter().map(|l| l.len() as u64).sum::<u64>();
                        }
                    }
                    removed
                }
            })
            .buffer_unordered(8)
            .fold(0, |sum, bytes| async move { sum + bytes })
            .await;
        assert_eq!(keys(&store, "blobs/").await.len(), 602, "{backend}");

        let report = collect(&store, "").await;
        eprintln!("{backend}: a collection over 50 repositories and 602 blobs:\n{report}");
        assert_eq!((report.blobs.examined, report.blobs.removed), (602, 360), "{backend}: {report}");
        assert_eq!(report.blobs.removed_bytes, removed_bytes, "{backend}: {report}");
        assert_eq!(report.links.removed, 40 * 6 + 10 * 14, "{backend}: {report}");
        assert_eq!((report.repositories.examined, report.repositories.removed), (50, 10), "{backend}: {report}");
        // The module doc's costs. Repositories: per repository a listing to find it (and one
        // that finds no more), its sweep marker written and removed, a listing of its objects,
        // a GET per tag, per removed link a HEAD and a DELETE, and the catalog entry of an
        // emptied one. Catalog: a listing of the entries, and one per entry. Blobs: a listing of
        // leftover markers, of the links, of the blobs, of the links again after marking, and
        // per removed blob 5. Uploads: a listing. The checkpoint: read and written at the start,
        // written at each of 4 phase ends and on finishing, and once per 10 s of work (a slow
        // machine writes it more often).
        let links = report.links.removed;
        let periodic = (report.seconds / 10.0) as u64;
        let budget =
            (50 * 4 + 1 + 80 + links * 2 + 10) + (1 + 40) + (1 + 1 + 1 + 1 + 360 * 5) + 1 + (2 + 4 + 1) + periodic;
        assert!(
            report.storage_calls <= budget,
            "{backend}: {} storage calls, more than {budget}: {report}",
            report.storage_calls
        );
        for r in 0..40 {
            for t in 2..4 {
                pulls(&h, &format!("cost/r{r:02}"), &format!("v{t}"))
                    .await
                    .unwrap_or_else(|e| panic!("{backend}: {e}"));
            }
        }
        assert_eq!(h.get("/v2/_catalog?n=100").await.json()["repositories"].as_array().unwrap().len(), 40, "{backend}");
    }
}
