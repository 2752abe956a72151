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
    let mut settings = service_settings(&t, &sandbox, OPERATOR);
    settings.shard_leases = true;
    let mut settings_a = settings.clone();
    settings_a.worker_id = Some("instance-a".into());
    let mut settings_b = settings;
    settings_b.worker_id = Some("instance-b".into());
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
    assert!(
        until(Duration::from_secs(20), || {
            (0..4).all(|i| live(&sandbox, target(i).1) == ["to every shard"])
        })
        .await,
        "not mirrored once into every shard's guild: {:?}",
        (0..4)
            .map(|i| live(&sandbox, target(i).1))
            .collect::<Vec<_>>()
    );

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
