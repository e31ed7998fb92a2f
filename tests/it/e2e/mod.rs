//! End-to-end tests: a real `berth serve` process ([`server::Server`]) driven by real clients —
//! skopeo ([`skopeo`]), the Docker Engine ([`docker`], and the container image of berth:
//! [`image`]) and plain HTTP across server restarts ([`restart`]) and on kept-alive connections
//! ([`latency`]), with authentication ([`auth`]), over a real S3 server ([`s3`], which
//! `scripts/s3-servers` starts), as a Lambda function ([`lambda`]) and as a Lambda function with
//! an upload host ([`upload_host`]: docker, containerd, skopeo, podman), garbage collection beside
//! a live server ([`gc`]), two instances on one bucket ([`instances`]), `berth fsck` ([`fsck`]),
//! the web UI in a real browser ([`browser`]), metrics, health probes and TLS ([`operability`]),
//! S3 faults ([`reliability`]), filesystem faults and `kill -9` on the filesystem
//! ([`fs_faults`]), hostile input over a raw socket ([`hostile`]), the load benchmark, briefly
//! ([`bench`]), and the README's walk-through and start-up messages ([`readme`]). They need the binary built first (`cargo build -p berth-server`, which
//! `scripts/test` does); a missing client tool (or S3 server) fails under CI and is a skip
//! elsewhere (`crate::common`).

mod auth;
mod bench;
mod browser;
mod docker;
mod fs_faults;
mod fsck;
mod gc;
mod hostile;
mod image;
mod instances;
mod lambda;
mod latency;
mod layout;
mod operability;
mod readme;
mod reliability;
mod restart;
mod s3;
mod server;
mod skopeo;
mod upload_host;
