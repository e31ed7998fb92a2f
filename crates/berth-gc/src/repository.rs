//! Sweeping one repository: retention on its tags, then mark (what its kept tags and manifests
//! reach) and sweep (what they do not), under its sweep marker.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime};

use berth_core::digest::Digest;
use berth_core::gc::{INTENT_TTL, SWEEP_BUDGET};
use berth_core::keys;
use berth_core::manifests::{Record, References};
use berth_core::names::Name;
use berth_storage::{Condition, ObjectMeta};
use bytes::Bytes;

use crate::retention::younger;
use crate::{Collector, Report, Result, unchanged};

/// What a repository holds, listed once its sweep marker is written.
#[derive(Default)]
struct Contents {
    tags: BTreeMap<String, ObjectMeta>,
    manifests: BTreeMap<Digest, ObjectMeta>,
    links: BTreeMap<Digest, ObjectMeta>,
    /// (subject, referrer) of each referrer entry.
    referrers: BTreeMap<(Digest, Digest), ObjectMeta>,
    intents: Vec<ObjectMeta>,
}

/// A digest written as `<alg>/<hex>` (or `<alg>-<hex>`) in a key.
fn digest_in(text: &str, separator: char) -> Option<Digest> {
    let (alg, hex) = text.split_once(separator)?;
    format!("{alg}:{hex}").parse().ok()
}

/// What a sweep removes, in the order it does: tags first (so no tag ever points to a removed
/// manifest), links last (so no kept manifest ever points to a removed link).
#[derive(Default)]
struct Plan {
    tags: Vec<ObjectMeta>,
    referrers: Vec<ObjectMeta>,
    manifests: Vec<ObjectMeta>,
    links: Vec<ObjectMeta>,
    /// Nothing is left: the catalog entry goes too.
    empty: bool,
}

impl Collector {
    /// Sweeps repository `name`.
    pub(crate) async fn sweep_repository(&self, name: &Name, report: &mut Report) -> Result<()> {
        let dry = self.options.dry_run;
        let marker = keys::gc_sweep(name);
        let started = Instant::now();
        if !dry {
            self.store.put(&marker, Bytes::from(self.run_id.clone()), Condition::Overwrite).await?;
        }
        let swept = self.sweep_marked(name, started, report).await;
        if !dry && let Err(e) = self.store.delete(&marker).await {
            tracing::warn!(repository = %name, error = %e, "could not remove the sweep marker; it expires");
        }
        swept
    }

    async fn sweep_marked(&self, name: &Name, started: Instant, report: &mut Report) -> Result<()> {
        let contents = self.contents(name).await?;
        let now = SystemTime::now();
        if !self.options.dry_run {
            if contents.intents.iter().any(|i| younger(i.modified, INTENT_TTL, now)) {
                report.repositories_busy += 1;
                return Ok(());
            }
            for stale in &contents.intents {
                self.store.delete(&stale.key).await?;
            }
        }
        report.repositories.examined += 1;
        report.tags.examined += contents.tags.len() as u64;
        report.manifests.examined += contents.manifests.len() as u64;
        report.links.examined += contents.links.len() as u64;
        report.referrers.examined += contents.referrers.len() as u64;
        let plan = self.plan(name, &contents, now).await?;
        self.carry_out(name, plan, started, report).await
    }

    /// Lists every object of the repository.
    async fn contents(&self, name: &Name) -> Result<Contents> {
        let prefix = keys::repo_prefix(name);
        let mut contents = Contents::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(&prefix, after.as_deref(), 1000).await?;
            after = page.last_key().map(str::to_string);
            for object in page.objects {
                let rest = &object.key[prefix.len()..];
                if let Some(tag) = rest.strip_prefix("tags/") {
                    contents.tags.insert(tag.to_string(), object);
                } else if let Some(d) = rest.strip_prefix("manifests/").and_then(|d| digest_in(d, '/')) {
                    contents.manifests.insert(d, object);
                } else if let Some(d) = rest.strip_prefix("blobs/").and_then(|d| digest_in(d, '/')) {
                    contents.links.insert(d, object);
                } else if let Some(entry) = rest.strip_prefix("referrers/") {
                    // <alg>/<subject hex>/<alg>-<referrer hex>
                    let parsed = entry
                        .rsplit_once('/')
                        .and_then(|(subject, referrer)| Some((digest_in(subject, '/')?, digest_in(referrer, '-')?)));
                    if let Some(pair) = parsed {
                        contents.referrers.insert(pair, object);
                    }
                } else if rest.starts_with("gc/writing/") {
                    contents.intents.push(object);
                }
            }
            if !page.truncated || after.is_none() {
                return Ok(contents);
            }
        }
    }

    /// A stored manifest record's references; `None` when it cannot be read (then nothing that
    /// depends on it is removed).
    async fn references(&self, key: &str) -> Result<Option<(Digest, References)>> {
        let object = match self.store.get(key, None).await {
            Ok(object) => object,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let read = Record::decode(object.bytes().await?).and_then(|r| Ok((r.digest.clone(), r.references()?)));
        match read {
            Ok(read) => Ok(Some(read)),
            Err(e) => {
                tracing::warn!(key, error = %e, "unreadable manifest record: what it may reference is kept");
                Ok(None)
            }
        }
    }

    /// Decides what goes: retention on tags, then every manifest that kept tags, kept untagged
    /// manifests and young referrers do not reach, the referrer entries of what goes, and the
    /// links no kept manifest references.
    async fn plan(&self, name: &Name, contents: &Contents, now: SystemTime) -> Result<Plan> {
        let grace = self.options.grace;
        let retention = self.options.retention.for_repository(name.as_str());
        // What every tag and manifest references. A record that cannot be read keeps every link.
        let mut uncertain = false;
        let mut tagged: BTreeMap<&String, Digest> = BTreeMap::new();
        let mut refs: BTreeMap<Digest, References> = BTreeMap::new();
        for (tag, object) in &contents.tags {
            match self.references(&object.key).await? {
                Some((digest, references)) => {
                    tagged.insert(tag, digest.clone());
                    refs.insert(digest, references);
                }
                None => uncertain = true,
            }
        }
        for (digest, object) in &contents.manifests {
            if refs.contains_key(digest) {
                continue;
            }
            match self.references(&object.key).await? {
                Some((_, references)) => {
                    refs.insert(digest.clone(), references);
                }
                None => uncertain = true,
            }
        }
        let pushed: BTreeMap<String, SystemTime> =
            contents.tags.iter().map(|(tag, object)| (tag.clone(), object.modified)).collect();
        // Retention decides, above the grace: a tag pushed within it stays.
        let mut removed_tags = retention.tags_to_remove(&pushed, now);
        removed_tags.retain(|tag| pushed.get(tag).is_some_and(|at| !younger(*at, grace, now)));
        // Roots: what kept tags point to; untagged manifests retention keeps; young referrers.
        let mut kept: BTreeSet<Digest> =
            tagged.iter().filter(|(tag, _)| !removed_tags.contains(**tag)).map(|(_, d)| d.clone()).collect();
        let untagged_age = retention.untagged_max_age();
        for (digest, object) in &contents.manifests {
            let referrer = refs.get(digest).is_none_or(|r| r.subject.is_some());
            let root = younger(object.modified, grace, now)
                || !referrer && untagged_age.is_none_or(|age| younger(object.modified, age, now));
            if root || !refs.contains_key(digest) {
                kept.insert(digest.clone());
            }
        }
        // Closure: an index's entries, and the referrers of what is kept.
        let mut referrers: BTreeMap<&Digest, Vec<&Digest>> = BTreeMap::new();
        for (digest, r) in &refs {
            if let Some(subject) = &r.subject {
                referrers.entry(subject).or_default().push(digest);
            }
        }
        let mut frontier: Vec<Digest> = kept.iter().cloned().collect();
        while let Some(digest) = frontier.pop() {
            let entries = refs.get(&digest).map(|r| r.manifests.iter()).into_iter().flatten();
            let attached = referrers.get(&digest).into_iter().flatten().copied();
            for next in entries.chain(attached) {
                if kept.insert(next.clone()) {
                    frontier.push(next.clone());
                }
            }
        }
        let referenced: BTreeSet<&Digest> =
            kept.iter().filter_map(|d| refs.get(d)).flat_map(|r| r.blobs.iter()).collect();
        let links = if uncertain {
            Vec::new()
        } else {
            contents
                .links
                .iter()
                .filter(|(d, object)| !referenced.contains(d) && !younger(object.modified, grace, now))
                .map(|(_, o)| o.clone())
                .collect()
        };
        let mut plan = Plan {
            tags: contents.tags.iter().filter(|(t, _)| removed_tags.contains(*t)).map(|(_, o)| o.clone()).collect(),
            manifests: contents.manifests.iter().filter(|(d, _)| !kept.contains(*d)).map(|(_, o)| o.clone()).collect(),
            referrers: contents
                .referrers
                .iter()
                .filter(|((_, referrer), object)| !kept.contains(referrer) && !younger(object.modified, grace, now))
                .map(|(_, o)| o.clone())
                .collect(),
            links,
            empty: false,
        };
        plan.empty = plan.tags.len() == contents.tags.len()
            && plan.manifests.len() == contents.manifests.len()
            && plan.links.len() == contents.links.len()
            && plan.referrers.len() == contents.referrers.len();
        Ok(plan)
    }

    /// Removes what the plan says, in its order, while the sweep's time budget lasts.
    async fn carry_out(&self, name: &Name, plan: Plan, started: Instant, report: &mut Report) -> Result<()> {
        let dry = self.options.dry_run;
        let kinds = [
            (plan.tags, "tag"),
            (plan.referrers, "referrer entry"),
            (plan.manifests, "manifest"),
            (plan.links, "link"),
        ];
        for (objects, kind) in kinds {
            for object in objects {
                if dry {
                    report.would_remove.push(format!("{name}: {kind} {}", object.key));
                    if kind == "link" {
                        self.unlinked.lock().expect("not poisoned").insert(object.key.clone());
                    }
                } else {
                    if started.elapsed() >= SWEEP_BUDGET || self.out_of_time() {
                        report.repositories_busy += 1;
                        return Ok(());
                    }
                    // Links are the one thing written without the handshake (uploads link
                    // blobs): one written again since the listing stays.
                    if kind == "link" {
                        let now = self.head(&object.key).await?;
                        if !now.as_ref().is_some_and(|now| unchanged(&object, now)) {
                            report.changed += 1;
                            continue;
                        }
                    }
                    self.store.delete(&object.key).await?;
                }
                let count = match kind {
                    "tag" => &mut report.tags,
                    "referrer entry" => &mut report.referrers,
                    "manifest" => &mut report.manifests,
                    _ => &mut report.links,
                };
                count.remove(object.size);
            }
        }
        if plan.empty {
            if dry {
                report.would_remove.push(format!("{name}: catalog entry"));
            } else {
                self.store.delete(&keys::catalog(name)).await?;
            }
            report.repositories.remove(0);
        }
        Ok(())
    }
}
