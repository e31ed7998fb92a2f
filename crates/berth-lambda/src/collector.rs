//! The collector's handler (`Handler: gc` in the template, so the same `bootstrap` answers it): an
//! EventBridge schedule invokes it every few minutes, and each invocation runs garbage
//! collection when one is due (`BERTH_GC_EVERY` after the last finished, or an unfinished one
//! to continue), stopping with a checkpoint before the invocation's deadline.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_app::Settings;
use berth_gc::{GcError, Outcome};
use lambda_http::lambda_runtime::Context;
use serde_json::{Value, json};

/// Whether this function is the collector: Lambda passes the configured handler as `_HANDLER`.
pub fn is_collector() -> bool {
    std::env::var("_HANDLER").is_ok_and(|handler| handler == "gc")
}

/// The time left before `deadline_ms` (milliseconds since the epoch). A deadline already past
/// cannot come from Lambda, which does not start an invocation after its end; emulators send
/// one (cargo-lambda's is a constant 600 000), and then the invocation gets Lambda's maximum.
fn time_left(deadline_ms: u64) -> Duration {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    if deadline_ms > now_ms {
        Duration::from_millis(deadline_ms - now_ms)
    } else {
        tracing::warn!(deadline_ms, "the runtime's deadline is past: assuming Lambda's 15-minute maximum");
        LAMBDA_MAX
    }
}

/// The longest a Lambda invocation runs.
const LAMBDA_MAX: Duration = Duration::from_secs(15 * 60);

/// Answers one tick: what the collection did, or that none was due.
pub async fn tick(settings: &Settings, context: &Context) -> Result<Value, String> {
    let every = settings.gc_every.ok_or("the collector needs BERTH_GC_EVERY (how often to collect)")?;
    let deadline = Instant::now() + time_left(context.deadline);
    let collector = berth_app::collector(settings, None, false, Some(deadline)).await.map_err(|e| e.to_string())?;
    let (state, report) = match collector.run_if_due(every).await {
        Ok(None) => return Ok(json!({"collection": "not due"})),
        Ok(Some(Outcome::Finished(report))) => ("finished", report),
        Ok(Some(Outcome::Paused(report))) => ("paused", report),
        Err(GcError::Busy(age)) => return Ok(json!({"collection": "running elsewhere", "checkpoint_age_s": age})),
        Err(e) => {
            println!("{}", berth_metrics::emf::gc(None));
            return Err(e.to_string());
        }
    };
    // The collection's metrics, as an Embedded Metric Format line on stdout (CloudWatch Logs).
    println!("{}", berth_metrics::emf::gc(Some((&report, state == "paused"))));
    Ok(json!({"collection": state, "report": report}))
}
