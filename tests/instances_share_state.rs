//! Two instances on one PostgreSQL database keep each other's memory current through
//! `LISTEN`/`NOTIFY` (the change feed): a seat count one instance makes, a server config, a
//! connector switched off, the kill switch and tenant tokens changed through one instance's
//! API reach the other's snapshot cache (what its gate reads) and its API; a lost listener
//! connection is followed by a reload. PostgreSQL only: SQLite has one process per database.
//!
//! Instance A runs against the sandbox; instance B has no bot token, so whatever B holds came
//! from the database.

mod mirror_support;

use std::time::{Duration, Instant};

use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use seatgate::{
    actors::{snapshot_cache::ConnectorRun, ServerKey},
    domain::gate::EnforcementMode,
    sandbox::RateLimitConfig,
    store::testing::{wants_postgres, TestDatabase},
};
use serde_json::json;

use mirror_support::*;

const OPERATOR: &str = "instances-test-operator";

/// How long `check` took to hold, polled every 10 ms; panics after `limit`.
async fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two instances in one test process: each its own worker id, as two processes have.
fn two_of(mut settings: seatgate::config::Settings, name: &str) -> seatgate::config::Settings {
    settings.worker_id = Some(format!("instance-{name}"));
    settings
}

async fn status_as(admin: &Admin, path: &str, token: &str) -> u16 {
    admin
        .try_call(Method::GET, path, None, Some(token))
        .await
        .0
        .as_u16()
}

#[actix_web::test]
async fn what_one_instance_writes_reaches_the_others_memory() {
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return;
    }
    let limit = Duration::from_secs(3);
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = start_sandbox(2, RateLimitConfig::disabled()).await;
    let settings_a = two_of(service_settings(&t, &sandbox, OPERATOR), "a");
    let (a, admin_a) = start_service(&settings_a, OPERATOR).await;
    let mut settings_b = two_of(settings_a.clone(), "b");
    settings_b.discord_token = None;
    let (b, admin_b) = start_service(&settings_b, OPERATOR).await;
    attached(&sandbox).await;

    admin_a.configure(&["bot", "bot"]).await;
    let (guild, _) = target(0);
    let key = ServerKey {
        tenant_key: TENANT.into(),
        connector_id: CONNECTOR.into(),
        guild_id: guild,
    };
    let server = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}");
    admin_a
        .call(
            Method::PUT,
            &server,
            Some(server_config(
                json!({"seat_limit": 1, "enforcement_mode": "enforce"}),
            )),
        )
        .await;
    let took = within(limit, "B holds the server's policy", || {
        b.cache.policy(&key).map(|p| p.mode) == Some(EnforcementMode::Enforce)
    })
    .await;
    println!("server config through A -> B's cache: {took:?}");
    // A counted the owner: at the limit, not over.
    within(Duration::from_secs(20), "B holds A's count", || {
        b.cache
            .snapshot(&key)
            .is_some_and(|s| s.seats_used == 1 && s.seat_limit == 1)
    })
    .await;

    // A join past the limit, counted by A: B's gate sees the server over.
    sandbox
        .add_member(
            guild,
            &json!({"user": {"id": "720000000000000001", "username": "joiner"}, "roles": []}),
        )
        .expect("member added");
    let took = within(limit, "B holds the crossing", || {
        b.cache.snapshot(&key).is_some_and(|s| s.is_over_limit())
    })
    .await;
    println!("join on the sandbox -> over the limit in B's cache: {took:?}");
    assert!(a.cache.snapshot(&key).is_some_and(|s| s.is_over_limit()));

    // The kill switch through A: B's API and B's gate.
    admin_a
        .call(
            Method::PUT,
            "/api/v1/enforcement",
            Some(json!({"kill_switch": true})),
        )
        .await;
    let took = within(limit, "B's gate sees the kill switch", || {
        b.cache.kill_switch()
    })
    .await;
    println!("kill switch through A -> B's cache: {took:?}");
    let shown = admin_b.call(Method::GET, "/api/v1/enforcement", None).await;
    assert_eq!(shown, json!({"kill_switch": true}));

    // A connector switched off through A.
    let connector = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}");
    admin_a
        .call(Method::PATCH, &connector, Some(json!({"enabled": false})))
        .await;
    within(limit, "B holds the connector as off", || {
        b.cache.connector_run(TENANT, CONNECTOR) == ConnectorRun::Disabled
    })
    .await;
    admin_a
        .call(Method::PATCH, &connector, Some(json!({"enabled": true})))
        .await;
    within(limit, "B holds the connector as on again", || {
        b.cache.connector_run(TENANT, CONNECTOR) == ConnectorRun::Live
    })
    .await;

    // A tenant token made through A works on B; revoked through A, B refuses it.
    let made = admin_a
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{TENANT}/tokens"),
            None,
        )
        .await;
    let token = made["token"].as_str().expect("token").to_owned();
    let token_id = made["token_id"].as_i64().expect("token id");
    let connectors = format!("/api/v1/tenants/{TENANT}/connectors");
    let start = Instant::now();
    while status_as(&admin_b, &connectors, &token).await != 200 {
        assert!(start.elapsed() < limit, "B never accepted A's new token");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    admin_a
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{TENANT}/tokens/{token_id}"),
            None,
        )
        .await;
    let start = Instant::now();
    while status_as(&admin_b, &connectors, &token).await != 401 {
        assert!(
            start.elapsed() < limit,
            "B still accepts a token revoked through A"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every listener's connection cut: the kill switch turned off meanwhile reaches B by the
    // reload that follows its reconnection.
    let db = t.db.conn();
    let cut = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        ))
        .await
        .expect("listeners cut");
    assert_eq!(cut.len(), 2, "each instance listens on one connection");
    admin_a
        .call(
            Method::PUT,
            "/api/v1/enforcement",
            Some(json!({"kill_switch": false})),
        )
        .await;
    let took = within(
        Duration::from_secs(10),
        "B reloads after its listener was cut",
        || !b.cache.kill_switch(),
    )
    .await;
    println!("listener cut, kill switch off through A -> B's cache: {took:?}");
    // And notifications flow again.
    admin_a
        .call(
            Method::PUT,
            &server,
            Some(server_config(
                json!({"seat_limit": 5, "enforcement_mode": "shadow"}),
            )),
        )
        .await;
    within(limit, "B hears changes after reconnecting", || {
        b.cache.policy(&key).map(|p| p.mode) == Some(EnforcementMode::Shadow)
    })
    .await;

    b.shutdown().await;
    a.shutdown().await;
    sandbox.shutdown().await;
}

/// Discord's global limit (50 requests/s) is the bot token's, for all processes together: two
/// live instances take 25/s each, and when one stops gracefully the other takes the whole
/// limit again. Both ingest the signal (both are shard 0 of 1 until shards are leased): it
/// arrives once on every target, with no 429 from the sandbox (its limits on). Today the
/// instance that records a message first delivers its whole fan-out, so this fan-out alone
/// would meet no 429 without the split either; the shares are what the test holds.
#[actix_web::test]
async fn live_instances_split_the_bot_tokens_global_limit() {
    if !wants_postgres() {
        eprintln!("PostgreSQL only (SEATGATE_TEST_DATABASE=postgres)");
        return;
    }
    let targets = 60;
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = start_sandbox(targets, RateLimitConfig::default()).await;
    let settings = service_settings(&t, &sandbox, OPERATOR);
    let (a, admin_a) = start_service(&two_of(settings.clone(), "a"), OPERATOR).await;
    let (b, _admin_b) = start_service(&two_of(settings, "b"), OPERATOR).await;
    let share = |r: &seatgate::app::Running| r.rest.as_ref().map(|r| r.global_per_sec());
    within(
        Duration::from_secs(10),
        "each instance takes half of 50/s",
        || share(&a) == Some(25) && share(&b) == Some(25),
    )
    .await;
    within(Duration::from_secs(20), "both attached", || {
        sandbox.connected_sessions() == 2
    })
    .await;

    let modes = vec!["bot"; targets as usize];
    admin_a.configure(&modes).await;
    sandbox.reset_stats();
    post(&sandbox, "to every customer");
    every_target_shows(
        &sandbox,
        &(0..targets).map(|i| target(i).1).collect::<Vec<_>>(),
        &["to every customer".to_owned()],
        Duration::from_secs(60),
    )
    .await;
    let stats = sandbox.stats();
    assert_eq!(stats["rate_limited"], 0, "{stats}");

    b.shutdown().await;
    within(
        Duration::from_secs(10),
        "the one left takes the whole limit",
        || share(&a) == Some(50),
    )
    .await;
    a.shutdown().await;
    sandbox.shutdown().await;
}
