//! The contract every [`Storage`] backend must pass.
//!
//! Each function checks one area and panics on a violation; [`run_all`] runs them all. They
//! assert only what the trait documents (never an ETag's format) and write under a fresh
//! `berth-suite/<uuid>/` prefix, so the suite may run repeatedly against a shared bucket (it
//! leaves its objects behind). [`create_only_race`] and [`if_match_race`] are separate, as some
//! S3-compatible servers do not make conditional writes atomic.

use bytes::Bytes;

use std::time::{Duration, SystemTime};

use crate::{CompletedPart, Condition, MIN_PART_SIZE, ObjectMeta, Result, Storage, StorageError};

/// Runs every check but the races ([`create_only_race`], [`if_match_race`]).
pub async fn run_all(store: &dyn Storage) {
    round_trip(store).await;
    missing(store).await;
    ranges(store).await;
    large_ranges(store).await;
    create_only(store).await;
    if_match(store).await;
    overwrite(store).await;
    delete(store).await;
    copy(store).await;
    list(store).await;
    multipart(store).await;
    multipart_errors(store).await;
}

/// A fresh key prefix for one check.
fn scope(area: &str) -> String {
    format!("berth-suite/{}/{area}/", uuid::Uuid::new_v4().simple())
}

/// `len` bytes that differ from their neighbours, so misplaced ranges show.
fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn not_found<T>(result: Result<T>) -> bool {
    matches!(result, Err(StorageError::NotFound(_)))
}

async fn read(store: &dyn Storage, key: &str) -> Bytes {
    let object = store.get(key, None).await.unwrap_or_else(|e| panic!("get {key}: {e}"));
    object.bytes().await.unwrap_or_else(|e| panic!("read {key}: {e}"))
}

/// Key, size and ETag: what every answer about an object agrees on. (`modified` is the write's
/// local time in the answer to a write, the backend's clock after it.)
fn identity(meta: &ObjectMeta) -> (&str, u64, &str) {
    (&meta.key, meta.size, &meta.etag)
}

async fn put(store: &dyn Storage, key: &str, body: impl Into<Bytes>) -> String {
    let meta = store.put(key, body.into(), Condition::Overwrite).await;
    meta.unwrap_or_else(|e| panic!("put {key}: {e}")).etag
}

/// Put, head and get agree on key, size, ETag and bytes.
pub async fn round_trip(store: &dyn Storage) {
    let key = scope("round-trip") + "a/b/object.json";
    let before = SystemTime::now();
    let put = store.put(&key, Bytes::from_static(b"{\"hello\":1}"), Condition::Overwrite).await.unwrap();
    assert_eq!((put.key.as_str(), put.size), (key.as_str(), 11));
    let head = store.head(&key).await.unwrap();
    assert_eq!(identity(&head), identity(&put));
    // Clocks of S3 servers keep whole seconds and may be a little off.
    let slack = Duration::from_secs(5);
    assert!(head.modified + slack >= before && head.modified <= SystemTime::now() + slack, "modified {head:?}");
    let got = store.get(&key, None).await.unwrap();
    assert_eq!((got.meta.clone(), got.range.clone()), (head.clone(), 0..11));
    let mut listed = store.list(&key, None, 10).await.unwrap().objects;
    if let [object] = listed.as_mut_slice()
        && object.etag.is_empty()
    {
        object.etag.clone_from(&head.etag);
    }
    assert_eq!(listed, vec![head], "a listing reports what head does");
    assert_eq!(got.bytes().await.unwrap(), &b"{\"hello\":1}"[..]);
    assert!(store.presign_get(&key, Duration::from_secs(60)).await.is_ok());
}

/// Reads of a missing key are `NotFound`.
pub async fn missing(store: &dyn Storage) {
    let key = scope("missing") + "nothing";
    assert!(not_found(store.head(&key).await));
    assert!(not_found(store.get(&key, None).await));
    assert!(not_found(store.get(&key, Some(0..1)).await));
}

/// Ranges are clamped to the object; one starting at or past its end is `InvalidRange`.
pub async fn ranges(store: &dyn Storage) {
    let key = scope("ranges") + "hundred";
    let data = pattern(100);
    put(store, &key, data.clone()).await;
    for (asked, served) in [(10..20, 10..20), (90..200, 90..100), (0..100, 0..100), (99..100, 99..100)] {
        let got = store.get(&key, Some(asked)).await.unwrap();
        assert_eq!((got.meta.size, got.range.clone()), (100, served.clone()));
        assert_eq!(got.bytes().await.unwrap(), data.slice(served.start as usize..served.end as usize));
    }
    for asked in [100..110, 150..160] {
        let got = store.get(&key, Some(asked.clone())).await;
        assert!(matches!(got, Err(StorageError::InvalidRange(_))), "range {asked:?}");
    }
    let empty = scope("ranges") + "empty";
    put(store, &empty, Bytes::new()).await;
    let got = store.get(&empty, None).await.unwrap();
    assert_eq!((got.meta.size, got.range.clone()), (0, 0..0));
    assert!(got.bytes().await.unwrap().is_empty());
}

/// Ranged reads of an object larger than any backend's chunk size, across chunk boundaries.
pub async fn large_ranges(store: &dyn Storage) {
    let key = scope("large-ranges") + "blob";
    let data = pattern(3 * 65536 + 1234);
    put(store, &key, data.clone()).await;
    assert_eq!(read(store, &key).await, data);
    let len = data.len() as u64;
    for (start, end) in [(65530, 2 * 65536 + 10), (1, len - 1), (65536, 131072), (len - 5, len + 100)] {
        let got = store.get(&key, Some(start..end)).await.unwrap();
        let end = end.min(len);
        assert_eq!(got.range, start..end);
        assert_eq!(got.bytes().await.unwrap(), data.slice(start as usize..end as usize));
    }
}

/// `CreateOnly` writes once; a second write fails and keeps the first content.
pub async fn create_only(store: &dyn Storage) {
    let key = scope("create-only") + "once";
    let first = store.put(&key, Bytes::from_static(b"first"), Condition::CreateOnly).await.unwrap();
    let second = store.put(&key, Bytes::from_static(b"second"), Condition::CreateOnly).await;
    assert!(matches!(second, Err(StorageError::PreconditionFailed(_))), "{second:?}");
    assert_eq!(read(store, &key).await, &b"first"[..]);
    assert_eq!(identity(&store.head(&key).await.unwrap()), identity(&first));
}

/// `IfMatch` writes only over the object with that ETag.
pub async fn if_match(store: &dyn Storage) {
    let key = scope("if-match") + "tag";
    let v1 = put(store, &key, "v1").await;
    let v2 = store.put(&key, Bytes::from_static(b"v2"), Condition::IfMatch(v1.clone())).await.unwrap();
    assert_ne!(v2.etag, v1);
    assert_eq!(store.head(&key).await.unwrap().etag, v2.etag);
    let stale = store.put(&key, Bytes::from_static(b"v3"), Condition::IfMatch(v1)).await;
    assert!(matches!(stale, Err(StorageError::PreconditionFailed(_))), "{stale:?}");
    assert_eq!(read(store, &key).await, &b"v2"[..]);

    let absent = scope("if-match") + "absent";
    let got = store.put(&absent, Bytes::from_static(b"x"), Condition::IfMatch(v2.etag)).await;
    assert!(matches!(got, Err(StorageError::NotFound(_) | StorageError::PreconditionFailed(_))), "{got:?}");
    assert!(not_found(store.head(&absent).await));
}

/// `Overwrite` replaces the object and its ETag.
pub async fn overwrite(store: &dyn Storage) {
    let key = scope("overwrite") + "obj";
    let old = put(store, &key, "old").await;
    let new = put(store, &key, "newer").await;
    assert_ne!(old, new);
    assert_eq!(read(store, &key).await, &b"newer"[..]);
    assert_eq!(store.head(&key).await.unwrap().size, 5);
}

/// Deleted objects are gone; deleting a missing key succeeds.
pub async fn delete(store: &dyn Storage) {
    let scope = scope("delete");
    let key = scope.clone() + "dir/obj";
    put(store, &key, "x").await;
    store.delete(&key).await.unwrap();
    assert!(not_found(store.head(&key).await));
    assert!(not_found(store.get(&key, None).await));
    store.delete(&key).await.unwrap();
    store.delete(&(scope.clone() + "never/written")).await.unwrap();
    assert_eq!(store.list(&scope, None, 10).await.unwrap().keys(), Vec::<String>::new());
    // The key can be written again.
    store.put(&key, Bytes::from_static(b"y"), Condition::CreateOnly).await.unwrap();
    assert_eq!(read(store, &key).await, &b"y"[..]);
}

/// Copies honour the condition on the destination and are independent of the source.
pub async fn copy(store: &dyn Storage) {
    let scope = scope("copy");
    let (src, dst, other) = (scope.clone() + "src", scope.clone() + "a/dst", scope.clone() + "other");
    put(store, &src, "source").await;
    let copied = store.copy(&src, &dst, Condition::Overwrite).await.unwrap();
    assert_eq!((copied.key.as_str(), copied.size), (dst.as_str(), 6));
    assert_eq!(identity(&store.head(&dst).await.unwrap()), identity(&copied));
    assert_eq!(read(store, &dst).await, &b"source"[..]);

    put(store, &other, "other").await;
    let refused = store.copy(&src, &other, Condition::CreateOnly).await;
    assert!(matches!(refused, Err(StorageError::PreconditionFailed(_))), "{refused:?}");
    assert_eq!(read(store, &other).await, &b"other"[..]);
    let fresh = scope.clone() + "fresh";
    store.copy(&src, &fresh, Condition::CreateOnly).await.unwrap();
    assert_eq!(read(store, &fresh).await, &b"source"[..]);
    let etag = store.head(&other).await.unwrap().etag;
    store.copy(&src, &other, Condition::IfMatch(etag)).await.unwrap();
    assert_eq!(read(store, &other).await, &b"source"[..]);

    // The copy outlives changes to its source.
    put(store, &src, "changed").await;
    assert_eq!(read(store, &dst).await, &b"source"[..]);
    store.delete(&src).await.unwrap();
    assert_eq!(read(store, &dst).await, &b"source"[..]);
    let gone = store.copy(&src, &(scope + "never"), Condition::Overwrite).await;
    assert!(not_found(gone));
}

/// Listings are in byte order, filtered by prefix, paged by `start_after` and `limit`.
pub async fn list(store: &dyn Storage) {
    let scope = scope("list");
    let k = |name: &str| format!("{scope}{name}");
    let sorted = |names: &[&str]| {
        let mut keys: Vec<String> = names.iter().map(|name| k(name)).collect();
        keys.sort();
        keys
    };
    // Byte order is not the order of a sorted directory walk: '-' < '.' < '/' < '0' < 'b'.
    let names = ["p/a-c", "p/a/b", "p/a.b", "p/ab", "p/a0", "p/b/c/d", "p/a/b2/c", "q/x", "pq"];
    for name in names {
        put(store, &k(name), name).await;
    }
    let under_p: Vec<&str> = names.iter().copied().filter(|n| n.starts_with("p/")).collect();
    let expected = sorted(&under_p);

    let page = store.list(&k("p/"), None, 100).await.unwrap();
    assert_eq!((&page.keys(), page.truncated), (&expected, false));
    let page = store.list(&scope, None, 100).await.unwrap();
    assert_eq!((page.keys(), page.truncated), (sorted(&names), false));

    // Prefixes need not end at a `/`.
    let page = store.list(&k("p/a"), None, 100).await.unwrap();
    assert_eq!(page.keys(), sorted(&["p/a-c", "p/a/b", "p/a.b", "p/ab", "p/a0", "p/a/b2/c"]));
    let page = store.list(&k("p/a/"), None, 100).await.unwrap();
    assert_eq!(page.keys(), sorted(&["p/a/b", "p/a/b2/c"]));
    let page = store.list(&k("p"), None, 100).await.unwrap();
    assert_eq!(page.keys(), sorted(&[&under_p[..], &["pq"]].concat()));

    // Paging, including pages that end exactly at the last key.
    for limit in [1, 2, 3, 7] {
        let (mut seen, mut after) = (Vec::new(), None::<String>);
        loop {
            let page = store.list(&k("p/"), after.as_deref(), limit).await.unwrap();
            assert!(page.keys().len() <= limit);
            seen.extend(page.keys().iter().cloned());
            assert_eq!(page.truncated, seen.len() < expected.len(), "limit {limit}");
            if !page.truncated {
                break;
            }
            after = page.keys().last().cloned();
        }
        assert_eq!(seen, expected, "limit {limit}");
    }

    // `start_after` need not be a key, and may sort before the prefix or after every key.
    let page = store.list(&k("p/"), Some(&k("p/a.")), 100).await.unwrap();
    assert_eq!(page.keys(), sorted(&["p/a.b", "p/a/b", "p/a/b2/c", "p/a0", "p/ab", "p/b/c/d"]));
    let page = store.list(&k("p/"), Some(&k("p/a/")), 2).await.unwrap();
    assert_eq!((page.keys(), page.truncated), (sorted(&["p/a/b", "p/a/b2/c"]), true));
    let page = store.list(&k("p/"), Some(&scope), 100).await.unwrap();
    assert_eq!(page.keys(), expected);
    let page = store.list(&k("p/"), Some(&k("p/z")), 100).await.unwrap();
    assert_eq!((page.keys().len(), page.truncated), (0, false));

    // Prefixes nothing is under.
    for prefix in ["none/", "none", "p/a/b/", "p/b/c/d/", "q/x/"] {
        let page = store.list(&k(prefix), None, 100).await.unwrap();
        assert_eq!((page.keys().len(), page.truncated), (0, false), "prefix {prefix}");
    }
    // The whole store holds at least this check's keys.
    let page = store.list("", None, 1).await.unwrap();
    assert_eq!((page.keys().len(), page.truncated), (1, true));
}

async fn upload(store: &dyn Storage, key: &str, id: &str, number: u32, offset: u64, body: Bytes) -> CompletedPart {
    let size = body.len() as u64;
    let etag = store.upload_part(key, id, number, offset, body).await.unwrap();
    CompletedPart { number, etag, size }
}

/// A multipart upload becomes the concatenation of its parts, in the listed order.
pub async fn multipart(store: &dyn Storage) {
    let key = scope("multipart") + "blob";
    let first = pattern(MIN_PART_SIZE as usize);
    let id = store.create_multipart(&key).await.unwrap();
    // Parts may arrive in any order, and a part may be uploaded again.
    let second = upload(store, &key, &id, 2, MIN_PART_SIZE, Bytes::from_static(b"draft")).await;
    let second_again = upload(store, &key, &id, 2, MIN_PART_SIZE, Bytes::from_static(b"tail")).await;
    assert_ne!(second.etag, second_again.etag);
    let first_part = upload(store, &key, &id, 1, 0, first.clone()).await;
    assert!(not_found(store.head(&key).await), "visible before completion");

    let meta = store.complete_multipart(&key, &id, &[first_part, second_again], Condition::CreateOnly).await.unwrap();
    assert_eq!((meta.key.as_str(), meta.size), (key.as_str(), MIN_PART_SIZE + 4));
    assert_eq!(identity(&store.head(&key).await.unwrap()), identity(&meta));
    let body = read(store, &key).await;
    assert_eq!(body.len() as u64, MIN_PART_SIZE + 4);
    assert!(body[..first.len()] == first[..] && &body[first.len()..] == b"tail");
    let got = store.get(&key, Some(MIN_PART_SIZE - 2..MIN_PART_SIZE + 2)).await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), [&first[first.len() - 2..], b"ta"].concat());

    // A single part may be small.
    let small = scope("multipart") + "small";
    let id = store.create_multipart(&small).await.unwrap();
    let part = upload(store, &small, &id, 1, 0, Bytes::from_static(b"only")).await;
    store.complete_multipart(&small, &id, &[part], Condition::Overwrite).await.unwrap();
    assert_eq!(read(store, &small).await, &b"only"[..]);
}

/// Multipart completions that break the rules fail and write nothing.
pub async fn multipart_errors(store: &dyn Storage) {
    let scope = scope("multipart-errors");
    let key = scope.clone() + "blob";
    let id = store.create_multipart(&key).await.unwrap();
    let small = upload(store, &key, &id, 1, 0, Bytes::from_static(b"too small")).await;
    let last = upload(store, &key, &id, 2, 9, Bytes::from_static(b"last")).await;
    let both = [small.clone(), last.clone()];
    let done = store.complete_multipart(&key, &id, &both, Condition::Overwrite).await;
    assert!(done.is_err(), "a non-final part below MIN_PART_SIZE");
    let wrong = CompletedPart { number: 2, etag: small.etag.clone(), size: small.size };
    assert!(store.complete_multipart(&key, &id, &[wrong], Condition::Overwrite).await.is_err());
    let unknown = CompletedPart { number: 3, etag: last.etag.clone(), size: last.size };
    assert!(store.complete_multipart(&key, &id, &[unknown], Condition::Overwrite).await.is_err());
    assert!(store.upload_part(&key, &id, 0, 0, Bytes::from_static(b"zero")).await.is_err());
    assert!(not_found(store.head(&key).await));
    // The upload survives failed completions.
    store.complete_multipart(&key, &id, std::slice::from_ref(&last), Condition::Overwrite).await.unwrap();
    assert_eq!(read(store, &key).await, &b"last"[..]);

    // CreateOnly onto an existing key.
    let id = store.create_multipart(&key).await.unwrap();
    let part = upload(store, &key, &id, 1, 0, Bytes::from_static(b"new")).await;
    let done = store.complete_multipart(&key, &id, &[part], Condition::CreateOnly).await;
    assert!(matches!(done, Err(StorageError::PreconditionFailed(_))), "{done:?}");
    assert_eq!(read(store, &key).await, &b"last"[..]);
    store.abort_multipart(&key, &id).await.unwrap();

    // Aborted uploads are gone; aborting twice is fine.
    let other = scope + "aborted";
    let id = store.create_multipart(&other).await.unwrap();
    let part = upload(store, &other, &id, 1, 0, Bytes::from_static(b"x")).await;
    store.abort_multipart(&other, &id).await.unwrap();
    assert!(store.complete_multipart(&other, &id, &[part], Condition::Overwrite).await.is_err());
    assert!(store.upload_part(&other, &id, 1, 0, Bytes::from_static(b"x")).await.is_err());
    store.abort_multipart(&other, &id).await.unwrap();
    assert!(not_found(store.head(&other).await));
}

/// Concurrent `CreateOnly` writes of one key: exactly one wins, and its content stays.
pub async fn create_only_race(store: &dyn Storage) {
    let key = scope("create-only-race") + "contended";
    let attempts = (0..8u8).map(|i| store.put(&key, Bytes::from(vec![i; 1024]), Condition::CreateOnly));
    let results = futures_util::future::join_all(attempts).await;
    let winners: Vec<usize> = (0..results.len()).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for result in &results {
        assert!(matches!(result, Ok(_) | Err(StorageError::PreconditionFailed(_))), "{result:?}");
    }
    assert_eq!(read(store, &key).await, vec![winners[0] as u8; 1024]);
}

/// Concurrent `IfMatch` writes over one ETag: exactly one wins, and its content stays.
pub async fn if_match_race(store: &dyn Storage) {
    let key = scope("if-match-race") + "contended";
    let etag = put(store, &key, "base").await;
    let attempts = (0..8u8).map(|i| store.put(&key, Bytes::from(vec![i; 1024]), Condition::IfMatch(etag.clone())));
    let results = futures_util::future::join_all(attempts).await;
    let winners: Vec<usize> = (0..results.len()).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for result in &results {
        assert!(matches!(result, Ok(_) | Err(StorageError::PreconditionFailed(_))), "{result:?}");
    }
    assert_eq!(read(store, &key).await, vec![winners[0] as u8; 1024]);
}
