//! Seat auditor: one live seat-engine index per configured server, fed by gateway events in
//! gateway order; a count is published (a fresh snapshot to the cache and the database, an
//! enforcement event, an owner notice) only from an index that holds the guild's whole member
//! list and every event since; durable audit jobs recount from Discord's REST API, with the
//! events that arrive meanwhile applied on top; keep-alive re-stamping while the count is
//! known to be live.
//!
//! Files: `messages` what it receives, `registry` the per-server state, `writer` the ordered
//! database writer and owner notices, `worker` the audit worker.

mod messages;
mod registry;
mod worker;
mod writer;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::prelude::*;
use tokio::sync::{mpsc, Notify};

pub use messages::{
    audit_dedupe_key, enqueue_audit, enqueue_audit_at, AuditReason, AuditRequested, CountedMembers,
    CountedSeats, GuildChange, SeatPage,
};
pub use registry::Progress;
pub use worker::MEMBER_PAGE;

use messages::{RecountDone, RecountFailed, RecountPlan, RecountProgress, RecountStarting};
use registry::{Recount, Registry, ServerState};
use writer::WriteOp;

use super::{
    snapshot_cache::{PolicyUpdated, SnapshotUpdated},
    Shutdown,
};
use crate::{
    discord::{
        port::{DiscordPort, GuildReader},
        shards::ShardStates,
    },
    domain::{
        audit::{self, LimitState, WriteDecision, Written},
        freshness::Freshness,
        seats::{GuildIndex, GuildSnapshot},
        server_key::ServerKey,
    },
    error::{AppResult, ErrorCode},
    store::{
        now_ms,
        queue::{AuditQueue, Enqueued},
        seat_audit::{SeatAuditStore, ServerSpec, SnapshotRecord},
    },
};

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

/// How often a count still arriving is shown in the snapshot (the member list pages come
/// faster than anyone reads them).
const PROGRESS_EVERY_MS: i64 = 1_000;

pub struct SeatAuditor {
    store: SeatAuditStore,
    queue: AuditQueue,
    reader: Option<Arc<dyn GuildReader>>,
    notifier: Option<Arc<dyn DiscordPort>>,
    cache: Option<Recipient<SnapshotUpdated>>,
    policies: Option<Recipient<PolicyUpdated>>,
    cfg: SeatAuditorConfig,
    servers: Registry,
    connected: bool,
    writes: Option<mpsc::UnboundedSender<WriteOp>>,
    worker_stop: Arc<AtomicBool>,
    worker_wake: Arc<Notify>,
    worker: Option<tokio::task::JoinHandle<()>>,
    writer: Option<tokio::task::JoinHandle<()>>,
    /// When each server's progress was last written.
    progress_written: std::collections::HashMap<ServerKey, i64>,
    /// The shards this process runs: with shard leases, a guild on another process's shard
    /// is that process's to count, write and tell its owner about.
    shards: ShardStates,
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
            servers: Registry::default(),
            connected: false,
            writes: None,
            worker_stop: Arc::new(AtomicBool::new(false)),
            worker_wake: Arc::new(Notify::new()),
            worker: None,
            writer: None,
            progress_written: Default::default(),
            shards: ShardStates::default(),
        }
    }

    /// Which guilds this process owns (all of them unless shards are leased).
    pub fn with_shards(mut self, shards: ShardStates) -> Self {
        self.shards = shards;
        self
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

    fn ms(d: Duration) -> i64 {
        d.as_millis() as i64
    }

    /// The index changed: publish its count now, later (debounced), or not at all when
    /// nothing a reader could see changed. Nothing is published from an incomplete index.
    fn publish(&mut self, key: &ServerKey, cause: &str) {
        let now = now_ms();
        let Some(st) = self.servers.get_mut(key) else {
            return;
        };
        if !st.complete {
            return;
        }
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

    /// Writes the server's complete live count as a fresh snapshot, to the cache at once and
    /// to the database through the ordered writer, with its transition and notice if any.
    fn write_now(&mut self, key: &ServerKey, cause: &str) {
        if !self.shards.carries(key.guild_id) {
            return;
        }
        let now = now_ms();
        let recheck = Self::ms(self.cfg.recheck);
        let recheck_over = Self::ms(self.cfg.recheck_over_limit);
        let Some(st) = self.servers.get_mut(key) else {
            return;
        };
        if !st.complete {
            return;
        }
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
        st.failed = false;
        st.progress = None;
        st.recheck_at = None;
        let to = LimitState::of(&count, limit);
        let from = st.state;
        st.state = to;
        // A pause, and the resume after a pause; not the first count of a server that was
        // under all along, and not a second pause the owner was already told about.
        let tell = match to {
            LimitState::Over => st.told != LimitState::Over,
            LimitState::Under => st.told == LimitState::Over,
            LimitState::Unknown => false,
        };
        if tell {
            st.told = to;
        }
        let notify = st.spec.notify_channel_id.filter(|_| tell);
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
        if from != to {
            self.send_write(WriteOp::Transition {
                key: key.clone(),
                from,
                to,
                seats: count.seats_used,
                limit,
                cause: cause.to_owned(),
                notify,
            });
        }
    }

    /// Shows how far a member list has got (at most once a second per server, and always
    /// when `force`): the snapshot says `seat_check_pending` meanwhile.
    fn show_progress(&mut self, key: &ServerKey, force: bool) {
        if !self.shards.carries(key.guild_id) {
            return;
        }
        let now = now_ms();
        let Some(st) = self.servers.get(key) else {
            return;
        };
        // A failed audit keeps saying so while it is retried.
        let Some(progress) = st.progress.filter(|_| !st.complete && !st.failed) else {
            return;
        };
        let last = self.progress_written.get(key).copied().unwrap_or(i64::MIN);
        if !force && now - last < PROGRESS_EVERY_MS {
            return;
        }
        let seat_limit = st.spec.seat_limit;
        self.progress_written.insert(key.clone(), now);
        self.send_write(WriteOp::Counting {
            key: key.clone(),
            progress,
            seat_limit,
        });
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
            .iter_mut()
            .filter(|(_, st)| st.pending_write_at.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.write_now(&key, "debounced");
        }
    }

    /// Servers whose count is still not complete at their recheck time get a recount asked
    /// for (a failed audit is retried this way, at the `next_check_after` it wrote).
    fn recheck_due(&mut self) {
        let now = now_ms();
        let recheck = Self::ms(self.cfg.recheck);
        let mut due = Vec::new();
        for (key, st) in self.servers.iter_mut() {
            if st.complete || st.recount.is_some() {
                continue;
            }
            match st.recheck_at {
                Some(at) if at <= now => {
                    let reason = if st.failed {
                        AuditReason::RetryFailed
                    } else {
                        AuditReason::Recheck
                    };
                    st.recheck_at = Some(now + recheck);
                    due.push((key.clone(), reason));
                }
                Some(_) => {}
                None => st.recheck_at = Some(now + recheck),
            }
        }
        for (key, reason) in due {
            self.enqueue(key, reason);
        }
    }

    fn keep_alive(&mut self) {
        if !self.connected {
            return;
        }
        let now = now_ms();
        let recheck = Self::ms(self.cfg.recheck);
        let recheck_over = Self::ms(self.cfg.recheck_over_limit);
        let mut ops = Vec::new();
        for (key, st) in self.servers.iter_mut() {
            if !st.complete || st.pending_write_at.is_some() || st.index.is_none() {
                continue;
            }
            let Some(written) = st.written.as_mut() else {
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

    /// The guild's events may have been missed: its servers publish nothing until a recount
    /// (asked for here) makes their counts exact again.
    fn lose_track(&mut self, key: &ServerKey, reason: AuditReason) {
        let recheck = Self::ms(self.cfg.recheck);
        if let Some(st) = self.servers.get_mut(key) {
            st.lose_track();
            st.recheck_at = Some(now_ms() + recheck);
            if st.progress.is_none() {
                st.progress = Some(Progress {
                    members: 0,
                    member_count: None,
                });
            }
        }
        self.show_progress(key, true);
        self.enqueue(key.clone(), reason);
    }

    /// A recount came back: the events since it started reading are applied on top, the
    /// server's current config is applied, and the count is published.
    fn apply_recount(&mut self, key: &ServerKey, job_id: i64, mut fresh: GuildIndex) -> bool {
        let Some(st) = self.servers.get_mut(key) else {
            return false;
        };
        let recount = match st.recount.take() {
            Some(r) if r.job_id == job_id => r,
            other => {
                st.recount = other;
                return false;
            }
        };
        if recount.redo {
            tracing::info!(server = %key, "[seat-audit] events were lost while the recount ran; counting again");
            self.enqueue(key.clone(), AuditReason::Resync);
            return false;
        }
        for event in &recount.events {
            fresh.apply(event);
        }
        if fresh.tier_roles() != st.spec.tiers {
            fresh.set_tier_roles(st.spec.tiers);
        }
        fresh.set_mapped_channels(&st.spec.mapped_channels);
        let new = fresh.seat_count();
        if let (true, Some(live)) = (st.complete, &st.index) {
            let old = live.seat_count();
            let drift = new.seats_used as i64 - old.seats_used as i64;
            if drift != 0 {
                metrics::counter!("seatgate_seat_audit_drift_total")
                    .increment(drift.unsigned_abs());
                tracing::warn!(server = %key, live = old.seats_used, recount = new.seats_used, drift, "[seat-audit] drift between live count and recount");
            }
        }
        tracing::debug!(server = %key, replayed = recount.events.len(), "[seat-audit] events of the recount applied");
        st.index = Some(fresh);
        st.complete = true;
        // A recount always writes: it refreshes checked_at and clears a failed audit.
        st.written = None;
        self.write_now(key, "audit");
        true
    }

    /// The last attempt of an audit failed. A server whose live count is complete keeps it
    /// (the recount was only a check); one without is blocked with `seat_audit_failed` and
    /// counted again at its `next_check_after`, until an audit succeeds.
    fn audit_failed(&mut self, key: &ServerKey, cause: &str) {
        if !self.shards.carries(key.guild_id) {
            return;
        }
        let now = now_ms();
        // Tried again after the queue's longest backoff, until an audit succeeds; a guild
        // the bot is not in at the recheck interval (it may be invited any time).
        let not_in_guild = cause.starts_with(ErrorCode::BotNotInGuild.as_str());
        let retry_at = if not_in_guild {
            now + Self::ms(self.cfg.recheck)
        } else {
            now + Self::ms(self.queue.policy().cap)
        };
        let Some(st) = self.servers.get_mut(key) else {
            return;
        };
        if st.complete {
            tracing::warn!(server = %key, cause, "[seat-audit] recount failed for good; the live count stands");
            return;
        }
        let (count, checked_at) = match &st.written {
            Some(w) => (w.count, w.at_ms),
            None => (Default::default(), now),
        };
        let record = SnapshotRecord {
            count,
            seat_limit: st.spec.seat_limit,
            checked_at,
            next_check_after: retry_at,
            status: Freshness::Expired,
            last_error: Some(if not_in_guild {
                cause.to_owned()
            } else {
                format!("{}: {cause}", ErrorCode::SeatAuditFailed)
            }),
        };
        st.failed = true;
        st.recheck_at = Some(retry_at);
        let from = st.state;
        st.state = LimitState::Unknown;
        tracing::error!(server = %key, cause, retry_in_s = (retry_at - now) / 1000, "[seat-audit] {}", ErrorCode::SeatAuditFailed);
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
        let mut resync = Vec::new();
        for spec in specs {
            seen.push(spec.key.clone());
            if let Some(policies) = &self.policies {
                policies.do_send(PolicyUpdated {
                    key: spec.key.clone(),
                    policy: Some(spec.policy),
                });
            }
            let key = spec.key.clone();
            match self.servers.get_mut(&key) {
                Some(st) => {
                    let limit_changed = st.spec.seat_limit != spec.seat_limit;
                    if let Some(index) = st.index.as_mut() {
                        if st.spec.mapped_channels != spec.mapped_channels {
                            index.set_mapped_channels(&spec.mapped_channels);
                            if st.complete && !index.unresolved_targets().is_empty() {
                                resync.push(key.clone());
                            }
                        }
                        if st.spec.tiers != spec.tiers {
                            index.set_tier_roles(spec.tiers);
                        }
                    }
                    st.spec = spec;
                    if limit_changed {
                        // The limit is part of what the cache shows: write now.
                        st.written = None;
                    }
                    self.publish(&key, "config_changed");
                }
                None => {
                    self.servers.insert(key, ServerState::new(spec));
                }
            }
        }
        for key in self.servers.retain(&seen) {
            self.progress_written.remove(&key);
        }
        for key in resync {
            // A new target the index cannot place (a thread GUILD_CREATE did not list).
            self.lose_track(&key, AuditReason::ConfigChanged);
        }
    }

    /// Enqueues an audit in the background (the actor never waits on the database).
    fn enqueue(&self, key: ServerKey, reason: AuditReason) {
        let queue = self.queue.clone();
        let wake = self.worker_wake.clone();
        tokio::spawn(async move {
            match enqueue_audit(&queue, &key, reason).await {
                Ok(_) => wake.notify_one(),
                Err(err) => {
                    tracing::warn!(server = %key, error = %err, "[seat-audit] could not enqueue audit")
                }
            }
        });
    }

    /// GUILD_CREATE: a new index for every server of the guild. Complete (and published at
    /// once) when the guild came with its whole member list and every target is known;
    /// otherwise counting until a recount brings the member list.
    fn guild_available(&mut self, guild: &GuildSnapshot, member_count: u64) {
        let members_complete = guild.members.len() as u64 >= member_count;
        for key in self.servers.of_guild(guild.guild_id) {
            let Some(st) = self.servers.get_mut(&key) else {
                continue;
            };
            let index = GuildIndex::build(guild, &st.spec.mapped_channels, st.spec.tiers);
            let complete = members_complete && index.unresolved_targets().is_empty();
            st.index = Some(index);
            if let Some(r) = &mut st.recount {
                // It read Discord before this GUILD_CREATE: after a gap or an outage.
                r.redo = true;
                r.events = Vec::new();
            }
            if complete {
                st.complete = true;
                st.written = None;
                self.write_now(&key, "guild_create");
            } else {
                st.complete = false;
                st.progress = Some(Progress {
                    members: guild.members.len() as u64,
                    member_count: Some(member_count),
                });
                // A large guild arrives without its member list: page it over REST.
                self.lose_track(&key, AuditReason::Resync);
            }
        }
    }
}

impl Actor for SeatAuditor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Ordered persistence: the actor never waits on the database for a count.
        let (tx, rx) = mpsc::unbounded_channel();
        self.writes = Some(tx);
        self.writer = Some(tokio::spawn(writer::run_writer(
            self.store.clone(),
            self.notifier.clone(),
            writer::Fencing {
                shards: self.shards.clone(),
                holder: self.cfg.worker_id.clone(),
            },
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
                            let now = now_ms();
                            for (key, record) in rows {
                                let view = record.view();
                                if let Some(st) = act.servers.get_mut(&key) {
                                    let counted = !view.audit_failed && record.checked_at > 0;
                                    st.state = if counted { LimitState::of(&record.count, record.seat_limit) } else { LimitState::Unknown };
                                    // The owner was told of the pause this snapshot shows.
                                    st.told = st.state;
                                    st.failed = view.audit_failed;
                                    if view.audit_failed {
                                        st.recheck_at = Some(record.next_check_after.max(now));
                                    }
                                }
                                if let Some(cache) = &act.cache {
                                    cache.do_send(SnapshotUpdated { key, snapshot: view });
                                }
                            }
                            tracing::info!(snapshots = n, "[seat-audit] snapshots restored into the cache");
                        }
                        Err(err) => tracing::warn!(error = %err, "[seat-audit] could not load snapshots"),
                    }
                }),
        );

        ctx.run_interval(Duration::from_millis(100), |act, _| act.flush_due());
        ctx.run_interval(Duration::from_secs(1), |act, _| act.recheck_due());
        ctx.run_interval(self.cfg.keepalive_interval, |act, _| act.keep_alive());
        ctx.run_interval(self.cfg.reconcile_interval, |act, _| {
            for key in act.servers.keys() {
                act.enqueue(key, AuditReason::Reconcile);
            }
        });

        if let Some(reader) = self.reader.clone() {
            let worker = worker::AuditWorker {
                queue: self.queue.clone(),
                reader,
                auditor: ctx.address(),
                cfg: self.cfg.clone(),
                stop: self.worker_stop.clone(),
                wake: self.worker_wake.clone(),
                shards: self.shards.clone(),
            };
            self.worker = Some(tokio::spawn(worker.run()));
        }
        tracing::info!(worker = %self.cfg.worker_id, "[seat-audit] auditor started");
    }
}

impl Handler<GuildChange> for SeatAuditor {
    type Result = ();

    fn handle(&mut self, change: GuildChange, _: &mut Self::Context) {
        match change {
            GuildChange::GuildAvailable {
                guild,
                member_count,
            } => self.guild_available(&guild, member_count),
            GuildChange::GuildUnavailable { guild_id } => {
                // An outage: the last count stands in the snapshot and ages; nothing is
                // counted from what is not known.
                for key in self.servers.of_guild(guild_id) {
                    if let Some(st) = self.servers.get_mut(&key) {
                        st.lose_track();
                    }
                }
            }
            GuildChange::GuildDeleted { guild_id } => {
                for key in self.servers.of_guild(guild_id) {
                    if let Some(st) = self.servers.get_mut(&key) {
                        st.index = None;
                    }
                    // The recount finds out (and fails) if access is really gone.
                    self.lose_track(&key, AuditReason::Resync);
                }
            }
            GuildChange::Event { guild_id, event } => {
                let cause = match &event {
                    e if e.user_id().is_some() => "member_changed",
                    _ => "guild_changed",
                };
                for key in self.servers.of_guild(guild_id) {
                    if let Some(st) = self.servers.get_mut(&key) {
                        st.apply(&event);
                    }
                    self.publish(&key, cause);
                }
            }
            GuildChange::SessionStarted { shard, resumed_gap } => {
                self.connected = true;
                if resumed_gap {
                    // The shard's events were lost while it was disconnected: recount its
                    // guilds.
                    for key in self.servers.keys() {
                        if shard.carries(key.guild_id) {
                            self.lose_track(&key, AuditReason::Resync);
                        }
                    }
                }
            }
            GuildChange::ShardReleased { shard } => {
                for key in self.servers.keys() {
                    if shard.carries(key.guild_id) {
                        if let Some(st) = self.servers.get_mut(&key) {
                            st.lose_track();
                        }
                    }
                }
            }
            GuildChange::OrderLost { guild_id } => {
                for key in self.servers.of_guild(guild_id) {
                    self.lose_track(&key, AuditReason::Resync);
                }
            }
            GuildChange::Gateway { connected } => {
                // Stop vouching for the counts while disconnected: snapshots age into stale,
                // then expired; RESUME replays what was missed, so the indexes stay exact.
                self.connected = connected;
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
        let mut all = st.index.as_ref()?.counted_members_with_tiers();
        let total = all.len();
        let matched = msg.only.as_ref().map(|only| {
            all.retain(|(id, _)| only.binary_search(id).is_ok());
            all.len()
        });
        let start = msg
            .after
            .map_or(0, |after| all.partition_point(|(id, _)| *id <= after));
        let end = start.saturating_add(msg.limit).min(all.len());
        let index = st.index.as_ref()?;
        let reasons = all[start..end]
            .iter()
            .map(|(id, _)| index.sight_reasons(*id).unwrap_or_default())
            .collect();
        Some(SeatPage {
            total,
            complete: st.complete,
            items: all[start..end].to_vec(),
            reasons,
            summary: index.sight_summary(),
            more: end < all.len(),
            matched,
        })
    }
}

impl Handler<RecountStarting> for SeatAuditor {
    type Result = ResponseActFuture<Self, Option<RecountPlan>>;
    fn handle(&mut self, msg: RecountStarting, _: &mut Self::Context) -> Self::Result {
        let reload = !self.servers.contains(&msg.key);
        let store = self.store.clone();
        Box::pin(
            async move {
                if reload {
                    // Configured after this job was queued (its request was folded into this
                    // job by the dedupe key): load the configs rather than drop the count.
                    Some(store.servers().await)
                } else {
                    None
                }
            }
            .into_actor(self)
            .map(move |specs, act, _| {
                match specs {
                    Some(Ok(specs)) => act.apply_specs(specs),
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "[seat-audit] could not load server configs")
                    }
                    None => {}
                }
                let st = act.servers.get_mut(&msg.key)?;
                st.recount = Some(Recount::new(msg.job_id));
                let member_count = st.progress.and_then(|p| p.member_count);
                let plan = RecountPlan {
                    mapped_channels: st.spec.mapped_channels.clone(),
                    tiers: st.spec.tiers,
                    member_count,
                };
                if !st.complete {
                    st.progress = Some(Progress {
                        members: 0,
                        member_count,
                    });
                    act.show_progress(&msg.key, true);
                }
                Some(plan)
            }),
        )
    }
}

impl Handler<RecountProgress> for SeatAuditor {
    type Result = ();
    fn handle(&mut self, msg: RecountProgress, _: &mut Self::Context) {
        let Some(st) = self.servers.get_mut(&msg.key) else {
            return;
        };
        if st.complete || st.recount.as_ref().is_none_or(|r| r.job_id != msg.job_id) {
            return;
        }
        st.progress = Some(Progress {
            members: msg.members,
            member_count: msg.member_count,
        });
        self.show_progress(&msg.key, false);
    }
}

impl Handler<RecountDone> for SeatAuditor {
    type Result = bool;
    fn handle(&mut self, msg: RecountDone, _: &mut Self::Context) -> bool {
        self.apply_recount(&msg.key, msg.job_id, *msg.index)
    }
}

impl Handler<RecountFailed> for SeatAuditor {
    type Result = ();
    fn handle(&mut self, msg: RecountFailed, _: &mut Self::Context) {
        if let Some(st) = self.servers.get_mut(&msg.key) {
            if st.recount.as_ref().is_some_and(|r| r.job_id == msg.job_id) {
                st.recount = None;
            }
            if !msg.for_good {
                // The queue retries it with its backoff: no recheck meanwhile (it would pull
                // the retry earlier).
                st.recheck_at = Some(i64::MAX);
            }
        }
        if msg.for_good {
            self.audit_failed(&msg.key, &msg.cause);
        }
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
