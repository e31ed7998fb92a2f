//! `bootstrap`: berth as one AWS Lambda function answering every route over an S3 bucket.
//!
//! The function takes the settings of `berth serve` from its environment (`BERTH_*`, which
//! the SAM template sets; the region and credentials are Lambda's), builds the registry once,
//! before the first invocation, and answers every invocation with it. Configured with
//! `Handler: gc`, it is the garbage collector instead, run by a schedule.

use std::process::ExitCode;

use berth_lambda::collector;
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> ExitCode {
    // Boxed: the future of the whole function is too deep for the compiler to lay out inline.
    match Box::pin(run()).await {
        Ok(()) => ExitCode::SUCCESS,
        // One line in the function's log (a start-up error is the reason an instance exits).
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let settings = berth_lambda::settings()?;
    if collector::is_collector() {
        let settings = &settings;
        return lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
            collector::tick(settings, &event.context).await
        }))
        .await;
    }
    let site = berth_app::build(&settings).await?;
    lambda_http::run(service_fn(move |request| {
        let site = site.clone();
        async move { Ok::<_, Error>(berth_lambda::handle(&site, request).await) }
    }))
    .await
}
