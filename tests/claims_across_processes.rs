//! Per-target order when several processes claim from one mirror queue (PostgreSQL with shard
//! leases): a process does not take a channel's job while an earlier job of that channel is
//! held by another process's live lease; other channels' jobs go on. Jobs are written the way
//! ingest writes them (`MirrorStore::ingest`). PostgreSQL only.

use std::time::Duration;

use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use seatgate::{
    domain::{backoff::RetryPolicy, mirror::MirrorPayload, snowflake},
    store::{
        mirror::{MirrorStore, SourceEvent},
        queue::MirrorQueue,
        testing::{wants_postgres, TestDatabase},
    },
};

const SOURCE: u64 = 100;
const SOURCE_GUILD: u64 = 10;
const CHAN_X: u64 = 201;
const CHAN_Y: u64 = 301;

async fn mapping(t: &TestDatabase, guild: u64, channel: u64) -> i64 {
    entities::connector_mappings::ActiveModel {
        tenant_key: Set("acme".into()),
        connector_id: Set("signals".into()),
        source_channel_id: Set(snowflake::to_db(SOURCE)),
        target_guild_id: Set(snowflake::to_db(guild)),
        target_channel_id: Set(snowflake::to_db(channel)),
        delivery_mode: Set("bot".into()),
        enabled: Set(true),
        created_at: Set(0),
        updated_at: Set(0),
        ..Default::default()
    }
    .insert(t.db.conn())
    .await
    .unwrap()
    .id
}

fn created(message_id: u64) -> SourceEvent {
    SourceEvent::Created {
        guild_id: SOURCE_GUILD,
        channel_id: SOURCE,
        message_id,
        payload: MirrorPayload {
            content: format!("signal {message_id}"),
            author_name: "Provider".into(),
            ..Default::default()
        },
    }
}

/// A mirror queue as one process with shard leases claims from it.
fn queue(t: &TestDatabase) -> MirrorQueue {
    let policy = RetryPolicy {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(200),
        max_attempts: 8,
    };
    MirrorQueue::mirror(t.db.clone(), policy).across_processes()
}

/// A mapping into each of `targets` (guild, channel), and two source messages recorded by
/// ingest: their mapping ids and when. `None` off PostgreSQL.
async fn two_signals_into(targets: &[(u64, u64)]) -> Option<(TestDatabase, Vec<i64>, i64)> {
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return None;
    }
    let t = TestDatabase::new().await.unwrap();
    seatgate::store::testing::seed::connector(&t.db, "acme", "signals", SOURCE_GUILD)
        .await
        .unwrap();
    let mut mappings = Vec::new();
    for (guild, channel) in targets {
        mappings.push(mapping(&t, *guild, *channel).await);
    }
    let store = MirrorStore::new(t.db.clone(), queue(&t));
    let now = seatgate::store::now_ms();
    store.ingest(&created(5001), now).await.unwrap();
    store.ingest(&created(5002), now).await.unwrap();
    Some((t, mappings, now))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channels_later_job_waits_while_another_process_holds_an_earlier_one() {
    let Some((t, mappings, now)) = two_signals_into(&[(1_000, CHAN_X), (2_000, CHAN_Y)]).await
    else {
        return;
    };
    let (x, y) = (mappings[0], mappings[1]);
    let (a, b) = (queue(&t), queue(&t));
    let lease = Duration::from_secs(60);

    let first = a.claim("process-a", 1, lease, now).await.unwrap();
    assert_eq!(first.len(), 1);
    let held_by_a = &first[0];
    let (held_channel, other_mapping) = if held_by_a.mapping_id == x {
        (CHAN_X, y)
    } else {
        (CHAN_Y, x)
    };
    assert_eq!(held_by_a.source_message_id, snowflake::to_db(5001));

    let taken_by_b = b.claim("process-b", 10, lease, now).await.unwrap();
    assert!(
        taken_by_b
            .iter()
            .all(|j| j.target_channel_id != snowflake::to_db(held_channel)),
        "process B took a later job of the channel process A is delivering into: {:?}",
        taken_by_b
            .iter()
            .map(|j| (j.mapping_id, j.source_message_id))
            .collect::<Vec<_>>()
    );
    let mut other: Vec<i64> = taken_by_b
        .iter()
        .filter(|j| j.mapping_id == other_mapping)
        .map(|j| j.source_message_id)
        .collect();
    other.sort_unstable();
    assert_eq!(
        other,
        [snowflake::to_db(5001), snowflake::to_db(5002)],
        "the other channel's jobs go on"
    );

    a.complete(held_by_a.id, held_by_a.claim_token.as_deref().unwrap(), now)
        .await
        .unwrap();
    let next = b.claim("process-b", 10, lease, now).await.unwrap();
    assert_eq!(
        next.iter()
            .map(|j| (j.target_channel_id, j.source_message_id))
            .collect::<Vec<_>>(),
        [(snowflake::to_db(held_channel), snowflake::to_db(5002))],
        "once A's job is done, the channel's next job is free to anyone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_processs_jobs_are_taken_again_before_their_channels_later_ones() {
    let Some((t, _, now)) = two_signals_into(&[(1_000, CHAN_X)]).await else {
        return;
    };
    let (a, b) = (queue(&t), queue(&t));
    let got = a
        .claim("process-a", 1, Duration::from_millis(100), now)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    // While A's lease is live, B leaves the channel alone.
    let before = b
        .claim("process-b", 10, Duration::from_secs(60), now + 50)
        .await
        .unwrap();
    assert!(before.is_empty(), "{before:?}");
    // A dies; its lease runs out. B takes the first job again and the second in one claim,
    // in the channel's order (its lane delivers them one after the other).
    let later = now + 1_100;
    let taken = b
        .claim("process-b", 10, Duration::from_secs(60), later)
        .await
        .unwrap();
    let messages: Vec<i64> = taken.iter().map(|j| j.source_message_id).collect();
    assert_eq!(
        messages,
        [snowflake::to_db(5001), snowflake::to_db(5002)],
        "both of the channel's jobs, the dead process's first"
    );
}
