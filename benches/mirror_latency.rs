//! Mirroring figures, printed: event-to-delivery latency p50/p99 at 200 messages/s over 20
//! targets (the whole service against the sandbox, its rate limits off, the service's limiter
//! in the path with a global budget raised to fit) on SQLite and PostgreSQL, how long after
//! Discord's answer each job is settled (done, link written) at that rate, the maximum
//! sustained jobs/s (a burst drained), and the gate decision time.
//!
//! `cargo bench --bench mirror_latency`. PostgreSQL comes from `SEATGATE_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); `MIRROR_BENCH_BACKENDS=sqlite` skips it.
//! `MIRROR_BENCH_NOISE=1` adds 1,000 wrong-token requests/s and a `/metrics` scrape per second
//! during the steady load.
//! Latency is read from Discord snowflakes: a target message's id carries the millisecond it
//! was created, the source message's id the millisecond it was posted.

mod support;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use sea_orm::ConnectionTrait;
use seatgate::{
    app,
    config::Settings,
    domain::{
        freshness::FreshnessWindows,
        gate::{self, EnforcementMode, JobKind, OverrideMode, ServerPolicy, SnapshotView},
    },
    sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
    store::{now_ms, testing::TestDatabase},
};
use serde_json::{json, Value};

const TARGETS: u64 = 20;
const RATE: u64 = 200;
const STEADY_SECS: u64 = 5;
const BURST: usize = 300;
const BOT: u64 = 990_000_000_000_000_001;
const PROVIDER: u64 = 700_000_000_000_000_001;
const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
const SOURCE_CHANNEL: u64 = 830_000_000_000_000_001;
const OPERATOR: &str = "bench-operator";
const VIEW: u64 = 1 << 10;
const SEND: u64 = 1 << 11;
const HISTORY: u64 = 1 << 16;

fn target(i: u64) -> (u64, u64) {
    (840_000_000_000_000_000 + i, 860_000_000_000_000_000 + i)
}

fn scenario() -> Value {
    let mut guilds = vec![json!({
        "id": SOURCE_GUILD.to_string(), "name": "Provider", "owner_id": PROVIDER.to_string(),
        "roles": [{"id": SOURCE_GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | HISTORY).to_string(), "position": 0}],
        "channels": [{"id": SOURCE_CHANNEL.to_string(), "name": "announcements", "type": 0}],
        "members": [{"user": {"id": PROVIDER.to_string(), "username": "provider"}, "roles": []}]
    })];
    for i in 0..TARGETS {
        let (guild, channel) = target(i);
        guilds.push(json!({
            "id": guild.to_string(), "name": format!("Customer {i}"), "owner_id": (701_000_000_000_000_000 + i).to_string(),
            "roles": [{"id": guild.to_string(), "name": "@everyone", "permissions": (VIEW | SEND | HISTORY).to_string(), "position": 0}],
            "channels": [{"id": channel.to_string(), "name": "signals", "type": 0}],
            "members": [{"user": {"id": (701_000_000_000_000_000 + i).to_string(), "username": "owner"}, "roles": []}]
        }));
    }
    json!({"bot": {"id": BOT.to_string(), "username": "seatgate"}, "guilds": guilds})
}

fn snowflake_ms(id: u64) -> i64 {
    (id >> 22) as i64
}

fn post(sandbox: &SandboxHandle, content: &str) -> Result<u64, String> {
    let m = sandbox
        .post_message(SOURCE_CHANNEL, &json!({"author": {"id": PROVIDER.to_string(), "username": "provider"}, "content": content}))
        .map_err(|e| format!("{e:?}"))?;
    m["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "no id".to_owned())
}

fn delivered(sandbox: &SandboxHandle, prefix: &str) -> Vec<Vec<Value>> {
    (0..TARGETS)
        .map(|i| {
            sandbox
                .messages(target(i).1)
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m["content"].as_str().is_some_and(|c| c.starts_with(prefix)))
                .collect()
        })
        .collect()
}

/// Waits until every target channel holds `n` more messages than `before`, polling a count
/// (building every message's JSON on each poll would steal the CPU being measured), then
/// checks the contents once.
async fn wait_all(
    sandbox: &SandboxHandle,
    prefix: &str,
    before: &[usize],
    n: usize,
    limit: Duration,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let counted = (0..TARGETS)
            .zip(before)
            .all(|(i, b)| sandbox.message_count(target(i).1) >= b + n);
        if counted && delivered(sandbox, prefix).iter().all(|c| c.len() >= n) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn counts(sandbox: &SandboxHandle) -> Vec<usize> {
    (0..TARGETS)
        .map(|i| sandbox.message_count(target(i).1))
        .collect()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn backend(name: &str) -> Result<(), String> {
    std::env::set_var(
        "SEATGATE_TEST_DATABASE",
        if name == "postgres" {
            "postgres"
        } else {
            "sqlite"
        },
    );
    let t = TestDatabase::empty().await.map_err(|e| e.to_string())?;
    let sandbox = Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario()).map_err(|e| e.message)?),
        rate_limits: RateLimitConfig::disabled(),
        ..SandboxOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let settings = Settings {
        // 200 messages/s to 20 targets is 4,000 requests/s: far past Discord's 50/s for one
        // token, so the limiter (still in every request's path) is given room for it.
        discord_global_rate: 100_000,
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
        "/api/v1/tenants/bench/connectors".into(),
        json!({"connector_id": "c", "name": "c", "source_guild_id": SOURCE_GUILD.to_string()}),
    )
    .await
    .map_err(|e| e.to_string())?;
    for i in 0..TARGETS {
        let (guild, channel) = target(i);
        let r = call(
            "/api/v1/tenants/bench/connectors/c/mappings".into(),
            json!({"source_channel_id": SOURCE_CHANNEL.to_string(), "target_guild_id": guild.to_string(),
                   "target_channel_id": channel.to_string(), "delivery_mode": "bot"}),
        )
        .await
        .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("mapping: {}", r.status()));
        }
    }
    let start = Instant::now();
    while sandbox.connected_sessions() < 1 {
        if start.elapsed() > Duration::from_secs(20) {
            return Err("gateway never connected".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Warm up: one message through every target.
    let before = counts(&sandbox);
    post(&sandbox, "warm")?;
    if !wait_all(&sandbox, "warm", &before, 1, Duration::from_secs(20)).await {
        return Err("warm-up message not delivered".into());
    }

    // Steady load: RATE messages/s for STEADY_SECS (`MIRROR_BENCH_RATE` overrides the rate,
    // to see the latency without load).
    let rate = std::env::var("MIRROR_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|r| *r > 0)
        .unwrap_or(RATE);
    let total = (rate * STEADY_SECS) as usize;
    let mut sources = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // `MIRROR_BENCH_NOISE=1`: meanwhile 1,000 requests/s with wrong bearer tokens and a
    // `/metrics` scrape every second, as a scanner and Prometheus would send.
    let noise = std::env::var("MIRROR_BENCH_NOISE").is_ok_and(|v| v == "1");
    let stop_noise = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise_task = noise.then(|| {
        let (client, api, stop) = (client.clone(), api.clone(), stop_noise.clone());
        tokio::spawn(async move { make_noise(client, api, stop).await })
    });
    let before = counts(&sandbox);
    let began = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let content = format!("steady {i:05}");
        let id = post(&sandbox, &content)?;
        sources.insert(content, id);
    }
    let posting = began.elapsed();
    if !wait_all(&sandbox, "steady", &before, total, Duration::from_secs(60)).await {
        return Err("steady load not fully delivered within 60 s".into());
    }
    stop_noise.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(task) = noise_task {
        let (wrong, scrapes, elapsed) = task.await.map_err(|e| e.to_string())?;
        println!(
            "{name}: noise during the steady load: {wrong} wrong-token requests ({:.0}/s, all 401) and {scrapes} /metrics scrapes",
            wrong as f64 / elapsed.as_secs_f64()
        );
    }
    let mut lat: Vec<i64> = Vec::with_capacity(total * TARGETS as usize);
    for channel in delivered(&sandbox, "steady") {
        for m in channel {
            let id: u64 = m["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
            let content = m["content"].as_str().unwrap_or_default();
            if let Some(src) = sources.get(content) {
                lat.push(snowflake_ms(id) - snowflake_ms(*src));
            }
        }
    }
    lat.sort_unstable();
    println!(
        "{name}: {} deliveries ({total} messages posted in {:.2}s = {:.0}/s, x {TARGETS} targets): event-to-delivery p50 {} ms, p99 {} ms, max {} ms",
        lat.len(),
        posting.as_secs_f64(),
        total as f64 / posting.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(-1)
    );

    // Where the time goes: the job rows say when each event was written (created_at) and
    // when its job was claimed the last time (updated_at of a done row is its settle).
    let mut ingest: Vec<i64> = Vec::new();
    let ids: std::collections::HashSet<u64> = sources.values().copied().collect();
    let conn = running.db.conn();
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT source_message_id, created_at FROM mirror_jobs WHERE kind = 'send'",
        ))
        .await
        .map_err(|e| e.to_string())?;
    for row in rows {
        let (Ok(src), Ok(created)) = (
            row.try_get_by_index::<i64>(0),
            row.try_get_by_index::<i64>(1),
        ) else {
            continue;
        };
        let src = seatgate::domain::snowflake::from_db(src);
        if ids.contains(&src) {
            ingest
                .push(created - snowflake_ms(src) - seatgate::domain::snowflake::DISCORD_EPOCH_MS);
        }
    }
    ingest.sort_unstable();
    println!(
        "{name}:   of which post-to-job-written p50 {} ms, p99 {} ms, max {} ms",
        percentile(&ingest, 0.50),
        percentile(&ingest, 0.99),
        ingest.last().copied().unwrap_or(-1)
    );

    // Settling: from a copy's creation on Discord (the millisecond in its id) to its job
    // written done, in the same write as its link.
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT l.source_message_id, l.target_message_id, j.finished_at \
             FROM mirror_jobs j JOIN mirror_message_links l \
             ON l.mapping_id = j.mapping_id AND l.source_message_id = j.source_message_id \
             WHERE j.kind = 'send' AND j.status = 'done'",
        ))
        .await
        .map_err(|e| e.to_string())?;
    let mut settle: Vec<i64> = Vec::new();
    for row in rows {
        let (Ok(src), Ok(copy), Ok(Some(done))) = (
            row.try_get_by_index::<i64>(0),
            row.try_get_by_index::<i64>(1),
            row.try_get_by_index::<Option<i64>>(2),
        ) else {
            continue;
        };
        if ids.contains(&seatgate::domain::snowflake::from_db(src)) {
            let copy = seatgate::domain::snowflake::from_db(copy);
            settle.push(done - snowflake_ms(copy) - seatgate::domain::snowflake::DISCORD_EPOCH_MS);
        }
    }
    settle.sort_unstable();
    println!(
        "{name}:   delivery-to-settled (job done, link written) over {} jobs at {} deliveries/s: p50 {} ms, p99 {} ms, max {} ms",
        settle.len(),
        rate * TARGETS,
        percentile(&settle, 0.50),
        percentile(&settle, 0.99),
        settle.last().copied().unwrap_or(-1)
    );

    // Maximum sustained: a burst posted at once, drained.
    let before = counts(&sandbox);
    let began = Instant::now();
    for i in 0..BURST {
        post(&sandbox, &format!("burst {i:05}"))?;
    }
    if !wait_all(&sandbox, "burst", &before, BURST, Duration::from_secs(90)).await {
        return Err("burst not fully delivered within 90 s".into());
    }
    let took = began.elapsed();
    println!(
        "{name}: burst of {BURST} messages x {TARGETS} targets = {} jobs drained in {:.2}s: {:.0} jobs/s",
        BURST * TARGETS as usize,
        took.as_secs_f64(),
        (BURST * TARGETS as usize) as f64 / took.as_secs_f64()
    );
    running.shutdown().await;
    sandbox.shutdown().await;
    drop(t);
    Ok(())
}

/// 1,000 wrong-token requests per second and a `/metrics` scrape per second until `stop`;
/// answers the wrong-token requests answered 401, the scrapes and the time it ran.
async fn make_noise(
    client: reqwest::Client,
    api: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u64, u64, Duration) {
    let began = Instant::now();
    let wrong = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut scrapes = 0u64;
    let mut last_scrape = Instant::now() - Duration::from_secs(1);
    let mut n = 0u64;
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (http, url, wrong) = (
            client.clone(),
            format!("{api}/api/v1/tenants/bench/connectors"),
            wrong.clone(),
        );
        tokio::spawn(async move {
            let r = http
                .get(url)
                .bearer_auth(format!("sgt_wrong_{n:064}"))
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED) {
                wrong.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(permit);
        });
        if last_scrape.elapsed() >= Duration::from_secs(1) {
            last_scrape = Instant::now();
            if client
                .get(format!("{api}/metrics"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                scrapes += 1;
            }
        }
    }
    (
        wrong.load(std::sync::atomic::Ordering::Relaxed),
        scrapes,
        began.elapsed(),
    )
}

fn gate_bench() {
    let windows = FreshnessWindows::default();
    let policy = ServerPolicy {
        mode: EnforcementMode::Enforce,
        override_mode: OverrideMode::None,
        stale_grace: false,
    };
    let now = now_ms();
    let snapshot = SnapshotView {
        seats_used: 40,
        seat_limit: 50,
        checked_at_ms: now - 10_000,
        audit_failed: false,
    };
    let n = 20_000_000u64;
    let start = Instant::now();
    let mut allowed = 0u64;
    for i in 0..n {
        let d = gate::decide(
            black_box(false),
            black_box(Some(&policy)),
            black_box(Some(&snapshot)),
            black_box(JobKind::Send),
            black_box(now + (i & 1023) as i64),
            black_box(&windows),
        );
        if !d.enqueue_audit() {
            allowed += 1;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    black_box(allowed);
    println!(
        "gate: decide (enforce, fresh snapshot under the limit) {ns:.1} ns per call over {n} calls"
    );
}

fn main() {
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    std::env::set_var("no_proxy", "127.0.0.1,localhost");
    gate_bench();
    let backends =
        std::env::var("MIRROR_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut failed = false;
    for name in backends.split(',') {
        let result = app::actix_system().block_on(backend(name));
        if let Err(e) = result {
            eprintln!("{name}: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
