//! Downloads a source message's attachments from Discord's CDN (or the sandbox's), so the
//! mirror can upload them again with the copy.

use std::time::Duration;

use futures_util::StreamExt;

use super::port::{DiscordError, DiscordResult};

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of one download.
#[derive(Debug, PartialEq)]
pub enum Fetched {
    Bytes(Vec<u8>),
    /// The file cannot be had (gone, refused, larger than the limit, not an http URL): the
    /// mirror links it instead. The reason names no URL (CDN URLs carry signatures).
    Unavailable(String),
}

#[derive(Clone)]
pub struct AttachmentFetcher {
    client: reqwest::Client,
}

impl Default for AttachmentFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl AttachmentFetcher {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(DOWNLOAD_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self { client }
    }

    /// Downloads `url`, reading at most `limit_bytes`. A 4xx or an oversized file is
    /// `Unavailable`; a 5xx, 429, timeout or broken connection is `Transient`, for the job to
    /// try again with backoff.
    pub async fn fetch(&self, url: &str, limit_bytes: u64) -> DiscordResult<Fetched> {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Ok(Fetched::Unavailable("not a URL".into()));
        };
        if !matches!(parsed.scheme(), "http" | "https") {
            return Ok(Fetched::Unavailable("not an http(s) URL".into()));
        }
        let response = self.client.get(parsed).send().await.map_err(|e| {
            DiscordError::Transient(format!("attachment download: {}", e.without_url()))
        })?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(DiscordError::Transient(format!(
                "attachment download answered {status}"
            )));
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
