//! Discord's JSON error shape `{"message", "code"}` with Discord's codes and statuses.

use std::fmt;

use actix_web::{http::StatusCode, HttpResponse};
use serde_json::json;

/// An error as Discord reports it: an HTTP status, a numeric JSON code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordError {
    pub status: u16,
    pub code: u32,
    pub message: String,
}

impl DiscordError {
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(401, 0, "401: Unauthorized")
    }
    pub fn not_found() -> Self {
        Self::new(404, 0, "404: Not Found")
    }
    pub fn method_not_allowed() -> Self {
        Self::new(405, 0, "405: Method Not Allowed")
    }
    pub fn unknown_channel() -> Self {
        Self::new(404, 10003, "Unknown Channel")
    }
    pub fn unknown_guild() -> Self {
        Self::new(404, 10004, "Unknown Guild")
    }
    pub fn unknown_member() -> Self {
        Self::new(404, 10007, "Unknown Member")
    }
    pub fn unknown_message() -> Self {
        Self::new(404, 10008, "Unknown Message")
    }
    pub fn unknown_role() -> Self {
        Self::new(404, 10011, "Unknown Role")
    }
    pub fn unknown_user() -> Self {
        Self::new(404, 10013, "Unknown User")
    }
    pub fn unknown_webhook() -> Self {
        Self::new(404, 10015, "Unknown Webhook")
    }
    pub fn missing_access() -> Self {
        Self::new(403, 50001, "Missing Access")
    }
    pub fn missing_permissions() -> Self {
        Self::new(403, 50013, "Missing Permissions")
    }
    pub fn cannot_edit_others() -> Self {
        Self::new(403, 50005, "Cannot edit a message authored by another user")
    }
    pub fn non_text_channel() -> Self {
        Self::new(400, 50008, "Cannot send messages in a non-text channel")
    }
    pub fn empty_message() -> Self {
        Self::new(400, 50006, "Cannot send an empty message")
    }
    /// A file above the upload limit, or a body too large to read.
    pub fn entity_too_large() -> Self {
        Self::new(413, 40005, "Request entity too large")
    }
    pub fn invalid_json() -> Self {
        Self::new(400, 50109, "The request body contains invalid JSON.")
    }
    /// Discord's 50035 with a human hint of the offending field in the message.
    pub fn invalid_form(detail: impl fmt::Display) -> Self {
        Self::new(400, 50035, format!("Invalid Form Body ({detail})"))
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"message": self.message, "code": self.code})
    }

    pub fn to_response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpResponse::build(status).json(self.body())
    }
}

impl fmt::Display for DiscordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.status, self.message, self.code)
    }
}

impl std::error::Error for DiscordError {}

pub type DResult<T> = Result<T, DiscordError>;
