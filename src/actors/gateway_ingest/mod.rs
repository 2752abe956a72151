//! Gateway ingest: owns the serenity client and turns Discord events into typed messages:
//! guild, member, role and channel changes for the seat auditor, in gateway order
//! ([`ordered`]); source-channel messages into durable mirror jobs (and a wake-up for the
//! gate). Every READY (the first session at
//! start, and any later one: a gap that could not be resumed) starts a catch-up of the source
//! channels' history ([`crate::store::catch_up`]).

mod create_order;
mod edit_order;
mod ordered;
pub mod shard_keeper;

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use serenity::{
    all::{
        ChannelId, Context as SerenityContext, EventHandler, Guild, GuildId, Message, MessageId,
        MessageUpdateEvent, Ready, ResumedEvent, ShardManager, User, UserId,
    },
    http::{Http, MessagePagination},
};

use super::{
    mirror_gate::{GateInbox, OfferSends, SendsClaimed, Wake},
    seat_auditor::GuildChange,
    Shutdown,
};
use crate::{
    config::Secret,
    discord::{connect, directory::GuildDirectory, rest::SerenityRest, shards::ShardStates},
    domain::{
        mirror::{AttachmentRef, MirrorPayload, StickerRef},
        shards::{Shard, ShardCount},
    },
    error::{AppError, AppResult, ErrorCode},
    store::{
        catch_up::{self, CatchUpConfig, FetchedMessage, MessageHistory},
        mirror::{ClaimedSends, IngestOutcome, MirrorStore, SourceEvent},
        now_ms,
    },
};

pub struct GatewayIngest {
    handler: Arc<Handler>,
    token: Option<Secret>,
    api_url: String,
    shard_count: ShardCount,
    shards: Option<Arc<ShardManager>>,
    /// PostgreSQL with `SEATGATE_SHARD_LEASES`: shards shared with the other processes.
    leasing: Option<shard_keeper::ShardLeasing>,
    keeper: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

#[derive(Clone)]
struct Handler {
    auditor: Recipient<GuildChange>,
    ordered: ordered::OrderedChanges,
    mirror: Option<(MirrorStore, GateInbox)>,
    /// What each shard is doing (and its READYs: a shard's second one follows a gap).
    shard_states: ShardStates,
    catch_up: CatchUpConfig,
    /// One catch-up at a time; a READY during one queues the next behind it.
    catching_up: Arc<tokio::sync::Mutex<()>>,
    /// Source edits written in Discord's order, whatever order serenity's tasks run in.
    edits: Arc<edit_order::EditOrder<Option<serenity::model::Timestamp>>>,
    /// The service's REST adapter: catch-up reads history through its rate limiter.
    rest: Option<Arc<SerenityRest>>,
}

impl GatewayIngest {
    pub fn new(auditor: Recipient<GuildChange>, api_url: String) -> Self {
        Self {
            handler: Arc::new(Handler {
                ordered: ordered::OrderedChanges::new(auditor.clone(), GuildDirectory::new()),
                auditor,
                mirror: None,
                shard_states: ShardStates::default(),
                catch_up: CatchUpConfig::default(),
                catching_up: Arc::new(tokio::sync::Mutex::new(())),
                edits: Arc::default(),
                rest: None,
            }),
            token: None,
            api_url,
            shard_count: ShardCount::Auto,
            shards: None,
            leasing: None,
            keeper: None,
        }
    }

    /// Runs only the shards this process holds a lease on (PostgreSQL).
    pub fn with_shard_leasing(mut self, leasing: shard_keeper::ShardLeasing) -> Self {
        self.leasing = Some(leasing);
        self
    }

    /// How many shards to run (every one in this process), and where to tell how they are.
    pub fn with_shards(mut self, count: ShardCount, states: ShardStates) -> Self {
        self.shard_count = count;
        if let Some(h) = Arc::get_mut(&mut self.handler) {
            h.shard_states = states;
        }
        self
    }

    /// Where what the gateway says of guilds, channels and roles is kept for the admin API.
    pub fn with_directory(mut self, directory: GuildDirectory) -> Self {
        if let Some(h) = Arc::get_mut(&mut self.handler) {
            h.ordered = ordered::OrderedChanges::new(h.auditor.clone(), directory);
        }
        self
    }

    /// Connects with this bot token when started.
    pub fn with_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// Source-channel messages become mirror jobs.
    pub fn with_mirror(mut self, store: MirrorStore, gate: GateInbox) -> Self {
        if let Some(h) = Arc::get_mut(&mut self.handler) {
            h.mirror = Some((store, gate));
        }
        self
    }

    /// Catch-up reads history through this adapter (and its rate limiter) instead of the
    /// gateway client's own REST client.
    pub fn with_rest(mut self, rest: Option<Arc<SerenityRest>>) -> Self {
        if let Some(h) = Arc::get_mut(&mut self.handler) {
            h.rest = rest;
        }
        self
    }

    /// Bounds of the catch-up each READY starts.
    pub fn with_catch_up(mut self, config: CatchUpConfig) -> Self {
        if let Some(h) = Arc::get_mut(&mut self.handler) {
            h.catch_up = config;
        }
        self
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Connected(Arc<ShardManager>);

impl Actor for GatewayIngest {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(token) = self.token.clone() else {
            tracing::warn!("gateway ingest: no bot token; not connecting to Discord");
            return;
        };
        let handler = (*self.handler).clone();
        let api_url = self.api_url.clone();
        let shard_count = self.shard_count;
        if let Some(leasing) = self.leasing.clone() {
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let keeper = shard_keeper::Keeper {
                leasing,
                states: handler.shard_states.clone(),
                handler,
                api_url,
                token,
                count: shard_count,
            };
            self.keeper = Some((stop, tokio::spawn(keeper.run(stopped))));
            return;
        }
        let me = ctx.address();
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                let builder = connect::client_builder(&api_url, token.expose())
                    .event_handler(handler.clone());
                match connect::build_client(builder, &api_url).await {
                    Ok(mut client) => {
                        me.do_send(Connected(client.shard_manager.clone()));
                        let stopped = match shard_count {
                            ShardCount::Auto => {
                                tracing::info!(
                                    "gateway: connecting the shards GET /gateway/bot recommends"
                                );
                                client.start_autosharded().await
                            }
                            ShardCount::Fixed(n) => {
                                tracing::info!(shards = n, "gateway: connecting");
                                client.start_shards(n).await
                            }
                        };
                        if let Err(err) = stopped {
                            tracing::error!(error = %err, "gateway ingest: the Discord client stopped");
                        }
                        return;
                    }
                    Err(err) => {
                        attempt += 1;
                        let wait =
                            crate::domain::backoff::RetryPolicy::default().delay(attempt, 0.0);
                        tracing::error!(error = %err, retry_in_s = wait.as_secs(), "gateway ingest: not connecting");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });
    }
}

impl actix::Handler<Connected> for GatewayIngest {
    type Result = ();
    fn handle(&mut self, msg: Connected, _: &mut Self::Context) {
        let manager = msg.0.clone();
        self.shards = Some(msg.0);
        // Whether every shard is connected, from serenity's own view of its runners (a
        // handler's "disconnected" could arrive after the reconnection it preceded).
        let auditor = self.handler.auditor.clone();
        let states = self.handler.shard_states.clone();
        tokio::spawn(async move {
            let mut last = None;
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let connected = states.report(std::slice::from_ref(&manager)).await;
                if last != Some(connected) {
                    last = Some(connected);
                    if !connected {
                        tracing::warn!("gateway: not every shard is connected");
                    }
                    auditor.do_send(GuildChange::Gateway { connected });
                    if !auditor.connected() {
                        return;
                    }
                }
            }
        });
    }
}

impl actix::Handler<Shutdown> for GatewayIngest {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let shards = self.shards.take();
        let keeper = self.keeper.take();
        Box::pin(
            async move {
                if let Some(s) = shards {
                    s.shutdown_all().await;
                }
                if let Some((stop, task)) = keeper {
                    let _ = stop.send(());
                    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

/// How long recording a source event is retried while the database is away.
const RECORD_RETRY_FOR: Duration = Duration::from_secs(60);

impl Handler {
    fn send(&self, change: GuildChange) {
        self.auditor.do_send(change);
    }

    /// Records a source message's event. Messages the bot posted, or a webhook the service
    /// created, are never mirrored: a mapping whose target is another's source would loop.
    async fn mirror(
        &self,
        ctx: &SerenityContext,
        event: SourceEvent,
        author: Option<&User>,
        webhook: Option<u64>,
    ) {
        let Some((store, gate)) = &self.mirror else {
            return;
        };
        if author.is_some_and(|a| is_own(a.id, ctx.cache.current_user().id))
            || webhook.is_some_and(|w| store.is_own_webhook(w))
        {
            return;
        }
        let started = std::time::Instant::now();
        let result = Self::record_retrying(store, gate, &event).await;
        tracing::debug!(
            channel = event.channel_id(),
            message_id = event.message_id(),
            outcome = ?result.as_ref().ok(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "[mirror] gateway: source event recorded"
        );
        match result {
            Ok(outcome) if outcome.enqueued + outcome.coalesced + outcome.cancelled > 0 => {
                gate.wake.do_send(Wake)
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %err, "[mirror] could not record a source message; the catch-up recovers it")
            }
        }
    }

    /// [`Self::record`], again with backoff while the database is away (a restart, a lost
    /// connection) for up to [`RECORD_RETRY_FOR`]: catch-up reads what a session missed, not
    /// what the database refused while the session was up. The channel's later messages wait
    /// behind it, in order. A retry after a commit whose answer was lost writes nothing twice:
    /// a send has its dedupe key, an edit or a delete applied twice changes nothing.
    async fn record_retrying(
        store: &MirrorStore,
        gate: &GateInbox,
        event: &SourceEvent,
    ) -> AppResult<IngestOutcome> {
        let backoff = crate::domain::backoff::RetryPolicy {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
            max_attempts: u32::MAX,
        };
        let until = std::time::Instant::now() + RECORD_RETRY_FOR;
        let mut attempt = 0u32;
        loop {
            match Self::record(store, gate, event).await {
                Err(err)
                    if matches!(
                        err.code(),
                        ErrorCode::DatabaseUnavailable | ErrorCode::DatabaseError
                    ) && std::time::Instant::now() < until =>
                {
                    attempt += 1;
                    if attempt == 1 {
                        tracing::warn!(error = %err, message_id = event.message_id(), "[mirror] cannot record a source message yet; retrying while the database is away");
                    }
                    tokio::time::sleep(backoff.delay(attempt.min(16), 0.0)).await;
                }
                result => {
                    if attempt > 0 && result.is_ok() {
                        tracing::info!(
                            message_id = event.message_id(),
                            attempts = attempt + 1,
                            "[mirror] source message recorded once the database answered again"
                        );
                    }
                    return result;
                }
            }
        }
    }

    /// Writes the event's jobs. A new message's sends are written already claimed for the
    /// gate when it has room, and handed to it: the outcome then counts none of them, as
    /// there is nothing left to wake the gate for.
    async fn record(
        store: &MirrorStore,
        gate: &GateInbox,
        event: &SourceEvent,
    ) -> AppResult<IngestOutcome> {
        if !store
            .is_source(event.guild_id(), event.channel_id())
            .await?
        {
            return Ok(IngestOutcome::default());
        }
        let stamp = match event {
            SourceEvent::Created { .. } => gate.offer.send(OfferSends).await.ok().flatten(),
            _ => None,
        };
        let Some(stamp) = stamp else {
            return store.ingest_for(event, now_ms(), None).await;
        };
        match store.ingest_claimed(event, now_ms(), &stamp).await {
            Ok((mut outcome, sends)) => {
                outcome.enqueued -= (sends.jobs.len() as u32).min(outcome.enqueued);
                // Awaited: the next message of the channel is handed over after this one
                // is in its lanes (the gate takes handovers concurrently).
                let _ = gate.claimed.send(SendsClaimed { stamp, sends }).await;
                Ok(outcome)
            }
            Err(err) => {
                // Nothing was written: the gate drops the stamp.
                let sends = ClaimedSends::default();
                gate.claimed.do_send(SendsClaimed { stamp, sends });
                Err(err)
            }
        }
    }

    /// Starts a catch-up in its own task (the event handler does not wait for it); the gate is
    /// woken after every page that enqueued something.
    fn start_catch_up(&self, http: Arc<Http>, own_user: UserId, session: u32, shard: Shard) {
        let Some((store, gate)) = self.mirror.clone() else {
            return;
        };
        if self.catch_up.max_pages == 0 {
            return;
        }
        let session_start = now_ms();
        let config = CatchUpConfig {
            shard,
            ..self.catch_up
        };
        let lock = self.catching_up.clone();
        let rest = self.rest.clone();
        tokio::spawn(async move {
            let _one_at_a_time = lock.lock().await;
            let history = SerenityHistory { http, rest };
            let wake = {
                let gate = gate.wake.clone();
                move || gate.do_send(Wake)
            };
            let report = catch_up::run(
                &store,
                &history,
                own_user.get(),
                session_start,
                now_ms,
                &config,
                &wake,
            )
            .await;
            tracing::info!(
                session,
                channels = report.channels,
                pages = report.pages,
                fetched = report.fetched,
                enqueued = report.enqueued,
                known = report.known,
                raced = report.raced,
                own = report.own,
                truncated = report.truncated,
                failed = report.failed,
                "[mirror] catch-up done"
            );
        });
    }
}

/// Our own posts (a target that is also a source) must not loop: the one author filter of the
/// live path and of catch-up. (Webhook posts carry the webhook's id as author, so they are not
/// filtered here, live or caught up.)
fn is_own(author: UserId, own_user: UserId) -> bool {
    author == own_user
}

/// A source channel's history through the service's REST adapter (its rate limiter), or
/// without one through serenity's REST client taken from the gateway context.
struct SerenityHistory {
    http: Arc<Http>,
    rest: Option<Arc<SerenityRest>>,
}

#[serenity::async_trait]
impl MessageHistory for SerenityHistory {
    async fn messages_after(
        &self,
        channel_id: u64,
        after: u64,
        limit: u8,
    ) -> AppResult<Vec<FetchedMessage>> {
        let (Some(channel), Some(after)) = (
            std::num::NonZeroU64::new(channel_id),
            std::num::NonZeroU64::new(after.max(1)),
        ) else {
            return Ok(Vec::new());
        };
        let unavailable = |text: String| {
            AppError::new(
                ErrorCode::DiscordUnavailable,
                format!("cannot read the history of channel {channel_id}: {text}"),
            )
        };
        let messages = match &self.rest {
            Some(rest) => rest
                .history_after(channel.get(), after.get(), limit)
                .await
                .map_err(|err| unavailable(err.to_string()))?,
            None => self
                .http
                .get_messages(
                    ChannelId::from(channel),
                    Some(MessagePagination::After(MessageId::from(after))),
                    Some(limit),
                )
                .await
                .map_err(|err| unavailable(crate::redact::text(&err.to_string())))?,
        };
        Ok(messages
            .iter()
            .map(|m| FetchedMessage {
                id: m.id.get(),
                author_id: m.author.id.get(),
                webhook_id: m.webhook_id.map(|w| w.get()),
                payload: payload_of(m),
            })
            .collect())
    }
}

fn attachment_refs(attachments: &[serenity::model::channel::Attachment]) -> Vec<AttachmentRef> {
    attachments
        .iter()
        .map(|a| AttachmentRef {
            url: a.url.clone(),
            filename: a.filename.clone(),
            size: a.size as u64,
        })
        .collect()
}

pub fn payload_of(message: &Message) -> MirrorPayload {
    MirrorPayload {
        content: message.content.clone(),
        embeds: message
            .embeds
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect(),
        attachments: attachment_refs(&message.attachments),
        reply_to_source_id: message
            .message_reference
            .as_ref()
            .and_then(|r| r.message_id)
            .map(|m| m.get()),
        author_name: message
            .author
            .global_name
            .clone()
            .unwrap_or_else(|| message.author.name.clone()),
        author_avatar_url: message.author.avatar_url(),
        stickers: message
            .sticker_items
            .iter()
            .map(|s| StickerRef {
                id: s.id.get(),
                name: s.name.clone(),
                format_type: u8::from(s.format_type),
            })
            .collect(),
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: SerenityContext, ready: Ready) {
        // First: the later the collector, the more GUILD_CREATEs go by before it.
        self.ordered.directory().set_bot_id(ready.user.id.get());
        self.ordered.attach(ctx.shard_id.0, &ctx.shard);
        let shard = Shard {
            id: ctx.shard_id.0,
            total: ready.shard.map_or(1, |s| s.total),
        };
        let counted = self.shard_states.ready(shard);
        let session = counted.session;
        self.send(GuildChange::SessionStarted {
            shard,
            resumed_gap: counted.after_gap,
        });
        // The shard's first session (start) or a new one (events of the gap are lost):
        // catch up its guilds' source channels.
        self.start_catch_up(ctx.http.clone(), ready.user.id, session, shard);
        tracing::info!(
            guilds = ready.guilds.len(),
            shard = shard.id,
            shards = shard.total,
            session,
            "gateway: ready"
        );
    }

    async fn resume(&self, _: SerenityContext, _: ResumedEvent) {
        tracing::info!("gateway: resumed");
    }

    /// The guild itself reached the auditor through the ordered stream, unless that stream
    /// started after it.
    async fn guild_create(&self, ctx: SerenityContext, guild: Guild, _: Option<bool>) {
        if !self.ordered.directory().has_guild(guild.id.get()) {
            // The ordered stream missed it: the directory takes what the handler has.
            self.ordered.directory().guild_available(&guild);
        }
        self.ordered
            .check_guild_create(ctx.shard_id.0, guild.id.get());
    }

    async fn message(&self, ctx: SerenityContext, message: Message) {
        // Before anything else, so that every message the collector noted passes its turn.
        let _turn = self
            .ordered
            .creates()
            .turn(message.channel_id.get(), message.id.get())
            .await;
        tracing::debug!(
            channel = message.channel_id.get(),
            message_id = message.id.get(),
            "[mirror] gateway: message created"
        );
        let Some(guild) = message.guild_id else {
            return; // a direct message
        };
        let event = SourceEvent::Created {
            guild_id: guild.get(),
            channel_id: message.channel_id.get(),
            message_id: message.id.get(),
            payload: payload_of(&message),
        };
        let webhook = message.webhook_id.map(|w| w.get());
        self.mirror(&ctx, event, Some(&message.author), webhook)
            .await;
    }

    async fn message_update(
        &self,
        ctx: SerenityContext,
        _: Option<Message>,
        new: Option<Message>,
        event: MessageUpdateEvent,
    ) {
        let payload = match &new {
            Some(message) => payload_of(message),
            None => {
                let Some(content) = event.content.clone() else {
                    return; // an embed unfurl or a pin: nothing mirrored changed
                };
                MirrorPayload {
                    content,
                    embeds: event
                        .embeds
                        .iter()
                        .flatten()
                        .filter_map(|e| serde_json::to_value(e).ok())
                        .collect(),
                    // The edit renders the same attachment links the send did.
                    attachments: event
                        .attachments
                        .as_deref()
                        .map(attachment_refs)
                        .unwrap_or_default(),
                    ..Default::default()
                }
            }
        };
        let author = new
            .as_ref()
            .map(|m| m.author.clone())
            .or(event.author.clone());
        let webhook = new
            .as_ref()
            .and_then(|m| m.webhook_id)
            .or(event.webhook_id.flatten())
            .map(|w| w.get());
        let Some(guild) = event.guild_id else {
            return;
        };
        let edited = new
            .as_ref()
            .and_then(|m| m.edited_timestamp)
            .or(event.edited_timestamp);
        let message_id = event.id.get();
        self.ordered
            .creates()
            .recorded(event.channel_id.get(), message_id)
            .await;
        let Some(turn) = self.edits.turn(message_id, edited).await else {
            tracing::debug!(
                message_id,
                "gateway: an edit older than one already written arrived late; not mirrored"
            );
            return;
        };
        let event = SourceEvent::Updated {
            guild_id: guild.get(),
            channel_id: event.channel_id.get(),
            message_id,
            payload,
        };
        self.mirror(&ctx, event, author.as_ref(), webhook).await;
        turn.written();
    }

    async fn message_delete(
        &self,
        ctx: SerenityContext,
        channel_id: ChannelId,
        message_id: MessageId,
        guild: Option<GuildId>,
    ) {
        let Some(guild) = guild else {
            return;
        };
        self.ordered
            .creates()
            .recorded(channel_id.get(), message_id.get())
            .await;
        let event = SourceEvent::Deleted {
            guild_id: guild.get(),
            channel_id: channel_id.get(),
            message_id: message_id.get(),
        };
        self.mirror(&ctx, event, None, None).await;
    }

    async fn message_delete_bulk(
        &self,
        ctx: SerenityContext,
        channel_id: ChannelId,
        ids: Vec<MessageId>,
        guild: Option<GuildId>,
    ) {
        let Some(guild) = guild else {
            return;
        };
        for id in ids {
            let event = SourceEvent::Deleted {
                guild_id: guild.get(),
                channel_id: channel_id.get(),
                message_id: id.get(),
            };
            self.mirror(&ctx, event, None, None).await;
        }
    }
}
