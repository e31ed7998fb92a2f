//! Users, groups and access rules, read from one TOML document.
//!
//! ```toml
//! [users]                      # name = password hash (argon2 PHC string, or bcrypt as htpasswd -B writes it)
//! alice = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! ci = "$2y$05$..."
//!
//! [groups]
//! admins = ["alice"]
//!
//! [[rules]]                    # every rule that matches adds its actions; nothing else is allowed
//! repositories = ["**"]        # globs: `*` stays within one path component, `**` crosses `/`
//! who = ["group:admins"]       # user:<name>, group:<name>, authenticated (any user), anonymous (everyone)
//! actions = ["pull", "push", "delete"]
//! ```
//!
//! The document is validated as a whole when it is loaded: unknown keys, users or groups, malformed
//! hashes and bad globs are errors that name the offending entry, so a typo never silently opens
//! or closes a repository.

use std::collections::{BTreeMap, BTreeSet};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::password;

/// What a caller may do on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The name used in policies and token scopes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Action::ALL.into_iter().find(|a| a.as_str() == s).ok_or(())
    }
}

/// A parsed, validated policy.
pub struct Policy {
    users: BTreeMap<String, String>,
    rules: Vec<Rule>,
}

struct Rule {
    repositories: GlobSet,
    who: Vec<Subject>,
    actions: BTreeSet<Action>,
}

/// Who a rule applies to.
#[derive(Debug, PartialEq, Eq)]
enum Subject {
    Everyone,
    Authenticated,
    User(String),
    /// A group, resolved to its members at load time.
    Group(BTreeSet<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    users: BTreeMap<String, String>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    repositories: Vec<String>,
    who: Vec<String>,
    actions: Vec<String>,
}

impl Policy {
    /// Parses and validates a policy document; the error says which entry is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        for (user, hash) in &file.users {
            if user.is_empty() || user.contains(':') || user.chars().any(char::is_whitespace) {
                return Err(format!("user name {user:?} must be non-empty, without ':' or spaces"));
            }
            password::check_format(hash).map_err(|why| format!("users.{user}: {why}"))?;
        }
        for (group, members) in &file.groups {
            if let Some(unknown) = members.iter().find(|m| !file.users.contains_key(*m)) {
                return Err(format!("groups.{group}: {unknown:?} is not in [users]"));
            }
        }
        let rules = file
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| Rule::parse(rule, &file).map_err(|why| format!("rules[{i}]: {why}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { users: file.users, rules })
    }

    /// The password hash of `user`, if the user exists.
    pub fn password_hash(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// What `user` (`None` for an anonymous caller) may do on `repository`.
    pub fn allowed(&self, user: Option<&str>, repository: &str) -> BTreeSet<Action> {
        let mut allowed = BTreeSet::new();
        for rule in &self.rules {
            if rule.who.iter().any(|s| s.includes(user)) && rule.repositories.is_match(repository) {
                allowed.extend(rule.actions.iter().copied());
            }
        }
        allowed
    }
}

impl Rule {
    fn parse(rule: &RuleFile, file: &File) -> Result<Self, String> {
        let mut globs = GlobSetBuilder::new();
        for pattern in &rule.repositories {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("repository pattern {pattern:?}: {e}"))?;
            globs.add(glob);
        }
        let repositories = globs.build().map_err(|e| e.to_string())?;
        let who = rule.who.iter().map(|w| Subject::parse(w, file)).collect::<Result<_, _>>()?;
        let mut actions = BTreeSet::new();
        for action in &rule.actions {
            match action.as_str() {
                "*" => actions.extend(Action::ALL),
                a => {
                    actions.insert(a.parse().map_err(|_| format!("unknown action {a:?} (pull, push, delete or *)"))?);
                }
            }
        }
        Ok(Self { repositories, who, actions })
    }
}

impl Subject {
    fn parse(text: &str, file: &File) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "anonymous" => Ok(Subject::Everyone),
            None if text == "authenticated" => Ok(Subject::Authenticated),
            Some(("user", name)) if file.users.contains_key(name) => Ok(Subject::User(name.to_string())),
            Some(("group", name)) => match file.groups.get(name) {
                Some(members) => Ok(Subject::Group(members.iter().cloned().collect())),
                None => Err(format!("group {name:?} is not in [groups]")),
            },
            Some(("user", name)) => Err(format!("user {name:?} is not in [users]")),
            _ => Err(format!("unknown subject {text:?} (user:<name>, group:<name>, authenticated or anonymous)")),
        }
    }

    fn includes(&self, user: Option<&str>) -> bool {
        match (self, user) {
            (Subject::Everyone, _) => true,
            (Subject::Authenticated, user) => user.is_some(),
            (Subject::User(name), Some(user)) => name == user,
            (Subject::Group(members), Some(user)) => members.contains(user),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> String {
        bcrypt::hash("pw", 4).unwrap()
    }

    fn policy(rules: &str) -> Policy {
        let h = hash();
        Policy::parse(&format!("[users]\nalice = \"{h}\"\nbob = \"{h}\"\n[groups]\ndevs = [\"bob\"]\n{rules}")).unwrap()
    }

    fn set(actions: &[Action]) -> BTreeSet<Action> {
        actions.iter().copied().collect()
    }

    #[test]
    fn rules_add_up_per_subject_and_glob() {
        let p = policy(
            r#"
            [[rules]]
            repositories = ["public/*"]
            who = ["anonymous"]
            actions = ["pull"]
            [[rules]]
            repositories = ["team/**"]
            who = ["group:devs"]
            actions = ["pull", "push"]
            [[rules]]
            repositories = ["**"]
            who = ["user:alice"]
            actions = ["*"]
            "#,
        );
        assert_eq!(p.allowed(None, "public/a"), set(&[Action::Pull]));
        assert_eq!(p.allowed(None, "public/a/b"), set(&[]));
        assert_eq!(p.allowed(None, "team/x"), set(&[]));
        assert_eq!(p.allowed(Some("bob"), "team/x/y"), set(&[Action::Pull, Action::Push]));
        assert_eq!(p.allowed(Some("bob"), "public/a"), set(&[Action::Pull]));
        assert_eq!(p.allowed(Some("bob"), "other"), set(&[]));
        assert_eq!(p.allowed(Some("alice"), "other/z"), set(&Action::ALL));
    }

    #[test]
    fn authenticated_excludes_anonymous() {
        let p = policy("[[rules]]\nrepositories = [\"*\"]\nwho = [\"authenticated\"]\nactions = [\"pull\"]\n");
        assert_eq!(p.allowed(Some("alice"), "a"), set(&[Action::Pull]));
        assert_eq!(p.allowed(None, "a"), set(&[]));
    }

    #[test]
    fn the_example_policy_parses_and_means_what_it_says() {
        let p = Policy::parse(include_str!("../../../infra/berth-auth.example.toml")).unwrap();
        assert_eq!(p.allowed(Some("alice"), "any/thing"), set(&Action::ALL));
        assert_eq!(p.allowed(Some("ci"), "team/app"), set(&[Action::Pull, Action::Push]));
        assert_eq!(p.allowed(Some("ci"), "other"), set(&[Action::Pull]));
        assert_eq!(p.allowed(None, "public/app"), set(&[Action::Pull]));
        assert_eq!(p.allowed(None, "team/app"), set(&[]));
    }

    #[test]
    fn mistakes_are_named() {
        let bad = |text: &str| Policy::parse(text).err().unwrap();
        assert!(bad("[users]\na = \"plain\"\n").contains("users.a"));
        assert!(bad(&format!("[users]\na = \"{}\"\n[groups]\ng = [\"b\"]\n", hash())).contains("groups.g"));
        assert!(
            bad("[[rules]]\nrepositories = [\"*\"]\nwho = [\"user:x\"]\nactions = [\"pull\"]\n").contains("rules[0]")
        );
        assert!(
            bad("[[rules]]\nrepositories = [\"*\"]\nwho = [\"anonymous\"]\nactions = [\"write\"]\n").contains("write")
        );
        assert!(
            bad("[[rules]]\nrepositories = [\"[\"]\nwho = [\"anonymous\"]\nactions = [\"pull\"]\n").contains("pattern")
        );
        assert!(bad("[user]\n").contains("user"));
    }
}
