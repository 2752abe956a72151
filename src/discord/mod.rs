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

/// serenity's gateway client for `api_url`, built on [`http_client`] so that REST and the
/// gateway URL discovery (`GET /gateway`) go to the same place.
pub fn client_builder(
    token: &str,
    api_url: &str,
    intents: serenity::all::GatewayIntents,
) -> serenity::client::ClientBuilder {
    let base = api_url.trim_end_matches('/');
    if base == "https://discord.com" {
        serenity::Client::builder(token, intents)
    } else {
        let http = HttpBuilder::new(token)
            .proxy(base)
            .ratelimiter_disabled(true)
            .build();
        serenity::client::ClientBuilder::new_with_http(http, intents)
    }
}

/// Whether the gateway URL serenity discovered belongs with `api_url`: Discord's gateway
/// for Discord, a loopback `ws://` for a local sandbox. serenity substitutes Discord's
/// gateway when `GET /gateway` fails, which must never happen against a sandbox.
pub fn gateway_url_matches(api_url: &str, ws_url: &str) -> bool {
    let base = api_url.trim_end_matches('/');
    if base == "https://discord.com" {
        return ws_url.starts_with("wss://");
    }
    let local = |u: &str| {
        ["127.", "localhost", "[::1]"].iter().any(|host| {
            u.starts_with(&format!("ws://{host}")) || u.starts_with(&format!("wss://{host}"))
        })
    };
    let api_local = ["http://127.", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| base.starts_with(p));
    if api_local {
        local(ws_url)
    } else {
        ws_url != "wss://gateway.discord.gg"
    }
}

#[cfg(test)]
mod tests {
    use super::gateway_url_matches;

    #[test]
    fn a_sandbox_never_falls_back_to_discords_gateway() {
        assert!(gateway_url_matches(
            "http://127.0.0.1:5000",
            "ws://127.0.0.1:5001"
        ));
        assert!(!gateway_url_matches(
            "http://127.0.0.1:5000",
            "wss://gateway.discord.gg"
        ));
        assert!(gateway_url_matches(
            "https://discord.com",
            "wss://gateway.discord.gg"
        ));
        assert!(!gateway_url_matches(
            "https://proxy.example",
            "wss://gateway.discord.gg"
        ));
    }
}
