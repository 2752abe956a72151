//! Builds serenity's `Http` and gateway `Client` for a Discord-compatible base URL.
//!
//! Against anything but discord.com, REST goes through `HttpBuilder::proxy(api_url)`, which
//! serenity only honours with its own ratelimiter disabled (reference/discord-notes.md); the
//! caller then sees 429s itself and must reschedule on `retry_after`.

use serenity::all::{Client, ClientBuilder, GatewayIntents};
use serenity::http::{Http, HttpBuilder};

use crate::error::{AppError, ErrorCode};

/// Discord's own base URL, the default of `SEATGATE_DISCORD_API_URL`.
pub const DISCORD_API_URL: &str = "https://discord.com";

/// Whether `api_url` is Discord itself (no proxying, serenity's ratelimiter on).
pub fn is_discord(api_url: &str) -> bool {
    let u = api_url.trim_end_matches('/');
    u == DISCORD_API_URL || u == "https://discord.com/api" || u == "https://discord.com/api/v10"
}

/// The intents the service needs: guild structure, members (privileged), guild messages and
/// their content (privileged).
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MEMBERS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// serenity's REST client for `api_url` (`https://discord.com`, or e.g. the sandbox's
/// `http://127.0.0.1:PORT`). The token may carry the `Bot ` prefix or not.
pub fn http(api_url: &str, token: &str) -> Http {
    if is_discord(api_url) {
        HttpBuilder::new(token).build()
    } else {
        HttpBuilder::new(token)
            .proxy(api_url.trim_end_matches('/'))
            .ratelimiter_disabled(true)
            .build()
    }
}

/// A gateway client builder with [`intents`] and [`http`]; add event handlers, then
/// [`build_client`].
///
/// serenity's cache keeps nothing but the bot's own user: the seat auditor's index holds the
/// members (a serenity `Member` costs about 2 KiB each, a million members gigabytes), and
/// the gateway's events reach it in order without the cache (`gateway_ingest::ordered`).
pub fn client_builder(api_url: &str, token: &str) -> ClientBuilder {
    let mut cache = serenity::cache::Settings::default();
    cache.cache_guilds = false;
    cache.cache_channels = false;
    cache.cache_users = false;
    ClientBuilder::new_with_http(http(api_url, token), intents()).cache_settings(cache)
}

/// Builds the client and, when not talking to Discord, refuses to go on unless the gateway URL
/// it was given is a loopback `ws://` URL: serenity silently falls back to
/// `wss://gateway.discord.gg` when `GET /gateway` fails.
pub async fn build_client(builder: ClientBuilder, api_url: &str) -> Result<Client, AppError> {
    let client = builder.await.map_err(|e| {
        AppError::new(
            ErrorCode::DiscordUnavailable,
            "cannot build the Discord client",
        )
        .with_source(e)
    })?;
    if !is_discord(api_url) {
        let ws = client.ws_url.lock().await.clone();
        if !is_loopback_ws(&ws) {
            return Err(AppError::new(
                ErrorCode::DiscordUnavailable,
                format!(
                    "GET /gateway on {api_url} failed or returned a non-local gateway ({ws}); \
                     refusing to connect elsewhere"
                ),
            ));
        }
    }
    Ok(client)
}

fn is_loopback_ws(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("ws://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_discord_itself_keeps_serenitys_ratelimiter() {
        assert!(is_discord("https://discord.com"));
        assert!(is_discord("https://discord.com/"));
        assert!(!is_discord("http://127.0.0.1:4000"));
        let h = http("http://127.0.0.1:4000/", "abc");
        assert!(h.ratelimiter.is_none());
        assert_eq!(h.proxy.as_deref(), Some("http://127.0.0.1:4000"));
        assert!(http(DISCORD_API_URL, "abc").ratelimiter.is_some());
    }

    #[test]
    fn gateway_fallback_to_discord_is_not_loopback() {
        assert!(is_loopback_ws("ws://127.0.0.1:5000/gateway"));
        assert!(is_loopback_ws("ws://[::1]:5000"));
        assert!(!is_loopback_ws("wss://gateway.discord.gg"));
        assert!(!is_loopback_ws("ws://10.0.0.1:5000"));
    }
}
