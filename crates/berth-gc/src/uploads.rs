//! Upload sessions idle longer than the grace: their multipart uploads aborted, their state,
//! pending bytes and leftovers removed (`berth_core::gc::end_abandoned_upload`). A session's
//! objects are grouped by the listing (`uploads/<id>/…` sort together); one without state (a
//! crash's leftovers) goes once all its objects are older than the grace.

use std::time::SystemTime;

use berth_core::keys;
use berth_storage::ObjectMeta;

use crate::retention::younger;
use crate::{Collector, Report, Result};

/// The id of the session a key under `uploads/` belongs to.
fn session_of(key: &str) -> Option<&str> {
    key.strip_prefix(keys::UPLOADS_PREFIX)?.split('/').next()
}

impl Collector {
    /// Ends idle sessions after `cursor` (advanced as sessions are done); `false` when the
    /// deadline stopped it first.
    pub(crate) async fn sweep_uploads(&self, cursor: &mut Option<String>, report: &mut Report) -> Result<bool> {
        let mut session: Vec<ObjectMeta> = Vec::new();
        let mut after = cursor.clone();
        loop {
            if self.near_deadline() {
                return Ok(false);
            }
            let page = self.store.list(keys::UPLOADS_PREFIX, after.as_deref(), 1000).await?;
            after = page.last_key().map(str::to_string);
            for object in page.objects {
                if session.first().is_some_and(|first| session_of(&first.key) != session_of(&object.key)) {
                    let done = std::mem::take(&mut session);
                    let last = done.last().map(|o| o.key.clone());
                    self.end_if_idle(done, report).await?;
                    // A resumed run starts after the last session done.
                    *cursor = last;
                }
                session.push(object);
            }
            if !page.truncated || after.is_none() {
                self.end_if_idle(session, report).await?;
                return Ok(true);
            }
        }
    }

    async fn end_if_idle(&self, objects: Vec<ObjectMeta>, report: &mut Report) -> Result<()> {
        let Some(id) = objects.first().and_then(|o| session_of(&o.key)) else { return Ok(()) };
        report.uploads.examined += 1;
        let now = SystemTime::now();
        let grace = self.options.grace;
        let idle = match objects.iter().find(|o| o.key == keys::upload_state(id)) {
            Some(state) => !younger(state.modified, grace, now),
            None => objects.iter().all(|o| !younger(o.modified, grace, now)),
        };
        if !idle {
            return Ok(());
        }
        let bytes = objects.iter().map(|o| o.size).sum();
        if self.options.dry_run {
            report.would_remove.push(format!("upload session {id} ({bytes} bytes)"));
        } else {
            berth_core::gc::end_abandoned_upload(self.store.clone(), id).await?;
            for object in &objects {
                self.store.delete(&object.key).await?;
            }
        }
        report.uploads.remove(bytes);
        Ok(())
    }
}
