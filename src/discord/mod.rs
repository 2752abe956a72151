//! The Discord port and its serenity adapter.

pub mod port;
pub mod rest;

use std::sync::Arc;

use serenity::http::{Http, HttpBuilder};

/// serenity's REST client for `api_url`. Against anything but Discord itself the requests
/// go through serenity's proxy setting, which its ratelimiter ignores, so the ratelimiter is
/// off there and 429s are handled by the caller (see `rest.rs`).
pub fn http_client(token: &str, api_url: &str) -> Arc<Http> {
    let base = api_url.trim_end_matches('/');
    let builder = HttpBuilder::new(token);
    let builder = if base == "https://discord.com" {
        builder
    } else {
        builder.proxy(base).ratelimiter_disabled(true)
    };
    Arc::new(builder.build())
}
