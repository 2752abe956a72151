//! What another instance changed, as PostgreSQL announces it: the payloads of the
//! `seatgate_changes` notifications (written by the triggers of migration 16), and which
//! announced snapshot may replace the one this process holds.

use serde::Deserialize;

use super::{gate::SnapshotView, rate_limits::SharedHold, server_key::ServerKey, snowflake};

/// One changed row, named by its key columns (the listener reads the row itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Snapshot(ServerKey),
    ServerConfig(ServerKey),
    /// A mapping into this server was added, changed or removed.
    Mapping(ServerKey),
    Connector {
        tenant_key: String,
        connector_id: String,
    },
    /// A row of `service_settings`, by key (the kill switch is one).
    Setting(String),
    /// A tenant token was created or revoked.
    Token,
    /// A webhook the service created (its copies are never mirrored back).
    Webhook(u64),
    /// What the owner of a guild's shard knows of the guild (`guild_directory`).
    Guild(u64),
    /// A Discord bucket (or the global limit) that process `from` found used up; no row, the
    /// notification is the whole message.
    RateHold {
        from: String,
        hold: SharedHold,
    },
}

/// The `table` a [`Change::RateHold`] notification names.
pub const RATE_HOLD: &str = "discord_rate_limits";

#[derive(Deserialize)]
struct Payload {
    table: String,
    tenant_key: Option<String>,
    connector_id: Option<String>,
    /// Discord ids as stored: the snowflake with its sign bit flipped.
    guild_id: Option<i64>,
    target_guild_id: Option<i64>,
    key: Option<String>,
    webhook_id: Option<i64>,
    from: Option<String>,
    hold: Option<SharedHold>,
}

impl Change {
    /// The change a notification announces; `None` for a payload this version does not know
    /// (a newer instance's table), which the periodic reload covers.
    pub fn parse(payload: &str) -> Option<Change> {
        let p: Payload = serde_json::from_str(payload).ok()?;
        let server = |p: Payload| {
            Some(ServerKey {
                tenant_key: p.tenant_key?,
                connector_id: p.connector_id?,
                guild_id: snowflake::from_db(p.guild_id.or(p.target_guild_id)?),
            })
        };
        match p.table.as_str() {
            "discord_server_seat_snapshots" => server(p).map(Change::Snapshot),
            "discord_server_configs" => server(p).map(Change::ServerConfig),
            "connector_mappings" => server(p).map(Change::Mapping),
            "connectors" => Some(Change::Connector {
                tenant_key: p.tenant_key?,
                connector_id: p.connector_id?,
            }),
            "service_settings" => p.key.map(Change::Setting),
            "tenant_tokens" => Some(Change::Token),
            "service_webhooks" => p.webhook_id.map(|w| Change::Webhook(snowflake::from_db(w))),
            "guild_directory" => p.guild_id.map(|g| Change::Guild(snowflake::from_db(g))),
            RATE_HOLD => Some(Change::RateHold {
                from: p.from?,
                hold: p.hold?,
            }),
            _ => None,
        }
    }
}

/// Whether a snapshot read from the database may replace the one held in memory. This
/// process's auditor puts its counts in memory before its writer stores them, so a row can
/// be older than what is held: it never replaces a later count. A row of the same count time
/// that differs (an audit that failed after it) does.
pub fn stored_snapshot_applies(held: Option<&SnapshotView>, stored: &SnapshotView) -> bool {
    match held {
        None => true,
        Some(h) => {
            stored.checked_at_ms > h.checked_at_ms
                || (stored.checked_at_ms == h.checked_at_ms && stored != h)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_payloads_name_the_changed_row() {
        let guild = 840_000_000_000_000_001u64;
        let stored = snowflake::to_db(guild);
        let snap = format!(
            r#"{{"table":"discord_server_seat_snapshots","op":"update","tenant_key":"acme","connector_id":"signals","guild_id":{stored}}}"#
        );
        let key = ServerKey {
            tenant_key: "acme".into(),
            connector_id: "signals".into(),
            guild_id: guild,
        };
        assert_eq!(Change::parse(&snap), Some(Change::Snapshot(key.clone())));
        let config = snap.replace("discord_server_seat_snapshots", "discord_server_configs");
        assert_eq!(
            Change::parse(&config),
            Some(Change::ServerConfig(key.clone()))
        );
        let mapping = format!(
            r#"{{"table":"connector_mappings","op":"update","tenant_key":"acme","connector_id":"signals","target_guild_id":{stored}}}"#
        );
        assert_eq!(Change::parse(&mapping), Some(Change::Mapping(key)));
        assert_eq!(
            Change::parse(
                r#"{"table":"connectors","op":"delete","tenant_key":"acme","connector_id":"signals"}"#
            ),
            Some(Change::Connector {
                tenant_key: "acme".into(),
                connector_id: "signals".into()
            })
        );
        assert_eq!(
            Change::parse(r#"{"table":"service_settings","op":"insert","key":"kill_switch"}"#),
            Some(Change::Setting("kill_switch".into()))
        );
        assert_eq!(
            Change::parse(r#"{"table":"tenant_tokens","op":"delete","id":4}"#),
            Some(Change::Token)
        );
        let hook = snowflake::to_db(123);
        assert_eq!(
            Change::parse(&format!(
                r#"{{"table":"service_webhooks","op":"insert","webhook_id":{hook}}}"#
            )),
            Some(Change::Webhook(123))
        );
        assert_eq!(
            Change::parse(&format!(
                r#"{{"table":"guild_directory","op":"delete","guild_id":{stored}}}"#
            )),
            Some(Change::Guild(guild))
        );
    }

    #[test]
    fn a_rate_hold_names_its_sender_and_the_bucket() {
        let hold = SharedHold {
            route: "POST /channels/{channel_id}/messages".into(),
            major: 860_000_000_000_000_001,
            bucket: Some("abc".into()),
            hold_ms: 2_500,
            global: false,
        };
        let payload =
            serde_json::json!({"table": RATE_HOLD, "from": "p1", "hold": hold}).to_string();
        assert_eq!(
            Change::parse(&payload),
            Some(Change::RateHold {
                from: "p1".into(),
                hold
            })
        );
        assert_eq!(
            Change::parse(r#"{"table":"discord_rate_limits","from":"p1"}"#),
            None,
            "no hold"
        );
    }

    #[test]
    fn unknown_or_broken_payloads_are_left_to_the_reload() {
        assert_eq!(Change::parse("not json"), None);
        assert_eq!(
            Change::parse(r#"{"table":"a_newer_table","op":"insert"}"#),
            None
        );
        assert_eq!(
            Change::parse(
                r#"{"table":"discord_server_configs","op":"insert","tenant_key":"acme"}"#
            ),
            None,
            "a server without its connector and guild"
        );
    }

    #[test]
    fn a_stored_snapshot_never_replaces_a_later_count_held_in_memory() {
        let view = |used, at, failed| SnapshotView {
            seats_used: used,
            seat_limit: 5,
            checked_at_ms: at,
            audit_failed: failed,
        };
        assert!(stored_snapshot_applies(None, &view(3, 10, false)));
        assert!(stored_snapshot_applies(
            Some(&view(3, 10, false)),
            &view(6, 20, false)
        ));
        assert!(
            !stored_snapshot_applies(Some(&view(6, 20, false)), &view(3, 10, false)),
            "the writer is behind this process's own count"
        );
        assert!(!stored_snapshot_applies(
            Some(&view(6, 20, false)),
            &view(6, 20, false)
        ));
        assert!(stored_snapshot_applies(
            Some(&view(6, 20, false)),
            &view(6, 20, true)
        ));
    }
}
