//! Downloads a source message's attachments from Discord's CDN (or the sandbox's), so the
//! mirror can upload them again with the copy.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::port::{DiscordError, DiscordResult};

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Discord's CDN hosts; the configured API's host is allowed besides (the sandbox serves
/// attachments itself).
pub const DISCORD_CDN_HOSTS: &[&str] = &["cdn.discordapp.com", "media.discordapp.net"];

/// A download is shared by every target of its message for this long: a fan-out downloads
/// each attachment once.
const SHARED_FOR: Duration = Duration::from_secs(120);
/// Downloads kept for sharing, in all; past this a download is used once and not kept.
const SHARED_MAX_BYTES: usize = 256 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;

/// `host` or `host:port` when the URL names a port: what the allow-list holds.
pub fn host_key(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// The same attachment across targets: Discord signs CDN URLs with a query that may differ.
fn share_key(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

type Cell = Arc<OnceCell<Fetched>>;

/// What became of one download.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Bytes(Vec<u8>),
    /// The file cannot be had (gone, refused, larger than the limit, not an http URL): the
    /// mirror links it instead. The reason names no URL (CDN URLs carry signatures).
    Unavailable(String),
}

#[derive(Clone)]
pub struct AttachmentFetcher {
    client: reqwest::Client,
    allowed: Arc<Vec<String>>,
    shared: Arc<Mutex<HashMap<String, (Instant, Cell)>>>,
}

impl Default for AttachmentFetcher {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl AttachmentFetcher {
    /// Fetches from Discord's CDN hosts and `extra_hosts` (`host` or `host:port`) only,
    /// redirects included: an attachment URL cannot make the service read anything else.
    pub fn new(extra_hosts: &[String]) -> Self {
        let mut allowed: Vec<String> = DISCORD_CDN_HOSTS.iter().map(|h| (*h).to_owned()).collect();
        allowed.extend(extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
        let allowed = Arc::new(allowed);
        let for_redirects = allowed.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.stop()
            } else if host_key(attempt.url()).is_some_and(|h| for_redirects.contains(&h)) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(DOWNLOAD_TIMEOUT)
            .redirect(policy)
            .build()
            .unwrap_or_default();
        Self {
            client,
            allowed,
            shared: Arc::default(),
        }
    }

    /// [`Self::download`], shared: the targets of one message that ask for the same
    /// attachment within [`SHARED_FOR`] get the one download (a failure for now is not kept,
    /// so the next asker tries again).
    pub async fn fetch(&self, url: &str, limit_bytes: u64) -> DiscordResult<Fetched> {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Ok(Fetched::Unavailable("not a URL".into()));
        };
        let key = format!("{limit_bytes}:{}", share_key(&parsed));
        let cell = {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            shared.retain(|_, (at, _)| at.elapsed() < SHARED_FOR);
            let held: usize = shared
                .values()
                .filter_map(|(_, c)| match c.get() {
                    Some(Fetched::Bytes(b)) => Some(b.len()),
                    _ => None,
                })
                .sum();
            match shared.get(&key) {
                Some((_, c)) => Some(c.clone()),
                None if held < SHARED_MAX_BYTES => {
                    let c: Cell = Arc::default();
                    shared.insert(key, (Instant::now(), c.clone()));
                    Some(c)
                }
                None => None,
            }
        };
        match cell {
            Some(c) => c
                .get_or_try_init(|| self.download(&parsed, limit_bytes))
                .await
                .cloned(),
            None => self.download(&parsed, limit_bytes).await,
        }
    }

    /// Downloads `url`, reading at most `limit_bytes`. A 4xx, an oversized file or a host
    /// that is not Discord's is `Unavailable`; a 5xx, 429, timeout or broken connection is
    /// `Transient`, for the job to try again with backoff.
    async fn download(&self, parsed: &reqwest::Url, limit_bytes: u64) -> DiscordResult<Fetched> {
        if !matches!(parsed.scheme(), "http" | "https") {
            return Ok(Fetched::Unavailable("not an http(s) URL".into()));
        }
        if !host_key(parsed).is_some_and(|h| self.allowed.contains(&h)) {
            return Ok(Fetched::Unavailable("not a Discord CDN host".into()));
        }
        let parsed = parsed.clone();
        let response = self.client.get(parsed).send().await.map_err(|e| {
            DiscordError::Transient(format!("attachment download: {}", e.without_url()))
        })?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(DiscordError::Transient(format!(
                "attachment download answered {status}"
            )));
        }
        if status.is_redirection() {
            return Ok(Fetched::Unavailable(
                "redirected to a host that is not Discord's".into(),
            ));
        }
        if !status.is_success() {
            return Ok(Fetched::Unavailable(format!("the CDN answered {status}")));
        }
        if response.content_length().is_some_and(|n| n > limit_bytes) {
            return Ok(Fetched::Unavailable("larger than the upload limit".into()));
        }
        let mut data = Vec::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                DiscordError::Transient(format!("attachment download: {}", e.without_url()))
            })?;
            if (data.len() + chunk.len()) as u64 > limit_bytes {
                return Ok(Fetched::Unavailable("larger than the upload limit".into()));
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Fetched::Bytes(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_compared_with_their_port() {
        let key = |u: &str| host_key(&reqwest::Url::parse(u).unwrap());
        assert_eq!(
            key("https://CDN.discordapp.com/a/b.png?ex=1").as_deref(),
            Some("cdn.discordapp.com")
        );
        assert_eq!(
            key("http://127.0.0.1:4010/attachments/1/2/x").as_deref(),
            Some("127.0.0.1:4010")
        );
    }

    #[tokio::test]
    async fn a_url_outside_discords_hosts_is_linked_without_a_request() {
        let f = AttachmentFetcher::new(&["127.0.0.1:4010".into()]);
        for url in [
            "http://127.0.0.1:4011/attachments/1/2/x.png", // same host, another port
            "http://169.254.169.254/latest/meta-data",
            "https://cdn.discordapp.com.evil.example/x.png",
            "file:///etc/passwd",
        ] {
            let got = f.fetch(url, 1024).await.unwrap();
            assert!(matches!(got, Fetched::Unavailable(_)), "{url}: {got:?}");
        }
    }
}
