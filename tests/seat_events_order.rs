//! Random member, role and overwrite changes fired at the sandbox in quick bursts, received by
//! the unmodified serenity client of the whole service (which runs each event handler call in
//! a task of its own, so handlers can run in another order than Discord's), end exactly at
//! the count the sandbox's own permission calculator gives from scratch.

mod mirror_support;

use std::time::{Duration, Instant};

use mirror_support::{no_proxy, service_settings, start_service, Admin};
use rand::{rngs::StdRng, Rng, SeedableRng};
use reqwest::Method;
use seatgate::{
    sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
    store::testing::TestDatabase,
};
use serde_json::{json, Value};

const OPERATOR: &str = "order-operator";
const BOT: u64 = 990_000_000_000_000_001;
const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
const SOURCE_CHANNEL: u64 = 830_000_000_000_000_001;
const GUILD: u64 = 840_000_000_000_000_001;
const OWNER: u64 = 701_000_000_000_000_001;
const FEED: u64 = 860_000_000_000_000_001;
const BOT_ROLE: u64 = 850_000_000_000_000_000;
/// Role ids `ROLE + i`; the roles exist or not as the run goes.
const ROLE: u64 = 850_000_000_000_000_100;
const ROLES: u64 = 5;
const USER: u64 = 720_000_000_000_000_000;
const USERS: u64 = 12;
const VIEW: u64 = 1 << 10;
const SEND: u64 = 1 << 11;

fn scenario() -> Scenario {
    let roles: Vec<Value> = std::iter::once(json!({"id": GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | SEND).to_string()}))
        .chain(std::iter::once(json!({"id": BOT_ROLE.to_string(), "name": "seatgate", "permissions": (VIEW | SEND).to_string(), "position": 9})))
        .chain((0..ROLES).map(|i| json!({"id": (ROLE + i).to_string(), "name": format!("r{i}"), "permissions": "0", "position": 1 + i})))
        .collect();
    Scenario::from_json(&json!({
        "bot": {"id": BOT.to_string(), "username": "seatgate"},
        "guilds": [
            {"id": SOURCE_GUILD.to_string(), "name": "Provider", "owner_id": "700000000000000001",
             "channels": [{"id": SOURCE_CHANNEL.to_string(), "name": "announcements", "type": 0}]},
            {"id": GUILD.to_string(), "name": "Customer", "owner_id": OWNER.to_string(),
             "roles": roles,
             "channels": [{"id": FEED.to_string(), "name": "signals", "type": 0, "permission_overwrites": [
                {"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": VIEW.to_string()},
                {"id": ROLE.to_string(), "type": 0, "allow": VIEW.to_string(), "deny": "0"},
                {"id": BOT_ROLE.to_string(), "type": 0, "allow": (VIEW | SEND).to_string(), "deny": "0"}
             ]}],
             "members": [
                {"user": {"id": OWNER.to_string(), "username": "owner"}, "roles": []},
                {"user": {"id": BOT.to_string(), "username": "seatgate", "bot": true}, "roles": [BOT_ROLE.to_string()]}
             ]}
        ]
    }))
    .expect("scenario")
}

/// One random change; refused ones (a role that is gone, a member not there) change nothing
/// in the sandbox and are skipped, as Discord would refuse them.
fn random_change(sandbox: &SandboxHandle, rng: &mut StdRng) {
    let user = USER + rng.random_range(0..USERS);
    let role = ROLE + rng.random_range(0..ROLES);
    let some_roles = |rng: &mut StdRng| -> Vec<String> {
        (0..ROLES)
            .filter(|_| rng.random_bool(0.3))
            .map(|i| (ROLE + i).to_string())
            .collect()
    };
    let _ = match rng.random_range(0..110) {
        // The pairs whose order decides the outcome: a join and its leave, two role
        // changes, back to back.
        100..=104 => {
            let roles = some_roles(rng);
            let _ = sandbox.add_member(
                GUILD,
                &json!({"user": {"id": user.to_string(), "username": format!("u{user}")}, "roles": roles}),
            );
            sandbox.remove_member(GUILD, user)
        }
        105..=109 => {
            let _ = sandbox.update_member(GUILD, user, &json!({"roles": [ROLE.to_string()]}));
            sandbox.update_member(GUILD, user, &json!({"roles": []}))
        }
        0..=29 => {
            let roles = some_roles(rng);
            sandbox.add_member(
                GUILD,
                &json!({"user": {"id": user.to_string(), "username": format!("u{user}")}, "roles": roles}),
            )
        }
        30..=54 => sandbox.remove_member(GUILD, user),
        55..=74 => {
            let roles = some_roles(rng);
            sandbox.update_member(GUILD, user, &json!({"roles": roles}))
        }
        75..=81 => sandbox.update_role(
            GUILD,
            role,
            &json!({"permissions": if rng.random_bool(0.5) { VIEW } else { 0 }.to_string()}),
        ),
        82..=85 => sandbox.delete_role(GUILD, role),
        86..=89 => sandbox.create_role(
            GUILD,
            &json!({"id": role.to_string(), "name": "again", "permissions": "0"}),
        ),
        _ => {
            let (allow, deny) = if rng.random_bool(0.5) {
                (VIEW, 0)
            } else {
                (0, VIEW)
            };
            if rng.random_bool(0.2) {
                sandbox.delete_overwrite(FEED, role)
            } else {
                sandbox.put_overwrite(
                    FEED,
                    role,
                    &json!({"type": 0, "allow": allow.to_string(), "deny": deny.to_string()}),
                )
            }
        }
    };
}

/// The auditor's counted members and whether its index is complete (none yet: 409).
async fn seat_ids(admin: &Admin) -> (Vec<u64>, bool) {
    let resp = admin
        .client
        .get(format!(
            "{}/api/v1/tenants/acme/connectors/signals/servers/{GUILD}/seats?limit=500",
            admin.api
        ))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("admin API reachable");
    if !resp.status().is_success() {
        return (Vec::new(), false);
    }
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let ids = v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["user_id"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    (ids, v["complete"].as_bool().unwrap_or(false))
}

/// On the service's own runtime (multi-threaded, as `serve` runs it): that is where serenity's
/// handler tasks can overtake each other.
#[test]
fn random_event_bursts_end_at_the_from_scratch_count() {
    seatgate::app::actix_system().block_on(bursts());
}

async fn bursts() {
    no_proxy();
    let sandbox = Sandbox::start(SandboxOptions {
        scenario: Some(scenario()),
        rate_limits: RateLimitConfig::disabled(),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox");
    let t = TestDatabase::new().await.expect("database");
    let (running, admin) = start_service(&service_settings(&t, &sandbox, OPERATOR), OPERATOR).await;
    admin.wait_up(Duration::from_secs(20)).await;
    admin
        .call(
            Method::POST,
            "/api/v1/tenants/acme/connectors",
            Some(json!({"connector_id": "signals", "name": "Signals", "source_guild_id": SOURCE_GUILD.to_string()})),
        )
        .await;
    admin
        .call(
            Method::POST,
            "/api/v1/tenants/acme/connectors/signals/mappings",
            Some(json!({"source_channel_id": SOURCE_CHANNEL.to_string(), "target_guild_id": GUILD.to_string(),
                        "target_channel_id": FEED.to_string(), "delivery_mode": "bot"})),
        )
        .await;
    admin
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/acme/connectors/signals/servers/{GUILD}"),
            Some(mirror_support::server_config(
                json!({"seat_limit": 1_000, "enforcement_mode": "enforce"}),
            )),
        )
        .await;

    let seed: u64 = std::env::var("SEATGATE_TEST_ORDER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..6 {
        // A burst: everything at once, as a busy guild's gateway delivers it.
        for _ in 0..120 {
            random_change(&sandbox, &mut rng);
        }
        let truth = sandbox.members_who_can_view(FEED).unwrap();
        let start = Instant::now();
        loop {
            let (ids, complete) = seat_ids(&admin).await;
            if complete && ids == truth {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "seed {seed} round {round}: the auditor counts {} ({ids:?}), the guild has {} ({truth:?})",
                ids.len(),
                truth.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "seed {seed} round {round}: {} seats, as the sandbox counts",
            truth.len()
        );
    }
    running.shutdown().await;
    sandbox.shutdown().await;
}
