//! The HTTP shell of `berth serve`: [`app`] is the registry and its web front as an axum
//! [`Router`] (testable in-process), [`metrics_app`] its `/metrics`, [`serve`] runs them on a
//! listener until a shutdown signal ([`serve_tls`] with [`tls`]); [`gc`], [`fsck`], [`user`]
//! and [`health`] are the `berth gc`, `berth fsck`, `berth user` and `berth health`
//! subcommands.

mod app;
pub mod fsck;
pub mod gc;
pub mod health;
pub mod tls;
pub mod user;

pub use self::app::{app, metrics_app, serve, serve_tls, shutdown_signal};
pub use axum::Router;

use std::sync::Arc;

use berth_app::{MetricsAt, Settings};
use berth_metrics::Metrics;

use self::tls::{Certificates, TlsListener};

/// `berth serve`: builds the registry the settings describe and serves it on `--listen` (over
/// TLS with `--tls-cert`) until SIGINT or SIGTERM, with `/metrics` where `--metrics-listen`
/// says, collecting garbage every `--gc-every`.
pub async fn run(settings: &Settings) -> Result<(), String> {
    // TLS files are checked before anything starts.
    let certificates = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(Certificates::load(cert, key)?)),
        _ => None,
    };
    let site = berth_app::build(settings).await.map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::new());
    if let Some(every) = settings.gc_every {
        gc::spawn_periodic(settings, site.registry().storage(), every, metrics.clone());
    }
    let mut router = app(site, metrics.clone(), settings.body_idle_timeout);
    match settings.metrics_listen {
        MetricsAt::Listen => router = router.merge(metrics_app(metrics)),
        MetricsAt::Address(addr) => {
            let listener = bind(addr).await?;
            tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "metrics listening");
            // Ends with the process; scrapes need no graceful shutdown.
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, metrics_app(metrics)).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        MetricsAt::Off => {}
    }
    let listener = bind(settings.listen).await?;
    let served = match certificates {
        Some(certificates) => {
            let listener = TlsListener::new(listener, certificates).map_err(|e| e.to_string())?;
            serve_tls(listener, router, settings.request_head_timeout, shutdown_signal()).await
        }
        None => serve(listener, router, settings.request_head_timeout, shutdown_signal()).await,
    };
    served.map_err(|e| format!("server failed: {e}"))
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))
}
