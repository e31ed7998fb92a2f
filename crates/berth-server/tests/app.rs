//! The axum shell of `berth serve`, in-process: requests go through [`berth_server::app`] with
//! tower's `oneshot`, as axum's testing example does, and the tests assert what a client sees
//! (status, headers, bytes): the engine's answers pass through intact, blobs stream, HEAD keeps
//! `Content-Length`, a body left unread closes the connection, the client's address comes from
//! the connection (or a trusted proxy). One test serves on a real socket and shuts down.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use berth_app::Settings;
use berth_core::Registry;
use berth_storage::MemoryStorage;
use berth_web::Site;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;

fn settings() -> Settings {
    Settings::from_env().expect("the default settings parse")
}

fn registry() -> Registry {
    Registry::new(Arc::new(MemoryStorage::new()), settings().config())
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Sends one request through a fresh router over `registry`, as from a client at 192.0.2.7.
async fn send(registry: &Registry, request: Request<Body>) -> (Response<Body>, Bytes) {
    let mut request = request;
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40000))));
    let response =
        berth_server::app(Site::new(registry.clone(), settings().site()), Arc::default(), settings().body_idle_timeout)
            .oneshot(request)
            .await
            .expect("the router is infallible");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("a readable body");
    (Response::from_parts(parts, Body::empty()), bytes)
}

fn request(method: &str, uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder().method(method).uri(uri).body(body.into()).unwrap()
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn answers_and_errors_pass_through_with_their_headers() {
    let registry = registry();
    let (r, body) = send(&registry, request("GET", "/v2/", Body::empty())).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-distribution-api-version"), Some("registry/2.0"));
    assert_eq!(body.as_ref(), b"{}\n");

    let (r, body) = send(&registry, request("GET", "/v2/a/manifests/latest", Body::empty())).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["errors"][0]["code"], "MANIFEST_UNKNOWN");
    assert_eq!(header(&r, "connection"), None, "a request without a body keeps its connection");
}

#[tokio::test]
async fn blobs_stream_through_the_router_whole_in_ranges_and_as_head() {
    let registry = registry();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = sha256(&data);
    let (r, _) = send(&registry, request("POST", &format!("/v2/a/blobs/uploads/?digest={digest}"), data.clone())).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let blob = format!("/v2/a/blobs/{digest}");
    let (r, body) = send(&registry, request("GET", &blob, Body::empty())).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), Some("200000"));
    assert!(body == data, "the streamed blob differs");

    let ranged = Request::builder().uri(&blob).header("range", "bytes=100-199").body(Body::empty()).unwrap();
    let (r, body) = send(&registry, ranged).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.as_ref(), &data[100..200]);

    let (r, body) = send(&registry, request("HEAD", &blob, Body::empty())).await;
    assert_eq!((r.status(), header(&r, "content-length")), (StatusCode::OK, Some("200000")));
    assert!(body.is_empty());
}

#[tokio::test]
async fn a_body_left_unread_closes_the_connection() {
    let registry = registry();
    // An invalid name is refused before the body is read; a small body is drained and the
    // connection stays usable, one past what the engine drains is not.
    let (r, _) = send(&registry, request("POST", "/v2/A/blobs/uploads/", vec![1u8; 1000])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&r, "connection"), None);
    let (r, _) = send(&registry, request("POST", "/v2/A/blobs/uploads/", vec![1u8; 8 << 20])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&r, "connection"), Some("close"));
}

#[tokio::test]
async fn serves_on_a_real_socket_until_shut_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_server::serve(
        listener,
        berth_server::app(Site::new(registry(), settings().site()), Arc::default(), settings().body_idle_timeout),
        settings().request_head_timeout,
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client.get(format!("http://{addr}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-distribution-api-version"], "registry/2.0");
    stop.send(()).unwrap();
    server.await.unwrap().expect("a clean shutdown");
    assert!(client.get(format!("http://{addr}/v2/")).send().await.is_err(), "still listening after shutdown");
}
