//! Mirror gate: the mirror queue worker. Claims due mirror jobs, decides each from the
//! snapshot cache alone (`domain::gate::decide`: no database read, no Discord call), delivers
//! the allowed ones through the Discord port, and holds the blocked ones pending with their
//! code until the server's state changes.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use futures_util::{stream, StreamExt};
use tokio::sync::Notify;

use super::{
    seat_auditor::{AuditReason, AuditRequested},
    snapshot_cache::SnapshotCache,
    ServerKey, Shutdown,
};
use crate::{
    discord::port::{DiscordError, DiscordPort, OutgoingMessage, Persona, WebhookCredentials},
    domain::{
        freshness::FreshnessWindows,
        gate::{self, GateDecision, JobKind},
        mirror::{is_expired, parse_kind, send_nonce},
        snowflake,
    },
    error::{AppResult, ErrorCode},
    store::{
        mirror::{decode, MirrorStore, CANCELLED, EXPIRED},
        now_ms,
        queue::FAILED,
    },
};
use entities::mirror_jobs::Model as MirrorJob;

/// Something changed that may create work: check the queue now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Wake;

/// A server's gate state changed (limit crossed, snapshot refreshed, policy changed): jobs
/// held back for it should be looked at again now rather than at their retry time.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct HeldJobsMayResume(pub ServerKey);

#[derive(Debug, Clone)]
pub struct MirrorGateConfig {
    pub worker_id: String,
    pub lease: Duration,
    pub batch: u64,
    /// Target channels delivered to at once (each channel's jobs go in order).
    pub concurrency: usize,
    /// Fallback poll when nothing wakes the gate.
    pub poll: Duration,
    /// When a held job is looked at again if nothing wakes it sooner.
    pub held_retry: Duration,
    pub max_age: Duration,
    pub windows: FreshnessWindows,
}

impl MirrorGateConfig {
    pub fn new(worker_id: String) -> Self {
        Self {
            worker_id,
            lease: Duration::from_secs(60),
            batch: 64,
            concurrency: 16,
            poll: Duration::from_secs(2),
            held_retry: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
            windows: FreshnessWindows::default(),
        }
    }
}

/// Everything the worker loop needs; shared by its tasks.
struct Worker {
    store: MirrorStore,
    cache: SnapshotCache,
    port: Arc<dyn DiscordPort>,
    auditor: Option<Recipient<AuditRequested>>,
    cfg: MirrorGateConfig,
    notify: Notify,
    stopping: AtomicBool,
    audit_asked: std::sync::Mutex<HashMap<ServerKey, Instant>>,
    /// Until when Discord told us to wait: per target channel (its message bucket) and for
    /// the whole token (a global 429). Jobs due before then are put back without a request,
    /// so one 429 does not turn into one 429 per queued job.
    rate_limited: std::sync::Mutex<RateLimitHolds>,
}

#[derive(Default)]
struct RateLimitHolds {
    global: Option<Instant>,
    channels: HashMap<i64, Instant>,
}

impl RateLimitHolds {
    /// How long a delivery to `channel` must still wait, if at all.
    fn wait(&mut self, channel: i64, now: Instant) -> Option<Duration> {
        self.channels.retain(|_, until| *until > now);
        let global = self.global.filter(|until| *until > now);
        self.global = global;
        let until = match (global, self.channels.get(&channel).copied()) {
            (Some(g), Some(c)) => g.max(c),
            (g, c) => g.or(c)?,
        };
        Some(until - now)
    }

    fn hold(&mut self, channel: i64, global: bool, wait: Duration) {
        let until = Instant::now() + wait;
        if global {
            self.global = Some(self.global.map_or(until, |g| g.max(until)));
        } else {
            let entry = self.channels.entry(channel).or_insert(until);
            *entry = (*entry).max(until);
        }
    }
}

pub struct MirrorGate {
    worker: Option<Arc<Worker>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    store: MirrorStore,
    cfg: MirrorGateConfig,
}

impl MirrorGate {
    /// `port` is `None` when no Discord connection is configured: jobs then stay pending.
    pub fn new(
        store: MirrorStore,
        cache: SnapshotCache,
        port: Option<Arc<dyn DiscordPort>>,
        auditor: Option<Recipient<AuditRequested>>,
        cfg: MirrorGateConfig,
    ) -> Self {
        let worker = port.map(|port| {
            Arc::new(Worker {
                store: store.clone(),
                cache,
                port,
                auditor,
                cfg: cfg.clone(),
                notify: Notify::new(),
                stopping: AtomicBool::new(false),
                audit_asked: Default::default(),
                rate_limited: Default::default(),
            })
        });
        Self {
            worker,
            handle: None,
            store,
            cfg,
        }
    }
}

impl Actor for MirrorGate {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        match &self.worker {
            Some(worker) => {
                let worker = worker.clone();
                self.handle = Some(tokio::spawn(async move { worker.run().await }));
                tracing::info!(worker = %self.cfg.worker_id, "[mirror] gate started");
            }
            None => {
                tracing::warn!("[mirror] gate started without a Discord port: jobs stay pending")
            }
        }
    }
}

impl Handler<Wake> for MirrorGate {
    type Result = ();
    fn handle(&mut self, _: Wake, _: &mut Self::Context) {
        if let Some(w) = &self.worker {
            w.notify.notify_one();
        }
    }
}

impl Handler<HeldJobsMayResume> for MirrorGate {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: HeldJobsMayResume, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let worker = self.worker.clone();
        Box::pin(async move {
            match store.release_held(&msg.0, now_ms()).await {
                Ok(n) if n > 0 => {
                    tracing::info!(server = %msg.0, jobs = n, "[mirror] server state changed; held jobs due now")
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(server = %msg.0, error = %err, "[mirror] could not release held jobs")
                }
            }
            if let Some(w) = worker {
                w.notify.notify_one();
            }
        })
    }
}

impl Handler<Shutdown> for MirrorGate {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let worker = self.worker.clone();
        let handle = self.handle.take();
        let queue = self.store.queue().clone();
        let worker_id = self.cfg.worker_id.clone();
        Box::pin(
            async move {
                if let Some(w) = worker {
                    w.stopping.store(true, Ordering::SeqCst);
                    w.notify.notify_one();
                }
                if let Some(h) = handle {
                    // In-flight deliveries finish; no new claims start.
                    let _ = h.await;
                }
                match queue.release_worker(&worker_id, now_ms()).await {
                    Ok(n) => tracing::info!(released = n, "[mirror] leases released"),
                    Err(err) => tracing::warn!(error = %err, "[mirror] could not release leases"),
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

/// How one delivery attempt ended.
enum Delivery {
    Done,
    RateLimited {
        wait: Duration,
        global: bool,
    },
    /// Permanent for the target: mark the mapping broken.
    Broken(ErrorCode),
    /// Retry with backoff.
    Failed(String),
    /// The webhook vanished; it is forgotten and the job runs again at once.
    WebhookGone,
}

impl Worker {
    async fn run(self: Arc<Self>) {
        while !self.stopping.load(Ordering::SeqCst) {
            let claimed = self
                .store
                .queue()
                .claim(
                    &self.cfg.worker_id,
                    self.cfg.batch,
                    self.cfg.lease,
                    now_ms(),
                )
                .await;
            let jobs = match claimed {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(error = %err, "[mirror] claim failed; retrying");
                    self.idle().await;
                    continue;
                }
            };
            if jobs.is_empty() {
                self.idle().await;
                continue;
            }
            // One lane per target channel keeps each channel's messages in order.
            let mut lanes: BTreeMap<i64, Vec<MirrorJob>> = BTreeMap::new();
            for job in jobs {
                lanes.entry(job.target_channel_id).or_default().push(job);
            }
            // RETURNING gives no order: within a channel, deliver in the order the source
            // messages were ingested.
            for lane in lanes.values_mut() {
                lane.sort_by_key(|j| j.id);
            }
            stream::iter(lanes.into_values())
                .for_each_concurrent(self.cfg.concurrency, |lane| {
                    let me = self.clone();
                    async move {
                        for job in lane {
                            if let Err(err) = me.process(&job).await {
                                tracing::warn!(job = job.id, error = %err, "[mirror] job bookkeeping failed; the lease will expire and it runs again");
                            }
                        }
                    }
                })
                .await;
        }
    }

    async fn idle(&self) {
        tokio::select! {
            _ = self.notify.notified() => {},
            _ = tokio::time::sleep(self.cfg.poll) => {},
        }
    }

    async fn process(&self, job: &MirrorJob) -> AppResult<()> {
        let queue = self.store.queue();
        let token = job.claim_token.clone().unwrap_or_default();
        let now = now_ms();
        let Some(kind) = parse_kind(&job.kind) else {
            queue
                .finish_as(
                    job.id,
                    &token,
                    FAILED,
                    "validation_failed: unknown job kind",
                    now,
                )
                .await?;
            return Ok(());
        };
        if is_expired(
            kind,
            job.created_at,
            now,
            self.cfg.max_age.as_millis() as i64,
        ) {
            tracing::info!(job = job.id, "[mirror] {}", ErrorCode::MirrorJobExpired);
            queue
                .finish_as(
                    job.id,
                    &token,
                    EXPIRED,
                    ErrorCode::MirrorJobExpired.as_str(),
                    now,
                )
                .await?;
            return Ok(());
        }
        let key = ServerKey {
            tenant_key: job.tenant_key.clone(),
            connector_id: job.connector_id.clone(),
            guild_id: snowflake::from_db(job.target_guild_id),
        };
        let decision = gate::decide(
            self.cache.kill_switch(),
            self.cache.policy(&key).as_ref(),
            self.cache.snapshot(&key).as_ref(),
            kind,
            now,
            &self.cfg.windows,
        );
        if decision.enqueue_audit() {
            self.ask_for_audit(&key);
        }
        match decision {
            GateDecision::Block { code, .. } => {
                metrics::counter!("seatgate_mirror_jobs_blocked_total", "reason" => code.as_str())
                    .increment(1);
                tracing::debug!(job = job.id, server = %key, code = %code, "[mirror] held");
                let run_after = now + self.cfg.held_retry.as_millis() as i64;
                queue
                    .release(job.id, &token, run_after, Some(code.as_str()), true, now)
                    .await?;
                return Ok(());
            }
            GateDecision::AllowShadow { would_block, .. } => {
                tracing::info!(job = job.id, server = %key, code = %would_block, "[mirror] would block (shadow mode)");
            }
            GateDecision::Allow { .. } => {}
        }
        let hold = self
            .rate_limited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wait(job.target_channel_id, Instant::now());
        if let Some(wait) = hold {
            // Discord asked us to wait: no request until then; not an attempt.
            queue
                .release(
                    job.id,
                    &token,
                    now + wait.as_millis() as i64 + 1,
                    Some(ErrorCode::DiscordRateLimited.as_str()),
                    true,
                    now,
                )
                .await?;
            return Ok(());
        }
        let delivery = self.deliver(job, kind).await?;
        let now = now_ms();
        match delivery {
            Delivery::Done => {
                queue.complete(job.id, &token, now).await?;
                let latency = (now - job.created_at).max(0) as f64 / 1000.0;
                metrics::histogram!("seatgate_mirror_latency_seconds").record(latency);
            }
            Delivery::RateLimited { wait, global } => {
                metrics::counter!("seatgate_mirror_rate_limited_total", "global" => if global { "true" } else { "false" })
                    .increment(1);
                self.rate_limited
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .hold(job.target_channel_id, global, wait);
                tracing::debug!(
                    job = job.id,
                    wait_ms = wait.as_millis() as u64,
                    "[mirror] rate limited; rescheduled"
                );
                queue
                    .release(
                        job.id,
                        &token,
                        now + wait.as_millis() as i64,
                        Some(ErrorCode::DiscordRateLimited.as_str()),
                        true,
                        now,
                    )
                    .await?;
            }
            Delivery::WebhookGone => {
                queue
                    .release(
                        job.id,
                        &token,
                        now,
                        Some(ErrorCode::DiscordUnknownWebhook.as_str()),
                        false,
                        now,
                    )
                    .await?;
            }
            Delivery::Broken(code) => {
                tracing::warn!(job = job.id, mapping = job.mapping_id, code = %code, "[mirror] target refused for good; mapping marked broken");
                self.store.mark_broken(job.mapping_id, code, now).await?;
                queue
                    .finish_as(job.id, &token, FAILED, code.as_str(), now)
                    .await?;
            }
            Delivery::Failed(error) => {
                let jitter = rand::random::<f64>();
                let outcome = queue.fail(job, &error, now, jitter).await?;
                tracing::info!(job = job.id, error = %error, ?outcome, "[mirror] delivery failed");
            }
        }
        Ok(())
    }

    fn ask_for_audit(&self, key: &ServerKey) {
        let Some(auditor) = &self.auditor else { return };
        let mut asked = self.audit_asked.lock().unwrap_or_else(|p| p.into_inner());
        let due = asked
            .get(key)
            .is_none_or(|at| at.elapsed() > Duration::from_secs(5));
        if due {
            asked.insert(key.clone(), Instant::now());
            auditor.do_send(AuditRequested {
                key: key.clone(),
                reason: AuditReason::SnapshotMissing,
            });
        }
    }

    async fn deliver(&self, job: &MirrorJob, kind: JobKind) -> AppResult<Delivery> {
        let Some(mapping) = self.store.mapping(job.mapping_id).await? else {
            self.cancel(job, "mapping_deleted").await?;
            return Ok(Delivery::Done);
        };
        if let Some(code) = mapping.broken_code.as_deref() {
            // Broken after this job was written: stop, do not retry.
            let code = ErrorCode::parse(code).unwrap_or(ErrorCode::DiscordMissingAccess);
            return Ok(Delivery::Broken(code));
        }
        let channel = snowflake::from_db(job.target_channel_id);
        let source_message = snowflake::from_db(job.source_message_id);
        let payload = decode(&job.payload)?;
        let webhook = match (mapping.webhook_id, mapping.webhook_token.clone()) {
            (Some(id), Some(token)) => Some(WebhookCredentials {
                id: snowflake::from_db(id),
                token,
            }),
            _ => None,
        };
        let via_webhook = mapping.delivery_mode == "webhook";
        let mut message = OutgoingMessage {
            content: payload.rendered_content(),
            embeds: payload.embeds.clone(),
            reply_to: None,
        };
        let result = match kind {
            JobKind::Send => {
                // A worker that sent and stored the link but died before completing the job
                // leaves the link behind: the message is out, do not send it again (webhooks
                // have no nonce to catch the repeat).
                if self.store.link(mapping.id, source_message).await?.is_some() {
                    return Ok(Delivery::Done);
                }
                if let Some(reply) = payload.reply_to_source_id {
                    message.reply_to = self
                        .store
                        .link(mapping.id, reply)
                        .await?
                        .map(|l| snowflake::from_db(l.target_message_id));
                }
                let sent = if via_webhook {
                    let creds = match webhook {
                        Some(c) => c,
                        None => match self.port.create_webhook(channel, "seatgate").await {
                            Ok(c) => {
                                self.store
                                    .set_webhook(
                                        mapping.id,
                                        Some((c.id, c.token.clone())),
                                        now_ms(),
                                    )
                                    .await?;
                                c
                            }
                            Err(e) => return Ok(classify(e, kind)),
                        },
                    };
                    let persona = Persona {
                        username: if payload.author_name.is_empty() {
                            "seatgate".into()
                        } else {
                            payload.author_name.clone()
                        },
                        avatar_url: payload.author_avatar_url.clone(),
                    };
                    let earlier = if job.attempts > 1 {
                        self.landed_earlier(job, mapping.id, channel, &creds, &message)
                            .await?
                    } else {
                        None
                    };
                    match earlier {
                        Some(id) => Ok((id, Some(creds.id))),
                        None => self
                            .port
                            .execute_webhook(&creds, &message, &persona)
                            .await
                            .map(|id| (id, Some(creds.id))),
                    }
                } else {
                    let nonce = send_nonce(mapping.id, source_message);
                    self.port
                        .create_message(channel, &message, &nonce)
                        .await
                        .map(|id| (id, None))
                };
                match sent {
                    Ok((target_id, webhook_id)) => {
                        self.store
                            .save_link(
                                mapping.id,
                                source_message,
                                channel,
                                target_id,
                                webhook_id,
                                now_ms(),
                            )
                            .await?;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            JobKind::Edit | JobKind::Delete => {
                let Some(link) = self.store.link(mapping.id, source_message).await? else {
                    // Never delivered (cancelled or expired): nothing to change.
                    return Ok(Delivery::Done);
                };
                let target = snowflake::from_db(link.target_message_id);
                let linked_webhook = link.webhook_id.map(snowflake::from_db);
                let creds = webhook.filter(|c| Some(c.id) == linked_webhook);
                let r = match (kind, linked_webhook, &creds) {
                    (JobKind::Edit, Some(_), Some(c)) => {
                        self.port.edit_webhook_message(c, target, &message).await
                    }
                    (JobKind::Delete, Some(_), Some(c)) => {
                        self.port.delete_webhook_message(c, target).await
                    }
                    (JobKind::Edit, _, _) => {
                        self.port.edit_message(channel, target, &message).await
                    }
                    _ => self.port.delete_message(channel, target).await,
                };
                match (kind, r) {
                    (JobKind::Delete, Ok(()))
                    | (JobKind::Delete, Err(DiscordError::UnknownMessage)) => {
                        self.store.delete_link(mapping.id, source_message).await?;
                        Ok(())
                    }
                    (_, Err(DiscordError::UnknownMessage)) => Ok(()),
                    (_, other) => other,
                }
            }
        };
        Ok(match result {
            Ok(()) => Delivery::Done,
            Err(DiscordError::UnknownWebhook) => {
                self.store.set_webhook(mapping.id, None, now_ms()).await?;
                Delivery::WebhookGone
            }
            Err(e) => classify(e, kind),
        })
    }

    /// A retried webhook send whose earlier attempt may have reached Discord without its
    /// answer reaching us (a crash between the two): the earliest message of our webhook with
    /// this content, sent after the job was written and not linked to another source message,
    /// is taken as that attempt's. Listing failures are ignored: the send goes out again.
    async fn landed_earlier(
        &self,
        job: &MirrorJob,
        mapping_id: i64,
        channel: u64,
        creds: &WebhookCredentials,
        message: &OutgoingMessage,
    ) -> AppResult<Option<u64>> {
        // A snowflake carries its creation time in ms since the Discord epoch in bits 22+.
        const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;
        let since = (job.created_at - 1_000 - DISCORD_EPOCH_MS).max(0) as u64;
        // The job may have waited in the queue while the channel filled up: page forward
        // (Discord gives the 100 messages right after `after`), bounded.
        let mut after = since << 22;
        let mut candidates: Vec<u64> = Vec::new();
        for _ in 0..20 {
            let page = match self.port.messages_after(channel, after).await {
                Ok(list) => list,
                Err(err) => {
                    tracing::debug!(job = job.id, error = %err, "[mirror] could not list the target channel before a retried webhook send");
                    return Ok(None);
                }
            };
            let full = page.len() >= 100;
            after = page.iter().map(|m| m.id).max().unwrap_or(after);
            candidates.extend(
                page.into_iter()
                    .filter(|m| m.webhook_id == Some(creds.id) && m.content == message.content)
                    .map(|m| m.id),
            );
            if !full {
                break;
            }
        }
        candidates.sort_unstable();
        for id in candidates {
            if !self.store.is_linked_target(mapping_id, id).await? {
                tracing::info!(
                    job = job.id,
                    target_message = id,
                    "[mirror] an earlier attempt's webhook message found; not sending again"
                );
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    async fn cancel(&self, job: &MirrorJob, why: &str) -> AppResult<()> {
        let token = job.claim_token.clone().unwrap_or_default();
        self.store
            .queue()
            .finish_as(job.id, &token, CANCELLED, why, now_ms())
            .await?;
        Ok(())
    }
}

fn classify(err: DiscordError, _kind: JobKind) -> Delivery {
    match err {
        DiscordError::RateLimited {
            retry_after,
            global,
        } => Delivery::RateLimited {
            wait: retry_after,
            global,
        },
        e if e.breaks_target() => Delivery::Broken(e.code()),
        DiscordError::UnknownWebhook => Delivery::WebhookGone,
        e => Delivery::Failed(format!("{}: {e}", e.code())),
    }
}
