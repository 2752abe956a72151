//! How long the service takes to index a 100,000-member guild at start, and the resident
//! memory that costs: `cargo bench --bench auditor_startup`.
//!
//! The sandbox serves the guild as Discord does a large one (GUILD_CREATE without members);
//! the auditor pages the member list over REST and builds the live index.

use std::time::{Duration, Instant};

use seatgate::{
    config::{Secret, Settings},
    sandbox::{RateLimitConfig, Sandbox, SandboxOptions, Scenario},
    store::{
        seat_audit::SeatAuditStore,
        testing::{seed, TestDatabase},
    },
};
use serde_json::json;

const BOT: u64 = 990_000_000_000_000_001;
const GUILD: u64 = 840_000_000_000_000_001;
const OWNER: u64 = 700_000_000_000_000_001;
const CHANNEL: u64 = 860_000_000_000_000_001;
const MEMBERS: u64 = 100_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

async fn configure(t: &TestDatabase) {
    let owner = ("bench", "c");
    seed::connector(&t.db, "bench", "c", 1)
        .await
        .expect("connector");
    seed::mapping(&t.db, owner, 2, (GUILD, CHANNEL), "bot")
        .await
        .expect("mapping");
    seed::enforced_server(&t.db, owner, GUILD, 200_000, None)
        .await
        .expect("server config");
}

fn main() {
    let system = seatgate::app::actix_system();
    system.block_on(async {
        let scenario = Scenario::from_json(&json!({
            "bot": {"id": BOT.to_string(), "username": "seatgate"},
            "guilds": [{
                "id": GUILD.to_string(), "name": "Large", "owner_id": OWNER.to_string(),
                "roles": [{"id": GUILD.to_string(), "name": "@everyone", "permissions": "66560", "position": 0}],
                "channels": [{"id": CHANNEL.to_string(), "name": "signals", "type": 0, "permission_overwrites": []}],
                "members": [{"user": {"id": OWNER.to_string(), "username": "owner"}, "roles": []}]
            }]
        }))
        .expect("scenario");
        let sandbox = Sandbox::start(SandboxOptions {
            scenario: Some(scenario),
            rate_limits: RateLimitConfig::disabled(),
            ..Default::default()
        })
        .await
        .expect("sandbox");
        sandbox.bulk_add_members(GUILD, 600_000_000_000_000_000, MEMBERS).expect("members");
        let t = TestDatabase::new().await.expect("database");
        configure(&t).await;
        let settings = Settings {
            database_url: t.url.clone(),
            bind: "127.0.0.1:0".parse().expect("bind"),
            discord_token: Some(Secret::new(sandbox.bot_token())),
            discord_api_url: sandbox.api_url().to_owned(),
            ..Settings::default()
        };
        let before = rss_kib();
        let started = Instant::now();
        let running = seatgate::app::start(&settings).await.expect("service");
        let store = SeatAuditStore::new(t.db.clone());
        let expected = MEMBERS + 1;
        loop {
            let snaps = store.snapshots().await.expect("snapshots");
            if snaps.iter().any(|(_, s)| s.count.seats_used == expected) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "not indexed within 300 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        let after = rss_kib();
        println!(
            "auditor startup: {MEMBERS}-member guild indexed ({expected} seats) {:.2} s after start; resident memory +{:.1} MiB ({:.0} bytes per member, serenity's cache and the REST pages included)",
            took.as_secs_f64(),
            after.saturating_sub(before) as f64 / 1024.0,
            after.saturating_sub(before) as f64 * 1024.0 / MEMBERS as f64
        );
        running.shutdown().await;
        sandbox.shutdown().await;
    });
}
