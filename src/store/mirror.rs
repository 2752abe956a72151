//! Mirroring's tables: source messages become mirror jobs (one per enabled mapping, in one
//! transaction, coalesced per message and target), and delivered messages are linked to
//! their source for later edits and deletes.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, Statement,
};

use entities::{connector_mappings, mirror_jobs, mirror_message_links};

use super::{
    queue::{ClaimStamp, EnqueueOptions, MirrorQueue, PENDING},
    Database,
};
use crate::{
    domain::{gate::JobKind, mirror::MirrorPayload, server_key::ServerKey, snowflake},
    error::{AppError, AppResult, ErrorCode},
};

pub const CANCELLED: &str = "cancelled";
pub const EXPIRED: &str = "expired";

/// A change to a message in a source channel, as the gateway reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    Created {
        guild_id: u64,
        channel_id: u64,
        message_id: u64,
        payload: MirrorPayload,
    },
    Updated {
        guild_id: u64,
        channel_id: u64,
        message_id: u64,
        payload: MirrorPayload,
    },
    Deleted {
        guild_id: u64,
        channel_id: u64,
        message_id: u64,
    },
}

impl SourceEvent {
    /// The source guild the message is in: mappings are matched by guild and channel.
    pub fn guild_id(&self) -> u64 {
        match self {
            SourceEvent::Created { guild_id, .. }
            | SourceEvent::Updated { guild_id, .. }
            | SourceEvent::Deleted { guild_id, .. } => *guild_id,
        }
    }

    pub fn channel_id(&self) -> u64 {
        match self {
            SourceEvent::Created { channel_id, .. }
            | SourceEvent::Updated { channel_id, .. }
            | SourceEvent::Deleted { channel_id, .. } => *channel_id,
        }
    }
    pub fn message_id(&self) -> u64 {
        match self {
            SourceEvent::Created { message_id, .. }
            | SourceEvent::Updated { message_id, .. }
            | SourceEvent::Deleted { message_id, .. } => *message_id,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// New jobs written.
    pub enqueued: u32,
    /// Pending jobs whose payload was updated in place (an edit before its send went out).
    pub coalesced: u32,
    /// Pending jobs cancelled (a delete before its send went out).
    pub cancelled: u32,
    /// Creates skipped because the mapping already has a send for that message (any state):
    /// the live event and a catch-up fetch of the same message, or a replayed event.
    pub duplicates: u32,
}

/// The sends of a new source message written already claimed for the local gate
/// ([`MirrorStore::ingest_claimed`]), with the mappings they were written for.
#[derive(Debug, Clone, Default)]
pub struct ClaimedSends {
    pub jobs: Vec<mirror_jobs::Model>,
    pub mappings: Vec<connector_mappings::Model>,
}

#[derive(Clone)]
pub struct MirrorStore {
    db: Database,
    queue: MirrorQueue,
    /// Webhooks the service created: their messages are never mirrored.
    own_webhooks: std::sync::Arc<dashmap::DashMap<u64, ()>>,
    /// Channels found to be sources, and until when (ms) that is taken as known.
    known_sources: std::sync::Arc<dashmap::DashMap<(u64, u64), i64>>,
}

/// How long a channel found to be a source is taken as one without asking the database. Only
/// a yes is remembered: a source whose mappings went meanwhile costs a transaction that
/// finds none and writes nothing, while a new mapping is seen at once.
const KNOWN_SOURCE_MS: i64 = 10_000;

impl MirrorStore {
    pub fn new(db: Database, queue: MirrorQueue) -> Self {
        Self {
            db,
            queue,
            own_webhooks: Default::default(),
            known_sources: Default::default(),
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn queue(&self) -> &MirrorQueue {
        &self.queue
    }

    /// Unbroken mappings whose source is `channel_id` in `guild_id`: the channel must be in
    /// the connector's source guild (a mapping naming another guild's channel gets nothing).
    /// With `live`, only enabled mappings of enabled connectors, none deleted, whose tenant
    /// is granted the guild (what new sends and edits go to); without, every one (a source delete still removes the
    /// copies of a disabled or deleted mapping).
    pub async fn mappings_for_source<C: ConnectionTrait>(
        conn: &C,
        guild_id: u64,
        channel_id: u64,
        live: bool,
    ) -> AppResult<Vec<connector_mappings::Model>> {
        let guild = snowflake::to_db(guild_id);
        let mut query = connector_mappings::Entity::find()
            .filter(connector_mappings::Column::SourceChannelId.eq(snowflake::to_db(channel_id)))
            .filter(connector_mappings::Column::BrokenCode.is_null());
        // EXISTS subqueries built by sea-query: a custom SQL string would need `?` on SQLite
        // and `$1` on PostgreSQL.
        use entities::{connectors, tenant_source_guilds};
        use sea_orm::sea_query::{Alias, ExprTrait, Query};
        let c = Alias::new("c");
        let mut connector = Query::select();
        connector
            .expr(Expr::val(1))
            .from_as(connectors::Entity, c.clone())
            .and_where(
                Expr::col((c.clone(), connectors::Column::TenantKey)).equals((
                    connector_mappings::Entity,
                    connector_mappings::Column::TenantKey,
                )),
            )
            .and_where(
                Expr::col((c.clone(), connectors::Column::ConnectorId)).equals((
                    connector_mappings::Entity,
                    connector_mappings::Column::ConnectorId,
                )),
            )
            .and_where(Expr::col((c.clone(), connectors::Column::SourceGuildId)).eq(guild));
        if live {
            let g = Alias::new("g");
            let mut granted = Query::select();
            granted
                .expr(Expr::val(1))
                .from_as(tenant_source_guilds::Entity, g.clone())
                .and_where(
                    Expr::col((g.clone(), tenant_source_guilds::Column::TenantKey))
                        .equals((c.clone(), connectors::Column::TenantKey)),
                )
                .and_where(
                    Expr::col((g, tenant_source_guilds::Column::GuildId))
                        .equals((c.clone(), connectors::Column::SourceGuildId)),
                );
            connector
                .and_where(Expr::col((c.clone(), connectors::Column::Enabled)).eq(true))
                .and_where(Expr::col((c, connectors::Column::DeletedAt)).is_null())
                .and_where(Expr::exists(granted));
            query = query
                .filter(connector_mappings::Column::Enabled.eq(true))
                .filter(connector_mappings::Column::DeletedAt.is_null());
        }
        let query = query.filter(Expr::exists(connector));
        Ok(query
            .order_by_asc(connector_mappings::Column::Id)
            .all(conn)
            .await?)
    }

    pub async fn mapping(&self, id: i64) -> AppResult<Option<connector_mappings::Model>> {
        Ok(connector_mappings::Entity::find_by_id(id)
            .one(self.db.conn())
            .await?)
    }

    /// Whether any mapping reads `channel_id` of `guild_id`. Most messages the bot sees are
    /// not in a source channel (customers talking, our own deliveries): a plain read turns
    /// them away without taking the write lock.
    pub async fn is_source(&self, guild_id: u64, channel_id: u64) -> AppResult<bool> {
        let now = crate::store::now_ms();
        if self
            .known_sources
            .get(&(guild_id, channel_id))
            .is_some_and(|until| *until > now)
        {
            return Ok(true);
        }
        let source = !Self::mappings_for_source(self.db.read_conn(), guild_id, channel_id, false)
            .await?
            .is_empty();
        // A no is not written: most messages the bot sees are not a source's, and an entry
        // that ran out is asked again anyway.
        if source {
            self.known_sources
                .insert((guild_id, channel_id), now + KNOWN_SOURCE_MS);
        }
        Ok(source)
    }

    /// Whether a message was posted by a webhook this service created (a copy of ours).
    pub fn is_own_webhook(&self, webhook_id: u64) -> bool {
        self.own_webhooks.contains_key(&webhook_id)
    }

    /// Remembers the webhooks the service created (at start; the gate adds the new ones).
    pub async fn load_own_webhooks(&self) -> AppResult<usize> {
        let rows = entities::service_webhooks::Entity::find()
            .all(self.db.conn())
            .await?;
        for r in &rows {
            self.own_webhooks
                .insert(snowflake::from_db(r.webhook_id), ());
        }
        crate::redact::hide_all(rows.iter().map(|r| r.token.as_str()));
        Ok(rows.len())
    }

    /// A webhook the service created, with its token (for a copy posted through a webhook
    /// its mapping no longer uses).
    pub async fn service_webhook(&self, webhook_id: u64) -> AppResult<Option<(u64, String)>> {
        Ok(
            entities::service_webhooks::Entity::find_by_id(snowflake::to_db(webhook_id))
                .one(self.db.conn())
                .await?
                .map(|r| (snowflake::from_db(r.webhook_id), r.token)),
        )
    }

    /// Writes the jobs for one source event in one transaction. Per mapping: a create adds a
    /// send; an update rewrites a still-pending send or edit, else adds an edit; a delete
    /// cancels a still-pending send and its edits (nothing reached Discord), else adds a
    /// delete. A create for a mapping that already has a send for that message (in any state)
    /// writes nothing: see [`IngestOutcome::duplicates`].
    pub async fn ingest(&self, event: &SourceEvent, now: i64) -> AppResult<IngestOutcome> {
        if !self.is_source(event.guild_id(), event.channel_id()).await? {
            return Ok(IngestOutcome::default());
        }
        self.ingest_for(event, now, None).await
    }

    /// [`Self::ingest`] restricted to the mappings in `only` (all when `None`); catch-up
    /// enqueues a fetched message only for the mappings that miss it.
    pub async fn ingest_for(
        &self,
        event: &SourceEvent,
        now: i64,
        only: Option<&[i64]>,
    ) -> AppResult<IngestOutcome> {
        Ok(self.write_event(event, now, only, None).await?.0)
    }

    /// [`Self::ingest`] of a source event (the caller checked [`Self::is_source`]), a
    /// create's sends written already claimed under `stamp` and returned, for the gate in
    /// this process to deliver without claiming them: no claim statement, no wait for one.
    pub async fn ingest_claimed(
        &self,
        event: &SourceEvent,
        now: i64,
        stamp: &ClaimStamp,
    ) -> AppResult<(IngestOutcome, ClaimedSends)> {
        self.write_event(event, now, None, Some(stamp)).await
    }

    async fn write_event(
        &self,
        event: &SourceEvent,
        now: i64,
        only: Option<&[i64]>,
        stamp: Option<&ClaimStamp>,
    ) -> AppResult<(IngestOutcome, ClaimedSends)> {
        let txn = self.db.begin_write().await?;
        if self.db.backend() == DatabaseBackend::Postgres {
            // One source message's events one at a time, as SQLite's single writer has them:
            // under READ COMMITTED a create and a delete (live, or catch-up and live) would
            // each miss the other, leaving a send pending next to a delete that finds no link.
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [snowflake::to_db(event.message_id()).into()],
            ))
            .await?;
        }
        let live = !matches!(event, SourceEvent::Deleted { .. });
        let mut mappings =
            Self::mappings_for_source(&txn, event.guild_id(), event.channel_id(), live).await?;
        if let Some(only) = only {
            mappings.retain(|m| only.contains(&m.id));
        }
        let mut outcome = IngestOutcome::default();
        let source_message = snowflake::to_db(event.message_id());
        if let SourceEvent::Created { payload, .. } = event {
            let claimed = self
                .ingest_created(&txn, mappings, event, payload, now, stamp, &mut outcome)
                .await?;
            txn.commit().await?;
            return Ok((outcome, claimed));
        }
        for mapping in &mappings {
            match event {
                SourceEvent::Created { .. } => {}
                SourceEvent::Updated { payload, .. } => {
                    let json = encode(payload)?;
                    let mut rewritten = 0;
                    for kind in ["send", "edit"] {
                        let res = mirror_jobs::Entity::update_many()
                            .col_expr(mirror_jobs::Column::Payload, Expr::value(json.clone()))
                            .col_expr(mirror_jobs::Column::UpdatedAt, Expr::value(now))
                            .filter(mirror_jobs::Column::MappingId.eq(mapping.id))
                            .filter(mirror_jobs::Column::SourceMessageId.eq(source_message))
                            .filter(mirror_jobs::Column::Status.eq(PENDING))
                            .filter(mirror_jobs::Column::Kind.eq(kind))
                            .exec(&txn)
                            .await?;
                        rewritten += res.rows_affected;
                    }
                    if rewritten > 0 {
                        outcome.coalesced += rewritten as u32;
                    } else {
                        self.enqueue_job(&txn, mapping, event, JobKind::Edit, payload, now)
                            .await?;
                        outcome.enqueued += 1;
                    }
                }
                SourceEvent::Deleted { .. } => {
                    // Decided by what the cancel changed, not by a read before it: on
                    // PostgreSQL the gate can claim the send between the two, and a send
                    // seen pending but delivered anyway would never be deleted.
                    let deleted = "source_message_deleted";
                    let sends =
                        cancel_pending(&txn, mapping.id, source_message, "send", deleted, now)
                            .await?;
                    let edits =
                        cancel_pending(&txn, mapping.id, source_message, "edit", deleted, now)
                            .await?;
                    outcome.cancelled += (sends + edits) as u32;
                    if sends == 0 {
                        // The send went out (or is going out): remove it from the target.
                        self.enqueue_job(
                            &txn,
                            mapping,
                            event,
                            JobKind::Delete,
                            &MirrorPayload::default(),
                            now,
                        )
                        .await?;
                        outcome.enqueued += 1;
                    }
                }
            }
        }
        txn.commit().await?;
        Ok((outcome, ClaimedSends::default()))
    }

    /// A create: one send per mapping, written in one statement (claimed under `stamp` when
    /// given, and returned). Serenity runs event handlers
    /// concurrently, so an edit or a delete of this message can be recorded before its
    /// create: a delete means nothing is sent; edits give the send their content and need not
    /// run.
    #[allow(clippy::too_many_arguments)]
    async fn ingest_created<C: ConnectionTrait>(
        &self,
        conn: &C,
        mappings: Vec<connector_mappings::Model>,
        event: &SourceEvent,
        payload: &MirrorPayload,
        now: i64,
        stamp: Option<&ClaimStamp>,
        outcome: &mut IngestOutcome,
    ) -> AppResult<ClaimedSends> {
        if mappings.is_empty() {
            return Ok(ClaimedSends::default());
        }
        let source_message = snowflake::to_db(event.message_id());
        let earlier = mirror_jobs::Entity::find()
            .filter(mirror_jobs::Column::SourceMessageId.eq(source_message))
            .filter(mirror_jobs::Column::MappingId.is_in(mappings.iter().map(|m| m.id)))
            .order_by_asc(mirror_jobs::Column::Id)
            .all(conn)
            .await?;
        let mut rows = Vec::with_capacity(mappings.len());
        for mapping in &mappings {
            // Catch-up and the live event can both report a message: one send only. (The
            // send's dedupe key stops two concurrent transactions from both inserting one.)
            if earlier
                .iter()
                .any(|j| j.mapping_id == mapping.id && j.kind == "send")
            {
                outcome.duplicates += 1;
                continue;
            }
            let later: Vec<&mirror_jobs::Model> = earlier
                .iter()
                .filter(|j| j.mapping_id == mapping.id && j.kind != "send")
                .collect();
            if later.iter().any(|j| j.kind == "delete") {
                outcome.cancelled += 1;
                continue;
            }
            let mut payload = payload.clone();
            if let Some(edit) = later.last() {
                let edited = decode(&edit.payload)?;
                payload.content = edited.content;
                payload.embeds = edited.embeds;
                let coalesced = "coalesced_into_send";
                outcome.coalesced +=
                    cancel_pending(conn, mapping.id, source_message, "edit", coalesced, now).await?
                        as u32;
            }
            let mut columns = job_columns(mapping, event, JobKind::Send, &payload)?;
            // At most one live send per (mapping, message), enforced by the queue's unique
            // index.
            columns.push((
                "dedupe_key",
                Some(send_dedupe_key(mapping.id, event.message_id())).into(),
            ));
            rows.push(columns);
        }
        let attempted = rows.len() as u32;
        let mut claimed = ClaimedSends::default();
        let inserted = match stamp {
            None => self.queue.enqueue_many(conn, &rows, now).await? as u32,
            Some(stamp) => {
                claimed.jobs = self
                    .queue
                    .enqueue_many_claimed(conn, &rows, stamp, now)
                    .await?;
                claimed.mappings = mappings
                    .into_iter()
                    .filter(|m| claimed.jobs.iter().any(|j| j.mapping_id == m.id))
                    .collect();
                claimed.jobs.len() as u32
            }
        };
        outcome.enqueued += inserted;
        outcome.duplicates += attempted - inserted.min(attempted);
        Ok(claimed)
    }

    async fn enqueue_job<C: ConnectionTrait>(
        &self,
        conn: &C,
        mapping: &connector_mappings::Model,
        event: &SourceEvent,
        kind: JobKind,
        payload: &MirrorPayload,
        now: i64,
    ) -> AppResult<()> {
        let columns = job_columns(mapping, event, kind, payload)?;
        self.queue
            .enqueue(
                conn,
                &columns,
                EnqueueOptions {
                    run_after: now,
                    ..Default::default()
                },
                now,
            )
            .await?;
        Ok(())
    }

    pub async fn link(
        &self,
        mapping_id: i64,
        source_message_id: u64,
    ) -> AppResult<Option<mirror_message_links::Model>> {
        Ok(mirror_message_links::Entity::find()
            .filter(mirror_message_links::Column::MappingId.eq(mapping_id))
            .filter(
                mirror_message_links::Column::SourceMessageId
                    .eq(snowflake::to_db(source_message_id)),
            )
            .one(self.db.conn())
            .await?)
    }

    /// Whether some source message of this mapping already landed as this target message.
    pub async fn is_linked_target(
        &self,
        mapping_id: i64,
        target_message_id: u64,
    ) -> AppResult<bool> {
        Ok(mirror_message_links::Entity::find()
            .filter(mirror_message_links::Column::MappingId.eq(mapping_id))
            .filter(
                mirror_message_links::Column::TargetMessageId
                    .eq(snowflake::to_db(target_message_id)),
            )
            .one(self.db.conn())
            .await?
            .is_some())
    }

    /// The mapping's webhook (or none after it was found gone). A new one is recorded as
    /// the service's own, with its token, for good: copies it posted are edited and deleted
    /// through it, and its messages are never mirrored.
    pub async fn set_webhook(
        &self,
        mapping: &connector_mappings::Model,
        webhook: Option<(u64, String)>,
        now: i64,
    ) -> AppResult<()> {
        let (id, token) = match &webhook {
            Some((id, token)) => (Some(snowflake::to_db(*id)), Some(token.clone())),
            None => (None, None),
        };
        if let Some((webhook_id, token)) = &webhook {
            self.own_webhooks.insert(*webhook_id, ());
            let row = entities::service_webhooks::ActiveModel {
                webhook_id: Set(snowflake::to_db(*webhook_id)),
                token: Set(token.clone()),
                guild_id: Set(mapping.target_guild_id),
                channel_id: Set(mapping.target_channel_id),
                mapping_id: Set(mapping.id),
                created_at: Set(now),
            };
            entities::service_webhooks::Entity::insert(row)
                .on_conflict_do_nothing_on([entities::service_webhooks::Column::WebhookId])
                .exec(self.db.conn())
                .await?;
        }
        connector_mappings::Entity::update_many()
            .col_expr(connector_mappings::Column::WebhookId, Expr::value(id))
            .col_expr(connector_mappings::Column::WebhookToken, Expr::value(token))
            .col_expr(connector_mappings::Column::UpdatedAt, Expr::value(now))
            .filter(connector_mappings::Column::Id.eq(mapping.id))
            .exec(self.db.conn())
            .await?;
        Ok(())
    }

    /// The mappings with these ids, by id (a deleted one is absent).
    pub async fn mappings_by_id(
        &self,
        ids: &[i64],
    ) -> AppResult<HashMap<i64, connector_mappings::Model>> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(500) {
            let rows = connector_mappings::Entity::find()
                .filter(connector_mappings::Column::Id.is_in(chunk.iter().copied()))
                .all(self.db.conn())
                .await?;
            found.extend(rows.into_iter().map(|m| (m.id, m)));
        }
        Ok(found)
    }

    /// The stored links of these (mapping, source message) pairs, keyed by the pair.
    pub async fn links_for(
        &self,
        pairs: &[(i64, u64)],
    ) -> AppResult<HashMap<(i64, u64), mirror_message_links::Model>> {
        let wanted: HashSet<(i64, u64)> = pairs.iter().copied().collect();
        let mut mappings: Vec<i64> = wanted.iter().map(|p| p.0).collect();
        mappings.sort_unstable();
        mappings.dedup();
        let mut found = HashMap::new();
        let messages: Vec<i64> = {
            let mut m: Vec<i64> = wanted.iter().map(|p| snowflake::to_db(p.1)).collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        for chunk in messages.chunks(500) {
            let rows = mirror_message_links::Entity::find()
                .filter(mirror_message_links::Column::MappingId.is_in(mappings.iter().copied()))
                .filter(mirror_message_links::Column::SourceMessageId.is_in(chunk.iter().copied()))
                .all(self.db.conn())
                .await?;
            for link in rows {
                let key = (link.mapping_id, snowflake::from_db(link.source_message_id));
                if wanted.contains(&key) {
                    found.insert(key, link);
                }
            }
        }
        Ok(found)
    }

    /// Applies what the gate's workers decided for a batch of claimed jobs, in one
    /// transaction: new links with their jobs' completion (so a completed send always has its
    /// link), removed links, reschedules, failures, and mappings found broken. Every job
    /// change is fenced by its claim token; a stale one changes nothing.
    pub async fn settle(&self, settlements: &[Settlement], now: i64) -> AppResult<SettleCounts> {
        let txn = self.db.begin_write().await?;
        let mut counts = SettleCounts::default();
        let links: Vec<&NewLink> = settlements
            .iter()
            .filter_map(|s| match &s.outcome {
                Outcome::Complete { link, .. } => link.as_ref(),
                _ => None,
            })
            .collect();
        // Removed links first: an edit that changed how many parts a message has replaces
        // its link (removed and added in one settlement).
        for s in settlements {
            if let Outcome::Complete {
                unlink: Some((mapping_id, source)),
                ..
            } = &s.outcome
            {
                mirror_message_links::Entity::delete_many()
                    .filter(mirror_message_links::Column::MappingId.eq(*mapping_id))
                    .filter(
                        mirror_message_links::Column::SourceMessageId.eq(snowflake::to_db(*source)),
                    )
                    .exec(&txn)
                    .await?;
            }
        }
        for chunk in links.chunks(200) {
            insert_links(&txn, chunk, now).await?;
        }
        let mut completes: HashMap<&str, Vec<i64>> = HashMap::new();
        for s in settlements {
            let token = s.job.claim_token.as_deref().unwrap_or_default();
            match &s.outcome {
                Outcome::Complete { .. } => {
                    completes.entry(token).or_default().push(s.job.id);
                }
                Outcome::Release {
                    run_after,
                    code,
                    refund_attempt,
                } => {
                    self.queue
                        .release_on(
                            &txn,
                            s.job.id,
                            token,
                            *run_after,
                            code.as_deref(),
                            *refund_attempt,
                            now,
                        )
                        .await?;
                    counts.released += 1;
                }
                Outcome::Finish {
                    status,
                    error,
                    broken,
                } => {
                    if let Some(code) = broken {
                        mark_broken(&txn, s.job.mapping_id, *code, now).await?;
                    }
                    self.queue
                        .finish_as_on(&txn, s.job.id, token, status, error, now)
                        .await?;
                    counts.finished += 1;
                }
                Outcome::Fail { error, jitter } => {
                    self.queue
                        .fail_on(&txn, &s.job, error, now, *jitter)
                        .await?;
                    counts.failed += 1;
                }
            }
        }
        for (token, ids) in completes {
            for chunk in ids.chunks(500) {
                counts.completed += self
                    .queue
                    .complete_batch_on(&txn, chunk, token, now)
                    .await?;
            }
        }
        txn.commit().await?;
        Ok(counts)
    }

    /// Makes the jobs the gate held back for `server` due now, after its state changed.
    /// Makes the held jobs in `scope` due now (holds of the gate, and of a disabled
    /// connector or mapping).
    pub async fn release_held(&self, scope: &HeldScope, now: i64) -> AppResult<u64> {
        let mut update = mirror_jobs::Entity::update_many()
            .col_expr(mirror_jobs::Column::RunAfter, Expr::value(now))
            .filter(mirror_jobs::Column::Status.eq(PENDING))
            .filter(mirror_jobs::Column::RunAfter.gt(now))
            .filter(mirror_jobs::Column::LastError.is_in(HELD_CODES.iter().map(|c| c.as_str())));
        update = match scope {
            HeldScope::Server(server) => update
                .filter(mirror_jobs::Column::TenantKey.eq(server.tenant_key.as_str()))
                .filter(mirror_jobs::Column::ConnectorId.eq(server.connector_id.as_str()))
                .filter(mirror_jobs::Column::TargetGuildId.eq(snowflake::to_db(server.guild_id))),
            HeldScope::Connector {
                tenant_key,
                connector_id,
            } => update
                .filter(mirror_jobs::Column::TenantKey.eq(tenant_key.as_str()))
                .filter(mirror_jobs::Column::ConnectorId.eq(connector_id.as_str())),
            HeldScope::Mapping(id) => update.filter(mirror_jobs::Column::MappingId.eq(*id)),
            HeldScope::All => update,
        };
        Ok(update.exec(self.db.conn()).await?.rows_affected)
    }
}

/// Whose held jobs a change may let go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldScope {
    /// A server's seat state or policy changed.
    Server(ServerKey),
    /// A connector was enabled again.
    Connector {
        tenant_key: String,
        connector_id: String,
    },
    /// A mapping was enabled again.
    Mapping(i64),
    /// Every held job (the kill switch turned on).
    All,
}

impl std::fmt::Display for HeldScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeldScope::Server(key) => write!(f, "server {key}"),
            HeldScope::Connector {
                tenant_key,
                connector_id,
            } => write!(f, "connector {tenant_key}/{connector_id}"),
            HeldScope::Mapping(id) => write!(f, "mapping {id}"),
            HeldScope::All => f.write_str("every server"),
        }
    }
}

/// Marks a mapping broken with the Discord error's code: admins see it, delivery stops.
/// Cancels the pending jobs of one kind for a (mapping, source message), with `reason` as
/// their last error; returns how many there were.
async fn cancel_pending<C: ConnectionTrait>(
    conn: &C,
    mapping_id: i64,
    source_message: i64,
    kind: &str,
    reason: &str,
    now: i64,
) -> AppResult<u64> {
    let res = mirror_jobs::Entity::update_many()
        .col_expr(mirror_jobs::Column::Status, Expr::value(CANCELLED))
        .col_expr(mirror_jobs::Column::LastError, Expr::value(reason))
        .col_expr(mirror_jobs::Column::FinishedAt, Expr::value(now))
        .col_expr(mirror_jobs::Column::UpdatedAt, Expr::value(now))
        .filter(mirror_jobs::Column::MappingId.eq(mapping_id))
        .filter(mirror_jobs::Column::SourceMessageId.eq(source_message))
        .filter(mirror_jobs::Column::Status.eq(PENDING))
        .filter(mirror_jobs::Column::Kind.eq(kind))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}

async fn mark_broken<C: ConnectionTrait>(
    conn: &C,
    mapping_id: i64,
    code: ErrorCode,
    now: i64,
) -> AppResult<()> {
    connector_mappings::Entity::update_many()
        .col_expr(
            connector_mappings::Column::BrokenCode,
            Expr::value(code.as_str()),
        )
        .col_expr(connector_mappings::Column::BrokenAt, Expr::value(now))
        .col_expr(connector_mappings::Column::UpdatedAt, Expr::value(now))
        .filter(connector_mappings::Column::Id.eq(mapping_id))
        .exec(conn)
        .await?;
    Ok(())
}

async fn insert_links<C: ConnectionTrait>(conn: &C, links: &[&NewLink], now: i64) -> AppResult<()> {
    if links.is_empty() {
        return Ok(());
    }
    let models = links.iter().map(|l| mirror_message_links::ActiveModel {
        mapping_id: Set(l.mapping_id),
        source_message_id: Set(snowflake::to_db(l.source_message_id)),
        target_channel_id: Set(snowflake::to_db(l.target_channel_id)),
        target_message_id: Set(snowflake::to_db(l.target_message_id)),
        webhook_id: Set(l.webhook_id.map(snowflake::to_db)),
        created_at: Set(now),
        linked_attachments: Set(l.linked_attachments.clone()),
        part_message_ids: Set(part_ids_to_db(&l.part_message_ids)),
        ..Default::default()
    });
    // A second link for the same pair (a retried send that Discord deduplicated by nonce)
    // keeps the first.
    mirror_message_links::Entity::insert_many(models)
        .on_conflict(
            OnConflict::columns([
                mirror_message_links::Column::MappingId,
                mirror_message_links::Column::SourceMessageId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// A server's mirror jobs that ended failed (retries spent, or refused by Discord as they
/// were), newest first, with ids below `before`.
pub async fn failed_jobs(
    db: &Database,
    key: &ServerKey,
    limit: u64,
    before: Option<i64>,
) -> AppResult<Vec<mirror_jobs::Model>> {
    use sea_orm::QuerySelect;
    let mut q = mirror_jobs::Entity::find()
        .filter(mirror_jobs::Column::Status.eq(super::queue::FAILED))
        .filter(mirror_jobs::Column::TenantKey.eq(key.tenant_key.as_str()))
        .filter(mirror_jobs::Column::ConnectorId.eq(key.connector_id.as_str()))
        .filter(mirror_jobs::Column::TargetGuildId.eq(snowflake::to_db(key.guild_id)));
    if let Some(before) = before {
        q = q.filter(mirror_jobs::Column::Id.lt(before));
    }
    Ok(q.order_by_desc(mirror_jobs::Column::Id)
        .limit(limit)
        .all(db.conn())
        .await?)
}

/// Where a delivered source message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub mapping_id: i64,
    pub source_message_id: u64,
    pub target_channel_id: u64,
    pub target_message_id: u64,
    pub webhook_id: Option<u64>,
    /// See [`crate::domain::mirror::linked_at_send`].
    pub linked_attachments: Option<String>,
    /// The messages after the first of a source message delivered in parts.
    pub part_message_ids: Vec<u64>,
}

fn part_ids_to_db(ids: &[u64]) -> Option<String> {
    (!ids.is_empty()).then(|| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" "))
}

/// Every target message of a link, the first one first.
pub fn link_message_ids(link: &mirror_message_links::Model) -> Vec<u64> {
    let mut ids = vec![snowflake::from_db(link.target_message_id)];
    ids.extend(
        link.part_message_ids
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(snowflake::parse),
    );
    ids
}

/// How one claimed job ends this time.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Done; a send records its link, a delete removes it.
    Complete {
        link: Option<NewLink>,
        unlink: Option<(i64, u64)>,
    },
    /// Back to pending until `run_after`; a refunded attempt does not count toward giving up.
    Release {
        run_after: i64,
        code: Option<String>,
        refund_attempt: bool,
    },
    /// Ends with this status; `broken` also marks the job's mapping broken with the code.
    Finish {
        status: &'static str,
        error: String,
        broken: Option<ErrorCode>,
    },
    /// A failed attempt: retried with backoff, or failed after the last one.
    Fail { error: String, jitter: f64 },
}

#[derive(Debug, Clone)]
pub struct Settlement {
    pub job: mirror_jobs::Model,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettleCounts {
    pub completed: u64,
    pub released: u64,
    pub finished: u64,
    pub failed: u64,
}

/// The dedupe key of the send of `source_message_id` through `mapping_id`.
pub fn send_dedupe_key(mapping_id: i64, source_message_id: u64) -> String {
    format!("send:{mapping_id}:{source_message_id}")
}

/// Codes the gate leaves on jobs it holds back.
pub const HELD_CODES: [ErrorCode; 5] = [
    ErrorCode::SeatLimitExceeded,
    ErrorCode::SeatCheckPending,
    ErrorCode::SeatAuditFailed,
    ErrorCode::SeatOverrideBlock,
    ErrorCode::MirrorDisabled,
];

/// The columns of one mirror job row.
fn job_columns(
    mapping: &connector_mappings::Model,
    event: &SourceEvent,
    kind: JobKind,
    payload: &MirrorPayload,
) -> AppResult<Vec<(&'static str, sea_orm::Value)>> {
    Ok(vec![
        ("tenant_key", mapping.tenant_key.clone().into()),
        ("connector_id", mapping.connector_id.clone().into()),
        ("mapping_id", mapping.id.into()),
        ("target_guild_id", mapping.target_guild_id.into()),
        ("target_channel_id", mapping.target_channel_id.into()),
        ("kind", crate::domain::mirror::kind_as_str(kind).into()),
        (
            "source_channel_id",
            snowflake::to_db(event.channel_id()).into(),
        ),
        (
            "source_message_id",
            snowflake::to_db(event.message_id()).into(),
        ),
        ("payload", encode(payload)?.into()),
    ])
}

fn encode(payload: &MirrorPayload) -> AppResult<String> {
    serde_json::to_string(payload)
        .map_err(|err| AppError::internal(format!("payload not encodable: {err}")))
}

pub fn decode(payload: &str) -> AppResult<MirrorPayload> {
    serde_json::from_str(payload).map_err(|err| {
        AppError::new(
            ErrorCode::ValidationFailed,
            format!("stored payload unreadable: {err}"),
        )
    })
}
