//! What the seat auditor receives: guild changes from gateway ingest (in gateway order),
//! audit requests, questions from the admin API, and its audit worker's reports.

use actix::prelude::*;

use crate::{
    domain::{
        seats::{GuildEvent, GuildIndex, GuildSnapshot, TierRoles},
        server_key::ServerKey,
        snowflake,
    },
    error::AppResult,
    store::{
        now_ms,
        queue::{AuditQueue, EnqueueOptions, Enqueued},
    },
};

/// A change in a target guild or in the gateway session. Gateway ingest sends them in the
/// order Discord sent them (see `gateway_ingest`), so the auditor applies them in that order.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum GuildChange {
    /// GUILD_CREATE: the guild as it arrived. A guild over `large_threshold` lists fewer
    /// than its `member_count` members: its count waits for the member list.
    GuildAvailable {
        guild: Box<GuildSnapshot>,
        member_count: u64,
    },
    /// GUILD_DELETE with `unavailable`: an outage. The last count stands and ages.
    GuildUnavailable { guild_id: u64 },
    /// GUILD_DELETE: the bot was removed from the guild.
    GuildDeleted { guild_id: u64 },
    /// A member, role, channel, thread or owner change.
    Event { guild_id: u64, event: GuildEvent },
    /// READY on `shard`. `resumed_gap` is true for every session of that shard after its
    /// first: events of the gap were lost, so every guild the shard carries is recounted.
    SessionStarted {
        shard: crate::domain::shards::Shard,
        resumed_gap: bool,
    },
    /// This process stopped running `shard` (another process holds its lease now): the counts
    /// of its guilds stand and age here.
    ShardReleased { shard: crate::domain::shards::Shard },
    /// The ordered stream started after this guild's GUILD_CREATE went by: what happened in
    /// between is unknown, so the guild is recounted.
    OrderLost { guild_id: u64 },
    /// Whether every shard is connected (RESUME replays what a short disconnect missed; the
    /// counts are not vouched for while it lasts).
    Gateway { connected: bool },
}

impl GuildChange {
    pub fn event(guild_id: u64, event: GuildEvent) -> Self {
        GuildChange::Event { guild_id, event }
    }
}

/// Why a recount was asked for (stored on the audit job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditReason {
    AdminRefresh,
    ConfigChanged,
    SnapshotMissing,
    Reconcile,
    Resync,
    /// A server without a complete count, looked at again at its `next_check_after`.
    Recheck,
    /// The previous audit failed for good; tried again at its `next_check_after`.
    RetryFailed,
}

impl AuditReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditReason::AdminRefresh => "admin_refresh",
            AuditReason::ConfigChanged => "config_changed",
            AuditReason::SnapshotMissing => "snapshot_missing",
            AuditReason::Reconcile => "reconcile",
            AuditReason::Resync => "resync",
            AuditReason::Recheck => "recheck",
            AuditReason::RetryFailed => "retry_failed",
        }
    }
}

/// Asks for a server's seats to be recounted; answers with the (possibly deduplicated) job.
/// A `ConfigChanged` request also reloads the server configs and mappings first.
#[derive(Message, Debug, Clone)]
#[rtype(result = "AppResult<Enqueued>")]
pub struct AuditRequested {
    pub key: ServerKey,
    pub reason: AuditReason,
}

/// The counted members of a server, for the admin page.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<Vec<u64>>")]
pub struct CountedMembers(pub ServerKey);

/// One page of a server's counted members with their tier masks (bit 0 basic, bit 1
/// advanced, bit 2 pro), ascending by user id, starting after `after`. `None` when the
/// auditor holds no index for the server (not configured here yet, or the guild not received
/// from Discord or recounted yet).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<SeatPage>")]
pub struct CountedSeats {
    pub key: ServerKey,
    pub after: Option<u64>,
    pub limit: usize,
    /// Only these members (ascending), where counted: a search's matches.
    pub only: Option<Vec<u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeatPage {
    /// Counted members in all, not only on this page.
    pub total: usize,
    /// The index holds every member and follows the gateway (false while a large guild's
    /// member list is still being paged, or after a lost connection until the recount).
    pub complete: bool,
    pub items: Vec<(u64, u8)>,
    /// Per item: the mapped channels the member sees and why (empty when the index keeps
    /// no member entries).
    pub reasons: Vec<Vec<(u64, crate::domain::permissions::Sight)>>,
    /// Every counted member by (mapped channel, reason): how many.
    pub summary: Vec<(u64, crate::domain::permissions::Sight, u64)>,
    /// More members follow the last item of this page.
    pub more: bool,
    /// With `only`: how many of them are counted.
    pub matched: Option<usize>,
}

/// Dedupe key of a server's audit job: one pending audit per server (claim frees it).
pub fn audit_dedupe_key(key: &ServerKey) -> String {
    format!(
        "audit:{}:{}:{}",
        key.tenant_key, key.connector_id, key.guild_id
    )
}

/// Enqueues an audit for `key`, deduplicated per server, due now.
pub async fn enqueue_audit(
    queue: &AuditQueue,
    key: &ServerKey,
    reason: AuditReason,
) -> AppResult<Enqueued> {
    enqueue_audit_at(queue, key, reason, now_ms()).await
}

/// Enqueues an audit for `key`, deduplicated per server, due at `run_after`.
pub async fn enqueue_audit_at(
    queue: &AuditQueue,
    key: &ServerKey,
    reason: AuditReason,
    run_after: i64,
) -> AppResult<Enqueued> {
    queue
        .enqueue(
            queue.database().conn(),
            &[
                ("tenant_key", key.tenant_key.clone().into()),
                ("connector_id", key.connector_id.clone().into()),
                ("guild_id", snowflake::to_db(key.guild_id).into()),
                ("reason", reason.as_str().into()),
            ],
            EnqueueOptions {
                dedupe_key: Some(audit_dedupe_key(key)),
                run_after,
                max_attempts: None,
            },
            now_ms(),
        )
        .await
}

/// From the audit worker: a recount of `key` (job `job_id`) is about to read Discord. The
/// auditor keeps every event of the guild from now on, to apply on top of what it reads.
/// Answers what to build the index for, or `None` when the server is not configured.
#[derive(Message)]
#[rtype(result = "Option<RecountPlan>")]
pub(super) struct RecountStarting {
    pub key: ServerKey,
    pub job_id: i64,
}

#[derive(Debug, Clone)]
pub(super) struct RecountPlan {
    pub mapped_channels: Vec<u64>,
    pub tiers: TierRoles,
    /// Discord's member count when known (GUILD_CREATE), for the progress shown meanwhile.
    pub member_count: Option<u64>,
}

/// From the audit worker: how far the member list has got.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RecountProgress {
    pub key: ServerKey,
    pub job_id: i64,
    pub members: u64,
    pub member_count: Option<u64>,
}

/// From the audit worker: the index built from Discord's member list (off the actor's
/// thread). Answers whether it was applied.
#[derive(Message)]
#[rtype(result = "bool")]
pub(super) struct RecountDone {
    pub key: ServerKey,
    pub job_id: i64,
    pub index: Box<GuildIndex>,
}

/// From the audit worker: an attempt failed; `for_good` when no retry is left.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RecountFailed {
    pub key: ServerKey,
    pub job_id: i64,
    pub cause: String,
    pub for_good: bool,
}
