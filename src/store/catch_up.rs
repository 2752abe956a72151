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
//! Then the messages already known (from `now - max_age`, or the mappings' creation, up to
//! the bound) are read again, at most `max_pages` more, to find what changed in the gap: a
//! mirrored message whose text, embeds or files differ from what was last mirrored of it
//! gets an edit; a mirrored (or still pending) message missing from the history was deleted
//! and gets a delete. A message whose last job was recorded after `session_start - margin`
//! is the live path's: re-read content may be older than what it recorded.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use async_trait::async_trait;
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect};

use entities::{connector_mappings, mirror_jobs, mirror_message_links};

use super::{
    mirror::{decode, MirrorStore, SourceEvent, CANCELLED},
    queue::{PENDING, PROCESSING},
};
use crate::{
    domain::{mirror::MirrorPayload, shards::Shard, snowflake},
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
    /// Only source channels of guilds this shard carries (a READY is one shard's session).
    pub shard: Shard,
}

impl Default for CatchUpConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(60 * 60),
            max_pages: 10,
            margin: Duration::from_secs(5),
            shard: Shard::ONLY,
        }
    }
}

/// A message as fetched from a source channel's history.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedMessage {
    pub id: u64,
    pub author_id: u64,
    /// The webhook that posted it, if one did.
    pub webhook_id: Option<u64>,
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
    /// The source guild the mappings' connectors read (the channel must be in it).
    pub guild_id: u64,
    pub channel_id: u64,
    pub after: u64,
    /// (mapping id, bound): messages at or below the bound are not for that mapping.
    pub mappings: Vec<(i64, u64)>,
    /// Messages in `(review_from, after]` are read again for edits and deletes made in the
    /// gap (empty when `review_from >= after`).
    pub review_from: u64,
    /// Jobs recorded from this time (epoch ms) on are the live path's.
    pub live_from: i64,
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
    /// Known messages read again to find edits and deletes made in the gap.
    pub reviewed: u32,
    /// Edit jobs written for mirrored messages changed in the gap (one per mapping).
    pub edits: u32,
    /// Delete jobs written (or pending sends cancelled) for messages deleted in the gap.
    pub deletes: u32,
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
    // Live connectors' source guilds: a mapping is caught up in its connector's guild.
    let guilds: HashMap<(String, String), i64> = entities::connectors::Entity::find()
        .filter(entities::connectors::Column::Enabled.eq(true))
        .filter(entities::connectors::Column::DeletedAt.is_null())
        .all(conn)
        .await?
        .into_iter()
        .map(|c| ((c.tenant_key, c.connector_id), c.source_guild_id))
        .collect();
    let enabled: Vec<(i64, connector_mappings::Model)> = connector_mappings::Entity::find()
        .filter(connector_mappings::Column::Enabled.eq(true))
        .filter(connector_mappings::Column::BrokenCode.is_null())
        .filter(connector_mappings::Column::DeletedAt.is_null())
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|m| {
            let guild = *guilds.get(&(m.tenant_key.clone(), m.connector_id.clone()))?;
            Some((guild, m))
        })
        .collect();
    let mut channels: Vec<(i64, i64)> = enabled
        .iter()
        .filter(|(g, _)| config.shard.carries(snowflake::from_db(*g)))
        .map(|(g, m)| (*g, m.source_channel_id))
        .collect();
    channels.sort_unstable();
    channels.dedup();
    let floor_ms = now.saturating_sub(config.max_age.as_millis() as i64);
    let cut = session_start.saturating_sub(config.margin.as_millis() as i64);
    let mut plans = Vec::new();
    for (guild, channel) in channels {
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
        let floors: Vec<(i64, u64)> = enabled
            .iter()
            .filter(|(g, m)| *g == guild && m.source_channel_id == channel)
            .map(|(_, m)| m)
            .map(|m| (m.id, snowflake::at_ms(floor_ms.max(m.created_at))))
            .collect();
        let mappings: Vec<(i64, u64)> = floors
            .iter()
            .map(|(id, floor)| (*id, known.map_or(*floor, |k| k.max(*floor))))
            .collect();
        let (Some(after), Some(review_from)) = (
            mappings.iter().map(|(_, b)| *b).min(),
            floors.iter().map(|(_, f)| *f).min(),
        ) else {
            continue;
        };
        plans.push(ChannelPlan {
            guild_id: snowflake::from_db(guild),
            channel_id: snowflake::from_db(channel),
            after,
            mappings,
            review_from,
            live_from: cut,
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
        let caught_up = channel(
            store,
            history,
            own_user,
            &plan,
            &now,
            config,
            on_enqueued,
            &mut report,
        )
        .await;
        let reviewed = match caught_up {
            Ok(()) => review(store, history, &plan, &now, config, &mut report).await,
            Err(err) => Err(err),
        };
        if report.edits + report.deletes > before.edits + before.deletes {
            on_enqueued();
        }
        match reviewed {
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
                reviewed = report.reviewed - before.reviewed,
                edits = report.edits - before.edits,
                deletes = report.deletes - before.deletes,
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
            if m.author_id == own_user || m.webhook_id.is_some_and(|w| store.is_own_webhook(w)) {
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
                guild_id: plan.guild_id,
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

/// Reads the known messages of `plan`'s channel again (`review_from` to `after`, at most
/// `max_pages` pages) and records the edits and deletes made to them in the gap.
async fn review(
    store: &MirrorStore,
    history: &dyn MessageHistory,
    plan: &ChannelPlan,
    now: &impl Fn() -> i64,
    config: &CatchUpConfig,
    report: &mut CatchUpReport,
) -> AppResult<()> {
    let mut after = plan.review_from;
    for _ in 0..config.max_pages {
        if after >= plan.after {
            return Ok(());
        }
        let mut messages = history
            .messages_after(plan.channel_id, after, PAGE_SIZE)
            .await?;
        messages.retain(|m| m.id > after);
        messages.sort_by_key(|m| m.id);
        let full = messages.len() >= PAGE_SIZE as usize;
        // Every message in (after, covered] has been read: a known one not among them was
        // deleted.
        let covered = match messages.last() {
            Some(last) if full && last.id < plan.after => last.id,
            _ => plan.after,
        };
        messages.retain(|m| m.id <= plan.after);
        report.reviewed += messages.len() as u32;
        let known = KnownMessages::read(store, plan, after, covered).await?;
        for m in &messages {
            let changed: Vec<i64> = known
                .last_mirrored
                .get(&m.id)
                .into_iter()
                .flatten()
                .filter(|(_, mirrored)| !m.payload.shows_same(mirrored))
                .map(|(mapping, _)| *mapping)
                .collect();
            if changed.is_empty() {
                continue;
            }
            let event = SourceEvent::Updated {
                guild_id: plan.guild_id,
                channel_id: plan.channel_id,
                message_id: m.id,
                payload: m.payload.clone(),
            };
            store.ingest_for(&event, now(), Some(&changed)).await?;
            tracing::info!(
                channel = plan.channel_id,
                message_id = m.id,
                mappings = changed.len(),
                "[mirror] catch-up: a message edited in the gap is edited on its targets"
            );
            report.edits += changed.len() as u32;
        }
        let present: HashSet<u64> = messages.iter().map(|m| m.id).collect();
        let mut gone: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
        for (mapping, id) in &known.delivered_or_pending {
            if !present.contains(id) {
                gone.entry(*id).or_default().push(*mapping);
            }
        }
        for (id, mappings) in gone {
            let event = SourceEvent::Deleted {
                guild_id: plan.guild_id,
                channel_id: plan.channel_id,
                message_id: id,
            };
            // Per mapping: its pending send is cancelled, or a delete is queued.
            store.ingest_for(&event, now(), Some(&mappings)).await?;
            tracing::info!(
                channel = plan.channel_id,
                message_id = id,
                mappings = mappings.len(),
                "[mirror] catch-up: a message deleted in the gap is deleted on its targets"
            );
            report.deletes += mappings.len() as u32;
        }
        after = covered;
    }
    Ok(())
}

/// What is recorded of a channel's source messages in `(after, through]`, for the plan's
/// mappings, leaving out what the live path is handling.
struct KnownMessages {
    /// message -> (mapping, the payload last mirrored, or to be mirrored, there) for each
    /// mapping it was delivered to or is pending for.
    last_mirrored: HashMap<u64, Vec<(i64, MirrorPayload)>>,
    /// (mapping, message) delivered (linked) or with a send still pending, and no delete
    /// under way.
    delivered_or_pending: Vec<(i64, u64)>,
}

impl KnownMessages {
    async fn read(
        store: &MirrorStore,
        plan: &ChannelPlan,
        after: u64,
        through: u64,
    ) -> AppResult<Self> {
        let conn = store.db().conn();
        let mapping_ids: Vec<i64> = plan.mappings.iter().map(|(id, _)| *id).collect();
        let (low, high) = (snowflake::to_db(after), snowflake::to_db(through));
        let jobs = mirror_jobs::Entity::find()
            .filter(mirror_jobs::Column::MappingId.is_in(mapping_ids.clone()))
            .filter(mirror_jobs::Column::SourceMessageId.gt(low))
            .filter(mirror_jobs::Column::SourceMessageId.lte(high))
            .filter(mirror_jobs::Column::Status.ne(CANCELLED))
            .order_by_asc(mirror_jobs::Column::Id)
            .all(conn)
            .await?;
        let linked: HashSet<(i64, u64)> = mirror_message_links::Entity::find()
            .select_only()
            .column(mirror_message_links::Column::MappingId)
            .column(mirror_message_links::Column::SourceMessageId)
            .filter(mirror_message_links::Column::MappingId.is_in(mapping_ids))
            .filter(mirror_message_links::Column::SourceMessageId.gt(low))
            .filter(mirror_message_links::Column::SourceMessageId.lte(high))
            .into_model::<Pair>()
            .all(conn)
            .await?
            .into_iter()
            .map(|p| (p.mapping_id, snowflake::from_db(p.source_message_id)))
            .collect();
        // Per pair, from its jobs in order: the last payload, whether a send is live, whether
        // a delete is live, and whether the live path touched it.
        #[derive(Default)]
        struct Seen {
            payload: Option<String>,
            send_live: bool,
            delete_live: bool,
            live_path: bool,
        }
        let mut seen: HashMap<(i64, u64), Seen> = HashMap::new();
        for job in &jobs {
            let pair = (job.mapping_id, snowflake::from_db(job.source_message_id));
            let s = seen.entry(pair).or_default();
            let live = job.status == PENDING || job.status == PROCESSING;
            s.live_path |= job.created_at >= plan.live_from;
            match job.kind.as_str() {
                "send" | "edit" => {
                    s.payload = Some(job.payload.clone());
                    s.send_live |= job.kind == "send" && live;
                }
                _ => s.delete_live |= live,
            }
        }
        let mut known = KnownMessages {
            last_mirrored: HashMap::new(),
            delivered_or_pending: Vec::new(),
        };
        for (pair, s) in seen {
            let delivered = linked.contains(&pair);
            if s.live_path || s.delete_live || !(delivered || s.send_live) {
                continue;
            }
            known.delivered_or_pending.push(pair);
            if let Some(payload) = s.payload.as_deref().and_then(|p| decode(p).ok()) {
                known
                    .last_mirrored
                    .entry(pair.1)
                    .or_default()
                    .push((pair.0, payload));
            }
        }
        Ok(known)
    }
}
