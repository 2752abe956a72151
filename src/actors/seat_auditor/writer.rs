//! The ordered writer: the auditor's snapshots, re-stamps, progress and pause/resume history
//! go to the database in the order the auditor decided them, from one task, so the actor
//! never waits on the database for a count. Owner notices go out from here too, after the
//! history row they announce.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::mpsc;

use super::registry::Progress;
use sea_orm::ConnectionTrait;

use crate::{
    discord::{
        port::{DiscordPort, OutgoingMessage},
        shards::{Fence, ShardStates},
    },
    domain::{audit::LimitState, server_key::ServerKey},
    error::{AppResult, ErrorCode},
    store::{
        now_ms,
        seat_audit::{SeatAuditStore, SnapshotRecord, Transition},
        shard_leases::ShardLeases,
    },
};

/// What the writer persists, in order.
pub(super) enum WriteOp {
    Snapshot {
        key: ServerKey,
        record: SnapshotRecord,
    },
    Restamp {
        key: ServerKey,
        checked_at: i64,
        next_check_after: i64,
    },
    /// The member list is still arriving: the snapshot says how far (and
    /// `seat_check_pending`), its count untouched.
    Counting {
        key: ServerKey,
        progress: Progress,
        seat_limit: u64,
    },
    Transition {
        key: ServerKey,
        from: LimitState,
        to: LimitState,
        seats: u64,
        limit: u64,
        cause: String,
        /// The channel to tell the owner in, when this transition is one to tell.
        notify: Option<u64>,
    },
}

impl WriteOp {
    fn key(&self) -> &ServerKey {
        match self {
            WriteOp::Snapshot { key, .. }
            | WriteOp::Restamp { key, .. }
            | WriteOp::Counting { key, .. }
            | WriteOp::Transition { key, .. } => key,
        }
    }
}

/// Where the writer stands among processes sharing shards: the shards it runs (their lease
/// epochs) and the name it holds them under.
pub(super) struct Fencing {
    pub shards: ShardStates,
    pub holder: String,
}

pub(super) async fn run_writer(
    store: SeatAuditStore,
    notifier: Option<Arc<dyn DiscordPort>>,
    fencing: Fencing,
    mut rx: mpsc::UnboundedReceiver<WriteOp>,
) {
    let leases = ShardLeases::new(store.db().clone());
    // When each server went over its limit, for the pause-to-resume histogram (in memory: a
    // pause that spans a restart is measured from the first count after the restart).
    let mut paused_at: HashMap<ServerKey, i64> = HashMap::new();
    while let Some(op) = rx.recv().await {
        let now = now_ms();
        let written = match fencing.shards.fence(op.key().guild_id) {
            Fence::Open => persist(&store, store.db().conn(), &op, now).await,
            Fence::NotHeld => {
                tracing::debug!(server = %op.key(), "[seat-audit] not written: another process runs the guild's shard");
                continue;
            }
            // The database refuses a write from a process that lost the shard's lease, even
            // one that does not know it yet.
            Fence::Lease { shard, epoch } => {
                match leases.begin_fenced(shard, &fencing.holder, epoch).await {
                    Ok(Some(txn)) => match persist(&store, &txn, &op, now).await {
                        Ok(event) => txn.commit().await.map(|_| event).map_err(Into::into),
                        Err(err) => Err(err),
                    },
                    Ok(None) => {
                        tracing::warn!(server = %op.key(), shard, epoch, "{}: the shard's lease was lost; the write is refused and its new holder counts the guild", ErrorCode::ShardLeaseLost);
                        continue;
                    }
                    Err(err) => Err(err),
                }
            }
        };
        let event_id = match written {
            Ok(event_id) => event_id,
            Err(err) => {
                tracing::warn!(error = %err, "[seat-audit] snapshot write failed; the next change or keep-alive writes again");
                continue;
            }
        };
        if let WriteOp::Transition {
            key,
            from,
            to,
            seats,
            limit,
            cause,
            notify,
        } = &op
        {
            match to {
                LimitState::Over => {
                    paused_at.entry(key.clone()).or_insert(now);
                }
                LimitState::Under => {
                    if let Some(since) = paused_at.remove(key) {
                        metrics::histogram!("seatgate_pause_to_resume_seconds")
                            .record((now - since).max(0) as f64 / 1000.0);
                    }
                }
                LimitState::Unknown => {}
            }
            tracing::info!(server = %key, from = from.as_str(), to = to.as_str(), seats, limit, cause = %cause, "[seat-audit] enforcement state changed");
            if let (Some(event_id), Some(port), Some(channel)) = (event_id, &notifier, notify) {
                notify_owner(port.as_ref(), *channel, *to, *seats, *limit, event_id).await;
            }
        }
    }
}

/// Writes one op on `conn`; a transition's history row id.
async fn persist<C: ConnectionTrait>(
    store: &SeatAuditStore,
    conn: &C,
    op: &WriteOp,
    now: i64,
) -> AppResult<Option<i64>> {
    match op {
        WriteOp::Snapshot { key, record } => {
            store.write_snapshot_on(conn, key, record, now).await?;
        }
        WriteOp::Restamp {
            key,
            checked_at,
            next_check_after,
        } => {
            store
                .restamp_on(conn, key, *checked_at, *next_check_after)
                .await?;
        }
        WriteOp::Counting {
            key,
            progress,
            seat_limit,
        } => {
            store
                .write_counting_on(
                    conn,
                    key,
                    progress.members,
                    progress.member_count,
                    *seat_limit,
                    now,
                )
                .await?;
        }
        WriteOp::Transition {
            key,
            from,
            to,
            seats,
            limit,
            cause,
            ..
        } => {
            let t = Transition {
                from: from.as_str(),
                to: to.as_str(),
                seats_used: *seats,
                seat_limit: *limit,
                at: now,
                cause,
            };
            return Ok(Some(store.append_event_on(conn, key, &t).await?));
        }
    }
    Ok(None)
}

/// The notice's nonce comes from the history row it announces: the same transition posted
/// twice (a retry, a second process) is one message on Discord, and two transitions are two.
fn notice_nonce(event_id: i64) -> String {
    format!("sgn{event_id}")
}

async fn notify_owner(
    port: &dyn DiscordPort,
    channel: u64,
    to: LimitState,
    seats: u64,
    limit: u64,
    event_id: i64,
) {
    let content = match to {
        LimitState::Over => format!(
            "Mirroring into this server is paused: {seats} members can see the mirrored channels, the licence covers {limit}. Remove access for {} member(s), or raise the licence, and mirroring resumes by itself.",
            seats.saturating_sub(limit)
        ),
        LimitState::Under => format!("Mirroring into this server has resumed: {seats} of {limit} seats in use."),
        LimitState::Unknown => return,
    };
    let message = OutgoingMessage {
        content,
        ..Default::default()
    };
    if let Err(err) = port
        .create_message(channel, &message, &notice_nonce(event_id))
        .await
    {
        tracing::warn!(channel, error = %err, "[seat-audit] could not post the owner notice");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_nonces_are_per_transition_and_fit_discords_25_characters() {
        assert_ne!(notice_nonce(1), notice_nonce(2));
        assert_eq!(notice_nonce(7), notice_nonce(7));
        assert!(notice_nonce(i64::MAX).len() <= 25);
    }
}
