//! The ban guard end to end: Discord's 401/403/429 answers are counted over 10 minutes, and
//! past the configured share of the 10,000 at which Discord bans the IP, every new request
//! waits its turn at 5 a second; nothing is lost meanwhile, and the operator sees it.

mod mirror_support;

use std::time::{Duration, Instant};

use seatgate::{
    sandbox::{Fault, RateLimitConfig},
    store::testing::TestDatabase,
};

use mirror_support::*;

const OPERATOR: &str = "ban-guard-operator";

#[actix_web::test]
async fn past_the_share_of_invalid_answers_requests_slow_to_five_a_second_and_nothing_is_lost() {
    let t = TestDatabase::empty().await.unwrap();
    // The sandbox's own limits off, so that any spacing seen is the guard's.
    let sandbox = start_sandbox(2, RateLimitConfig::disabled()).await;
    let mut settings = service_settings(&t, &sandbox, OPERATOR);
    settings.discord_invalid_fraction = 0.0005; // slow down at 5 invalid answers
    let (running, admin) = start_service(&settings, OPERATOR).await;
    admin.configure(&["bot", "bot"]).await;
    attached(&sandbox).await;
    let enforcement = || async {
        admin
            .call(reqwest::Method::GET, "/api/v1/enforcement", None)
            .await
    };
    let before = enforcement().await;
    assert_eq!(
        before["discord_invalid_requests"]["last_10_min"], 0,
        "{before}"
    );
    assert_eq!(
        before["discord_invalid_requests"]["slowed"], false,
        "{before}"
    );

    let mut r429 = Fault::new("POST", "/channels/{id}/messages", 429, 6);
    r429.retry_after = Some(0.05);
    sandbox.add_fault(r429);
    post(&sandbox, "first");
    let (_, a) = target(0);
    let (_, b) = target(1);
    assert!(
        until(Duration::from_secs(20), || live(&sandbox, a) == ["first"]
            && live(&sandbox, b) == ["first"])
        .await,
        "{:?} {:?}",
        live(&sandbox, a),
        live(&sandbox, b)
    );
    let during = enforcement().await;
    assert!(
        during["discord_invalid_requests"]["last_10_min"].as_u64() >= Some(6),
        "{during}"
    );
    assert_eq!(
        during["discord_invalid_requests"]["slowed"], true,
        "{during}"
    );
    let metrics = admin.metrics().await;
    assert!(
        metrics.lines().any(|l| l == "seatgate_discord_slowed 1"),
        "{metrics}"
    );

    // 10 messages to 2 targets: 20 sends, at 5 a second in all about 4 s (with the sandbox's
    // limits off they take well under one without the guard).
    let started = Instant::now();
    let mut expected = vec!["first".to_owned()];
    for i in 0..10 {
        let text = format!("m{i}");
        post(&sandbox, &text);
        expected.push(text);
    }
    expected.sort();
    assert!(
        until(Duration::from_secs(30), || sorted(live(&sandbox, a))
            == expected
            && sorted(live(&sandbox, b)) == expected)
        .await,
        "{:?} {:?}",
        live(&sandbox, a),
        live(&sandbox, b)
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(3_400), "20 sends in {took:?}");
    running.shutdown().await;
}
