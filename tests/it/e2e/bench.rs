//! The load benchmark (`bench/load.sh`) runs briefly on every test run, on the binary under
//! test, so that it keeps working and its requests keep answering without errors (the script
//! exits 1 on any). Its numbers are not checked here: they belong in the README, from a release
//! build at full length.

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
