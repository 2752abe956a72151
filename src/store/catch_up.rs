//! Catch-up: after a gateway session starts (at start, or after a gap that could not be
//! resumed), fetch each source channel's messages after the last one mirrored and enqueue the
//! ones no mapping has a send for.
//!
//! Per mapping, the lower bound is the newest source message of its channel already known (a
//! mirror job of any state or a link, of any mapping of that channel), but never older than
//! `now - max_age` (jobs older than that expire anyway) nor than the mapping's creation. Only
//! what was recorded at least `margin` before the session started counts: the new session's
//! live events may be recorded before catch-up reads the bound, and a message seen live right
//! after the READY must not hide the older ones lost in the gap. Both times are this host's
//! clock (no comparison with Discord's); what the margin re-fetches is deduplicated.
//!
//! Pages go forward from the lowest bound of a channel (`after`, 100 per page), at most
//! `max_pages` per channel per catch-up; a longer backlog is cut, and logged.
//!
//! Not recovered: deletes made during a gap (a deleted message is simply absent from the
//! history, indistinguishable from one never posted, so its mirrored copy stays); edits of
//! messages already mirrored before the gap (they are older than the bound and not fetched;
//! an edited message that is fetched is sent with its current content).

use std::{collections::HashSet, time::Duration};

use async_trait::async_trait;
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect};

use entities::{connector_mappings, mirror_jobs, mirror_message_links};

use super::mirror::{MirrorStore, SourceEvent};
use crate::{
    domain::{mirror::MirrorPayload, snowflake},
    error::AppResult,
};

/// Discord's page size limit for `GET /channels/{id}/messages`.
pub const PAGE_SIZE: u8 = 100;

#[derive(Debug, Clone, Copy)]
pub struct CatchUpConfig {
    /// The mirror gate's maximum job age: nothing older is fetched.
    pub max_age: Duration,
    /// Pages of [`PAGE_SIZE`] fetched per channel per catch-up, at most.
    pub max_pages: u32,
    /// Jobs and links recorded after `session_start - margin` do not raise the bound. Covers
    /// how late the READY handler may run after the new session's first events are recorded.
    pub margin: Duration,
}

impl Default for CatchUpConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(60 * 60),
            max_pages: 10,
            margin: Duration::from_secs(5),
        }
    }
}

/// A message as fetched from a source channel's history.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedMessage {
    pub id: u64,
    pub author_id: u64,
    pub payload: MirrorPayload,
}

/// Reads a channel's history: up to `limit` messages with ids above `after`, in any order
/// (Discord answers newest first).
#[async_trait]
pub trait MessageHistory: Send + Sync {
    async fn messages_after(
        &self,
        channel_id: u64,
        after: u64,
        limit: u8,
    ) -> AppResult<Vec<FetchedMessage>>;
}

/// What one source channel needs: fetch after `after`; a message goes to each mapping whose
/// bound it is above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlan {
    pub channel_id: u64,
    pub after: u64,
    /// (mapping id, bound): messages at or below the bound are not for that mapping.
    pub mappings: Vec<(i64, u64)>,
}

/// Counts for the `[mirror] catch-up` log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUpReport {
    pub channels: u32,
    pub pages: u32,
    pub fetched: u32,
    /// Send jobs written.
    pub enqueued: u32,
    /// Fetched messages every eligible mapping already had (a job or a link).
    pub known: u32,
    /// Sends the live path wrote between the check and the write (raced, not duplicated).
    pub raced: u32,
    /// Our own bot's messages, skipped as the live path skips them.
    pub own: u32,
    /// Channels whose backlog was longer than `max_pages` pages.
    pub truncated: u32,
    /// Channels skipped for a Discord or database error.
    pub failed: u32,
}

#[derive(Debug, FromQueryResult)]
struct Newest {
    newest: Option<i64>,
}

#[derive(Debug, FromQueryResult)]
struct Pair {
    mapping_id: i64,
    source_message_id: i64,
}

/// The plan per source channel of the enabled, unbroken mappings.
pub async fn plan(
    store: &MirrorStore,
    now: i64,
    session_start: i64,
    config: &CatchUpConfig,
) -> AppResult<Vec<ChannelPlan>> {
    let conn = store.db().conn();
    let enabled = connector_mappings::Entity::find()
        .filter(connector_mappings::Column::Enabled.eq(true))
        .filter(connector_mappings::Column::BrokenCode.is_null())
        .all(conn)
        .await?;
    let mut channels: Vec<i64> = enabled.iter().map(|m| m.source_channel_id).collect();
    channels.sort_unstable();
    channels.dedup();
    let floor_ms = now.saturating_sub(config.max_age.as_millis() as i64);
    let cut = session_start.saturating_sub(config.margin.as_millis() as i64);
    let mut plans = Vec::new();
    for channel in channels {
        // Links are per mapping: every mapping of this source, enabled or not.
        let all_ids: Vec<i64> = connector_mappings::Entity::find()
            .filter(connector_mappings::Column::SourceChannelId.eq(channel))
            .all(conn)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        let from_jobs = mirror_jobs::Entity::find()
            .select_only()
            .column_as(mirror_jobs::Column::SourceMessageId.max(), "newest")
            .filter(mirror_jobs::Column::SourceChannelId.eq(channel))
            .filter(mirror_jobs::Column::CreatedAt.lt(cut))
            .into_model::<Newest>()
            .one(conn)
            .await?
            .and_then(|n| n.newest);
        let from_links = mirror_message_links::Entity::find()
            .select_only()
            .column_as(
                mirror_message_links::Column::SourceMessageId.max(),
                "newest",
            )
            .filter(mirror_message_links::Column::MappingId.is_in(all_ids))
            .filter(mirror_message_links::Column::CreatedAt.lt(cut))
            .into_model::<Newest>()
            .one(conn)
            .await?
            .and_then(|n| n.newest);
        let known = from_jobs.max(from_links).map(snowflake::from_db);
        let mappings: Vec<(i64, u64)> = enabled
            .iter()
            .filter(|m| m.source_channel_id == channel)
            .map(|m| {
                let floor = snowflake::at_ms(floor_ms.max(m.created_at));
                (m.id, known.map_or(floor, |k| k.max(floor)))
            })
            .collect();
        let Some(after) = mappings.iter().map(|(_, b)| *b).min() else {
            continue;
        };
        plans.push(ChannelPlan {
            channel_id: snowflake::from_db(channel),
            after,
            mappings,
        });
    }
    Ok(plans)
}

/// The (mapping, message) pairs among these that already have a send job (any state) or a
/// link.
async fn known_pairs(
    store: &MirrorStore,
    mapping_ids: &[i64],
    message_ids: &[u64],
) -> AppResult<HashSet<(i64, u64)>> {
    let conn = store.db().conn();
    let ids: Vec<i64> = message_ids.iter().map(|id| snowflake::to_db(*id)).collect();
    let mut out = HashSet::new();
    let jobs = mirror_jobs::Entity::find()
        .select_only()
        .column(mirror_jobs::Column::MappingId)
        .column(mirror_jobs::Column::SourceMessageId)
        .filter(mirror_jobs::Column::MappingId.is_in(mapping_ids.to_vec()))
        .filter(mirror_jobs::Column::SourceMessageId.is_in(ids.clone()))
        .filter(mirror_jobs::Column::Kind.eq("send"))
        .into_model::<Pair>()
        .all(conn)
        .await?;
    let links = mirror_message_links::Entity::find()
        .select_only()
        .column(mirror_message_links::Column::MappingId)
        .column(mirror_message_links::Column::SourceMessageId)
        .filter(mirror_message_links::Column::MappingId.is_in(mapping_ids.to_vec()))
        .filter(mirror_message_links::Column::SourceMessageId.is_in(ids))
        .into_model::<Pair>()
        .all(conn)
        .await?;
    for p in jobs.into_iter().chain(links) {
        out.insert((p.mapping_id, snowflake::from_db(p.source_message_id)));
    }
    Ok(out)
}

/// Runs one catch-up over every source channel. `own_user` is the bot's user id: its messages
/// are skipped, as the live path skips them. `on_enqueued` is called after each page that
/// enqueued something (to wake the gate early). Errors are logged per channel; the other
/// channels go on.
pub async fn run(
    store: &MirrorStore,
    history: &dyn MessageHistory,
    own_user: u64,
    session_start: i64,
    now: impl Fn() -> i64,
    config: &CatchUpConfig,
    on_enqueued: &(dyn Fn() + Send + Sync),
) -> CatchUpReport {
    let mut report = CatchUpReport::default();
    let plans = match plan(store, now(), session_start, config).await {
        Ok(plans) => plans,
        Err(err) => {
            tracing::error!(error = %err, "[mirror] catch-up: cannot read the mappings; the next session retries");
            report.failed += 1;
            return report;
        }
    };
    for plan in plans {
        report.channels += 1;
        let before = report;
        match channel(
            store,
            history,
            own_user,
            &plan,
            &now,
            config,
            on_enqueued,
            &mut report,
        )
        .await
        {
            Ok(()) => tracing::info!(
                channel = plan.channel_id,
                after = plan.after,
                mappings = plan.mappings.len(),
                pages = report.pages - before.pages,
                fetched = report.fetched - before.fetched,
                enqueued = report.enqueued - before.enqueued,
                known = report.known - before.known,
                raced = report.raced - before.raced,
                own = report.own - before.own,
                truncated = report.truncated > before.truncated,
                "[mirror] catch-up: channel done"
            ),
            Err(err) => {
                report.failed += 1;
                tracing::warn!(
                    channel = plan.channel_id,
                    error = %err,
                    enqueued = report.enqueued - before.enqueued,
                    "[mirror] catch-up: channel stopped; the next session retries"
                );
            }
        }
    }
    report
}

#[allow(clippy::too_many_arguments)]
async fn channel(
    store: &MirrorStore,
    history: &dyn MessageHistory,
    own_user: u64,
    plan: &ChannelPlan,
    now: &impl Fn() -> i64,
    config: &CatchUpConfig,
    on_enqueued: &(dyn Fn() + Send + Sync),
    report: &mut CatchUpReport,
) -> AppResult<()> {
    let mapping_ids: Vec<i64> = plan.mappings.iter().map(|(id, _)| *id).collect();
    let mut after = plan.after;
    for page in 0..config.max_pages {
        let mut messages = history
            .messages_after(plan.channel_id, after, PAGE_SIZE)
            .await?;
        report.pages += 1;
        messages.retain(|m| m.id > after);
        if messages.is_empty() {
            return Ok(());
        }
        messages.sort_by_key(|m| m.id);
        report.fetched += messages.len() as u32;
        let full = messages.len() >= PAGE_SIZE as usize;
        after = messages.last().map_or(after, |m| m.id);
        let ids: Vec<u64> = messages.iter().map(|m| m.id).collect();
        let known = known_pairs(store, &mapping_ids, &ids).await?;
        let mut enqueued_here = 0;
        for m in messages {
            if m.author_id == own_user {
                report.own += 1;
                continue;
            }
            let missing: Vec<i64> = plan
                .mappings
                .iter()
                .filter(|(id, bound)| m.id > *bound && !known.contains(&(*id, m.id)))
                .map(|(id, _)| *id)
                .collect();
            if missing.is_empty() {
                report.known += 1;
                continue;
            }
            let event = SourceEvent::Created {
                channel_id: plan.channel_id,
                message_id: m.id,
                payload: m.payload,
            };
            let outcome = store.ingest_for(&event, now(), Some(&missing)).await?;
            if outcome.enqueued > 0 {
                tracing::info!(
                    channel = plan.channel_id,
                    message_id = m.id,
                    mappings = outcome.enqueued,
                    "[mirror] catch-up: enqueued a message not recorded from the gateway"
                );
            }
            report.enqueued += outcome.enqueued;
            report.raced += outcome.duplicates;
            enqueued_here += outcome.enqueued;
        }
        if enqueued_here > 0 {
            on_enqueued();
        }
        if !full {
            return Ok(());
        }
        if page + 1 == config.max_pages {
            report.truncated += 1;
            tracing::warn!(
                channel = plan.channel_id,
                pages = config.max_pages,
                last = after,
                "[mirror] catch-up: backlog longer than the page bound; newer messages are not caught up"
            );
        }
    }
    Ok(())
}
