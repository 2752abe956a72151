//! Discord ids (snowflakes): parsing from their string form, and the order-preserving
//! encoding used to store all 64 bits in a signed BIGINT on both SQLite and PostgreSQL.

use crate::error::{AppError, ErrorCode};

/// Parses a snowflake as Discord sends it: a decimal string of 1..=20 digits that fits in
/// 64 bits and is not zero. Surrounding whitespace is trimmed.
pub fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|id| *id != 0)
}

/// Parses a snowflake or returns an error with `code` naming the field.
pub fn parse_field(field: &str, text: &str, code: ErrorCode) -> Result<u64, AppError> {
    parse(text).ok_or_else(|| {
        AppError::new(
            code,
            format!("{field} must be a Discord id: 1 to 20 digits, non-zero, at most 2^64-1"),
        )
    })
}

/// Database form: flips the sign bit so that unsigned order equals signed order. Every
/// u64 round-trips and `ORDER BY` on the column sorts ids as Discord does.
pub const fn to_db(id: u64) -> i64 {
    (id ^ (1 << 63)) as i64
}

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
pub const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// The smallest snowflake of millisecond `ms` (Unix): every message created at or after `ms`
/// has an id at or above it.
pub fn at_ms(ms: i64) -> u64 {
    (ms.saturating_sub(DISCORD_EPOCH_MS).max(0) as u64) << 22
}

/// Inverse of [`to_db`].
pub const fn from_db(stored: i64) -> u64 {
    (stored as u64) ^ (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_discord_ids_and_rejects_garbage() {
        assert_eq!(parse("175928847299117063"), Some(175928847299117063));
        assert_eq!(parse(" 42 "), Some(42));
        assert_eq!(parse("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "0",
            "-1",
            "12a",
            "18446744073709551616",
            "123456789012345678901",
            "1.5",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn db_encoding_round_trips_and_preserves_order() {
        let ids = [
            1u64,
            2,
            175928847299117063,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for w in ids.windows(2) {
            assert!(to_db(w[0]) < to_db(w[1]), "{} < {}", w[0], w[1]);
        }
        for id in ids {
            assert_eq!(from_db(to_db(id)), id);
        }
    }

    #[test]
    fn snowflake_of_a_time_orders_like_message_ids() {
        assert_eq!(at_ms(DISCORD_EPOCH_MS), 0);
        assert_eq!(at_ms(0), 0);
        // Discord's documented example: 175928847299117063 was created at 1462015105796 ms.
        let id = 175_928_847_299_117_063u64;
        assert!(at_ms(1_462_015_105_796) <= id);
        assert!(at_ms(1_462_015_105_797) > id);
    }
}
