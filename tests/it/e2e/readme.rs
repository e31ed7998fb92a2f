//! The README as a newcomer meets it: the "Push and pull" walk-through, taken from README.md and
//! run by bash as written (against a `berth serve` on a free port instead of 127.0.0.1:5000,
//! with `berth` on `PATH`), each command's output checked against the comment line right under
//! it (`…` matches anything); and the start-up refusals and warnings the README promises, each
//! one clear line.

use std::ffi::OsStr;
use std::process::Command;
use std::time::Duration;

use super::docker::{Cleanup, engine_answers};
use super::server::{Server, binary, workspace_root};
use crate::common::{describe, require_tool, run, skip};

/// The address the README's commands use.
const README_HOST: &str = "127.0.0.1:5000";

/// The first ```sh block of the README section headed `heading`.
fn shell_block(readme: &str, heading: &str) -> String {
    let section = readme.split_once(&format!("\n{heading}\n")).map(|(_, rest)| rest).expect("the section exists");
    let section = section.split("\n## ").next().unwrap_or(section);
    let block = section.split_once("```sh\n").map(|(_, rest)| rest).expect("the section has a ```sh block");
    block.split_once("\n```").map(|(block, _)| block).expect("the block is closed").to_string()
}

/// The expected outputs of a block: a comment line right under a command line (continuations
/// included) is that command's output.
fn expectations(block: &str) -> Vec<String> {
    let mut expected = Vec::new();
    let mut after_command = false;
    for line in block.lines() {
        match line.strip_prefix("# ") {
            Some(output) if after_command => expected.push(output.to_string()),
            _ => {}
        }
        after_command = !line.trim().is_empty() && !line.starts_with('#');
    }
    expected
}

/// Whether `line` matches `pattern`, where `…` stands for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split('…');
    let Some(first) = parts.next() else { return line.is_empty() };
    let Some(mut rest) = line.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[test]
fn expectations_are_the_comments_under_commands() {
    let block = "# a description\ncurl a \\\n  b\n# out 1\n# more description\n\nls\n# out …2\n";
    assert_eq!(expectations(block), ["out 1", "out …2"]);
    assert!(matches("sha256:…", "sha256:abc") && !matches("sha256:…", "md5:abc"));
    assert!(matches("{\"tags\":[]}", "{\"tags\":[]}") && !matches("{\"tags\":[]}", "{\"tags\":[\"v1\"]}"));
    assert!(matches("a…b…c", "a-x-b-y-c") && !matches("a…b…c", "a-x-c"));
}

/// The walk-through runs top to bottom by copy-paste: push, list, pull (docker and skopeo),
/// the digest captured from a HEAD, the delete, the empty tag list.
#[test]
fn the_readme_walk_through_runs_as_written() {
    let test = "the_readme_walk_through_runs_as_written";
    if !engine_answers() {
        skip(test, "no Docker Engine answers");
        return;
    }
    if !require_tool("skopeo", test) || !require_tool("curl", test) {
        return;
    }
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let block = shell_block(&readme, "## Push and pull");
    let expected = expectations(&block);
    assert!(expected.len() >= 4, "the walk-through shows fewer outputs than it did: {expected:?}");
    assert!(block.contains(README_HOST), "the walk-through no longer uses {README_HOST}");

    let server = Server::start();
    let script = block.replace(README_HOST, &server.host());
    let _cleanup = Cleanup(vec![format!("{}/demo/hello:v1", server.host())]);
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = binary().parent().expect("the binary's folder").to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let out = run(
        Command::new("bash")
            .args([OsStr::new("-xc"), OsStr::new(&format!("set -euo pipefail\ncommand -v berth\n{script}"))])
            .current_dir(dir.path())
            .env("PATH", path),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "the walk-through failed:\n{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    for pattern in &expected {
        assert!(
            lines.any(|line| matches(pattern, line.trim_end())),
            "no output line matches {pattern:?} (in order):\n{}",
            describe(&out)
        );
    }
}

/// A start-up refusal is one line on stderr, `berth: …`, and no debug text.
fn assert_one_line_refusal(out: &std::process::Output, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!out.status.success(), "berth started: {}", describe(out));
    assert_eq!(lines.len(), 1, "not one line: {}", describe(out));
    assert!(lines[0].starts_with("berth: ") && lines[0].contains(says), "{}", describe(out));
    assert!(!lines[0].contains("{ ") && !lines[0].contains("Error("), "a debug dump: {}", describe(out));
}

/// `--listen` beyond loopback without `--auth` is refused (`--auth none` runs it open on
/// purpose); missing AWS credentials and an unreachable S3 server are one line each.
#[test]
fn start_up_errors_are_one_clear_line() {
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(binary());
        command.arg("serve").args(args).envs(env.iter().copied());
        run(&mut command, Duration::from_secs(60))
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path().to_str().unwrap();
    let open = serve(&["--listen", "0.0.0.0:0", "--root", root], &[]);
    assert_one_line_refusal(&open, "--listen 0.0.0.0:0 is reachable from other machines");
    assert_one_line_refusal(&open, "--auth none");

    // No credentials anywhere: no environment, no profile, no instance metadata.
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary());
    command.args(["serve", "--listen", "127.0.0.1:0", "--auth", "none", "--storage", "s3", "--s3-bucket", "b"]);
    command.args(["--s3-endpoint", "http://127.0.0.1:9", "--s3-path-style"]);
    for (var, _) in std::env::vars_os().filter(|(var, _)| var.to_string_lossy().starts_with("AWS_")) {
        command.env_remove(var);
    }
    command.env("HOME", home.path()).env("AWS_EC2_METADATA_DISABLED", "true");
    let out = run(&mut command, Duration::from_secs(60));
    assert_one_line_refusal(&out, "no AWS credentials found");

    // Credentials, but nothing listens on the endpoint's port.
    let env = [("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_EC2_METADATA_DISABLED", "true")];
    let args = ["--listen", "127.0.0.1:0", "--auth", "none", "--storage", "s3", "--s3-bucket", "b"];
    let out = serve(&[&args[..], &["--s3-endpoint", "http://127.0.0.1:9", "--s3-path-style"]].concat(), &env);
    assert_one_line_refusal(&out, "no answer from the server");
}

/// A signing secret that other users may read is warned about; one only its owner reads is not.
#[cfg(unix)]
#[test]
fn a_secret_file_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("auth.toml");
    std::fs::write(&policy, "[users]\n").unwrap();
    let secret = dir.path().join("token-secret");
    std::fs::write(&secret, "a-secret-of-at-least-thirty-two-bytes-for-the-test").unwrap();
    let warning = "is readable by other users";
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        let args = [OsStr::new("--storage"), OsStr::new("memory"), OsStr::new("--auth"), policy.as_os_str()];
        let server = Server::start_with(&[&args[..], &[OsStr::new("--auth-secret-file"), secret.as_os_str()]].concat());
        let log = server.log();
        assert_eq!(log.contains(warning), warned, "mode {mode:o}:\n{log}");
    }
}
