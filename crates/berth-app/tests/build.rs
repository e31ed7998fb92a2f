//! `build` from settings as a command line gives them: the registry it returns answers requests
//! as the settings say (open, or behind a policy file with Basic credentials), and settings that
//! cannot work stop the start with a message naming what to change.

use berth_app::{Settings, StartError, build};
use berth_core::http::RequestBody;
use berth_web::Site;
use clap::Parser;
use http::{Request, StatusCode};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

fn settings(args: &[&str]) -> Settings {
    Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied())).expect("valid flags").settings
}

async fn status(site: &Site, authorization: Option<&str>) -> StatusCode {
    let mut request = Request::builder().uri("/v2/");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let body: RequestBody = Box::pin(futures_util::stream::empty());
    site.handle(request.body(body).unwrap()).await.status()
}

fn start_error(result: Result<Site, StartError>) -> StartError {
    match result {
        Ok(_) => panic!("berth started with settings that cannot work"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_filesystem_registry_is_open_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let registry = build(&settings(&["--root", root.to_str().unwrap()])).await.unwrap();
    assert_eq!(status(&registry, None).await, StatusCode::OK);
    assert!(root.is_dir(), "the data directory was not made");
}

#[tokio::test]
async fn a_policy_file_turns_authentication_on() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("auth.toml");
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(&policy, format!("[users]\nalice = \"{hash}\"\n")).unwrap();
    let registry = build(&settings(&["--storage", "memory", "--auth", policy.to_str().unwrap()])).await.unwrap();
    assert_eq!(status(&registry, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&registry, Some("Basic YWxpY2U6cHc=")).await, StatusCode::OK, "alice:pw");
    assert_eq!(status(&registry, Some("Basic YWxpY2U6eA==")).await, StatusCode::UNAUTHORIZED, "alice:x");
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let e = start_error(build(&settings(&["--storage", "memory", "--auth", missing.to_str().unwrap()])).await);
    assert!(matches!(&e, StartError::Auth(m) if m.contains("missing.toml")), "{e}");

    let e = start_error(build(&settings(&["--storage", "s3"])).await);
    assert!(matches!(&e, StartError::Settings(m) if m.contains("--storage s3 needs --auth")), "{e}");
    let e = start_error(build(&settings(&["--storage", "s3", "--auth", "none"])).await);
    assert!(matches!(&e, StartError::Settings(m) if m.contains("--s3-bucket")), "{e}");
    let e = start_error(build(&settings(&["--storage", "memory", "--listen", "[::]:5000"])).await);
    assert!(matches!(&e, StartError::Settings(m) if m.contains("--listen [::]:5000")), "{e}");
    assert!(build(&settings(&["--storage", "memory", "--listen", "[::1]:5000"])).await.is_ok(), "loopback");
    assert!(build(&settings(&["--storage", "memory", "--listen", "[::]:5000", "--auth", "none"])).await.is_ok());

    let e = start_error(build(&settings(&["--storage", "memory", "--auth", "s3://bucket/auth.toml"])).await);
    assert!(matches!(&e, StartError::Settings(m) if m.contains("--storage s3")), "{e}");

    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let e = start_error(build(&settings(&["--root", file.join("data").to_str().unwrap()])).await);
    assert!(matches!(&e, StartError::Storage(m) if m.contains("data directory")), "{e}");

    let policy = dir.path().join("auth.toml");
    std::fs::write(&policy, "").unwrap();
    let short = ["--storage", "memory", "--auth", policy.to_str().unwrap(), "--auth-secret", "too-short"];
    let e = start_error(build(&settings(&short)).await);
    assert!(matches!(&e, StartError::Auth(m) if m.contains("at least 32 bytes")), "{e}");
}
