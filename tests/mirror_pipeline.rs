//! The mirroring pipeline against a scripted Discord port: ingest -> durable jobs -> gate
//! -> delivery, on the backend `SEATGATE_TEST_DATABASE` selects.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use seatgate::{
    actors::{
        mirror_gate::{MirrorGate, MirrorGateConfig, OfferSends, SendsClaimed, Wake},
        snapshot_cache::{PolicyUpdated, SnapshotCache, SnapshotCacheActor, SnapshotUpdated},
        ServerKey,
    },
    discord::port::{
        DiscordError, DiscordPort, DiscordResult, OutgoingMessage, Persona, WebhookCredentials,
    },
    domain::{
        backoff::RetryPolicy,
        gate::{EnforcementMode, ServerPolicy, SnapshotView},
        mirror::MirrorPayload,
        snowflake,
    },
    store::{
        mirror::{MirrorStore, SourceEvent},
        now_ms,
        queue::{ClaimStamp, MirrorQueue},
        testing::TestDatabase,
    },
};

const SOURCE: u64 = 100;
const SOURCE_GUILD: u64 = 10;
const GUILD_A: u64 = 1_000;
const GUILD_B: u64 = 2_000;
const CHAN_A: u64 = 201;
const CHAN_B: u64 = 301;

#[derive(Debug, Clone)]
struct Posted {
    id: u64,
    content: String,
    nonce: Option<String>,
    via_webhook: bool,
    deleted: bool,
}

/// A Discord that records what the bot did, honours nonces, and fails on demand.
#[derive(Default)]
struct FakeDiscord {
    channels: Mutex<HashMap<u64, Vec<Posted>>>,
    failures: Mutex<HashMap<u64, VecDeque<DiscordError>>>,
    /// Sends to these channels panic (or never answer) this many times first.
    panics: Mutex<HashMap<u64, u32>>,
    hangs: Mutex<HashMap<u64, u32>>,
    next_id: Mutex<u64>,
}

fn take(counts: &Mutex<HashMap<u64, u32>>, channel: u64) -> bool {
    let mut counts = counts.lock().unwrap();
    match counts.get_mut(&channel) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

impl FakeDiscord {
    /// What a bug deep in a client library does: `from_secs_f64(NaN)` and the like.
    async fn misbehave(&self, channel: u64) {
        if take(&self.panics, channel) {
            panic!("injected panic in the send to {channel}");
        }
        if take(&self.hangs, channel) {
            std::future::pending::<()>().await;
        }
    }
    fn fail_next(&self, channel: u64, err: DiscordError) {
        self.failures
            .lock()
            .unwrap()
            .entry(channel)
            .or_default()
            .push_back(err);
    }
    fn injected(&self, channel: u64) -> DiscordResult<()> {
        match self
            .failures
            .lock()
            .unwrap()
            .get_mut(&channel)
            .and_then(|q| q.pop_front())
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    fn live(&self, channel: u64) -> Vec<Posted> {
        self.channels
            .lock()
            .unwrap()
            .get(&channel)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.deleted)
            .collect()
    }
    fn post(&self, channel: u64, content: &str, nonce: Option<&str>, via_webhook: bool) -> u64 {
        let mut chans = self.channels.lock().unwrap();
        let list = chans.entry(channel).or_default();
        if let Some(n) = nonce {
            if let Some(p) = list.iter().find(|p| p.nonce.as_deref() == Some(n)) {
                return p.id;
            }
        }
        let mut next = self.next_id.lock().unwrap();
        *next += 1;
        let id = 900_000 + *next;
        list.push(Posted {
            id,
            content: content.into(),
            nonce: nonce.map(str::to_owned),
            via_webhook,
            deleted: false,
        });
        id
    }
    fn edit(&self, message: u64, content: &str) -> DiscordResult<()> {
        let mut chans = self.channels.lock().unwrap();
        for list in chans.values_mut() {
            if let Some(p) = list.iter_mut().find(|p| p.id == message && !p.deleted) {
                p.content = content.into();
                return Ok(());
            }
        }
        Err(DiscordError::UnknownMessage)
    }
    fn delete(&self, message: u64) -> DiscordResult<()> {
        let mut chans = self.channels.lock().unwrap();
        for list in chans.values_mut() {
            if let Some(p) = list.iter_mut().find(|p| p.id == message && !p.deleted) {
                p.deleted = true;
                return Ok(());
            }
        }
        Err(DiscordError::UnknownMessage)
    }
}

#[async_trait::async_trait]
impl DiscordPort for FakeDiscord {
    async fn create_message(
        &self,
        channel_id: u64,
        m: &OutgoingMessage,
        nonce: &str,
    ) -> DiscordResult<u64> {
        self.misbehave(channel_id).await;
        self.injected(channel_id)?;
        Ok(self.post(channel_id, &m.content, Some(nonce), false))
    }
    async fn edit_message(
        &self,
        channel_id: u64,
        message_id: u64,
        m: &OutgoingMessage,
    ) -> DiscordResult<()> {
        self.injected(channel_id)?;
        self.edit(message_id, &m.content)
    }
    async fn delete_message(&self, channel_id: u64, message_id: u64) -> DiscordResult<()> {
        self.injected(channel_id)?;
        self.delete(message_id)
    }
    async fn create_webhook(
        &self,
        channel_id: u64,
        _name: &str,
    ) -> DiscordResult<WebhookCredentials> {
        self.injected(channel_id)?;
        Ok(WebhookCredentials {
            id: 700_000 + channel_id,
            token: "wh-secret".into(),
        })
    }
    async fn execute_webhook(
        &self,
        w: &WebhookCredentials,
        m: &OutgoingMessage,
        p: &Persona,
    ) -> DiscordResult<u64> {
        let channel = w.id - 700_000;
        self.misbehave(channel).await;
        self.injected(channel)?;
        Ok(self.post(
            channel,
            &format!("{}: {}", p.username, m.content),
            None,
            true,
        ))
    }
    async fn edit_webhook_message(
        &self,
        _w: &WebhookCredentials,
        message_id: u64,
        m: &OutgoingMessage,
    ) -> DiscordResult<()> {
        self.edit(message_id, &m.content)
    }
    async fn delete_webhook_message(
        &self,
        _w: &WebhookCredentials,
        message_id: u64,
    ) -> DiscordResult<()> {
        self.delete(message_id)
    }
}

struct Harness {
    _t: TestDatabase,
    store: MirrorStore,
    discord: Arc<FakeDiscord>,
    cache_actor: Addr<SnapshotCacheActor>,
    gate: Addr<MirrorGate>,
    mapping_a: i64,
    mapping_b: i64,
}

fn key(guild: u64) -> ServerKey {
    ServerKey {
        tenant_key: "acme".into(),
        connector_id: "signals".into(),
        guild_id: guild,
    }
}

async fn mapping(t: &TestDatabase, guild: u64, channel: u64, mode: &str) -> i64 {
    let m = entities::connector_mappings::ActiveModel {
        tenant_key: Set("acme".into()),
        connector_id: Set("signals".into()),
        source_channel_id: Set(snowflake::to_db(SOURCE)),
        target_guild_id: Set(snowflake::to_db(guild)),
        target_channel_id: Set(snowflake::to_db(channel)),
        delivery_mode: Set(mode.into()),
        enabled: Set(true),
        created_at: Set(0),
        updated_at: Set(0),
        ..Default::default()
    }
    .insert(t.db.conn())
    .await
    .unwrap();
    m.id
}

async fn harness(max_age: Duration) -> Harness {
    build_harness(max_age, true, Duration::from_millis(50)).await
}

async fn harness_without_gate() -> Harness {
    build_harness(Duration::from_secs(3600), false, Duration::from_millis(50)).await
}

/// A gate whose claim loop, after its first look at the queue, sleeps for an hour unless
/// woken: whatever it delivers without a [`Wake`] came to it some other way.
async fn harness_that_claims_only_when_woken() -> Harness {
    build_harness(Duration::from_secs(3600), true, Duration::from_secs(3600)).await
}

async fn build_harness(max_age: Duration, with_port: bool, poll: Duration) -> Harness {
    let t = TestDatabase::new().await.unwrap();
    seatgate::store::testing::seed::connector(&t.db, "acme", "signals", SOURCE_GUILD)
        .await
        .unwrap();
    let mapping_a = mapping(&t, GUILD_A, CHAN_A, "bot").await;
    let mapping_b = mapping(&t, GUILD_B, CHAN_B, "webhook").await;
    let policy = RetryPolicy {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(200),
        max_attempts: 8,
    };
    let store = MirrorStore::new(t.db.clone(), MirrorQueue::mirror(t.db.clone(), policy));
    let discord = Arc::new(FakeDiscord::default());
    let cache = SnapshotCache::new(false);
    let mut cfg = MirrorGateConfig::new("test-worker".into());
    cfg.poll = poll;
    cfg.held_retry = Duration::from_secs(30);
    cfg.max_age = max_age;
    cfg.delivery_timeout = Duration::from_secs(2);
    let port = with_port.then(|| discord.clone() as Arc<dyn DiscordPort>);
    let gate = MirrorGate::new(store.clone(), cache.clone(), port, None, cfg).start();
    let cache_actor = SnapshotCacheActor::new(cache, gate.clone().recipient())
        .with_resume(gate.clone().recipient())
        .start();
    Harness {
        _t: t,
        store,
        discord,
        cache_actor,
        gate,
        mapping_a,
        mapping_b,
    }
}

fn payload(content: &str) -> MirrorPayload {
    MirrorPayload {
        content: content.into(),
        author_name: "Provider".into(),
        ..Default::default()
    }
}

async fn ingest(h: &Harness, event: SourceEvent) {
    h.store.ingest(&event, now_ms()).await.unwrap();
    h.gate.do_send(Wake);
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

async fn enforce(h: &Harness, guild: u64, used: u64, limit: u64) {
    h.cache_actor
        .send(PolicyUpdated {
            key: key(guild),
            policy: Some(ServerPolicy {
                mode: EnforcementMode::Enforce,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    h.cache_actor
        .send(SnapshotUpdated {
            key: key(guild),
            snapshot: SnapshotView {
                seats_used: used,
                seat_limit: limit,
                checked_at_ms: now_ms(),
                audit_failed: false,
            },
        })
        .await
        .unwrap();
}

async fn job_errors(h: &Harness, mapping: i64) -> Vec<(String, Option<String>)> {
    entities::mirror_jobs::Entity::find()
        .filter(entities::mirror_jobs::Column::MappingId.eq(mapping))
        .all(h.store.queue().database().conn())
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.status, j.last_error))
        .collect()
}

#[actix_web::test]
async fn messages_edits_and_deletes_reach_every_target_once() {
    let h = harness(Duration::from_secs(3600)).await;
    ingest(
        &h,
        SourceEvent::Created {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 5001,
            payload: payload("BUY 1"),
        },
    )
    .await;
    eventually("both targets got the message", || {
        h.discord.live(CHAN_A).len() == 1 && h.discord.live(CHAN_B).len() == 1
    })
    .await;
    assert_eq!(h.discord.live(CHAN_A)[0].content, "BUY 1");
    assert!(h.discord.live(CHAN_A)[0]
        .nonce
        .as_deref()
        .is_some_and(|n| n.len() <= 25));
    assert!(h.discord.live(CHAN_B)[0].via_webhook);
    assert_eq!(h.discord.live(CHAN_B)[0].content, "Provider: BUY 1");

    ingest(
        &h,
        SourceEvent::Updated {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 5001,
            payload: payload("BUY 2"),
        },
    )
    .await;
    eventually("edit propagated", || {
        h.discord.live(CHAN_A)[0].content == "BUY 2" && h.discord.live(CHAN_B)[0].content == "BUY 2"
    })
    .await;

    ingest(
        &h,
        SourceEvent::Deleted {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 5001,
        },
    )
    .await;
    eventually("delete propagated", || {
        h.discord.live(CHAN_A).is_empty() && h.discord.live(CHAN_B).is_empty()
    })
    .await;
    let start = Instant::now();
    while h.store.link(h.mapping_a, 5001).await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "link not removed after delete"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn an_over_limit_server_is_held_while_the_other_keeps_receiving_then_resumes() {
    let h = harness(Duration::from_secs(3600)).await;
    enforce(&h, GUILD_A, 11, 10).await;
    ingest(
        &h,
        SourceEvent::Created {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 6001,
            payload: payload("held"),
        },
    )
    .await;
    eventually("server B receives", || h.discord.live(CHAN_B).len() == 1).await;
    let start = Instant::now();
    while job_errors(&h, h.mapping_a).await
        != vec![(
            "pending".to_string(),
            Some("seat_limit_exceeded".to_string()),
        )]
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            job_errors(&h, h.mapping_a).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(h.discord.live(CHAN_A).is_empty());

    // Back under the limit: the cache wakes the gate and the held message arrives at once,
    // well before its 30 s retry.
    let resumed_at = Instant::now();
    h.cache_actor
        .send(SnapshotUpdated {
            key: key(GUILD_A),
            snapshot: SnapshotView {
                seats_used: 10,
                seat_limit: 10,
                checked_at_ms: now_ms(),
                audit_failed: false,
            },
        })
        .await
        .unwrap();
    eventually("held message arrives", || h.discord.live(CHAN_A).len() == 1).await;
    assert!(resumed_at.elapsed() < Duration::from_secs(5));
}

#[actix_web::test]
async fn edits_before_delivery_rewrite_the_pending_send_and_deletes_cancel_it() {
    // No gate running: the jobs stay exactly as ingest wrote them.
    let h = harness_without_gate().await;
    let now = now_ms();
    h.store
        .ingest(
            &SourceEvent::Created {
                guild_id: SOURCE_GUILD,
                channel_id: SOURCE,
                message_id: 7001,
                payload: payload("v1"),
            },
            now,
        )
        .await
        .unwrap();
    let o = h
        .store
        .ingest(
            &SourceEvent::Updated {
                guild_id: SOURCE_GUILD,
                channel_id: SOURCE,
                message_id: 7001,
                payload: payload("v2"),
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        (o.enqueued, o.coalesced),
        (0, 2),
        "both targets' pending sends rewritten"
    );
    h.store
        .ingest(
            &SourceEvent::Created {
                guild_id: SOURCE_GUILD,
                channel_id: SOURCE,
                message_id: 7002,
                payload: payload("gone"),
            },
            now,
        )
        .await
        .unwrap();
    let o = h
        .store
        .ingest(
            &SourceEvent::Deleted {
                guild_id: SOURCE_GUILD,
                channel_id: SOURCE,
                message_id: 7002,
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        (o.enqueued, o.cancelled),
        (0, 2),
        "nothing reached Discord, nothing to delete"
    );
    let jobs = entities::mirror_jobs::Entity::find()
        .filter(entities::mirror_jobs::Column::MappingId.eq(h.mapping_a))
        .all(h.store.queue().database().conn())
        .await
        .unwrap();
    let summary: Vec<(String, String, bool)> = jobs
        .iter()
        .map(|j| (j.kind.clone(), j.status.clone(), j.payload.contains("v2")))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("send".into(), "pending".into(), true),
            ("send".into(), "cancelled".into(), false)
        ]
    );
}

#[actix_web::test]
async fn edits_and_deletes_racing_a_held_send_end_with_the_latest_text_only() {
    let h = harness(Duration::from_secs(3600)).await;
    enforce(&h, GUILD_A, 99, 10).await;
    ingest(
        &h,
        SourceEvent::Created {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 7001,
            payload: payload("v1"),
        },
    )
    .await;
    ingest(
        &h,
        SourceEvent::Updated {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 7001,
            payload: payload("v2"),
        },
    )
    .await;
    ingest(
        &h,
        SourceEvent::Created {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 7002,
            payload: payload("gone"),
        },
    )
    .await;
    ingest(
        &h,
        SourceEvent::Deleted {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 7002,
        },
    )
    .await;
    eventually("B shows v2 and not the deleted one", || {
        let b = h.discord.live(CHAN_B);
        b.len() == 1 && b[0].content.ends_with("v2")
    })
    .await;
    assert!(h.discord.live(CHAN_A).is_empty(), "A is over its limit");
    enforce(&h, GUILD_A, 1, 10).await;
    eventually("A shows exactly the latest text", || {
        let a = h.discord.live(CHAN_A);
        a.len() == 1 && a[0].content == "v2"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = h.discord.live(CHAN_A);
    assert_eq!(a.len(), 1, "the deleted message never shows: {a:?}");
}

#[actix_web::test]
async fn rate_limits_reschedule_and_permanent_errors_break_only_their_mapping() {
    let h = harness(Duration::from_secs(3600)).await;
    h.discord.fail_next(
        CHAN_A,
        DiscordError::RateLimited {
            retry_after: Duration::from_millis(300),
            global: false,
        },
    );
    h.discord.fail_next(CHAN_B, DiscordError::UnknownChannel);
    let start = Instant::now();
    ingest(
        &h,
        SourceEvent::Created {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 8001,
            payload: payload("x"),
        },
    )
    .await;
    eventually("A delivered after retry_after", || {
        h.discord.live(CHAN_A).len() == 1
    })
    .await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    let mapping_b = h.store.mapping(h.mapping_b).await.unwrap().unwrap();
    assert_eq!(
        mapping_b.broken_code.as_deref(),
        Some("discord_unknown_channel")
    );
    let jobs = job_errors(&h, h.mapping_b).await;
    assert_eq!(
        jobs,
        vec![(
            "failed".to_string(),
            Some("discord_unknown_channel".to_string())
        )]
    );

    // The broken mapping gets no new jobs; the healthy one keeps flowing.
    ingest(
        &h,
        SourceEvent::Created {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 8002,
            payload: payload("y"),
        },
    )
    .await;
    eventually("A keeps flowing", || h.discord.live(CHAN_A).len() == 2).await;
    assert_eq!(job_errors(&h, h.mapping_b).await.len(), 1);
}

#[actix_web::test]
async fn server_errors_retry_with_backoff_and_deliver_once() {
    let h = harness(Duration::from_secs(3600)).await;
    for _ in 0..3 {
        h.discord
            .fail_next(CHAN_A, DiscordError::Transient("500: boom".into()));
    }
    ingest(
        &h,
        SourceEvent::Created {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 9001,
            payload: payload("z"),
        },
    )
    .await;
    eventually("delivered after three 500s", || {
        h.discord.live(CHAN_A).len() == 1
    })
    .await;
    let start = Instant::now();
    loop {
        let job = entities::mirror_jobs::Entity::find()
            .filter(entities::mirror_jobs::Column::MappingId.eq(h.mapping_a))
            .one(h.store.queue().database().conn())
            .await
            .unwrap()
            .unwrap();
        if job.status == "done" {
            assert_eq!(job.attempts, 4);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{job:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.discord.live(CHAN_A).len(), 1, "delivered once");
}

async fn a_delivery_that_never_comes_back_fails_its_job_and_frees_its_lane(hang: bool) {
    let h = harness(Duration::from_secs(3600)).await;
    let counts = if hang {
        &h.discord.hangs
    } else {
        &h.discord.panics
    };
    counts.lock().unwrap().insert(CHAN_A, 1);
    counts.lock().unwrap().insert(CHAN_B, 1);
    for (id, text) in [(7101, "first"), (7102, "second")] {
        ingest(
            &h,
            SourceEvent::Created {
                guild_id: SOURCE_GUILD,
                channel_id: SOURCE,
                message_id: id,
                payload: payload(text),
            },
        )
        .await;
    }
    // (A job that fails is retried after its backoff, so "second" may land first.)
    eventually("both messages on both targets", || {
        let contents = |c| {
            let mut v: Vec<String> = h.discord.live(c).into_iter().map(|p| p.content).collect();
            v.sort();
            v
        };
        contents(CHAN_A) == ["first", "second"]
            && contents(CHAN_B) == ["Provider: first", "Provider: second"]
    })
    .await;
    // The failed attempt counted, and nothing came twice.
    all_done_after(&h, 7101, 2).await;
    all_done_after(&h, 7102, 1).await;
    // The lane and the worker's place in flight are free: a third message still arrives.
    ingest(
        &h,
        SourceEvent::Created {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 7103,
            payload: payload("third"),
        },
    )
    .await;
    eventually("the third message", || {
        h.discord.live(CHAN_A).len() == 3 && h.discord.live(CHAN_B).len() == 3
    })
    .await;
}

#[actix_web::test]
async fn a_delivery_that_panics_fails_its_job_and_frees_its_lane() {
    a_delivery_that_never_comes_back_fails_its_job_and_frees_its_lane(false).await;
}

#[actix_web::test]
async fn a_delivery_that_hangs_times_out_and_frees_its_lane() {
    a_delivery_that_never_comes_back_fails_its_job_and_frees_its_lane(true).await;
}

#[actix_web::test]
async fn jobs_older_than_the_maximum_age_expire_instead_of_arriving_late() {
    let h = harness(Duration::from_millis(300)).await;
    enforce(&h, GUILD_A, 99, 10).await;
    ingest(
        &h,
        SourceEvent::Created {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 9101,
            payload: payload("old news"),
        },
    )
    .await;
    eventually("B delivered", || h.discord.live(CHAN_B).len() == 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    enforce(&h, GUILD_A, 1, 10).await;
    let mut expired = false;
    let start = Instant::now();
    while !expired && start.elapsed() < Duration::from_secs(10) {
        expired = job_errors(&h, h.mapping_a).await
            == vec![(
                "expired".to_string(),
                Some("mirror_job_expired".to_string()),
            )];
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(expired, "{:?}", job_errors(&h, h.mapping_a).await);
    assert!(h.discord.live(CHAN_A).is_empty());
}

fn created(message_id: u64, content: &str) -> SourceEvent {
    SourceEvent::Created {
        guild_id: SOURCE_GUILD,
        channel_id: SOURCE,
        message_id,
        payload: payload(content),
    }
}

async fn jobs_of_message(h: &Harness, message_id: u64) -> Vec<entities::mirror_jobs::Model> {
    entities::mirror_jobs::Entity::find()
        .filter(entities::mirror_jobs::Column::SourceMessageId.eq(snowflake::to_db(message_id)))
        .all(h.store.queue().database().conn())
        .await
        .unwrap()
}

/// Waits until every job of `message_id` is done after `attempts` claims.
async fn all_done_after(h: &Harness, message_id: u64, attempts: i32) {
    let start = Instant::now();
    loop {
        let jobs = jobs_of_message(h, message_id).await;
        if jobs
            .iter()
            .all(|j| j.status == "done" && j.attempts == attempts)
        {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn sends_written_claimed_at_ingest_reach_the_gate_without_a_claim() {
    let h = harness_that_claims_only_when_woken().await;
    // Let the claim loop's first look pass, so that it is asleep.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stamp = h
        .gate
        .send(OfferSends)
        .await
        .unwrap()
        .expect("a gate with room offers");
    assert_eq!(stamp.worker, "test-worker");
    let (outcome, sends) = h
        .store
        .ingest_claimed(&created(6001, "BUY 6001"), now_ms(), &stamp)
        .await
        .unwrap();
    assert_eq!(outcome.enqueued, 2);
    assert_eq!(sends.jobs.len(), 2);
    let mut mappings: Vec<i64> = sends.mappings.iter().map(|m| m.id).collect();
    mappings.sort_unstable();
    assert_eq!(mappings, vec![h.mapping_a, h.mapping_b]);
    for job in &sends.jobs {
        assert_eq!(job.status, "processing");
        assert_eq!(job.claim_token.as_deref(), Some(stamp.token.as_str()));
        assert_eq!(job.lease_owner.as_deref(), Some("test-worker"));
        assert_eq!(job.attempts, 1);
    }
    h.gate.do_send(SendsClaimed {
        stamp: stamp.clone(),
        sends,
    });
    eventually("both targets got the message, the gate never woken", || {
        h.discord.live(CHAN_A).len() == 1 && h.discord.live(CHAN_B).len() == 1
    })
    .await;
    assert_eq!(h.discord.live(CHAN_A)[0].content, "BUY 6001");
    all_done_after(&h, 6001, 1).await;
    assert!(h.store.link(h.mapping_a, 6001).await.unwrap().is_some());

    // The same message again (a replayed event) writes and hands over nothing.
    let again = h.gate.send(OfferSends).await.unwrap().unwrap();
    let (outcome, sends) = h
        .store
        .ingest_claimed(&created(6001, "BUY 6001"), now_ms(), &again)
        .await
        .unwrap();
    assert_eq!((outcome.enqueued, outcome.duplicates), (0, 2));
    assert!(sends.jobs.is_empty());
    h.gate.do_send(SendsClaimed {
        stamp: again,
        sends,
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.discord.live(CHAN_A).len(), 1);
    assert_eq!(h.discord.live(CHAN_B).len(), 1);
}

#[actix_web::test]
async fn an_edit_of_a_send_claimed_at_ingest_waits_for_it() {
    let h = harness_that_claims_only_when_woken().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stamp = h.gate.send(OfferSends).await.unwrap().unwrap();
    let (_, sends) = h
        .store
        .ingest_claimed(&created(6101, "first"), now_ms(), &stamp)
        .await
        .unwrap();
    // The edit arrives while its sends are claimed but not yet delivered: it cannot rewrite
    // them, so it is a job of its own, which no claim may take before the send is settled.
    ingest(
        &h,
        SourceEvent::Updated {
            guild_id: SOURCE_GUILD,
            channel_id: SOURCE,
            message_id: 6101,
            payload: payload("second"),
        },
    )
    .await;
    let claimed = h
        .store
        .queue()
        .claim("another-worker", 10, Duration::from_secs(60), now_ms())
        .await
        .unwrap();
    assert!(
        claimed.is_empty(),
        "edit claimed before its send: {claimed:?}"
    );
    h.gate.do_send(SendsClaimed { stamp, sends });
    eventually("the edit lands after the send", || {
        let (a, b) = (h.discord.live(CHAN_A), h.discord.live(CHAN_B));
        a.len() == 1 && b.len() == 1 && a[0].content == "second" && b[0].content == "second"
    })
    .await;
}

#[actix_web::test]
async fn sends_claimed_for_a_gate_that_never_takes_them_run_once_their_lease_ends() {
    let h = harness(Duration::from_secs(3600)).await;
    // A stamp no gate issued (its process died between the write and the hand-over).
    let stamp = ClaimStamp {
        worker: "dead-worker".into(),
        token: "lost".into(),
        lease_expires_at: now_ms() + 300,
    };
    let (_, sends) = h
        .store
        .ingest_claimed(&created(6201, "late but there"), now_ms(), &stamp)
        .await
        .unwrap();
    assert_eq!(sends.jobs.len(), 2);
    h.gate.do_send(Wake);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        h.discord.live(CHAN_A).is_empty(),
        "a live lease is not taken over"
    );
    eventually("delivered once the lease ran out", || {
        h.discord.live(CHAN_A).len() == 1 && h.discord.live(CHAN_B).len() == 1
    })
    .await;
    // Claimed twice: at ingest, and by the gate after the lease ran out.
    all_done_after(&h, 6201, 2).await;
}

#[actix_web::test]
async fn a_gate_without_discord_offers_no_claim() {
    let h = harness_without_gate().await;
    assert_eq!(h.gate.send(OfferSends).await.unwrap(), None);
}
