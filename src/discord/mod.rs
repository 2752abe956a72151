//! The Discord port and its serenity adapter. [`connect`] is the one place that builds
//! serenity's `Http` and `Client` for a base URL (Discord itself or the sandbox).

pub mod cdn;
pub mod connect;
pub mod directory;
pub mod invalid_guard;
pub mod limiter;
pub mod member_names;
pub mod port;
pub mod rest;
pub mod shards;
