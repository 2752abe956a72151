//! One error type for the whole service. Every failure carries a stable snake_case
//! [`ErrorCode`]; the same spelling goes into job rows, snapshots, log fields and HTTP bodies.

use std::fmt;

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

/// Stable, machine-readable codes. The serde name is the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // Seat enforcement (DESIGN.md "Enforcement").
    SeatLimitExceeded,
    SeatCheckPending,
    SeatSnapshotMissing,
    SeatAuditFailed,
    SeatOverrideBlock,
    MirrorJobExpired,
    MirrorDisabled,
    // Delivery.
    MirrorPayloadRejected,
    MirrorDeliveryPanicked,
    MirrorDeliveryTimeout,
    // Tenant walls: Discord ids checked against Discord and the tenant's grants.
    SourceGuildNotGranted,
    ChannelNotInGuild,
    ChannelUnknown,
    MappingLoop,
    BotNotInGuild,
    BotCannotPost,
    // Validation.
    SeatLimitRequired,
    SeatLimitInvalid,
    GuildIdInvalid,
    SnowflakeInvalid,
    TenantKeyInvalid,
    ConnectorIdInvalid,
    ValidationFailed,
    FieldRequired,
    InvalidJson,
    PayloadTooLarge,
    // Auth and lookup.
    AuthRequired,
    AuthInvalid,
    Forbidden,
    NotFound,
    Conflict,
    // Queues.
    LeaseLost,
    // Discord.
    DiscordRateLimited,
    DiscordUnknownChannel,
    DiscordUnknownGuild,
    DiscordUnknownMessage,
    DiscordUnknownWebhook,
    DiscordMissingAccess,
    DiscordMissingPermissions,
    DiscordServerError,
    DiscordUnavailable,
    DiscordRequestInvalid,
    // Infrastructure.
    ConfigInvalid,
    InstanceAlreadyRunning,
    /// A write for a guild whose shard lease this process no longer holds.
    ShardLeaseLost,
    /// A request about a guild whose shard another process runs, which did not answer.
    ShardOwnerUnavailable,
    DatabaseUnavailable,
    DatabaseError,
    IoError,
    NotYet,
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            SeatLimitExceeded => "seat_limit_exceeded",
            SeatCheckPending => "seat_check_pending",
            SeatSnapshotMissing => "seat_snapshot_missing",
            SeatAuditFailed => "seat_audit_failed",
            SeatOverrideBlock => "seat_override_block",
            MirrorJobExpired => "mirror_job_expired",
            MirrorDisabled => "mirror_disabled",
            MirrorPayloadRejected => "mirror_payload_rejected",
            MirrorDeliveryPanicked => "mirror_delivery_panicked",
            MirrorDeliveryTimeout => "mirror_delivery_timeout",
            SourceGuildNotGranted => "source_guild_not_granted",
            ChannelNotInGuild => "channel_not_in_guild",
            ChannelUnknown => "channel_unknown",
            MappingLoop => "mapping_loop",
            BotNotInGuild => "bot_not_in_guild",
            BotCannotPost => "bot_cannot_post",
            SeatLimitRequired => "seat_limit_required",
            SeatLimitInvalid => "seat_limit_invalid",
            GuildIdInvalid => "guild_id_invalid",
            SnowflakeInvalid => "snowflake_invalid",
            TenantKeyInvalid => "tenant_key_invalid",
            ConnectorIdInvalid => "connector_id_invalid",
            ValidationFailed => "validation_failed",
            FieldRequired => "field_required",
            InvalidJson => "invalid_json",
            PayloadTooLarge => "payload_too_large",
            AuthRequired => "auth_required",
            AuthInvalid => "auth_invalid",
            Forbidden => "forbidden",
            NotFound => "not_found",
            Conflict => "conflict",
            LeaseLost => "lease_lost",
            DiscordRateLimited => "discord_rate_limited",
            DiscordUnknownChannel => "discord_unknown_channel",
            DiscordUnknownGuild => "discord_unknown_guild",
            DiscordUnknownMessage => "discord_unknown_message",
            DiscordUnknownWebhook => "discord_unknown_webhook",
            DiscordMissingAccess => "discord_missing_access",
            DiscordMissingPermissions => "discord_missing_permissions",
            DiscordServerError => "discord_server_error",
            DiscordUnavailable => "discord_unavailable",
            DiscordRequestInvalid => "discord_request_invalid",
            ConfigInvalid => "config_invalid",
            InstanceAlreadyRunning => "instance_already_running",
            ShardLeaseLost => "shard_lease_lost",
            ShardOwnerUnavailable => "shard_owner_unavailable",
            DatabaseUnavailable => "database_unavailable",
            DatabaseError => "database_error",
            IoError => "io_error",
            NotYet => "not_yet",
            Internal => "internal",
        }
    }

    /// Every code, for tests and documentation.
    pub const ALL: &'static [ErrorCode] = {
        use ErrorCode::*;
        &[
            SeatLimitExceeded,
            SeatCheckPending,
            SeatSnapshotMissing,
            SeatAuditFailed,
            SeatOverrideBlock,
            MirrorJobExpired,
            MirrorDisabled,
            MirrorPayloadRejected,
            MirrorDeliveryPanicked,
            MirrorDeliveryTimeout,
            SourceGuildNotGranted,
            ChannelNotInGuild,
            ChannelUnknown,
            MappingLoop,
            BotNotInGuild,
            BotCannotPost,
            SeatLimitRequired,
            SeatLimitInvalid,
            GuildIdInvalid,
            SnowflakeInvalid,
            TenantKeyInvalid,
            ConnectorIdInvalid,
            ValidationFailed,
            FieldRequired,
            InvalidJson,
            PayloadTooLarge,
            AuthRequired,
            AuthInvalid,
            Forbidden,
            NotFound,
            Conflict,
            LeaseLost,
            DiscordRateLimited,
            DiscordUnknownChannel,
            DiscordUnknownGuild,
            DiscordUnknownMessage,
            DiscordUnknownWebhook,
            DiscordMissingAccess,
            DiscordMissingPermissions,
            DiscordServerError,
            DiscordUnavailable,
            DiscordRequestInvalid,
            ConfigInvalid,
            InstanceAlreadyRunning,
            ShardLeaseLost,
            ShardOwnerUnavailable,
            DatabaseUnavailable,
            DatabaseError,
            IoError,
            NotYet,
            Internal,
        ]
    };

    /// Parses a code read back from a job row or snapshot.
    pub fn parse(code: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// HTTP status for the admin API.
    pub fn http_status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            SeatLimitInvalid | GuildIdInvalid | SnowflakeInvalid | TenantKeyInvalid
            | ConnectorIdInvalid | ValidationFailed | InvalidJson => StatusCode::BAD_REQUEST,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AuthRequired | AuthInvalid => StatusCode::UNAUTHORIZED,
            Forbidden | SourceGuildNotGranted => StatusCode::FORBIDDEN,
            ChannelNotInGuild | ChannelUnknown | MappingLoop | BotNotInGuild | BotCannotPost
            | FieldRequired | SeatLimitRequired => StatusCode::UNPROCESSABLE_ENTITY,
            NotFound | SeatSnapshotMissing => StatusCode::NOT_FOUND,
            Conflict | LeaseLost => StatusCode::CONFLICT,
            NotYet => StatusCode::NOT_IMPLEMENTED,
            DatabaseUnavailable | DiscordUnavailable | ShardOwnerUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DiscordRateLimited => StatusCode::TOO_MANY_REQUESTS,
            SeatLimitExceeded | SeatCheckPending | SeatAuditFailed | SeatOverrideBlock
            | MirrorJobExpired | MirrorDisabled => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error with its stable code, a human message (never containing secrets) and an
/// optional cause for the logs.
#[derive(Debug)]
pub struct AppError {
    code: ErrorCode,
    message: String,
    source: Option<Source>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn not_yet(what: &str) -> Self {
        Self::new(
            ErrorCode::NotYet,
            format!("not yet: {what} is not built yet"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn into_parts(self) -> (ErrorCode, String, Option<Source>) {
        (self.code, self.message, self.source)
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        if let Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return AppError::new(
                ErrorCode::Conflict,
                "a row with the same key already exists",
            )
            .with_source(err);
        }
        let code = match &err {
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => ErrorCode::DatabaseUnavailable,
            _ => ErrorCode::DatabaseError,
        };
        AppError::new(code, "database operation failed").with_source(err)
    }
}

impl From<std::io::Error> for AppError {
    fn from(err: std::io::Error) -> Self {
        AppError::new(ErrorCode::IoError, err.to_string()).with_source(err)
    }
}

/// HTTP body shape: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.code.http_status()
    }

    fn error_response(&self) -> HttpResponse {
        // Internal causes go to the log, not to the caller.
        let message = if self.status_code().is_server_error() && self.code != ErrorCode::NotYet {
            tracing::error!(code = %self.code, error = %self, cause = ?self.source.as_ref().map(|s| s.to_string()), "request failed");
            "internal error; see the service log".to_string()
        } else {
            self.message.clone()
        };
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_is_the_stable_code_for_every_variant() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
    }

    #[test]
    fn design_codes_are_spelled_as_in_the_design() {
        let spelled: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for code in [
            "seat_limit_exceeded",
            "seat_check_pending",
            "seat_snapshot_missing",
            "seat_audit_failed",
            "seat_override_block",
            "mirror_job_expired",
            "seat_limit_required",
            "seat_limit_invalid",
            "guild_id_invalid",
        ] {
            assert!(spelled.contains(&code), "{code} missing");
        }
    }

    #[test]
    fn server_errors_hide_their_cause_from_the_caller() {
        let err = AppError::new(
            ErrorCode::DatabaseError,
            "select failed on secret-token-123",
        );
        let resp = err.error_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = actix_web::body::to_bytes(resp.into_body());
        let bytes = futures_util::FutureExt::now_or_never(body)
            .unwrap()
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains("secret-token-123"));
        assert!(text.contains("\"database_error\""));
    }
}
