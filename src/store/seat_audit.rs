//! What the seat auditor reads and writes: the configured servers and their mapped target
//! channels, snapshots, and the pause/resume history.

use std::collections::BTreeMap;

use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};

use entities::{
    connector_mappings, discord_server_configs, discord_server_seat_snapshots as snapshots,
    seat_enforcement_events as events,
};

use super::Database;
use crate::{
    domain::{
        freshness::Freshness,
        gate::{EnforcementMode, OverrideMode, ServerPolicy, SnapshotView},
        seats::{SeatCount, TierRoles},
        server_key::ServerKey,
        snowflake,
    },
    error::{AppResult, ErrorCode},
};

/// A configured server as the auditor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub key: ServerKey,
    pub seat_limit: u64,
    pub tiers: TierRoles,
    pub notify_channel_id: Option<u64>,
    pub policy: ServerPolicy,
    /// Enabled mappings' target channels in this guild, sorted.
    pub mapped_channels: Vec<u64>,
}

/// A snapshot as the auditor writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub count: SeatCount,
    pub seat_limit: u64,
    pub checked_at: i64,
    pub next_check_after: i64,
    pub status: Freshness,
    pub last_error: Option<String>,
}

impl SnapshotRecord {
    pub fn view(&self) -> SnapshotView {
        SnapshotView {
            seats_used: self.count.seats_used,
            seat_limit: self.seat_limit,
            checked_at_ms: self.checked_at,
            audit_failed: audit_failed(self.last_error.as_deref()),
        }
    }
}

/// A stored snapshot row as the auditor writes it (another instance's included).
pub fn snapshot_of_row(r: snapshots::Model) -> (ServerKey, SnapshotRecord) {
    (
        ServerKey {
            tenant_key: r.tenant_key,
            connector_id: r.connector_id,
            guild_id: snowflake::from_db(r.guild_id),
        },
        SnapshotRecord {
            count: SeatCount {
                seats_used: r.seats_used.max(0) as u64,
                by_tier: crate::domain::seats::TierCounts {
                    basic: r.basic_count.max(0) as u64,
                    advanced: r.advanced_count.max(0) as u64,
                    pro: r.pro_count.max(0) as u64,
                },
            },
            seat_limit: r.seat_limit.max(0) as u64,
            checked_at: r.checked_at,
            next_check_after: r.next_check_after,
            status: Freshness::parse(&r.status).unwrap_or(Freshness::Expired),
            last_error: r.last_error,
        },
    )
}

/// A guild the bot is not in cannot be counted either: the gate holds it the same.
fn audit_failed(last_error: Option<&str>) -> bool {
    last_error.is_some_and(|e| {
        e.starts_with(ErrorCode::SeatAuditFailed.as_str())
            || e.starts_with(ErrorCode::BotNotInGuild.as_str())
    })
}

/// One row of the pause/resume history.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub seats_used: u64,
    pub seat_limit: u64,
    pub at: i64,
    pub cause: &'a str,
}

#[derive(Clone)]
pub struct SeatAuditStore {
    db: Database,
}

fn tier(id: Option<i64>) -> Option<u64> {
    id.map(snowflake::from_db)
}

impl SeatAuditStore {
    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Every configured server with its mapped target channels.
    pub async fn servers(&self) -> AppResult<Vec<ServerSpec>> {
        let configs = discord_server_configs::Entity::find()
            .filter(discord_server_configs::Column::DeletedAt.is_null())
            .order_by_asc(discord_server_configs::Column::Id)
            .all(self.db.conn())
            .await?;
        // The channels members see a server's mirror in: enabled, not deleted mappings.
        let mappings = connector_mappings::Entity::find()
            .filter(connector_mappings::Column::Enabled.eq(true))
            .filter(connector_mappings::Column::DeletedAt.is_null())
            .all(self.db.conn())
            .await?;
        let mut mapped: BTreeMap<(String, String, i64), Vec<u64>> = BTreeMap::new();
        for m in mappings {
            mapped
                .entry((m.tenant_key, m.connector_id, m.target_guild_id))
                .or_default()
                .push(snowflake::from_db(m.target_channel_id));
        }
        Ok(configs
            .into_iter()
            .map(|c| {
                let mut channels = mapped
                    .remove(&(c.tenant_key.clone(), c.connector_id.clone(), c.guild_id))
                    .unwrap_or_default();
                channels.sort_unstable();
                channels.dedup();
                ServerSpec {
                    key: ServerKey {
                        tenant_key: c.tenant_key,
                        connector_id: c.connector_id,
                        guild_id: snowflake::from_db(c.guild_id),
                    },
                    seat_limit: c.seat_limit.max(0) as u64,
                    tiers: TierRoles {
                        basic: tier(c.basic_role_id),
                        advanced: tier(c.advanced_role_id),
                        pro: tier(c.pro_role_id),
                    },
                    notify_channel_id: c.notify_channel_id.map(snowflake::from_db),
                    policy: ServerPolicy {
                        mode: EnforcementMode::parse(&c.enforcement_mode).unwrap_or_default(),
                        override_mode: OverrideMode::parse(&c.enforcement_override)
                            .unwrap_or_default(),
                        stale_grace: c.stale_grace,
                    },
                    mapped_channels: channels,
                }
            })
            .collect())
    }

    /// Every stored snapshot, for the cache at start.
    pub async fn snapshots(&self) -> AppResult<Vec<(ServerKey, SnapshotRecord)>> {
        let rows = snapshots::Entity::find().all(self.db.conn()).await?;
        Ok(rows.into_iter().map(snapshot_of_row).collect())
    }

    /// Inserts or replaces the server's snapshot (one statement: an upsert on its key).
    pub async fn write_snapshot(
        &self,
        key: &ServerKey,
        s: &SnapshotRecord,
        now: i64,
    ) -> AppResult<()> {
        self.write_snapshot_on(self.db.conn(), key, s, now).await
    }

    /// [`Self::write_snapshot`] on `conn` (a transaction fenced by a shard lease).
    pub async fn write_snapshot_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        key: &ServerKey,
        s: &SnapshotRecord,
        now: i64,
    ) -> AppResult<()> {
        let row = snapshots::ActiveModel {
            tenant_key: Set(key.tenant_key.clone()),
            connector_id: Set(key.connector_id.clone()),
            guild_id: Set(snowflake::to_db(key.guild_id)),
            seats_used: Set(s.count.seats_used as i64),
            seat_limit: Set(s.seat_limit as i64),
            is_over_limit: Set(s.count.seats_used > s.seat_limit),
            checked_at: Set(s.checked_at),
            next_check_after: Set(s.next_check_after),
            status: Set(s.status.as_str().to_owned()),
            last_error: Set(s.last_error.clone()),
            basic_count: Set(s.count.by_tier.basic as i64),
            advanced_count: Set(s.count.by_tier.advanced as i64),
            pro_count: Set(s.count.by_tier.pro as i64),
            updated_at: Set(now),
            members_counted: Set(None),
            member_count: Set(None),
            ..Default::default()
        };
        snapshots::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    snapshots::Column::TenantKey,
                    snapshots::Column::ConnectorId,
                    snapshots::Column::GuildId,
                ])
                .update_columns([
                    snapshots::Column::SeatsUsed,
                    snapshots::Column::SeatLimit,
                    snapshots::Column::IsOverLimit,
                    snapshots::Column::CheckedAt,
                    snapshots::Column::NextCheckAfter,
                    snapshots::Column::Status,
                    snapshots::Column::LastError,
                    snapshots::Column::BasicCount,
                    snapshots::Column::AdvancedCount,
                    snapshots::Column::ProCount,
                    snapshots::Column::UpdatedAt,
                    snapshots::Column::MembersCounted,
                    snapshots::Column::MemberCount,
                ])
                .to_owned(),
            )
            .exec(conn)
            .await?;
        Ok(())
    }

    /// The member list is still arriving: the snapshot says how far, and `seat_check_pending`,
    /// with its last count (and `checked_at`) untouched so that it ages. A server never
    /// counted gets a row that says so (`checked_at` 0, `expired`).
    pub async fn write_counting(
        &self,
        key: &ServerKey,
        members: u64,
        member_count: Option<u64>,
        seat_limit: u64,
        now: i64,
    ) -> AppResult<()> {
        self.write_counting_on(self.db.conn(), key, members, member_count, seat_limit, now)
            .await
    }

    /// [`Self::write_counting`] on `conn` (a transaction fenced by a shard lease).
    pub async fn write_counting_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        key: &ServerKey,
        members: u64,
        member_count: Option<u64>,
        seat_limit: u64,
        now: i64,
    ) -> AppResult<()> {
        let row = snapshots::ActiveModel {
            tenant_key: Set(key.tenant_key.clone()),
            connector_id: Set(key.connector_id.clone()),
            guild_id: Set(snowflake::to_db(key.guild_id)),
            seats_used: Set(0),
            seat_limit: Set(seat_limit as i64),
            is_over_limit: Set(false),
            checked_at: Set(0),
            next_check_after: Set(now),
            status: Set(Freshness::Expired.as_str().to_owned()),
            last_error: Set(Some(ErrorCode::SeatCheckPending.as_str().to_owned())),
            basic_count: Set(0),
            advanced_count: Set(0),
            pro_count: Set(0),
            updated_at: Set(now),
            members_counted: Set(Some(members as i64)),
            member_count: Set(member_count.map(|n| n as i64)),
            ..Default::default()
        };
        snapshots::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    snapshots::Column::TenantKey,
                    snapshots::Column::ConnectorId,
                    snapshots::Column::GuildId,
                ])
                .update_columns([
                    snapshots::Column::LastError,
                    snapshots::Column::UpdatedAt,
                    snapshots::Column::MembersCounted,
                    snapshots::Column::MemberCount,
                ])
                .to_owned(),
            )
            .exec(conn)
            .await?;
        Ok(())
    }

    /// Re-stamps `checked_at` of live-counted servers without touching their counts.
    pub async fn restamp(
        &self,
        key: &ServerKey,
        checked_at: i64,
        next_check_after: i64,
    ) -> AppResult<()> {
        self.restamp_on(self.db.conn(), key, checked_at, next_check_after)
            .await
    }

    /// [`Self::restamp`] on `conn` (a transaction fenced by a shard lease).
    pub async fn restamp_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        key: &ServerKey,
        checked_at: i64,
        next_check_after: i64,
    ) -> AppResult<()> {
        snapshots::Entity::update_many()
            .col_expr(snapshots::Column::CheckedAt, Expr::value(checked_at))
            .col_expr(
                snapshots::Column::NextCheckAfter,
                Expr::value(next_check_after),
            )
            .col_expr(
                snapshots::Column::Status,
                Expr::value(Freshness::Fresh.as_str()),
            )
            .col_expr(snapshots::Column::UpdatedAt, Expr::value(checked_at))
            .filter(snapshots::Column::TenantKey.eq(key.tenant_key.as_str()))
            .filter(snapshots::Column::ConnectorId.eq(key.connector_id.as_str()))
            .filter(snapshots::Column::GuildId.eq(snowflake::to_db(key.guild_id)))
            .exec(conn)
            .await?;
        Ok(())
    }

    /// Appends one over/under transition to the pause/resume history; returns its id.
    pub async fn append_event(&self, key: &ServerKey, t: &Transition<'_>) -> AppResult<i64> {
        self.append_event_on(self.db.conn(), key, t).await
    }

    /// [`Self::append_event`] on `conn` (a transaction fenced by a shard lease).
    pub async fn append_event_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        key: &ServerKey,
        t: &Transition<'_>,
    ) -> AppResult<i64> {
        let row = events::ActiveModel {
            tenant_key: Set(key.tenant_key.clone()),
            connector_id: Set(key.connector_id.clone()),
            guild_id: Set(snowflake::to_db(key.guild_id)),
            from_state: Set(t.from.to_owned()),
            to_state: Set(t.to.to_owned()),
            seats_used: Set(t.seats_used as i64),
            seat_limit: Set(t.seat_limit as i64),
            at: Set(t.at),
            cause: Set(t.cause.to_owned()),
            ..Default::default()
        }
        .insert(conn)
        .await?;
        Ok(row.id)
    }

    pub async fn events(&self, key: &ServerKey) -> AppResult<Vec<events::Model>> {
        Ok(events::Entity::find()
            .filter(events::Column::TenantKey.eq(key.tenant_key.as_str()))
            .filter(events::Column::ConnectorId.eq(key.connector_id.as_str()))
            .filter(events::Column::GuildId.eq(snowflake::to_db(key.guild_id)))
            .order_by_asc(events::Column::Id)
            .all(self.db.conn())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_error(last_error: Option<&str>) -> SnapshotView {
        SnapshotRecord {
            count: SeatCount::default(),
            seat_limit: 10,
            checked_at: 1,
            next_check_after: 2,
            status: Freshness::Expired,
            last_error: last_error.map(str::to_owned),
        }
        .view()
    }

    #[test]
    fn a_failed_audit_or_a_guild_the_bot_is_not_in_holds_the_gate() {
        assert!(with_error(Some("seat_audit_failed: discord_unavailable: 503")).audit_failed);
        assert!(with_error(Some("bot_not_in_guild: 404 code 10004: Unknown Guild")).audit_failed);
        assert!(!with_error(None).audit_failed);
        assert!(!with_error(Some("seat_check_pending")).audit_failed);
    }
}
