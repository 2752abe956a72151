//! Catch-up (issue #6): at start and after a gateway gap that could not be resumed, the service
//! reads each source channel's history after the last message it knows and enqueues what no
//! mapping has yet. End to end against the sandbox with the whole service in process, and at
//! the store level with a scripted history; on the backend `SEATGATE_TEST_DATABASE` selects.

mod mirror_support;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, Statement};
use seatgate::{
    app,
    config::Settings,
    domain::{backoff::RetryPolicy, mirror::MirrorPayload, snowflake},
    error::AppResult,
    sandbox::{Fault, RateLimitConfig, SandboxHandle},
    store::{
        catch_up::{self, CatchUpConfig, FetchedMessage, MessageHistory},
        mirror::{MirrorStore, SourceEvent},
        now_ms,
        queue::MirrorQueue,
        testing::TestDatabase,
    },
};

use mirror_support::*;

const OPERATOR: &str = "catch-up-test-operator";
const MODES: [&str; 2] = ["bot", "webhook"];

// ---- end to end ----

async fn sandbox() -> SandboxHandle {
    start_sandbox(MODES.len() as u64, RateLimitConfig::disabled()).await
}

/// Starts the service on `t` and waits until its gateway session is up.
async fn start(
    t: &TestDatabase,
    sandbox: &SandboxHandle,
    max_age_secs: u64,
) -> (app::Running, Admin) {
    let settings = Settings {
        mirror_max_age_secs: max_age_secs,
        ..service_settings(t, sandbox, OPERATOR)
    };
    let (running, admin) = start_service(&settings, OPERATOR).await;
    attached(sandbox).await;
    (running, admin)
}

/// Stops the service and waits until its gateway session is gone.
async fn stop(running: app::Running, sandbox: &SandboxHandle) {
    running.shutdown().await;
    assert!(
        until(Duration::from_secs(10), || sandbox.connected_sessions()
            == 0)
        .await,
        "the stopped service's gateway socket stays open"
    );
}

/// Waits until every target shows exactly `expected` (each once), then a little longer, and
/// checks again: a duplicate that arrives late fails too.
async fn assert_mirrored_once(sandbox: &SandboxHandle, expected: &[String]) {
    let expected = sorted(expected.to_vec());
    for i in 0..MODES.len() as u64 {
        let channel = target(i).1;
        let done = until(Duration::from_secs(30), || {
            sorted(live(sandbox, channel)) == expected
        })
        .await;
        assert!(
            done,
            "target {i} ({}): shows {:?}, expected {:?}",
            MODES[i as usize],
            sorted(live(sandbox, channel)),
            expected
        );
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for i in 0..MODES.len() as u64 {
        assert_eq!(
            sorted(live(sandbox, target(i).1)),
            expected,
            "target {i} changed after it was complete"
        );
    }
}

async fn count(t: &TestDatabase, sql: &str) -> i64 {
    let db = t.db.conn();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Send jobs per (mapping, source message) that are not exactly one.
async fn duplicate_sends(t: &TestDatabase) -> i64 {
    count(
        t,
        "SELECT COUNT(*) FROM (SELECT mapping_id, source_message_id FROM mirror_jobs \
         WHERE kind = 'send' GROUP BY mapping_id, source_message_id HAVING COUNT(*) > 1) d",
    )
    .await
}

fn posts(sandbox: &SandboxHandle, prefix: &str, n: usize) -> (Vec<u64>, Vec<String>) {
    let contents: Vec<String> = (0..n).map(|i| format!("{prefix} {i:03}")).collect();
    let ids = contents.iter().map(|c| post(sandbox, c)).collect();
    (ids, contents)
}

#[actix_web::test]
async fn messages_posted_while_the_service_is_down_are_mirrored_once_after_start() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox().await;
    let (running, admin) = start(&t, &sandbox, 3600).await;
    admin.configure(&MODES).await;
    let (_, mut expected) = posts(&sandbox, "live", 3);
    assert_mirrored_once(&sandbox, &expected).await;
    stop(running, &sandbox).await;

    // More than one page (100) is missed while down.
    let (_, down) = posts(&sandbox, "down", 150);
    expected.extend(down);
    let (running, _) = start(&t, &sandbox, 3600).await;
    assert_mirrored_once(&sandbox, &expected).await;
    assert_eq!(
        count(&t, "SELECT COUNT(*) FROM mirror_jobs WHERE kind = 'send'").await,
        (expected.len() * MODES.len()) as i64
    );
    assert_eq!(duplicate_sends(&t).await, 0);
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn messages_posted_in_a_gap_that_cannot_be_resumed_arrive_once_after_the_new_session() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox().await;
    let (running, admin) = start(&t, &sandbox, 3600).await;
    admin.configure(&MODES).await;
    let (_, mut expected) = posts(&sandbox, "before", 5);
    assert_mirrored_once(&sandbox, &expected).await;

    // The sandbox forgets the session (op 9, not resumable) and the gap's messages are posted
    // before this single-threaded test lets the service's client run again: no session
    // exists to receive their MESSAGE_CREATE, so only catch-up can bring them.
    assert_eq!(sandbox.invalidate_sessions(), 1);
    let (_, gap) = posts(&sandbox, "gap", 8);
    assert_eq!(sandbox.connected_sessions(), 0, "the gap was not a gap");
    expected.extend(gap);
    assert!(
        until(Duration::from_secs(20), || sandbox.connected_sessions()
            == 1)
        .await,
        "the service did not identify again"
    );
    let (_, after) = posts(&sandbox, "after", 5);
    expected.extend(after);
    assert_mirrored_once(&sandbox, &expected).await;
    assert_eq!(duplicate_sends(&t).await, 0);
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn edits_and_deletes_made_while_the_service_is_down_reach_the_targets_after_start() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox().await;
    let (running, admin) = start(&t, &sandbox, 3600).await;
    admin.configure(&MODES).await;
    let (ids, contents) = posts(&sandbox, "signal", 3);
    assert_mirrored_once(&sandbox, &contents).await;
    stop(running, &sandbox).await;
    // Past catch-up's margin: what was recorded this close to a session start counts as
    // the live path's and is not read again.
    tokio::time::sleep(CatchUpConfig::default().margin).await;

    sandbox
        .edit_message(
            SOURCE_CHANNEL,
            ids[0],
            &serde_json::json!({"content": "signal 000 (stop moved)"}),
        )
        .unwrap();
    sandbox.delete_message(SOURCE_CHANNEL, ids[1]).unwrap();
    let (_, down) = posts(&sandbox, "down", 2);
    let mut expected = vec!["signal 000 (stop moved)".to_owned(), contents[2].clone()];
    expected.extend(down);
    let (running, _) = start(&t, &sandbox, 3600).await;
    assert_mirrored_once(&sandbox, &expected).await;
    assert_eq!(
        count(&t, "SELECT COUNT(*) FROM mirror_jobs WHERE kind = 'edit'").await,
        MODES.len() as i64
    );
    assert_eq!(
        count(&t, "SELECT COUNT(*) FROM mirror_jobs WHERE kind = 'delete'").await,
        MODES.len() as i64
    );
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn messages_older_than_the_max_age_are_not_caught_up() {
    // Long enough for a restart and the deliveries on a loaded machine: jobs expire after it too.
    // (The mapping's creation as a bound is checked at the store level below: here a message
    // posted just before the mapping may still reach the live path after it.)
    const MAX_AGE: u64 = 15;
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox().await;
    let (running, admin) = start(&t, &sandbox, MAX_AGE).await;
    admin.configure(&MODES).await;
    stop(running, &sandbox).await;

    let (too_old, _) = posts(&sandbox, "too old", 4);
    tokio::time::sleep(Duration::from_secs(MAX_AGE + 1)).await;
    let (recent_ids, recent) = posts(&sandbox, "recent", 4);
    let (running, _) = start(&t, &sandbox, MAX_AGE).await;
    assert_mirrored_once(&sandbox, &recent).await;

    let ids = |v: &[u64]| {
        v.iter()
            .map(|id| snowflake::to_db(*id).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(
        count(
            &t,
            &format!(
                "SELECT COUNT(*) FROM mirror_jobs WHERE source_message_id IN ({})",
                ids(&too_old)
            )
        )
        .await,
        0,
        "messages older than the max age were enqueued"
    );
    assert_eq!(
        count(
            &t,
            &format!(
                "SELECT COUNT(*) FROM mirror_jobs WHERE kind = 'send' AND source_message_id IN ({})",
                ids(&recent_ids)
            )
        )
        .await,
        (recent.len() * MODES.len()) as i64
    );
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn catch_up_racing_the_live_creates_of_the_same_messages_duplicates_nothing() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox().await;
    let (running, admin) = start(&t, &sandbox, 3600).await;
    admin.configure(&MODES).await;
    stop(running, &sandbox).await;
    let (_, mut expected) = posts(&sandbox, "down", 10);

    // The first history read is held for 1.5 s and then answered with the history as it is
    // by then: it includes the messages posted live meanwhile, which the gateway delivers too.
    sandbox.add_fault(Fault {
        delay_ms: Some(1_500),
        ..Fault::new("GET", "/channels/{id}/messages", 200, 1)
    });
    let (running, _) = start(&t, &sandbox, 3600).await;
    for i in 0..20 {
        let content = format!("live {i:03}");
        post(&sandbox, &content);
        expected.push(content);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_mirrored_once(&sandbox, &expected).await;
    assert_eq!(duplicate_sends(&t).await, 0);
    assert_eq!(
        count(&t, "SELECT COUNT(*) FROM mirror_jobs WHERE kind = 'send'").await,
        (expected.len() * MODES.len()) as i64
    );
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn a_failed_history_read_is_retried_by_the_next_session() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox().await;
    let (running, admin) = start(&t, &sandbox, 3600).await;
    admin.configure(&MODES).await;
    stop(running, &sandbox).await;
    let (_, expected) = posts(&sandbox, "down", 4);

    sandbox.add_fault(Fault::new("GET", "/channels/{id}/messages", 500, 1));
    let (running, _) = start(&t, &sandbox, 3600).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..MODES.len() as u64 {
        assert!(
            live(&sandbox, target(i).1).is_empty(),
            "target {i}: mirrored although the history read failed"
        );
    }
    // The service is still up, and a new session catches up.
    assert_eq!(sandbox.invalidate_sessions(), 1);
    assert!(
        until(Duration::from_secs(20), || sandbox.connected_sessions()
            == 1)
        .await
    );
    assert_mirrored_once(&sandbox, &expected).await;
    running.shutdown().await;
    sandbox.shutdown().await;
}

// ---- store level, scripted history ----

const SOURCE: u64 = 830_000_000_000_000_001;

/// A channel history in memory, answering like Discord: after `after`, oldest `limit`,
/// newest first. Records every `after` asked for.
#[derive(Default)]
struct History {
    messages: Mutex<BTreeMap<u64, FetchedMessage>>,
    asked: Mutex<Vec<u64>>,
}

impl History {
    /// The author edits message `id` (it must be there).
    fn edit(&self, id: u64, content: &str) {
        let mut messages = self.messages.lock().unwrap();
        messages.get_mut(&id).unwrap().payload.content = content.into();
    }

    fn delete(&self, id: u64) {
        self.messages.lock().unwrap().remove(&id);
    }

    fn add(&self, id: u64, author_id: u64) {
        self.messages.lock().unwrap().insert(
            id,
            FetchedMessage {
                id,
                author_id,
                webhook_id: None,
                payload: MirrorPayload {
                    content: format!("m{id}"),
                    ..Default::default()
                },
            },
        );
    }
}

#[async_trait::async_trait]
impl MessageHistory for History {
    async fn messages_after(
        &self,
        channel_id: u64,
        after: u64,
        limit: u8,
    ) -> AppResult<Vec<FetchedMessage>> {
        assert_eq!(channel_id, SOURCE);
        self.asked.lock().unwrap().push(after);
        let mut page: Vec<FetchedMessage> = self
            .messages
            .lock()
            .unwrap()
            .range(after + 1..)
            .take(limit as usize)
            .map(|(_, m)| m.clone())
            .collect();
        page.reverse();
        Ok(page)
    }
}

/// A store with two mappings of [`SOURCE`], created at `created_at`.
async fn setup(created_at: i64) -> (TestDatabase, MirrorStore, [i64; 2]) {
    let t = TestDatabase::new().await.unwrap();
    seatgate_entities_connector(&t).await;
    let mut ids = [0; 2];
    for (i, id) in ids.iter_mut().enumerate() {
        let (guild, channel) = target(i as u64);
        *id = entities::connector_mappings::ActiveModel {
            tenant_key: Set(TENANT.into()),
            connector_id: Set(CONNECTOR.into()),
            source_channel_id: Set(snowflake::to_db(SOURCE)),
            target_guild_id: Set(snowflake::to_db(guild)),
            target_channel_id: Set(snowflake::to_db(channel)),
            delivery_mode: Set(MODES[i].into()),
            enabled: Set(true),
            created_at: Set(created_at),
            updated_at: Set(created_at),
            ..Default::default()
        }
        .insert(t.db.conn())
        .await
        .unwrap()
        .id;
    }
    let store = MirrorStore::new(
        t.db.clone(),
        MirrorQueue::mirror(t.db.clone(), RetryPolicy::default()),
    );
    (t, store, ids)
}

async fn seatgate_entities_connector(t: &TestDatabase) {
    seatgate::store::testing::seed::connector(&t.db, TENANT, CONNECTOR, SOURCE_GUILD)
        .await
        .unwrap();
}

fn created(id: u64) -> SourceEvent {
    SourceEvent::Created {
        guild_id: SOURCE_GUILD,
        channel_id: SOURCE,
        message_id: id,
        payload: MirrorPayload {
            content: format!("m{id}"),
            ..Default::default()
        },
    }
}

async fn sends(t: &TestDatabase) -> Vec<(i64, u64)> {
    let db = t.db.conn();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT mapping_id, source_message_id FROM mirror_jobs WHERE kind = 'send' \
             ORDER BY source_message_id, mapping_id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get_by_index::<i64>(0).unwrap(),
                snowflake::from_db(r.try_get_by_index::<i64>(1).unwrap()),
            )
        })
        .collect()
}

async fn run(
    store: &MirrorStore,
    history: &History,
    session_start: i64,
    config: CatchUpConfig,
) -> catch_up::CatchUpReport {
    catch_up::run(store, history, BOT, session_start, now_ms, &config, &|| {}).await
}

/// A message id minted at `ms` (sequence `n` within the millisecond).
fn id_at(ms: i64, n: u64) -> u64 {
    seatgate::domain::snowflake::at_ms(ms) + n
}

#[tokio::test]
async fn a_live_message_of_the_new_session_does_not_hide_the_gap_before_it() {
    let now = now_ms();
    let (t, store, maps) = setup(now - 600_000).await;
    let history = History::default();
    // Mirrored before the gap (a minute ago), lost in the gap, and the new session's first
    // message, recorded live before catch-up reads its bound.
    let before = id_at(now - 60_000, 0);
    let gap = [id_at(now - 30_000, 0), id_at(now - 20_000, 0)];
    let live = id_at(now, 0);
    for id in [before, gap[0], gap[1], live] {
        history.add(id, PROVIDER);
    }
    store.ingest(&created(before), now - 60_000).await.unwrap();
    store.ingest(&created(live), now).await.unwrap();

    let report = run(&store, &history, now, CatchUpConfig::default()).await;
    assert_eq!(report.enqueued, 4, "{report:?}");
    assert_eq!(report.failed, 0);
    let mut want: Vec<(i64, u64)> = [before, gap[0], gap[1], live]
        .iter()
        .flat_map(|id| maps.iter().map(move |m| (*m, *id)))
        .collect();
    want.sort_by_key(|(m, id)| (*id, *m));
    assert_eq!(sends(&t).await, want);
    // The bound was the message mirrored before the gap: nothing older was asked for.
    assert_eq!(history.asked.lock().unwrap().first(), Some(&before));
}

/// A READY is one shard's session: its catch-up reads the source channels of the guilds that
/// shard carries, and another shard's READY leaves them to their own shard.
#[tokio::test]
async fn a_shards_catch_up_reads_only_the_source_channels_of_its_guilds() {
    use seatgate::domain::shards::{shard_of, Shard};
    let now = now_ms();
    let (t, store, maps) = setup(now - 600_000).await;
    let history = History::default();
    let lost = id_at(now - 30_000, 0);
    history.add(lost, PROVIDER);
    let own = shard_of(SOURCE_GUILD, 3) as u32;

    let other = CatchUpConfig {
        shard: Shard {
            id: (own + 1) % 3,
            total: 3,
        },
        ..CatchUpConfig::default()
    };
    let report = run(&store, &history, now, other).await;
    assert_eq!((report.channels, report.enqueued), (0, 0), "{report:?}");
    assert!(
        history.asked.lock().unwrap().is_empty(),
        "another shard's channel was read"
    );

    let carrying = CatchUpConfig {
        shard: Shard { id: own, total: 3 },
        ..CatchUpConfig::default()
    };
    let report = run(&store, &history, now, carrying).await;
    assert_eq!((report.channels, report.enqueued), (1, 2), "{report:?}");
    assert_eq!(sends(&t).await, vec![(maps[0], lost), (maps[1], lost)]);
}

#[tokio::test]
async fn the_bound_is_the_max_age_or_the_mapping_and_own_messages_are_skipped() {
    let now = now_ms();
    let max_age = Duration::from_secs(3600);
    let (t, store, maps) = setup(now - 600_000).await;
    let history = History::default();
    let older_than_mapping = id_at(now - 700_000, 0);
    let own = id_at(now - 500_000, 0);
    let wanted = id_at(now - 400_000, 0);
    for (id, author) in [
        (older_than_mapping, PROVIDER),
        (own, BOT),
        (wanted, PROVIDER),
    ] {
        history.add(id, author);
    }
    let config = CatchUpConfig {
        max_age,
        ..CatchUpConfig::default()
    };
    let report = run(&store, &history, now, config).await;
    assert_eq!((report.enqueued, report.own), (2, 1), "{report:?}");
    assert_eq!(sends(&t).await, vec![(maps[0], wanted), (maps[1], wanted)]);
    assert_eq!(
        history.asked.lock().unwrap().first(),
        Some(&seatgate::domain::snowflake::at_ms(now - 600_000))
    );

    // A max age shorter than the mapping's life moves the bound up to it.
    let (_t2, store2, _) = setup(now - 600_000).await;
    let report = run(
        &store2,
        &history,
        now,
        CatchUpConfig {
            max_age: Duration::from_secs(350),
            ..CatchUpConfig::default()
        },
    )
    .await;
    assert_eq!(report.enqueued, 0, "{report:?}");
}

#[tokio::test]
async fn pages_are_bounded_and_a_second_catch_up_adds_nothing() {
    let now = now_ms();
    let (t, store, _) = setup(now - 600_000).await;
    let history = History::default();
    for n in 0..250 {
        history.add(id_at(now - 300_000, n), PROVIDER);
    }
    let two_pages = CatchUpConfig {
        max_pages: 2,
        ..CatchUpConfig::default()
    };
    let report = run(&store, &history, now, two_pages).await;
    assert_eq!(
        (
            report.pages,
            report.fetched,
            report.enqueued,
            report.truncated
        ),
        (2, 200, 400, 1),
        "{report:?}"
    );
    // A later session starts after the newest mirrored message: the 50 left, for both
    // mappings.
    let later = now + 60_000;
    let report = run(&store, &history, later, CatchUpConfig::default()).await;
    assert_eq!((report.fetched, report.enqueued), (50, 100), "{report:?}");
    let report = run(&store, &history, later + 60_000, CatchUpConfig::default()).await;
    assert_eq!(report.enqueued, 0, "{report:?}");
    assert_eq!(sends(&t).await.len(), 500);
}

#[tokio::test]
async fn concurrent_live_and_catch_up_creates_write_one_send_each() {
    let now = now_ms();
    let (t, store, maps) = setup(now - 600_000).await;
    let store = Arc::new(store);
    let ids: Vec<u64> = (0..40).map(|n| id_at(now - 1_000, n)).collect();
    let mut tasks = Vec::new();
    for id in ids.clone() {
        // Live, for every mapping; catch-up, for the mapping it thinks misses the message.
        let s = store.clone();
        tasks.push(tokio::spawn(
            async move { s.ingest(&created(id), now).await },
        ));
        let s = store.clone();
        let only = [maps[(id % 2) as usize]];
        tasks.push(tokio::spawn(async move {
            s.ingest_for(&created(id), now, Some(&only)).await
        }));
    }
    let mut enqueued = 0;
    let mut duplicates = 0;
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        enqueued += outcome.enqueued;
        duplicates += outcome.duplicates;
    }
    assert_eq!(enqueued as usize, ids.len() * 2);
    assert_eq!(duplicates as usize, ids.len());
    assert_eq!(sends(&t).await.len(), ids.len() * 2);
    // And a replay of an already-sent message writes nothing either.
    let outcome = store.ingest(&created(ids[0]), now).await.unwrap();
    assert_eq!((outcome.enqueued, outcome.duplicates), (0, 2));
}

#[tokio::test]
async fn a_create_and_a_delete_of_one_message_recorded_concurrently_leave_no_send_pending() {
    // Serenity runs handlers concurrently and catch-up adds creates of its own: whatever the
    // order, a deleted message must not keep a pending send (its delete job would find no
    // link and the send would then land).
    let now = now_ms();
    let (t, store, _) = setup(now - 600_000).await;
    let store = Arc::new(store);
    let ids: Vec<u64> = (0..60).map(|n| id_at(now - 1_000, n)).collect();
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let s = store.clone();
        tasks.push(tokio::spawn(
            async move { s.ingest(&created(id), now).await },
        ));
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.ingest(
                &SourceEvent::Deleted {
                    guild_id: SOURCE_GUILD,
                    channel_id: SOURCE,
                    message_id: id,
                },
                now,
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        count(
            &t,
            "SELECT COUNT(*) FROM mirror_jobs WHERE kind = 'send' AND status = 'pending'"
        )
        .await,
        0
    );
}

fn edited(id: u64, content: &str) -> SourceEvent {
    SourceEvent::Updated {
        guild_id: SOURCE_GUILD,
        channel_id: SOURCE,
        message_id: id,
        payload: MirrorPayload {
            content: content.into(),
            ..Default::default()
        },
    }
}

/// The sends of these messages delivered: done, with a link per mapping.
async fn delivered(t: &TestDatabase, maps: &[i64], ids: &[u64]) {
    for (n, id) in ids.iter().enumerate() {
        for (i, mapping) in maps.iter().enumerate() {
            entities::mirror_message_links::ActiveModel {
                mapping_id: Set(*mapping),
                source_message_id: Set(snowflake::to_db(*id)),
                target_channel_id: Set(snowflake::to_db(target(i as u64).1)),
                target_message_id: Set(snowflake::to_db(990 + n as u64 * 10 + i as u64)),
                created_at: Set(0),
                ..Default::default()
            }
            .insert(t.db.conn())
            .await
            .unwrap();
        }
    }
    let db = t.db.conn();
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "UPDATE mirror_jobs SET status = 'done' WHERE kind = 'send'",
    ))
    .await
    .unwrap();
}

/// Every mirror job, in the order written.
async fn jobs(t: &TestDatabase) -> Vec<entities::mirror_jobs::Model> {
    use sea_orm::{EntityTrait, QueryOrder};
    entities::mirror_jobs::Entity::find()
        .order_by_asc(entities::mirror_jobs::Column::Id)
        .all(t.db.conn())
        .await
        .unwrap()
}

/// (kind, message, content) of the jobs that are not sends, in order.
async fn later_jobs(t: &TestDatabase) -> Vec<(String, u64, String)> {
    jobs(t)
        .await
        .into_iter()
        .filter(|j| j.kind != "send")
        .map(|j| {
            let payload: MirrorPayload = serde_json::from_str(&j.payload).unwrap();
            (
                j.kind,
                snowflake::from_db(j.source_message_id),
                payload.content,
            )
        })
        .collect()
}

#[tokio::test]
async fn known_messages_are_read_again_for_the_edits_and_deletes_of_the_gap() {
    let now = now_ms();
    let (t, store, maps) = setup(now - 600_000).await;
    let history = History::default();
    let [same, changed, deleted, edited_live] =
        [0, 1, 2, 3].map(|n| id_at(now - 120_000 + n as i64 * 1_000, 0));
    for id in [same, changed, deleted, edited_live] {
        store.ingest(&created(id), now - 110_000).await.unwrap();
        history.add(id, PROVIDER);
    }
    delivered(&t, &maps, &[same, changed, deleted, edited_live]).await;
    // In the gap: one message edited, one deleted. One more is edited after the new session
    // started, recorded live; the history read a moment earlier still has the gap's text.
    history.edit(changed, "new");
    history.delete(deleted);
    history.edit(edited_live, "gap text");
    store
        .ingest(&edited(edited_live, "live text"), now)
        .await
        .unwrap();

    let report = run(&store, &history, now, CatchUpConfig::default()).await;
    assert_eq!(
        (
            report.reviewed,
            report.edits,
            report.deletes,
            report.enqueued
        ),
        (3, 2, 2, 0),
        "{report:?}"
    );
    let mut want = vec![
        ("edit".to_owned(), edited_live, "live text".to_owned()),
        ("edit".to_owned(), edited_live, "live text".to_owned()),
    ];
    for _ in &maps {
        want.push(("edit".to_owned(), changed, "new".to_owned()));
    }
    for _ in &maps {
        want.push(("delete".to_owned(), deleted, String::new()));
    }
    assert_eq!(later_jobs(&t).await, want);

    // The next session reads the source as it is by then (with the live edit) and finds
    // nothing more to do: the edits are recorded, the deletes under way.
    history.edit(edited_live, "live text");
    let report = run(&store, &history, now + 60_000, CatchUpConfig::default()).await;
    assert_eq!((report.edits, report.deletes), (0, 0), "{report:?}");
}

#[tokio::test]
async fn a_message_deleted_in_the_gap_before_its_send_went_out_is_not_sent() {
    let now = now_ms();
    let (t, store, _) = setup(now - 600_000).await;
    let history = History::default();
    let [kept, deleted] = [0, 1].map(|n| id_at(now - 120_000 + n as i64 * 1_000, 0));
    for id in [kept, deleted] {
        store.ingest(&created(id), now - 110_000).await.unwrap();
    }
    history.add(kept, PROVIDER);
    let report = run(&store, &history, now, CatchUpConfig::default()).await;
    assert_eq!(report.deletes, 2, "{report:?}");
    let statuses: Vec<(u64, String)> = jobs(&t)
        .await
        .into_iter()
        .map(|j| (snowflake::from_db(j.source_message_id), j.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (kept, "pending".to_owned()),
            (kept, "pending".to_owned()),
            (deleted, "cancelled".to_owned()),
            (deleted, "cancelled".to_owned()),
        ],
        "the pending sends are cancelled, and no delete job is needed"
    );
}
