//! `berth gc`: one garbage collection of the registry the settings describe (the same settings as
//! `berth serve`, so it may run beside a server on the same root or bucket), and the periodic
//! collection `berth serve --gc-every` runs in the background.

use std::sync::Arc;
use std::time::Duration;

use berth_app::Settings;
use berth_gc::{GcError, Outcome};
use berth_metrics::Metrics;
use berth_storage::Storage;

/// Arguments of `berth gc`.
#[derive(clap::Args)]
pub struct GcArgs {
    /// Only report what would be removed, per repository; remove nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    settings: Box<Settings>,
}

/// Runs one collection to its end and prints its report.
pub async fn run(args: &GcArgs) -> Result<(), String> {
    let collector = berth_app::collector(&args.settings, None, args.dry_run, None).await.map_err(|e| e.to_string())?;
    let outcome = collector.run().await.map_err(|e| e.to_string())?;
    let verb = if args.dry_run { "would remove" } else { "removed" };
    println!("berth gc: {} {verb} {} bytes\n{}", kind(&outcome), outcome.report().removed_bytes(), outcome.report());
    Ok(())
}

fn kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Finished(_) => "finished;",
        Outcome::Paused(_) => "paused (it continues on the next run);",
    }
}

/// How often the background task looks whether a collection is due.
const TICK: Duration = Duration::from_secs(900);

/// Collects garbage in `store` every `every`, for as long as the server runs, adding each
/// collection to `metrics`.
pub fn spawn_periodic(settings: &Settings, store: Arc<dyn Storage>, every: Duration, metrics: Arc<Metrics>) {
    let settings = settings.clone();
    tokio::spawn(async move {
        loop {
            match berth_app::collector(&settings, Some(store.clone()), false, None).await {
                Ok(collector) => match collector.run_if_due(every).await {
                    Ok(Some(outcome)) => {
                        metrics.observe_gc(Some((outcome.report(), matches!(outcome, Outcome::Paused(_)))));
                    }
                    Ok(None) | Err(GcError::Busy(_)) => {}
                    Err(e) => {
                        metrics.observe_gc(None);
                        tracing::error!(error = %e, "garbage collection failed; it is tried again later");
                    }
                },
                Err(e) => tracing::error!(error = %e, "cannot start garbage collection"),
            }
            tokio::time::sleep(TICK.min(every)).await;
        }
    });
}
