//! Fan-out at Discord's limits, printed: the whole service against the sandbox with its
//! Discord limits on (nothing turned off: 50 requests/s global, webhook executes counted in
//! it, 5 messages per 5 s per channel, 5 executes per 2 s per webhook), SQLite.
//!
//! - 1 signal to `FAN_OUT_TARGETS` (default 1,000) target channels in as many guilds, bot mode;
//! - the same in webhook mode, first with every webhook still to be made (one create and one
//!   execute per target), then again with the webhooks made;
//! - 20 signals posted within one second to the first 100 targets (bot mode): order on
//!   every target.
//!
//! Each prints the time from the post to the last delivery (read from Discord snowflakes: a
//! target message's id carries the millisecond it was created), the floor the limits allow,
//! and the sandbox's `rate_limited` count. The floor: the fan-out's requests `n` under the
//! global 50 per second, counted in one-second windows that open at their first request, can
//! end no sooner than `floor((n - 1) / 50)` seconds after the first; the per-channel and
//! per-webhook limits only bind for 20 signals to one channel (5 per 5 s: 15 s), below the
//! global floor of 2,000 requests (39 s).
//!
//! `cargo bench --bench fan_out`. With `FAN_OUT_PROCESSES=3` (PostgreSQL from
//! `SEATGATE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`) the same
//! runs across three `seatgate serve` processes sharing the sandbox's four shards through
//! leases (`SEATGATE_SHARD_LEASES`): any of them delivers any job, and together they keep the
//! bot token's one global limit (each its share of the live processes).

use std::time::{Duration, Instant};

mod support;

use seatgate::{
    app,
    domain::rate_limits::global_floor,
    sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
    store::{testing::TestDatabase, Database},
};
use serde_json::{json, Value};
use support::Serve;

const BOT: u64 = 990_000_000_000_000_001;
const PROVIDER: u64 = 700_000_000_000_000_001;
const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
/// Source channels: bot-mode fan-out, webhook-mode fan-out, the 20 signals.
const BOT_SOURCE: u64 = 830_000_000_000_000_001;
const WEBHOOK_SOURCE: u64 = 830_000_000_000_000_002;
const ORDER_SOURCE: u64 = 830_000_000_000_000_003;
const ORDER_TARGETS: u64 = 100;
const ORDER_SIGNALS: usize = 20;
use support::OPERATOR;
/// Shards the sandbox recommends when several processes share them.
const SHARDS: u64 = 4;
const VIEW: u64 = 1 << 10;
const SEND: u64 = 1 << 11;
const HISTORY: u64 = 1 << 16;
const MANAGE_WEBHOOKS: u64 = 1 << 29;
const GLOBAL: u32 = 50;

fn target(i: u64) -> (u64, u64) {
    (840_000_000_000_000_000 + i, 860_000_000_000_000_000 + i)
}

fn scenario(targets: u64, shards: u64) -> Value {
    let channel = |id: u64, name: &str| json!({"id": id.to_string(), "name": name, "type": 0});
    let mut guilds = vec![json!({
        "id": SOURCE_GUILD.to_string(), "name": "Provider", "owner_id": PROVIDER.to_string(),
        "roles": [{"id": SOURCE_GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | HISTORY).to_string(), "position": 0}],
        "channels": [channel(BOT_SOURCE, "signals"), channel(WEBHOOK_SOURCE, "webhook-signals"), channel(ORDER_SOURCE, "burst")],
        "members": [{"user": {"id": PROVIDER.to_string(), "username": "provider"}, "roles": []}]
    })];
    for i in 0..targets {
        let (guild, channel) = target(i);
        guilds.push(json!({
            "id": guild.to_string(), "name": format!("Customer {i}"), "owner_id": (701_000_000_000_000_000 + i).to_string(),
            "roles": [{"id": guild.to_string(), "name": "@everyone", "permissions": (VIEW | SEND | HISTORY | MANAGE_WEBHOOKS).to_string(), "position": 0}],
            "channels": [{"id": channel.to_string(), "name": "signals", "type": 0}],
            "members": [{"user": {"id": (701_000_000_000_000_000 + i).to_string(), "username": "owner"}, "roles": []}]
        }));
    }
    json!({"bot": {"id": BOT.to_string(), "username": "seatgate"}, "shards": shards, "guilds": guilds})
}

fn snowflake_ms(id: u64) -> i64 {
    (id >> 22) as i64
}

fn id_of(m: &Value) -> u64 {
    m["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn post(sandbox: &SandboxHandle, channel: u64, content: &str) -> Result<u64, String> {
    let m = sandbox
        .post_message(channel, &json!({"author": {"id": PROVIDER.to_string(), "username": "provider"}, "content": content}))
        .map_err(|e| format!("{e:?}"))?;
    Ok(id_of(&m))
}

fn with_prefix(sandbox: &SandboxHandle, channel: u64, prefix: &str) -> Vec<Value> {
    sandbox
        .messages(channel)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["content"].as_str().is_some_and(|c| c.starts_with(prefix)))
        .collect()
}

fn stat(sandbox: &SandboxHandle, name: &str) -> u64 {
    sandbox.stats()[name].as_u64().unwrap_or(0)
}

/// Waits until the sandbox has served no request for `quiet` (the configuration's checks
/// and the first recounts done).
async fn settle(sandbox: &SandboxHandle, quiet: Duration, limit: Duration) {
    let start = Instant::now();
    let mut last = stat(sandbox, "requests");
    let mut since = Instant::now();
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = stat(sandbox, "requests");
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// Waits until each of `channels` holds `n` messages starting with `prefix`; the time from
/// `posted_ms` (a source snowflake's ms) to the last one's creation.
async fn last_arrival(
    sandbox: &SandboxHandle,
    channels: &[u64],
    prefix: &str,
    n: usize,
    posted_ms: i64,
    limit: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let counts = |c: &u64| with_prefix(sandbox, *c, prefix).len();
    loop {
        let done = channels.iter().filter(|c| counts(c) >= n).count();
        if done == channels.len() {
            break;
        }
        if start.elapsed() > limit {
            return Err(format!(
                "{prefix}: {done} of {} targets complete after {limit:?}",
                channels.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = channels
        .iter()
        .flat_map(|c| with_prefix(sandbox, *c, prefix))
        .map(|m| snowflake_ms(id_of(&m)))
        .max()
        .unwrap_or(posted_ms);
    Ok(Duration::from_millis((last - posted_ms).max(0) as u64))
}

/// How long after the last delivery the last of the fan-out's jobs was written done.
async fn settled(db: &Database, posted_ms: i64, took: Duration) -> Result<(), String> {
    use sea_orm::ConnectionTrait;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let conn = db.conn();
    let source_ms = posted_ms + seatgate::domain::snowflake::DISCORD_EPOCH_MS;
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            format!(
                "SELECT COUNT(*), MAX(updated_at) FROM mirror_jobs WHERE kind = 'send' AND status = 'done' AND created_at >= {}",
                source_ms - 1_000
            ),
        ))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no row")?;
    let done: i64 = row.try_get_by_index(0).map_err(|e| e.to_string())?;
    let last: i64 = row.try_get_by_index(1).map_err(|e| e.to_string())?;
    let last_delivery = source_ms + took.as_millis() as i64;
    println!(
        "  {done} jobs done; the last written done {} ms after the last delivery",
        last - last_delivery
    );
    Ok(())
}

fn report(label: &str, took: Duration, requests: u32, rate_limited: u64) {
    let floor = global_floor(requests, GLOBAL);
    let over = if floor.is_zero() {
        0.0
    } else {
        (took.as_secs_f64() / floor.as_secs_f64() - 1.0) * 100.0
    };
    println!(
        "{label}: last delivery {:.2} s after the post; floor {} s ({requests} requests at {GLOBAL}/s); {over:+.1}% over the floor; sandbox rate_limited {rate_limited}",
        took.as_secs_f64(),
        floor.as_secs(),
    );
}

/// The service measured: one instance in this process on SQLite, or several `serve`
/// processes on PostgreSQL.
enum Service {
    InProcess(Box<app::Running>),
    Processes(Vec<(Serve, tempfile::NamedTempFile)>),
}

impl Service {
    async fn start(
        processes: usize,
        t: &TestDatabase,
        sandbox: &SandboxHandle,
        client: &reqwest::Client,
    ) -> Result<Service, String> {
        if processes <= 1 {
            let settings = support::service_settings(&t.url, sandbox, OPERATOR);
            let running = app::start(&settings).await.map_err(|e| e.to_string())?;
            return Ok(Service::InProcess(Box::new(running)));
        }
        let mut started = Vec::new();
        for p in 0..processes {
            let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
            let worker = format!("fan-out-p{p}");
            let serve = Serve::start_with(
                &t.url,
                sandbox,
                "warn",
                &log,
                client,
                &[
                    ("SEATGATE_SHARD_LEASES", "true"),
                    ("SEATGATE_WORKER_ID", &worker),
                ],
            )
            .await;
            started.push((serve, log));
        }
        Ok(Service::Processes(started))
    }

    /// The admin API of the (first) instance: any process answers every route alike.
    fn api(&self) -> String {
        match self {
            Service::InProcess(running) => format!("http://{}", running.bound),
            Service::Processes(p) => p.first().map(|(s, _)| s.base.clone()).unwrap_or_default(),
        }
    }

    async fn shutdown(self) {
        match self {
            Service::InProcess(running) => running.shutdown().await,
            Service::Processes(p) => drop(p),
        }
    }
}

async fn run() -> Result<(), String> {
    let targets: u64 = std::env::var("FAN_OUT_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= ORDER_TARGETS)
        .unwrap_or(1000);
    let processes: usize = std::env::var("FAN_OUT_PROCESSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=8).contains(n))
        .unwrap_or(1);
    let shards = if processes > 1 { SHARDS } else { 1 };
    std::env::set_var(
        "SEATGATE_TEST_DATABASE",
        if processes > 1 { "postgres" } else { "sqlite" },
    );
    let t = TestDatabase::empty().await.map_err(|e| e.to_string())?;
    let sandbox = Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario(targets, shards)).map_err(|e| e.message)?),
        rate_limits: RateLimitConfig::default(),
        ..SandboxOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let service = Service::start(processes, &t, &sandbox, &client).await?;
    let api = service.api();
    if processes > 1 {
        println!("{processes} serve processes on one PostgreSQL database, {shards} shards");
    }
    let call = |path: String, body: Value| {
        client
            .post(format!("{api}{path}"))
            .bearer_auth(OPERATOR)
            .json(&body)
            .send()
    };
    let r = call(
        "/api/v1/tenants/bench/connectors".into(),
        json!({"connector_id": "c", "name": "c", "source_guild_id": SOURCE_GUILD.to_string()}),
    )
    .await
    .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("connector: {}", r.status()));
    }
    // Mappings are checked against the guilds the gateway delivered: wait for all of them
    // (the operator's guild list is every guild the bot is in).
    let start = Instant::now();
    loop {
        let listed = client
            .get(format!("{api}/api/v1/tenants/bench/guilds"))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json::<Value>()
            .await
            .map_err(|e| e.to_string())?;
        let n = listed["items"].as_array().map_or(0, Vec::len) as u64;
        if n > targets {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "the gateway delivered {n} guilds of {}",
                targets + 1
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let configure_started = Instant::now();
    let mut wanted = Vec::new();
    for i in 0..targets {
        wanted.push((BOT_SOURCE, i, "bot"));
        wanted.push((WEBHOOK_SOURCE, i, "webhook"));
        if i < ORDER_TARGETS {
            wanted.push((ORDER_SOURCE, i, "bot"));
        }
    }
    // Written 16 at a time, as a provisioning script would; each write checks its channels
    // with Discord through the same limiter the mirror uses.
    for chunk in wanted.chunks(16) {
        let writes = chunk.iter().map(|(source, i, mode)| {
            let (guild, channel) = target(*i);
            call(
                "/api/v1/tenants/bench/connectors/c/mappings".into(),
                json!({"source_channel_id": source.to_string(), "target_guild_id": guild.to_string(),
                       "target_channel_id": channel.to_string(), "delivery_mode": mode}),
            )
        });
        for r in futures_util::future::join_all(writes).await {
            let r = r.map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                let status = r.status();
                return Err(format!(
                    "mapping: {status} {}",
                    r.text().await.unwrap_or_default()
                ));
            }
        }
    }
    println!(
        "configured {} mappings over {targets} target guilds in {:.1} s (sandbox: {} requests, {} rate limited)",
        wanted.len(),
        configure_started.elapsed().as_secs_f64(),
        stat(&sandbox, "requests"),
        stat(&sandbox, "rate_limited"),
    );
    let start = Instant::now();
    while sandbox.connected_sessions() < shards as usize {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("gateway never connected".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(&sandbox, Duration::from_secs(3), Duration::from_secs(600)).await;
    let channels: Vec<u64> = (0..targets).map(|i| target(i).1).collect();
    let n = targets as u32;

    // Bot mode: one create per target.
    sandbox.reset_stats();
    let posted = snowflake_ms(post(&sandbox, BOT_SOURCE, "bot-signal")?);
    let took = last_arrival(
        &sandbox,
        &channels,
        "bot-signal",
        1,
        posted,
        Duration::from_secs(300),
    )
    .await?;
    report(
        &format!("bot mode, 1 signal to {targets} targets"),
        took,
        n,
        stat(&sandbox, "rate_limited"),
    );
    settled(&t.db, posted, took).await?;
    settle(&sandbox, Duration::from_secs(2), Duration::from_secs(120)).await;

    // Webhook mode: the first signal makes every webhook (a create and an execute each).
    sandbox.reset_stats();
    let posted = snowflake_ms(post(&sandbox, WEBHOOK_SOURCE, "hook-first")?);
    let took = last_arrival(
        &sandbox,
        &channels,
        "hook-first",
        1,
        posted,
        Duration::from_secs(300),
    )
    .await?;
    report(
        &format!("webhook mode, 1 signal to {targets} targets, webhooks to make"),
        took,
        2 * n,
        stat(&sandbox, "rate_limited"),
    );
    settle(&sandbox, Duration::from_secs(2), Duration::from_secs(120)).await;
    sandbox.reset_stats();
    let posted = snowflake_ms(post(&sandbox, WEBHOOK_SOURCE, "hook-second")?);
    let took = last_arrival(
        &sandbox,
        &channels,
        "hook-second",
        1,
        posted,
        Duration::from_secs(300),
    )
    .await?;
    report(
        &format!("webhook mode, 1 signal to {targets} targets, webhooks made"),
        took,
        n,
        stat(&sandbox, "rate_limited"),
    );
    settle(&sandbox, Duration::from_secs(2), Duration::from_secs(120)).await;

    // 20 signals within one second to 100 targets.
    sandbox.reset_stats();
    let order_channels: Vec<u64> = (0..ORDER_TARGETS).map(|i| target(i).1).collect();
    let mut first = None;
    let began = Instant::now();
    for k in 0..ORDER_SIGNALS {
        let id = post(&sandbox, ORDER_SOURCE, &format!("order {k:02}"))?;
        first.get_or_insert(snowflake_ms(id));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let posting = began.elapsed();
    let took = last_arrival(
        &sandbox,
        &order_channels,
        "order ",
        ORDER_SIGNALS,
        first.unwrap_or(0),
        Duration::from_secs(300),
    )
    .await?;
    let expected: Vec<String> = (0..ORDER_SIGNALS)
        .map(|k| format!("order {k:02}"))
        .collect();
    let out_of_order = order_channels
        .iter()
        .filter(|c| {
            let mut got = with_prefix(&sandbox, **c, "order ");
            got.sort_by_key(id_of);
            got.iter()
                .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
                != expected
        })
        .count();
    report(
        &format!(
            "{ORDER_SIGNALS} signals posted in {:.2} s to {ORDER_TARGETS} targets, bot mode (out of order on {out_of_order} targets)",
            posting.as_secs_f64()
        ),
        took,
        (ORDER_SIGNALS as u32) * ORDER_TARGETS as u32,
        stat(&sandbox, "rate_limited"),
    );
    service.shutdown().await;
    sandbox.shutdown().await;
    Ok(())
}

fn main() {
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    std::env::set_var("no_proxy", "127.0.0.1,localhost");
    if let Err(err) = app::actix_system().block_on(run()) {
        eprintln!("fan_out: {err}");
        std::process::exit(1);
    }
}
