//! Fault storms from the sandbox while the whole service mirrors (in process, configured
//! through the admin API): 429 with retry_after, global 429, 500s, slow answers and a dropped
//! gateway lose and duplicate nothing, with the sandbox's rate limits on; and a deleted target
//! channel breaks only its own mapping.

mod mirror_support;

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use seatgate::{
    app,
    sandbox::{ratelimit::Limit, Fault, RateLimitConfig, SandboxHandle},
    store::testing::TestDatabase,
};

use mirror_support::*;

const OPERATOR: &str = "faults-test-operator";

async fn start(
    t: &TestDatabase,
    rate_limits: RateLimitConfig,
    modes: &[&str],
) -> (SandboxHandle, app::Running, Admin) {
    let sandbox = start_sandbox(modes.len() as u64, rate_limits).await;
    let (running, admin) = start_service(&service_settings(t, &sandbox, OPERATOR), OPERATOR).await;
    admin.configure(modes).await;
    attached(&sandbox).await;
    (sandbox, running, admin)
}

/// 429 answers the service received, from its own `/metrics`.
async fn rate_limited_answers(admin: &Admin) -> f64 {
    let text = admin.metrics().await;
    text.lines()
        .filter(|l| l.starts_with("seatgate_mirror_rate_limited_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[actix_web::test]
async fn fault_storm_loses_and_duplicates_nothing() {
    let t = TestDatabase::empty().await.unwrap();
    // Rate limits on, scaled so the run stays short: 20 creates/s per channel, 20 webhook
    // executions/s per webhook, 60 requests/s per token.
    let limits = RateLimitConfig {
        enabled: true,
        global: Limit::new(60, Duration::from_secs(1)),
        message_create: Limit::new(20, Duration::from_secs(1)),
        webhook_execute: Limit::new(20, Duration::from_secs(1)),
        default_route: Limit::new(50, Duration::from_secs(1)),
    };
    let (sandbox, running, admin) = start(&t, limits, &["bot", "bot", "webhook"]).await;
    let started = Instant::now();

    let mut r429 = Fault::new("POST", "/channels/{id}/messages", 429, 6);
    r429.retry_after = Some(0.3);
    let mut global = Fault::new("*", "/channels/{id}/messages", 429, 3);
    global.retry_after = Some(0.5);
    global.global = Some(true);
    let mut slow = Fault::new("POST", "/channels/{id}/messages", 200, 10);
    slow.delay_ms = Some(300);
    let mut slow_hook = Fault::new("POST", "/webhooks/{id}/{token}", 200, 5);
    slow_hook.delay_ms = Some(300);
    let mut hook429 = Fault::new("POST", "/webhooks/{id}/{token}", 429, 4);
    hook429.retry_after = Some(0.3);
    for f in [
        r429,
        global,
        slow,
        slow_hook,
        hook429,
        Fault::new("POST", "/channels/{id}/messages", 500, 8),
        Fault::new("POST", "/webhooks/{id}/{token}", 502, 4),
        Fault::new("PATCH", "/channels/{id}/messages/{id}", 500, 2),
    ] {
        sandbox.add_fault(f);
    }

    let mut expected = Vec::new();
    let mut ids = Vec::new();
    for i in 0..120 {
        let content = format!("storm {i:03}");
        ids.push(post(&sandbox, &content));
        expected.push(content);
        if i == 40 || i == 80 {
            // The gateway drops; the service resumes and gets the buffered events.
            assert!(sandbox.drop_gateway_connections() >= 1);
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    // Edits and deletes go through the same storm.
    assert!(
        until(Duration::from_secs(60), || (0..3).all(|c| live(
            &sandbox,
            target(c).1
        )
        .len()
            >= 120))
        .await,
        "not every send arrived: {:?}",
        (0..3)
            .map(|c| live(&sandbox, target(c).1).len())
            .collect::<Vec<_>>()
    );
    sandbox.add_fault(Fault::new("PATCH", "/channels/{id}/messages/{id}", 500, 2));
    sandbox.add_fault(Fault::new("DELETE", "/channels/{id}/messages/{id}", 503, 2));
    for i in (0..120).step_by(10) {
        let content = format!("storm {i:03} edited");
        sandbox
            .edit_message(
                SOURCE_CHANNEL,
                ids[i],
                &serde_json::json!({"content": content}),
            )
            .unwrap();
        expected[i] = content;
    }
    for i in (5..120).step_by(20) {
        sandbox.delete_message(SOURCE_CHANNEL, ids[i]).unwrap();
    }
    let expected = sorted(
        expected
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 20 != 5)
            .map(|(_, c)| c)
            .collect(),
    );
    for c in 0..3 {
        let channel = target(c).1;
        let ok = until(Duration::from_secs(60), || {
            sorted(live(&sandbox, channel)) == expected
        })
        .await;
        let got = sorted(live(&sandbox, channel));
        assert!(
            ok,
            "target {c}: {} shown, {} expected; first differences: {:?}",
            got.len(),
            expected.len(),
            got.iter().zip(&expected).find(|(a, b)| a != b)
        );
    }
    let took = started.elapsed();
    let answered_429 = rate_limited_answers(&admin).await;
    println!(
        "storm: 120 messages x 3 targets, 12 edits, 6 deletes in {:.1}s; {answered_429} 429 answers",
        took.as_secs_f64()
    );
    // 13 injected 429s; beyond them at most one real 429 per bucket window, not one per
    // queued job (a cascade is hundreds here).
    assert!(
        answered_429 >= 13.0,
        "{answered_429}: the injected 429s were not seen"
    );
    assert!(
        answered_429 <= 13.0 + 4.0 * took.as_secs_f64().ceil(),
        "{answered_429} 429 answers: a cascade"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
    let queues = admin
        .call(reqwest::Method::GET, "/api/v1/queues", None)
        .await;
    let mirror = queues["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["name"] == "mirror"))
        .cloned()
        .unwrap();
    assert_eq!(mirror["pending"], 0, "{mirror}");
    assert_eq!(mirror["failed"], 0, "{mirror}");
    running.shutdown().await;
    sandbox.shutdown().await;
}

#[actix_web::test]
async fn deleted_target_channel_breaks_its_mapping_only() {
    let t = TestDatabase::empty().await.unwrap();
    let (sandbox, running, admin) =
        start(&t, RateLimitConfig::disabled(), &["bot", "bot", "webhook"]).await;
    let mut expected = Vec::new();
    for i in 0..5 {
        let content = format!("before {i}");
        post(&sandbox, &content);
        expected.push(content);
    }
    assert!(
        until(Duration::from_secs(20), || (0..3).all(|c| sorted(live(
            &sandbox,
            target(c).1
        )) == sorted(
            expected.clone()
        )))
        .await
    );
    let gone = target(1).1;
    sandbox.delete_channel(gone).unwrap();
    for i in 0..20 {
        let content = format!("after {i}");
        post(&sandbox, &content);
        expected.push(content);
    }
    let expected = sorted(expected);
    for c in [0, 2] {
        assert!(
            until(Duration::from_secs(20), || sorted(live(
                &sandbox,
                target(c).1
            )) == expected)
            .await,
            "target {c} stopped receiving"
        );
    }
    let broken = until_mapping_broken(&admin, gone).await;
    assert_eq!(broken["broken_code"], "discord_unknown_channel", "{broken}");
    for m in admin.mappings().await {
        if m["target_channel_id"].as_str() != Some(gone.to_string().as_str()) {
            assert_eq!(m["broken"], false, "{m}");
        }
    }
    // No retries: nothing stays pending for the broken mapping, and no request keeps going
    // to the deleted channel.
    let conn = running.db.conn();
    let mapping_id = broken["mapping_id"].as_i64().unwrap();
    let pending_sql = format!(
        "SELECT COUNT(*) FROM mirror_jobs WHERE mapping_id = {mapping_id} AND status IN ('pending', 'processing')"
    );
    let quiet = {
        let mut ok = false;
        for _ in 0..200 {
            let row = conn
                .query_one_raw(Statement::from_string(
                    conn.get_database_backend(),
                    pending_sql.clone(),
                ))
                .await
                .unwrap()
                .unwrap();
            if row.try_get_by_index::<i64>(0).unwrap() == 0 {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ok
    };
    assert!(quiet, "jobs of the broken mapping are still retried");
    let failed_row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT COUNT(*) FROM mirror_jobs WHERE mapping_id = {mapping_id} AND status = 'failed' AND last_error = 'discord_unknown_channel'"),
        ))
        .await
        .unwrap()
        .unwrap();
    let failed = failed_row.try_get_by_index::<i64>(0).unwrap();
    assert!(failed >= 1, "the refused jobs end failed with the code");
    // A later message is not even tried on the broken mapping.
    post(&sandbox, "later");
    assert!(
        until(Duration::from_secs(10), || live(&sandbox, target(0).1)
            .contains(&"later".to_owned()))
        .await
    );
    running.shutdown().await;
    sandbox.shutdown().await;
}

async fn until_mapping_broken(admin: &Admin, channel: u64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let found = admin
            .mappings()
            .await
            .into_iter()
            .find(|m| m["target_channel_id"].as_str() == Some(channel.to_string().as_str()));
        if let Some(m) = found {
            if m["broken"] == true {
                return m;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "mapping of the deleted channel never marked broken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
