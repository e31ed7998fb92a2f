//! The benchmarks run briefly on every test run, on the binaries under test, so that they keep
//! working: the load benchmark (`bench/load.sh`, whose requests must all answer: the script
//! exits 1 on any error), the latency benchmark (`bench/latency.sh`) and the Lambda cold-start
//! benchmark (`bench/lambda.sh`). Their numbers are not checked here: they belong in the
//! README, from a release build at full length.

use std::process::Command;
use std::time::Duration;

use super::server::{binary, workspace_root};
use crate::common::{S3Kind, S3Server, describe, require_tool, run};

#[test]
fn the_load_benchmark_runs_without_errors() {
    let test = "the_load_benchmark_runs_without_errors";
    if !require_tool("hey", test) {
        return;
    }
    let Some(S3Server { endpoint, bucket }) = S3Server::require(S3Kind::Signing, test) else { return };
    let out = run(
        Command::new(workspace_root().join("bench/load.sh"))
            .env("BERTH_BIN", binary())
            .env("BERTH_TEST_S3_ENDPOINT", endpoint)
            .env("BERTH_TEST_S3_BUCKET", bucket)
            .env("DURATION", "2s")
            .env("CONNECTIONS", "16"),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "bench/load.sh: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for operation in ["manifest GET", "blob HEAD", "blob GET (307)"] {
        let row =
            stdout.lines().find(|l| l.starts_with(operation)).unwrap_or_else(|| panic!("no {operation}:\n{stdout}"));
        let fields: Vec<&str> = row[operation.len()..].split_whitespace().collect();
        assert_eq!(fields.len(), 6, "{row}");
        assert!(fields[3].parse::<u64>().is_ok_and(|n| n > 0), "nothing answered: {row}");
        assert_eq!(fields[4], "0", "errors: {row}");
    }
}

/// The latency benchmark (`bench/latency.sh`), briefly: two small layers, 0 and 5 ms per S3
/// request, 20 requests each; every row is there, and a manifest GET and a blob HEAD cost one
/// S3 call each.
#[test]
fn the_latency_benchmark_runs() {
    let test = "the_latency_benchmark_runs";
    if !require_tool("hey", test) || !require_tool("skopeo", test) {
        return;
    }
    let Some(S3Server { endpoint, bucket }) = S3Server::require(S3Kind::Signing, test) else { return };
    let proxy = workspace_root().join("target/debug/examples/delay_proxy");
    assert!(proxy.is_file(), "{} is not built (cargo test builds the examples)", proxy.display());
    let out = run(
        Command::new(workspace_root().join("bench/latency.sh"))
            .env("BERTH_BIN", binary())
            .env("PROXY_BIN", proxy)
            .env("BERTH_TEST_S3_ENDPOINT", endpoint)
            .env("BERTH_TEST_S3_BUCKET", bucket)
            .env("DELAYS_MS", "0 5")
            .env("LAYERS_MIB", "1 1")
            .env("REQUESTS", "20"),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "bench/latency.sh: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for delay in ["0", "5"] {
        for operation in ["push", "pull", "manifest GET", "blob HEAD"] {
            let row = stdout
                .lines()
                .find(|l| l.split_whitespace().next() == Some(delay) && l.contains(operation))
                .unwrap_or_else(|| panic!("no {operation} at {delay} ms:\n{stdout}"));
            let calls = row.split_whitespace().last().unwrap();
            if operation.ends_with("GET") || operation.ends_with("HEAD") {
                assert_eq!(calls, "1.0", "{row}");
            } else {
                assert!(calls.parse::<u64>().is_ok_and(|n| n > 0), "{row}");
            }
        }
    }
}

/// The Lambda benchmark (`bench/lambda.sh`), briefly: 2 cold starts of the debug bootstrap, each
/// answering its first request (the script exits 1 otherwise), and the table is there.
#[test]
fn the_lambda_benchmark_runs() {
    let test = "the_lambda_benchmark_runs";
    let cargo_lambda = std::env::var("BERTH_CARGO_LAMBDA").unwrap_or_else(|_| "cargo-lambda".into());
    if !require_tool(&cargo_lambda, test) {
        return;
    }
    let Some(S3Server { endpoint, bucket }) = S3Server::require(S3Kind::Signing, test) else { return };
    let bootstrap = workspace_root().join("target/debug/bootstrap");
    assert!(bootstrap.is_file(), "{} is not built (scripts/test builds it)", bootstrap.display());
    let out = run(
        Command::new(workspace_root().join("bench/lambda.sh"))
            .env("BOOTSTRAP", bootstrap)
            .env("BERTH_CARGO_LAMBDA", cargo_lambda)
            .env("BERTH_TEST_S3_ENDPOINT", endpoint)
            .env("BERTH_TEST_S3_BUCKET", bucket)
            .env("RUNS", "2"),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "bench/lambda.sh: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for row in ["size", "start to first answer, median"] {
        let line = stdout.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no {row}:\n{stdout}"));
        let value = line[row.len()..].split_whitespace().next().unwrap_or_default();
        assert!(value.parse::<u64>().is_ok_and(|n| n > 0), "{line}");
    }
}
