//! Several `serve` processes on one PostgreSQL database with shard leases answer the admin
//! API alike, whichever shard runs where: the guild list, a guild's channels and roles, the
//! names in the mapping list and `.../seats` (with the members' names and why each counts),
//! and a channel renamed on Discord shows on both. The process that does not run a guild's
//! shard knows it from `guild_directory` (published by the owner, read through the change
//! feed) and sends `.../seats` on to the owner, the only process holding the live count.
//! PostgreSQL only.

mod mirror_support;

use std::time::{Duration, Instant};

use reqwest::Method;
use seatgate::{
    domain::shards::shard_of,
    store::{
        shard_leases::ShardLeases,
        testing::{wants_postgres, TestDatabase},
    },
};
use serde_json::{json, Value};

use mirror_support::*;

const OPERATOR: &str = "alike-test-operator";

/// The same call on both processes until both answer 200 with the same body (the body).
async fn alike(a: &Admin, b: &Admin, path: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (sa, va) = a.try_call(Method::GET, path, None, None).await;
        let (sb, vb) = b.try_call(Method::GET, path, None, None).await;
        if sa.is_success() && sb.is_success() && va == vb {
            return va;
        }
        assert!(
            start.elapsed() < limit,
            "{path}: A answered {sa} {va}, B answered {sb} {vb}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn every_process_answers_every_guilds_routes_alike() {
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return;
    }
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = sandbox_recommending(2, 2).await;
    let (settings_a, settings_b) = leased_pair(service_settings(&t, &sandbox, OPERATOR));
    let (a, admin_a) = start_service(&settings_a, OPERATOR).await;
    let (b, admin_b) = start_service(&settings_b, OPERATOR).await;
    let leases = ShardLeases::new(t.db.clone());
    let start = Instant::now();
    let split = loop {
        let held: Vec<(u32, String)> = leases
            .list()
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.held())
            .map(|l| (l.shard_id, l.holder.unwrap_or_default()))
            .collect();
        let a_holds = held.iter().filter(|(_, h)| h == "instance-a").count();
        if held.len() == 2 && a_holds == 1 {
            break held;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{held:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    one_session_per_shard(&sandbox, 2).await;
    let (guild_0, channel_0) = target(0);
    let (guild_1, _) = target(1);
    assert_ne!(
        shard_of(guild_0, 2),
        shard_of(guild_1, 2),
        "one customer on each shard, so each process owns one of them"
    );
    println!("shards: {split:?}");

    admin_a.configure(&["bot", "bot"]).await;
    for i in 0..2 {
        let (guild, channel) = target(i);
        admin_a
            .call(
                Method::PUT,
                &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}"),
                Some(server_config(json!({
                    "seat_limit": 10, "enforcement_mode": "enforce",
                    "notify_channel_id": channel.to_string()
                }))),
            )
            .await;
    }

    let limit = Duration::from_secs(20);
    let guilds = alike(
        &admin_a,
        &admin_b,
        &format!("/api/v1/tenants/{TENANT}/guilds"),
        limit,
    )
    .await;
    let named: Vec<&str> = guilds["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(
        named.contains(&"Customer 0") && named.contains(&"Customer 1"),
        "both customers by name on both processes: {guilds}"
    );
    for i in 0..2 {
        let (guild, _) = target(i);
        let channels = alike(
            &admin_a,
            &admin_b,
            &format!("/api/v1/tenants/{TENANT}/guilds/{guild}/channels"),
            limit,
        )
        .await;
        assert_eq!(channels["items"][0]["name"], "signals", "{channels}");
        assert_eq!(channels["items"][0]["bot_can_post"], true, "{channels}");
        let roles = alike(
            &admin_a,
            &admin_b,
            &format!("/api/v1/tenants/{TENANT}/guilds/{guild}/roles"),
            limit,
        )
        .await;
        assert_eq!(roles["items"][0]["name"], "seatgate", "{roles}");
        let seats = alike(
            &admin_a,
            &admin_b,
            &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}/seats"),
            limit,
        )
        .await;
        assert_eq!(seats["total"], 1, "the owner, counted: {seats}");
        assert_eq!(
            seats["items"][0]["username"],
            format!("owner{i}"),
            "{seats}"
        );
        let export = format!(
            "{}/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}/seats/export",
            admin_b.api
        );
        let csv = admin_b
            .client
            .get(export)
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap();
        assert!(csv.status().is_success());
        assert!(
            csv.text().await.unwrap().contains(&format!("owner{i}")),
            "the export of guild {guild} from process B"
        );
    }
    let mappings = alike(
        &admin_a,
        &admin_b,
        &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/mappings"),
        limit,
    )
    .await;
    assert!(
        mappings.to_string().contains("Customer 1"),
        "target guilds named on both: {mappings}"
    );

    // Which process runs which shard: the same table from both, each marking its own.
    let (_, sa) = admin_a
        .try_call(Method::GET, "/api/v1/shards", None, None)
        .await;
    let (_, sb) = admin_b
        .try_call(Method::GET, "/api/v1/shards", None, None)
        .await;
    let holders = |v: &Value| -> Vec<(u64, String)> {
        v["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["shard_id"].as_u64().unwrap_or(99),
                    s["holder"].as_str().unwrap_or("-").to_owned(),
                )
            })
            .collect()
    };
    let want: Vec<(u64, String)> = split
        .iter()
        .map(|(shard, holder)| (u64::from(*shard), holder.clone()))
        .collect();
    assert_eq!(holders(&sa), want, "{sa}");
    assert_eq!(holders(&sb), want, "{sb}");
    assert_eq!(
        (sa["answered_by"].as_str(), sb["answered_by"].as_str()),
        (Some("instance-a"), Some("instance-b"))
    );
    let own = |v: &Value| -> Vec<String> {
        v["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["this_process"] == true)
            .map(|s| s["holder"].as_str().unwrap_or("-").to_owned())
            .collect()
    };
    assert_eq!(
        (own(&sa), own(&sb)),
        (vec!["instance-a".to_owned()], vec!["instance-b".to_owned()])
    );
    assert!(
        sa["shards"][0]["holder_admin_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{sa}"
    );
    let (status, _) = admin_a
        .try_call(
            Method::GET,
            "/api/v1/shards",
            None,
            Some("not-the-operator"),
        )
        .await;
    assert_eq!(status, 401);

    // Renamed on Discord: both processes show the new name within seconds.
    sandbox
        .update_channel(channel_0, &json!({"name": "renamed-signals"}))
        .expect("channel renamed");
    let renamed = Instant::now();
    let path = format!("/api/v1/tenants/{TENANT}/guilds/{guild_0}/channels");
    loop {
        let (_, va) = admin_a.try_call(Method::GET, &path, None, None).await;
        let (_, vb) = admin_b.try_call(Method::GET, &path, None, None).await;
        if va["items"][0]["name"] == "renamed-signals"
            && vb["items"][0]["name"] == "renamed-signals"
        {
            break;
        }
        assert!(
            renamed.elapsed() < Duration::from_secs(5),
            "after a rename: A {va}, B {vb}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("rename -> both processes: {:?}", renamed.elapsed());
    b.shutdown().await;
    a.shutdown().await;
    sandbox.shutdown().await;
}
