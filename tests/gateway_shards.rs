//! `SEATGATE_SHARDS`: the service runs every shard that `GET /gateway/bot` recommends (or the
//! number it is given) in one process, one session per shard, and the guilds of every shard
//! are counted and mirrored into. `/readyz` and `/metrics` list the shards it runs.

mod mirror_support;

use std::time::Duration;

use reqwest::Method;
use seatgate::{
    domain::shards::{shard_of, ShardCount},
    store::testing::TestDatabase,
};
use serde_json::json;

use mirror_support::*;

const OPERATOR: &str = "shards-test-operator";

async fn counted(admin: &Admin, guild: u64, seats: u64) {
    let snapshot =
        format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}/snapshot");
    let start = std::time::Instant::now();
    loop {
        let (_, s) = admin.try_call(Method::GET, &snapshot, None, None).await;
        if s["seats_used"] == seats && s["status"] == "fresh" {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "guild {guild} never counted: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn the_service_runs_every_recommended_shard_and_serves_the_guilds_of_each() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox_recommending(4, 4).await;
    let on_shards: Vec<u64> = (0..4).map(|i| shard_of(target(i).0, 4)).collect();
    let mut distinct = on_shards.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "one customer guild per shard: {on_shards:?}"
    );

    let settings = service_settings(&t, &sandbox, OPERATOR);
    assert_eq!(settings.shards, ShardCount::Auto, "the default");
    let (running, admin) = start_service(&settings, OPERATOR).await;
    one_session_per_shard(&sandbox, 4).await;

    admin.configure(&["bot", "webhook", "bot", "webhook"]).await;
    for i in 0..4 {
        let (guild, _) = target(i);
        sandbox
            .add_member(
                guild,
                &json!({"user": {"id": (720_000_000_000_000_000 + i).to_string(), "username": format!("m{i}")}, "roles": []}),
            )
            .expect("member added");
        admin
            .call(
                Method::PUT,
                &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}"),
                Some(server_config(
                    json!({"seat_limit": 10, "enforcement_mode": "enforce"}),
                )),
            )
            .await;
    }
    // Each guild's owner and the member who joined on its shard's session; the bot is no seat.
    for i in 0..4 {
        counted(&admin, target(i).0, 2).await;
    }
    post(&sandbox, "to every shard");
    every_target_shows(
        &sandbox,
        &(0..4).map(|i| target(i).1).collect::<Vec<_>>(),
        &["to every shard".to_owned()],
        Duration::from_secs(20),
    )
    .await;

    let ready = get_json(format!("http://{}/readyz", running.bound)).await;
    let shards: Vec<(u64, u64, &str)> = ready["shards"]
        .as_array()
        .expect("shards listed")
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap_or(99),
                s["total"].as_u64().unwrap_or(99),
                s["stage"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        shards,
        (0..4).map(|id| (id, 4, "connected")).collect::<Vec<_>>(),
        "{ready}"
    );
    let metrics = admin.metrics().await;
    assert!(
        metrics.contains("seatgate_gateway_shards_held 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("seatgate_gateway_shard_connected{shard=\"3\"} 1"),
        "{metrics}"
    );
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn a_fixed_shard_count_overrides_what_discord_recommends() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox_recommending(1, 2).await;
    let mut settings = service_settings(&t, &sandbox, OPERATOR);
    settings.shards = ShardCount::Fixed(2);
    let (running, admin) = start_service(&settings, OPERATOR).await;
    one_session_per_shard(&sandbox, 2).await;
    admin.configure(&["bot", "bot"]).await;
    post(&sandbox, "two shards");
    every_target_shows(
        &sandbox,
        &(0..2).map(|i| target(i).1).collect::<Vec<_>>(),
        &["two shards".to_owned()],
        Duration::from_secs(20),
    )
    .await;
    running.shutdown().await;
    sandbox.shutdown().await;
}
