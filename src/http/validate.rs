//! Validation of path segments and body fields, each failure with its stable code.

use serde_json::Value;

use crate::{
    domain::snowflake,
    error::{AppError, AppResult, ErrorCode},
};

/// Tenant keys and connector ids: 1 to 64 of `A-Z a-z 0-9 _ - .`.
fn is_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

pub const KEY_PATTERN: &str = "^[A-Za-z0-9_.-]{1,64}$";

pub fn tenant_key(text: &str) -> AppResult<()> {
    if is_key(text) {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::TenantKeyInvalid,
            "tenant_key must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '-', '.'",
        ))
    }
}

pub fn connector_id(text: &str) -> AppResult<()> {
    if is_key(text) {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::ConnectorIdInvalid,
            "connector_id must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '-', '.'",
        ))
    }
}

pub fn guild_id(field: &str, text: &str) -> AppResult<u64> {
    snowflake::parse_field(field, text, ErrorCode::GuildIdInvalid)
}

pub fn snowflake(field: &str, text: &str) -> AppResult<u64> {
    snowflake::parse_field(field, text, ErrorCode::SnowflakeInvalid)
}

/// A row id in a path (mapping id, token id): a positive integer that fits in 63 bits.
pub fn row_id(field: &str, text: &str) -> AppResult<i64> {
    let id = if text.len() <= 19 && !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>().ok().filter(|id| *id > 0)
    } else {
        None
    };
    id.ok_or_else(|| {
        AppError::new(
            ErrorCode::ValidationFailed,
            format!("{field} must be a positive integer below 2^63"),
        )
    })
}

/// An optional snowflake field given as a JSON string: absent, null or blank (after trimming)
/// means none; anything else must be a Discord id.
pub fn optional_snowflake(field: &str, value: Option<&Value>) -> AppResult<Option<u64>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => snowflake(field, s).map(Some),
        Some(_) => Err(AppError::new(
            ErrorCode::SnowflakeInvalid,
            format!("{field} must be a Discord id as a string"),
        )),
    }
}

/// `seat_limit`: required, an integer >= 0.
pub fn seat_limit(value: Option<&Value>) -> AppResult<i64> {
    match value {
        None | Some(Value::Null) => Err(AppError::new(
            ErrorCode::SeatLimitRequired,
            "seat_limit is required: the number of seats this server paid for",
        )),
        Some(Value::Number(n)) => n.as_i64().filter(|v| *v >= 0).ok_or_else(|| {
            AppError::new(
                ErrorCode::SeatLimitInvalid,
                "seat_limit must be a whole number from 0 to 2^63-1",
            )
        }),
        Some(_) => Err(AppError::new(
            ErrorCode::SeatLimitInvalid,
            "seat_limit must be a whole number, not a string or other value",
        )),
    }
}

/// A display name: trimmed, 1 to 100 characters.
pub fn name(field: &str, text: &str) -> AppResult<String> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > 100 {
        return Err(AppError::new(
            ErrorCode::ValidationFailed,
            format!("{field} must be 1 to 100 characters"),
        ));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seat_limit_missing_null_negative_fractional_and_string_are_told_apart() {
        assert_eq!(
            seat_limit(None).unwrap_err().code(),
            ErrorCode::SeatLimitRequired
        );
        assert_eq!(
            seat_limit(Some(&Value::Null)).unwrap_err().code(),
            ErrorCode::SeatLimitRequired
        );
        for bad in [
            json!(-1),
            json!(1.5),
            json!("10"),
            json!(18446744073709551615u64),
        ] {
            assert_eq!(
                seat_limit(Some(&bad)).unwrap_err().code(),
                ErrorCode::SeatLimitInvalid,
                "{bad}"
            );
        }
        assert_eq!(seat_limit(Some(&json!(0))).unwrap(), 0);
        assert_eq!(seat_limit(Some(&json!(250))).unwrap(), 250);
    }

    #[test]
    fn role_ids_are_trimmed_and_blank_means_none() {
        assert_eq!(
            optional_snowflake("basic_role_id", Some(&json!("  42 "))).unwrap(),
            Some(42)
        );
        assert_eq!(
            optional_snowflake("basic_role_id", Some(&json!("   "))).unwrap(),
            None
        );
        assert_eq!(
            optional_snowflake("basic_role_id", Some(&json!(42)))
                .unwrap_err()
                .code(),
            ErrorCode::SnowflakeInvalid
        );
    }

    #[test]
    fn row_ids_reject_zero_signs_and_overflow() {
        assert_eq!(row_id("mapping_id", "7").unwrap(), 7);
        for bad in [
            "0",
            "-1",
            "+1",
            "9223372036854775808",
            "99999999999999999999",
            "x",
        ] {
            assert!(row_id("mapping_id", bad).is_err(), "{bad}");
        }
    }
}
