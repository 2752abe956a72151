//! `SEATGATE_SHARD_LEASES` on PostgreSQL: processes on one database share the gateway's
//! shards through leases. Two instances and a sandbox recommending four shards: each shard
//! gets exactly one session, each instance runs two (its fair share), never two sessions of
//! one shard at a time, every shard's guild is mirrored into, and a graceful stop hands the
//! stopped instance's shards to the other. PostgreSQL only.

mod mirror_support;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use seatgate::store::{
    shard_leases::ShardLeases,
    testing::{wants_postgres, TestDatabase},
};

use mirror_support::*;
use serde_json::json;

const OPERATOR: &str = "leases-test-operator";

/// Shards held per holder, from the lease table.
async fn holders(leases: &ShardLeases) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for l in leases.list().await.expect("leases listed") {
        if l.held() {
            out.entry(l.holder.clone().unwrap_or_default())
                .or_default()
                .push(l.shard_id);
        }
    }
    out
}

#[actix_web::test]
async fn two_instances_share_four_shards_and_a_graceful_stop_hands_its_shards_over() {
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return;
    }
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox_recommending(4, 4).await;
    let (settings_a, settings_b) = leased_pair(service_settings(&t, &sandbox, OPERATOR));
    let started = Instant::now();
    let (a, admin) = start_service(&settings_a, OPERATOR).await;
    let (b, _) = start_service(&settings_b, OPERATOR).await;

    // Never two sessions of one shard, sampled every 50 ms for the whole test.
    let most = Arc::new(Mutex::new(BTreeMap::<(u64, u64), usize>::new()));
    let sampler = {
        let most = most.clone();
        let control = sandbox.control_url().to_owned();
        tokio::spawn(async move {
            loop {
                let sessions = get_json(format!("{control}/gateway/sessions")).await;
                let mut now: BTreeMap<(u64, u64), usize> = BTreeMap::new();
                for s in sessions.as_array().into_iter().flatten() {
                    let shard = (
                        s["shard"][0].as_u64().unwrap_or(99),
                        s["shard"][1].as_u64().unwrap_or(99),
                    );
                    *now.entry(shard).or_insert(0) += 1;
                }
                {
                    let mut most = most.lock().unwrap();
                    for (shard, n) in now {
                        let m = most.entry(shard).or_insert(0);
                        *m = (*m).max(n);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let leases = ShardLeases::new(t.db.clone());
    let mut split = BTreeMap::new();
    while started.elapsed() < Duration::from_secs(45) {
        split = holders(&leases).await;
        if split.get("instance-a").map(Vec::len) == Some(2)
            && split.get("instance-b").map(Vec::len) == Some(2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        split.values().map(Vec::len).collect::<Vec<_>>(),
        [2, 2],
        "a fair share each: {split:?}"
    );
    one_session_per_shard(&sandbox, 4).await;
    println!(
        "four shards, one session each, two per instance: {:?} after start",
        started.elapsed()
    );

    admin.configure(&["bot", "bot", "bot", "bot"]).await;
    post(&sandbox, "to every shard");
    every_target_shows(
        &sandbox,
        &(0..4).map(|i| target(i).1).collect::<Vec<_>>(),
        &["to every shard".to_owned()],
        Duration::from_secs(20),
    )
    .await;

    // B stops gracefully: A takes its two shards, one IDENTIFY per 5 s as Discord allows (so
    // first 5 s after the last one).
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let stopped = Instant::now();
    b.shutdown().await;
    let mut first_taken = None;
    loop {
        let now = holders(&leases).await;
        let a_holds = now.get("instance-a").map_or(0, Vec::len);
        if a_holds >= 3 && first_taken.is_none() {
            first_taken = Some(stopped.elapsed());
        }
        if a_holds == 4 && sessions_per_shard(&sandbox).await.len() == 4 {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "B's shards not taken over: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    one_session_per_shard(&sandbox, 4).await;
    println!(
        "graceful stop of B: its first shard taken by A after {:?}, both running after {:?}",
        first_taken.unwrap_or_default(),
        stopped.elapsed()
    );
    assert!(
        first_taken.is_some_and(|d| d < Duration::from_secs(5)),
        "the first of B's shards was taken after {first_taken:?}"
    );
    sampler.abort();
    let most = most.lock().unwrap().clone();
    assert!(
        most.values().all(|n| *n == 1),
        "a shard had two sessions at once: {most:?}"
    );
    a.shutdown().await;
    sandbox.shutdown().await;
}

/// With leases, the process that runs a guild's shard owns the guild: a crossing there is
/// counted and told once (one pause notice, one resume notice, one history row each), even
/// with the server configured through the other process and rechecks every second, and both
/// processes hold its deliveries while it is over (neither vouches for a count it does not
/// keep current).
#[actix_web::test]
async fn the_owner_of_a_guilds_shard_alone_counts_and_tells_its_crossings() {
    use reqwest::Method;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use seatgate::{actors::ServerKey, domain::shards::shard_of};
    use serde_json::json;
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return;
    }
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox_recommending(2, 2).await;
    let mut settings = service_settings(&t, &sandbox, OPERATOR);
    settings.shard_leases = true;
    settings.recheck_secs = 1;
    settings.recheck_over_limit_secs = 1;
    // Counts re-stamped every second: a process vouching for a count it does not keep
    // current would show within the test.
    settings.fresh_window_secs = 3;
    settings.stale_window_secs = 10;
    let mut settings_a = settings.clone();
    settings_a.worker_id = Some("instance-a".into());
    let mut settings_b = settings;
    settings_b.worker_id = Some("instance-b".into());
    let (a, admin_a) = start_service(&settings_a, OPERATOR).await;
    let (b, admin_b) = start_service(&settings_b, OPERATOR).await;
    let leases = ShardLeases::new(t.db.clone());
    let start = Instant::now();
    let split = loop {
        let split = holders(&leases).await;
        if split.values().map(Vec::len).collect::<Vec<_>>() == [1, 1] {
            break split;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{split:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    one_session_per_shard(&sandbox, 2).await;

    let (guild, channel) = target(0);
    let owner = if split["instance-a"].contains(&(shard_of(guild, 2) as u32)) {
        "instance-a"
    } else {
        "instance-b"
    };
    // Configured through the process that does not own the guild.
    let other_admin = if owner == "instance-a" {
        &admin_b
    } else {
        &admin_a
    };
    other_admin.configure(&["bot", "bot"]).await;
    let server = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}");
    other_admin
        .call(
            Method::PUT,
            &server,
            Some(server_config(json!({
                "seat_limit": 1, "enforcement_mode": "enforce",
                "notify_channel_id": channel.to_string()
            }))),
        )
        .await;
    let key = ServerKey {
        tenant_key: TENANT.into(),
        connector_id: CONNECTOR.into(),
        guild_id: guild,
    };
    let both = |check: &dyn Fn(&seatgate::domain::gate::SnapshotView) -> bool| {
        [&a, &b]
            .iter()
            .all(|r| r.cache.snapshot(&key).is_some_and(|s| check(&s)))
    };
    assert!(
        until(Duration::from_secs(20), || both(&|s| s.seats_used == 1)).await,
        "the owner's count never reached both processes"
    );

    let joined = Instant::now();
    sandbox
        .add_member(
            guild,
            &json!({"user": {"id": "720000000000000001", "username": "joiner"}, "roles": []}),
        )
        .expect("member added");
    assert!(
        until(Duration::from_secs(5), || both(&|s| s.is_over_limit())).await,
        "the crossing never held on both processes"
    );
    println!(
        "join -> over the limit in both processes' caches: {:?}",
        joined.elapsed()
    );
    post(&sandbox, "while over");
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(3) {
        assert!(
            both(&|s| s.is_over_limit()),
            "a process's gate saw the server under its limit again while it was over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !live(&sandbox, channel).iter().any(|c| c == "while over"),
        "delivered into a server over its limit"
    );
    assert_eq!(live(&sandbox, target(1).1), ["while over"]);

    sandbox
        .remove_member(guild, 720_000_000_000_000_001)
        .expect("member removed");
    assert!(
        until(Duration::from_secs(20), || live(&sandbox, channel)
            .iter()
            .any(|c| c == "while over"))
        .await,
        "the held signal never arrived after the resume"
    );
    // Rechecks every second on both processes: time for a second count to tell again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = live(&sandbox, channel);
    let paused = shown.iter().filter(|c| c.contains("is paused")).count();
    let resumed = shown.iter().filter(|c| c.contains("has resumed")).count();
    assert_eq!((paused, resumed), (1, 1), "notices: {shown:?}");
    use entities::seat_enforcement_events as events;
    let rows = events::Entity::find()
        .filter(events::Column::GuildId.eq(seatgate::domain::snowflake::to_db(guild)))
        .all(t.db.conn())
        .await
        .unwrap();
    let to_over = rows.iter().filter(|r| r.to_state == "over").count();
    let back = rows
        .iter()
        .filter(|r| r.from_state == "over" && r.to_state == "under")
        .count();
    assert_eq!((to_over, back), (1, 1), "history: {rows:?}");
    b.shutdown().await;
    a.shutdown().await;
    sandbox.shutdown().await;
}

/// A shard whose lease cannot be renewed (here its table is renamed away, as a database that
/// stopped answering would) stops within 10 s, before the lease could expire and another
/// process take it; when the table is back the shard is taken and runs again.
#[actix_web::test]
async fn a_shard_whose_lease_cannot_be_renewed_stops_before_it_could_run_twice() {
    use sea_orm::ConnectionTrait;
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return;
    }
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox_recommending(1, 1).await;
    let mut settings = service_settings(&t, &sandbox, OPERATOR);
    settings.shard_leases = true;
    settings.worker_id = Some("instance-a".into());
    let (a, _) = start_service(&settings, OPERATOR).await;
    one_session_per_shard(&sandbox, 1).await;

    let db = t.db.conn();
    db.execute_unprepared("ALTER TABLE gateway_shard_leases RENAME TO gateway_shard_leases_away")
        .await
        .unwrap();
    let cut = Instant::now();
    assert!(
        until(Duration::from_secs(14), || sandbox.connected_sessions()
            == 0)
        .await,
        "the shard kept running with a lease it could not renew"
    );
    let stopped = cut.elapsed();
    println!("lease unrenewable -> shard stopped after {stopped:?}");
    assert!(
        stopped < Duration::from_secs(15),
        "stopped only after the lease could expire"
    );

    db.execute_unprepared("ALTER TABLE gateway_shard_leases_away RENAME TO gateway_shard_leases")
        .await
        .unwrap();
    // Its own lease expires 15 s after its last renewal; then it is free to take again.
    assert!(
        until(Duration::from_secs(30), || sandbox.connected_sessions()
            == 1)
        .await,
        "the shard never ran again"
    );
    a.shutdown().await;
    sandbox.shutdown().await;
}

/// The database refuses a write under a lease that was lost (it expired and another process
/// took the shard), even from a process that has not noticed: its fenced transaction never
/// begins, and the new holder's goes through.
#[actix_web::test]
async fn a_write_under_a_lost_lease_is_refused_by_the_database() {
    use seatgate::{
        actors::ServerKey,
        store::seat_audit::{SeatAuditStore, Transition},
    };
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return;
    }
    let t = TestDatabase::new().await.unwrap();
    let leases = ShardLeases::new(t.db.clone());
    let store = SeatAuditStore::new(t.db.clone());
    leases.ensure(1).await.unwrap();
    seatgate::store::testing::seed::connector(&t.db, "acme", "signals", 1)
        .await
        .unwrap();
    let key = ServerKey {
        tenant_key: "acme".into(),
        connector_id: "signals".into(),
        guild_id: 840_000_000_000_000_000,
    };
    let pause = |cause: &'static str| Transition {
        from: "under",
        to: "over",
        seats_used: 3,
        seat_limit: 2,
        at: 1,
        cause,
    };
    let a = leases.take(0, "a", 200).await.unwrap().expect("free");
    let txn = leases
        .begin_fenced(0, "a", a)
        .await
        .unwrap()
        .expect("a holds it");
    store
        .append_event_on(&txn, &key, &pause("a, held"))
        .await
        .unwrap();
    txn.commit().await.unwrap();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = leases
        .take(0, "b", 15_000)
        .await
        .unwrap()
        .expect("a's lease expired");
    assert!(b > a, "every take raises the epoch");
    assert!(
        leases.begin_fenced(0, "a", a).await.unwrap().is_none(),
        "a write under the lost lease began"
    );
    let txn = leases
        .begin_fenced(0, "b", b)
        .await
        .unwrap()
        .expect("b holds it");
    store
        .append_event_on(&txn, &key, &pause("b, held"))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let causes: Vec<String> = store
        .events(&key)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.cause)
        .collect();
    assert_eq!(causes.len(), 2, "{causes:?}");
    assert!(causes.iter().all(|c| c.ends_with("held")), "{causes:?}");
}

/// A process restarted under the same worker id (after a SIGKILL, with `SEATGATE_WORKER_ID`
/// fixed, as a systemd instance name does) takes its shard back at once rather than waiting
/// out its own lease; anyone else still waits, and the earlier run's epoch is fenced.
#[actix_web::test]
async fn the_same_worker_id_takes_its_own_shard_back_at_once_and_fences_the_earlier_run() {
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return;
    }
    let t = TestDatabase::new().await.unwrap();
    let leases = ShardLeases::new(t.db.clone());
    leases.ensure(1).await.unwrap();
    let first = leases.take(0, "p1", 15_000).await.unwrap().expect("free");
    assert_eq!(
        leases.take(0, "p2", 15_000).await.unwrap(),
        None,
        "another process waits for the lease to expire"
    );
    let again = leases
        .take(0, "p1", 15_000)
        .await
        .unwrap()
        .expect("the same worker id takes it back");
    assert!(again > first, "a new epoch");
    assert!(
        leases.begin_fenced(0, "p1", first).await.unwrap().is_none(),
        "the earlier run's writes are refused"
    );
    assert!(leases.begin_fenced(0, "p1", again).await.unwrap().is_some());
}

/// Discord counts a bot token's buckets wherever its requests come from: a channel's bucket
/// that one process used up holds the other process's next message into that channel until
/// the bucket resets, instead of letting it find out by a 429 (the sandbox's limits on: 5
/// messages per 5 s per channel).
#[actix_web::test]
async fn a_bucket_used_up_by_one_process_holds_the_other_instead_of_a_429() {
    use seatgate::discord::port::{DiscordPort, OutgoingMessage};
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return;
    }
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox_recommending(1, 1).await;
    let (settings_a, settings_b) = leased_pair(service_settings(&t, &sandbox, OPERATOR));
    let (a, admin_a) = start_service(&settings_a, OPERATOR).await;
    let (b, _) = start_service(&settings_b, OPERATOR).await;
    // B's change feed listens: the kill switch set through A shows on B.
    admin_a
        .call(
            reqwest::Method::PUT,
            "/api/v1/enforcement",
            Some(json!({"kill_switch": true})),
        )
        .await;
    let start = Instant::now();
    while !b.cache.kill_switch() {
        assert!(start.elapsed() < Duration::from_secs(5), "B never listened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sandbox.set_rate_limits(seatgate::sandbox::RateLimitConfig::default());
    sandbox.reset_stats();

    let channel = target(0).1;
    let message = |n: usize| OutgoingMessage {
        content: format!("bucket {n}"),
        ..OutgoingMessage::default()
    };
    let rest_a = a.rest.clone().expect("A has Discord");
    let rest_b = b.rest.clone().expect("B has Discord");
    let first = Instant::now();
    for n in 0..5 {
        rest_a
            .create_message(channel, &message(n), &format!("a{n}"))
            .await
            .expect("within the channel's five");
    }
    // A's fifth answer said Remaining 0; its word reaches B in milliseconds.
    tokio::time::sleep(Duration::from_millis(200)).await;
    rest_b
        .create_message(channel, &message(5), "b5")
        .await
        .expect("B's message goes once the bucket resets");
    let took = first.elapsed();
    let stats = sandbox.stats();
    assert_eq!(stats["rate_limited"], json!(0), "{stats}");
    assert!(
        took >= Duration::from_millis(4_500),
        "B sent before the channel's bucket reset ({took:?} after A's first)"
    );
    let texts: Vec<String> = sandbox
        .messages(channel)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .filter(|c| c.starts_with("bucket "))
        .collect();
    assert_eq!(texts.len(), 6, "{texts:?}");
    b.shutdown().await;
    a.shutdown().await;
}
