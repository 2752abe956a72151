//! Tenant walls end to end: the whole service against the sandbox, driven through the admin
//! API as an operator and a tenant would. Another tenant's Discord ids are refused and nothing
//! of theirs is mirrored; a mapping cannot name a channel outside its guild; the service's own
//! copies are never mirrored again; retarget, disable/enable, PUT/PATCH and delete do what
//! they say.

mod mirror_support;

use std::time::{Duration, Instant};

use mirror_support::*;
use reqwest::{Method, StatusCode};
use sea_orm::EntityTrait;
use seatgate::{
    app,
    sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
    store::testing::TestDatabase,
};
use serde_json::{json, Value};

const OPERATOR: &str = "tenant-walls-operator";
const RIVAL: &str = "rival";
const RIVAL_GUILD: u64 = 811_000_000_000_000_001;
const RIVAL_CHANNEL: u64 = 831_000_000_000_000_001;
const VIEW_AND_HISTORY: u64 = (1 << 10) | (1 << 16);

struct World {
    sandbox: SandboxHandle,
    running: app::Running,
    admin: Admin,
    t: TestDatabase,
}

/// The mirroring scenario with `targets` customer guilds, plus a second provider's guild.
async fn world(targets: u64) -> World {
    no_proxy();
    let mut scenario = scenario(targets);
    if let Some(guilds) = scenario["guilds"].as_array_mut() {
        guilds.push(json!({
            "id": RIVAL_GUILD.to_string(), "name": "Rival Provider", "owner_id": PROVIDER.to_string(),
            "roles": [{"id": RIVAL_GUILD.to_string(), "name": "@everyone", "permissions": VIEW_AND_HISTORY.to_string(), "position": 0}],
            "channels": [{"id": RIVAL_CHANNEL.to_string(), "name": "rival-signals", "type": 0}],
            "members": [{"user": {"id": PROVIDER.to_string(), "username": "provider"}, "roles": []}]
        }));
    }
    let sandbox = Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario).expect("scenario")),
        rate_limits: RateLimitConfig::disabled(),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts");
    let t = TestDatabase::new().await.expect("database");
    let (running, admin) = start_service(&service_settings(&t, &sandbox, OPERATOR), OPERATOR).await;
    admin.wait_up(Duration::from_secs(20)).await;
    attached(&sandbox).await;
    wait_for_directory(&admin, targets).await;
    World {
        sandbox,
        running,
        admin,
        t,
    }
}

/// The id checks answer from what the gateway told the bot: wait until every guild arrived
/// (a mapping to the last customer guild is accepted), then remove the probe.
async fn wait_for_directory(admin: &Admin, targets: u64) {
    let probe_path = "/api/v1/tenants/probe/connectors";
    admin
        .call(
            Method::POST,
            probe_path,
            Some(json!({"connector_id": "probe", "name": "probe", "source_guild_id": SOURCE_GUILD.to_string()})),
        )
        .await;
    let (guild, channel) = target(targets - 1);
    let start = Instant::now();
    loop {
        let (status, body) = admin
            .try_call(
                Method::POST,
                "/api/v1/tenants/probe/connectors/probe/mappings",
                Some(json!({
                    "source_channel_id": SOURCE_CHANNEL.to_string(), "target_guild_id": guild.to_string(),
                    "target_channel_id": channel.to_string(), "delivery_mode": "bot"
                })),
                None,
            )
            .await;
        if status.is_success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the gateway never told of guild {guild}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin
        .call(
            Method::DELETE,
            "/api/v1/tenants/probe/connectors/probe?purge=true",
            None,
        )
        .await;
}

impl World {
    async fn stop(self) {
        self.running.shutdown().await;
        self.sandbox.shutdown().await;
    }

    async fn tenant_token(&self, tenant: &str) -> String {
        let v = self
            .admin
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/tokens"),
                None,
            )
            .await;
        v["token"].as_str().expect("token shown once").to_owned()
    }

    fn mapping_path(&self, tenant: &str, connector: &str) -> String {
        format!("/api/v1/tenants/{tenant}/connectors/{connector}/mappings")
    }

    /// Waits until `channel` shows exactly `expected` (in order).
    async fn shows(&self, channel: u64, expected: &[&str]) {
        let want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        let sandbox = &self.sandbox;
        assert!(
            until(Duration::from_secs(20), || live(sandbox, channel) == want).await,
            "channel {channel} shows {:?}, expected {want:?}",
            live(sandbox, channel)
        );
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .or_else(|| body["code"].as_str())
        .unwrap_or_default()
}

fn mapping_body(source: u64, (guild, channel): (u64, u64), mode: &str) -> Value {
    json!({
        "source_channel_id": source.to_string(), "target_guild_id": guild.to_string(),
        "target_channel_id": channel.to_string(), "delivery_mode": mode
    })
}

#[actix_web::test]
async fn another_tenants_discord_ids_are_refused_and_nothing_of_theirs_is_mirrored() {
    let w = world(3).await;
    w.admin.configure(&["bot"]).await;
    let rival = w.tenant_token(RIVAL).await;
    let token = Some(rival.as_str());
    let connectors = format!("/api/v1/tenants/{RIVAL}/connectors");

    // acme's source guild, never granted to the rival.
    let (status, body) = w
        .admin
        .try_call(
            Method::POST,
            &connectors,
            Some(json!({"connector_id": "mine", "name": "Mine", "source_guild_id": SOURCE_GUILD.to_string()})),
            token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "source_guild_not_granted"),
        "{body}"
    );
    // The operator grants the rival its own guild; only that one.
    w.admin
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{RIVAL}/source-guilds/{RIVAL_GUILD}"),
            None,
        )
        .await;
    let grants = w
        .admin
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{RIVAL}/source-guilds"),
            None,
        )
        .await;
    assert_eq!(
        grants["items"].as_array().map(Vec::len),
        Some(1),
        "{grants}"
    );
    let (status, body) = w
        .admin
        .try_call(
            Method::POST,
            &connectors,
            Some(json!({"connector_id": "mine", "name": "Mine", "source_guild_id": RIVAL_GUILD.to_string()})),
            token,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mappings = w.mapping_path(RIVAL, "mine");

    // acme's source channel under the rival's guild.
    let (status, body) = w
        .admin
        .try_call(
            Method::POST,
            &mappings,
            Some(mapping_body(SOURCE_CHANNEL, target(2), "bot")),
            token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "channel_not_in_guild"),
        "{body}"
    );
    // acme's target channel under the rival's target guild.
    let (status, body) = w
        .admin
        .try_call(
            Method::POST,
            &mappings,
            Some(mapping_body(
                RIVAL_CHANNEL,
                (target(2).0, target(0).1),
                "bot",
            )),
            token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "channel_not_in_guild"),
        "{body}"
    );
    // A channel Discord does not know.
    let (status, body) = w
        .admin
        .try_call(
            Method::POST,
            &mappings,
            Some(mapping_body(
                RIVAL_CHANNEL,
                (target(2).0, 869_000_000_000_000_009),
                "bot",
            )),
            token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "channel_unknown"),
        "{body}"
    );
    // acme's customer channel as the notice channel of the rival's server.
    let (status, body) = w
        .admin
        .try_call(
            Method::PUT,
            &format!("{connectors}/mine/servers/{}", target(2).0),
            Some(server_config(
                json!({"notify_channel_id": target(0).1.to_string()}),
            )),
            token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "channel_not_in_guild"),
        "{body}"
    );
    // The rival's own, correct mapping.
    let (status, body) = w
        .admin
        .try_call(
            Method::POST,
            &mappings,
            Some(mapping_body(RIVAL_CHANNEL, target(2), "bot")),
            token,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    post(&w.sandbox, "acme signal");
    post_in(&w.sandbox, RIVAL_CHANNEL, "rival signal");
    w.shows(target(0).1, &["acme signal"]).await;
    w.shows(target(2).1, &["rival signal"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(live(&w.sandbox, target(0).1), vec!["acme signal"]);
    assert_eq!(live(&w.sandbox, target(2).1), vec!["rival signal"]);
    assert!(live(&w.sandbox, target(1).1).is_empty());
    w.stop().await;
}

#[actix_web::test]
async fn a_server_over_its_limit_receives_nothing_whatever_its_mappings_say() {
    let w = world(2).await;
    let (guild0, channel0) = target(0);
    w.sandbox
        .add_member(
            guild0,
            &json!({"user": {"id": "720000000000000001", "username": "member"}, "roles": []}),
        )
        .expect("member added");
    w.admin.configure(&["bot"]).await;
    let server = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild0}");
    w.admin
        .call(
            Method::PUT,
            &server,
            Some(server_config(
                json!({"seat_limit": 1, "enforcement_mode": "enforce"}),
            )),
        )
        .await;
    let start = Instant::now();
    loop {
        let (_, s) = w
            .admin
            .try_call(Method::GET, &format!("{server}/snapshot"), None, None)
            .await;
        if s["seats_used"] == 2 && s["status"] == "fresh" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never counted: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Guild 1's id with guild 0's channel: the gate would count guild 1 and deliver into 0.
    let (status, body) = w
        .admin
        .try_call(
            Method::POST,
            &w.mapping_path(TENANT, CONNECTOR),
            Some(mapping_body(SOURCE_CHANNEL, (target(1).0, channel0), "bot")),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "channel_not_in_guild"),
        "{body}"
    );
    // The same through PATCH of the existing mapping.
    let mapping = w.admin.mappings().await[0]["mapping_id"].clone();
    let (status, body) = w
        .admin
        .try_call(
            Method::PATCH,
            &format!("{}/{mapping}", w.mapping_path(TENANT, CONNECTOR)),
            Some(json!({"target_guild_id": target(1).0.to_string()})),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "channel_not_in_guild"),
        "{body}"
    );
    post(&w.sandbox, "over the limit");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        live(&w.sandbox, channel0).is_empty(),
        "{:?}",
        live(&w.sandbox, channel0)
    );
    w.stop().await;
}

#[actix_web::test]
async fn webhook_mappings_both_ways_give_one_copy_and_no_loop() {
    let w = world(2).await;
    let (guild_c, channel_c) = target(0);
    let (guild_d, channel_d) = target(1);
    for (connector, guild, source, to) in [
        ("c-to-d", guild_c, channel_c, target(1)),
        ("d-to-c", guild_d, channel_d, target(0)),
    ] {
        w.admin
            .call(
                Method::POST,
                &format!("/api/v1/tenants/{TENANT}/connectors"),
                Some(json!({"connector_id": connector, "name": connector, "source_guild_id": guild.to_string()})),
            )
            .await;
        w.admin
            .call(
                Method::POST,
                &w.mapping_path(TENANT, connector),
                Some(mapping_body(source, to, "webhook")),
            )
            .await;
    }
    // C -> C is refused outright.
    let (status, body) = w
        .admin
        .try_call(
            Method::POST,
            &w.mapping_path(TENANT, "c-to-d"),
            Some(mapping_body(channel_c, target(0), "webhook")),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "mapping_loop"),
        "{body}"
    );

    post_in(&w.sandbox, channel_c, "ping");
    w.shows(channel_d, &["ping"]).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(live(&w.sandbox, channel_d), vec!["ping"], "one copy in D");
    assert_eq!(
        live(&w.sandbox, channel_c),
        vec!["ping"],
        "C holds only the original"
    );
    let jobs = entities::mirror_jobs::Entity::find()
        .all(w.t.db.conn())
        .await
        .expect("jobs");
    assert_eq!(jobs.len(), 1, "the copy in D made no job: {jobs:?}");
    // Catch-up after a restart reads D's history, which holds our webhook's copy: it is
    // not mirrored back into C either.
    let World {
        sandbox,
        running,
        admin: _,
        t,
    } = w;
    running.shutdown().await;
    let (running, admin) = start_service(&service_settings(&t, &sandbox, OPERATOR), OPERATOR).await;
    admin.wait_up(Duration::from_secs(20)).await;
    attached(&sandbox).await;
    post_in(&sandbox, channel_c, "after the restart");
    assert!(
        until(Duration::from_secs(20), || live(&sandbox, channel_d).len()
            == 2)
        .await,
        "the live message after the restart arrives: {:?}",
        live(&sandbox, channel_d)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(live(&sandbox, channel_d), vec!["ping", "after the restart"]);
    assert_eq!(live(&sandbox, channel_c), vec!["ping", "after the restart"]);
    let w = World {
        sandbox,
        running,
        admin,
        t,
    };
    w.stop().await;
}

#[actix_web::test]
async fn a_retargeted_mapping_posts_in_its_new_channel_and_old_copies_change_where_they_are() {
    let w = world(2).await;
    w.admin.configure(&["webhook"]).await;
    let (_, old_channel) = target(0);
    let (new_guild, new_channel) = target(1);
    let first = post(&w.sandbox, "before");
    w.shows(old_channel, &["before"]).await;
    let mapping = w.admin.mappings().await[0]["mapping_id"].clone();
    let patched = w
        .admin
        .call(
            Method::PATCH,
            &format!("{}/{mapping}", w.mapping_path(TENANT, CONNECTOR)),
            Some(json!({"target_guild_id": new_guild.to_string(), "target_channel_id": new_channel.to_string()})),
        )
        .await;
    assert_eq!(patched["target_channel_id"], new_channel.to_string());
    post(&w.sandbox, "after");
    w.shows(new_channel, &["after"]).await;
    w.shows(old_channel, &["before"]).await;

    w.sandbox
        .edit_message(SOURCE_CHANNEL, first, &json!({"content": "before, edited"}))
        .expect("edit");
    w.shows(old_channel, &["before, edited"]).await;
    w.sandbox
        .delete_message(SOURCE_CHANNEL, first)
        .expect("delete");
    w.shows(old_channel, &[]).await;
    assert_eq!(live(&w.sandbox, new_channel), vec!["after"]);
    w.stop().await;
}

/// Waits until a queued job waits with `code`.
async fn held_with(w: &World, code: &str, what: &str) {
    let start = Instant::now();
    loop {
        let jobs = entities::mirror_jobs::Entity::find()
            .all(w.t.db.conn())
            .await
            .expect("jobs");
        if jobs
            .iter()
            .any(|j| j.status == "pending" && j.last_error.as_deref() == Some(code))
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: never held with {code}: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn job_count(w: &World) -> usize {
    entities::mirror_jobs::Entity::find()
        .all(w.t.db.conn())
        .await
        .expect("jobs")
        .len()
}

/// `enabled: false` stops new jobs at once and holds queued ones with `mirror_disabled`;
/// enabling releases them. A signal is queued (held over the limit), the connector (then the
/// mapping) switched off, the limit raised: it waits `mirror_disabled`; one posted meanwhile
/// makes no job; enabled again, the queued one arrives at once.
#[actix_web::test]
async fn disabling_a_connector_or_a_mapping_holds_queued_signals_and_enabling_releases_them() {
    let w = world(1).await;
    let (guild, channel) = target(0);
    w.sandbox
        .add_member(
            guild,
            &json!({"user": {"id": "720000000000000001", "username": "member"}, "roles": []}),
        )
        .expect("member added");
    w.admin.configure(&["bot"]).await;
    let server = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}");
    w.admin
        .call(
            Method::PUT,
            &server,
            Some(server_config(
                json!({"seat_limit": 1, "enforcement_mode": "enforce"}),
            )),
        )
        .await;
    let connector = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}");
    let mapping = w.admin.mappings().await[0]["mapping_id"].clone();
    let mapping_path = format!("{}/{mapping}", w.mapping_path(TENANT, CONNECTOR));

    for (path, name) in [(&connector, "connector"), (&mapping_path, "mapping")] {
        w.admin
            .call(Method::PATCH, &server, Some(json!({"seat_limit": 1})))
            .await;
        let queued = format!("queued before the {name} went off");
        post(&w.sandbox, &queued);
        held_with(&w, "seat_limit_exceeded", name).await;
        w.admin
            .call(Method::PATCH, path, Some(json!({"enabled": false})))
            .await;
        w.admin
            .call(Method::PATCH, &server, Some(json!({"seat_limit": 10})))
            .await;
        held_with(&w, "mirror_disabled", name).await;
        let jobs_before = job_count(&w).await;
        let while_off = format!("posted while the {name} is off");
        post(&w.sandbox, &while_off);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(job_count(&w).await, jobs_before, "{name} off: no new job");
        assert!(
            !live(&w.sandbox, channel).contains(&queued),
            "{name} off: nothing arrives"
        );
        let enabled_at = Instant::now();
        w.admin
            .call(Method::PATCH, path, Some(json!({"enabled": true})))
            .await;
        let sandbox = &w.sandbox;
        assert!(
            until(Duration::from_secs(20), || live(sandbox, channel)
                .contains(&queued))
            .await,
            "{name}: the held signal never arrived"
        );
        let took = enabled_at.elapsed();
        println!("{name}: the held signal arrived {took:?} after enabling");
        assert!(took < Duration::from_secs(3), "{name}: {took:?}");
        assert!(!live(&w.sandbox, channel).contains(&while_off));
    }
    w.stop().await;
}

#[actix_web::test]
async fn put_names_a_missing_field_and_patch_changes_only_what_it_names() {
    let w = world(1).await;
    w.admin.configure(&["bot"]).await;
    let (guild, _) = target(0);
    let server = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}");
    w.admin
        .call(
            Method::PUT,
            &server,
            Some(server_config(
                json!({"seat_limit": 50, "enforcement_mode": "enforce", "override": "allow"}),
            )),
        )
        .await;
    let mut partial = server_config(json!({}));
    if let Some(o) = partial.as_object_mut() {
        o.remove("enforcement_mode");
    }
    let (status, body) = w
        .admin
        .try_call(Method::PUT, &server, Some(partial), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "field_required"),
        "{body}"
    );
    assert!(body.to_string().contains("enforcement_mode"), "{body}");
    let after = w.admin.call(Method::GET, &server, None).await;
    assert_eq!(
        after["enforcement_mode"], "enforce",
        "the refused PUT changed nothing"
    );

    let patched = w
        .admin
        .call(Method::PATCH, &server, Some(json!({"seat_limit": 75})))
        .await;
    assert_eq!(patched["seat_limit"], 75);
    assert_eq!(patched["enforcement_mode"], "enforce");
    assert_eq!(patched["override"], "allow");

    let connector = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}");
    let (status, body) = w
        .admin
        .try_call(
            Method::PUT,
            &connector,
            Some(json!({"source_guild_id": SOURCE_GUILD.to_string(), "enabled": true})),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "field_required"),
        "{body}"
    );
    assert!(body.to_string().contains("name"), "{body}");
    let patched = w
        .admin
        .call(Method::PATCH, &connector, Some(json!({"name": "Renamed"})))
        .await;
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["enabled"], true);
    assert_eq!(patched["source_guild_id"], SOURCE_GUILD.to_string());

    // What PATCH left alone still works: a signal goes through the enforce config.
    post(&w.sandbox, "still mirrored");
    w.shows(target(0).1, &["still mirrored"]).await;
    w.stop().await;
}

#[actix_web::test]
async fn a_source_delete_after_its_connector_was_deleted_still_removes_the_copies() {
    let w = world(2).await;
    w.admin.configure(&["bot", "webhook"]).await;
    let (guild, channel) = target(0);
    let server = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}");
    w.admin
        .call(
            Method::PUT,
            &server,
            Some(server_config(
                json!({"seat_limit": 10, "enforcement_mode": "enforce"}),
            )),
        )
        .await;
    let id = post(&w.sandbox, "soon deleted");
    w.shows(channel, &["soon deleted"]).await;
    w.shows(target(1).1, &["soon deleted"]).await;
    w.admin
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}"),
            None,
        )
        .await;
    // Gone for the tenant, its history still readable by the operator.
    let (status, _) = w.admin.try_call(Method::GET, &server, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, events) = w
        .admin
        .try_call(Method::GET, &format!("{server}/events"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");

    // New posts go nowhere; the delete of the old one reaches both copies.
    post(&w.sandbox, "after the delete");
    w.sandbox
        .delete_message(SOURCE_CHANNEL, id)
        .expect("delete");
    w.shows(channel, &[]).await;
    w.shows(target(1).1, &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(live(&w.sandbox, channel).is_empty());
    w.stop().await;
}

/// A server config for a guild the bot was removed from shows `bot_not_in_guild` after one
/// attempt, and is tried again at the recheck interval, not with the queue's 8 attempts:
/// every try is an invalid request towards Discord's ban threshold.
#[actix_web::test]
async fn a_server_the_bot_is_not_in_shows_bot_not_in_guild_after_one_attempt() {
    let w = world(1).await;
    let (guild, _) = target(0);
    w.admin.configure(&["bot"]).await;
    let server = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}");
    w.admin
        .call(
            Method::PUT,
            &server,
            Some(server_config(
                json!({"seat_limit": 10, "enforcement_mode": "enforce"}),
            )),
        )
        .await;
    let start = Instant::now();
    loop {
        let (_, s) = w
            .admin
            .try_call(Method::GET, &format!("{server}/snapshot"), None, None)
            .await;
        if s["status"] == "fresh" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never counted: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = audit_attempts(&w, guild).await;
    w.sandbox.remove_guild(guild).expect("the bot is removed");
    // An admin refresh, as the page's button sends.
    let (status, body) = w
        .admin
        .try_call(Method::POST, &format!("{server}/audit"), None, None)
        .await;
    assert!(status.is_success(), "{status} {body}");
    let start = Instant::now();
    let snapshot = loop {
        let (_, s) = w
            .admin
            .try_call(Method::GET, &format!("{server}/snapshot"), None, None)
            .await;
        if s["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("bot_not_in_guild"))
        {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never bot_not_in_guild: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(snapshot["status"], "fresh", "{snapshot}");
    // The page's chip for it.
    let servers = w
        .admin
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers"),
            None,
        )
        .await;
    let listed = servers["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|s| s["guild_id"].as_str() == Some(guild.to_string().as_str()))
                .cloned()
        })
        .unwrap_or_default();
    assert_eq!(listed["seat_status"], "failed", "{servers}");
    // The queue retries failures within 1-2 s here; nothing more is tried for a minute.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (attempts, retrying) = audit_attempts(&w, guild).await;
    assert_eq!(retrying, 0, "no retry with backoff");
    assert!(
        attempts - before.0 <= 2,
        "{} attempts after the removal",
        attempts - before.0
    );
    w.stop().await;
}

/// Attempts of every audit job of `guild`, and how many wait for a retry after a failure.
async fn audit_attempts(w: &World, guild: u64) -> (i32, usize) {
    let jobs: Vec<_> = entities::discord_seat_audit_jobs::Entity::find()
        .all(w.t.db.conn())
        .await
        .expect("audit jobs")
        .into_iter()
        .filter(|j| seatgate::domain::snowflake::from_db(j.guild_id) == guild)
        .collect();
    (
        jobs.iter().map(|j| j.attempts).sum(),
        jobs.iter()
            .filter(|j| j.status == "pending" && j.last_error.is_some())
            .count(),
    )
}

/// A notice channel the bot cannot post in is accepted, with a `warnings` entry saying so.
#[actix_web::test]
async fn a_notice_channel_the_bot_cannot_post_in_is_accepted_with_a_warning() {
    let w = world(1).await;
    let (guild, _) = target(0);
    let bot_role = 850_000_000_000_000_000u64;
    let muted = 861_000_000_000_000_001u64;
    w.sandbox
        .create_channel(
            guild,
            &json!({"id": muted.to_string(), "name": "owners-only", "type": 0,
                "permission_overwrites": [{"id": bot_role.to_string(), "type": 0, "allow": "0", "deny": (1u64 << 11).to_string()}]}),
        )
        .expect("channel created");
    w.admin.configure(&["bot"]).await;
    let server = format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{guild}");
    let start = Instant::now();
    let saved = loop {
        let (status, body) = w
            .admin
            .try_call(
                Method::PUT,
                &server,
                Some(server_config(
                    json!({"notify_channel_id": muted.to_string()}),
                )),
                None,
            )
            .await;
        // Until CHANNEL_CREATE reached the directory the channel is asked of REST.
        if status.is_success() && body["warnings"].as_array().is_some_and(|w| !w.is_empty()) {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no warning: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(saved["warnings"][0]["code"], "bot_cannot_post", "{saved}");
    assert_eq!(saved["notify_channel_id"], muted.to_string());
    let read = w.admin.call(Method::GET, &server, None).await;
    assert_eq!(read["warnings"][0]["code"], "bot_cannot_post", "{read}");
    w.stop().await;
}
