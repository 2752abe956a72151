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
            ChannelMessage, DiscordError, DiscordPort, OutgoingFile, OutgoingMessage, Persona,
            WebhookCredentials,
        },
    },
    domain::{
        freshness::FreshnessWindows,
        gate::{self, GateDecision, JobKind},
        mirror::{
            carry_as_sent, is_expired, linked_at_send, parse_kind, part_nonce, plan_attachments,
            split_content, webhook_username, Carry, MirrorPayload, DEFAULT_UPLOAD_LIMIT_BYTES,
            MESSAGE_CONTENT_LIMIT,
        },
        snowflake,
    },
    error::{AppError, AppResult, ErrorCode},
    store::{
        mirror::{
            decode, link_message_ids, ClaimedSends, HeldScope, MirrorStore, NewLink, Outcome,
            Settlement, CANCELLED, EXPIRED, HELD_CODES,
        },
        now_ms,
        queue::{ClaimStamp, FAILED},
    },
};
use entities::{connector_mappings, mirror_jobs::Model as MirrorJob, mirror_message_links};

mod claim;
mod decide;
mod delivery;
mod earlier;
mod lanes;
mod settler;

use delivery::{Delivery, LinkChange};
use lanes::RateLimitHolds;

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
    /// Ingest may write a new message's sends already claimed for this gate
    /// ([`OfferSends`]). Off when several processes share the queue: every job then passes
    /// the claim that keeps per-target order across processes.
    pub handover: bool,
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
            handover: true,
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
    /// What each lane read of its channel looking for retried sends' earlier attempts.
    scans: std::sync::Mutex<HashMap<u64, earlier::ChannelScan>>,
    fetcher: AttachmentFetcher,
    /// How many [`HeldJobsMayResume`] have arrived. A hold decided before the latest one
    /// may have read the snapshot from before the change, so it is not kept (see
    /// [`Worker::unless_resumed`]).
    resumes: AtomicU64,
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
                scans: Default::default(),
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
        let worker = self.worker.as_ref()?;
        if !worker.cfg.handover {
            return None;
        }
        worker.offer()
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
