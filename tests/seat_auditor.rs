//! The seat auditor fed with gateway changes and a scripted Discord REST reader, on the
//! backend `SEATGATE_TEST_DATABASE` selects.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use seatgate::{
    actors::{
        seat_auditor::{AuditReason, AuditRequested, GuildChange, SeatAuditor, SeatAuditorConfig},
        snapshot_cache::{PolicyUpdated, SnapshotUpdated},
        ServerKey,
    },
    discord::port::{DiscordError, DiscordResult, GuildReader},
    discord::shards::ShardStates,
    domain::{
        backoff::RetryPolicy,
        gate::SnapshotView,
        permissions::{Overwrite, VIEW_CHANNEL},
        seats::{ChannelSnapshot, GuildEvent, GuildSnapshot, MemberSnapshot, RoleSnapshot},
    },
    store::{
        now_ms,
        queue::AuditQueue,
        seat_audit::SeatAuditStore,
        testing::{seed, TestDatabase},
    },
};

const GUILD: u64 = 5_000;
const OWNER: u64 = 1;
const MEMBER_ROLE: u64 = 600;
const HIDDEN_ROLE: u64 = 601;
const CH1: u64 = 701;
const CH2: u64 = 702;
const BOT: u64 = 990;

/// Records what the auditor tells the snapshot cache.
#[derive(Default)]
struct Spy {
    snapshots: Arc<Mutex<Vec<(ServerKey, SnapshotView)>>>,
}
impl Actor for Spy {
    type Context = Context<Self>;
}
impl Handler<SnapshotUpdated> for Spy {
    type Result = ();
    fn handle(&mut self, msg: SnapshotUpdated, _: &mut Self::Context) {
        self.snapshots.lock().unwrap().push((msg.key, msg.snapshot));
    }
}
impl Handler<PolicyUpdated> for Spy {
    type Result = ();
    fn handle(&mut self, _: PolicyUpdated, _: &mut Self::Context) {}
}

/// Discord's REST API as a script: the guild, or failures to return first.
#[derive(Default)]
struct FakeReader {
    guilds: Mutex<HashMap<u64, GuildSnapshot>>,
    failures: Mutex<VecDeque<DiscordError>>,
    fail_always: Mutex<Option<DiscordError>>,
    calls: Mutex<u32>,
    /// When set, a member page is read, then waits for a permit before answering.
    hold: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    entered: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl GuildReader for FakeReader {
    async fn guild_structure(
        &self,
        guild_id: u64,
        _targets: &[u64],
    ) -> DiscordResult<(GuildSnapshot, Option<u64>)> {
        *self.calls.lock().unwrap() += 1;
        if let Some(e) = self.fail_always.lock().unwrap().clone() {
            return Err(e);
        }
        if let Some(e) = self.failures.lock().unwrap().pop_front() {
            return Err(e);
        }
        let mut g = self.read(guild_id)?;
        let n = g.members.len() as u64;
        g.members.clear();
        Ok((g, Some(n)))
    }

    /// Reads the member list, then (when held) waits for a permit before answering.
    async fn members_after(
        &self,
        guild_id: u64,
        after: u64,
        limit: u16,
    ) -> DiscordResult<Vec<MemberSnapshot>> {
        let mut members = self.read(guild_id)?.members;
        members.sort_by_key(|m| m.user_id);
        let hold = self.hold.lock().unwrap().clone();
        if let Some(hold) = hold {
            self.entered.notify_one();
            hold.acquire().await.unwrap().forget();
        }
        Ok(members
            .into_iter()
            .filter(|m| m.user_id > after)
            .take(limit as usize)
            .collect())
    }
}

impl FakeReader {
    fn read(&self, guild_id: u64) -> DiscordResult<GuildSnapshot> {
        self.guilds
            .lock()
            .unwrap()
            .get(&guild_id)
            .cloned()
            .ok_or(DiscordError::MissingAccess)
    }
}

fn member(id: u64, roles: &[u64]) -> MemberSnapshot {
    MemberSnapshot {
        user_id: id,
        roles: roles.to_vec(),
        is_bot: false,
    }
}

/// @everyone sees nothing; MEMBER_ROLE sees CH1 and CH2 through overwrites; HIDDEN_ROLE
/// sees nothing. Owner + 2 members = 3 seats.
fn guild() -> GuildSnapshot {
    let ch = |id| ChannelSnapshot {
        id,
        overwrites: vec![
            Overwrite::role(GUILD, 0, VIEW_CHANNEL),
            Overwrite::role(MEMBER_ROLE, VIEW_CHANNEL, 0),
        ],
    };
    GuildSnapshot {
        guild_id: GUILD,
        owner_id: OWNER,
        roles: vec![
            RoleSnapshot {
                id: GUILD,
                permissions: VIEW_CHANNEL,
            },
            RoleSnapshot {
                id: MEMBER_ROLE,
                permissions: 0,
            },
            RoleSnapshot {
                id: HIDDEN_ROLE,
                permissions: 0,
            },
        ],
        channels: vec![ch(CH1), ch(CH2)],
        threads: Vec::new(),
        members: vec![
            member(OWNER, &[]),
            member(11, &[MEMBER_ROLE]),
            member(12, &[MEMBER_ROLE]),
        ],
    }
}

fn key() -> ServerKey {
    ServerKey {
        tenant_key: "acme".into(),
        connector_id: "signals".into(),
        guild_id: GUILD,
    }
}

async fn configure(t: &TestDatabase, limit: i64) {
    let owner = ("acme", "signals");
    seed::connector(&t.db, "acme", "signals", 1).await.unwrap();
    for ch in [CH1, CH2] {
        seed::mapping(&t.db, owner, 100, (GUILD, ch), "bot")
            .await
            .unwrap();
    }
    seed::enforced_server(&t.db, owner, GUILD, limit, None)
        .await
        .unwrap();
}

struct Harness {
    t: TestDatabase,
    auditor: Addr<SeatAuditor>,
    reader: Arc<FakeReader>,
    seen: Arc<Mutex<Vec<(ServerKey, SnapshotView)>>>,
}

async fn start(t: TestDatabase, reader: Option<Arc<FakeReader>>, policy: RetryPolicy) -> Harness {
    start_on(t, reader, policy, ShardStates::default()).await
}

/// [`start`] for a process running the shards `shards` says.
async fn start_on(
    t: TestDatabase,
    reader: Option<Arc<FakeReader>>,
    policy: RetryPolicy,
    shards: ShardStates,
) -> Harness {
    let spy = Spy::default();
    let seen = spy.snapshots.clone();
    let spy = spy.start();
    let reader = reader.unwrap_or_default();
    let mut cfg = SeatAuditorConfig::new("test-auditor".into());
    cfg.poll = Duration::from_millis(50);
    let auditor = SeatAuditor::new(
        SeatAuditStore::new(t.db.clone()),
        AuditQueue::audit(t.db.clone(), policy),
        cfg,
    )
    .with_shards(shards)
    .with_cache(spy.clone().recipient(), spy.recipient())
    .with_reader(reader.clone() as Arc<dyn GuildReader>)
    .start();
    Harness {
        t,
        auditor,
        reader,
        seen,
    }
}

fn last(h: &Harness) -> Option<SnapshotView> {
    h.seen.lock().unwrap().last().map(|(_, v)| *v)
}

async fn wait_for(h: &Harness, what: &str, check: impl Fn(&SnapshotView) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if last(h).is_some_and(|v| check(&v)) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}; last = {:?}",
            last(h)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn counted(h: &Harness, reason: AuditReason) {
    h.auditor
        .send(AuditRequested { key: key(), reason })
        .await
        .unwrap()
        .unwrap();
}

async fn ready_at_limit() -> Harness {
    let t = TestDatabase::new().await.unwrap();
    configure(&t, 3).await;
    let reader = Arc::new(FakeReader::default());
    reader.guilds.lock().unwrap().insert(GUILD, guild());
    let h = start(t, Some(reader), RetryPolicy::default()).await;
    h.auditor
        .send(GuildChange::SessionStarted {
            shard: seatgate::domain::shards::Shard::ONLY,
            resumed_gap: false,
        })
        .await
        .unwrap();
    counted(&h, AuditReason::AdminRefresh).await;
    wait_for(&h, "initial recount", |v| {
        v.seats_used == 3 && v.seat_limit == 3
    })
    .await;
    h
}

/// With shard leases, a guild whose shard another process runs is that process's to count:
/// its audit job goes back to the queue untouched (no read, no snapshot, no attempt), and is
/// counted here once this process runs the shard.
#[actix_web::test]
async fn with_leased_shards_only_the_owner_of_a_guilds_shard_counts_it() {
    use seatgate::domain::shards::{shard_of, Shard};
    let t = TestDatabase::new().await.unwrap();
    configure(&t, 10).await;
    let reader = Arc::new(FakeReader::default());
    reader.guilds.lock().unwrap().insert(GUILD, guild());
    let shards = ShardStates::default();
    shards.set_leased();
    let own = shard_of(GUILD, 2) as u32;
    shards.ready(Shard {
        id: 1 - own,
        total: 2,
    });
    let queue = AuditQueue::audit(t.db.clone(), RetryPolicy::default());
    let h = start_on(
        t,
        Some(reader.clone()),
        RetryPolicy::default(),
        shards.clone(),
    )
    .await;
    counted(&h, AuditReason::AdminRefresh).await;
    // Many of the worker's 50 ms polls.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        *reader.calls.lock().unwrap(),
        0,
        "counted on another process's shard"
    );
    assert!(
        last(&h).is_none(),
        "a snapshot published for a guild not owned"
    );
    let counts = queue.counts(seatgate::store::now_ms()).await.unwrap();
    assert_eq!(counts.pending, 1, "the job waits for its owner: {counts:?}");

    // This process takes the guild's shard: the same job is counted here.
    shards.ready(Shard { id: own, total: 2 });
    wait_for(&h, "counted once the shard is ours", |v| v.seats_used == 3).await;
    assert_eq!(*reader.calls.lock().unwrap(), 1);
}

/// With several shards a READY after a gap loses only that shard's events: the guilds of
/// the other shards keep their counts (and cost no recount).
#[actix_web::test]
async fn a_new_session_after_a_gap_recounts_the_guilds_of_its_own_shard_only() {
    use seatgate::domain::shards::{shard_of, Shard};
    let h = ready_at_limit().await;
    let calls = || *h.reader.calls.lock().unwrap();
    let before = calls();
    // Unseen by the auditor: only a recount reads it.
    let mut grown = guild();
    grown.members.push(member(13, &[MEMBER_ROLE]));
    h.reader.guilds.lock().unwrap().insert(GUILD, grown);

    let own = shard_of(GUILD, 2) as u32;
    let other = Shard {
        id: 1 - own,
        total: 2,
    };
    h.auditor
        .send(GuildChange::SessionStarted {
            shard: other,
            resumed_gap: true,
        })
        .await
        .unwrap();
    // Six of the auditor's queue polls.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls(), before, "another shard's gap recounted this guild");
    assert_eq!(last(&h).map(|v| v.seats_used), Some(3));

    let own = Shard { id: own, total: 2 };
    h.auditor
        .send(GuildChange::SessionStarted {
            shard: own,
            resumed_gap: true,
        })
        .await
        .unwrap();
    wait_for(&h, "recounted after its shard's gap", |v| v.seats_used == 4).await;
    assert_eq!(calls(), before + 1);
}

#[actix_web::test]
async fn a_member_joining_past_the_limit_is_over_within_two_seconds_and_under_when_they_leave() {
    let h = ready_at_limit().await;
    h.auditor.do_send(GuildChange::event(
        GUILD,
        GuildEvent::MemberUpsert {
            user_id: 13,
            roles: vec![MEMBER_ROLE],
            bot: false,
        },
    ));
    let took = wait_for(&h, "over the limit", |v| {
        v.seats_used == 4 && v.is_over_limit()
    })
    .await;
    println!(
        "member join -> snapshot over the limit in the cache: {:?}",
        took
    );
    assert!(took < Duration::from_secs(2));
    h.auditor.do_send(GuildChange::event(
        GUILD,
        GuildEvent::MemberRemove { user_id: 13 },
    ));
    wait_for(&h, "under again", |v| {
        v.seats_used == 3 && !v.is_over_limit()
    })
    .await;

    let events = SeatAuditStore::new(h.t.db.clone());
    let start = Instant::now();
    loop {
        let states: Vec<(String, String)> = events
            .events(&key())
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.from_state, e.to_state))
            .collect();
        if states.len() >= 3 {
            assert_eq!(
                states,
                vec![
                    ("unknown".into(), "under".into()),
                    ("under".into(), "over".into()),
                    ("over".into(), "under".into())
                ]
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{states:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn bots_and_members_who_cannot_see_change_nothing_until_a_role_lets_them_see() {
    let h = ready_at_limit().await;
    let writes_before = h.seen.lock().unwrap().len();
    h.auditor
        .send(GuildChange::event(
            GUILD,
            GuildEvent::MemberUpsert {
                user_id: BOT,
                roles: vec![MEMBER_ROLE],
                bot: true,
            },
        ))
        .await
        .unwrap();
    h.auditor
        .send(GuildChange::event(
            GUILD,
            GuildEvent::MemberUpsert {
                user_id: 14,
                roles: vec![HIDDEN_ROLE],
                bot: false,
            },
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        h.seen.lock().unwrap().len(),
        writes_before,
        "nothing visible changed"
    );
    assert_eq!(last(&h).unwrap().seats_used, 3);

    // A role-level VIEW_CHANNEL is not enough: the @everyone overwrite denies it in both
    // mapped channels. An allow overwrite for the role is.
    h.auditor
        .send(GuildChange::event(
            GUILD,
            GuildEvent::RoleUpsert {
                role_id: HIDDEN_ROLE,
                permissions: VIEW_CHANNEL,
            },
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(last(&h).unwrap().seats_used, 3);
    h.auditor.do_send(GuildChange::event(
        GUILD,
        GuildEvent::ChannelUpsert {
            channel_id: CH1,
            overwrites: vec![
                Overwrite::role(GUILD, 0, VIEW_CHANNEL),
                Overwrite::role(MEMBER_ROLE, VIEW_CHANNEL, 0),
                Overwrite::role(HIDDEN_ROLE, VIEW_CHANNEL, 0),
            ],
        },
    ));
    wait_for(
        &h,
        "member 14 counted once the overwrite lets the role see",
        |v| v.seats_used == 4,
    )
    .await;
}

#[actix_web::test]
async fn an_overwrite_hiding_a_mapped_channel_drops_exactly_those_who_see_no_mapped_channel() {
    let t = TestDatabase::new().await.unwrap();
    configure(&t, 100).await;
    let mut g = guild();
    // Member 21 holds HIDDEN_ROLE, which sees only CH2 through an overwrite.
    g.channels[1]
        .overwrites
        .push(Overwrite::role(HIDDEN_ROLE, VIEW_CHANNEL, 0));
    g.members.push(member(21, &[HIDDEN_ROLE]));
    let reader = Arc::new(FakeReader::default());
    reader.guilds.lock().unwrap().insert(GUILD, g);
    let h = start(t, Some(reader), RetryPolicy::default()).await;
    counted(&h, AuditReason::AdminRefresh).await;
    wait_for(&h, "4 seats", |v| v.seats_used == 4).await;
    // CH2 loses its HIDDEN_ROLE overwrite: member 21 saw only CH2 and drops; members 11
    // and 12 still see both channels.
    h.auditor
        .send(GuildChange::event(
            GUILD,
            GuildEvent::ChannelUpsert {
                channel_id: CH2,
                overwrites: vec![
                    Overwrite::role(GUILD, 0, VIEW_CHANNEL),
                    Overwrite::role(MEMBER_ROLE, VIEW_CHANNEL, 0),
                ],
            },
        ))
        .await
        .unwrap();
    wait_for(&h, "member 21 lost CH2, their only mapped channel", |v| {
        v.seats_used == 3
    })
    .await;
}

#[actix_web::test]
async fn a_burst_of_a_thousand_member_events_makes_a_handful_of_writes_and_the_right_count() {
    let t = TestDatabase::new().await.unwrap();
    configure(&t, 10_000).await;
    let reader = Arc::new(FakeReader::default());
    reader.guilds.lock().unwrap().insert(GUILD, guild());
    let h = start(t, Some(reader), RetryPolicy::default()).await;
    counted(&h, AuditReason::AdminRefresh).await;
    wait_for(&h, "initial", |v| v.seats_used == 3).await;
    let before = h.seen.lock().unwrap().len();
    for i in 0..1_000u64 {
        let change = if i % 4 == 3 {
            GuildChange::event(
                GUILD,
                GuildEvent::MemberRemove {
                    user_id: 10_000 + i - 1,
                },
            )
        } else {
            GuildChange::event(
                GUILD,
                GuildEvent::MemberUpsert {
                    user_id: 10_000 + i,
                    roles: vec![MEMBER_ROLE],
                    bot: false,
                },
            )
        };
        h.auditor.do_send(change);
    }
    // 1000 events: 750 joins, 250 of them leave again.
    wait_for(&h, "final count", |v| v.seats_used == 3 + 500).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let writes = h.seen.lock().unwrap().len() - before;
    println!("1000 member events -> {writes} snapshot writes");
    assert!(writes <= 5, "{writes} writes");
    assert_eq!(last(&h).unwrap().seats_used, 503);
}

#[actix_web::test]
async fn a_hundred_refresh_requests_leave_one_pending_audit_job() {
    let t = TestDatabase::new().await.unwrap();
    configure(&t, 10).await;
    let spy = Spy::default().start();
    // No reader: the jobs are only queued.
    let auditor = SeatAuditor::new(
        SeatAuditStore::new(t.db.clone()),
        AuditQueue::audit(t.db.clone(), RetryPolicy::default()),
        SeatAuditorConfig::new("w".into()),
    )
    .with_cache(spy.clone().recipient(), spy.recipient())
    .start();
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(
            auditor
                .send(AuditRequested {
                    key: key(),
                    reason: AuditReason::AdminRefresh,
                })
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(ids.iter().all(|e| e.id == ids[0].id));
    assert_eq!(ids.iter().filter(|e| !e.deduped).count(), 1);
    let counts = AuditQueue::audit(t.db.clone(), RetryPolicy::default())
        .counts(now_ms())
        .await
        .unwrap();
    assert_eq!(counts.pending, 1);
}

/// The running recount read the guild before the change the refresh reports: folding the
/// refresh into it would publish the old count and lose the new one.
#[actix_web::test]
async fn a_refresh_requested_while_a_recount_runs_gets_a_recount_of_its_own() {
    let t = TestDatabase::new().await.unwrap();
    configure(&t, 10).await;
    let reader = Arc::new(FakeReader::default());
    reader.guilds.lock().unwrap().insert(GUILD, guild());
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    *reader.hold.lock().unwrap() = Some(hold.clone());
    let h = start(t, Some(reader.clone()), RetryPolicy::default()).await;
    h.auditor
        .send(GuildChange::SessionStarted {
            shard: seatgate::domain::shards::Shard::ONLY,
            resumed_gap: false,
        })
        .await
        .unwrap();
    counted(&h, AuditReason::AdminRefresh).await;
    tokio::time::timeout(Duration::from_secs(10), reader.entered.notified())
        .await
        .expect("the first recount started");

    // While it waits on Discord with the old member list: a member joins, and a refresh
    // is requested.
    let mut grown = guild();
    grown.members.push(member(13, &[MEMBER_ROLE]));
    reader.guilds.lock().unwrap().insert(GUILD, grown);
    counted(&h, AuditReason::AdminRefresh).await;
    hold.add_permits(2);

    wait_for(&h, "the recount after the refresh", |v| v.seats_used == 4).await;
    assert_eq!(*reader.calls.lock().unwrap(), 2);
}

#[actix_web::test]
async fn a_member_list_failing_three_times_is_retried_with_backoff_then_counted() {
    let t = TestDatabase::new().await.unwrap();
    configure(&t, 10).await;
    let reader = Arc::new(FakeReader::default());
    reader.guilds.lock().unwrap().insert(GUILD, guild());
    for _ in 0..3 {
        reader
            .failures
            .lock()
            .unwrap()
            .push_back(DiscordError::Transient("500: Internal Server Error".into()));
    }
    let policy = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
        max_attempts: 8,
    };
    let h = start(t, Some(reader), policy).await;
    let started = Instant::now();
    counted(&h, AuditReason::AdminRefresh).await;
    wait_for(&h, "counted after retries", |v| v.seats_used == 3).await;
    assert_eq!(*h.reader.calls.lock().unwrap(), 4);
    // Backoff: at least 100 + 200 + 400 ms (less up to 20% jitter) between the attempts.
    assert!(
        started.elapsed() >= Duration::from_millis(560),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn a_guild_the_bot_was_removed_from_ends_in_seat_audit_failed() {
    let t = TestDatabase::new().await.unwrap();
    configure(&t, 10).await;
    let reader = Arc::new(FakeReader::default());
    *reader.fail_always.lock().unwrap() = Some(DiscordError::UnknownChannel);
    let policy = RetryPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(50),
        max_attempts: 3,
    };
    let h = start(t, Some(reader), policy).await;
    counted(&h, AuditReason::AdminRefresh).await;
    wait_for(&h, "audit failed", |v| v.audit_failed).await;
    // The cache hears first; the database follows through the auditor's ordered writer.
    let started = Instant::now();
    let rows = loop {
        let rows = SeatAuditStore::new(h.t.db.clone())
            .snapshots()
            .await
            .unwrap();
        // A "counting" snapshot (expired, `seat_check_pending`) may be written first.
        let written = rows.first().is_some_and(|r| {
            r.1.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("seat_audit_failed"))
        });
        if written || started.elapsed() > Duration::from_secs(10) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1.status.as_str(), "expired");
    assert!(
        rows[0]
            .1
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("seat_audit_failed"),
        "{:?}",
        rows[0].1.last_error
    );
}

#[actix_web::test]
async fn after_a_restart_the_snapshots_come_back_into_the_cache() {
    let h = ready_at_limit().await;
    // Let the ordered writer persist it.
    let store = SeatAuditStore::new(h.t.db.clone());
    let start_t = Instant::now();
    while store.snapshots().await.unwrap().is_empty() {
        assert!(start_t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.auditor.send(seatgate::actors::Shutdown).await.unwrap();
    let again = start(h.t, None, RetryPolicy::default()).await;
    wait_for(&again, "restored", |v| {
        v.seats_used == 3 && v.seat_limit == 3
    })
    .await;
    assert_eq!(again.seen.lock().unwrap()[0].0, key());
}

/// A mapping whose target is a thread counts those who see its parent channel: from the
/// threads GUILD_CREATE lists, and from the recount (which resolves a thread GUILD_CREATE did
/// not list, an archived one, over REST).
#[actix_web::test]
async fn a_thread_target_is_judged_by_its_parent() {
    const THREAD: u64 = 7_777;
    let t = TestDatabase::new().await.unwrap();
    let owner = ("acme", "signals");
    seed::connector(&t.db, "acme", "signals", 1).await.unwrap();
    seed::mapping(&t.db, owner, 100, (GUILD, THREAD), "bot")
        .await
        .unwrap();
    seed::enforced_server(&t.db, owner, GUILD, 10, None)
        .await
        .unwrap();
    let mut g = guild();
    g.members.push(member(21, &[HIDDEN_ROLE]));
    let mut with_thread = g.clone();
    with_thread
        .threads
        .push(seatgate::domain::seats::ThreadSnapshot {
            id: THREAD,
            parent_id: CH1,
        });
    // The recount's reader knows the thread (as GET /channels/{id} would tell).
    let reader = Arc::new(FakeReader::default());
    reader
        .guilds
        .lock()
        .unwrap()
        .insert(GUILD, with_thread.clone());
    let h = start(t, Some(reader.clone()), RetryPolicy::default()).await;
    h.auditor
        .send(GuildChange::SessionStarted {
            shard: seatgate::domain::shards::Shard::ONLY,
            resumed_gap: false,
        })
        .await
        .unwrap();

    // GUILD_CREATE without the thread (archived): not counted from it, a recount resolves it.
    h.auditor
        .send(GuildChange::GuildAvailable {
            guild: Box::new(g.clone()),
            member_count: g.members.len() as u64,
        })
        .await
        .unwrap();
    wait_for(&h, "the recount placed the thread under CH1", |v| {
        v.seats_used == 3
    })
    .await;
    assert!(
        *reader.calls.lock().unwrap() >= 1,
        "the unresolved target was recounted over REST"
    );

    // GUILD_CREATE listing the thread: complete at once, by the parent's overwrites.
    h.auditor
        .send(GuildChange::GuildAvailable {
            guild: Box::new(with_thread.clone()),
            member_count: with_thread.members.len() as u64,
        })
        .await
        .unwrap();
    let (seats, complete) = h
        .auditor
        .send(seatgate::actors::seat_auditor::CountedSeats {
            key: key(),
            after: None,
            limit: 100,
            only: None,
        })
        .await
        .unwrap()
        .map(|p| {
            (
                p.items.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                p.complete,
            )
        })
        .unwrap();
    assert!(complete);
    assert_eq!(seats, vec![OWNER, 11, 12], "21 cannot see CH1");
}
