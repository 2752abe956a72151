//! seatgate: mirrors Discord source channels into customer servers and enforces a
//! per-server seat licence. See DESIGN.md for the vocabulary.
//!
//! Layout: `domain` is pure logic (no I/O), `store` the database, `actors` one file per
//! actor, `discord` the Discord port, `http` the admin API, `sandbox` the local Discord.

pub mod actors;
pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discord;
pub mod domain;
pub mod error;
pub mod http;
pub mod redact;
pub mod sandbox;
pub mod store;
pub mod telemetry;

pub use error::{AppError, AppResult, ErrorCode};
