//! The seat auditor in the whole service against the sandbox: real gateway events, real
//! REST recounts, on the backend `SEATGATE_TEST_DATABASE` selects.

use std::time::{Duration, Instant};

use seatgate::{
    actors::ServerKey,
    config::{Secret, Settings},
    sandbox::{Fault, RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario},
    store::{
        seat_audit::{SeatAuditStore, SnapshotRecord},
        testing::{seed, TestDatabase},
    },
};
use serde_json::json;

const BOT: u64 = 990_000_000_000_000_001;
const GUILD: u64 = 840_000_000_000_000_001;
const OWNER: u64 = 700_000_000_000_000_001;
const CHANNEL: u64 = 860_000_000_000_000_001;
const SUBSCRIBER: u64 = 850_000_000_000_000_001;
const VIEW: u64 = 1 << 10;
const SEND: u64 = 1 << 11;

fn scenario() -> Scenario {
    Scenario::from_json(&json!({
        "bot": {"id": BOT.to_string(), "username": "seatgate"},
        "guilds": [{
            "id": GUILD.to_string(), "name": "Customer", "owner_id": OWNER.to_string(),
            "roles": [
                {"id": GUILD.to_string(), "name": "@everyone", "permissions": VIEW.to_string(), "position": 0},
                {"id": SUBSCRIBER.to_string(), "name": "subscriber", "permissions": "0", "position": 1}
            ],
            "channels": [{"id": CHANNEL.to_string(), "name": "signals", "type": 0, "permission_overwrites": [
                {"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": VIEW.to_string()},
                {"id": SUBSCRIBER.to_string(), "type": 0, "allow": VIEW.to_string(), "deny": "0"},
                {"id": BOT.to_string(), "type": 1, "allow": (VIEW | SEND).to_string(), "deny": "0"}
            ]}],
            "members": [
                {"user": {"id": OWNER.to_string(), "username": "owner"}, "roles": []},
                {"user": {"id": "710000000000000001", "username": "a"}, "roles": [SUBSCRIBER.to_string()]},
                {"user": {"id": "710000000000000002", "username": "b"}, "roles": [SUBSCRIBER.to_string()]}
            ]
        }]
    }))
    .unwrap()
}

fn key() -> ServerKey {
    ServerKey {
        tenant_key: "acme".into(),
        connector_id: "signals".into(),
        guild_id: GUILD,
    }
}

async fn configure(t: &TestDatabase, limit: i64, notify: Option<u64>) {
    let owner = ("acme", "signals");
    seed::connector(&t.db, "acme", "signals", 1).await.unwrap();
    seed::mapping(&t.db, owner, 2, (GUILD, CHANNEL), "bot")
        .await
        .unwrap();
    seed::enforced_server(&t.db, owner, GUILD, limit, notify)
        .await
        .unwrap();
}

struct World {
    t: TestDatabase,
    sandbox: SandboxHandle,
    running: seatgate::app::Running,
}

async fn world(limit: i64, tune: impl FnOnce(&mut Settings)) -> World {
    world_with(limit, None, tune).await
}

async fn world_with(limit: i64, notify: Option<u64>, tune: impl FnOnce(&mut Settings)) -> World {
    let sandbox = Sandbox::start(SandboxOptions {
        scenario: Some(scenario()),
        rate_limits: RateLimitConfig::disabled(),
        ..Default::default()
    })
    .await
    .unwrap();
    let t = TestDatabase::new().await.unwrap();
    configure(&t, limit, notify).await;
    let mut settings = Settings {
        database_url: t.url.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
        discord_token: Some(Secret::new(sandbox.bot_token())),
        discord_api_url: sandbox.api_url().to_owned(),
        ..Settings::default()
    };
    tune(&mut settings);
    let running = seatgate::app::start(&settings).await.unwrap();
    World {
        t,
        sandbox,
        running,
    }
}

impl World {
    fn cached(&self) -> Option<seatgate::domain::gate::SnapshotView> {
        self.running.cache.snapshot(&key())
    }

    async fn until(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&seatgate::domain::gate::SnapshotView) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if self.cached().is_some_and(|v| check(&v)) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "timed out: {what}; cached = {:?}",
                self.cached()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn stored(&self) -> Option<SnapshotRecord> {
        SeatAuditStore::new(self.t.db.clone())
            .snapshots()
            .await
            .unwrap()
            .into_iter()
            .find(|(k, _)| *k == key())
            .map(|(_, s)| s)
    }

    fn join(&self, uid: u64, roles: &[u64]) {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.sandbox.add_member(GUILD, &json!({"user": {"id": uid.to_string(), "username": format!("u{uid}")}, "roles": roles})).unwrap();
    }

    async fn stop(self) {
        self.running.shutdown().await;
        self.sandbox.shutdown().await;
    }
}

#[actix_web::test]
async fn a_join_past_the_limit_is_over_within_two_seconds_and_a_leave_brings_it_back() {
    let w = world(3, |_| {}).await;
    w.until(
        "first count from GUILD_CREATE",
        Duration::from_secs(20),
        |v| v.seats_used == 3,
    )
    .await;
    let joined_at = Instant::now();
    w.join(710_000_000_000_000_003, &[SUBSCRIBER]);
    w.until("over", Duration::from_secs(5), |v| v.is_over_limit())
        .await;
    let took = joined_at.elapsed();
    println!("sandbox member join -> over the limit in the snapshot cache: {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    w.sandbox
        .remove_member(GUILD, 710_000_000_000_000_003)
        .unwrap();
    w.until("under again", Duration::from_secs(5), |v| v.seats_used == 3)
        .await;

    // A bot changes nothing; a member who cannot see changes nothing until an overwrite lets
    // their role see.
    w.sandbox.add_member(GUILD, &json!({"user": {"id": "990000000000000077", "username": "otherbot", "bot": true}, "roles": [SUBSCRIBER.to_string()]})).unwrap();
    w.join(710_000_000_000_000_004, &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.cached().unwrap().seats_used, 3);
    w.sandbox
        .put_overwrite(
            CHANNEL,
            GUILD,
            &json!({"type": 0, "allow": VIEW.to_string(), "deny": "0"}),
        )
        .unwrap();
    w.until(
        "everyone sees: the plain member counts now",
        Duration::from_secs(5),
        |v| v.seats_used == 4,
    )
    .await;
    w.stop().await;
}

#[actix_web::test]
async fn a_resumed_connection_keeps_the_count_exact_and_an_invalidated_session_recounts() {
    let w = world(10, |_| {}).await;
    w.until("first count", Duration::from_secs(20), |v| {
        v.seats_used == 3
    })
    .await;
    assert!(w.sandbox.drop_gateway_connections() > 0);
    // Events while the client reconnects are replayed by RESUME.
    w.join(710_000_000_000_000_010, &[SUBSCRIBER]);
    w.join(710_000_000_000_000_011, &[SUBSCRIBER]);
    w.until(
        "both joins seen through RESUME",
        Duration::from_secs(15),
        |v| v.seats_used == 5,
    )
    .await;

    assert!(w.sandbox.invalidate_sessions() > 0);
    w.sandbox
        .remove_member(GUILD, 710_000_000_000_000_010)
        .unwrap();
    w.until(
        "recounted after re-IDENTIFY",
        Duration::from_secs(30),
        |v| v.seats_used == 4,
    )
    .await;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let start = Instant::now();
    loop {
        let resyncs = entities::discord_seat_audit_jobs::Entity::find()
            .filter(entities::discord_seat_audit_jobs::Column::Reason.eq("resync"))
            .all(w.t.db.conn())
            .await
            .unwrap();
        if !resyncs.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a session that could not resume asks for a recount"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.stop().await;
}

#[actix_web::test]
async fn a_member_list_failing_with_500_three_times_is_retried_then_counted() {
    let w = world(10, |s| {
        s.queue_backoff_base_secs = 1;
        s.queue_backoff_cap_secs = 2;
    })
    .await;
    w.until("first count", Duration::from_secs(20), |v| {
        v.seats_used == 3
    })
    .await;
    w.sandbox.add_fault(
        serde_json::from_value::<Fault>(
            json!({"method": "GET", "path": "/guilds/{id}/members", "status": 500, "count": 3}),
        )
        .unwrap(),
    );
    let queue = seatgate::store::queue::AuditQueue::audit(w.t.db.clone(), Default::default());
    let job = seatgate::actors::seat_auditor::enqueue_audit(
        &queue,
        &key(),
        seatgate::actors::seat_auditor::AuditReason::AdminRefresh,
    )
    .await
    .unwrap();
    let start = Instant::now();
    loop {
        let row = queue.get(job.id).await.unwrap().unwrap();
        if row.status == "done" {
            assert_eq!(row.attempts, 4, "three 500s then success");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.stored().await.unwrap().count.seats_used, 3);
    w.stop().await;
}

#[actix_web::test]
async fn a_guild_the_bot_was_removed_from_is_bot_not_in_guild_after_one_attempt() {
    let w = world(10, |s| {
        s.queue_backoff_base_secs = 1;
        s.queue_backoff_cap_secs = 1;
        s.queue_max_attempts = 2;
    })
    .await;
    w.until("first count", Duration::from_secs(20), |v| {
        v.seats_used == 3
    })
    .await;
    w.sandbox.remove_guild(GUILD).unwrap();
    w.until("audit failed", Duration::from_secs(30), |v| v.audit_failed)
        .await;
    // The cache hears first; the database follows through the auditor's ordered writer.
    let start = Instant::now();
    let stored = loop {
        let stored = w.stored().await.unwrap();
        // A "counting" snapshot (expired, `seat_check_pending`) may be written first.
        let failed = stored
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("bot_not_in_guild"));
        if failed || start.elapsed() > Duration::from_secs(10) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stored.status.as_str(), "expired");
    assert!(
        stored
            .last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("bot_not_in_guild"),
        "{:?}",
        stored.last_error
    );
    // One attempt: retrying a 404 Unknown Guild only adds to Discord's invalid-request count.
    use sea_orm::{EntityTrait, QueryOrder};
    let last = entities::discord_seat_audit_jobs::Entity::find()
        .order_by_desc(entities::discord_seat_audit_jobs::Column::Id)
        .one(w.t.db.conn())
        .await
        .unwrap()
        .expect("an audit job");
    assert_eq!(last.attempts, 1, "{last:?}");
    w.stop().await;
}

#[actix_web::test]
async fn the_owner_is_told_in_the_notify_channel_when_mirroring_pauses_and_resumes() {
    let w = world_with(3, Some(CHANNEL), |_| {}).await;
    w.until("first count", Duration::from_secs(20), |v| {
        v.seats_used == 3
    })
    .await;
    w.join(710_000_000_000_000_020, &[SUBSCRIBER]);
    w.until("over", Duration::from_secs(5), |v| v.is_over_limit())
        .await;
    w.sandbox
        .remove_member(GUILD, 710_000_000_000_000_020)
        .unwrap();
    w.until("under", Duration::from_secs(5), |v| !v.is_over_limit())
        .await;
    let start = Instant::now();
    let notices = loop {
        let notices: Vec<String> = w
            .sandbox
            .messages(CHANNEL)
            .unwrap()
            .iter()
            .filter_map(|m| m["content"].as_str().map(str::to_owned))
            .collect();
        if notices.len() >= 2 || start.elapsed() > Duration::from_secs(10) {
            break notices;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(
        notices[0].contains("paused")
            && notices[0].contains("4 members")
            && notices[0].contains("covers 3"),
        "{}",
        notices[0]
    );
    assert!(
        notices[1].contains("resumed") && notices[1].contains("3 of 3"),
        "{}",
        notices[1]
    );
    w.stop().await;
}
