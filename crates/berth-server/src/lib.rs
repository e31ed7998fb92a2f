//! The HTTP shell of `berth serve`: [`app`] is the registry as an axum [`Router`] (testable
//! in-process), [`serve`] runs it on a listener until a shutdown signal; [`user`] is the
//! `berth user` subcommand.

mod app;
pub mod user;

pub use self::app::{app, serve, shutdown_signal};
pub use axum::Router;
