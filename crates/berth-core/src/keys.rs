//! The storage key layout, drawn once, one function per key.
//!
//! ```text
//! blobs/<alg>/<hex>                                  blob bytes, global, written once (CreateOnly)
//! repos/<name>/_blobs/<alg>/<hex>                    link: the repository may serve the blob; body = size
//! repos/<name>/_manifests/<alg>/<hex>                manifest record (header line + exact bytes)
//! repos/<name>/_tags/<tag>                           manifest record of the tagged manifest
//! repos/<name>/_referrers/<alg>/<hex>/<alg>-<hex>    descriptor (JSON) of one referrer of a subject
//! catalog/<name>/_repo                               marker: the repository exists
//! uploads/<id>/state                                 upload session (JSON), rewritten with IfMatch
//! uploads/<id>/data                                  multipart target of a session's bytes
//! uploads/<id>/pending/<uuid>                        a session's bytes not yet in a part
//! config/upload-secret                               the key sealed upload URLs are signed with
//! repos/<name>/_gc/sweep                             garbage collection is sweeping the repository
//! repos/<name>/_gc/writing/<uuid>                    a manifest write in progress (its intent)
//! gc/doomed/<alg>/<hex>                              a blob the collector means to delete, and its state
//! gc/run                                             the collector's current or last run (checkpoint)
//! ```
//! Repository name components start with `[a-z0-9]`, so `_`-led components never collide with a
//! name. Links exist so that a digest is not a password to every repository: a blob is served
//! only through a repository that pushed or mounted it.

use crate::digest::Digest;
use crate::names::{Name, Tag};

/// Bytes of a blob.
pub fn blob(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

/// Link from a repository to a blob.
pub fn blob_link(name: &Name, d: &Digest) -> String {
    format!("{}{}/{}", blob_links_prefix(name), d.algorithm().as_str(), d.hex())
}

/// Prefix of all blob links of a repository.
pub fn blob_links_prefix(name: &Name) -> String {
    format!("repos/{name}/_blobs/")
}

/// Prefix of all manifests of a repository.
pub fn manifests_prefix(name: &Name) -> String {
    format!("repos/{name}/_manifests/")
}

/// A manifest of a repository, by digest.
pub fn manifest(name: &Name, d: &Digest) -> String {
    format!("{}{}/{}", manifests_prefix(name), d.algorithm().as_str(), d.hex())
}

/// Prefix of all tags of a repository.
pub fn tags_prefix(name: &Name) -> String {
    format!("repos/{name}/_tags/")
}

/// A tag of a repository.
pub fn tag(name: &Name, tag: &Tag) -> String {
    format!("{}{tag}", tags_prefix(name))
}

/// Prefix of the referrers of `subject` in a repository.
pub fn referrers_prefix(name: &Name, subject: &Digest) -> String {
    format!("repos/{name}/_referrers/{}/{}/", subject.algorithm().as_str(), subject.hex())
}

/// One referrer of `subject`.
pub fn referrer(name: &Name, subject: &Digest, referrer: &Digest) -> String {
    format!("{}{}-{}", referrers_prefix(name, subject), referrer.algorithm().as_str(), referrer.hex())
}

/// Prefix of the catalog markers.
pub const CATALOG_PREFIX: &str = "catalog/";

/// Suffix of a catalog marker. Names nest (`a` and `a/b`), and no key may be both an object and
/// a prefix of other keys on the filesystem backend, so the marker is a child of the name.
pub const CATALOG_SUFFIX: &str = "/_repo";

/// Marker of an existing repository. Markers list in the byte order of `<name>/`.
pub fn catalog(name: &Name) -> String {
    format!("{CATALOG_PREFIX}{name}{CATALOG_SUFFIX}")
}

/// Prefix of every repository's objects.
pub const REPOS_PREFIX: &str = "repos/";

/// Prefix of every object of repository `name` (its nested repositories not included).
pub fn repo_prefix(name: &Name) -> String {
    format!("repos/{name}/_")
}

/// Prefix of all blobs.
pub const BLOBS_PREFIX: &str = "blobs/";

/// Prefix of all upload sessions.
pub const UPLOADS_PREFIX: &str = "uploads/";

/// The secret sealed upload URLs are signed with (`upload::sealed`), made once per storage.
pub const UPLOAD_SECRET: &str = "config/upload-secret";

/// The marker of a garbage-collection sweep of repository `name`.
pub fn gc_sweep(name: &Name) -> String {
    format!("repos/{name}/_gc/sweep")
}

/// Prefix of the intents of manifest writes in repository `name`.
pub fn gc_intents_prefix(name: &Name) -> String {
    format!("repos/{name}/_gc/writing/")
}

/// A fresh intent key of a manifest write in repository `name`.
pub fn gc_intent(name: &Name) -> String {
    format!("{}{}", gc_intents_prefix(name), uuid::Uuid::new_v4().simple())
}

/// Prefix of the markers of blobs the collector means to delete.
pub const GC_DOOMED_PREFIX: &str = "gc/doomed/";

/// The marker of blob `d`, which the collector means to delete.
pub fn gc_doomed(d: &Digest) -> String {
    format!("{GC_DOOMED_PREFIX}{}/{}", d.algorithm().as_str(), d.hex())
}

/// The collector's checkpoint.
pub const GC_RUN: &str = "gc/run";

/// State of an upload session.
pub fn upload_state(id: &str) -> String {
    format!("uploads/{id}/state")
}

/// Multipart target of an upload session.
pub fn upload_data(id: &str) -> String {
    format!("uploads/{id}/data")
}

/// A fresh key for bytes of a session not yet in a part (unique per write, so racing writers
/// never overwrite each other's pending bytes).
pub fn upload_pending(id: &str) -> String {
    format!("uploads/{id}/pending/{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    #[test]
    fn the_layout_is_as_drawn() {
        let name = Name::parse("team/app").unwrap();
        let d = Digest::of(Algorithm::Sha256, b"x");
        let s = Digest::of(Algorithm::Sha512, b"s");
        let (dh, sh) = (d.hex(), s.hex());
        assert_eq!(blob(&d), format!("blobs/sha256/{dh}"));
        assert_eq!(blob_link(&name, &d), format!("repos/team/app/_blobs/sha256/{dh}"));
        assert!(blob_link(&name, &d).starts_with(&blob_links_prefix(&name)));
        assert_eq!(manifest(&name, &d), format!("repos/team/app/_manifests/sha256/{dh}"));
        assert!(manifest(&name, &d).starts_with(&manifests_prefix(&name)));
        assert_eq!(tag(&name, &Tag::parse("v1").unwrap()), "repos/team/app/_tags/v1");
        assert!(tag(&name, &Tag::parse("v1").unwrap()).starts_with(&tags_prefix(&name)));
        assert_eq!(referrer(&name, &s, &d), format!("repos/team/app/_referrers/sha512/{sh}/sha256-{dh}"));
        assert!(referrer(&name, &s, &d).starts_with(&referrers_prefix(&name, &s)));
        assert_eq!(catalog(&name), "catalog/team/app/_repo");
        assert_eq!(upload_state("u1"), "uploads/u1/state");
        assert_eq!(upload_data("u1"), "uploads/u1/data");
        assert_eq!(repo_prefix(&name), "repos/team/app/_");
        for key in [blob_link(&name, &d), tag(&name, &Tag::parse("v1").unwrap()), gc_sweep(&name), gc_intent(&name)] {
            assert!(key.starts_with(&repo_prefix(&name)) && key.starts_with(REPOS_PREFIX), "{key}");
        }
        assert_eq!(gc_sweep(&name), "repos/team/app/_gc/sweep");
        assert!(gc_intent(&name).starts_with(&gc_intents_prefix(&name)));
        assert_eq!(gc_doomed(&d), format!("gc/doomed/sha256/{dh}"));
        assert!(blob(&d).starts_with(BLOBS_PREFIX) && upload_state("u").starts_with(UPLOADS_PREFIX));
        let (p1, p2) = (upload_pending("u1"), upload_pending("u1"));
        assert!(p1.starts_with("uploads/u1/pending/") && p1 != p2, "pending keys are unique per write");
    }

    #[test]
    fn no_repository_reaches_into_another_ones_keys() {
        // `_` cannot start a name component, so `a`'s tags are never a repository `a/_tags`.
        assert!(Name::parse("a/_tags").is_err());
        let (a, ab) = (Name::parse("a").unwrap(), Name::parse("a/b").unwrap());
        for prefix in [tags_prefix(&a), blob_links_prefix(&a), manifests_prefix(&a)] {
            for key in [tags_prefix(&ab), blob_links_prefix(&ab), manifests_prefix(&ab), catalog(&ab)] {
                assert!(!key.starts_with(&prefix), "{key} is under {prefix}");
            }
        }
        assert!(!catalog(&ab).starts_with(&catalog(&a)), "markers of nested names do not nest");
        assert!(!repo_prefix(&ab).starts_with(&repo_prefix(&a)), "a repository's prefix leaves out nested ones");
    }
}
