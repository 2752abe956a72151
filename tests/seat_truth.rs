//! Seat truth under the conditions a production bot meets on its first day, end to end on the
//! sandbox: a guild too large to come with its members, restarted while over its limit, with
//! members joining and leaving while its member list is still arriving.

mod mirror_support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mirror_support::{no_proxy, service_settings, start_service, until, Admin};
use reqwest::Method;
use sea_orm::EntityTrait;
use seatgate::{
    sandbox::{Fault, RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
    store::testing::TestDatabase,
};
use serde_json::{json, Value};

const OPERATOR: &str = "seat-truth-operator";
const BOT: u64 = 990_000_000_000_000_001;
const PROVIDER: u64 = 700_000_000_000_000_001;
const SOURCE_GUILD: u64 = 810_000_000_000_000_001;
const SOURCE_CHANNEL: u64 = 830_000_000_000_000_001;
const GUILD: u64 = 840_000_000_000_000_001;
const OWNER: u64 = 701_000_000_000_000_001;
const SIGNALS: u64 = 860_000_000_000_000_001;
const NOTICES: u64 = 860_000_000_000_000_002;
const SUBSCRIBER: u64 = 850_000_000_000_000_001;
const BOT_ROLE: u64 = 850_000_000_000_000_002;
const FIRST_SUBSCRIBER: u64 = 600_000_000_000_000_000;
const FIRST_VISITOR: u64 = 650_000_000_000_000_000;
const VIEW: u64 = 1 << 10;
const SEND: u64 = 1 << 11;
const HISTORY: u64 = 1 << 16;
const WEBHOOKS: u64 = 1 << 29;

/// The customer guild: #signals is private to subscribers (and the bot), #seat-notices is
/// open. The owner and 1,999 subscribers see #signals (2,000 seats); 1,000 visitors do not.
fn scenario() -> Scenario {
    Scenario::from_json(&json!({
        "bot": {"id": BOT.to_string(), "username": "seatgate"},
        "guilds": [
            {"id": SOURCE_GUILD.to_string(), "name": "Provider", "owner_id": PROVIDER.to_string(),
             "roles": [{"id": SOURCE_GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | HISTORY).to_string()}],
             "channels": [{"id": SOURCE_CHANNEL.to_string(), "name": "announcements", "type": 0}],
             "members": [{"user": {"id": PROVIDER.to_string(), "username": "provider"}, "roles": []}]},
            {"id": GUILD.to_string(), "name": "Alpha Traders", "owner_id": OWNER.to_string(),
             "roles": [
                {"id": GUILD.to_string(), "name": "@everyone", "permissions": (VIEW | SEND | HISTORY).to_string()},
                {"id": SUBSCRIBER.to_string(), "name": "subscriber", "permissions": "0", "position": 1},
                {"id": BOT_ROLE.to_string(), "name": "seatgate", "permissions": (VIEW | SEND | HISTORY | WEBHOOKS).to_string(), "position": 5}
             ],
             "channels": [
                {"id": SIGNALS.to_string(), "name": "signals", "type": 0, "permission_overwrites": [
                    {"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": VIEW.to_string()},
                    {"id": SUBSCRIBER.to_string(), "type": 0, "allow": VIEW.to_string(), "deny": "0"},
                    {"id": BOT_ROLE.to_string(), "type": 0, "allow": (VIEW | SEND).to_string(), "deny": "0"}
                ]},
                {"id": NOTICES.to_string(), "name": "seat-notices", "type": 0}
             ],
             "members": [
                {"user": {"id": OWNER.to_string(), "username": "owner"}, "roles": []},
                {"user": {"id": BOT.to_string(), "username": "seatgate", "bot": true}, "roles": [BOT_ROLE.to_string()]}
             ]}
        ]
    }))
    .expect("scenario")
}

fn server_path() -> String {
    format!("/api/v1/tenants/acme/connectors/signals/servers/{GUILD}")
}

async fn snapshot(admin: &Admin) -> Option<Value> {
    let resp = admin
        .client
        .get(format!("{}{}/snapshot", admin.api, server_path()))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .ok()?;
    resp.status().is_success().then_some(())?;
    resp.json().await.ok()
}

/// Waits for a complete fresh count of `seats` checked after `since` (epoch ms).
async fn counted(admin: &Admin, seats: u64, since: i64) -> Value {
    let start = Instant::now();
    loop {
        let s = snapshot(admin).await;
        if let Some(s) = s.as_ref().filter(|s| {
            s["status"] == "fresh"
                && s["counting"].is_null()
                && s["checked_at"].as_i64().is_some_and(|t| t > since)
        }) {
            assert_eq!(s["seats_used"], seats, "{s}");
            return s.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never counted: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The connector, its mapping to #signals, and the server (enforced, notices in
/// #seat-notices), as an operator configures them.
async fn configure(admin: &Admin, limit: u64) {
    // The mapping's ids are checked against what the gateway told: wait until it told the
    // source guild (under load the first GUILD_CREATE can come after the HTTP server is up).
    let start = Instant::now();
    loop {
        let (_, guilds) = admin
            .try_call(Method::GET, "/api/v1/tenants/acme/guilds", None, None)
            .await;
        let told = guilds["items"].as_array().into_iter().flatten().any(|g| {
            g["id"].as_str() == Some(SOURCE_GUILD.to_string().as_str()) && g["bot_in_guild"] == true
        });
        if told {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the gateway never told the source guild: {guilds}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
                        "target_channel_id": SIGNALS.to_string(), "delivery_mode": "bot"})),
        )
        .await;
    admin
        .call(
            Method::PUT,
            &server_path(),
            Some(mirror_support::server_config(json!({"seat_limit": limit, "enforcement_mode": "enforce", "notify_channel_id": NOTICES.to_string()}))),
        )
        .await;
}

async fn sandbox() -> SandboxHandle {
    no_proxy();
    Sandbox::start(SandboxOptions {
        scenario: Some(scenario()),
        rate_limits: RateLimitConfig::disabled(),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox")
}

fn signal(sandbox: &SandboxHandle, content: &str) {
    sandbox
        .post_message(
            SOURCE_CHANNEL,
            &json!({"author": {"id": PROVIDER.to_string(), "username": "provider"}, "content": content}),
        )
        .expect("signal");
}

fn notices(sandbox: &SandboxHandle) -> Vec<String> {
    mirror_support::live(sandbox, NOTICES)
}

fn member(id: u64, roles: &[u64]) -> Value {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    json!({"user": {"id": id.to_string(), "username": format!("u{id}")}, "roles": roles})
}

#[actix_web::test]
async fn a_large_guild_over_its_limit_is_never_counted_from_a_partial_member_list() {
    let sandbox = sandbox().await;
    sandbox
        .bulk_add_members_with_roles(GUILD, FIRST_SUBSCRIBER, 1_999, &[SUBSCRIBER])
        .expect("subscribers");
    sandbox
        .bulk_add_members(GUILD, FIRST_VISITOR, 1_000)
        .expect("visitors");
    assert_eq!(sandbox.members_who_can_view(SIGNALS).unwrap().len(), 2_000);
    let t = TestDatabase::new().await.expect("database");
    let settings = service_settings(&t, &sandbox, OPERATOR);

    // First run: configured as an operator would, counted over its limit, a signal held.
    let (running, admin) = start_service(&settings, OPERATOR).await;
    admin.wait_up(Duration::from_secs(20)).await;
    configure(&admin, 1_000).await;
    counted(&admin, 2_000, 0).await;
    assert!(
        until(Duration::from_secs(10), || notices(&sandbox).len() == 1).await,
        "one pause notice: {:?}",
        notices(&sandbox)
    );
    signal(&sandbox, "held signal");
    let start = Instant::now();
    while held_error(&t).await.as_deref() != Some("seat_limit_exceeded") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the signal is held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.shutdown().await;

    // Restart, with the member list slow to page: a second a page of 1,000 (progress is
    // written at most once a second).
    let mut slow = Fault::new("GET", "/guilds/{id}/members", 200, 100);
    slow.delay_ms = Some(1_000);
    sandbox.add_fault(slow);
    let restarted = seatgate::store::now_ms();
    let (running, admin) = start_service(&settings, OPERATOR).await;
    let admin = Arc::new(admin);
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let watcher = {
        let (admin, seen) = (admin.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                if let Some(s) = snapshot(&admin).await {
                    seen.lock().unwrap().push(s);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // While the member list is still arriving: 3 subscribers join and 3 leave, one joins
    // and leaves again at once, one loses the role and a visitor gains it, visitors come
    // and go. 2,000 seats still.
    let paging = until(Duration::from_secs(30), || {
        seen.lock().unwrap().iter().any(|s| {
            s["counting"]["members_counted"]
                .as_i64()
                .is_some_and(|n| n >= 1_000)
        })
    })
    .await;
    assert!(paging, "the member list was seen arriving");
    for i in 0..3 {
        sandbox
            .add_member(GUILD, &member(620_000_000_000_000_000 + i, &[SUBSCRIBER]))
            .unwrap();
        sandbox
            .remove_member(GUILD, FIRST_SUBSCRIBER + 100 * i)
            .unwrap();
    }
    sandbox
        .add_member(GUILD, &member(630_000_000_000_000_000, &[SUBSCRIBER]))
        .unwrap();
    sandbox
        .remove_member(GUILD, 630_000_000_000_000_000)
        .unwrap();
    sandbox
        .update_member(GUILD, FIRST_SUBSCRIBER + 7, &json!({"roles": []}))
        .unwrap();
    sandbox
        .update_member(
            GUILD,
            FIRST_VISITOR + 7,
            &json!({"roles": [SUBSCRIBER.to_string()]}),
        )
        .unwrap();
    sandbox
        .add_member(GUILD, &member(640_000_000_000_000_000, &[]))
        .unwrap();
    sandbox.remove_member(GUILD, FIRST_VISITOR + 9).unwrap();
    let changes_done = seatgate::store::now_ms();

    let truth = sandbox.members_who_can_view(SIGNALS).unwrap();
    assert_eq!(truth.len(), 2_000);
    let last = counted(&admin, 2_000, changes_done).await;
    watcher.abort();
    let seats = admin
        .call(
            Method::GET,
            &format!("{}/seats?limit=500", server_path()),
            None,
        )
        .await;
    assert_eq!(seats["total"], 2_000);
    assert_eq!(seats["complete"], true);

    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| !s["counting"].is_null()),
        "the count was seen in progress"
    );
    for s in &seen {
        assert!(
            s["status"] != "fresh" || s["seats_used"] == 2_000,
            "a fresh snapshot said something else than 2,000 seats: {s}"
        );
    }
    assert!(last["checked_at"].as_i64().unwrap() > restarted);
    let told = notices(&sandbox);
    assert_eq!(told.len(), 1, "no resumed notice: {told:?}");
    assert!(told[0].contains("paused"), "{told:?}");
    assert!(
        mirror_support::live(&sandbox, SIGNALS).is_empty(),
        "no held signal delivered"
    );
    running.shutdown().await;
    sandbox.shutdown().await;
}

/// The last error of the one mirror job while it is pending.
async fn held_error(t: &TestDatabase) -> Option<String> {
    let jobs = entities::mirror_jobs::Entity::find()
        .all(t.db.conn())
        .await
        .ok()?;
    jobs.first()
        .filter(|j| j.status == "pending")
        .and_then(|j| j.last_error.clone())
}

/// Audits that fail for good block the server with `seat_audit_failed`; once Discord answers
/// again it is counted by itself within the retry backoff, with no admin action.
#[actix_web::test]
async fn a_server_whose_audits_fail_is_blocked_then_counts_again_by_itself() {
    let sandbox = sandbox().await;
    // 300 members: over Discord's large_threshold, so only the member list can count it.
    sandbox
        .bulk_add_members_with_roles(GUILD, FIRST_SUBSCRIBER, 300, &[SUBSCRIBER])
        .expect("subscribers");
    sandbox.add_fault(Fault::new("GET", "/guilds/{id}/members", 500, 10_000));
    let t = TestDatabase::new().await.expect("database");
    let mut settings = service_settings(&t, &sandbox, OPERATOR);
    settings.queue_max_attempts = 2;
    let (running, admin) = start_service(&settings, OPERATOR).await;
    admin.wait_up(Duration::from_secs(20)).await;
    configure(&admin, 1_000).await;
    let start = Instant::now();
    loop {
        let s = snapshot(&admin).await;
        if s.as_ref()
            .and_then(|s| s["last_error"].as_str())
            .is_some_and(|e| e.starts_with("seat_audit_failed"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never failed: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&sandbox, "while failed");
    let start = Instant::now();
    while held_error(&t).await.as_deref() != Some("seat_audit_failed") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "held with seat_audit_failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    sandbox.clear_faults();
    let healed = Instant::now();
    counted(&admin, 301, 0).await;
    let took = healed.elapsed();
    println!("counted again {took:?} after Discord answered again (backoff cap 2 s)");
    assert!(
        until(Duration::from_secs(10), || mirror_support::live(
            &sandbox, SIGNALS
        ) == vec![
            "while failed".to_owned()
        ])
        .await,
        "the held signal arrives once the count is back"
    );
    running.shutdown().await;
    sandbox.shutdown().await;
}

/// An owner transfer (GUILD_UPDATE) moves the owner's seat: the new owner sees everything,
/// the old one only what their roles let them.
#[actix_web::test]
async fn an_ownership_transfer_moves_the_owners_seat() {
    let sandbox = sandbox().await;
    sandbox
        .bulk_add_members_with_roles(GUILD, FIRST_SUBSCRIBER, 3, &[SUBSCRIBER])
        .expect("subscribers");
    sandbox
        .bulk_add_members(GUILD, FIRST_VISITOR, 2)
        .expect("visitors");
    let t = TestDatabase::new().await.expect("database");
    let (running, admin) = start_service(&service_settings(&t, &sandbox, OPERATOR), OPERATOR).await;
    admin.wait_up(Duration::from_secs(20)).await;
    configure(&admin, 1_000).await;
    counted(&admin, 4, 0).await;
    assert!(seat_ids(&admin).await.contains(&OWNER));
    sandbox
        .update_guild(GUILD, &json!({"owner_id": FIRST_VISITOR.to_string()}))
        .expect("ownership transferred");
    let start = Instant::now();
    loop {
        let now = seat_ids(&admin).await;
        if now.contains(&FIRST_VISITOR) && !now.contains(&OWNER) {
            assert_eq!(now.len(), 4);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sandbox.members_who_can_view(SIGNALS).unwrap(),
        seat_ids(&admin).await
    );
    running.shutdown().await;
    sandbox.shutdown().await;
}

async fn seat_ids(admin: &Admin) -> Vec<u64> {
    let v = admin
        .call(Method::GET, &format!("{}/seats", server_path()), None)
        .await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user_id"].as_str().unwrap().parse::<u64>().unwrap())
        .collect()
}
