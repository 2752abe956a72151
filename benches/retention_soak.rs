//! Retention soak, printed: the whole service on SQLite against the sandbox (rate limits off)
//! at 50 messages/s into 5 targets, with every retention age set to 60 s and the pruner every
//! 10 s; the row counts of the tables the mirror grows are printed each minute and must level
//! off instead of growing with the run.
//!
//! `cargo bench --bench retention_soak` (10 minutes; `SOAK_SECS=120` for a short look).

mod support;

use std::time::{Duration, Instant};

use sea_orm::{EntityTrait, PaginatorTrait};
use seatgate::{
    app,
    config::Settings,
    sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
    store::testing::TestDatabase,
};
use serde_json::{json, Value};

const TARGETS: u64 = 5;
const RATE: u64 = 50;
const AGE_SECS: u64 = 60;
const BOT: u64 = 990_000_000_000_000_001;
const PROVIDER: u64 = 700_000_000_000_000_001;
const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
const SOURCE_CHANNEL: u64 = 830_000_000_000_000_001;
const OPERATOR: &str = "soak-operator";
const VIEW_SEND_HISTORY: u64 = (1 << 10) | (1 << 11) | (1 << 16);

fn target(i: u64) -> (u64, u64) {
    (840_000_000_000_000_000 + i, 860_000_000_000_000_000 + i)
}

fn scenario() -> Value {
    let mut guilds = vec![json!({
        "id": SOURCE_GUILD.to_string(), "name": "Provider", "owner_id": PROVIDER.to_string(),
        "roles": [{"id": SOURCE_GUILD.to_string(), "name": "@everyone", "permissions": VIEW_SEND_HISTORY.to_string(), "position": 0}],
        "channels": [{"id": SOURCE_CHANNEL.to_string(), "name": "announcements", "type": 0}],
        "members": [{"user": {"id": PROVIDER.to_string(), "username": "provider"}, "roles": []}]
    })];
    for i in 0..TARGETS {
        let (guild, channel) = target(i);
        guilds.push(json!({
            "id": guild.to_string(), "name": format!("Customer {i}"), "owner_id": (701_000_000_000_000_000 + i).to_string(),
            "roles": [{"id": guild.to_string(), "name": "@everyone", "permissions": VIEW_SEND_HISTORY.to_string(), "position": 0}],
            "channels": [{"id": channel.to_string(), "name": "signals", "type": 0}],
            "members": [{"user": {"id": (701_000_000_000_000_000 + i).to_string(), "username": "owner"}, "roles": []}]
        }));
    }
    json!({"bot": {"id": BOT.to_string(), "username": "seatgate"}, "guilds": guilds})
}

fn post(sandbox: &SandboxHandle, content: &str) -> Result<(), String> {
    sandbox
        .post_message(SOURCE_CHANNEL, &json!({"author": {"id": PROVIDER.to_string(), "username": "provider"}, "content": content}))
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

async fn rows(db: &seatgate::store::Database) -> Result<String, String> {
    let c = db.conn();
    let e = |e: sea_orm::DbErr| e.to_string();
    let jobs = entities::mirror_jobs::Entity::find()
        .count(c)
        .await
        .map_err(e)?;
    let links = entities::mirror_message_links::Entity::find()
        .count(c)
        .await
        .map_err(e)?;
    let audits = entities::discord_seat_audit_jobs::Entity::find()
        .count(c)
        .await
        .map_err(e)?;
    let events = entities::seat_enforcement_events::Entity::find()
        .count(c)
        .await
        .map_err(e)?;
    Ok(format!(
        "mirror_jobs {jobs:>6}  mirror_message_links {links:>6}  audit_jobs {audits:>4}  enforcement_events {events:>4}"
    ))
}

async fn soak() -> Result<(), String> {
    std::env::set_var("SEATGATE_TEST_DATABASE", "sqlite");
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let t = TestDatabase::empty().await.map_err(|e| e.to_string())?;
    let sandbox = Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario()).map_err(|e| e.message)?),
        rate_limits: RateLimitConfig::disabled(),
        ..SandboxOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let settings = Settings {
        mirror_max_age_secs: AGE_SECS,
        retention_jobs_secs: AGE_SECS,
        retention_links_secs: AGE_SECS,
        retention_events_secs: AGE_SECS,
        retention_interval_secs: 10,
        ..support::service_settings(&t.url, &sandbox, OPERATOR)
    };
    let running = app::start(&settings).await.map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let api = format!("http://{}", running.bound);
    let call = |path: String, body: Value| {
        client
            .post(format!("{api}{path}"))
            .bearer_auth(OPERATOR)
            .json(&body)
            .send()
    };
    call(
        "/api/v1/tenants/soak/connectors".into(),
        json!({"connector_id": "c", "name": "c", "source_guild_id": SOURCE_GUILD.to_string()}),
    )
    .await
    .map_err(|e| e.to_string())?;
    let start = Instant::now();
    while sandbox.connected_sessions() < 1 {
        if start.elapsed() > Duration::from_secs(20) {
            return Err("gateway never connected".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..TARGETS {
        let (guild, channel) = target(i);
        let r = call(
            "/api/v1/tenants/soak/connectors/c/mappings".into(),
            json!({"source_channel_id": SOURCE_CHANNEL.to_string(), "target_guild_id": guild.to_string(),
                   "target_channel_id": channel.to_string(), "delivery_mode": "bot"}),
        )
        .await
        .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("mapping: {}", r.status()));
        }
    }
    println!(
        "soak: {RATE} messages/s x {TARGETS} targets for {secs} s, retention ages {AGE_SECS} s, pruner every 10 s"
    );
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let began = Instant::now();
    let mut next_print = Duration::from_secs(60);
    let mut posted = 0u64;
    while began.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        post(&sandbox, &format!("soak {posted:06}"))?;
        posted += 1;
        if began.elapsed() >= next_print {
            let delivered: usize = (0..TARGETS)
                .map(|i| sandbox.message_count(target(i).1))
                .sum();
            println!(
                "soak: minute {:>2}: {posted:>6} posted, {delivered:>7} copies  |  {}",
                next_print.as_secs() / 60,
                rows(&running.db).await?
            );
            next_print += Duration::from_secs(60);
        }
    }
    running.shutdown().await;
    sandbox.shutdown().await;
    drop(t);
    Ok(())
}

fn main() {
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    std::env::set_var("no_proxy", "127.0.0.1,localhost");
    if let Err(e) = app::actix_system().block_on(soak()) {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}
