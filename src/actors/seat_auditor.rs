//! Seat auditor: one live seat-engine index per configured server, fed by gateway events;
//! snapshots written (debounced, a limit crossing at once) and handed to the snapshot cache;
//! durable audit jobs that recount from Discord's REST API; keep-alive re-stamping while the
//! count is known to be live.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::prelude::*;
use serenity::model::{channel::GuildChannel, guild::Guild};
use tokio::sync::{mpsc, Notify};

use super::{
    snapshot_cache::{PolicyUpdated, SnapshotUpdated},
    ServerKey, Shutdown,
};
use crate::{
    discord::port::{DiscordPort, GuildReader, OutgoingMessage},
    domain::{
        audit::{self, LimitState, WriteDecision, Written},
        freshness::Freshness,
        seats::{GuildIndex, GuildSnapshot},
        snowflake,
    },
    error::{AppError, AppResult, ErrorCode},
    store::{
        now_ms,
        queue::{AuditQueue, EnqueueOptions, Enqueued, FailOutcome},
        seat_audit::{SeatAuditStore, ServerSpec, SnapshotRecord, Transition},
    },
};

/// A change in a target guild that may move its seat count, or in the gateway session.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum GuildChange {
    /// GUILD_CREATE (full guild as serenity caches it).
    GuildAvailable {
        guild: Box<Guild>,
    },
    GuildUnavailable {
        guild_id: u64,
    },
    /// The bot was removed from the guild.
    GuildDeleted {
        guild_id: u64,
    },
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
    ChannelUpserted {
        channel: Box<GuildChannel>,
    },
    ChannelDeleted {
        guild_id: u64,
        channel_id: u64,
    },
    /// READY: `resumed_gap` is true for every session after the first (events were lost).
    SessionStarted {
        resumed_gap: bool,
    },
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
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeatPage {
    /// Counted members in all, not only on this page.
    pub total: usize,
    /// The index holds every member and follows the gateway (false while a large guild's
    /// member list is still being paged, or after a lost connection until the recount).
    pub complete: bool,
    pub items: Vec<(u64, u8)>,
    /// More members follow the last item of this page.
    pub more: bool,
}

/// Dedupe key of a server's audit job: one pending audit per server (claim frees it).
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
                ("guild_id", snowflake::to_db(key.guild_id).into()),
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

#[derive(Debug, Clone)]
pub struct SeatAuditorConfig {
    pub worker_id: String,
    pub lease: Duration,
    pub recheck: Duration,
    pub recheck_over_limit: Duration,
    pub reconcile_interval: Duration,
    pub keepalive_interval: Duration,
    pub poll: Duration,
}

impl SeatAuditorConfig {
    pub fn new(worker_id: String) -> Self {
        Self {
            worker_id,
            lease: Duration::from_secs(120),
            recheck: Duration::from_secs(60),
            recheck_over_limit: Duration::from_secs(30),
            reconcile_interval: Duration::from_secs(6 * 3600),
            keepalive_interval: Duration::from_secs(30),
            poll: Duration::from_secs(1),
        }
    }
}

struct ServerState {
    spec: ServerSpec,
    index: Option<GuildIndex>,
    /// The index holds every member and has seen every event since it was built.
    complete: bool,
    written: Option<Written>,
    state: LimitState,
    pending_write_at: Option<i64>,
}

/// What the writer task persists, in order.
enum WriteOp {
    Snapshot {
        key: ServerKey,
        record: SnapshotRecord,
    },
    Restamp {
        key: ServerKey,
        checked_at: i64,
        next_check_after: i64,
    },
    Transition {
        key: ServerKey,
        from: LimitState,
        to: LimitState,
        seats: u64,
        limit: u64,
        cause: String,
        notify: Option<u64>,
    },
}

pub struct SeatAuditor {
    store: SeatAuditStore,
    queue: AuditQueue,
    reader: Option<Arc<dyn GuildReader>>,
    notifier: Option<Arc<dyn DiscordPort>>,
    cache: Option<Recipient<SnapshotUpdated>>,
    policies: Option<Recipient<PolicyUpdated>>,
    cfg: SeatAuditorConfig,
    servers: HashMap<ServerKey, ServerState>,
    connected: bool,
    writes: Option<mpsc::UnboundedSender<WriteOp>>,
    worker_stop: Arc<AtomicBool>,
    worker_wake: Arc<Notify>,
    worker: Option<tokio::task::JoinHandle<()>>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl SeatAuditor {
    pub fn new(store: SeatAuditStore, queue: AuditQueue, cfg: SeatAuditorConfig) -> Self {
        Self {
            store,
            queue,
            reader: None,
            notifier: None,
            cache: None,
            policies: None,
            cfg,
            servers: HashMap::new(),
            connected: false,
            writes: None,
            worker_stop: Arc::new(AtomicBool::new(false)),
            worker_wake: Arc::new(Notify::new()),
            worker: None,
            writer: None,
        }
    }

    /// Recounts from Discord (audit jobs run only with a reader).
    pub fn with_reader(mut self, reader: Arc<dyn GuildReader>) -> Self {
        self.reader = Some(reader);
        self
    }

    /// Posts pause/resume notices to a server's `notify_channel_id`.
    pub fn with_notifier(mut self, port: Arc<dyn DiscordPort>) -> Self {
        self.notifier = Some(port);
        self
    }

    pub fn with_cache(
        mut self,
        cache: Recipient<SnapshotUpdated>,
        policies: Recipient<PolicyUpdated>,
    ) -> Self {
        self.cache = Some(cache);
        self.policies = Some(policies);
        self
    }

    fn servers_of_guild(&self, guild_id: u64) -> Vec<ServerKey> {
        self.servers
            .keys()
            .filter(|k| k.guild_id == guild_id)
            .cloned()
            .collect()
    }

    fn index_changed(&mut self, key: &ServerKey, cause: &str) {
        let now = now_ms();
        let Some(st) = self.servers.get_mut(key) else {
            return;
        };
        let Some(index) = &st.index else { return };
        let count = index.seat_count();
        match audit::write_decision(st.written.as_ref(), &count, st.spec.seat_limit, now) {
            WriteDecision::Nothing => {}
            WriteDecision::At(at) => {
                st.pending_write_at = Some(st.pending_write_at.map_or(at, |p| p.min(at)));
            }
            WriteDecision::Now => self.write_now(key, cause),
        }
    }

    /// Writes the server's live count as a fresh snapshot, to the cache at once and to the
    /// database through the ordered writer.
    fn write_now(&mut self, key: &ServerKey, cause: &str) {
        let now = now_ms();
        let recheck = self.cfg.recheck.as_millis() as i64;
        let recheck_over = self.cfg.recheck_over_limit.as_millis() as i64;
        let Some(st) = self.servers.get_mut(key) else {
            return;
        };
        let Some(index) = &st.index else { return };
        let count = index.seat_count();
        let limit = st.spec.seat_limit;
        let over = audit::is_over(&count, limit);
        let record = SnapshotRecord {
            count,
            seat_limit: limit,
            checked_at: now,
            next_check_after: audit::next_check_after(now, over, recheck, recheck_over),
            status: Freshness::Fresh,
            last_error: None,
        };
        st.written = Some(Written {
            count,
            seat_limit: limit,
            at_ms: now,
        });
        st.pending_write_at = None;
        let next_state = LimitState::of(&count, limit);
        let from = st.state;
        st.state = next_state;
        let notify = st.spec.notify_channel_id;
        if let Some(cache) = &self.cache {
            cache.do_send(SnapshotUpdated {
                key: key.clone(),
                snapshot: record.view(),
            });
        }
        tracing::info!(server = %key, seats_used = count.seats_used, seat_limit = limit, over, cause, "[seat-audit] snapshot");
        self.send_write(WriteOp::Snapshot {
            key: key.clone(),
            record,
        });
        if from != next_state {
            self.send_write(WriteOp::Transition {
                key: key.clone(),
                from,
                to: next_state,
                seats: count.seats_used,
                limit,
                cause: cause.to_owned(),
                notify,
            });
        }
    }

    fn send_write(&self, op: WriteOp) {
        if let Some(tx) = &self.writes {
            let _ = tx.send(op);
        }
    }

    fn flush_due(&mut self) {
        let now = now_ms();
        let due: Vec<ServerKey> = self
            .servers
            .iter()
            .filter(|(_, st)| st.pending_write_at.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.write_now(&key, "debounced");
        }
    }

    fn keep_alive(&mut self) {
        if !self.connected {
            return;
        }
        let now = now_ms();
        let recheck = self.cfg.recheck.as_millis() as i64;
        let recheck_over = self.cfg.recheck_over_limit.as_millis() as i64;
        let mut ops = Vec::new();
        for (key, st) in &mut self.servers {
            if !st.complete || st.pending_write_at.is_some() {
                continue;
            }
            let (Some(written), Some(_)) = (st.written.as_mut(), st.index.as_ref()) else {
                continue;
            };
            written.at_ms = written.at_ms.max(now - audit::DEBOUNCE_MS);
            let over = audit::is_over(&written.count, written.seat_limit);
            let record = SnapshotRecord {
                count: written.count,
                seat_limit: written.seat_limit,
                checked_at: now,
                next_check_after: audit::next_check_after(now, over, recheck, recheck_over),
                status: Freshness::Fresh,
                last_error: None,
            };
            if let Some(cache) = &self.cache {
                cache.do_send(SnapshotUpdated {
                    key: key.clone(),
                    snapshot: record.view(),
                });
            }
            ops.push(WriteOp::Restamp {
                key: key.clone(),
                checked_at: now,
                next_check_after: record.next_check_after,
            });
        }
        for op in ops {
            self.send_write(op);
        }
    }

    /// Replaces a server's index with a full recount and reports the drift.
    fn apply_recount(&mut self, key: &ServerKey, snapshot: &GuildSnapshot) {
        let Some(st) = self.servers.get_mut(key) else {
            return;
        };
        let fresh = GuildIndex::build(snapshot, &st.spec.mapped_channels, st.spec.tiers);
        let new = fresh.seat_count();
        if let Some(live) = &st.index {
            let old = live.seat_count();
            let drift = new.seats_used as i64 - old.seats_used as i64;
            if drift != 0 && st.complete {
                metrics::counter!("seatgate_seat_audit_drift_total")
                    .increment(drift.unsigned_abs());
                tracing::warn!(server = %key, live = old.seats_used, recount = new.seats_used, drift, "[seat-audit] drift between live count and recount");
            }
        }
        st.index = Some(fresh);
        st.complete = true;
        // A recount always writes: it refreshes checked_at and clears a failed audit.
        st.written = None;
        self.write_now(key, "audit");
    }

    fn audit_failed(&mut self, key: &ServerKey, cause: &str) {
        let now = now_ms();
        let Some(st) = self.servers.get_mut(key) else {
            return;
        };
        let (count, checked_at) = match &st.written {
            Some(w) => (w.count, w.at_ms),
            None => (Default::default(), now),
        };
        let record = SnapshotRecord {
            count,
            seat_limit: st.spec.seat_limit,
            checked_at,
            next_check_after: now + self.cfg.recheck.as_millis() as i64,
            status: Freshness::Expired,
            last_error: Some(format!("{}: {cause}", ErrorCode::SeatAuditFailed)),
        };
        st.complete = false;
        let from = st.state;
        st.state = LimitState::Unknown;
        tracing::error!(server = %key, cause, "[seat-audit] {}", ErrorCode::SeatAuditFailed);
        if let Some(cache) = &self.cache {
            cache.do_send(SnapshotUpdated {
                key: key.clone(),
                snapshot: record.view(),
            });
        }
        let limit = record.seat_limit;
        self.send_write(WriteOp::Snapshot {
            key: key.clone(),
            record,
        });
        if from != LimitState::Unknown {
            self.send_write(WriteOp::Transition {
                key: key.clone(),
                from,
                to: LimitState::Unknown,
                seats: count.seats_used,
                limit,
                cause: ErrorCode::SeatAuditFailed.as_str().into(),
                notify: None,
            });
        }
    }

    fn apply_specs(&mut self, specs: Vec<ServerSpec>) {
        let mut seen = Vec::new();
        for spec in specs {
            seen.push(spec.key.clone());
            if let Some(policies) = &self.policies {
                policies.do_send(PolicyUpdated {
                    key: spec.key.clone(),
                    policy: Some(spec.policy),
                });
            }
            match self.servers.get_mut(&spec.key) {
                Some(st) => {
                    let limit_changed = st.spec.seat_limit != spec.seat_limit;
                    if let Some(index) = st.index.as_mut() {
                        if st.spec.mapped_channels != spec.mapped_channels {
                            index.set_mapped_channels(&spec.mapped_channels);
                        }
                        if st.spec.tiers != spec.tiers {
                            index.set_tier_roles(spec.tiers);
                        }
                    }
                    st.spec = spec.clone();
                    if limit_changed {
                        // The limit is part of what the cache shows: write now.
                        st.written = None;
                    }
                    self.index_changed(&spec.key, "config_changed");
                }
                None => {
                    self.servers.insert(
                        spec.key.clone(),
                        ServerState {
                            spec,
                            index: None,
                            complete: false,
                            written: None,
                            state: LimitState::Unknown,
                            pending_write_at: None,
                        },
                    );
                }
            }
        }
        self.servers.retain(|k, _| seen.contains(k));
    }

    fn enqueue(&self, ctx: &mut Context<Self>, key: ServerKey, reason: AuditReason) {
        let queue = self.queue.clone();
        let wake = self.worker_wake.clone();
        ctx.spawn(
            async move {
                match enqueue_audit(&queue, &key, reason).await {
                    Ok(_) => wake.notify_one(),
                    Err(err) => tracing::warn!(server = %key, error = %err, "[seat-audit] could not enqueue audit"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for SeatAuditor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Ordered persistence: the actor never waits on the database for a count.
        let (tx, rx) = mpsc::unbounded_channel();
        self.writes = Some(tx);
        self.writer = Some(tokio::spawn(run_writer(
            self.store.clone(),
            self.notifier.clone(),
            rx,
        )));

        // Back from the database: configs, then the last snapshots into the cache.
        let store = self.store.clone();
        ctx.wait(
            async move { (store.servers().await, store.snapshots().await) }
                .into_actor(self)
                .map(|(servers, snapshots), act, _| {
                    match servers {
                        Ok(specs) => act.apply_specs(specs),
                        Err(err) => tracing::warn!(error = %err, "[seat-audit] could not load server configs"),
                    }
                    match snapshots {
                        Ok(rows) => {
                            let n = rows.len();
                            for (key, record) in rows {
                                if let Some(st) = act.servers.get_mut(&key) {
                                    st.state = if record.last_error.is_some() { LimitState::Unknown } else { LimitState::of(&record.count, record.seat_limit) };
                                }
                                if let Some(cache) = &act.cache {
                                    cache.do_send(SnapshotUpdated { key, snapshot: record.view() });
                                }
                            }
                            tracing::info!(snapshots = n, "[seat-audit] snapshots restored into the cache");
                        }
                        Err(err) => tracing::warn!(error = %err, "[seat-audit] could not load snapshots"),
                    }
                }),
        );

        ctx.run_interval(Duration::from_millis(100), |act, _| act.flush_due());
        ctx.run_interval(self.cfg.keepalive_interval, |act, _| act.keep_alive());
        ctx.run_interval(self.cfg.reconcile_interval, |act, ctx| {
            let keys: Vec<ServerKey> = act.servers.keys().cloned().collect();
            for key in keys {
                act.enqueue(ctx, key, AuditReason::Reconcile);
            }
        });

        if let Some(reader) = self.reader.clone() {
            let worker = AuditWorker {
                queue: self.queue.clone(),
                reader,
                auditor: ctx.address(),
                cfg: self.cfg.clone(),
                stop: self.worker_stop.clone(),
                wake: self.worker_wake.clone(),
            };
            self.worker = Some(tokio::spawn(worker.run()));
        }
        tracing::info!(worker = %self.cfg.worker_id, "[seat-audit] auditor started");
    }
}

impl Handler<GuildChange> for SeatAuditor {
    type Result = ();

    fn handle(&mut self, change: GuildChange, ctx: &mut Self::Context) {
        match change {
            GuildChange::GuildAvailable { guild } => {
                let guild_id = guild.id.get();
                let complete = guild.members.len() as u64 >= guild.member_count;
                for key in self.servers_of_guild(guild_id) {
                    if let Some(st) = self.servers.get_mut(&key) {
                        st.index = Some(GuildIndex::from_serenity_guild(
                            &guild,
                            &st.spec.mapped_channels,
                            st.spec.tiers,
                        ));
                        st.complete = complete;
                    }
                    if complete {
                        self.write_now(&key, "guild_create");
                    } else {
                        // A large guild arrives without its member list: page it over REST.
                        self.enqueue(ctx, key, AuditReason::Resync);
                    }
                }
            }
            GuildChange::GuildUnavailable { guild_id } => {
                for key in self.servers_of_guild(guild_id) {
                    if let Some(st) = self.servers.get_mut(&key) {
                        st.complete = false;
                    }
                }
            }
            GuildChange::GuildDeleted { guild_id } => {
                for key in self.servers_of_guild(guild_id) {
                    if let Some(st) = self.servers.get_mut(&key) {
                        st.complete = false;
                        st.index = None;
                    }
                    // The recount will find out (and fail) if access is really gone.
                    self.enqueue(ctx, key, AuditReason::Resync);
                }
            }
            GuildChange::MemberUpserted {
                guild_id,
                user_id,
                roles,
                bot,
            } => {
                self.each_index(guild_id, "member_upserted", |index| {
                    index.member_upsert(user_id, &roles, bot);
                });
            }
            GuildChange::MemberRemoved { guild_id, user_id } => {
                self.each_index(guild_id, "member_removed", |index| {
                    index.member_remove(user_id);
                });
            }
            GuildChange::RoleUpserted {
                guild_id,
                role_id,
                permissions,
            } => {
                self.each_index(guild_id, "role_changed", |index| {
                    index.role_upsert(role_id, permissions);
                });
            }
            GuildChange::RoleDeleted { guild_id, role_id } => {
                self.each_index(guild_id, "role_deleted", |index| {
                    index.role_remove(role_id);
                });
            }
            GuildChange::ChannelUpserted { channel } => {
                if channel.thread_metadata.is_some() {
                    return; // threads are judged by their parent
                }
                self.each_index(channel.guild_id.get(), "channel_changed", |index| {
                    index.channel_upsert_serenity(&channel);
                });
            }
            GuildChange::ChannelDeleted {
                guild_id,
                channel_id,
            } => {
                self.each_index(guild_id, "channel_deleted", |index| {
                    index.channel_remove(channel_id);
                });
            }
            GuildChange::SessionStarted { resumed_gap } => {
                self.connected = true;
                if resumed_gap {
                    // Events were lost while disconnected: recount everything.
                    let keys: Vec<ServerKey> = self.servers.keys().cloned().collect();
                    for key in keys {
                        if let Some(st) = self.servers.get_mut(&key) {
                            st.complete = false;
                        }
                        self.enqueue(ctx, key, AuditReason::Resync);
                    }
                }
            }
            GuildChange::ShardDisconnected => {
                // Stop vouching for the counts: snapshots age into stale, then expired.
                self.connected = false;
            }
            GuildChange::ShardResumed => {
                // RESUME replays what was missed: the indexes stay exact.
                self.connected = true;
            }
        }
    }
}

impl SeatAuditor {
    fn each_index(&mut self, guild_id: u64, cause: &str, mut apply: impl FnMut(&mut GuildIndex)) {
        for key in self.servers_of_guild(guild_id) {
            if let Some(index) = self.servers.get_mut(&key).and_then(|st| st.index.as_mut()) {
                apply(index);
                self.index_changed(&key, cause);
            }
        }
    }
}

impl Handler<AuditRequested> for SeatAuditor {
    type Result = ResponseActFuture<Self, AppResult<Enqueued>>;
    fn handle(&mut self, msg: AuditRequested, _: &mut Self::Context) -> Self::Result {
        // A config change is loaded before its audit is queued. Not with `ctx.wait`: that
        // would stop polling this actor's other futures, and one of them may hold the
        // database connection the reload needs (SQLite has one).
        let store = self.store.clone();
        let reload = msg.reason == AuditReason::ConfigChanged;
        let queue = self.queue.clone();
        let wake = self.worker_wake.clone();
        Box::pin(
            async move {
                if reload {
                    Some(store.servers().await)
                } else {
                    None
                }
            }
            .into_actor(self)
            .then(move |specs, act, _| {
                match specs {
                    Some(Ok(specs)) => act.apply_specs(specs),
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "[seat-audit] could not load server configs")
                    }
                    None => {}
                }
                async move {
                    let enqueued = enqueue_audit(&queue, &msg.key, msg.reason).await?;
                    wake.notify_one();
                    tracing::info!(server = %msg.key, reason = msg.reason.as_str(), job = enqueued.id, deduped = enqueued.deduped, "[seat-audit] audit requested");
                    Ok(enqueued)
                }
                .into_actor(act)
            }),
        )
    }
}

impl Handler<CountedMembers> for SeatAuditor {
    type Result = Option<Vec<u64>>;
    fn handle(&mut self, msg: CountedMembers, _: &mut Self::Context) -> Self::Result {
        self.servers
            .get(&msg.0)
            .and_then(|st| st.index.as_ref())
            .map(|i| i.counted_member_ids())
    }
}

impl Handler<CountedSeats> for SeatAuditor {
    type Result = Option<SeatPage>;
    fn handle(&mut self, msg: CountedSeats, _: &mut Self::Context) -> Self::Result {
        let st = self.servers.get(&msg.key)?;
        let all = st.index.as_ref()?.counted_members_with_tiers();
        let start = msg
            .after
            .map_or(0, |after| all.partition_point(|(id, _)| *id <= after));
        let end = start.saturating_add(msg.limit).min(all.len());
        Some(SeatPage {
            total: all.len(),
            complete: st.complete,
            items: all[start..end].to_vec(),
            more: end < all.len(),
        })
    }
}

/// From the audit worker: a recount for `key` came back.
#[derive(Message)]
#[rtype(result = "bool")]
struct RecountDone {
    key: ServerKey,
    snapshot: Box<GuildSnapshot>,
}

/// From the audit worker: the last attempt failed.
#[derive(Message)]
#[rtype(result = "()")]
struct RecountFailed {
    key: ServerKey,
    cause: String,
}

impl Handler<RecountDone> for SeatAuditor {
    type Result = ResponseActFuture<Self, bool>;
    fn handle(&mut self, msg: RecountDone, _: &mut Self::Context) -> Self::Result {
        if self.servers.contains_key(&msg.key) {
            self.apply_recount(&msg.key, &msg.snapshot);
            return Box::pin(actix::fut::ready(true));
        }
        // The server was configured after this job was queued (its request was folded into
        // this job by the dedupe key): load the configs again rather than drop the count.
        let store = self.store.clone();
        Box::pin(async move { store.servers().await }.into_actor(self).map(
            move |specs, act, _| {
                match specs {
                    Ok(specs) => act.apply_specs(specs),
                    Err(err) => tracing::warn!(error = %err, "[seat-audit] could not load server configs"),
                }
                if act.servers.contains_key(&msg.key) {
                    act.apply_recount(&msg.key, &msg.snapshot);
                    true
                } else {
                    false
                }
            },
        ))
    }
}

impl Handler<RecountFailed> for SeatAuditor {
    type Result = ();
    fn handle(&mut self, msg: RecountFailed, _: &mut Self::Context) {
        self.audit_failed(&msg.key, &msg.cause);
    }
}

impl Handler<Shutdown> for SeatAuditor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.worker_stop.store(true, Ordering::SeqCst);
        self.worker_wake.notify_one();
        let worker = self.worker.take();
        let writer = self.writer.take();
        self.writes = None; // closes the writer's channel once it drains
        let queue = self.queue.clone();
        let worker_id = self.cfg.worker_id.clone();
        Box::pin(
            async move {
                if let Some(w) = worker {
                    let _ = w.await;
                }
                if let Some(w) = writer {
                    let _ = w.await;
                }
                match queue.release_worker(&worker_id, now_ms()).await {
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

async fn run_writer(
    store: SeatAuditStore,
    notifier: Option<Arc<dyn DiscordPort>>,
    mut rx: mpsc::UnboundedReceiver<WriteOp>,
) {
    // When each server went over its limit, for the pause-to-resume histogram (in memory: a
    // pause that spans a restart is measured from the first count after the restart).
    let mut paused_at: HashMap<ServerKey, i64> = HashMap::new();
    while let Some(op) = rx.recv().await {
        let now = now_ms();
        let result = match &op {
            WriteOp::Snapshot { key, record } => store.write_snapshot(key, record, now).await,
            WriteOp::Restamp {
                key,
                checked_at,
                next_check_after,
            } => store.restamp(key, *checked_at, *next_check_after).await,
            WriteOp::Transition {
                key,
                from,
                to,
                seats,
                limit,
                cause,
                notify,
            } => {
                let t = Transition {
                    from: from.as_str(),
                    to: to.as_str(),
                    seats_used: *seats,
                    seat_limit: *limit,
                    at: now,
                    cause,
                };
                let r = store.append_event(key, &t).await;
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
                // A pause, or a resume after a pause; not the first count of a server
                // that was under all along.
                let tell = *to == LimitState::Over || *from == LimitState::Over;
                if let (true, Some(port), Some(channel)) = (tell, &notifier, notify) {
                    notify_owner(port.as_ref(), *channel, *to, *seats, *limit, now).await;
                }
                r
            }
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "[seat-audit] snapshot write failed; the next change or keep-alive writes again");
        }
    }
}

async fn notify_owner(
    port: &dyn DiscordPort,
    channel: u64,
    to: LimitState,
    seats: u64,
    limit: u64,
    now: i64,
) {
    let content = match to {
        LimitState::Over => format!(
            "Mirroring into this server is paused: {seats} members can see the mirrored channels, the licence covers {limit}. Remove access for {} member(s), or raise the licence, and mirroring resumes by itself.",
            seats.saturating_sub(limit)
        ),
        LimitState::Under => format!("Mirroring into this server has resumed: {seats} of {limit} seats in use."),
        LimitState::Unknown => return,
    };
    let nonce = format!("n{}{}", to.as_str().chars().next().unwrap_or('x'), now);
    let message = OutgoingMessage {
        content,
        ..Default::default()
    };
    if let Err(err) = port.create_message(channel, &message, &nonce).await {
        tracing::warn!(channel, error = %err, "[seat-audit] could not post the owner notice");
    }
}

/// Claims audit jobs, recounts from Discord, and hands the result to the auditor.
struct AuditWorker {
    queue: AuditQueue,
    reader: Arc<dyn GuildReader>,
    auditor: Addr<SeatAuditor>,
    cfg: SeatAuditorConfig,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl AuditWorker {
    async fn run(self) {
        while !self.stop.load(Ordering::SeqCst) {
            let jobs = match self
                .queue
                .claim(&self.cfg.worker_id, 4, self.cfg.lease, now_ms())
                .await
            {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(error = %err, "[seat-audit] claim failed");
                    Vec::new()
                }
            };
            if jobs.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {},
                    _ = tokio::time::sleep(self.cfg.poll) => {},
                }
                continue;
            }
            for job in jobs {
                if let Err(err) = self.run_job(&job).await {
                    tracing::warn!(job = job.id, error = %err, "[seat-audit] job bookkeeping failed; its lease will expire");
                }
            }
        }
    }

    async fn run_job(&self, job: &entities::discord_seat_audit_jobs::Model) -> AppResult<()> {
        let key = ServerKey {
            tenant_key: job.tenant_key.clone(),
            connector_id: job.connector_id.clone(),
            guild_id: snowflake::from_db(job.guild_id),
        };
        let token = job.claim_token.clone().unwrap_or_default();
        let started = std::time::Instant::now();
        match self.reader.fetch_guild(key.guild_id).await {
            Ok(snapshot) => {
                let members = snapshot.members.len();
                let applied = self
                    .auditor
                    .send(RecountDone {
                        key: key.clone(),
                        snapshot: Box::new(snapshot),
                    })
                    .await
                    .map_err(|e| AppError::internal(format!("auditor gone: {e}")))?;
                self.queue.complete(job.id, &token, now_ms()).await?;
                metrics::counter!("seatgate_seat_audits_total", "result" => "ok").increment(1);
                tracing::info!(server = %key, members, applied, reason = %job.reason, elapsed_ms = started.elapsed().as_millis() as u64, "[seat-audit] recount done");
            }
            Err(err) => {
                let cause = format!("{}: {err}", err.code());
                let outcome = self
                    .queue
                    .fail(job, &cause, now_ms(), rand::random::<f64>())
                    .await?;
                metrics::counter!("seatgate_seat_audits_total", "result" => "failed").increment(1);
                tracing::warn!(server = %key, cause = %cause, ?outcome, "[seat-audit] recount failed");
                if outcome == FailOutcome::Failed {
                    let _ = self.auditor.send(RecountFailed { key, cause }).await;
                }
            }
        }
        Ok(())
    }
}
