//! The web UI in a real browser: Debian's chromium, headless, driven by chromedriver over
//! WebDriver (fantoccini), against a real `berth serve` with authentication, on the filesystem and
//! over S3 (s3s-fs). skopeo pushes a multi-arch image and a single one; the browser then, as an
//! anonymous visitor, sees only the public repository; signs in with the registry's own user;
//! opens the multi-arch image and sees its platforms, and a platform's layers; copies the pull
//! command (and the clipboard holds it); deletes a tag through the confirmation and sees it gone
//! (and the registry API agrees); reads the pages on a phone-sized window without sideways
//! scrolling, and in dark mode; signs out; and the console holds no error. A page from another
//! origin then calls the API with `fetch`: allowed for the origin `--cors-origin` lists (even with
//! credentials, which need a preflight), blocked by the browser for any other.
//!
//! Screenshots of each step are kept under `target/ui-screenshots/` (the README shows one).
//! Needs chromium, chromedriver and skopeo (scripts/test installs them): missing ones fail under
//! CI and are a skip elsewhere.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use super::auth::policy;
use super::layout::{Layout, tar};
use super::server::{Server, workspace_root};
use crate::common::{S3Kind, S3Server, describe, http, random_bytes, require_tool, run, unique};

const SECRET: &str = "browser-token-signing-secret-0123456789abcdef";
const TIMEOUT: Duration = Duration::from_secs(180);

/// chromedriver and one browser session, ended on drop.
struct Browser {
    driver: Child,
    client: Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A WebDriver command chromedriver has beyond the standard: `POST /session/{id}/<path>`.
#[derive(Debug)]
struct Extension {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for Extension {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/{}", session.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// Where chromium is, on the PATH.
fn chromium() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|dir| dir.join("chromium")).find(|p| p.is_file());
    found.map_or_else(|| "chromium".to_string(), |p| p.display().to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Browser {
    /// chromedriver on a free port and a headless chromium session, or `None` (a skip, or a
    /// panic under CI) when either is missing.
    async fn start(test: &str) -> Option<Self> {
        if !require_tool("chromium", test) || !require_tool("chromedriver", test) {
            return None;
        }
        let port = free_port();
        let log = workspace_root().join(format!("target/e2e-logs/chromedriver-{}.log", unique()));
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", "--disable-extensions"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no browser session: {e}; chromedriver's log: {}", log.display()));
        Some(Self { driver, client })
    }

    /// Lets the current page's origin read and write the clipboard.
    async fn grant_clipboard(&self) {
        for name in ["clipboard-read", "clipboard-write"] {
            let body = json!({"descriptor": {"name": name}, "state": "granted"});
            self.client.issue_cmd(Extension { path: "permissions", body }).await.expect("permissions");
        }
    }

    /// The console's messages since the last call, as (level, message).
    async fn console(&self) -> Vec<(String, String)> {
        let log = self.client.issue_cmd(Extension { path: "se/log", body: json!({"type": "browser"}) }).await;
        let entries = log.expect("the browser's log").as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .map(|e| (e["level"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    /// Emulates the system's light or dark scheme.
    async fn color_scheme(&self, scheme: &str) {
        let params = json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]});
        let body = json!({"cmd": "Emulation.setEmulatedMedia", "params": params});
        self.client.issue_cmd(Extension { path: "goog/cdp/execute", body }).await.expect("emulated media");
    }

    /// The text of the first element `css` selects, once there is one.
    async fn text(&self, css: &str) -> String {
        let element = self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await;
        let element = element.unwrap_or_else(|e| panic!("no {css} on {}: {e}", self.path_now()));
        element.text().await.unwrap()
    }

    /// The page's path, for messages.
    fn path_now(&self) -> String {
        let url = futures_util::FutureExt::now_or_never(self.client.current_url());
        url.and_then(Result::ok).map_or_else(String::new, |u| u.to_string())
    }

    async fn click(&self, locator: Locator<'_>) {
        let element = self.client.wait().at_most(Duration::from_secs(10)).for_element(locator).await;
        element.unwrap_or_else(|e| panic!("nothing to click for {locator:?}: {e}")).click().await.unwrap();
    }

    async fn fill(&self, css: &str, value: &str) {
        self.client.find(Locator::Css(css)).await.unwrap().send_keys(value).await.unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Waits until the page is `expected` (a form's redirect lands after its click returns).
    async fn wait_path(&self, expected: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.path().await;
            if now == expected {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the page is {now}, not {expected}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot as `target/ui-screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = workspace_root().join("target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await.unwrap()).unwrap();
        path
    }

    /// Whether the page is wider than the window (it would scroll sideways).
    async fn overflows(&self) -> bool {
        let wide = self.client.execute("return document.documentElement.scrollWidth > window.innerWidth + 1", vec![]);
        wide.await.unwrap().as_bool().unwrap()
    }
}

/// A web page on another origin: answers every request with an empty HTML page, for scripts
/// run in it to call berth from.
fn other_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0; 4096];
            let _ = stream.read(&mut buf);
            let page = "<!doctype html><title>another origin</title><p>another origin";
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                page.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(page.as_bytes());
        }
    });
    port
}

/// skopeo pushes team/multi:1.0 (linux/amd64 and linux/arm64), team/multi:old, and
/// public/tool:stable, as user `ci`.
fn push(server: &Server, dir: &std::path::Path) {
    let src = Layout::create(&dir.join("src"));
    let amd64 = src.image("amd64", &[tar(&[("amd64.bin", &random_bytes(20_000, 1))]), tar(&[("etc/x", b"x\n")])]);
    let arm64 = src.image("arm64", &[tar(&[("arm64.bin", &random_bytes(30_000, 2))]), tar(&[("etc/y", b"y\n")])]);
    let index = src.index(&[(&amd64, "amd64"), (&arm64, "arm64")]);
    src.tag("1.0", &index);
    let old = src.image("amd64", &[tar(&[("old.bin", &random_bytes(5_000, 3))])]);
    src.tag("old", &old.manifest);
    let tool = src.image("amd64", &[tar(&[("tool", &random_bytes(7_000, 4))])]);
    src.tag("stable", &tool.manifest);
    for (reference, dest) in [("1.0", "team/multi:1.0"), ("old", "team/multi:old"), ("stable", "public/tool:stable")] {
        let out = run(
            Command::new("skopeo").args(["--insecure-policy", "copy", "--all", "--preserve-digests"]).args([
                "--dest-tls-verify=false",
                "--dest-creds=ci:ci-password",
                &src.name(reference),
                &format!("docker://{}/{dest}", server.host()),
            ]),
            TIMEOUT,
        );
        assert!(out.status.success(), "push of {dest}: {}", describe(&out));
    }
}

/// The whole visit, against one server.
async fn visit(browser: &Browser, server: &Server, backend: &str, page_port: u16) {
    let c = &browser.client;
    let url = |path: &str| format!("http://{}{path}", server.host());
    let shot = |step: &str| format!("{backend}-{step}");
    browser.console().await;

    // Anonymous: the public repository only.
    c.goto(&url("/")).await.unwrap();
    browser.grant_clipboard().await;
    let repositories = browser.text("main").await;
    assert!(repositories.contains("public/tool") && !repositories.contains("team/multi"), "{repositories}");
    browser.screenshot(&shot("anonymous")).await;

    // Sign in with the registry's user.
    browser.click(Locator::Id("login")).await;
    browser.fill("#user-name", "ci").await;
    browser.fill("#password", "ci-password").await;
    browser.click(Locator::Id("sign-in")).await;
    assert_eq!(browser.text("#user").await, "ci");
    assert!(browser.text("main").await.contains("team/multi"));
    browser.screenshot(&shot("repositories")).await;

    // The multi-arch image: its platforms, then a platform's layers.
    browser.click(Locator::LinkText("team/multi")).await;
    let tags = browser.text("#tags").await;
    assert!(tags.contains("1.0") && tags.contains("old") && tags.contains("linux/amd64, linux/arm64"), "{tags}");
    browser.screenshot(&shot("repository")).await;
    browser.click(Locator::Css("a.tag[href$='/-/1.0']")).await;
    let platforms = browser.text("#platforms").await;
    assert!(platforms.contains("linux/amd64") && platforms.contains("linux/arm64"), "{platforms}");
    browser.screenshot(&shot("index")).await;

    // Copy the pull command.
    let pull = format!("docker pull {}/team/multi:1.0", server.host());
    let button = Locator::Css("button.copy");
    browser.click(button).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.find(button).await.unwrap().text().await.unwrap() != "Copied" {
        assert!(Instant::now() < deadline, "the copy button never said Copied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let clipboard = c.execute_async("navigator.clipboard.readText().then(arguments[0])", vec![]).await.unwrap();
    assert_eq!(clipboard, json!(pull));

    browser.click(Locator::LinkText("linux/arm64")).await;
    let layers = c.find_all(Locator::Css("#layers tbody tr")).await.unwrap();
    assert_eq!(layers.len(), 2, "the arm64 image's two layers");
    assert_eq!(browser.text("#platform").await, "linux/arm64");
    browser.screenshot(&shot("image")).await;

    // On a phone: nothing scrolls sideways.
    c.set_window_size(390, 844).await.unwrap();
    assert!(!browser.overflows().await, "the image page scrolls sideways on a phone");
    browser.screenshot(&shot("image-phone")).await;
    c.goto(&url("/r/team/multi")).await.unwrap();
    assert!(!browser.overflows().await, "the repository page scrolls sideways on a phone");
    browser.screenshot(&shot("repository-phone")).await;
    c.set_window_size(1280, 900).await.unwrap();

    // Dark mode follows the system.
    let background = "return getComputedStyle(document.body).backgroundColor";
    let light = c.execute(background, vec![]).await.unwrap();
    browser.color_scheme("dark").await;
    let dark = c.execute(background, vec![]).await.unwrap();
    assert_ne!(light, dark, "the page looks the same in dark mode");
    assert_eq!(dark, json!("rgb(23, 24, 26)"));
    browser.screenshot(&shot("repository-dark")).await;
    browser.color_scheme("light").await;

    // Delete the tag `old`: the confirmation, then the tag is gone.
    browser.click(Locator::Css("a[href$='/-/old/delete']")).await;
    assert!(browser.text("main").await.contains("garbage collection"));
    browser.screenshot(&shot("delete")).await;
    browser.click(Locator::Id("delete-tag")).await;
    browser.wait_path("/r/team/multi?deleted=tag+old").await;
    assert!(browser.text(".notice").await.contains("Deleted tag old"));
    assert!(c.find(Locator::Css("a.tag[href$='/-/old']")).await.is_err(), "the tag is still listed");
    let listed = http().get(url("/v2/team/multi/tags/list")).basic_auth("ci", Some("ci-password")).send();
    let tags: Value = serde_json::from_slice(&listed.await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(tags["tags"], json!(["1.0"]));

    // Sign out: back to what anonymous sees.
    browser.click(Locator::Id("logout")).await;
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("login")).await.unwrap();
    assert!(!browser.text("main").await.contains("team/multi"));

    let console = browser.console().await;
    let errors: Vec<_> = console.iter().filter(|(level, _)| level == "SEVERE" || level == "WARNING").collect();
    assert!(errors.is_empty(), "{backend}: the console has errors: {errors:?}");

    // CORS: a page of the listed origin reads the API, with credentials too (preflighted) …
    c.goto(&format!("http://127.0.0.1:{page_port}/")).await.unwrap();
    let registry = url("");
    let script = r#"
        const [registry, done] = arguments;
        const accept = "application/vnd.oci.image.index.v1+json";
        Promise.all([
            fetch(registry + "/v2/public/tool/manifests/stable", {method: "HEAD", headers: {Accept: "application/vnd.oci.image.manifest.v1+json"}}),
            fetch(registry + "/v2/team/multi/manifests/1.0", {headers: {Accept: accept, Authorization: "Basic " + btoa("ci:ci-password")}}),
        ]).then(([head, get]) => done({head: head.status, digest: head.headers.get("Docker-Content-Digest"), get: get.status}))
          .catch(e => done({error: String(e)}));
    "#;
    let allowed = c.execute_async(script, vec![json!(registry)]).await.unwrap();
    assert_eq!(allowed["head"], 200, "{allowed}");
    assert_eq!(allowed["get"], 200, "{allowed}");
    assert!(allowed["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{allowed}");
    // … and one of any other origin is refused by the browser.
    c.goto(&format!("http://localhost:{page_port}/")).await.unwrap();
    let refused = c.execute_async(script, vec![json!(registry)]).await.unwrap();
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("Failed to fetch")), "{refused}");
    let console = browser.console().await;
    assert!(console.iter().any(|(_, m)| m.contains("CORS policy")), "the browser did not say why: {console:?}");
}

#[tokio::test]
async fn the_ui_in_a_real_browser_on_the_filesystem_and_on_s3() {
    let test = "the_ui_in_a_real_browser_on_the_filesystem_and_on_s3";
    if !require_tool("skopeo", test) {
        return;
    }
    let Some(s3) = S3Server::require(S3Kind::Signing, test) else { return };
    let Some(browser) = Browser::start(test).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("auth.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let page_port = other_origin();
    let origin = format!("http://127.0.0.1:{page_port}");
    let policy_path = policy_file.to_str().unwrap();
    let auth = ["--auth", policy_path, "--auth-secret", SECRET, "--cors-origin", &origin];

    let root = dir.path().join("root");
    let fs_args: Vec<&str> = ["--storage", "fs", "--root", root.to_str().unwrap()].into_iter().chain(auth).collect();
    let fs = Server::start_with(&fs_args.iter().map(std::ffi::OsStr::new).collect::<Vec<_>>());
    push(&fs, &dir.path().join("fs"));
    visit(&browser, &fs, "fs", page_port).await;

    let s3_server = Server::start_s3_with(&s3.endpoint, &s3.bucket, &format!("browser-{}", unique()), &auth);
    push(&s3_server, &dir.path().join("s3"));
    visit(&browser, &s3_server, "s3", page_port).await;
    eprintln!("screenshots in {}", workspace_root().join("target/ui-screenshots").display());
}
