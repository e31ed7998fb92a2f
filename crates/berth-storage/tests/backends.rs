//! Runs the storage contract suite against the in-memory and filesystem backends, plus checks
//! specific to the filesystem layout.

use berth_storage::{CompletedPart, Condition, FsStorage, MemoryStorage, Storage, StorageError, suite};
use bytes::Bytes;

fn fs_store() -> (tempfile::TempDir, FsStorage) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::new(dir.path().join("root")).unwrap();
    (dir, store)
}

fn not_found<T>(result: berth_storage::Result<T>) -> bool {
    matches!(result, Err(StorageError::NotFound(_)))
}

async fn read(store: &dyn Storage, key: &str) -> Bytes {
    store.get(key, None).await.unwrap().bytes().await.unwrap()
}

async fn put(store: &dyn Storage, key: &str, body: &'static str) -> String {
    store.put(key, Bytes::from_static(body.as_bytes()), Condition::Overwrite).await.unwrap().etag
}

async fn all_keys(store: &dyn Storage) -> Vec<String> {
    store.list("", None, 1000).await.unwrap().keys()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_suite() {
    let store = MemoryStorage::new();
    suite::run_all(&store).await;
    suite::create_only_race(&store).await;
    suite::if_match_race(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_passes_the_suite() {
    let (_dir, store) = fs_store();
    suite::run_all(&store).await;
    suite::create_only_race(&store).await;
    suite::if_match_race(&store).await;
    // Twice on one store, as against a shared bucket.
    suite::run_all(&store).await;
}

#[tokio::test]
async fn fs_rejects_bad_keys() {
    let (_dir, store) = fs_store();
    let bad = [
        "",
        "/a",
        "a/",
        "a//b",
        "./a",
        "a/./b",
        "..",
        "../a",
        "a/../b",
        "a/..",
        ".tmp/x",
        ".multipart/x",
        ".tmp",
        ".lock",
        ".lock/x",
        "a\0b",
    ];
    for key in bad {
        let invalid = |r: Result<(), StorageError>| matches!(r, Err(StorageError::Invalid(_)));
        assert!(invalid(store.put(key, Bytes::new(), Condition::Overwrite).await.map(drop)), "{key:?}");
        assert!(invalid(store.head(key).await.map(drop)), "{key:?}");
        assert!(invalid(store.get(key, None).await.map(drop)), "{key:?}");
        assert!(invalid(store.delete(key).await), "{key:?}");
        assert!(invalid(store.create_multipart(key).await.map(drop)), "{key:?}");
        assert!(invalid(store.copy("ok", key, Condition::Overwrite).await.map(drop)), "{key:?}");
    }
    // Dots are fine inside components, and below the top level.
    for key in ["a/.b", "a..b/c.", "x/.tmp/y", "...", ".hidden"] {
        put(&store, key, "ok").await;
        assert_eq!(read(&store, key).await, &b"ok"[..]);
    }
    // A prefix no key can have lists nothing.
    for prefix in ["../", "a/../", ".tmp/", ".multipart/", ".lock", "/"] {
        assert_eq!(store.list(prefix, None, 10).await.unwrap().keys().len(), 0, "{prefix:?}");
    }
}

#[tokio::test]
async fn fs_leftovers_of_a_crash_are_invisible() {
    let (dir, store) = fs_store();
    let root = dir.path().join("root");
    put(&store, "a/b", "old").await;
    // A crash in the middle of overwriting `a/b` leaves a partial temp file.
    std::fs::write(root.join(".tmp/0123456789abcdef0123456789abcdef"), "new, half wri").unwrap();
    let upload = store.create_multipart("a/c").await.unwrap();
    store.upload_part("a/c", &upload, 1, 0, Bytes::from_static(b"part")).await.unwrap();

    // After a restart, the temp file (not an hour old) is kept and invisible.
    drop(store);
    let store = FsStorage::new(&root).unwrap();
    assert_eq!(read(&store, "a/b").await, &b"old"[..]);
    assert_eq!(store.head("a/b").await.unwrap().size, 3);
    assert_eq!(all_keys(&store).await, ["a/b"]);
    assert_eq!(std::fs::read_dir(root.join(".tmp")).unwrap().count(), 1);
    assert!(not_found(store.head("a/c").await));
}

#[tokio::test]
async fn fs_writes_leave_no_temp_files() {
    let (dir, store) = fs_store();
    put(&store, "k", "v").await;
    store.put("k", Bytes::from_static(b"w"), Condition::CreateOnly).await.unwrap_err();
    store.put("k", Bytes::from_static(b"w"), Condition::IfMatch("\"nope\"".into())).await.unwrap_err();
    store.copy("k", "l", Condition::Overwrite).await.unwrap();
    store.copy("k", "l", Condition::Overwrite).await.unwrap(); // same inode: rename is a no-op
    store.copy("k", "l", Condition::CreateOnly).await.unwrap_err();
    let id = store.create_multipart("m").await.unwrap();
    let etag = store.upload_part("m", &id, 1, 0, Bytes::from_static(b"p")).await.unwrap();
    store
        .complete_multipart("m", &id, &[CompletedPart { number: 1, etag, size: 1 }], Condition::Overwrite)
        .await
        .unwrap();
    let root = dir.path().join("root");
    assert_eq!(std::fs::read_dir(root.join(".tmp")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(root.join(".multipart")).unwrap().count(), 0);
    assert_eq!(all_keys(&store).await, ["k", "l", "m"]);
}

#[tokio::test]
async fn fs_delete_removes_empty_directories() {
    let (dir, store) = fs_store();
    let root = dir.path().join("root");
    put(&store, "a/b/c/d", "1").await;
    put(&store, "a/x", "2").await;
    store.delete("a/b/c/d").await.unwrap();
    assert!(!root.join("a/b").exists());
    assert!(root.join("a").is_dir());
    store.delete("a/x").await.unwrap();
    assert!(!root.join("a").exists());
    assert!(root.join(".tmp").is_dir() && root.join(".multipart").is_dir());
    // A directory is not an object.
    put(&store, "d/e", "3").await;
    store.delete("d").await.unwrap();
    assert!(not_found(store.head("d").await));
    assert!(not_found(store.get("d", None).await));
    assert_eq!(read(&store, "d/e").await, &b"3"[..]);
}

/// Instances on one root (as `berth serve` and `berth gc` in two processes) make conditional
/// writes atomic together: of writers over one ETag spread over two instances, exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fs_instances_on_one_root_serialize_conditional_writes() {
    let (dir, first) = fs_store();
    let second = FsStorage::new(dir.path().join("root")).unwrap();
    for round in 0..20 {
        let key = format!("contended/{round}");
        let etag = first.put(&key, Bytes::from_static(b"base"), Condition::Overwrite).await.unwrap().etag;
        let attempts = (0..8u8).map(|i| {
            let store = if i % 2 == 0 { &first } else { &second };
            store.put(&key, Bytes::from(vec![i; 4096]), Condition::IfMatch(etag.clone()))
        });
        let results = futures_util::future::join_all(attempts).await;
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
    }
    assert!(!first.list("", None, 100).await.unwrap().keys().iter().any(|k| k.starts_with(".lock")));
}

#[tokio::test]
async fn fs_second_instance_sees_the_objects() {
    let (dir, store) = fs_store();
    let meta = store.put("x/y", Bytes::from_static(b"shared"), Condition::Overwrite).await.unwrap();
    let other = FsStorage::new(dir.path().join("root")).unwrap();
    assert_eq!(other.head("x/y").await.unwrap(), meta);
    assert_eq!(read(&other, "x/y").await, &b"shared"[..]);
    let again = other.put("x/y", Bytes::from_static(b"v2"), Condition::IfMatch(meta.etag)).await.unwrap();
    assert_eq!(store.head("x/y").await.unwrap(), again);
}

#[tokio::test]
async fn fs_etag_changes_on_every_write_even_of_equal_bytes() {
    let (_dir, store) = fs_store();
    let mut etags = Vec::new();
    for _ in 0..50 {
        etags.push(put(&store, "k", "same").await);
    }
    let first = etags[0].clone();
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), 50);
    let stale = store.put("k", Bytes::from_static(b"same"), Condition::IfMatch(first)).await;
    assert!(matches!(stale, Err(StorageError::PreconditionFailed(_))));
}

#[tokio::test]
async fn fs_key_cannot_also_be_a_directory() {
    let (_dir, store) = fs_store();
    put(&store, "a", "file").await;
    let under = store.put("a/b", Bytes::from_static(b"x"), Condition::Overwrite).await;
    assert!(matches!(under, Err(StorageError::Backend(_))), "{under:?}");
    assert!(not_found(store.get("a/b", None).await));
    assert_eq!(read(&store, "a").await, &b"file"[..]);
    assert_eq!(store.list("a/", None, 10).await.unwrap().keys().len(), 0);

    put(&store, "c/d", "x").await;
    let over = store.put("c", Bytes::from_static(b"x"), Condition::Overwrite).await;
    assert!(matches!(over, Err(StorageError::Backend(_))), "{over:?}");
    assert!(not_found(store.head("c").await));
    assert_eq!(all_keys(&store).await, ["a", "c/d"]);
}

#[tokio::test]
async fn fs_multipart_bookkeeping() {
    let (dir, store) = fs_store();
    let uploads = dir.path().join("root/.multipart");
    let id = store.create_multipart("blob").await.unwrap();
    let part = |etag| [CompletedPart { number: 1, etag, size: 1 }];
    // Unknown, malformed or other-key upload ids are NotFound.
    for (key, bad) in [("blob", "0123"), ("blob", "../.tmp"), ("blob", ""), ("other", id.as_str())] {
        let up = store.upload_part(key, bad, 1, 0, Bytes::from_static(b"x")).await;
        assert!(not_found(up), "{key} {bad}");
        let done = store.complete_multipart(key, bad, &part("\"e\"".into()), Condition::Overwrite).await;
        assert!(not_found(done), "{key} {bad}");
    }
    store.abort_multipart("blob", "../../root").await.unwrap();
    assert!(uploads.is_dir());

    let etag = store.upload_part("blob", &id, 1, 0, Bytes::from_static(b"x")).await.unwrap();
    let zero = store.upload_part("blob", &id, 0, 0, Bytes::from_static(b"x")).await;
    assert!(matches!(zero, Err(StorageError::Invalid(_))));
    let wrong = store.complete_multipart("blob", &id, &part("\"e\"".into()), Condition::Overwrite).await;
    assert!(matches!(wrong, Err(StorageError::Invalid(_))));
    let none = store.complete_multipart("blob", &id, &[], Condition::Overwrite).await;
    assert!(matches!(none, Err(StorageError::Invalid(_))));
    store.complete_multipart("blob", &id, &part(etag.clone()), Condition::Overwrite).await.unwrap();
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    let again = store.complete_multipart("blob", &id, &part(etag), Condition::Overwrite).await;
    assert!(not_found(again));

    let id = store.create_multipart("blob").await.unwrap();
    store.abort_multipart("blob", &id).await.unwrap();
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
}
