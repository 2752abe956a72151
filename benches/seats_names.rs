//! What an admin meets opening the counted members of a large server, names included:
//! `cargo bench --bench seats_names`.
//!
//! The sandbox (in this process, Discord's default rate limits on) serves a guild of
//! `SEATS_BENCH_MEMBERS` members (default 100,000, every one counted); `seatgate serve` runs as
//! its own fresh process. Once the count is in, the bench times `GET .../seats` pages of 100
//! with their names: the first (names read over REST), then a walk of `SEATS_BENCH_PAGES`
//! pages (default 200: 20,000 rows, twice what the name cache holds), then a search by name.
//! The serve process's resident memory is read before the first page and after the walk.

mod support;

use std::time::{Duration, Instant};

use support::{rss_kib, Serve, OPERATOR};

use seatgate::{
    sandbox::{RateLimitConfig, Sandbox, SandboxOptions, Scenario},
    store::testing::{seed, TestDatabase},
};
use serde_json::{json, Value};

const BOT: u64 = 990_000_000_000_000_001;
const GUILD: u64 = 840_000_000_000_000_001;
const OWNER: u64 = 700_000_000_000_000_001;
const CHANNEL: u64 = 860_000_000_000_000_001;
const VIEW: u64 = 1 << 10;
const FIRST_MEMBER: u64 = 600_000_000_000_000_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn timed_get(client: &reqwest::Client, url: &str) -> (f64, Value) {
    let t = Instant::now();
    let resp = client
        .get(url)
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("seats answered");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let v: Value = resp.json().await.expect("seats JSON");
    (t.elapsed().as_secs_f64() * 1000.0, v)
}

fn named(page: &Value) -> usize {
    page["items"]
        .as_array()
        .map(|a| a.iter().filter(|m| m["username"].is_string()).count())
        .unwrap_or(0)
}

fn main() {
    let members = env_u64("SEATS_BENCH_MEMBERS", 100_000);
    let pages = env_u64("SEATS_BENCH_PAGES", 200);
    let system = seatgate::app::actix_system();
    system.block_on(async {
        std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
        let scenario = Scenario::from_json(&json!({
            "bot": {"id": BOT.to_string(), "username": "seatgate"},
            "guilds": [{
                "id": GUILD.to_string(), "name": "Large", "owner_id": OWNER.to_string(),
                "roles": [{"id": GUILD.to_string(), "name": "@everyone", "permissions": VIEW.to_string(), "position": 0}],
                "channels": [{"id": CHANNEL.to_string(), "name": "signals", "type": 0, "permission_overwrites": []}],
                "members": [{"user": {"id": OWNER.to_string(), "username": "owner"}, "roles": []}]
            }]
        }))
        .expect("scenario");
        let sandbox = Sandbox::start(SandboxOptions {
            scenario: Some(scenario),
            rate_limits: RateLimitConfig::default(),
            ..Default::default()
        })
        .await
        .expect("sandbox");
        sandbox
            .bulk_add_members(GUILD, FIRST_MEMBER, members)
            .expect("members");
        let expected = members + 1;

        let t = TestDatabase::new().await.expect("database");
        let owner = ("bench", "c");
        seed::connector(&t.db, "bench", "c", 1).await.expect("connector");
        seed::mapping(&t.db, owner, 2, (GUILD, CHANNEL), "bot")
            .await
            .expect("mapping");
        seed::enforced_server(&t.db, owner, GUILD, 10_000_000, None)
            .await
            .expect("server config");

        let log = tempfile::NamedTempFile::new().expect("log file");
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let serve = Serve::start(&t.url, &sandbox, "warn", &log, &client).await;
        let server = format!("/api/v1/tenants/bench/connectors/c/servers/{GUILD}");
        serve
            .wait_counted(&client, &server, expected, Duration::from_secs(600))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(serve.pid());
        let seats = format!("{}{server}/seats", serve.base);

        let (first_ms, first) = timed_get(&client, &format!("{seats}?limit=100")).await;
        assert_eq!(named(&first), 100, "the first page has its names");
        let (again_ms, _) = timed_get(&client, &format!("{seats}?limit=100")).await;

        let mut times = Vec::new();
        let mut unnamed = 0;
        let mut after = first["next_after"].as_str().map(str::to_owned);
        for _ in 0..pages {
            let Some(a) = after.take() else { break };
            let (ms, page) = timed_get(&client, &format!("{seats}?limit=100&after={a}")).await;
            unnamed += page["items"].as_array().map_or(0, |x| x.len()) - named(&page);
            times.push(ms);
            after = page["next_after"].as_str().map(str::to_owned);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after_walk = rss_kib(serve.pid());
        times.sort_by(|a, b| a.total_cmp(b));

        let query = format!("member{}", FIRST_MEMBER + members / 2);
        let (search_ms, found) = timed_get(&client, &format!("{seats}?q={query}")).await;
        assert_eq!(found["matched"], json!(1), "{found}");

        println!("seats with names: {members}-member guild, {expected} counted, sandbox limits on, fresh serve process");
        println!(
            "first page of 100 with names: {first_ms:.1} ms (names read over REST); the same page again: {again_ms:.1} ms (cached)"
        );
        println!(
            "walk of {} pages of 100 (every 10th reads the next 1,000 names over REST): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; rows without names: {unnamed}",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times.last().copied().unwrap_or(f64::NAN)
        );
        println!("search by name (`q={query}`, Discord's member search over {members} members): {search_ms:.1} ms");
        println!(
            "resident memory of the serve process: {:.1} MiB before the first page, {:.1} MiB after {} rows named ({:+.1} MiB)",
            before as f64 / 1024.0,
            after_walk as f64 / 1024.0,
            (times.len() + 1) * 100,
            (after_walk as f64 - before as f64) / 1024.0
        );
        drop(serve);
        sandbox.shutdown().await;
    });
}
