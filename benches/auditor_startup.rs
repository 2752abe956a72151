//! How long the service takes to index a large guild at start, and the resident memory of the
//! whole service process per member: `cargo bench --bench auditor_startup`.
//!
//! The sandbox (in this process) serves a guild of `AUDITOR_BENCH_MEMBERS` members (default
//! 1,000,000; a tenth can see the mapped channel) as Discord does a large one: GUILD_CREATE
//! without members. `seatgate serve` runs as its own process, as an operator runs it; its
//! auditor pages the member list over REST and builds the live index. Its resident memory
//! (`VmRSS` of `/proc/<pid>/status`) is read when it first answers `/healthz` and once the
//! count is in, and divided by the members.

mod support;

use std::time::Duration;

use support::{rss_kib, Serve};

use seatgate::{
    sandbox::{RateLimitConfig, Sandbox, SandboxOptions, Scenario},
    store::testing::{seed, TestDatabase},
};
use serde_json::json;

const BOT: u64 = 990_000_000_000_000_001;
const GUILD: u64 = 840_000_000_000_000_001;
const OWNER: u64 = 700_000_000_000_000_001;
const CHANNEL: u64 = 860_000_000_000_000_001;
const SUBSCRIBER: u64 = 850_000_000_000_000_001;
const VIEW: u64 = 1 << 10;

fn main() {
    let members: u64 = std::env::var("AUDITOR_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let system = seatgate::app::actix_system();
    system.block_on(async {
        std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
        let scenario = Scenario::from_json(&json!({
            "bot": {"id": BOT.to_string(), "username": "seatgate"},
            "guilds": [{
                "id": GUILD.to_string(), "name": "Large", "owner_id": OWNER.to_string(),
                "roles": [
                    {"id": GUILD.to_string(), "name": "@everyone", "permissions": VIEW.to_string(), "position": 0},
                    {"id": SUBSCRIBER.to_string(), "name": "subscriber", "permissions": "0", "position": 1}
                ],
                "channels": [{"id": CHANNEL.to_string(), "name": "signals", "type": 0, "permission_overwrites": [
                    {"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": VIEW.to_string()},
                    {"id": SUBSCRIBER.to_string(), "type": 0, "allow": VIEW.to_string(), "deny": "0"}
                ]}],
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
        let subscribers = members / 10;
        sandbox
            .bulk_add_members_with_roles(GUILD, 600_000_000_000_000_000, subscribers, &[SUBSCRIBER])
            .expect("subscribers");
        sandbox
            .bulk_add_members(GUILD, 610_000_000_000_000_000, members - subscribers)
            .expect("members");
        let expected = subscribers + 1;

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
        let serve = Serve::start(
            &t.url,
            &sandbox,
            "warn,seatgate::actors::seat_auditor=info",
            &log,
            &client,
        )
        .await;
        let pid = serve.pid();
        let at_start = rss_kib(pid);
        serve
            .wait_counted(
                &client,
                &format!("/api/v1/tenants/bench/connectors/c/servers/{GUILD}"),
                expected,
                Duration::from_secs(600),
            )
            .await;
        let took = serve.started.elapsed();
        // Let the allocator settle the last page's buffers.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let indexed = rss_kib(pid);
        println!(
            "auditor startup: {members}-member guild indexed ({expected} seats) {:.2} s after serve started",
            took.as_secs_f64()
        );
        println!(
            "resident memory of the seatgate serve process: {:.1} MiB when it first answered, {:.1} MiB with the guild indexed",
            at_start as f64 / 1024.0,
            indexed as f64 / 1024.0
        );
        println!(
            "bytes per member of the whole process: {:.0} (all of it), {:.0} (grown while indexing)",
            indexed as f64 * 1024.0 / members as f64,
            indexed.saturating_sub(at_start) as f64 * 1024.0 / members as f64
        );
        drop(serve);
        // The recount's own account: CPU spent building the index from the pages, and the
        // time from the last page to the count published.
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "[seat-audit] recount done")
        {
            let f = &line;
            println!(
                "recount path: {} members paged over REST in {} ms; the index built from the pages in {:.1} ms of CPU (off the actors' thread, page by page); {:.2} ms from the last page to the count applied",
                f["members"], f["elapsed_ms"], f["index_build_ms"].as_f64().unwrap_or(f64::NAN),
                f["after_last_page_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
        sandbox.shutdown().await;
    });
}
