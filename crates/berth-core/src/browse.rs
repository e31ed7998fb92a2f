//! Reading the registry for a browser (the web UI of `berth-web`): repositories with their tag
//! counts and last push, tags with their push times, manifest records, small blobs (image
//! configs) and referrers; signing in and deleting. Every read goes through the same
//! authorization as the API ([`Viewer`]: the caller of a page, from its session token), and each
//! costs a bounded number of storage calls, from listings rather than per-object reads:
//!
//! - [`Registry::repositories`]: 1 listing of the catalog per page (more only when the caller may
//!   not see most repositories), and 1 listing of each shown repository's tags (a tag's push time
//!   is when its object was last written, which listings report);
//! - [`Registry::tags`]: 1 listing per 1000 tags, at most [`MAX_TAGS`];
//! - [`Registry::record`], [`Registry::referenced_blob`]: 1 read each;
//! - [`Registry::referrer_descriptors`]: 1 listing and 1 read per referrer;
//! - [`Registry::tags_on`]: 1 listing per 1000 tags and 1 read per tag.

use std::time::SystemTime;

use berth_auth::Action;
use bytes::Bytes;

use crate::access::Access;
use crate::digest::Digest;
use crate::error::{ErrorKind, RegistryError, Result};
use crate::manifests::Record;
use crate::names::{Name, Reference, Tag};
use crate::{Registry, keys};

/// Most tags [`Registry::tags`] reads; a repository with more shows the first ones by name.
pub const MAX_TAGS: usize = 10_000;

/// Most catalog pages one page of repositories reads while skipping those the caller may not see.
const MAX_CATALOG_SCAN: usize = 5;

/// The caller of a page: who it is and what it may do.
pub struct Viewer {
    access: Access,
}

impl Viewer {
    /// The signed-in user (`None`: anonymous, or authentication is off).
    pub fn user(&self) -> Option<&str> {
        self.access.user()
    }

    /// Whether the caller may pull from `name` (and so see it).
    pub fn may_pull(&self, name: &Name) -> bool {
        self.access.allows(name, Action::Pull)
    }

    /// Whether the caller may delete tags and manifests of `name`.
    pub fn may_delete(&self, name: &Name) -> bool {
        self.access.allows(name, Action::Delete)
    }

    /// `Ok` when the caller may do `action` on `name`; else why not (`UNAUTHORIZED` for an
    /// anonymous caller, who may sign in, `DENIED` for a signed-in one).
    fn check(&self, name: &Name, action: Action) -> Result<()> {
        if self.access.allows(name, action) {
            return Ok(());
        }
        let kind = if self.user().is_none() { ErrorKind::Unauthorized } else { ErrorKind::Denied };
        Err(RegistryError::new(kind, format!("{} on repository {name} is not allowed", action.as_str())))
    }
}

/// A repository as the repositories page shows it.
#[derive(Debug, Clone)]
pub struct RepositorySummary {
    /// Its name.
    pub name: Name,
    /// How many tags it has (of the first 1000).
    pub tags: usize,
    /// It has more than 1000 tags; `tags` and `last_push` are of the first 1000 by name.
    pub more_tags: bool,
    /// When a tag was last pushed (`None`: it has no tag).
    pub last_push: Option<SystemTime>,
}

/// A tag and when it was pushed.
#[derive(Debug, Clone)]
pub struct TagEntry {
    /// The tag.
    pub tag: Tag,
    /// When its object was last written: its push.
    pub pushed: SystemTime,
}

/// Some entries of a listing, and whether more follow.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    /// The entries.
    pub items: Vec<T>,
    /// More follow (for repositories: after the last one shown).
    pub more: bool,
}

impl Registry {
    /// Whether callers sign in (authentication is on).
    pub fn signs_in(&self) -> bool {
        self.auth.is_some()
    }

    /// The viewer a session token stands for (anonymous without a valid one; everyone may do
    /// everything when authentication is off).
    pub fn viewer(&self, session: Option<&str>) -> Viewer {
        let access = match &self.auth {
            None => Access::Open,
            Some(auth) => Access::Checked(auth.session_access(session)),
        };
        Viewer { access }
    }

    /// Checks a user's password and opens a session: its token. Wrong credentials are
    /// `UNAUTHORIZED`, too many failures from the client `TOOMANYREQUESTS`.
    pub async fn sign_in(&self, client: Option<std::net::IpAddr>, user: &str, password: &str) -> Result<String> {
        let Some(auth) = &self.auth else {
            return Err(RegistryError::new(ErrorKind::NotFound, "authentication is off: there is no one to sign in"));
        };
        auth.open_session(client, user, password).await.map_err(|e| {
            let kind = match e {
                berth_auth::LoginError::Throttled(_) => ErrorKind::TooManyRequests,
                berth_auth::LoginError::Invalid => ErrorKind::Unauthorized,
            };
            RegistryError::new(kind, e.to_string())
        })
    }

    /// Up to `n` repositories the viewer may see, by name, whose names start with `prefix`, after
    /// `after`; each with its tag count and last push.
    pub async fn repositories(
        &self,
        viewer: &Viewer,
        prefix: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Listed<RepositorySummary>> {
        let list_prefix = format!("{}{prefix}", keys::CATALOG_PREFIX);
        let mut start_after = after.map(|a| format!("{}{a}{}", keys::CATALOG_PREFIX, keys::CATALOG_SUFFIX));
        let mut names = Vec::new();
        let mut more = false;
        for _ in 0..MAX_CATALOG_SCAN {
            let page = self.store.list(&list_prefix, start_after.as_deref(), n + 1 - names.len()).await?;
            let found = page.objects.iter().filter_map(|o| {
                let name = o.key.strip_prefix(keys::CATALOG_PREFIX)?.strip_suffix(keys::CATALOG_SUFFIX)?;
                Name::parse(name).ok().filter(|name| viewer.access.lists(name.as_str()))
            });
            names.extend(found);
            more = page.truncated || names.len() > n;
            if names.len() > n || !page.truncated {
                break;
            }
            start_after = page.last_key().map(str::to_string);
        }
        names.truncate(n);
        let summaries = names.into_iter().map(|name| async move {
            let page = self.store.list(&keys::tags_prefix(&name), None, 1000).await?;
            let last_push = page.objects.iter().map(|o| o.modified).max();
            Ok::<_, RegistryError>(RepositorySummary {
                tags: page.objects.len(),
                more_tags: page.truncated,
                last_push,
                name,
            })
        });
        let items = futures_util::future::try_join_all(summaries).await?;
        Ok(Listed { items, more })
    }

    /// The tags of `name` with their push times, by name (at most [`MAX_TAGS`]).
    pub async fn tags(&self, viewer: &Viewer, name: &Name) -> Result<Listed<TagEntry>> {
        viewer.check(name, Action::Pull)?;
        let prefix = keys::tags_prefix(name);
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(&prefix, after.as_deref(), 1000).await?;
            items.extend(page.objects.iter().filter_map(|o| {
                let tag = Tag::parse(o.key.strip_prefix(&prefix)?).ok()?;
                Some(TagEntry { tag, pushed: o.modified })
            }));
            after = page.last_key().map(str::to_string);
            if !page.truncated || after.is_none() || items.len() >= MAX_TAGS {
                let more = page.truncated;
                items.truncate(MAX_TAGS);
                return Ok(Listed { items, more });
            }
        }
    }

    /// Whether `name` is a repository (it has received a manifest and was not emptied by GC).
    pub async fn repository_exists(&self, viewer: &Viewer, name: &Name) -> Result<bool> {
        viewer.check(name, Action::Pull)?;
        self.store.exists(&keys::catalog(name)).await
    }

    /// The stored record of manifest `reference` of `name`.
    pub async fn record(&self, viewer: &Viewer, name: &Name, reference: &Reference) -> Result<Record> {
        viewer.check(name, Action::Pull)?;
        let key = match reference {
            Reference::Tag(t) => keys::tag(name, t),
            Reference::Digest(d) => keys::manifest(name, d),
        };
        let what = match reference {
            Reference::Tag(t) => format!("tag {t}"),
            Reference::Digest(d) => format!("digest {d}"),
        };
        let raw = self.store.read_opt(&key).await?.ok_or_else(|| {
            RegistryError::new(ErrorKind::ManifestUnknown, format!("manifest {what} is not in repository {name}"))
        })?;
        Record::decode(raw)
    }

    /// The bytes of blob `digest`, which manifest `record` of `name` references (an image
    /// config), when they are at most `max` bytes; `None` otherwise. 1 read of at most `max + 1`
    /// bytes: a manifest of the repository vouches for its blobs' links.
    pub async fn referenced_blob(
        &self,
        viewer: &Viewer,
        name: &Name,
        record: &Record,
        digest: &Digest,
        max: u64,
    ) -> Result<Option<Bytes>> {
        viewer.check(name, Action::Pull)?;
        if !record.references()?.blobs.contains(digest) {
            return Ok(None);
        }
        let Some(object) = self.store.get_opt(&keys::blob(digest), Some(0..max + 1)).await? else { return Ok(None) };
        let bytes = object.bytes().await?;
        Ok((bytes.len() as u64 <= max).then_some(bytes))
    }

    /// The descriptors of the referrers of `subject` in `name` (signatures, SBOMs, attestations).
    pub async fn referrer_descriptors(
        &self,
        viewer: &Viewer,
        name: &Name,
        subject: &Digest,
    ) -> Result<Vec<serde_json::Value>> {
        viewer.check(name, Action::Pull)?;
        self.referrers_of(name, subject).await
    }

    /// The tags of `name` that point to manifest `digest` (what deleting the manifest takes
    /// along): 1 listing per 1000 tags and 1 read per tag.
    pub async fn tags_on(&self, viewer: &Viewer, name: &Name, digest: &Digest) -> Result<Vec<Tag>> {
        viewer.check(name, Action::Pull)?;
        self.tags_pointing_to(name, digest).await
    }

    /// Deletes a tag (the manifest stays) or a manifest by digest (with the tags that point to
    /// it), as `DELETE /v2/<name>/manifests/<reference>` does.
    pub async fn delete_reference(&self, viewer: &Viewer, name: &Name, reference: &Reference) -> Result<()> {
        viewer.check(name, Action::Delete)?;
        let reference = match reference {
            Reference::Tag(t) => t.to_string(),
            Reference::Digest(d) => d.to_string(),
        };
        self.delete_manifest(name, &reference).await.map(|_| ())
    }
}
