//! Paginated listings: `GET /v2/<name>/tags/list` (end-8a/8b) and `GET /v2/_catalog`.
//!
//! Both take `n` (page size) and `last` (the entry to start after) and answer a `Link` header
//! with `rel="next"` when more entries follow. Each page is one storage list call.

use http::StatusCode;
use http::header::LINK;
use serde_json::json;

use crate::error::{ErrorKind, RegistryError, Result};
use crate::http::{Reply, encode};
use crate::names::Name;
use crate::{Registry, Req, keys};

/// Most entries one page of tags or catalog lists.
const MAX_PAGE: usize = 10_000;

struct Page {
    entries: Vec<String>,
    /// The `n` to repeat in the next page's link, when there is a next page.
    next: Option<usize>,
}

impl Registry {
    /// Lists `<prefix><entry><suffix>` keys after `last`, by `n` (capped at [`MAX_PAGE`]),
    /// keeping the entries `keep` accepts (further list calls fill a page it thinned).
    async fn page(&self, req: &Req, prefix: &str, suffix: &str, keep: impl Fn(&str) -> bool) -> Result<Page> {
        let n = match req.query.get("n") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                RegistryError::new(
                    ErrorKind::PaginationNumberInvalid,
                    format!("n must be a non-negative integer, not {v:?}"),
                )
            })?),
        };
        let limit = n.map_or(MAX_PAGE, |n| n.min(MAX_PAGE as u64) as usize);
        if limit == 0 {
            return Ok(Page { entries: vec![], next: None });
        }
        let mut start_after = req.query.get("last").map(|last| format!("{prefix}{last}{suffix}"));
        let mut entries = Vec::new();
        loop {
            let page = self.store.list(prefix, start_after.as_deref(), limit - entries.len()).await?;
            entries.extend(
                page.objects
                    .iter()
                    .filter_map(|o| o.key.strip_prefix(prefix).and_then(|k| k.strip_suffix(suffix)))
                    .filter(|e| keep(e))
                    .map(str::to_string),
            );
            if !page.truncated || entries.len() == limit || page.objects.is_empty() {
                return Ok(Page { entries, next: page.truncated.then_some(limit) });
            }
            start_after = page.last_key().map(str::to_string);
        }
    }

    /// `GET /v2/<name>/tags/list`: the repository's tags in lexical order.
    pub(crate) async fn tags_list(&self, name: &Name, req: &Req) -> Result<Reply> {
        let page = self.page(req, &keys::tags_prefix(name), "", |_| true).await?;
        if page.entries.is_empty() && !self.store.exists(&keys::catalog(name)).await? {
            return Err(RegistryError::new(
                ErrorKind::NameUnknown,
                format!("repository {name} is not known to the registry"),
            ));
        }
        let mut reply = Reply::new(StatusCode::OK);
        if let (Some(n), Some(last)) = (page.next, page.entries.last()) {
            reply = reply.header(LINK, format!("</v2/{name}/tags/list?n={n}&last={}>; rel=\"next\"", encode(last)));
        }
        Ok(reply.json(&json!({ "name": name.as_str(), "tags": page.entries })))
    }

    /// `GET /v2/_catalog`: repositories that have received a manifest and that the caller may pull.
    pub(crate) async fn catalog(&self, req: &Req) -> Result<Reply> {
        let visible = |name: &str| req.access.lists(name);
        let page = self.page(req, keys::CATALOG_PREFIX, keys::CATALOG_SUFFIX, visible).await?;
        let mut reply = Reply::new(StatusCode::OK);
        if let (Some(n), Some(last)) = (page.next, page.entries.last()) {
            reply = reply.header(LINK, format!("</v2/_catalog?n={n}&last={}>; rel=\"next\"", encode(last)));
        }
        Ok(reply.json(&json!({ "repositories": page.entries })))
    }
}
