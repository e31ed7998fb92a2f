//! The pages as typed templates (`templates/*.html`), their rows, and how values are written:
//! sizes, times, digests. Templates escape every value; hrefs are built here, with names and
//! references percent-encoded.

use std::time::SystemTime;

use askama::Template;

use super::Visit;
use super::assets;

/// The frame every page shares.
pub(crate) struct Layout {
    pub(crate) title: String,
    /// The signed-in user.
    pub(crate) user: Option<String>,
    /// Whether the registry has users (then "Sign in"/"Sign out" show).
    pub(crate) signs_in: bool,
    /// The registry's host, as in pull commands.
    pub(crate) host: String,
    pub(crate) login_href: String,
    pub(crate) css: String,
    pub(crate) js: String,
}

impl Layout {
    pub(crate) fn new(title: String, visit: &Visit<'_>) -> Self {
        Self {
            title,
            user: visit.viewer.user().map(str::to_string),
            signs_in: visit.registry.signs_in(),
            host: visit.host.clone(),
            login_href: super::links::login_href(&visit.here),
            css: assets::STYLE.href(),
            js: assets::SCRIPT.href(),
        }
    }
}

/// `/`: the repositories.
#[derive(Template)]
#[template(path = "repositories.html")]
pub(crate) struct RepositoriesPage {
    pub(crate) layout: Layout,
    pub(crate) q: String,
    pub(crate) rows: Vec<RepositoryRow>,
    pub(crate) first_href: Option<String>,
    pub(crate) next_href: Option<String>,
    pub(crate) empty: String,
}

pub(crate) struct RepositoryRow {
    pub(crate) name: String,
    pub(crate) href: String,
    pub(crate) tags: String,
    pub(crate) pushed: When,
}

/// `/r/<name>`: a repository's tags.
#[derive(Template)]
#[template(path = "repository.html")]
pub(crate) struct RepositoryPage {
    pub(crate) layout: Layout,
    pub(crate) name: String,
    pub(crate) pull: String,
    pub(crate) by_name: bool,
    pub(crate) by_pushed_href: String,
    pub(crate) by_name_href: String,
    pub(crate) rows: Vec<TagRow>,
    pub(crate) total: usize,
    pub(crate) prev_href: Option<String>,
    pub(crate) next_href: Option<String>,
    pub(crate) notice: Option<String>,
    pub(crate) may_delete: bool,
}

pub(crate) struct TagRow {
    pub(crate) tag: String,
    pub(crate) href: String,
    pub(crate) digest: String,
    pub(crate) digest_short: String,
    pub(crate) digest_href: String,
    pub(crate) kind: String,
    pub(crate) size: Size,
    pub(crate) platforms: String,
    pub(crate) pushed: When,
    pub(crate) delete_href: String,
}

/// `/r/<name>/-/<reference>`: one image, index or artifact.
#[derive(Template)]
#[template(path = "image.html")]
pub(crate) struct ImagePage {
    pub(crate) layout: Layout,
    pub(crate) name: String,
    pub(crate) repo_href: String,
    /// The tag, when reached by one.
    pub(crate) tag: Option<String>,
    pub(crate) digest: String,
    pub(crate) digest_short: String,
    pub(crate) media_type: String,
    pub(crate) kind: String,
    pub(crate) pulls: Vec<String>,
    pub(crate) total: Option<Size>,
    pub(crate) platforms: Vec<PlatformRow>,
    pub(crate) layers: Vec<LayerRow>,
    pub(crate) config: Option<ConfigView>,
    pub(crate) referrers: Vec<ReferrerRow>,
    pub(crate) subject_href: Option<String>,
    pub(crate) annotations: Vec<(String, String)>,
    pub(crate) delete_href: Option<String>,
}

pub(crate) struct PlatformRow {
    pub(crate) platform: String,
    pub(crate) digest_short: String,
    pub(crate) href: String,
    pub(crate) size: Option<Size>,
}

pub(crate) struct LayerRow {
    pub(crate) number: usize,
    pub(crate) digest: String,
    pub(crate) digest_short: String,
    pub(crate) media_type: String,
    pub(crate) size: Size,
}

pub(crate) struct ReferrerRow {
    pub(crate) artifact_type: String,
    pub(crate) digest_short: String,
    pub(crate) href: String,
    pub(crate) size: Size,
    pub(crate) created: String,
}

/// What an image config says.
pub(crate) struct ConfigView {
    pub(crate) created: Option<When>,
    pub(crate) platform: String,
    pub(crate) entrypoint: Option<String>,
    pub(crate) cmd: Option<String>,
    pub(crate) workdir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) env: Vec<String>,
    pub(crate) ports: Vec<String>,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) history: Vec<HistoryRow>,
}

pub(crate) struct HistoryRow {
    pub(crate) created_by: String,
    pub(crate) created: Option<When>,
    /// The layer the step made, with its size; `None` for steps that made none.
    pub(crate) layer: Option<(String, Size)>,
    pub(crate) comment: Option<String>,
}

/// `/r/<name>/-/<reference>/delete`: the confirmation.
#[derive(Template)]
#[template(path = "delete.html")]
pub(crate) struct DeletePage {
    pub(crate) layout: Layout,
    pub(crate) name: String,
    pub(crate) repo_href: String,
    pub(crate) image_href: String,
    pub(crate) action: String,
    /// The tag, when the confirmation is for one.
    pub(crate) tag: Option<String>,
    pub(crate) digest: String,
    /// The tags deleting the manifest takes along (besides `tag`).
    pub(crate) other_tags: Vec<String>,
}

/// `/-/login`.
#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub(crate) layout: Layout,
    pub(crate) next: String,
    pub(crate) user: String,
    pub(crate) error: Option<String>,
}

/// An error.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) layout: Layout,
    pub(crate) title: String,
    pub(crate) message: String,
}

/// A size: readable, and exact in bytes.
pub(crate) struct Size {
    pub(crate) text: String,
    pub(crate) bytes: u64,
}

impl Size {
    pub(crate) fn new(bytes: u64) -> Self {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        let text = if bytes < 1024 {
            format!("{bytes} B")
        } else {
            let mut value = bytes as f64 / 1024.0;
            let mut unit = 0;
            while value >= 1024.0 && unit < UNITS.len() - 1 {
                value /= 1024.0;
                unit += 1;
            }
            format!("{value:.1} {}", UNITS[unit])
        };
        Self { text, bytes }
    }
}

/// A time: how long ago, and exact.
pub(crate) struct When {
    pub(crate) ago: String,
    pub(crate) iso: String,
}

impl When {
    pub(crate) fn new(time: SystemTime, now: SystemTime) -> Self {
        let seconds = now.duration_since(time).map_or(0, |d| d.as_secs());
        let (n, unit) = match seconds {
            0..60 => (0, ""),
            60..3600 => (seconds / 60, "minute"),
            3600..86_400 => (seconds / 3600, "hour"),
            86_400..2_592_000 => (seconds / 86_400, "day"),
            2_592_000..31_536_000 => (seconds / 2_592_000, "month"),
            _ => (seconds / 31_536_000, "year"),
        };
        let ago = match n {
            0 => "just now".to_string(),
            1 => format!("1 {unit} ago"),
            n => format!("{n} {unit}s ago"),
        };
        Self { ago, iso: humantime::format_rfc3339_seconds(time).to_string() }
    }

    /// A time written in RFC 3339 (as image configs do), when it parses.
    pub(crate) fn parse(text: &str, now: SystemTime) -> Option<Self> {
        humantime::parse_rfc3339_weak(text.trim_end_matches('Z').split('.').next()?).ok().map(|t| Self::new(t, now))
    }
}

/// The first 12 hex digits of a digest, as `docker images` shows them.
pub(crate) fn short(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(Size::new(0).text, "0 B");
        assert_eq!(Size::new(1023).text, "1023 B");
        assert_eq!(Size::new(1536).text, "1.5 KiB");
        assert_eq!(Size::new(3 * 1024 * 1024 * 1024).text, "3.0 GiB");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ago = |s: u64| When::new(now - Duration::from_secs(s), now).ago;
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(7200), "2 hours ago");
        assert_eq!(ago(86_400 * 3), "3 days ago");
        assert_eq!(ago(31_536_000 * 2), "2 years ago");
        let parsed = When::parse("2024-05-01T10:20:30.123456789Z", now).unwrap();
        assert_eq!(parsed.iso, "2024-05-01T10:20:30Z");
        assert!(When::parse("yesterday", now).is_none());
        assert_eq!(short("sha256:0123456789abcdef0123"), "0123456789ab");
    }
}
