//! Pause latency across processes, printed: three instances on one PostgreSQL database share
//! a sandbox's three shards through leases (`SEATGATE_SHARD_LEASES`), two of them `seatgate
//! serve` processes of their own and the third this bench's process, one customer server on
//! each shard. A member joins, on the sandbox, a server at its limit whose shard a `serve`
//! process holds, and the time is measured from the join to the first decision of this
//! process's gate (which does not own that server) to hold a job for it: its snapshot cache,
//! fed through PostgreSQL `LISTEN`/`NOTIFY` from the owner's write, says over the limit.
//! p50 / p99 / max over 100 crossings (each followed by the leave that ends it).
//!
//! `cargo bench --bench pause_latency`. PostgreSQL from `SEATGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`).

mod support;

use std::time::{Duration, Instant};

use seatgate::{
    actors::ServerKey,
    app,
    config::Settings,
    domain::{
        freshness::FreshnessWindows,
        gate::{self, GateDecision, JobKind},
        shards::shard_of,
    },
    sandbox::{RateLimitConfig, Sandbox, SandboxOptions, Scenario},
    store::{now_ms, shard_leases::ShardLeases, testing::TestDatabase},
};
use serde_json::{json, Value};
use support::{Serve, OPERATOR};

const CROSSINGS: usize = 100;
const SHARDS: u64 = 3;
const BOT: u64 = 990_000_000_000_000_001;
const PROVIDER: u64 = 700_000_000_000_000_001;
const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
const SOURCE_CHANNEL: u64 = 830_000_000_000_000_001;
const GUILD_BASE: u64 = 840_000_000_000_000_000;
const CHANNEL_BASE: u64 = 860_000_000_000_000_000;
const OWNER: u64 = 701_000_000_000_000_000;
const JOINER: u64 = 720_000_000_000_000_001;
const OBSERVER: &str = "bench-observer";
const VIEW: u64 = 1 << 10;
const SEND: u64 = 1 << 11;
const HISTORY: u64 = 1 << 16;

/// The customer server on `shard`: the first id from `GUILD_BASE` up whose shard it is.
fn guild_on(shard: u64) -> u64 {
    (0..)
        .map(|k| GUILD_BASE + (k << 22))
        .find(|g| shard_of(*g, SHARDS) == shard)
        .unwrap_or(GUILD_BASE)
}

fn scenario() -> Value {
    let mut guilds = vec![json!({
        "id": SOURCE_GUILD.to_string(), "name": "Provider", "owner_id": PROVIDER.to_string(),
        "roles": [{"id": SOURCE_GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | HISTORY).to_string(), "position": 0}],
        "channels": [{"id": SOURCE_CHANNEL.to_string(), "name": "announcements", "type": 0}],
        "members": [{"user": {"id": PROVIDER.to_string(), "username": "provider"}, "roles": []}]
    })];
    for shard in 0..SHARDS {
        let guild = guild_on(shard);
        guilds.push(json!({
            "id": guild.to_string(), "name": format!("Customer {shard}"), "owner_id": OWNER.to_string(),
            "roles": [{"id": guild.to_string(), "name": "@everyone", "permissions": (VIEW | SEND | HISTORY).to_string(), "position": 0}],
            "channels": [{"id": (CHANNEL_BASE + shard).to_string(), "name": "signals", "type": 0}],
            "members": [
                {"user": {"id": OWNER.to_string(), "username": "owner"}, "roles": []},
                {"user": {"id": BOT.to_string(), "username": "seatgate", "bot": true}, "roles": []}
            ]
        }));
    }
    json!({"bot": {"id": BOT.to_string(), "username": "seatgate"}, "shards": SHARDS, "guilds": guilds})
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
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let mut serves = Vec::new();
    for worker in ["bench-serve-a", "bench-serve-b"] {
        let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let serve = Serve::start_with(
            &t.url,
            &sandbox,
            "warn",
            &log,
            &client,
            &[
                ("SEATGATE_SHARD_LEASES", "true"),
                ("SEATGATE_WORKER_ID", worker),
            ],
        )
        .await;
        serves.push((serve, log));
    }
    let observer = app::start(&Settings {
        shard_leases: true,
        worker_id: Some(OBSERVER.into()),
        ..support::service_settings(&t.url, &sandbox, OPERATOR)
    })
    .await
    .map_err(|e| e.to_string())?;

    // Until each of the three holds one shard; the server measured is one a `serve` holds.
    let leases = ShardLeases::new(t.db.clone());
    let start = Instant::now();
    let guild = loop {
        let held: Vec<(u32, String)> = leases
            .list()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|l| l.held())
            .map(|l| (l.shard_id, l.holder.unwrap_or_default()))
            .collect();
        let mut holders: Vec<&str> = held.iter().map(|(_, h)| h.as_str()).collect();
        holders.sort_unstable();
        holders.dedup();
        if held.len() == SHARDS as usize
            && holders.len() == SHARDS as usize
            && sandbox.connected_sessions() == SHARDS as usize
        {
            let shard = held
                .iter()
                .find(|(_, h)| h != OBSERVER)
                .map(|(s, _)| u64::from(*s))
                .unwrap_or(0);
            break guild_on(shard);
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("shards never split one each: {held:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let channel = CHANNEL_BASE + shard_of(guild, SHARDS);

    // Configured through a `serve` process's API; the directory of the other processes'
    // guilds reaches it through the change feed.
    let api = serves
        .first()
        .map(|(s, _)| s.base.clone())
        .unwrap_or_default();
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
            json!({"source_channel_id": SOURCE_CHANNEL.to_string(), "target_guild_id": guild.to_string(),
                   "target_channel_id": channel.to_string(), "delivery_mode": "bot"}),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/tenants/bench/connectors/c/servers/{guild}"),
            json!({"seat_limit": 1, "enforcement_mode": "enforce", "override": "none", "stale_grace": false,
                   "basic_role_id": null, "advanced_role_id": null, "pro_role_id": null, "notify_channel_id": null}),
        ),
    ] {
        let start = Instant::now();
        loop {
            let r = send(method.clone(), path.clone(), body.clone())
                .await
                .map_err(|e| e.to_string())?;
            if r.status().is_success() {
                break;
            }
            // The directory may not hold the other processes' guilds yet.
            if start.elapsed() > Duration::from_secs(30) {
                let status = r.status();
                return Err(format!(
                    "{path}: {status} {}",
                    r.text().await.unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let key = ServerKey {
        tenant_key: "bench".into(),
        connector_id: "c".into(),
        guild_id: guild,
    };
    let windows = FreshnessWindows::default();
    let held = || {
        let decision = gate::decide(
            observer.cache.kill_switch(),
            observer.cache.policy(&key).as_ref(),
            observer.cache.snapshot(&key).as_ref(),
            JobKind::Send,
            now_ms(),
            &windows,
        );
        matches!(decision, GateDecision::Block { .. })
    };
    let counted = |seats: u64| {
        observer
            .cache
            .snapshot(&key)
            .is_some_and(|s| s.seats_used == seats)
    };
    let start = Instant::now();
    while !counted(1) || held() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the server was never counted at its limit on the observer".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut took: Vec<f64> = Vec::with_capacity(CROSSINGS);
    for _ in 0..CROSSINGS {
        let joined = Instant::now();
        sandbox
            .add_member(
                guild,
                &json!({"user": {"id": JOINER.to_string(), "username": "joiner"}, "roles": []}),
            )
            .map_err(|e| format!("{e:?}"))?;
        while !held() {
            if joined.elapsed() > Duration::from_secs(10) {
                return Err("the observer never held after a join".into());
            }
            tokio::task::yield_now().await;
        }
        took.push(joined.elapsed().as_secs_f64() * 1000.0);
        sandbox
            .remove_member(guild, JOINER)
            .map_err(|e| format!("{e:?}"))?;
        // Until the owner's count of the leave reached the observer.
        let left = Instant::now();
        while held() || !counted(1) {
            if left.elapsed() > Duration::from_secs(10) {
                return Err("never under the limit again after the leave".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    took.sort_by(f64::total_cmp);
    println!(
        "pause latency, join on the sandbox -> held by the gate of a process (this one) that does not own the server, {SHARDS} processes, {CROSSINGS} crossings: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        took.last().copied().unwrap_or(f64::NAN)
    );
    observer.shutdown().await;
    drop(serves);
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
