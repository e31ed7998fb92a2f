//! Links between the pages: every href the UI writes, with names and references
//! percent-encoded, and where a sign-in may send its user back to.

use berth_core::names::Name;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Characters escaped in the path segments of links (names, tags and digests need none of them;
/// this is for safety's sake).
const PATH: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>').add(b'?').add(b'`').add(b'%');

/// `/r/<name>`.
pub(crate) fn repo_href(name: &Name) -> String {
    format!("/r/{}", utf8_percent_encode(name.as_str(), PATH))
}

/// `/r/<name>/-/<reference>`.
pub(crate) fn image_href(name: &Name, reference: &str) -> String {
    format!("{}/-/{}", repo_href(name), utf8_percent_encode(reference, PATH))
}

/// `path?key=value&…`.
pub(crate) fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(k, v);
    }
    let query = query.finish();
    if query.is_empty() { path.to_string() } else { format!("{path}?{query}") }
}

/// The sign-in page, coming back to `here`.
pub(crate) fn login_href(here: &str) -> String {
    with_query("/-/login", &[("next", here)])
}

/// Where a sign-in may send its user back to: a path of this site.
pub(crate) fn local(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\')).unwrap_or("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_where_a_sign_in_may_return() {
        assert_eq!(local(Some("/r/a?sort=name")), "/r/a?sort=name");
        for bad in ["//evil.example.com", "https://evil.example.com", "/\\evil", ""] {
            assert_eq!(local(Some(bad)), "/", "{bad}");
        }
        assert_eq!(login_href("/r/a?x=1&y=2"), "/-/login?next=%2Fr%2Fa%3Fx%3D1%26y%3D2");
        assert_eq!(with_query("/", &[("q", ""), ("after", "a/b")]), "/?after=a%2Fb");
        let name = Name::parse("team/app").unwrap();
        assert_eq!(image_href(&name, "sha256:00"), "/r/team/app/-/sha256:00");
    }
}
