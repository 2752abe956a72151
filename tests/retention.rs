//! Retention end to end: the whole service on the sandbox with ages of a second; what the
//! mirror wrote (finished jobs, links, enforcement events) goes, what is still due stays.

mod mirror_support;

use std::time::{Duration, Instant};

use mirror_support::*;
use reqwest::Method;
use sea_orm::{EntityTrait, PaginatorTrait};
use seatgate::{sandbox::RateLimitConfig, store::testing::TestDatabase};
use serde_json::json;

const OPERATOR: &str = "retention-operator";

#[actix_web::test]
async fn finished_jobs_links_and_events_older_than_their_ages_are_pruned_and_due_jobs_stay() {
    let sandbox = start_sandbox(2, RateLimitConfig::disabled()).await;
    let (held_guild, held_channel) = target(1);
    sandbox
        .add_member(
            held_guild,
            &json!({"user": {"id": "720000000000000001", "username": "member"}, "roles": []}),
        )
        .expect("member added");
    let t = TestDatabase::new().await.expect("database");
    let mut settings = service_settings(&t, &sandbox, OPERATOR);
    settings.retention_jobs_secs = 1;
    settings.retention_links_secs = 1;
    settings.retention_events_secs = 1;
    settings.retention_interval_secs = 1;
    let (running, admin) = start_service(&settings, OPERATOR).await;
    admin.wait_up(Duration::from_secs(20)).await;
    attached(&sandbox).await;
    admin.configure(&["bot", "bot"]).await;
    // Target 1 over its limit: its jobs wait, due, and must survive the pruner.
    admin
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers/{held_guild}"),
            Some(server_config(
                json!({"seat_limit": 1, "enforcement_mode": "enforce"}),
            )),
        )
        .await;
    let db = t.db.conn();
    let start = Instant::now();
    while entities::seat_enforcement_events::Entity::find()
        .count(db)
        .await
        .expect("events")
        == 0
    {
        assert!(start.elapsed() < Duration::from_secs(20), "never paused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..5 {
        post(&sandbox, &format!("signal {i}"));
    }
    let (_, channel) = target(0);
    assert!(
        until(Duration::from_secs(20), || live(&sandbox, channel).len()
            == 5)
        .await,
        "not delivered"
    );
    let start = Instant::now();
    loop {
        let links = entities::mirror_message_links::Entity::find()
            .count(db)
            .await
            .expect("links");
        let finished = entities::mirror_jobs::Entity::find()
            .all(db)
            .await
            .expect("jobs")
            .into_iter()
            .filter(|j| j.finished_at.is_some())
            .count();
        let events = entities::seat_enforcement_events::Entity::find()
            .count(db)
            .await
            .expect("events");
        if links == 0 && finished == 0 && events == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "left: {links} links, {finished} finished jobs, {events} events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending = entities::mirror_jobs::Entity::find()
        .all(db)
        .await
        .expect("jobs")
        .into_iter()
        .filter(|j| j.status == "pending")
        .count();
    assert_eq!(pending, 5, "the held server's jobs are still due");
    assert_eq!(live(&sandbox, channel).len(), 5, "copies are not touched");
    assert!(live(&sandbox, held_channel).is_empty());
    running.shutdown().await;
    sandbox.shutdown().await;
}
