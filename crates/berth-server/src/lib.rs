//! The HTTP shell of `berth serve`: [`app`] is the registry as an axum [`Router`] (testable
//! in-process), [`serve`] runs it on a listener until a shutdown signal; [`user`] and [`health`]
//! are the `berth user` and `berth health` subcommands.

mod app;
pub mod health;
pub mod user;

pub use self::app::{app, serve, shutdown_signal};
pub use axum::Router;
