//! Retention: which tags, and which untagged manifests, garbage collection removes. A TOML
//! document of rules, each naming repositories by glob (as the auth policy does; `*` stays within
//! a path component, `**` crosses `/`):
//!
//! ```toml
//! [[rules]]
//! repositories = ["team/**"]
//! keep_last = 10                 # the 10 most recently pushed tags
//! keep_tags = ["v*", "latest"]   # tags matching any of these globs
//! keep_younger_than = "30d"      # tags pushed within 30 days
//! delete_untagged_after = "7d"   # untagged manifests older than 7 days are removed
//! ```
//!
//! How rules combine, for a repository:
//! - The rules whose `repositories` match it apply; nothing else does. A repository no rule
//!   names keeps every tag and every manifest.
//! - Tags: when an applying rule has a tag criterion (`keep_last`, `keep_tags`,
//!   `keep_younger_than`), a tag stays if **any** criterion of **any** applying rule keeps it
//!   (OR), and is removed otherwise. Applying rules without a tag criterion have no say on tags.
//! - Untagged manifests: removed when older than the **longest** `delete_untagged_after` of the
//!   applying rules (the most lenient wins); kept when no applying rule sets one. A manifest that
//!   a kept manifest references (an index's entry) or that refers to a kept one (a referrer) is
//!   never removed.
//!
//! Above every rule, the collection's grace: a tag or manifest written within it stays.
//!
//! A tag's push time is when its object was last written, which listings report: "most recently
//! pushed" costs no read. The document is validated as a whole when it is loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

/// A parsed, validated retention policy.
#[derive(Default)]
pub struct Retention {
    rules: Vec<Rule>,
}

struct Rule {
    repositories: GlobSet,
    keep_last: Option<usize>,
    keep_tags: Option<GlobSet>,
    keep_younger_than: Option<Duration>,
    delete_untagged_after: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    repositories: Vec<String>,
    keep_last: Option<usize>,
    keep_tags: Option<Vec<String>>,
    keep_younger_than: Option<String>,
    delete_untagged_after: Option<String>,
}

fn globs(patterns: &[String], separator: bool) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(separator)
            .build()
            .map_err(|e| format!("pattern {pattern:?}: {e}"))?;
        set.add(glob);
    }
    set.build().map_err(|e| e.to_string())
}

fn age(field: &str, text: &Option<String>) -> Result<Option<Duration>, String> {
    text.as_deref().map(|t| humantime::parse_duration(t).map_err(|e| format!("{field} {t:?}: {e}"))).transpose()
}

impl Retention {
    /// Parses and validates a retention document; the error names the offending rule.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let rules = file
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let parsed = || -> Result<Rule, String> {
                    if rule.repositories.is_empty() {
                        return Err("repositories is empty".into());
                    }
                    Ok(Rule {
                        repositories: globs(&rule.repositories, true)?,
                        keep_last: rule.keep_last,
                        keep_tags: rule.keep_tags.as_deref().map(|t| globs(t, false)).transpose()?,
                        keep_younger_than: age("keep_younger_than", &rule.keep_younger_than)?,
                        delete_untagged_after: age("delete_untagged_after", &rule.delete_untagged_after)?,
                    })
                };
                parsed().map_err(|why| format!("rules[{i}]: {why}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// What the policy says of repository `name`.
    pub fn for_repository(&self, name: &str) -> RepositoryRetention<'_> {
        RepositoryRetention { rules: self.rules.iter().filter(|r| r.repositories.is_match(name)).collect() }
    }

    /// Whether no rule removes anything.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The rules that apply to one repository.
pub struct RepositoryRetention<'a> {
    rules: Vec<&'a Rule>,
}

impl RepositoryRetention<'_> {
    /// The tags to remove among `tags` (name → when it was pushed), as of `now`.
    pub fn tags_to_remove(&self, tags: &BTreeMap<String, SystemTime>, now: SystemTime) -> BTreeSet<String> {
        let deciding: Vec<&&Rule> = self
            .rules
            .iter()
            .filter(|r| r.keep_last.is_some() || r.keep_tags.is_some() || r.keep_younger_than.is_some())
            .collect();
        if deciding.is_empty() {
            return BTreeSet::new();
        }
        // Most recently pushed first; ties by name, so the order is stable.
        let mut recent: Vec<(&String, &SystemTime)> = tags.iter().collect();
        recent.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let rank: BTreeMap<&String, usize> = recent.iter().enumerate().map(|(i, (tag, _))| (*tag, i)).collect();
        tags.iter()
            .filter(|(tag, pushed)| {
                let kept = deciding.iter().any(|rule| {
                    rule.keep_last.is_some_and(|n| rank[tag] < n)
                        || rule.keep_tags.as_ref().is_some_and(|globs| globs.is_match(tag.as_str()))
                        || rule.keep_younger_than.is_some_and(|age| younger(**pushed, age, now))
                });
                !kept
            })
            .map(|(tag, _)| tag.clone())
            .collect()
    }

    /// Untagged manifests older than this are removed; `None`: they are kept.
    pub fn untagged_max_age(&self) -> Option<Duration> {
        self.rules.iter().filter_map(|r| r.delete_untagged_after).max()
    }
}

/// Whether something written at `time` is younger than `age` at `now`.
pub(crate) fn younger(time: SystemTime, age: Duration, now: SystemTime) -> bool {
    now.duration_since(time).map_or(true, |elapsed| elapsed < age)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn tags(now: SystemTime, list: &[(&str, u64)]) -> BTreeMap<String, SystemTime> {
        list.iter().map(|(t, days)| (t.to_string(), now - DAY * *days as u32)).collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keep_criteria_add_up_and_only_named_repositories_lose_tags() {
        let policy = Retention::parse(
            r#"
            [[rules]]
            repositories = ["team/*"]
            keep_last = 2
            [[rules]]
            repositories = ["team/*"]
            keep_tags = ["v*"]
            [[rules]]
            repositories = ["team/app"]
            keep_younger_than = "3d"
            "#,
        )
        .unwrap();
        let now = SystemTime::now();
        let all = tags(now, &[("a", 1), ("b", 2), ("c", 5), ("v1", 40), ("x", 10), ("y", 9)]);
        // app: keep_last 2 (a, b), v*, younger than 3 days (a, b): c, x, y go.
        assert_eq!(policy.for_repository("team/app").tags_to_remove(&all, now), set(&["c", "x", "y"]));
        // lib: no age rule.
        assert_eq!(policy.for_repository("team/lib").tags_to_remove(&all, now), set(&["c", "x", "y"]));
        assert!(
            policy.for_repository("team/app/nested").tags_to_remove(&all, now).is_empty(),
            "* stays in a component"
        );
        assert!(policy.for_repository("other").tags_to_remove(&all, now).is_empty());
        assert_eq!(policy.for_repository("team/app").untagged_max_age(), None);
    }

    #[test]
    fn keep_last_ranks_by_push_time_and_untagged_take_the_longest_age() {
        let policy = Retention::parse(
            r#"
            [[rules]]
            repositories = ["**"]
            keep_last = 1
            delete_untagged_after = "1d"
            [[rules]]
            repositories = ["slow/**"]
            delete_untagged_after = "10d"
            "#,
        )
        .unwrap();
        let now = SystemTime::now();
        let all = tags(now, &[("old", 5), ("new", 1), ("mid", 3)]);
        assert_eq!(policy.for_repository("any").tags_to_remove(&all, now), set(&["mid", "old"]));
        assert_eq!(policy.for_repository("any").untagged_max_age(), Some(DAY));
        assert_eq!(policy.for_repository("slow/x").untagged_max_age(), Some(DAY * 10));
        // A rule without tag criteria has no say on tags.
        let only_untagged =
            Retention::parse("[[rules]]\nrepositories = [\"**\"]\ndelete_untagged_after = \"1h\"\n").unwrap();
        assert!(only_untagged.for_repository("a").tags_to_remove(&all, now).is_empty());
        assert!(
            Retention::default().is_empty() && Retention::default().for_repository("a").untagged_max_age().is_none()
        );
    }

    #[test]
    fn mistakes_are_named() {
        let bad = |text: &str| Retention::parse(text).err().unwrap();
        assert!(bad("[[rules]]\nrepositories = []\nkeep_last = 1\n").contains("rules[0]"));
        assert!(bad("[[rules]]\nrepositories = [\"[\"]\n").contains("pattern"));
        assert!(bad("[[rules]]\nrepositories = [\"a\"]\nkeep_younger_than = \"soon\"\n").contains("keep_younger_than"));
        assert!(bad("[[rules]]\nrepositories = [\"a\"]\nkeep = 1\n").contains("keep"));
    }
}
