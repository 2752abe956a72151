//! Gateway ingest: owns the serenity client and turns Discord events into typed messages:
//! guild, member, role and channel changes for the seat auditor; source-channel messages
//! into durable mirror jobs (and a wake-up for the gate).

use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc,
};

use actix::prelude::*;
use serenity::{
    all::{
        ChannelId, Context as SerenityContext, EventHandler, Guild, GuildChannel, GuildId,
        GuildMemberUpdateEvent, Member, Message, MessageId, MessageUpdateEvent, Ready,
        ResumedEvent, Role, RoleId, ShardManager, ShardStageUpdateEvent, UnavailableGuild, User,
    },
    gateway::ConnectionStage,
};

use super::{mirror_gate::Wake, seat_auditor::GuildChange, Shutdown};
use crate::{
    config::Secret,
    discord::connect,
    domain::mirror::{AttachmentRef, MirrorPayload},
    store::{
        mirror::{MirrorStore, SourceEvent},
        now_ms,
    },
};

pub struct GatewayIngest {
    handler: Arc<Handler>,
    token: Option<Secret>,
    api_url: String,
    shards: Option<Arc<ShardManager>>,
}

#[derive(Clone)]
struct Handler {
    auditor: Recipient<GuildChange>,
    mirror: Option<(MirrorStore, Recipient<Wake>)>,
    sessions: Arc<AtomicU32>,
}

impl GatewayIngest {
    pub fn new(auditor: Recipient<GuildChange>, api_url: String) -> Self {
        Self {
            handler: Arc::new(Handler {
                auditor,
                mirror: None,
                sessions: Arc::new(AtomicU32::new(0)),
            }),
            token: None,
            api_url,
            shards: None,
        }
    }

    /// Connects with this bot token when started.
    pub fn with_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// Source-channel messages become mirror jobs.
    pub fn with_mirror(mut self, store: MirrorStore, gate: Recipient<Wake>) -> Self {
        if let Some(h) = Arc::get_mut(&mut self.handler) {
            h.mirror = Some((store, gate));
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
        let me = ctx.address();
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                let builder = connect::client_builder(&api_url, token.expose())
                    .event_handler(handler.clone());
                match connect::build_client(builder, &api_url).await {
                    Ok(mut client) => {
                        me.do_send(Connected(client.shard_manager.clone()));
                        if let Err(err) = client.start().await {
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
        self.shards = Some(msg.0);
    }
}

impl actix::Handler<Shutdown> for GatewayIngest {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let shards = self.shards.take();
        Box::pin(
            async move {
                if let Some(s) = shards {
                    s.shutdown_all().await;
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

impl Handler {
    fn send(&self, change: GuildChange) {
        self.auditor.do_send(change);
    }

    async fn mirror(&self, ctx: &SerenityContext, event: SourceEvent, author: Option<&User>) {
        let Some((store, gate)) = &self.mirror else {
            return;
        };
        // Our own posts (a target that is also a source) must not loop.
        if author.is_some_and(|a| a.id == ctx.cache.current_user().id) {
            return;
        }
        let result = store.ingest(&event, now_ms()).await;
        tracing::trace!(?event, ?result, "[mirror] message event");
        match result {
            Ok(outcome) if outcome.enqueued + outcome.coalesced + outcome.cancelled > 0 => {
                gate.do_send(Wake)
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %err, "[mirror] could not record a source message; the catch-up recovers it")
            }
        }
    }
}

pub fn payload_of(message: &Message) -> MirrorPayload {
    MirrorPayload {
        content: message.content.clone(),
        embeds: message
            .embeds
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect(),
        attachments: message
            .attachments
            .iter()
            .map(|a| AttachmentRef {
                url: a.url.clone(),
                filename: a.filename.clone(),
                size: a.size as u64,
            })
            .collect(),
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
    }
}

fn member_change(member: &Member) -> GuildChange {
    GuildChange::MemberUpserted {
        guild_id: member.guild_id.get(),
        user_id: member.user.id.get(),
        roles: member.roles.iter().map(|r| r.get()).collect(),
        bot: member.user.bot,
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _: SerenityContext, ready: Ready) {
        let previous = self.sessions.fetch_add(1, Ordering::SeqCst);
        tracing::info!(
            guilds = ready.guilds.len(),
            session = previous + 1,
            "gateway: ready"
        );
        self.send(GuildChange::SessionStarted {
            resumed_gap: previous > 0,
        });
    }

    async fn resume(&self, _: SerenityContext, _: ResumedEvent) {
        tracing::info!("gateway: resumed");
        self.send(GuildChange::ShardResumed);
    }

    async fn shard_stage_update(&self, _: SerenityContext, event: ShardStageUpdateEvent) {
        if event.new == ConnectionStage::Disconnected {
            tracing::warn!("gateway: disconnected");
            self.send(GuildChange::ShardDisconnected);
        }
    }

    async fn guild_create(&self, _: SerenityContext, guild: Guild, _: Option<bool>) {
        self.send(GuildChange::GuildAvailable {
            guild: Box::new(guild),
        });
    }

    async fn guild_delete(
        &self,
        _: SerenityContext,
        incomplete: UnavailableGuild,
        _: Option<Guild>,
    ) {
        let guild_id = incomplete.id.get();
        self.send(if incomplete.unavailable {
            GuildChange::GuildUnavailable { guild_id }
        } else {
            GuildChange::GuildDeleted { guild_id }
        });
    }

    async fn guild_member_addition(&self, _: SerenityContext, member: Member) {
        self.send(member_change(&member));
    }

    async fn guild_member_update(
        &self,
        _: SerenityContext,
        _: Option<Member>,
        new: Option<Member>,
        event: GuildMemberUpdateEvent,
    ) {
        match new {
            Some(member) => self.send(member_change(&member)),
            None => self.send(GuildChange::MemberUpserted {
                guild_id: event.guild_id.get(),
                user_id: event.user.id.get(),
                roles: event.roles.iter().map(|r| r.get()).collect(),
                bot: event.user.bot,
            }),
        }
    }

    async fn guild_member_removal(
        &self,
        _: SerenityContext,
        guild_id: GuildId,
        user: User,
        _: Option<Member>,
    ) {
        self.send(GuildChange::MemberRemoved {
            guild_id: guild_id.get(),
            user_id: user.id.get(),
        });
    }

    async fn guild_role_create(&self, _: SerenityContext, role: Role) {
        self.send(GuildChange::RoleUpserted {
            guild_id: role.guild_id.get(),
            role_id: role.id.get(),
            permissions: role.permissions.bits(),
        });
    }

    async fn guild_role_update(&self, _: SerenityContext, _: Option<Role>, role: Role) {
        self.send(GuildChange::RoleUpserted {
            guild_id: role.guild_id.get(),
            role_id: role.id.get(),
            permissions: role.permissions.bits(),
        });
    }

    async fn guild_role_delete(
        &self,
        _: SerenityContext,
        guild_id: GuildId,
        role_id: RoleId,
        _: Option<Role>,
    ) {
        self.send(GuildChange::RoleDeleted {
            guild_id: guild_id.get(),
            role_id: role_id.get(),
        });
    }

    async fn channel_create(&self, _: SerenityContext, channel: GuildChannel) {
        self.send(GuildChange::ChannelUpserted {
            channel: Box::new(channel),
        });
    }

    async fn channel_update(
        &self,
        _: SerenityContext,
        _: Option<GuildChannel>,
        channel: GuildChannel,
    ) {
        self.send(GuildChange::ChannelUpserted {
            channel: Box::new(channel),
        });
    }

    async fn channel_delete(
        &self,
        _: SerenityContext,
        channel: GuildChannel,
        _: Option<Vec<Message>>,
    ) {
        self.send(GuildChange::ChannelDeleted {
            guild_id: channel.guild_id.get(),
            channel_id: channel.id.get(),
        });
    }

    async fn message(&self, ctx: SerenityContext, message: Message) {
        let event = SourceEvent::Created {
            channel_id: message.channel_id.get(),
            message_id: message.id.get(),
            payload: payload_of(&message),
        };
        self.mirror(&ctx, event, Some(&message.author)).await;
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
                    ..Default::default()
                }
            }
        };
        let author = new
            .as_ref()
            .map(|m| m.author.clone())
            .or(event.author.clone());
        let event = SourceEvent::Updated {
            channel_id: event.channel_id.get(),
            message_id: event.id.get(),
            payload,
        };
        self.mirror(&ctx, event, author.as_ref()).await;
    }

    async fn message_delete(
        &self,
        ctx: SerenityContext,
        channel_id: ChannelId,
        message_id: MessageId,
        _: Option<GuildId>,
    ) {
        let event = SourceEvent::Deleted {
            channel_id: channel_id.get(),
            message_id: message_id.get(),
        };
        self.mirror(&ctx, event, None).await;
    }

    async fn message_delete_bulk(
        &self,
        ctx: SerenityContext,
        channel_id: ChannelId,
        ids: Vec<MessageId>,
        _: Option<GuildId>,
    ) {
        for id in ids {
            let event = SourceEvent::Deleted {
                channel_id: channel_id.get(),
                message_id: id.get(),
            };
            self.mirror(&ctx, event, None).await;
        }
    }
}
