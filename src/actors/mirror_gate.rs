//! Mirror gate: the mirror queue worker. Claims due mirror jobs, decides each from the
//! snapshot cache alone (`domain::gate::decide`: no database read, no Discord call), delivers
//! the allowed ones through the Discord port, and holds the blocked ones pending with their
//! code until the server's state changes.
//!
//! A new source message's sends need no claim: gateway ingest asks for a stamp
//! ([`OfferSends`]), writes them already claimed under it, and hands them over
//! ([`SendsClaimed`]). That takes a claim statement, two reads and the wait for the claim
//! loop out of the path every message takes; everything else (edits, deletes, retries,
//! held jobs, catch-up, sends written while the gate was full) goes through the claim loop.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use super::{
    seat_auditor::{AuditReason, AuditRequested},
    snapshot_cache::ConnectorRun,
    snapshot_cache::SnapshotCache,
    ServerKey, Shutdown,
};
use crate::{
    discord::{
        cdn::{AttachmentFetcher, Fetched},
        port::{
            DiscordError, DiscordPort, OutgoingFile, OutgoingMessage, Persona, WebhookCredentials,
        },
    },
    domain::{
        freshness::FreshnessWindows,
        gate::{self, GateDecision, JobKind},
        mirror::{
            carry_as_sent, is_expired, linked_at_send, parse_kind, plan_attachments, send_nonce,
            webhook_username, Carry, MirrorPayload, DEFAULT_UPLOAD_LIMIT_BYTES,
        },
        snowflake,
    },
    error::{AppError, AppResult, ErrorCode},
    store::{
        mirror::{
            decode, ClaimedSends, HeldScope, MirrorStore, NewLink, Outcome, Settlement, CANCELLED,
            EXPIRED, HELD_CODES,
        },
        now_ms,
        queue::{ClaimStamp, FAILED},
    },
};
use entities::{connector_mappings, mirror_jobs::Model as MirrorJob, mirror_message_links};

/// Something changed that may create work: check the queue now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Wake;

/// Gateway ingest is about to write a new source message's sends: may it write them already
/// claimed for this gate? `None` (no Discord port, stopping, or full) has them written
/// pending for the claim loop.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Option<ClaimStamp>")]
pub struct OfferSends;

/// The sends written under an [`OfferSends`] stamp (none when the write failed or found
/// nothing to send): the gate delivers them without claiming them.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SendsClaimed {
    pub stamp: ClaimStamp,
    pub sends: ClaimedSends,
}

/// What gateway ingest sends the gate.
#[derive(Clone)]
pub struct GateInbox {
    pub wake: Recipient<Wake>,
    pub offer: Recipient<OfferSends>,
    pub claimed: Recipient<SendsClaimed>,
}

impl GateInbox {
    pub fn of(gate: &Addr<MirrorGate>) -> Self {
        Self {
            wake: gate.clone().recipient(),
            offer: gate.clone().recipient(),
            claimed: gate.clone().recipient(),
        }
    }
}

/// A server's gate state changed (limit crossed, snapshot refreshed, policy changed): jobs
/// held back for it should be looked at again now rather than at their retry time.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct HeldJobsMayResume(pub HeldScope);

#[derive(Debug, Clone)]
pub struct MirrorGateConfig {
    pub worker_id: String,
    pub lease: Duration,
    /// Most jobs claimed in one statement.
    pub batch: u64,
    /// Most jobs claimed and not yet settled.
    pub max_in_flight: usize,
    /// Deliveries in progress at once, over all target channels (each channel's jobs go
    /// one after another, in order).
    pub concurrency: usize,
    /// Fallback poll when nothing wakes the gate.
    pub poll: Duration,
    /// When a held job is looked at again if nothing wakes it sooner.
    pub held_retry: Duration,
    pub max_age: Duration,
    pub windows: FreshnessWindows,
    /// Attachments up to this many bytes per message are uploaded again; the rest are linked
    /// (0 links every attachment).
    pub attachment_limit_bytes: u64,
    /// Hosts (`host` or `host:port`) attachments may be fetched from besides Discord's CDN:
    /// the configured API's, where the sandbox serves them.
    pub cdn_hosts: Vec<String>,
    /// A delivery (downloads, webhook creation, the send) that takes longer fails its job.
    pub delivery_timeout: Duration,
}

impl MirrorGateConfig {
    pub fn new(worker_id: String) -> Self {
        Self {
            worker_id,
            lease: Duration::from_secs(60),
            batch: 200,
            max_in_flight: 400,
            concurrency: 64,
            poll: Duration::from_secs(2),
            held_retry: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
            windows: FreshnessWindows::default(),
            attachment_limit_bytes: DEFAULT_UPLOAD_LIMIT_BYTES,
            cdn_hosts: Vec::new(),
            delivery_timeout: Duration::from_secs(120),
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
    /// Claimed jobs waiting per target channel; a channel is present while its lane runs.
    lanes: std::sync::Mutex<HashMap<i64, VecDeque<Prepared>>>,
    in_flight: AtomicUsize,
    /// Signalled whenever a job leaves the worker.
    drained: Notify,
    delivering: Semaphore,
    settle_tx: mpsc::UnboundedSender<SettleMsg>,
    /// Links of sends delivered but not yet written, for replies and repeats in between.
    recent_links: std::sync::Mutex<HashMap<(i64, u64), NewLink>>,
    /// Claim tokens of the jobs in the worker, with how many each still covers: their
    /// leases are renewed while they wait.
    held: std::sync::Mutex<HashMap<String, Held>>,
    /// Webhooks this worker created or found gone, newer than the mappings it read.
    /// By (mapping, channel): a retargeted mapping needs a webhook of its new channel.
    webhooks: std::sync::Mutex<HashMap<(i64, u64), Option<WebhookCredentials>>>,
    fetcher: AttachmentFetcher,
    /// How many [`HeldJobsMayResume`] have arrived. A hold decided before the latest one
    /// may have read the snapshot from before the change, so it is not kept (see
    /// [`Worker::unless_resumed`]).
    resumes: AtomicU64,
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
    settle_rx: Option<mpsc::UnboundedReceiver<SettleMsg>>,
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
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
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
                lanes: Default::default(),
                in_flight: AtomicUsize::new(0),
                drained: Notify::new(),
                delivering: Semaphore::new(cfg.concurrency.max(1)),
                settle_tx,
                recent_links: Default::default(),
                held: Default::default(),
                webhooks: Default::default(),
                fetcher: AttachmentFetcher::new(&cfg.cdn_hosts),
                resumes: AtomicU64::new(0),
            })
        });
        Self {
            worker,
            settle_rx: Some(settle_rx),
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
                let (_, placeholder) = mpsc::unbounded_channel();
                let settle_rx = self.settle_rx.take().unwrap_or(placeholder);
                self.handle = Some(tokio::spawn(async move { worker.run(settle_rx).await }));
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

impl Handler<OfferSends> for MirrorGate {
    type Result = Option<ClaimStamp>;
    fn handle(&mut self, _: OfferSends, _: &mut Self::Context) -> Self::Result {
        self.worker.as_ref()?.offer()
    }
}

impl Handler<SendsClaimed> for MirrorGate {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: SendsClaimed, _: &mut Self::Context) -> Self::Result {
        let worker = self.worker.clone();
        Box::pin(async move {
            if let Some(w) = worker {
                w.take(msg.stamp, msg.sends).await;
            }
        })
    }
}

impl Handler<HeldJobsMayResume> for MirrorGate {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: HeldJobsMayResume, _: &mut Self::Context) -> Self::Result {
        if let Some(w) = &self.worker {
            // Through the settler, after the outcomes already decided: a hold still being
            // written would otherwise be released before it exists, then written to wait
            // for `held_retry`.
            w.resumes.fetch_add(1, Ordering::SeqCst);
            if w.settle_tx
                .send(SettleMsg::ReleaseHeld(msg.0.clone()))
                .is_ok()
            {
                return Box::pin(async {});
            }
        }
        let store = self.store.clone();
        Box::pin(async move {
            release_held(&store, &msg.0).await;
        })
    }
}

/// Makes the jobs held in `scope` due now.
async fn release_held(store: &MirrorStore, server: &HeldScope) {
    match store.release_held(server, now_ms()).await {
        Ok(n) if n > 0 => {
            tracing::info!(server = %server, jobs = n, "[mirror] server state changed; held jobs due now")
        }
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(server = %server, error = %err, "[mirror] could not release held jobs")
        }
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
    /// Discord refused the request itself (400): the same payload would be refused again.
    Rejected(String),
    /// The webhook vanished; it is forgotten and the job runs again at once.
    WebhookGone,
}

/// A claimed job with what its delivery needs from the database, read once per claimed batch.
struct Prepared {
    job: MirrorJob,
    /// The job's payload, decoded once (an unreadable one fails the job when it runs).
    payload: Result<MirrorPayload, String>,
    mapping: Option<Arc<connector_mappings::Model>>,
    link: Option<mirror_message_links::Model>,
    /// The target message of the source message this one replies to, if it was mirrored.
    reply_target: Option<u64>,
}

/// The jobs in the worker under one claim token.
struct Held {
    jobs: usize,
    /// Their lease, as last claimed or renewed (epoch ms).
    until: i64,
}

/// What the settler is sent: a decided job, or a request to report once everything sent
/// before it is written.
enum SettleMsg {
    Job {
        settlement: Box<Settlement>,
        /// [`Worker::resumes`] when the job was decided.
        resumes_seen: u64,
    },
    /// A server's held jobs are due now (written after everything sent before it).
    ReleaseHeld(HeldScope),
    Flush(oneshot::Sender<()>),
}

impl Worker {
    /// The claim loop. Claimed jobs go to one lane per target channel (a task that delivers
    /// that channel's jobs one after another, in claim order); lanes hand their outcomes to
    /// the settler, which writes them in one transaction per batch. Claiming goes on while
    /// lanes deliver, up to `max_in_flight` jobs.
    async fn run(self: Arc<Self>, settle_rx: mpsc::UnboundedReceiver<SettleMsg>) {
        let settler = tokio::spawn(self.clone().settle_loop(settle_rx));
        let renewer = tokio::spawn(self.clone().renew_leases());
        while !self.stopping.load(Ordering::SeqCst) {
            let room = self
                .cfg
                .max_in_flight
                .saturating_sub(self.in_flight.load(Ordering::SeqCst));
            if room == 0 {
                self.idle().await;
                continue;
            }
            let claimed = self
                .store
                .queue()
                .claim(
                    &self.cfg.worker_id,
                    self.cfg.batch.min(room as u64),
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
            self.in_flight.fetch_add(jobs.len(), Ordering::SeqCst);
            {
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                for job in &jobs {
                    if let Some(token) = &job.claim_token {
                        held.entry(token.clone())
                            .or_insert(Held {
                                jobs: 0,
                                until: job.lease_expires_at.unwrap_or(0),
                            })
                            .jobs += 1;
                    }
                }
            }
            match self.prepare(jobs, None).await {
                Ok(prepared) => self.dispatch(prepared),
                Err((jobs, err)) => {
                    self.put_back(jobs, &err);
                    self.idle().await;
                }
            }
        }
        // Stopping: lanes hand back what they have not started; wait for them, then for the
        // settler to write everything.
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::select! {
                _ = self.drained.notified() => {},
                _ = tokio::time::sleep(Duration::from_millis(50)) => {},
            }
        }
        let (done_tx, done_rx) = oneshot::channel();
        if self.settle_tx.send(SettleMsg::Flush(done_tx)).is_ok() {
            let _ = done_rx.await;
        }
        settler.abort();
        renewer.abort();
    }

    /// A stamp for sends written already claimed, while there is room for them. The stamp's
    /// lease is held (and renewed) from now, so it cannot lapse between the write and
    /// [`Self::take`].
    fn offer(&self) -> Option<ClaimStamp> {
        if self.stopping.load(Ordering::SeqCst)
            || self.in_flight.load(Ordering::SeqCst) >= self.cfg.max_in_flight
        {
            return None;
        }
        let stamp = ClaimStamp {
            worker: self.cfg.worker_id.clone(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            lease_expires_at: now_ms() + self.cfg.lease.as_millis() as i64,
        };
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(
            stamp.token.clone(),
            Held {
                jobs: 0,
                until: stamp.lease_expires_at,
            },
        );
        Some(stamp)
    }

    /// Delivers the sends written under `stamp` as if this worker had claimed them.
    async fn take(self: Arc<Self>, stamp: ClaimStamp, sends: ClaimedSends) {
        let n = sends.jobs.len();
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if n == 0 {
                held.remove(&stamp.token);
                return;
            }
            held.entry(stamp.token)
                .or_insert(Held {
                    jobs: 0,
                    until: stamp.lease_expires_at,
                })
                .jobs += n;
        }
        self.in_flight.fetch_add(n, Ordering::SeqCst);
        let mappings = sends
            .mappings
            .into_iter()
            .map(|m| (m.id, Arc::new(m)))
            .collect();
        match self.prepare(sends.jobs, Some(mappings)).await {
            Ok(prepared) => self.dispatch(prepared),
            Err((jobs, err)) => self.put_back(jobs, &err),
        }
    }

    /// Every third of a lease, pushes the leases of the jobs this worker holds forward.
    async fn renew_leases(self: Arc<Self>) {
        let every = (self.cfg.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let tokens: Vec<String> = self
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect();
            if tokens.is_empty() {
                continue;
            }
            let now = now_ms();
            let until = now + self.cfg.lease.as_millis() as i64;
            match self.store.queue().extend_leases(&tokens, until, now).await {
                Ok(_) => {
                    let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                    for token in &tokens {
                        if let Some(h) = held.get_mut(token) {
                            h.until = h.until.max(until);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "[mirror] could not renew leases; jobs that outwait them may be claimed again")
                }
            }
        }
    }

    async fn idle(&self) {
        tokio::select! {
            _ = self.notify.notified() => {},
            _ = tokio::time::sleep(self.cfg.poll) => {},
        }
    }

    /// Reads the claimed jobs' mappings and links in two queries. Sends taken at ingest come
    /// with their mappings, and have no link of their own yet (a send is written only for a
    /// mapping with no send for that message): only the messages they reply to are read.
    async fn prepare(
        &self,
        mut jobs: Vec<MirrorJob>,
        fresh_sends: Option<HashMap<i64, Arc<connector_mappings::Model>>>,
    ) -> Result<Vec<Prepared>, (Vec<MirrorJob>, crate::AppError)> {
        // RETURNING gives no order: within a channel, deliver in the order the source
        // messages were ingested.
        jobs.sort_by_key(|j| j.id);
        let fresh = fresh_sends.is_some();
        let mappings = match fresh_sends {
            Some(m) => m,
            None => {
                let mut mapping_ids: Vec<i64> = jobs.iter().map(|j| j.mapping_id).collect();
                mapping_ids.sort_unstable();
                mapping_ids.dedup();
                match self.store.mappings_by_id(&mapping_ids).await {
                    Ok(m) => m.into_iter().map(|(id, m)| (id, Arc::new(m))).collect(),
                    Err(err) => return Err((jobs, err)),
                }
            }
        };
        let payloads: Vec<Result<MirrorPayload, String>> = jobs
            .iter()
            .map(|j| decode(&j.payload).map_err(|e| e.message().to_owned()))
            .collect();
        let replies: Vec<Option<u64>> = jobs
            .iter()
            .zip(&payloads)
            .map(|(j, p)| {
                (j.kind == "send")
                    .then(|| p.as_ref().ok()?.reply_to_source_id)
                    .flatten()
            })
            .collect();
        let mut pairs: Vec<(i64, u64)> = if fresh {
            Vec::new()
        } else {
            jobs.iter()
                .map(|j| (j.mapping_id, snowflake::from_db(j.source_message_id)))
                .collect()
        };
        pairs.extend(
            jobs.iter()
                .zip(&replies)
                .filter_map(|(j, r)| r.map(|r| (j.mapping_id, r))),
        );
        let links = if pairs.is_empty() {
            HashMap::new()
        } else {
            match self.store.links_for(&pairs).await {
                Ok(l) => l,
                Err(err) => return Err((jobs, err)),
            }
        };
        let recent = self.recent_links.lock().unwrap_or_else(|p| p.into_inner());
        Ok(jobs
            .into_iter()
            .zip(replies)
            .zip(payloads)
            .map(|((job, reply), payload)| {
                let source = snowflake::from_db(job.source_message_id);
                let reply_target = reply.and_then(|r| {
                    links
                        .get(&(job.mapping_id, r))
                        .map(|l| snowflake::from_db(l.target_message_id))
                        .or_else(|| {
                            recent
                                .get(&(job.mapping_id, r))
                                .map(|l| l.target_message_id)
                        })
                });
                Prepared {
                    payload,
                    mapping: mappings.get(&job.mapping_id).cloned(),
                    link: links.get(&(job.mapping_id, source)).cloned(),
                    reply_target,
                    job,
                }
            })
            .collect())
    }

    /// Claimed jobs whose mappings and links could not be read go back to the queue.
    fn put_back(&self, jobs: Vec<MirrorJob>, err: &AppError) {
        tracing::warn!(error = %err, jobs = jobs.len(), "[mirror] could not read mappings and links for claimed jobs; they go back to the queue");
        for job in jobs {
            self.left(
                job,
                Some(Outcome::Fail {
                    error: format!("{}: {err}", ErrorCode::DatabaseUnavailable),
                    jitter: rand::random::<f64>(),
                }),
            );
        }
    }

    fn dispatch(self: &Arc<Self>, prepared: Vec<Prepared>) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        for p in prepared {
            let channel = p.job.target_channel_id;
            match lanes.get_mut(&channel) {
                Some(queue) => queue.push_back(p),
                None => {
                    lanes.insert(channel, VecDeque::from([p]));
                    let me = self.clone();
                    tokio::spawn(async move { me.lane(channel).await });
                }
            }
        }
    }

    /// Delivers one target channel's jobs in order until its queue is empty.
    async fn lane(self: Arc<Self>, channel: i64) {
        loop {
            let next = {
                let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
                match lanes.get_mut(&channel).and_then(VecDeque::pop_front) {
                    Some(p) => p,
                    None => {
                        lanes.remove(&channel);
                        return;
                    }
                }
            };
            if self.lease_until(&next.job) <= now_ms() {
                // Waited past its lease: it is claimable again (maybe by another worker), so
                // this claim must not act on it.
                tracing::debug!(
                    job = next.job.id,
                    "[mirror] lease expired before delivery; left to the next claim"
                );
                self.left(next.job, None);
                continue;
            }
            if self.stopping.load(Ordering::SeqCst) {
                // Not started: back to the queue without counting an attempt.
                let outcome = Outcome::Release {
                    run_after: now_ms(),
                    code: None,
                    refund_attempt: true,
                };
                self.left(next.job, Some(outcome));
            } else {
                let _permit = self.delivering.acquire().await;
                let resumes_seen = self.resumes.load(Ordering::SeqCst);
                let outcome = self.process_guarded(&next).await;
                self.left_decided(next.job, Some(outcome), resumes_seen);
            }
        }
    }

    /// Until when this worker's claim on the job holds.
    fn lease_until(&self, job: &MirrorJob) -> i64 {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        job.claim_token
            .as_ref()
            .and_then(|t| held.get(t))
            .map_or(job.lease_expires_at.unwrap_or(0), |h| h.until)
    }

    /// A job leaves the worker: its outcome, if any, goes to the settler; its place frees.
    fn left(&self, job: MirrorJob, settlement: Option<Outcome>) {
        let now = self.resumes.load(Ordering::SeqCst);
        self.left_decided(job, settlement, now);
    }

    /// [`Self::left`] for a job decided when [`Self::resumes`] was `resumes_seen`.
    fn left_decided(&self, job: MirrorJob, settlement: Option<Outcome>, resumes_seen: u64) {
        if let Some(token) = &job.claim_token {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = held.get_mut(token) {
                h.jobs = h.jobs.saturating_sub(1);
                if h.jobs == 0 {
                    held.remove(token);
                }
            }
        }
        if let Some(outcome) = settlement {
            let settlement = Settlement { job, outcome };
            if let Outcome::Complete {
                link: Some(link), ..
            } = &settlement.outcome
            {
                self.recent_links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((link.mapping_id, link.source_message_id), link.clone());
            }
            if self
                .settle_tx
                .send(SettleMsg::Job {
                    settlement: Box::new(settlement),
                    resumes_seen,
                })
                .is_err()
            {
                tracing::warn!(
                    "[mirror] settler gone; the job's lease will expire and it runs again"
                );
            }
        }
        // Only a full worker's claim loop waits for room; waking it for every job that
        // leaves would have it claim (and find nothing) once per delivery.
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) >= self.cfg.max_in_flight {
            self.notify.notify_one();
        }
        self.drained.notify_one();
    }

    /// Writes decided jobs in batches: whatever arrived while the previous write ran goes
    /// into the next one. Held jobs are released in order with them.
    async fn settle_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<SettleMsg>) {
        let mut batch: Vec<Settlement> = Vec::new();
        let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
        let mut resumed: Vec<HeldScope> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    SettleMsg::Job {
                        settlement,
                        resumes_seen,
                    } => batch.push(self.unless_resumed(*settlement, resumes_seen)),
                    SettleMsg::ReleaseHeld(server) => resumed.push(server),
                    SettleMsg::Flush(tx) => flushes.push(tx),
                }
                if batch.len() < 1_000 && resumed.is_empty() {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.settle(&batch).await;
                let mut recent = self.recent_links.lock().unwrap_or_else(|p| p.into_inner());
                for s in &batch {
                    if let Outcome::Complete {
                        link: Some(link), ..
                    } = &s.outcome
                    {
                        recent.remove(&(link.mapping_id, link.source_message_id));
                    }
                }
                drop(recent);
                batch.clear();
            }
            for server in resumed.drain(..) {
                release_held(&self.store, &server).await;
            }
            // Completed sends let their edits and deletes be claimed; released holds are due.
            self.notify.notify_one();
            for tx in flushes.drain(..) {
                let _ = tx.send(());
            }
        }
    }

    fn unless_resumed(&self, mut settlement: Settlement, resumes_seen: u64) -> Settlement {
        let resumes = self.resumes.load(Ordering::SeqCst);
        due_if_resumed_since(&mut settlement.outcome, resumes_seen, resumes, now_ms());
        settlement
    }

    async fn settle(&self, batch: &[Settlement]) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            match self.store.settle(batch, now_ms()).await {
                Ok(counts) => {
                    metrics::counter!("seatgate_mirror_jobs_settled_total")
                        .increment(batch.len() as u64);
                    tracing::trace!(?counts, "[mirror] settled");
                    return;
                }
                Err(err) if attempt < 5 => {
                    tracing::warn!(error = %err, attempt, jobs = batch.len(), "[mirror] could not record outcomes; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => {
                    // Their leases expire and they run again; Discord's nonce and the stored
                    // links keep the repeat from duplicating a message.
                    tracing::error!(error = %err, jobs = batch.len(), "[mirror] outcomes not recorded; the jobs run again after their leases expire");
                }
            }
        }
    }

    /// [`Self::process`], but a delivery that panics or outlasts `delivery_timeout` fails its
    /// job (retried with backoff) instead of taking its lane, its place in flight and its
    /// lease renewal down with it.
    async fn process_guarded(&self, prepared: &Prepared) -> Outcome {
        let job = prepared.job.id;
        let run = std::panic::AssertUnwindSafe(self.process(prepared)).catch_unwind();
        let error = match tokio::time::timeout(self.cfg.delivery_timeout, run).await {
            Ok(Ok(outcome)) => return outcome,
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                tracing::error!(job, panic = %what, "[mirror] delivery panicked; the job is retried with backoff");
                format!("{}: {what}", ErrorCode::MirrorDeliveryPanicked)
            }
            Err(_) => {
                tracing::warn!(
                    job,
                    timeout_s = self.cfg.delivery_timeout.as_secs_f64(),
                    "[mirror] delivery timed out; the job is retried with backoff"
                );
                format!(
                    "{}: no answer within {:?}",
                    ErrorCode::MirrorDeliveryTimeout,
                    self.cfg.delivery_timeout
                )
            }
        };
        metrics::counter!("seatgate_mirror_deliveries_aborted_total").increment(1);
        Outcome::Fail {
            error,
            jitter: rand::random::<f64>(),
        }
    }

    /// Decides one job: gate, then delivery. Only webhook bookkeeping touches the database
    /// here; the job's own row is written by the settler.
    async fn process(&self, prepared: &Prepared) -> Outcome {
        let job = &prepared.job;
        match self.decide(prepared).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::warn!(job = job.id, error = %err, "[mirror] job bookkeeping failed; retried with backoff");
                Outcome::Fail {
                    error: format!("{}: {err}", err.code()),
                    jitter: rand::random::<f64>(),
                }
            }
        }
    }

    async fn decide(&self, prepared: &Prepared) -> AppResult<Outcome> {
        let job = &prepared.job;
        let now = now_ms();
        let finish = |status: &'static str, error: &str| Outcome::Finish {
            status,
            error: error.to_owned(),
            broken: None,
        };
        let Some(kind) = parse_kind(&job.kind) else {
            return Ok(finish(FAILED, "validation_failed: unknown job kind"));
        };
        if is_expired(
            kind,
            job.created_at,
            now,
            self.cfg.max_age.as_millis() as i64,
        ) {
            tracing::info!(job = job.id, "[mirror] {}", ErrorCode::MirrorJobExpired);
            return Ok(finish(EXPIRED, ErrorCode::MirrorJobExpired.as_str()));
        }
        if kind != JobKind::Delete {
            // Deletes only remove copies: they go for a deleted or switched-off mapping too.
            let run = self.cache.connector_run(&job.tenant_key, &job.connector_id);
            let mapping = prepared.mapping.as_deref();
            if run == ConnectorRun::Deleted || mapping.is_some_and(|m| m.deleted_at.is_some()) {
                return Ok(finish(CANCELLED, "mapping_deleted"));
            }
            if run == ConnectorRun::Disabled || mapping.is_some_and(|m| !m.enabled) {
                return Ok(Outcome::Release {
                    run_after: now + self.cfg.held_retry.as_millis() as i64,
                    code: Some(ErrorCode::MirrorDisabled.as_str().to_owned()),
                    refund_attempt: true,
                });
            }
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
                return Ok(Outcome::Release {
                    run_after: now + self.cfg.held_retry.as_millis() as i64,
                    code: Some(code.as_str().to_owned()),
                    refund_attempt: true,
                });
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
            return Ok(Outcome::Release {
                run_after: now + wait.as_millis() as i64 + 1,
                code: Some(ErrorCode::DiscordRateLimited.as_str().to_owned()),
                refund_attempt: true,
            });
        }
        let Some(mapping) = prepared.mapping.as_deref() else {
            return Ok(finish(CANCELLED, "mapping_deleted"));
        };
        let (delivery, link_change) = self.deliver(prepared, kind, mapping).await?;
        let now = now_ms();
        Ok(match delivery {
            Delivery::Done => {
                let latency = (now - job.created_at).max(0) as f64 / 1000.0;
                metrics::histogram!("seatgate_mirror_latency_seconds").record(latency);
                let (link, unlink) = match link_change {
                    LinkChange::None => (None, None),
                    LinkChange::Add(link) => (Some(link), None),
                    LinkChange::Remove => (
                        None,
                        Some((mapping.id, snowflake::from_db(job.source_message_id))),
                    ),
                };
                Outcome::Complete { link, unlink }
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
                Outcome::Release {
                    run_after: now + wait.as_millis() as i64,
                    code: Some(ErrorCode::DiscordRateLimited.as_str().to_owned()),
                    refund_attempt: true,
                }
            }
            Delivery::WebhookGone => Outcome::Release {
                run_after: now,
                code: Some(ErrorCode::DiscordUnknownWebhook.as_str().to_owned()),
                refund_attempt: false,
            },
            Delivery::Broken(code) => {
                tracing::warn!(job = job.id, mapping = job.mapping_id, code = %code, "[mirror] target refused for good; mapping marked broken");
                Outcome::Finish {
                    status: FAILED,
                    error: code.as_str().to_owned(),
                    broken: Some(code),
                }
            }
            Delivery::Rejected(error) => {
                tracing::warn!(job = job.id, mapping = job.mapping_id, error = %error, "[mirror] Discord refused the message itself; the job ends without retries");
                Outcome::Finish {
                    status: FAILED,
                    error,
                    broken: None,
                }
            }
            Delivery::Failed(error) => {
                tracing::info!(job = job.id, error = %error, attempt = job.attempts, "[mirror] delivery failed");
                Outcome::Fail {
                    error,
                    jitter: rand::random::<f64>(),
                }
            }
        })
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

    /// The mapping's webhook in `channel`: this worker's latest word on it, else the stored
    /// one if the mapping still targets that channel.
    fn webhook_of(
        &self,
        mapping: &connector_mappings::Model,
        channel: u64,
    ) -> Option<WebhookCredentials> {
        if let Some(known) = self
            .webhooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(mapping.id, channel))
        {
            return known.clone();
        }
        if snowflake::from_db(mapping.target_channel_id) != channel {
            return None;
        }
        match (mapping.webhook_id, mapping.webhook_token.clone()) {
            (Some(id), Some(token)) => Some(WebhookCredentials {
                id: snowflake::from_db(id),
                token,
            }),
            _ => None,
        }
    }

    async fn remember_webhook(
        &self,
        mapping: &connector_mappings::Model,
        channel: u64,
        creds: Option<WebhookCredentials>,
    ) -> AppResult<()> {
        // The mapping row holds the webhook of the channel it targets now; one of an older
        // channel is known from service_webhooks.
        if snowflake::from_db(mapping.target_channel_id) == channel {
            self.store
                .set_webhook(
                    mapping,
                    creds.as_ref().map(|c| (c.id, c.token.clone())),
                    now_ms(),
                )
                .await?;
        }
        self.webhooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((mapping.id, channel), creds);
        Ok(())
    }

    /// The credentials of the webhook that posted a copy: the mapping's own, or (the mapping
    /// moved to another channel since) the one the service recorded when it created it.
    async fn webhook_of_link(
        &self,
        mapping: &connector_mappings::Model,
        linked: u64,
    ) -> AppResult<Option<WebhookCredentials>> {
        let current = snowflake::from_db(mapping.target_channel_id);
        if let Some(current) = self.webhook_of(mapping, current).filter(|c| c.id == linked) {
            return Ok(Some(current));
        }
        Ok(self
            .store
            .service_webhook(linked)
            .await?
            .map(|(id, token)| WebhookCredentials { id, token }))
    }

    async fn deliver(
        &self,
        prepared: &Prepared,
        kind: JobKind,
        mapping: &connector_mappings::Model,
    ) -> AppResult<(Delivery, LinkChange)> {
        let job = &prepared.job;
        if let Some(code) = mapping.broken_code.as_deref() {
            // Broken after this job was written: stop, do not retry.
            let code = ErrorCode::parse(code).unwrap_or(ErrorCode::DiscordMissingAccess);
            return Ok((Delivery::Broken(code), LinkChange::None));
        }
        let channel = snowflake::from_db(job.target_channel_id);
        let source_message = snowflake::from_db(job.source_message_id);
        let payload = prepared
            .payload
            .as_ref()
            .map_err(|e| AppError::new(ErrorCode::ValidationFailed, e.clone()))?;
        let webhook = self.webhook_of(mapping, channel);
        let via_webhook = mapping.delivery_mode == "webhook";
        let carry = plan_attachments(&payload.attachments, self.cfg.attachment_limit_bytes);
        let mut message = OutgoingMessage {
            content: payload.rendered_content(&carry),
            embeds: payload.embeds.clone(),
            reply_to: None,
            files: Vec::new(),
        };
        let result = match kind {
            JobKind::Send => {
                // A worker that sent and stored the link but died before completing the job
                // leaves the link behind: the message is out, do not send it again (webhooks
                // have no nonce to catch the repeat).
                // A retried job may have been delivered by its earlier claim after this batch
                // read the links: ask the database again.
                let fetched = match &prepared.link {
                    None if job.attempts > 1 => self.store.link(mapping.id, source_message).await?,
                    _ => None,
                };
                let link = prepared.link.as_ref().or(fetched.as_ref());
                let landed = link.is_some()
                    || self
                        .recent_links
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains_key(&(mapping.id, source_message));
                if landed {
                    return Ok((Delivery::Done, LinkChange::None));
                }
                message.reply_to = prepared.reply_target;
                let mut carry = match self.download(job.id, payload, carry).await {
                    Ok((carry, files)) => {
                        message.content = payload.rendered_content(&carry);
                        message.files = files;
                        carry
                    }
                    Err(e) => return Ok((classify(e, kind), LinkChange::None)),
                };
                let webhook = if via_webhook {
                    let creds = match webhook {
                        Some(c) => c,
                        None => match self.port.create_webhook(channel, "seatgate").await {
                            Ok(c) => {
                                self.remember_webhook(mapping, channel, Some(c.clone()))
                                    .await?;
                                c
                            }
                            Err(e) => return Ok((classify(e, kind), LinkChange::None)),
                        },
                    };
                    let persona = Persona {
                        username: webhook_username(&payload.author_name, "seatgate"),
                        avatar_url: payload.author_avatar_url.clone(),
                    };
                    Some((creds, persona))
                } else {
                    None
                };
                let mut sent = self
                    .send(job, mapping.id, channel, webhook.as_ref(), &message)
                    .await?;
                if !message.files.is_empty() && too_large(&sent) {
                    tracing::warn!(
                        job = job.id,
                        files = message.files.len(),
                        "[mirror] the target refused the files as too large; linking them instead"
                    );
                    message.files.clear();
                    carry = vec![Carry::Link; payload.attachments.len()];
                    message.content = payload.rendered_content(&carry);
                    sent = self
                        .send(job, mapping.id, channel, webhook.as_ref(), &message)
                        .await?;
                }
                sent.map(|(target_id, webhook_id)| {
                    LinkChange::Add(NewLink {
                        mapping_id: mapping.id,
                        source_message_id: source_message,
                        target_channel_id: channel,
                        target_message_id: target_id,
                        webhook_id,
                        linked_attachments: linked_at_send(&payload.attachments, &carry),
                    })
                })
            }
            JobKind::Edit | JobKind::Delete => {
                let Some(link) = &prepared.link else {
                    // Never delivered (cancelled or expired): nothing to change.
                    return Ok((Delivery::Done, LinkChange::None));
                };
                if kind == JobKind::Edit {
                    let carry = carry_as_sent(
                        &payload.attachments,
                        carry,
                        link.linked_attachments.as_deref(),
                    );
                    message.content = payload.rendered_content(&carry);
                }
                // Where the copy is, through what posted it: the mapping may have moved to
                // another channel since.
                let channel = snowflake::from_db(link.target_channel_id);
                let target = snowflake::from_db(link.target_message_id);
                let linked_webhook = link.webhook_id.map(snowflake::from_db);
                let creds = match linked_webhook {
                    Some(w) => self.webhook_of_link(mapping, w).await?,
                    None => None,
                };
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
                        Ok(LinkChange::Remove)
                    }
                    (_, Err(DiscordError::UnknownMessage)) => Ok(LinkChange::None),
                    (_, Ok(())) => Ok(LinkChange::None),
                    (_, Err(e)) => Err(e),
                }
            }
        };
        Ok(match result {
            Ok(change) => (Delivery::Done, change),
            Err(DiscordError::UnknownWebhook) => {
                self.remember_webhook(mapping, channel, None).await?;
                (Delivery::WebhookGone, LinkChange::None)
            }
            Err(e) => (classify(e, kind), LinkChange::None),
        })
    }

    /// One send of a job's message: through the webhook (unless an earlier attempt's message
    /// is found there) or as the bot with the job's nonce. Returns the target message id and
    /// the webhook it went through.
    async fn send(
        &self,
        job: &MirrorJob,
        mapping_id: i64,
        channel: u64,
        webhook: Option<&(WebhookCredentials, Persona)>,
        message: &OutgoingMessage,
    ) -> AppResult<Result<(u64, Option<u64>), DiscordError>> {
        let Some((creds, persona)) = webhook else {
            let nonce = send_nonce(mapping_id, snowflake::from_db(job.source_message_id));
            return Ok(self
                .port
                .create_message(channel, message, &nonce)
                .await
                .map(|id| (id, None)));
        };
        let earlier = if job.attempts > 1 {
            self.landed_earlier(job, mapping_id, channel, creds, message)
                .await?
        } else {
            None
        };
        Ok(match earlier {
            Some(id) => Ok((id, Some(creds.id))),
            None => self
                .port
                .execute_webhook(creds, message, persona)
                .await
                .map(|id| (id, Some(creds.id))),
        })
    }

    /// Downloads the attachments `carry` uploads. One that cannot be had (gone, refused,
    /// larger than it said) is linked instead; a CDN that fails for now fails the attempt,
    /// to be retried with backoff.
    async fn download(
        &self,
        job_id: i64,
        payload: &MirrorPayload,
        mut carry: Vec<Carry>,
    ) -> Result<(Vec<Carry>, Vec<OutgoingFile>), DiscordError> {
        let mut files = Vec::new();
        for (a, c) in payload.attachments.iter().zip(carry.iter_mut()) {
            if *c != Carry::Upload {
                continue;
            }
            match self
                .fetcher
                .fetch(&a.url, self.cfg.attachment_limit_bytes)
                .await?
            {
                Fetched::Bytes(data) => files.push(OutgoingFile {
                    filename: a.filename.clone(),
                    data,
                }),
                Fetched::Unavailable(why) => {
                    tracing::info!(job = job_id, filename = %a.filename, why = %why, "[mirror] attachment linked, not uploaded");
                    *c = Carry::Link;
                }
            }
        }
        Ok((carry, files))
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
        // The job may have waited in the queue while the channel filled up: page forward
        // (Discord gives the 100 messages right after `after`), bounded.
        let mut after = snowflake::at_ms(job.created_at - 1_000);
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
}

/// Discord's answer to files over the target's upload limit.
/// A hold (a gate code) decided when `resumes_seen` [`HeldJobsMayResume`] had arrived, now
/// that `resumes` have, is due at `now` rather than after `held_retry`: its decision may have
/// read the snapshot from before the change. One decided after the latest resume read the
/// new snapshot, and keeps its wait.
fn due_if_resumed_since(outcome: &mut Outcome, resumes_seen: u64, resumes: u64, now: i64) {
    if let Outcome::Release {
        run_after,
        code: Some(code),
        ..
    } = outcome
    {
        let held = HELD_CODES.iter().any(|c| c.as_str() == code.as_str());
        if held && resumes_seen < resumes {
            *run_after = now;
        }
    }
}

fn too_large<T>(sent: &Result<T, DiscordError>) -> bool {
    matches!(sent, Err(DiscordError::Rejected { status, code, .. }) if *status == 413 || *code == 40005)
}

/// What a delivery changes in the stored links.
enum LinkChange {
    None,
    Add(NewLink),
    Remove,
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
        e @ DiscordError::Rejected {
            status: 400 | 413, ..
        } => Delivery::Rejected(format!("{}: {e}", ErrorCode::MirrorPayloadRejected)),
        e => Delivery::Failed(format!("{}: {e}", e.code())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(code: &str) -> Outcome {
        Outcome::Release {
            run_after: 30_000,
            code: Some(code.to_owned()),
            refund_attempt: true,
        }
    }

    fn run_after(outcome: &Outcome) -> i64 {
        match outcome {
            Outcome::Release { run_after, .. } => *run_after,
            _ => -1,
        }
    }

    #[test]
    fn a_hold_decided_before_a_resume_is_due_at_once_and_one_decided_after_waits() {
        let mut before = hold("seat_limit_exceeded");
        due_if_resumed_since(&mut before, 3, 4, 100);
        assert_eq!(run_after(&before), 100);

        let mut after = hold("seat_limit_exceeded");
        due_if_resumed_since(&mut after, 4, 4, 100);
        assert_eq!(
            run_after(&after),
            30_000,
            "no resume since: it keeps its wait"
        );

        // A rate-limit wait is Discord's, not the gate's: a resume does not shorten it.
        let mut rate_limited = hold("discord_rate_limited");
        due_if_resumed_since(&mut rate_limited, 3, 4, 100);
        assert_eq!(run_after(&rate_limited), 30_000);
    }
}
