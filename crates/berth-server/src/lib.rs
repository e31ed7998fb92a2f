//! The HTTP shell of `berth serve`: [`app`] is the registry and its web front as an axum [`Router`] (testable
//! in-process), [`serve`] runs it on a listener until a shutdown signal; [`gc`], [`user`] and
//! [`health`] are the `berth gc`, `berth user` and `berth health` subcommands.

mod app;
pub mod gc;
pub mod health;
pub mod user;

pub use self::app::{app, serve, shutdown_signal};
pub use axum::Router;

use berth_app::Settings;

/// `berth serve`: builds the registry the settings describe and serves it on `--listen` until
/// SIGINT or SIGTERM, collecting garbage every `--gc-every`.
pub async fn run(settings: &Settings) -> Result<(), String> {
    let site = berth_app::build(settings).await.map_err(|e| e.to_string())?;
    if let Some(every) = settings.gc_every {
        gc::spawn_periodic(settings, site.registry().storage(), every);
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    serve(listener, app(site), shutdown_signal()).await.map_err(|e| format!("server failed: {e}"))
}
