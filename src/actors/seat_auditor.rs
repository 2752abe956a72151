//! Seat auditor: owns one live seat-engine index per configured server's guild, applies
//! guild changes from the gateway, runs the durable audit queue and writes snapshots.
//!
//! Not yet: the live index and the audit worker arrive with the auditor issue. Until then
//! guild changes are counted and audit requests are queued durably (deduplicated per
//! server) for the worker that will run them.

use actix::prelude::*;

use super::{ServerKey, Shutdown};
use crate::{
    error::AppResult,
    store::{
        now_ms,
        queue::{AuditQueue, EnqueueOptions, Enqueued},
    },
};

/// A change in a target guild that may move its seat count.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum GuildChange {
    MemberUpserted {
        guild_id: u64,
        user_id: u64,
        roles: Vec<u64>,
        bot: bool,
    },
    MemberRemoved {
        guild_id: u64,
        user_id: u64,
    },
    RoleUpserted {
        guild_id: u64,
        role_id: u64,
        permissions: u64,
    },
    RoleDeleted {
        guild_id: u64,
        role_id: u64,
    },
    ChannelChanged {
        guild_id: u64,
        channel_id: u64,
    },
    ChannelDeleted {
        guild_id: u64,
        channel_id: u64,
    },
    GuildAvailable {
        guild_id: u64,
    },
    GuildUnavailable {
        guild_id: u64,
    },
    GuildDeleted {
        guild_id: u64,
    },
    ShardConnected,
    ShardDisconnected,
    ShardResumed,
}

/// Why a recount was asked for (stored on the audit job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditReason {
    AdminRefresh,
    ConfigChanged,
    SnapshotMissing,
    Reconcile,
    Resync,
}

impl AuditReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditReason::AdminRefresh => "admin_refresh",
            AuditReason::ConfigChanged => "config_changed",
            AuditReason::SnapshotMissing => "snapshot_missing",
            AuditReason::Reconcile => "reconcile",
            AuditReason::Resync => "resync",
        }
    }
}

/// Asks for a server's seats to be recounted; answers with the (possibly deduplicated) job.
#[derive(Message, Debug, Clone)]
#[rtype(result = "AppResult<Enqueued>")]
pub struct AuditRequested {
    pub key: ServerKey,
    pub reason: AuditReason,
}

pub struct SeatAuditor {
    queue: AuditQueue,
    worker_id: String,
    changes_seen: u64,
}

impl SeatAuditor {
    pub fn new(queue: AuditQueue, worker_id: String) -> Self {
        Self {
            queue,
            worker_id,
            changes_seen: 0,
        }
    }
}

/// Dedupe key of a server's audit job: one pending or processing audit per server.
pub fn audit_dedupe_key(key: &ServerKey) -> String {
    format!(
        "audit:{}:{}:{}",
        key.tenant_key, key.connector_id, key.guild_id
    )
}

/// Enqueues an audit for `key`, deduplicated per server.
pub async fn enqueue_audit(
    queue: &AuditQueue,
    key: &ServerKey,
    reason: AuditReason,
) -> AppResult<Enqueued> {
    let now = now_ms();
    queue
        .enqueue(
            queue.database().conn(),
            &[
                ("tenant_key", key.tenant_key.clone().into()),
                ("connector_id", key.connector_id.clone().into()),
                (
                    "guild_id",
                    crate::domain::snowflake::to_db(key.guild_id).into(),
                ),
                ("reason", reason.as_str().into()),
            ],
            EnqueueOptions {
                dedupe_key: Some(audit_dedupe_key(key)),
                run_after: now,
                max_attempts: None,
            },
            now,
        )
        .await
}

impl Actor for SeatAuditor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        tracing::info!(
            worker = %self.worker_id,
            "[seat-audit] auditor started; not yet counting (built by the auditor issue)"
        );
    }
}

impl Handler<GuildChange> for SeatAuditor {
    type Result = ();
    fn handle(&mut self, change: GuildChange, _: &mut Self::Context) {
        self.changes_seen += 1;
        tracing::debug!(?change, "[seat-audit] guild change");
    }
}

impl Handler<AuditRequested> for SeatAuditor {
    type Result = ResponseFuture<AppResult<Enqueued>>;
    fn handle(&mut self, msg: AuditRequested, _: &mut Self::Context) -> Self::Result {
        let queue = self.queue.clone();
        Box::pin(async move {
            let enqueued = enqueue_audit(&queue, &msg.key, msg.reason).await?;
            tracing::info!(server = %msg.key, reason = msg.reason.as_str(), job = enqueued.id, deduped = enqueued.deduped, "[seat-audit] audit requested");
            Ok(enqueued)
        })
    }
}

impl Handler<Shutdown> for SeatAuditor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let queue = self.queue.clone();
        let worker = self.worker_id.clone();
        Box::pin(
            async move {
                match queue.release_worker(&worker, now_ms()).await {
                    Ok(n) => tracing::info!(released = n, "[seat-audit] leases released"),
                    Err(err) => {
                        tracing::warn!(error = %err, "[seat-audit] could not release leases")
                    }
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
