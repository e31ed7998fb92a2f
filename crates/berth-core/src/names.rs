//! Repository names, tags and manifest references, validated as the spec's grammar says.
//!
//! OCI Distribution Spec, "Pulling manifests": `<name>` matches
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*` and a `<reference>`
//! is a digest or a tag matching `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. Because every name
//! component starts with `[a-z0-9]`, storage keys that use `_`-led components can never collide
//! with a repository.

use std::fmt;

use crate::digest::Digest;
use crate::error::{ErrorKind, RegistryError, Result};

/// Longest repository name accepted (clients limit the full reference to 255 characters).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag the spec allows.
pub const MAX_TAG_LEN: usize = 128;

/// A valid repository name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates `s` as a repository name.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Err(RegistryError::new(ErrorKind::NameInvalid, format!("invalid repository name {s:?}: {why}")))
        };
        if s.is_empty() {
            return invalid("it is empty");
        }
        if s.len() > MAX_NAME_LEN {
            return invalid("it is longer than 255 characters");
        }
        for component in s.split('/') {
            if let Err(why) = check_component(component) {
                return invalid(&why);
            }
        }
        Ok(Name(s.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks one `/`-separated component: alphanumeric runs joined by `.`, `_`, `__` or `-+`.
fn check_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("it has an empty path component".into());
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(format!("component {c:?} must start and end with a lowercase letter or digit"));
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "component {c:?} has the invalid separator {sep:?} (only lowercase letters, digits, '.', '_', '__' and '-' runs)"
            ));
        }
    }
    Ok(())
}

/// A valid tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates `s` as a tag.
    pub fn parse(s: &str) -> Result<Self> {
        let bytes = s.as_bytes();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_TAG_LEN
            && word(bytes[0])
            && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(RegistryError::new(
                ErrorKind::ManifestInvalid,
                format!("invalid tag {s:?}: a tag is 1 to 128 of [A-Za-z0-9_.-] and does not start with '.' or '-'"),
            ))
        }
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a manifest is addressed: by tag or by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A mutable tag.
    Tag(Tag),
    /// An immutable digest.
    Digest(Digest),
}

impl Reference {
    /// A reference containing `:` is a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Self> {
        if s.contains(':') { s.parse().map(Reference::Digest) } else { Tag::parse(s).map(Reference::Tag) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "library/ubuntu", "a0/b-c/d__e/f.g", "x--y", "a/b/c/d/e"] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in ["", "A", "a//b", "/a", "a/", "_a", "a_", "a/../b", "..", "a___b", "a.-b", "a..b", &long, "a b", "ä"]
        {
            assert_eq!(Name::parse(bad).unwrap_err().kind, ErrorKind::NameInvalid, "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert!(Tag::parse("v1.0_RC-1").is_ok());
        assert!(Tag::parse(&"t".repeat(128)).is_ok());
        for bad in ["", ".a", "-a", "a/b", "a:b", "a b", &"t".repeat(129)] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }
}

/// Property tests: no input panics a validator; what validates comes back unchanged.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn any_text_is_a_name_or_name_invalid(s in ".{0,300}") {
            match Name::parse(&s) {
                Ok(name) => prop_assert_eq!(name.as_str(), s.as_str()),
                Err(e) => prop_assert_eq!(e.kind, ErrorKind::NameInvalid),
            }
        }

        #[test]
        fn valid_names_round_trip(s in crate::route::props::NAME) {
            let name = Name::parse(&s).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
        }

        #[test]
        fn tags_are_the_spec_grammar(s in ".{0,200}") {
            let grammar = !s.is_empty()
                && s.len() <= MAX_TAG_LEN
                && s.bytes().enumerate().all(|(i, b)| b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-')));
            prop_assert_eq!(Tag::parse(&s).is_ok(), grammar, "{:?}", s);
        }

        #[test]
        fn valid_tags_round_trip(s in "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}") {
            let tag = Tag::parse(&s).unwrap();
            prop_assert_eq!(tag.as_str(), s.as_str());
        }

        #[test]
        fn any_text_is_a_reference_or_an_error(s in ".{0,200}") {
            let _ = Reference::parse(&s);
        }
    }
}
