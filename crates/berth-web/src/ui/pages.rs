//! The pages: what each reads from the registry and how it fills its template. The storage calls
//! of each (over S3, its requests): the repositories page 1 + 1 per repository shown; a
//! repository 1 per 1000 tags, and per tag shown 2 (its record and its config; an index: 1 + 1
//! per platform); an image 2 (record, config) or, for an index, 1 + 1 per entry, plus 1 + 1 per
//! referrer; the delete confirmation 1 + what finding the other tags on the digest takes.

use std::time::SystemTime;

use berth_core::browse::TagEntry;
use berth_core::digest::Digest;
use berth_core::error::{ErrorKind, RegistryError};
use berth_core::manifests::Record;
use berth_core::names::{Name, Reference, Tag};
use futures_util::future::join_all;
use http::StatusCode;

use super::links::{image_href, local, repo_href, with_query};
use super::manifest::{self, Config, Manifest};
use super::views::{
    ConfigView, DeletePage, HistoryRow, ImagePage, LayerRow, LoginPage, PlatformRow, ReferrerRow, RepositoriesPage,
    RepositoryPage, RepositoryRow, Size, TagRow, When, short,
};
use super::{Answer, Visit, assets, html, see_other, session_cookie};

/// Repositories per page.
const REPOSITORIES_PER_PAGE: usize = 50;

/// Tags per page.
const TAGS_PER_PAGE: usize = 25;

/// Largest image config read.
const MAX_CONFIG: u64 = 4 * 1024 * 1024;

fn not_found() -> RegistryError {
    RegistryError::new(ErrorKind::NotFound, "there is no such page")
}

/// What a path under `/r/` names.
enum Target<'a> {
    Repository(&'a str),
    Image(&'a str, &'a str),
    Delete(&'a str, &'a str),
}

fn target(rest: &str) -> Option<Target<'_>> {
    match rest.split_once("/-/") {
        None => Some(Target::Repository(rest.trim_end_matches('/'))),
        Some((name, tail)) => match tail.strip_suffix("/delete") {
            Some(reference) => Some(Target::Delete(name, reference)),
            None if !tail.contains('/') && !tail.is_empty() => Some(Target::Image(name, tail)),
            None => None,
        },
    }
}

/// A reference from a page's path: a tag or a digest.
fn reference(name: &Name, text: &str) -> Result<Reference, RegistryError> {
    Reference::parse(text).map_err(|_| {
        RegistryError::new(ErrorKind::ManifestUnknown, format!("{text:?} is no tag or digest of repository {name}"))
    })
}

/// Answers a `GET`.
pub(crate) async fn get(visit: &Visit<'_>, path: &str) -> Answer {
    if path == "/" {
        return repositories(visit).await;
    }
    if let Some(rest) = path.strip_prefix("/-/static/") {
        return assets::serve(rest).ok_or_else(not_found);
    }
    if path == "/-/login" {
        if !visit.registry.signs_in() {
            return Ok(see_other("/", None));
        }
        let next = local(visit.param("next")).to_string();
        let page = LoginPage { layout: visit.layout("Sign in"), next, user: String::new(), error: None };
        return Ok(html(StatusCode::OK, &page));
    }
    match path.strip_prefix("/r/").and_then(target) {
        Some(Target::Repository(name)) => repository(visit, &Name::parse(name)?).await,
        Some(Target::Image(name, r)) => {
            let name = Name::parse(name)?;
            let reference = reference(&name, r)?;
            image(visit, &name, &reference).await
        }
        Some(Target::Delete(name, r)) => {
            let name = Name::parse(name)?;
            let reference = reference(&name, r)?;
            confirm_delete(visit, &name, &reference).await
        }
        None => Err(not_found()),
    }
}

/// Answers a `POST` (from a page of this site, which the caller checked).
pub(crate) async fn post(visit: &Visit<'_>, path: &str, form: &[(String, String)]) -> Answer {
    let field = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if path == "/-/login" {
        let (user, password) = (field("user").unwrap_or_default(), field("password").unwrap_or_default());
        let next = local(field("next")).to_string();
        return match visit.registry.sign_in(visit.client, user, password).await {
            Ok(token) => Ok(see_other(&next, Some(session_cookie(Some(&token), visit.https)))),
            Err(e) if matches!(e.kind, ErrorKind::Unauthorized | ErrorKind::TooManyRequests) => {
                let error = if e.kind == ErrorKind::Unauthorized {
                    "Wrong user name or password.".to_string()
                } else {
                    format!("{}.", e.message)
                };
                let page =
                    LoginPage { layout: visit.layout("Sign in"), next, user: user.to_string(), error: Some(error) };
                Ok(html(e.kind.status(), &page))
            }
            Err(e) => Err(e),
        };
    }
    if path == "/-/logout" {
        return Ok(see_other("/", Some(session_cookie(None, visit.https))));
    }
    let Some(Target::Delete(name, r)) = path.strip_prefix("/r/").and_then(target) else { return Err(not_found()) };
    let name = Name::parse(name)?;
    let what = match (field("what"), reference(&name, r)?) {
        (Some("tag"), Reference::Tag(tag)) => {
            visit.registry.delete_reference(&visit.viewer, &name, &Reference::Tag(tag.clone())).await?;
            format!("tag {tag}")
        }
        (Some("manifest"), _) => {
            // The digest the confirmation showed: a tag moved meanwhile deletes nothing else.
            let digest: Digest = field("digest").unwrap_or_default().parse()?;
            visit.registry.delete_reference(&visit.viewer, &name, &Reference::Digest(digest.clone())).await?;
            format!("manifest {digest}")
        }
        _ => return Err(RegistryError::new(ErrorKind::NotFound, "say what to delete: the tag or the manifest")),
    };
    Ok(see_other(&with_query(&repo_href(&name), &[("deleted", &what)]), None))
}

/// `/`.
async fn repositories(visit: &Visit<'_>) -> Answer {
    let q = visit.param("q").unwrap_or_default().trim().to_ascii_lowercase();
    let after = visit.param("after").filter(|a| !a.is_empty());
    let listed = visit.registry.repositories(&visit.viewer, &q, after, REPOSITORIES_PER_PAGE).await?;
    let now = SystemTime::now();
    let rows = listed
        .items
        .iter()
        .map(|r| RepositoryRow {
            name: r.name.to_string(),
            href: repo_href(&r.name),
            tags: if r.more_tags { format!("{}+", r.tags) } else { r.tags.to_string() },
            pushed: r.last_push.map_or(When { ago: "—".into(), iso: String::new() }, |t| When::new(t, now)),
        })
        .collect();
    let next_href = listed
        .items
        .last()
        .filter(|_| listed.more)
        .map(|last| with_query("/", &[("q", &q), ("after", last.name.as_str())]));
    let empty = if !q.is_empty() {
        format!("No repository you may see has a name starting with “{q}”.")
    } else if visit.registry.signs_in() && visit.viewer.user().is_none() {
        "No repository is open to anonymous visitors. Sign in to see yours.".to_string()
    } else {
        "No repositories yet: push an image, and it shows here.".to_string()
    };
    let page = RepositoriesPage {
        layout: visit.layout("Repositories"),
        first_href: after.map(|_| with_query("/", &[("q", &q)])),
        q,
        rows,
        next_href,
        empty,
    };
    Ok(html(StatusCode::OK, &page))
}

/// A manifest by digest, as what an index lists; `None` when it cannot be read.
async fn child(visit: &Visit<'_>, name: &Name, digest: &str) -> Option<Manifest> {
    let digest: Digest = digest.parse().ok()?;
    let record = visit.registry.record(&visit.viewer, name, &Reference::Digest(digest)).await.ok()?;
    Some(Manifest::parse(&record.bytes))
}

/// The config of an image manifest, when it has one that can be read.
async fn config(visit: &Visit<'_>, name: &Name, record: &Record, manifest: &Manifest) -> Option<Config> {
    let digest: Digest = manifest.image_config()?.digest.parse().ok()?;
    match visit.registry.referenced_blob(&visit.viewer, name, record, &digest, MAX_CONFIG).await {
        Ok(Some(bytes)) => Some(Config::parse(&bytes)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(repository = %name, %digest, error = %e, "cannot read an image config");
            None
        }
    }
}

/// One row of a repository's tags: its record, and its config or its index's entries.
async fn tag_row(visit: &Visit<'_>, name: &Name, entry: &TagEntry, now: SystemTime, may_delete: bool) -> TagRow {
    let tag = entry.tag.to_string();
    let record = visit.registry.record(&visit.viewer, name, &Reference::Tag(entry.tag.clone())).await;
    let (digest, kind, size, platforms) = match &record {
        Ok(record) => {
            let manifest = Manifest::parse(&record.bytes);
            let kind = manifest::kind(&record.media_type, &manifest);
            if manifest.is_index() {
                let entries: Vec<_> = manifest.platform_entries().collect();
                let sizes = join_all(entries.iter().map(|d| child(visit, name, &d.digest))).await;
                let size = sizes.iter().flatten().map(Manifest::size).sum();
                let platforms = entries.iter().map(|d| d.platform_text()).collect::<Vec<_>>().join(", ");
                (record.digest.to_string(), kind, size, platforms)
            } else {
                let platform = match config(visit, name, record, &manifest).await {
                    Some(c) => manifest::platform(&c.os, &c.architecture, c.variant.as_deref()),
                    None => "—".to_string(),
                };
                (record.digest.to_string(), kind, manifest.size(), platform)
            }
        }
        // Deleted since the listing, or unreadable: the row says so.
        Err(e) => (String::new(), e.message.clone(), 0, "—".to_string()),
    };
    TagRow {
        href: image_href(name, &tag),
        digest_short: short(&digest),
        digest_href: image_href(name, &digest),
        delete_href: if may_delete { format!("{}/delete", image_href(name, &tag)) } else { String::new() },
        tag,
        digest,
        kind,
        size: Size::new(size),
        platforms,
        pushed: When::new(entry.pushed, now),
    }
}

/// `/r/<name>`.
async fn repository(visit: &Visit<'_>, name: &Name) -> Answer {
    let mut tags = visit.registry.tags(&visit.viewer, name).await?.items;
    if tags.is_empty() && !visit.registry.repository_exists(&visit.viewer, name).await? {
        return Err(RegistryError::new(ErrorKind::NameUnknown, format!("there is no repository {name}")));
    }
    let by_name = visit.param("sort") == Some("name");
    if !by_name {
        tags.sort_by(|a, b| b.pushed.cmp(&a.pushed).then_with(|| a.tag.as_str().cmp(b.tag.as_str())));
    }
    let pages = tags.len().div_ceil(TAGS_PER_PAGE).max(1);
    let page = visit.param("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).clamp(1, pages);
    let sort = if by_name { "name" } else { "" };
    let page_href = |p: usize| with_query(&repo_href(name), &[("sort", sort), ("page", &p.to_string())]);
    let may_delete = visit.viewer.may_delete(name);
    let now = SystemTime::now();
    let shown = tags.iter().skip((page - 1) * TAGS_PER_PAGE).take(TAGS_PER_PAGE);
    let rows = join_all(shown.map(|entry| tag_row(visit, name, entry, now, may_delete))).await;
    let notice = visit
        .param("deleted")
        .map(|what| format!("Deleted {what}. Its storage is freed when garbage collection runs."));
    let page = RepositoryPage {
        layout: visit.layout(name.to_string()),
        name: name.to_string(),
        pull: format!("docker pull {}/{name}", visit.host),
        by_name,
        by_pushed_href: repo_href(name),
        by_name_href: with_query(&repo_href(name), &[("sort", "name")]),
        total: tags.len(),
        rows,
        prev_href: (page > 1).then(|| page_href(page - 1)),
        next_href: (page < pages).then(|| page_href(page + 1)),
        notice,
        may_delete,
    };
    Ok(html(StatusCode::OK, &page))
}

/// `/r/<name>/-/<reference>`.
async fn image(visit: &Visit<'_>, name: &Name, reference: &Reference) -> Answer {
    let record = visit.registry.record(&visit.viewer, name, reference).await?;
    let manifest = Manifest::parse(&record.bytes);
    let digest = record.digest.to_string();
    let now = SystemTime::now();
    let tag = match reference {
        Reference::Tag(t) => Some(t.to_string()),
        Reference::Digest(_) => None,
    };
    let mut pulls = Vec::new();
    if let Some(tag) = &tag {
        pulls.push(format!("docker pull {}/{name}:{tag}", visit.host));
    }
    pulls.push(format!("docker pull {}/{name}@{digest}", visit.host));

    let mut platforms = Vec::new();
    let mut layers = Vec::new();
    let mut config_view = None;
    let total;
    if manifest.is_index() {
        let children = join_all(manifest.entries().iter().map(|d| child(visit, name, &d.digest))).await;
        for (entry, child) in manifest.entries().iter().zip(&children) {
            platforms.push(PlatformRow {
                platform: entry.platform_text(),
                digest_short: short(&entry.digest),
                href: image_href(name, &entry.digest),
                size: child.as_ref().map(|c| Size::new(c.size())),
            });
        }
        let platform_sizes = manifest.entries().iter().zip(&children).filter(|(e, _)| !e.is_attestation());
        total = Some(Size::new(platform_sizes.filter_map(|(_, c)| c.as_ref()).map(Manifest::size).sum()));
    } else {
        total = Some(Size::new(manifest.size()));
        layers = manifest
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| LayerRow {
                number: i + 1,
                digest: l.digest.clone(),
                digest_short: short(&l.digest),
                media_type: l.media_type.clone(),
                size: Size::new(l.size),
            })
            .collect();
        if let Some(config) = config(visit, name, &record, &manifest).await {
            config_view = Some(config_view_of(config, &manifest, now));
        }
    }
    let referrers = visit
        .registry
        .referrer_descriptors(&visit.viewer, name, &record.digest)
        .await?
        .into_iter()
        .filter_map(|value| serde_json::from_value::<manifest::Descriptor>(value).ok())
        .map(|d| ReferrerRow {
            artifact_type: d.artifact_type.clone().unwrap_or_else(|| d.media_type.clone()),
            digest_short: short(&d.digest),
            href: image_href(name, &d.digest),
            size: Size::new(d.size),
            created: d
                .annotations
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.created"))
                .and_then(|c| When::parse(c, now))
                .map_or_else(String::new, |w| w.ago),
        })
        .collect();
    let title = match &tag {
        Some(tag) => format!("{name}:{tag}"),
        None => format!("{name}@{}", short(&digest)),
    };
    let reference_text = tag.clone().unwrap_or_else(|| digest.clone());
    let page = ImagePage {
        layout: visit.layout(title),
        repo_href: repo_href(name),
        name: name.to_string(),
        kind: manifest::kind(&record.media_type, &manifest),
        media_type: record.media_type.clone(),
        pulls,
        total,
        platforms,
        layers,
        config: config_view,
        referrers,
        subject_href: manifest.subject.as_ref().map(|s| image_href(name, &s.digest)),
        annotations: manifest.annotations.clone().unwrap_or_default().into_iter().collect(),
        delete_href: visit.viewer.may_delete(name).then(|| format!("{}/delete", image_href(name, &reference_text))),
        tag,
        digest_short: short(&digest),
        digest,
    };
    Ok(html(StatusCode::OK, &page))
}

/// What an image config shows, its history matched with the manifest's layers.
fn config_view_of(config: Config, manifest: &Manifest, now: SystemTime) -> ConfigView {
    let runtime = config.config.unwrap_or_default();
    let mut layers = manifest.layers().iter();
    let history = config
        .history
        .unwrap_or_default()
        .into_iter()
        .map(|step| HistoryRow {
            created_by: step.created_by.unwrap_or_default(),
            created: step.created.as_deref().and_then(|c| When::parse(c, now)),
            layer: if step.empty_layer { None } else { layers.next().map(|l| (short(&l.digest), Size::new(l.size))) },
            comment: step.comment.filter(|c| !c.is_empty()),
        })
        .collect();
    ConfigView {
        created: config.created.as_deref().and_then(|c| When::parse(c, now)),
        platform: manifest::platform(&config.os, &config.architecture, config.variant.as_deref()),
        entrypoint: runtime.entrypoint.as_deref().filter(|e| !e.is_empty()).map(manifest::command),
        cmd: runtime.cmd.as_deref().filter(|c| !c.is_empty()).map(manifest::command),
        workdir: runtime.working_dir.filter(|w| !w.is_empty()),
        user: runtime.user.filter(|u| !u.is_empty()),
        env: runtime.env.unwrap_or_default(),
        ports: runtime.exposed_ports.unwrap_or_default().into_keys().collect(),
        labels: runtime.labels.unwrap_or_default().into_iter().collect(),
        history,
    }
}

/// `GET /r/<name>/-/<reference>/delete`: what deleting takes along.
async fn confirm_delete(visit: &Visit<'_>, name: &Name, reference: &Reference) -> Answer {
    if !visit.viewer.may_delete(name) {
        let kind = if visit.viewer.user().is_none() { ErrorKind::Unauthorized } else { ErrorKind::Denied };
        return Err(RegistryError::new(kind, format!("you may not delete from repository {name}")));
    }
    let record = visit.registry.record(&visit.viewer, name, reference).await?;
    let tag = match reference {
        Reference::Tag(t) => Some(t.clone()),
        Reference::Digest(_) => None,
    };
    let other_tags = visit
        .registry
        .tags_on(&visit.viewer, name, &record.digest)
        .await?
        .into_iter()
        .filter(|t| Some(t) != tag.as_ref())
        .map(|t: Tag| t.to_string())
        .collect();
    let reference_text = tag.as_ref().map_or_else(|| record.digest.to_string(), Tag::to_string);
    let page = DeletePage {
        layout: visit.layout(format!("Delete {name}:{reference_text}")),
        name: name.to_string(),
        repo_href: repo_href(name),
        image_href: image_href(name, &reference_text),
        action: format!("{}/delete", image_href(name, &reference_text)),
        tag: tag.map(|t| t.to_string()),
        digest: record.digest.to_string(),
        other_tags,
    };
    Ok(html(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_repositories_images_and_deletions() {
        assert!(matches!(target("team/app"), Some(Target::Repository("team/app"))));
        assert!(matches!(target("team/app/"), Some(Target::Repository("team/app"))));
        assert!(matches!(target("team/app/-/v1"), Some(Target::Image("team/app", "v1"))));
        assert!(matches!(target("a/-/sha256:00/delete"), Some(Target::Delete("a", "sha256:00"))));
        assert!(target("a/-/v1/other").is_none());
    }
}
