//! A proxy that holds every request `<delay ms>` before forwarding it to an S3 server, as a
//! server some way off answers: the latency benchmark (`bench/latency.sh`) puts it between
//! berth (and the clients its redirects send to storage) and a local S3 server. Requests go on
//! unchanged (the `Host` header too, so signatures stay valid); both bodies stream.
//!
//! Usage: `delay_proxy <upstream URL> <delay ms>`; prints `listening <addr>` once it accepts,
//! and counts nothing: berth's log counts its storage calls.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, upstream, delay] = &args[..] else {
        return Err("usage: delay_proxy <upstream URL> <delay ms>".into());
    };
    let upstream = upstream.trim_end_matches('/').to_string();
    let delay = Duration::from_millis(delay.parse()?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, upstream) = (client.clone(), upstream.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let (client, upstream) = (client.clone(), upstream.clone());
            async move {
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>(match forward(&client, &upstream, request).await {
                    Ok(response) => response,
                    Err(e) => Response::builder()
                        .status(StatusCode::BAD_GATEWAY)
                        .body(Full::new(Bytes::from(e.to_string())).map_err(|never| match never {}).boxed())
                        .expect("a valid response"),
                })
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: &str,
    request: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Error>>, Error> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{upstream}{path}").parse()?;
    let response = client.request(Request::from_parts(parts, body)).await?;
    Ok(response.map(|b| b.map_err(Error::from).boxed()))
}
