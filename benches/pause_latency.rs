//! Pause latency across processes, printed: two instances on one PostgreSQL database share a
//! sandbox's two shards through leases (`SEATGATE_SHARD_LEASES`); a member joins a server at
//! its limit on the sandbox, and the time is measured from the join to the first decision of
//! the *other* process's gate (not the guild's owner) to hold a job for that server: its
//! snapshot cache, fed by the change feed, says over the limit. p50 / p99 / max over 100
//! crossings (each followed by the leave that ends it).
//!
//! `cargo bench --bench pause_latency`. PostgreSQL from `SEATGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`).

use std::time::{Duration, Instant};

use seatgate::{
    actors::ServerKey,
    app,
    config::{Secret, Settings},
    domain::{
        freshness::FreshnessWindows,
        gate::{self, GateDecision, JobKind},
        shards::shard_of,
    },
    sandbox::{RateLimitConfig, Sandbox, SandboxOptions, Scenario},
    store::{now_ms, shard_leases::ShardLeases, testing::TestDatabase},
};
use serde_json::{json, Value};

const CROSSINGS: usize = 100;
const BOT: u64 = 990_000_000_000_000_001;
const PROVIDER: u64 = 700_000_000_000_000_001;
const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
const SOURCE_CHANNEL: u64 = 830_000_000_000_000_001;
const GUILD: u64 = 840_000_000_000_000_000;
const CHANNEL: u64 = 860_000_000_000_000_000;
const OWNER: u64 = 701_000_000_000_000_000;
const JOINER: u64 = 720_000_000_000_000_001;
const OPERATOR: &str = "bench-operator";
const VIEW: u64 = 1 << 10;
const SEND: u64 = 1 << 11;
const HISTORY: u64 = 1 << 16;

fn scenario() -> Value {
    json!({
        "bot": {"id": BOT.to_string(), "username": "seatgate"},
        "shards": 2,
        "guilds": [
            {
                "id": SOURCE_GUILD.to_string(), "name": "Provider", "owner_id": PROVIDER.to_string(),
                "roles": [{"id": SOURCE_GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | HISTORY).to_string(), "position": 0}],
                "channels": [{"id": SOURCE_CHANNEL.to_string(), "name": "announcements", "type": 0}],
                "members": [{"user": {"id": PROVIDER.to_string(), "username": "provider"}, "roles": []}]
            },
            {
                "id": GUILD.to_string(), "name": "Customer", "owner_id": OWNER.to_string(),
                "roles": [{"id": GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | SEND | HISTORY).to_string(), "position": 0}],
                "channels": [{"id": CHANNEL.to_string(), "name": "signals", "type": 0}],
                "members": [
                    {"user": {"id": OWNER.to_string(), "username": "owner"}, "roles": []},
                    {"user": {"id": BOT.to_string(), "username": "seatgate", "bot": true}, "roles": []}
                ]
            }
        ]
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run() -> Result<(), String> {
    std::env::set_var("SEATGATE_TEST_DATABASE", "postgres");
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    std::env::set_var("no_proxy", "127.0.0.1,localhost");
    let t = TestDatabase::empty().await.map_err(|e| e.to_string())?;
    let sandbox = Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario()).map_err(|e| e.message)?),
        rate_limits: RateLimitConfig::disabled(),
        ..SandboxOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let base = Settings {
        database_url: t.url.clone(),
        bind: "127.0.0.1:0".parse().map_err(|_| "bind")?,
        discord_token: Some(Secret::new(sandbox.bot_token())),
        discord_api_url: sandbox.api_url().to_owned(),
        operator_token: Some(Secret::new(OPERATOR.to_owned())),
        shard_leases: true,
        ..Settings::default()
    };
    let mut a_settings = base.clone();
    a_settings.worker_id = Some("bench-a".into());
    let mut b_settings = base;
    b_settings.worker_id = Some("bench-b".into());
    let a = app::start(&a_settings).await.map_err(|e| e.to_string())?;
    let b = app::start(&b_settings).await.map_err(|e| e.to_string())?;

    // Until each holds one of the two shards.
    let leases = ShardLeases::new(t.db.clone());
    let guild_shard = shard_of(GUILD, 2) as u32;
    let start = Instant::now();
    let owner = loop {
        let held: Vec<(u32, String)> = leases
            .list()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|l| l.held())
            .map(|l| (l.shard_id, l.holder.unwrap_or_default()))
            .collect();
        if held.len() == 2 && held[0].1 != held[1].1 {
            break held
                .into_iter()
                .find(|(s, _)| *s == guild_shard)
                .map(|(_, h)| h)
                .unwrap_or_default();
        }
        if start.elapsed() > Duration::from_secs(40) {
            return Err(format!("shards never split: {held:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (owner_run, other) = if owner == "bench-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    while sandbox.connected_sessions() < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let api = format!("http://{}", owner_run.bound);
    let send = |method: reqwest::Method, path: String, body: Value| {
        client
            .request(method, format!("{api}{path}"))
            .bearer_auth(OPERATOR)
            .json(&body)
            .send()
    };
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/api/v1/tenants/bench/connectors".to_owned(),
            json!({"connector_id": "c", "name": "c", "source_guild_id": SOURCE_GUILD.to_string()}),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/tenants/bench/connectors/c/mappings".to_owned(),
            json!({"source_channel_id": SOURCE_CHANNEL.to_string(), "target_guild_id": GUILD.to_string(),
                   "target_channel_id": CHANNEL.to_string(), "delivery_mode": "bot"}),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/tenants/bench/connectors/c/servers/{GUILD}"),
            json!({"seat_limit": 1, "enforcement_mode": "enforce", "override": "none", "stale_grace": false,
                   "basic_role_id": null, "advanced_role_id": null, "pro_role_id": null, "notify_channel_id": null}),
        ),
    ] {
        let r = send(method, path.clone(), body)
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("{path}: {}", r.status()));
        }
    }
    let key = ServerKey {
        tenant_key: "bench".into(),
        connector_id: "c".into(),
        guild_id: GUILD,
    };
    let windows = FreshnessWindows::default();
    let held = |run: &app::Running| {
        let decision = gate::decide(
            run.cache.kill_switch(),
            run.cache.policy(&key).as_ref(),
            run.cache.snapshot(&key).as_ref(),
            JobKind::Send,
            now_ms(),
            &windows,
        );
        matches!(decision, GateDecision::Block { .. })
    };
    let counted = |run: &app::Running, seats: u64| {
        run.cache
            .snapshot(&key)
            .is_some_and(|s| s.seats_used == seats)
    };
    let start = Instant::now();
    while !counted(other, 1) || held(other) {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the server was never counted at its limit on the other process".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut took: Vec<f64> = Vec::with_capacity(CROSSINGS);
    for _ in 0..CROSSINGS {
        let joined = Instant::now();
        sandbox
            .add_member(
                GUILD,
                &json!({"user": {"id": JOINER.to_string(), "username": "joiner"}, "roles": []}),
            )
            .map_err(|e| format!("{e:?}"))?;
        while !held(other) {
            if joined.elapsed() > Duration::from_secs(10) {
                return Err("the other process never held after a join".into());
            }
            tokio::task::yield_now().await;
        }
        took.push(joined.elapsed().as_secs_f64() * 1000.0);
        sandbox
            .remove_member(GUILD, JOINER)
            .map_err(|e| format!("{e:?}"))?;
        let left = Instant::now();
        while held(other) || held(owner_run) {
            if left.elapsed() > Duration::from_secs(10) {
                return Err("never under the limit again after the leave".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    took.sort_by(f64::total_cmp);
    println!(
        "pause latency, join on the sandbox -> held by the gate of the process that does not own the guild, {CROSSINGS} crossings: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        took.last().copied().unwrap_or(f64::NAN)
    );
    b.shutdown().await;
    a.shutdown().await;
    sandbox.shutdown().await;
    drop(t);
    Ok(())
}

fn main() {
    let result = app::actix_system().block_on(run());
    if let Err(err) = result {
        eprintln!("pause_latency: {err}");
        std::process::exit(1);
    }
}
