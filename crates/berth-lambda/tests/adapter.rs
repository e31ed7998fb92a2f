//! The Lambda adapter on recorded API Gateway v2 and function-URL events (base64 binary bodies,
//! HEAD keeping Content-Length, the body limit), over the in-memory backend.

use std::sync::Arc;

use berth_app::Settings;
use berth_core::Registry;
use berth_storage::MemoryStorage;
use berth_web::Site;
use lambda_http::{Body, Request};

const DIGEST: &str = "sha256:d65bdff11fa200c8785b61af47b1a04d533435660e2a159ca7325ffbe30fc963";
const BYTES: &[u8] = b"berth on lambda\x00\xff\x10binary";

fn registry() -> Site {
    let mut settings = Settings::from_env().expect("the default settings parse");
    settings.max_body = Some(berth_lambda::MAX_BODY);
    Site::new(Registry::new(Arc::new(MemoryStorage::new()), settings.config()), settings.site())
}

fn event(name: &str) -> Request {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&json).unwrap_or_else(|e| panic!("{path} is not an event: {e}"))
}

fn header<'a>(response: &'a lambda_http::Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn binary_bodies_round_trip_through_api_gateway_and_function_url_events() {
    let registry = registry();
    let pushed = berth_lambda::handle(&registry, event("apigw_v2_post_blob.json")).await;
    assert_eq!(pushed.status(), 201, "{:?}", pushed.body());
    assert_eq!(header(&pushed, "docker-content-digest"), Some(DIGEST));
    assert_eq!(header(&pushed, "location"), Some(format!("/v2/lambda/test/blobs/{DIGEST}").as_str()));

    let head = berth_lambda::handle(&registry, event("apigw_v2_head_blob.json")).await;
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), Some(BYTES.len().to_string().as_str()));
    assert_eq!(head.body(), &Body::Empty);

    let get = berth_lambda::handle(&registry, event("function_url_get_blob.json")).await;
    assert_eq!(get.status(), 200);
    assert_eq!(get.body(), &Body::Binary(BYTES.to_vec()), "binary bytes survive");
}

#[tokio::test]
async fn uploads_advertise_chunking_and_refuse_bodies_over_the_limit() {
    let registry = registry();
    let started = berth_lambda::handle(&registry, event("function_url_post_upload.json")).await;
    assert_eq!(started.status(), 202);
    assert_eq!(header(&started, "oci-chunk-min-length"), Some("4500000"));
    let location = header(&started, "location").unwrap().to_string();

    let mut patch = event("function_url_post_upload.json");
    *patch.method_mut() = lambda_http::http::Method::PATCH;
    *patch.uri_mut() = location.parse().unwrap();
    *patch.body_mut() = Body::Binary(vec![7; berth_lambda::MAX_BODY as usize + 1]);
    let refused = berth_lambda::handle(&registry, patch).await;
    assert_eq!(refused.status(), 413);
    let Body::Binary(body) = refused.body() else { panic!("error without a body") };
    let error: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(error["errors"][0]["code"], "SIZE_INVALID");
    assert!(error["errors"][0]["message"].as_str().unwrap().contains("Content-Range"));

    let mut status = event("function_url_post_upload.json");
    *status.method_mut() = lambda_http::http::Method::GET;
    *status.uri_mut() = location.parse().unwrap();
    let status = berth_lambda::handle(&registry, status).await;
    assert_eq!((status.status().as_u16(), header(&status, "range")), (204, Some("0-0")), "the session is intact");
}
