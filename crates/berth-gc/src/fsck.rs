//! `berth fsck`: a read-only consistency check of a registry's storage, the proof the crash and
//! fault tests end with. It lists `blobs/`, `repos/` and `uploads/` (one listing per 1000 keys),
//! reads every manifest and tag record, and (unless told not to) every blob's bytes, and reports:
//!
//! - a blob whose bytes do not hash to its key, or a key under `blobs/` that is no digest;
//! - a repository link to a blob that does not exist;
//! - a manifest record that cannot be read, or whose bytes do not hash to its digest;
//! - a manifest referencing a blob the repository does not link (or that does not exist), or an
//!   index entry the repository does not have;
//! - a tag naming a manifest the repository does not have;
//! - an upload session idle longer than `upload_age` (abandoned: `berth gc` removes it), or the
//!   bytes of one with no session state (orphaned).
//!
//! [`check`] writes nothing. Objects that change while it runs can show up as findings (a
//! manifest pushed between two listings); run it on a quiet registry, or run it twice.
//!
//! [`repair`] removes what cannot be right, so that clients put it back: a corrupt blob (a
//! push would otherwise skip it, its `HEAD` saying it is there), links to missing blobs (the
//! same), unreadable or corrupt manifest records, tags naming missing manifests, abandoned and
//! orphaned upload state; then checks again, until nothing more is removable (removing a blob
//! leaves links to it, removing a manifest leaves tags on it). What it cannot mend — a manifest
//! whose blobs or entries are missing — stays reported: pushing the image again mends it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use berth_core::digest::{Digest, Hasher};
use berth_core::keys;
use berth_core::manifests::Record;
use berth_core::names::{Name, Tag};
use berth_storage::{ObjectMeta, Storage, StorageError};
use futures_util::TryStreamExt;

/// Keys listed per storage call.
const PAGE: usize = 1000;

/// What to check.
#[derive(Debug, Clone)]
pub struct FsckOptions {
    /// Read every blob and hash it (the costly part: every byte is read once).
    pub hash_blobs: bool,
    /// Upload sessions idle longer than this are reported as abandoned.
    pub upload_age: Duration,
}

/// One inconsistency (its fields name the objects; [`fmt::Display`] says it in words).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A blob's bytes hash to another digest than its key says.
    BlobCorrupt { key: String, actual: String },
    /// A key under `blobs/` that names no digest.
    StrayBlobKey { key: String },
    /// A repository link to a blob that does not exist.
    LinkToMissingBlob { repository: String, digest: String },
    /// A manifest or tag record that cannot be read.
    RecordUnreadable { key: String, why: String },
    /// A manifest record whose bytes hash to another digest.
    ManifestCorrupt { key: String, actual: String },
    /// A manifest references a blob the repository does not link, or that does not exist.
    ManifestMissingBlob { repository: String, manifest: String, blob: String },
    /// An index lists a manifest the repository does not have.
    ManifestMissingChild { repository: String, manifest: String, child: String },
    /// A tag names a manifest the repository does not have.
    TagToMissingManifest { repository: String, tag: String, manifest: String },
    /// An upload session idle for longer than the allowed age.
    UploadAbandoned { id: String, idle: Duration },
    /// Upload bytes without a session.
    UploadOrphaned { key: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::BlobCorrupt { key, actual } => write!(f, "blob {key}: its bytes hash to {actual}"),
            Finding::StrayBlobKey { key } => write!(f, "{key}: not a blob key"),
            Finding::LinkToMissingBlob { repository, digest } => {
                write!(f, "repository {repository}: links blob {digest}, which does not exist")
            }
            Finding::RecordUnreadable { key, why } => write!(f, "{key}: unreadable record ({why})"),
            Finding::ManifestCorrupt { key, actual } => write!(f, "manifest {key}: its bytes hash to {actual}"),
            Finding::ManifestMissingBlob { repository, manifest, blob } => {
                write!(f, "repository {repository}: manifest {manifest} references blob {blob}, which it does not have")
            }
            Finding::ManifestMissingChild { repository, manifest, child } => {
                write!(f, "repository {repository}: index {manifest} lists manifest {child}, which it does not have")
            }
            Finding::TagToMissingManifest { repository, tag, manifest } => {
                write!(f, "repository {repository}: tag {tag} names manifest {manifest}, which it does not have")
            }
            Finding::UploadAbandoned { id, idle } => {
                write!(f, "upload session {id}: idle for {} (berth gc removes it)", humantime::format_duration(*idle))
            }
            Finding::UploadOrphaned { key } => write!(f, "{key}: upload bytes without a session"),
        }
    }
}

/// What a check looked at and found.
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    /// Blobs listed (and hashed, if asked).
    pub blobs: u64,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// Repositories.
    pub repositories: u64,
    /// Repository links.
    pub links: u64,
    /// Manifests.
    pub manifests: u64,
    /// Tags.
    pub tags: u64,
    /// Upload sessions.
    pub uploads: u64,
    /// What is wrong.
    pub findings: Vec<Finding>,
}

impl fmt::Display for FsckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        write!(
            f,
            "checked {} blobs ({} bytes hashed), {} repositories with {} links, {} manifests and {} tags, {} upload \
             sessions: {} {}",
            self.blobs,
            self.bytes_hashed,
            self.repositories,
            self.links,
            self.manifests,
            self.tags,
            self.uploads,
            self.findings.len(),
            if self.findings.len() == 1 { "problem" } else { "problems" }
        )
    }
}

/// Every key under `prefix`.
async fn list_all(store: &dyn Storage, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map(|o: &ObjectMeta| o.key.clone());
        let page = store.list(prefix, after.as_deref(), PAGE).await?;
        all.extend(page.objects);
        if !page.truncated {
            return Ok(all);
        }
    }
}

/// The digest a key ending in `<alg>/<hex>` names.
fn digest_of(tail: &str) -> Option<Digest> {
    let (alg, hex) = tail.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

/// What one repository holds, from the listing of `repos/`.
#[derive(Default)]
struct Repository {
    links: BTreeSet<Digest>,
    manifests: BTreeMap<Digest, String>,
    tags: Vec<(String, String)>,
}

/// Checks the registry in `store`.
pub async fn check(store: &dyn Storage, options: &FsckOptions) -> Result<FsckReport, StorageError> {
    let mut report = FsckReport::default();
    let mut blobs = BTreeSet::new();
    for object in list_all(store, "blobs/").await? {
        report.blobs += 1;
        let Some(digest) = object.key.strip_prefix("blobs/").and_then(digest_of) else {
            report.findings.push(Finding::StrayBlobKey { key: object.key });
            continue;
        };
        if options.hash_blobs {
            let mut hasher = Hasher::new(digest.algorithm());
            let mut body = store.get(&object.key, None).await?.body;
            while let Some(chunk) = body.try_next().await? {
                report.bytes_hashed += chunk.len() as u64;
                hasher.update(&chunk);
            }
            let actual = hasher.finish();
            if actual != digest {
                // It exists: links to it are not reported again.
                report.findings.push(Finding::BlobCorrupt { key: object.key, actual: actual.to_string() });
            }
        }
        blobs.insert(digest);
    }

    let mut repositories: BTreeMap<String, Repository> = BTreeMap::new();
    for object in list_all(store, "repos/").await? {
        let rest = &object.key["repos/".len()..];
        // The name ends before the first `_`-led component (names never have one).
        let Some(at) = rest.find("/_") else { continue };
        let (name, kind) = (&rest[..at], &rest[at + 2..]);
        let repository = repositories.entry(name.to_string()).or_default();
        if let Some(tail) = kind.strip_prefix("blobs/") {
            if let Some(digest) = digest_of(tail) {
                repository.links.insert(digest);
            }
        } else if let Some(tail) = kind.strip_prefix("manifests/") {
            if let Some(digest) = digest_of(tail) {
                repository.manifests.insert(digest, object.key.clone());
            }
        } else if let Some(tag) = kind.strip_prefix("tags/") {
            repository.tags.push((tag.to_string(), object.key.clone()));
        }
    }
    for (name, repository) in &repositories {
        report.repositories += 1;
        report.links += repository.links.len() as u64;
        for digest in repository.links.iter().filter(|d| !blobs.contains(*d)) {
            report.findings.push(Finding::LinkToMissingBlob { repository: name.clone(), digest: digest.to_string() });
        }
        for (digest, key) in &repository.manifests {
            report.manifests += 1;
            let Some(record) = read_record(store, key, &mut report).await? else { continue };
            let actual = Digest::of(digest.algorithm(), &record.bytes);
            if actual != *digest || record.digest != *digest {
                report.findings.push(Finding::ManifestCorrupt { key: key.clone(), actual: actual.to_string() });
                continue;
            }
            let references = match record.references() {
                Ok(references) => references,
                Err(e) => {
                    report.findings.push(Finding::RecordUnreadable { key: key.clone(), why: e.message });
                    continue;
                }
            };
            for blob in references.blobs {
                if !repository.links.contains(&blob) || !blobs.contains(&blob) {
                    let (manifest, blob) = (digest.to_string(), blob.to_string());
                    report.findings.push(Finding::ManifestMissingBlob { repository: name.clone(), manifest, blob });
                }
            }
            for child in references.manifests {
                if !repository.manifests.contains_key(&child) {
                    let (manifest, child) = (digest.to_string(), child.to_string());
                    report.findings.push(Finding::ManifestMissingChild { repository: name.clone(), manifest, child });
                }
            }
        }
        for (tag, key) in &repository.tags {
            report.tags += 1;
            let Some(record) = read_record(store, key, &mut report).await? else { continue };
            if !repository.manifests.contains_key(&record.digest) {
                let manifest = record.digest.to_string();
                report.findings.push(Finding::TagToMissingManifest {
                    repository: name.clone(),
                    tag: tag.clone(),
                    manifest,
                });
            }
        }
    }

    let mut sessions: BTreeMap<String, Option<SystemTime>> = BTreeMap::new();
    let mut bytes: Vec<(String, String)> = Vec::new();
    for object in list_all(store, "uploads/").await? {
        let Some((id, what)) = object.key["uploads/".len()..].split_once('/') else { continue };
        if what == "state" {
            sessions.insert(id.to_string(), Some(object.modified));
        } else {
            bytes.push((id.to_string(), object.key.clone()));
        }
    }
    let now = SystemTime::now();
    for (id, modified) in &sessions {
        report.uploads += 1;
        let idle = modified.and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
        if idle > options.upload_age {
            report.findings.push(Finding::UploadAbandoned { id: id.clone(), idle });
        }
    }
    for (id, key) in bytes {
        if !sessions.contains_key(&id) {
            report.findings.push(Finding::UploadOrphaned { key });
        }
    }
    Ok(report)
}

/// A manifest or tag record; `None` (and a finding) when it is gone or unreadable.
async fn read_record(store: &dyn Storage, key: &str, report: &mut FsckReport) -> Result<Option<Record>, StorageError> {
    let object = match store.get(key, None).await {
        Ok(object) => object,
        // Removed since the listing: not a problem of the registry.
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let raw: Vec<bytes::Bytes> = object.body.try_collect().await?;
    match Record::decode(raw.concat().into()) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            report.findings.push(Finding::RecordUnreadable { key: key.to_string(), why: e.message });
            Ok(None)
        }
    }
}

/// Repair passes at most: each can only expose removals the previous one caused.
const REPAIR_PASSES: usize = 4;

/// The keys whose removal repairs `finding`; empty when only a push can mend it.
async fn removals(store: &dyn Storage, finding: &Finding) -> Result<Vec<String>, StorageError> {
    let link = |repository: &str, digest: &str| -> Option<String> {
        Some(keys::blob_link(&Name::parse(repository).ok()?, &digest.parse().ok()?))
    };
    Ok(match finding {
        Finding::BlobCorrupt { key, .. }
        | Finding::StrayBlobKey { key }
        | Finding::RecordUnreadable { key, .. }
        | Finding::ManifestCorrupt { key, .. }
        | Finding::UploadOrphaned { key } => vec![key.clone()],
        Finding::LinkToMissingBlob { repository, digest } => link(repository, digest).into_iter().collect(),
        Finding::TagToMissingManifest { repository, tag, .. } => match (Name::parse(repository), Tag::parse(tag)) {
            (Ok(name), Ok(tag)) => vec![keys::tag(&name, &tag)],
            _ => Vec::new(),
        },
        Finding::UploadAbandoned { id, .. } => {
            list_all(store, &format!("uploads/{id}/")).await?.into_iter().map(|o| o.key).collect()
        }
        Finding::ManifestMissingBlob { .. } | Finding::ManifestMissingChild { .. } => Vec::new(),
    })
}

/// Removes what [`check`] finds removable, pass after pass; the findings removed, and the last
/// check (what is left).
pub async fn repair(store: &dyn Storage, options: &FsckOptions) -> Result<(Vec<Finding>, FsckReport), StorageError> {
    let mut repaired = Vec::new();
    let mut report = check(store, options).await?;
    for _ in 0..REPAIR_PASSES {
        let mut removed_any = false;
        for finding in &report.findings {
            let keys = removals(store, finding).await?;
            if keys.is_empty() {
                continue;
            }
            for key in keys {
                store.delete(&key).await?;
            }
            repaired.push(finding.clone());
            removed_any = true;
        }
        if !removed_any {
            break;
        }
        report = check(store, options).await?;
    }
    Ok((repaired, report))
}
