//! The Discord port: what the mirror gate needs from Discord, in the product's own terms.
//! The adapter is serenity (`rest.rs`); tests may plug in their own.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::seats::{GuildSnapshot, MemberSnapshot};
use crate::error::{AppError, ErrorCode};

/// A message as the mirror delivers it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    pub content: String,
    #[serde(default)]
    pub embeds: Vec<serde_json::Value>,
    /// Mirrored message id in the target channel this one replies to.
    #[serde(default)]
    pub reply_to: Option<u64>,
    /// Files uploaded with a create (edits keep the files the message has).
    #[serde(skip)]
    pub files: Vec<OutgoingFile>,
}

/// A file to upload with a message.
#[derive(Clone, Default, PartialEq)]
pub struct OutgoingFile {
    pub filename: String,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for OutgoingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingFile")
            .field("filename", &self.filename)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Who the message appears to come from (webhook mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persona {
    pub username: String,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCredentials {
    pub id: u64,
    /// Secret: never logged.
    pub token: String,
}

/// Why Discord refused, in the terms the delivery logic acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscordError {
    /// 429: try again after this long. Not a failed attempt.
    RateLimited {
        retry_after: Duration,
        global: bool,
    },
    UnknownChannel,
    UnknownMessage,
    UnknownWebhook,
    MissingAccess,
    MissingPermissions,
    /// 5xx, timeouts, connection failures: retry with backoff.
    Transient(String),
    /// Anything else Discord refused (4xx with another code).
    Rejected {
        status: u16,
        code: i64,
        message: String,
    },
}

impl DiscordError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DiscordError::RateLimited { .. } => ErrorCode::DiscordRateLimited,
            DiscordError::UnknownChannel => ErrorCode::DiscordUnknownChannel,
            DiscordError::UnknownMessage => ErrorCode::DiscordUnknownMessage,
            DiscordError::UnknownWebhook => ErrorCode::DiscordUnknownWebhook,
            DiscordError::MissingAccess => ErrorCode::DiscordMissingAccess,
            DiscordError::MissingPermissions => ErrorCode::DiscordMissingPermissions,
            DiscordError::Transient(_) => ErrorCode::DiscordServerError,
            DiscordError::Rejected { .. } => ErrorCode::DiscordRequestInvalid,
        }
    }

    /// Permanent for this target: retrying cannot help until someone fixes access.
    pub fn breaks_target(&self) -> bool {
        matches!(
            self,
            DiscordError::UnknownChannel
                | DiscordError::MissingAccess
                | DiscordError::MissingPermissions
        )
    }

    /// Maps Discord's status and JSON error code (10003, 50013, ...) to a kind.
    pub fn from_status(
        status: u16,
        code: i64,
        message: &str,
        retry_after: Option<f64>,
        global: bool,
    ) -> Self {
        match (status, code) {
            (429, _) => DiscordError::RateLimited {
                retry_after: crate::domain::backoff::rate_limit_wait(retry_after),
                global,
            },
            (_, 10003) => DiscordError::UnknownChannel,
            (_, 10008) => DiscordError::UnknownMessage,
            (_, 10015) => DiscordError::UnknownWebhook,
            (_, 50001) => DiscordError::MissingAccess,
            (_, 50013) => DiscordError::MissingPermissions,
            (s, _) if s >= 500 => DiscordError::Transient(format!("{s}: {message}")),
            (s, c) => DiscordError::Rejected {
                status: s,
                code: c,
                message: message.to_owned(),
            },
        }
    }
}

impl std::fmt::Display for DiscordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscordError::RateLimited {
                retry_after,
                global,
            } => {
                write!(
                    f,
                    "rate limited for {:.3}s (global: {global})",
                    retry_after.as_secs_f64()
                )
            }
            DiscordError::Transient(m) => write!(f, "transient: {m}"),
            DiscordError::Rejected {
                status,
                code,
                message,
            } => write!(f, "{status} code {code}: {message}"),
            other => write!(f, "{}", other.code()),
        }
    }
}

impl From<DiscordError> for AppError {
    fn from(err: DiscordError) -> Self {
        AppError::new(err.code(), err.to_string())
    }
}

pub type DiscordResult<T> = Result<T, DiscordError>;

/// What the mirror needs from Discord.
#[async_trait::async_trait]
pub trait DiscordPort: Send + Sync + 'static {
    /// Creates a message as the bot. `nonce` (<= 25 chars) is enforced: the same nonce twice
    /// within a few minutes returns the first message.
    async fn create_message(
        &self,
        channel_id: u64,
        message: &OutgoingMessage,
        nonce: &str,
    ) -> DiscordResult<u64>;
    async fn edit_message(
        &self,
        channel_id: u64,
        message_id: u64,
        message: &OutgoingMessage,
    ) -> DiscordResult<()>;
    async fn delete_message(&self, channel_id: u64, message_id: u64) -> DiscordResult<()>;
    async fn create_webhook(
        &self,
        channel_id: u64,
        name: &str,
    ) -> DiscordResult<WebhookCredentials>;
    async fn execute_webhook(
        &self,
        webhook: &WebhookCredentials,
        message: &OutgoingMessage,
        persona: &Persona,
    ) -> DiscordResult<u64>;
    async fn edit_webhook_message(
        &self,
        webhook: &WebhookCredentials,
        message_id: u64,
        message: &OutgoingMessage,
    ) -> DiscordResult<()>;
    async fn delete_webhook_message(
        &self,
        webhook: &WebhookCredentials,
        message_id: u64,
    ) -> DiscordResult<()>;
    /// Up to 100 messages of a channel with ids above `after`, to find out whether a webhook
    /// send whose answer was lost reached the channel (webhooks take no nonce). Adapters that
    /// cannot list answer none, and the send goes out again.
    async fn messages_after(
        &self,
        _channel_id: u64,
        _after: u64,
    ) -> DiscordResult<Vec<ChannelMessage>> {
        Ok(Vec::new())
    }

    /// Requests a second this process may send in all (its share of the bot token's global
    /// limit), for adapters that keep one; `None` for those that do not.
    fn sends_per_sec(&self) -> Option<u32> {
        None
    }

    /// The guild a channel (or thread) belongs to, asked of Discord (`GET /channels/{id}`),
    /// for one the gateway did not tell of (an archived thread); `None` when Discord does
    /// not know it or the bot cannot see it. Adapters that cannot ask answer `None`.
    async fn channel_guild(&self, _channel_id: u64) -> DiscordResult<Option<u64>> {
        Ok(None)
    }
}

/// A message as listed in a channel: enough to recognise one of our webhook sends.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMessage {
    pub id: u64,
    pub webhook_id: Option<u64>,
    pub content: String,
}

/// What the seat auditor needs from Discord for a full recount.
#[async_trait::async_trait]
pub trait GuildReader: Send + Sync + 'static {
    /// The guild's owner, roles and channels with their overwrites, the threads among
    /// `targets` (with their parents: a thread is judged by its parent), and Discord's member
    /// count when it gives one. No members: they come page by page from
    /// [`GuildReader::members_after`].
    async fn guild_structure(
        &self,
        guild_id: u64,
        targets: &[u64],
    ) -> DiscordResult<(GuildSnapshot, Option<u64>)>;

    /// Up to `limit` (at most 1000) members with ids above `after`, ascending: Discord's List
    /// Guild Members page.
    async fn members_after(
        &self,
        guild_id: u64,
        after: u64,
        limit: u16,
    ) -> DiscordResult<Vec<MemberSnapshot>>;

    /// [`GuildReader::members_after`] with the members' names (for the admin page's rows,
    /// never for a recount: a million names would sit in memory). Empty where the reader
    /// knows no names.
    async fn member_names_after(
        &self,
        _guild_id: u64,
        _after: u64,
        _limit: u16,
    ) -> DiscordResult<Vec<MemberName>> {
        Ok(Vec::new())
    }

    /// Discord's Search Guild Members: up to `limit` members whose username or nickname
    /// starts with `query` (case-insensitive).
    async fn search_members(
        &self,
        _guild_id: u64,
        _query: &str,
        _limit: u16,
    ) -> DiscordResult<Vec<MemberName>> {
        Ok(Vec::new())
    }
}

/// A member's names as Discord shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberName {
    pub user_id: u64,
    pub username: String,
    /// The server nickname, else the account's display name, else the username.
    pub display_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discord_codes_map_to_kinds_that_decide_retrying() {
        assert!(
            DiscordError::from_status(404, 10003, "Unknown Channel", None, false).breaks_target()
        );
        assert!(
            DiscordError::from_status(403, 50001, "Missing Access", None, false).breaks_target()
        );
        assert!(
            DiscordError::from_status(403, 50013, "Missing Permissions", None, false)
                .breaks_target()
        );
        assert_eq!(
            DiscordError::from_status(404, 10008, "Unknown Message", None, false),
            DiscordError::UnknownMessage
        );
        assert!(matches!(
            DiscordError::from_status(502, 0, "Bad Gateway", None, false),
            DiscordError::Transient(_)
        ));
        assert_eq!(
            DiscordError::from_status(429, 0, "rate limited", Some(1.5), true),
            DiscordError::RateLimited {
                retry_after: Duration::from_millis(1500),
                global: true
            }
        );
        assert!(!DiscordError::from_status(429, 0, "", None, false).breaks_target());
    }
}
