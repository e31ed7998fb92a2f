//! Route parsing: the request path decides the endpoint, independent of any web framework.
//!
//! Repository names contain `/`, so routes are recognised from the end of the path (OCI
//! Distribution Spec, "Endpoints", end-1 … end-13):
//!
//! | path | route |
//! |---|---|
//! | `/token` | [`Route::Token`] (the token endpoint, when authentication is on) |
//! | `/v2/` | [`Route::Base`] |
//! | `/v2/_catalog` | [`Route::Catalog`] |
//! | `/v2/<name>/tags/list` | [`Route::Tags`] |
//! | `/v2/<name>/manifests/<reference>` | [`Route::Manifest`] |
//! | `/v2/<name>/blobs/uploads/` | [`Route::UploadStart`] |
//! | `/v2/<name>/blobs/uploads/<id>` | [`Route::Upload`] |
//! | `/v2/<name>/blobs/<digest>` | [`Route::Blob`] |
//! | `/v2/<name>/referrers/<digest>` | [`Route::Referrers`] |

use crate::error::{ErrorKind, RegistryError, Result};
use crate::names::Name;

/// An endpoint with its path parameters (references and digests are parsed by the handler, so
/// each endpoint answers malformed ones with its own error code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/token`: the token endpoint.
    Token,
    /// `/v2/`: API version check.
    Base,
    /// `/v2/_catalog`: repository listing.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(Name),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(Name, String),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(Name, String),
    /// `/v2/<name>/blobs/uploads/`.
    UploadStart(Name),
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload(Name, String),
    /// `/v2/<name>/referrers/<digest>`.
    Referrers(Name, String),
}

/// Parses a percent-decoded request path.
pub fn parse(path: &str) -> Result<Route> {
    let not_found = || RegistryError::new(ErrorKind::NotFound, format!("no endpoint at {path:?}"));
    if path == "/token" {
        return Ok(Route::Token);
    }
    let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or_else(not_found)?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let name = |s: &str| Name::parse(s);
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags(name(n)?));
    }
    if let Some(n) = rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads")) {
        return Ok(Route::UploadStart(name(n)?));
    }
    let (head, last) = rest.rsplit_once('/').ok_or_else(not_found)?;
    let (n, kind) = head.rsplit_once('/').ok_or_else(not_found)?;
    if last.is_empty() {
        return Err(not_found());
    }
    match kind {
        "manifests" => Ok(Route::Manifest(name(n)?, last.to_string())),
        "blobs" => Ok(Route::Blob(name(n)?, last.to_string())),
        "referrers" => Ok(Route::Referrers(name(n)?, last.to_string())),
        "uploads" => match n.strip_suffix("/blobs") {
            Some(n) => Ok(Route::Upload(name(n)?, last.to_string())),
            None => Err(not_found()),
        },
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn routes() {
        assert_eq!(parse("/token").unwrap(), Route::Token);
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2").unwrap(), Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Catalog);
        assert_eq!(parse("/v2/a/b/tags/list").unwrap(), Route::Tags(n("a/b")));
        assert_eq!(parse("/v2/a/manifests/latest").unwrap(), Route::Manifest(n("a"), "latest".into()));
        assert_eq!(parse("/v2/a/manifests/x/blobs/d").unwrap(), Route::Blob(n("a/manifests/x"), "d".into()));
        assert_eq!(parse("/v2/a/blobs/uploads/").unwrap(), Route::UploadStart(n("a")));
        assert_eq!(parse("/v2/a/blobs/uploads").unwrap(), Route::UploadStart(n("a")));
        assert_eq!(parse("/v2/a/b/blobs/uploads/123").unwrap(), Route::Upload(n("a/b"), "123".into()));
        assert_eq!(parse("/v2/a/referrers/sha256:x").unwrap(), Route::Referrers(n("a"), "sha256:x".into()));
        assert_eq!(parse("/v2/blobs/blobs/x").unwrap(), Route::Blob(n("blobs"), "x".into()));
    }

    #[test]
    fn rejects() {
        assert_eq!(parse("/v3/").unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(parse("/v2/a").unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(parse("/v2/a/manifests/").unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(parse("/v2/a/other/x").unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(parse("/v2/A/manifests/x").unwrap_err().kind, ErrorKind::NameInvalid);
        assert_eq!(parse("/v2/a/../b/manifests/x").unwrap_err().kind, ErrorKind::NameInvalid);
        assert_eq!(parse("/v2/uploads/x").unwrap_err().kind, ErrorKind::NotFound);
    }
}

/// Property tests: any path is a route or a refusal, never a panic; every route's path parses
/// back to it (names may have components named like routes: the name is what comes before the
/// last ones).
#[cfg(test)]
pub(crate) mod props {
    use proptest::prelude::*;

    use super::*;

    /// Valid names, including components named like route parts.
    pub(crate) const NAME: &str = "(manifests|blobs|uploads|tags|list|referrers|[a-z0-9]{1,8}([._-][a-z0-9]{1,6}){0,2})(/(manifests|blobs|uploads|tags|list|referrers|[a-z0-9]{1,8}([._-][a-z0-9]{1,6}){0,2})){0,3}";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn any_path_is_a_route_or_a_refusal(path in ".{0,300}") {
            let _ = parse(&path);
        }

        #[test]
        fn any_api_looking_path_is_a_route_or_a_refusal(rest in "[a-z0-9/._:%-]{0,120}") {
            let _ = parse(&format!("/v2/{rest}"));
        }

        #[test]
        fn routes_round_trip(name in NAME, last in "[A-Za-z0-9_][A-Za-z0-9._:-]{0,40}") {
            let n = Name::parse(&name).unwrap();
            for (path, route) in [
                (format!("/v2/{name}/tags/list"), Route::Tags(n.clone())),
                (format!("/v2/{name}/manifests/{last}"), Route::Manifest(n.clone(), last.clone())),
                (format!("/v2/{name}/blobs/{last}"), Route::Blob(n.clone(), last.clone())),
                (format!("/v2/{name}/blobs/uploads/"), Route::UploadStart(n.clone())),
                (format!("/v2/{name}/blobs/uploads/{last}"), Route::Upload(n.clone(), last.clone())),
                (format!("/v2/{name}/referrers/{last}"), Route::Referrers(n.clone(), last.clone())),
            ] {
                // A blob called `uploads` is an upload session's path: the spec's grammar
                // cannot tell them apart, and no digest is called that.
                if last == "uploads" && matches!(route, Route::Blob(..)) {
                    continue;
                }
                prop_assert_eq!(parse(&path).ok(), Some(route), "{}", path);
            }
        }
    }
}
