//! `GET /v2/<name>/referrers/<digest>` (end-12a/12b): an OCI image index of the manifests whose
//! `subject` is `<digest>`, optionally filtered by `artifactType` (then `OCI-Filters-Applied`).

use futures_util::{StreamExt, TryStreamExt};
use http::StatusCode;

use crate::digest::Digest;
use crate::error::Result;
use crate::http::{Reply, headers};
use crate::manifests::OCI_INDEX;
use crate::names::Name;
use crate::{Registry, Req, keys};

impl Registry {
    /// Lists the referrers of a subject; an unknown subject has none (200, empty index).
    pub(crate) async fn referrers(&self, name: &Name, subject: &str, req: &Req) -> Result<Reply> {
        let subject: Digest = subject.parse()?;
        let mut descriptors = self.referrers_of(name, &subject).await?;
        let filter = req.query.get("artifactType");
        if let Some(wanted) = filter {
            descriptors.retain(|d| d.get("artifactType").and_then(|t| t.as_str()) == Some(wanted));
        }
        let index = serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors });
        let mut reply = Reply::new(StatusCode::OK);
        if filter.is_some() {
            reply = reply.header(headers::OCI_FILTERS_APPLIED, "artifactType");
        }
        Ok(reply.bytes(OCI_INDEX, serde_json::to_vec(&index).unwrap_or_default()))
    }

    /// The descriptors of the referrers of `subject` in `name`: 1 listing per 1000, and 1 read
    /// each.
    pub(crate) async fn referrers_of(&self, name: &Name, subject: &Digest) -> Result<Vec<serde_json::Value>> {
        let prefix = keys::referrers_prefix(name, subject);
        let mut keys = Vec::new();
        loop {
            let page = self.store.list(&prefix, keys.last().map(String::as_str), 1000).await?;
            let more = page.truncated && !page.objects.is_empty();
            keys.extend(page.objects.into_iter().map(|o| o.key));
            if !more {
                break;
            }
        }
        futures_util::stream::iter(keys)
            .map(|key| self.read_descriptor(key))
            .buffered(16)
            .try_filter_map(|d| async move { Ok(d) })
            .try_collect()
            .await
    }

    /// A referrer descriptor; `None` if it vanished (deleted meanwhile) or is unreadable.
    async fn read_descriptor(&self, key: String) -> Result<Option<serde_json::Value>> {
        Ok(self.store.read_opt(&key).await?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }
}
