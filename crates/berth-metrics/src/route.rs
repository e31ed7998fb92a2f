//! Route classes: the label a request is counted under, from its path alone.

/// The class of the route `path` belongs to: `base` (`/v2/`), `catalog`, `tags`, `manifest`,
/// `blob`, `upload`, `referrers` and `other` under `/v2/`; `token`; `health` (`/livez`,
/// `/readyz`); `metrics`; and `ui` for the rest.
pub fn route(path: &str) -> &'static str {
    let Some(api) = path.strip_prefix("/v2") else {
        return match path {
            "/token" => "token",
            "/livez" | "/readyz" => "health",
            "/metrics" => "metrics",
            _ => "ui",
        };
    };
    if api.is_empty() || api == "/" {
        return "base";
    }
    if api == "/_catalog" {
        return "catalog";
    }
    // The last marker wins: a repository may have a component named like one.
    let markers = [
        ("/blobs/uploads", "upload"),
        ("/manifests/", "manifest"),
        ("/blobs/", "blob"),
        ("/referrers/", "referrers"),
        ("/tags/list", "tags"),
    ];
    markers
        .iter()
        .filter_map(|(marker, class)| api.rfind(marker).map(|at| (at, *class)))
        .max_by_key(|(at, class)| (*at, *class == "upload"))
        .map_or("other", |(_, class)| class)
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn paths_have_their_class() {
        for (path, class) in [
            ("/v2/", "base"),
            ("/v2", "base"),
            ("/v2/_catalog", "catalog"),
            ("/v2/team/app/tags/list", "tags"),
            ("/v2/team/app/manifests/v1", "manifest"),
            ("/v2/team/app/blobs/sha256:abc", "blob"),
            ("/v2/team/app/blobs/uploads/", "upload"),
            ("/v2/team/app/blobs/uploads/3f2a", "upload"),
            ("/v2/team/app/referrers/sha256:abc", "referrers"),
            ("/v2/blobs/manifests/v1", "manifest"),
            ("/v2/team/manifests/blobs/sha256:abc", "blob"),
            ("/v2/team/app", "other"),
            ("/token", "token"),
            ("/livez", "health"),
            ("/readyz", "health"),
            ("/metrics", "metrics"),
            ("/", "ui"),
            ("/r/team/app", "ui"),
        ] {
            assert_eq!(route(path), class, "{path}");
        }
    }
}
