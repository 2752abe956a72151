//! 429s in the shapes Discord (or something in front of it) sends: global, a shared bucket
//! (`X-RateLimit-Scope: shared`), and `retry_after` values that are not usable numbers. Nothing
//! is lost or duplicated, no lane is stuck, and the service does not hammer the route: the
//! sandbox's own count of what it served bounds the requests.

mod mirror_support;

use std::time::Duration;

use seatgate::{
    sandbox::{Fault, RateLimitConfig},
    store::testing::TestDatabase,
};
use serde_json::json;

use mirror_support::*;

const OPERATOR: &str = "rate-limits-operator";

/// Waits until every target shows exactly `expected` (sorted), each once.
async fn every_target_shows(
    sandbox: &seatgate::sandbox::SandboxHandle,
    targets: &[u64],
    expected: &[String],
    limit: Duration,
) {
    assert!(
        until(limit, || targets
            .iter()
            .all(|c| sorted(live(sandbox, *c)) == expected))
        .await,
        "{:?}",
        targets
            .iter()
            .map(|c| live(sandbox, *c))
            .collect::<Vec<_>>()
    );
}

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
