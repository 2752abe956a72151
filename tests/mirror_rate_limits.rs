//! 429s in the shapes Discord (or something in front of it) sends: global, a shared bucket
//! (`X-RateLimit-Scope: shared`), and `retry_after` values that are not usable numbers. Nothing
//! is lost or duplicated, no lane is stuck, and the service does not hammer the route: the
//! sandbox's own count of what it served bounds the requests.

mod mirror_support;

use std::time::Duration;

use seatgate::{
    sandbox::{Fault, Limit, RateLimitConfig},
    store::testing::TestDatabase,
};
use serde_json::json;

use mirror_support::*;

const OPERATOR: &str = "rate-limits-operator";

#[actix_web::test]
async fn global_shared_and_unusable_429s_lose_nothing_and_stick_no_lane() {
    let t = TestDatabase::empty().await.unwrap();
    let sandbox = start_sandbox(3, RateLimitConfig::disabled()).await;
    let (running, admin) = start_service(&service_settings(&t, &sandbox, OPERATOR), OPERATOR).await;
    admin.configure(&["bot", "bot", "webhook"]).await;
    attached(&sandbox).await;
    // The webhook is made ahead, so what is counted below is the messages' traffic.
    post(&sandbox, "warm-up");
    let targets: Vec<u64> = (0..3).map(|i| target(i).1).collect();
    assert!(
        until(Duration::from_secs(15), || targets.iter().all(|c| live(
            &sandbox, *c
        )
        .len()
            == 1))
        .await
    );
    sandbox.reset_stats();

    let mut global = Fault::new("POST", "/channels/{id}/messages", 429, 2);
    global.retry_after = Some(0.2);
    global.global = Some(true);
    let mut shared = Fault::new("POST", "/channels/{id}/messages", 429, 2);
    shared.retry_after = Some(0.3);
    shared.scope = Some("shared".into());
    let mut nan = Fault::new("POST", "/webhooks/{id}/{token}", 429, 1);
    nan.retry_after_raw = Some(json!("NaN"));
    let mut negative = Fault::new("POST", "/channels/{id}/messages", 429, 1);
    negative.retry_after_raw = Some(json!(-1));
    let injected = 6;
    for f in [global, shared, nan, negative] {
        sandbox.add_fault(f);
    }
    let mut expected = vec!["warm-up".to_owned()];
    for i in 0..5 {
        let text = format!("signal {i}");
        post(&sandbox, &text);
        expected.push(text);
    }
    expected.sort();
    every_target_shows(&sandbox, &targets, &expected, Duration::from_secs(30)).await;
    // No lane stuck: the next message on every channel arrives.
    post(&sandbox, "after");
    expected.push("after".into());
    expected.sort();
    every_target_shows(&sandbox, &targets, &expected, Duration::from_secs(15)).await;
    // 6 messages x 3 targets, plus one retry per injected 429: a -1 or NaN wait did not turn
    // into a storm of requests.
    let stats = sandbox.stats();
    assert_eq!(stats["rate_limited"], injected, "{stats}");
    let requests = stats["requests"].as_u64().unwrap_or(u64::MAX);
    assert!(requests <= 6 * 3 + injected + 2, "{stats}");
    running.shutdown().await;
}

#[actix_web::test]
async fn with_the_sandboxs_limits_on_a_burst_waits_for_the_headers_and_meets_no_429() {
    let t = TestDatabase::empty().await.unwrap();
    // Discord's shape, scaled down so the run stays short: 3 creates per second per channel,
    // 3 executes per second per webhook, 12 requests per second for the token.
    let limits = RateLimitConfig {
        enabled: true,
        global: Limit::new(12, Duration::from_secs(1)),
        message_create: Limit::new(3, Duration::from_secs(1)),
        webhook_execute: Limit::new(3, Duration::from_secs(1)),
        default_route: Limit::new(50, Duration::from_secs(1)),
    };
    let sandbox = start_sandbox(2, limits).await;
    let mut settings = service_settings(&t, &sandbox, OPERATOR);
    settings.discord_global_rate = 12;
    let (running, admin) = start_service(&settings, OPERATOR).await;
    admin.configure(&["bot", "webhook"]).await;
    attached(&sandbox).await;
    let targets: Vec<u64> = (0..2).map(|i| target(i).1).collect();
    // Configuration and recounts are done once the sandbox goes quiet.
    let mut served = u64::MAX;
    while sandbox.stats()["requests"].as_u64() != Some(served) {
        served = sandbox.stats()["requests"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    sandbox.reset_stats();
    let expected: Vec<String> = (0..12).map(|i| format!("burst {i:02}")).collect();
    // Back to back, with no gap: serenity runs each MESSAGE_CREATE in a task of its own, and
    // ingest still records them in the gateway's order.
    for text in &expected {
        post(&sandbox, text);
    }
    assert!(
        until(Duration::from_secs(30), || targets
            .iter()
            .all(|c| live(&sandbox, *c) == expected))
        .await,
        "{:?}",
        targets
            .iter()
            .map(|c| live(&sandbox, *c))
            .collect::<Vec<_>>()
    );
    // Every request waited for its turn: not one 429, so nothing counts toward a ban.
    let stats = sandbox.stats();
    assert_eq!(stats["rate_limited"], 0, "{stats}");
    assert_eq!(stats["invalid"], 0, "{stats}");
    running.shutdown().await;
}
