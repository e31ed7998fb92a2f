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
