//! The Discord ids an admin writes, checked against Discord and the tenant's grants: a
//! tenant uses only source guilds the operator granted it, a mapping's channels are in the
//! guilds it names, a notice channel is in its server. What the gateway told the bot answers
//! first ([`crate::discord::directory`]); a channel it did not tell of (an archived thread)
//! is asked of Discord's REST API.

use serde::Serialize;
use utoipa::ToSchema;

use super::{auth::Caller, AppState};
use crate::{
    discord::directory::PostMode,
    error::{AppError, AppResult, ErrorCode},
    store::grants::GrantStore,
};

/// Accepted, but worth telling the admin (shown on the page too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Warning {
    /// A stable code: `bot_cannot_post`.
    pub code: String,
    pub message: String,
}

/// A tenant token may name only a source guild the operator granted it; an operator naming
/// one grants it.
pub async fn source_guild(
    state: &AppState,
    caller: &Caller,
    tenant_key: &str,
    guild_id: u64,
) -> AppResult<()> {
    let grants = GrantStore::new(state.db.clone());
    match caller {
        Caller::Operator => {
            if grants.grant(tenant_key, guild_id).await? {
                tracing::info!(tenant = %tenant_key, guild_id, "[admin/discord-bot] source guild granted with a connector written by the operator");
            }
            Ok(())
        }
        Caller::Tenant(_) if grants.is_granted(tenant_key, guild_id).await? => Ok(()),
        Caller::Tenant(_) => Err(AppError::new(
            ErrorCode::SourceGuildNotGranted,
            format!(
                "source_guild_id: guild {guild_id} is not granted to this tenant; ask the operator"
            ),
        )),
    }
}

/// `channel_id` must be a channel (or thread) of `guild_id`.
pub async fn channel_in_guild(
    state: &AppState,
    field: &str,
    channel_id: u64,
    guild_id: u64,
) -> AppResult<()> {
    let not_in = || {
        AppError::new(
            ErrorCode::ChannelNotInGuild,
            format!("{field}: channel {channel_id} is not a channel of guild {guild_id}"),
        )
    };
    if let Some((guild, _)) = state.directory.channel(channel_id) {
        return if guild == guild_id {
            Ok(())
        } else {
            Err(not_in())
        };
    }
    // A guild on a shard another process runs is not in this one's directory: Discord says.
    if !state.directory.has_guild(guild_id) && state.shards.carries(guild_id) {
        return Err(AppError::new(
            ErrorCode::BotNotInGuild,
            format!(
                "{field}: the bot is not in guild {guild_id}, or has not received it from Discord yet; invite it and try again"
            ),
        ));
    }
    let unknown = || {
        AppError::new(
            ErrorCode::ChannelUnknown,
            format!("{field}: Discord knows no channel {channel_id} the bot can see"),
        )
    };
    let Some(port) = &state.discord else {
        return Err(unknown());
    };
    match port.channel_guild(channel_id).await {
        Ok(Some(guild)) if guild == guild_id => Ok(()),
        Ok(Some(_)) => Err(not_in()),
        Ok(None) => Err(unknown()),
        Err(err) => Err(AppError::new(
            ErrorCode::DiscordUnavailable,
            format!("{field}: Discord did not answer whether channel {channel_id} exists ({err}); try again"),
        )),
    }
}

/// A warning when the bot cannot post in `channel_id` the way `mode` needs.
pub fn can_post(state: &AppState, field: &str, channel_id: u64, mode: PostMode) -> Option<Warning> {
    match state.directory.bot_can_post(channel_id, mode) {
        Some(false) => Some(Warning {
            code: ErrorCode::BotCannotPost.as_str().to_owned(),
            message: match mode {
                PostMode::Bot => format!(
                    "{field}: the bot cannot view or send messages in channel {channel_id}; nothing will arrive until its permissions allow it"
                ),
                PostMode::Webhook => format!(
                    "{field}: the bot cannot view channel {channel_id} or manage its webhooks; nothing will arrive until its permissions allow it"
                ),
            },
        }),
        _ => None,
    }
}
