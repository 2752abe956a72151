//! One queue conformance suite, run on SQLite (default) and on PostgreSQL
//! (`SEATGATE_TEST_DATABASE=postgres`), each test in its own database.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use dashmap::DashMap;
use sea_orm::{TransactionTrait, Value};
use seatgate::{
    domain::backoff::RetryPolicy,
    store::{
        now_ms,
        queue::{AuditQueue, EnqueueOptions, Enqueued, FailOutcome, Fenced, FAILED},
        testing::TestDatabase,
    },
};

fn audit_columns(guild: i64) -> Vec<(&'static str, Value)> {
    vec![
        ("tenant_key", "acme".into()),
        ("connector_id", "signals".into()),
        ("guild_id", guild.into()),
        ("reason", "test".into()),
    ]
}

/// Enqueues an audit of `guild`, due at `at`, without a dedupe key.
async fn enqueue_due(q: &AuditQueue, guild: i64, at: i64) -> Enqueued {
    q.enqueue(
        q.database().conn(),
        &audit_columns(guild),
        EnqueueOptions {
            run_after: at,
            ..Default::default()
        },
        at,
    )
    .await
    .unwrap()
}

async fn setup() -> (TestDatabase, AuditQueue) {
    let t = TestDatabase::new().await.unwrap();
    let q = AuditQueue::audit(t.db.clone(), RetryPolicy::default());
    (t, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_complete_ten_thousand_jobs_each_exactly_once() {
    let (_t, q) = setup().await;
    let now = now_ms();
    let txn = q.database().conn().begin().await.unwrap();
    let mut ids = HashSet::new();
    for i in 0..10_000 {
        let e = q
            .enqueue(
                &txn,
                &audit_columns(i),
                EnqueueOptions {
                    run_after: now,
                    ..Default::default()
                },
                now,
            )
            .await
            .unwrap();
        assert!(!e.deduped);
        ids.insert(e.id);
    }
    txn.commit().await.unwrap();
    assert_eq!(ids.len(), 10_000);

    let completed: Arc<DashMap<i64, u32>> = Arc::new(DashMap::new());
    let stale = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let q = q.clone();
        let completed = completed.clone();
        let stale = stale.clone();
        workers.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            loop {
                let jobs = q
                    .claim(&worker, 64, Duration::from_secs(300), now_ms())
                    .await
                    .unwrap();
                if jobs.is_empty() {
                    break;
                }
                for job in jobs {
                    let token = job.claim_token.clone().unwrap();
                    match q.complete(job.id, &token, now_ms()).await.unwrap() {
                        Fenced::Applied => *completed.entry(job.id).or_insert(0) += 1,
                        Fenced::Stale => {
                            stale.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(stale.load(Ordering::Relaxed), 0);
    assert_eq!(completed.len(), 10_000, "every job completed");
    assert!(
        completed.iter().all(|e| *e.value() == 1),
        "no job completed twice"
    );
    assert!(completed.iter().all(|e| ids.contains(e.key())));
    let counts = q.counts(now_ms()).await.unwrap();
    assert_eq!(
        (
            q.done_count().await.unwrap(),
            counts.pending,
            counts.processing
        ),
        (10_000, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_claimable_by_another_worker_and_late_completion_is_rejected() {
    let (_t, q) = setup().await;
    let t0 = 1_000_000;
    let job = enqueue_due(&q, 1, t0).await;

    let a = q.claim("a", 10, Duration::from_secs(1), t0).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].attempts, 1);
    assert!(
        q.claim("b", 10, Duration::from_secs(1), t0 + 500)
            .await
            .unwrap()
            .is_empty(),
        "lease still held"
    );

    let b = q
        .claim("b", 10, Duration::from_secs(1), t0 + 1_001)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].id, job.id);
    assert_eq!(b[0].attempts, 2);
    assert_eq!(b[0].lease_owner.as_deref(), Some("b"));

    let late = q
        .complete(job.id, a[0].claim_token.as_deref().unwrap(), t0 + 1_100)
        .await
        .unwrap();
    assert_eq!(late, Fenced::Stale);
    let fail_late = q.fail(&a[0], "late", t0 + 1_100, 0.0).await.unwrap();
    assert_eq!(fail_late, FailOutcome::Stale);
    let ok = q
        .complete(job.id, b[0].claim_token.as_deref().unwrap(), t0 + 1_200)
        .await
        .unwrap();
    assert_eq!(ok, Fenced::Applied);
    assert_eq!(q.get(job.id).await.unwrap().unwrap().status, "done");
    // Completing twice is also stale.
    assert_eq!(
        q.complete(job.id, b[0].claim_token.as_deref().unwrap(), t0 + 1_300)
            .await
            .unwrap(),
        Fenced::Stale
    );
}

/// A claim loop woken often (every delivery, every settle) must not pay for the
/// expired-lease scan each time it finds nothing due: that scan runs at most once a
/// second, so a dead worker's job waits at most a second past its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_looked_for_once_a_second_not_on_every_empty_claim() {
    let (_t, q) = setup().await;
    let t0 = 5_000_000;
    enqueue_due(&q, 7, t0).await;
    let a = q
        .claim("a", 10, Duration::from_millis(100), t0)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert!(
        q.claim("b", 10, Duration::from_secs(1), t0 + 200)
            .await
            .unwrap()
            .is_empty(),
        "lease expired, but the last look for expired leases was 200 ms ago"
    );
    let b = q
        .claim("b", 10, Duration::from_secs(1), t0 + 1_000)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].lease_owner.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedupe_holds_under_concurrent_enqueues() {
    let (_t, q) = setup().await;
    let now = now_ms();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            q.enqueue(
                q.database().conn(),
                &audit_columns(7),
                EnqueueOptions {
                    dedupe_key: Some("acme:signals:7".into()),
                    run_after: now + 60_000 - i,
                    ..Default::default()
                },
                now,
            )
            .await
            .unwrap()
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let ids: HashSet<i64> = results.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 1, "one live row per dedupe key");
    assert_eq!(results.iter().filter(|r| !r.deduped).count(), 1);
    let counts = q.counts(now).await.unwrap();
    assert_eq!(counts.pending, 1);

    // A later enqueue asking to run sooner pulls run_after earlier; a later one does not push it back.
    let id = *ids.iter().next().unwrap();
    let before = q.get(id).await.unwrap().unwrap().run_after;
    q.enqueue(
        q.database().conn(),
        &audit_columns(7),
        EnqueueOptions {
            dedupe_key: Some("acme:signals:7".into()),
            run_after: now,
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    assert_eq!(q.get(id).await.unwrap().unwrap().run_after, now);
    assert!(before > now);
    q.enqueue(
        q.database().conn(),
        &audit_columns(7),
        EnqueueOptions {
            dedupe_key: Some("acme:signals:7".into()),
            run_after: now + 999_999,
            ..Default::default()
        },
        now,
    )
    .await
    .unwrap();
    assert_eq!(q.get(id).await.unwrap().unwrap().run_after, now);

    // Once done, the key is free again.
    let claimed = q
        .claim("w", 10, Duration::from_secs(30), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    q.complete(id, claimed[0].claim_token.as_deref().unwrap(), now)
        .await
        .unwrap();
    let again = q
        .enqueue(
            q.database().conn(),
            &audit_columns(7),
            EnqueueOptions {
                dedupe_key: Some("acme:signals:7".into()),
                run_after: now,
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
    assert!(!again.deduped);
    assert_ne!(again.id, id);
}

/// The running audit may have read the guild or the config before the change a new request
/// reports: that request must get a run of its own, and requests after it fold into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_requested_while_one_runs_queues_one_more_run() {
    let (_t, q) = setup().await;
    let now = now_ms();
    let request = || async {
        q.enqueue(
            q.database().conn(),
            &audit_columns(7),
            EnqueueOptions {
                dedupe_key: Some("audit:acme:signals:7".into()),
                run_after: now,
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap()
    };
    let first = request().await;
    let running = q
        .claim("w", 10, Duration::from_secs(30), now)
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].dedupe_key, None, "claim frees the key");

    let during = request().await;
    assert!(
        !during.deduped,
        "a request during the run is not folded into it"
    );
    assert_ne!(during.id, first.id);
    let again = request().await;
    assert!(again.deduped);
    assert_eq!(again.id, during.id);

    q.complete(first.id, running[0].claim_token.as_deref().unwrap(), now)
        .await
        .unwrap();
    let next = q
        .claim("w", 10, Duration::from_secs(30), now)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![during.id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failing_eight_times_ends_failed_with_its_last_error_and_backoff_grows() {
    let (_t, q) = setup().await;
    let mut now = 5_000_000;
    let job = enqueue_due(&q, 3, now).await;
    let mut delays = Vec::new();
    for attempt in 1..=8 {
        let claimed = q.claim("w", 1, Duration::from_secs(30), now).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {attempt} claimable");
        assert_eq!(claimed[0].attempts, attempt);
        let outcome = q
            .fail(
                &claimed[0],
                &format!("discord_server_error: attempt {attempt}"),
                now,
                0.5,
            )
            .await
            .unwrap();
        match outcome {
            FailOutcome::Rescheduled { run_after } => {
                assert!(attempt < 8);
                // Not due before the backoff delay.
                assert!(q
                    .claim("w", 1, Duration::from_secs(30), run_after - 1)
                    .await
                    .unwrap()
                    .is_empty());
                delays.push(run_after - now);
                now = run_after;
            }
            FailOutcome::Failed => assert_eq!(attempt, 8),
            FailOutcome::Stale => panic!("stale on attempt {attempt}"),
        }
    }
    let row = q.get(job.id).await.unwrap().unwrap();
    assert_eq!(row.status, FAILED);
    assert_eq!(row.attempts, 8);
    assert_eq!(
        row.last_error.as_deref(),
        Some("discord_server_error: attempt 8")
    );
    // 5 s doubling with up to 20% jitter taken off (0.5 jitter = 10% here), capped at 15 min.
    let expected: Vec<i64> = (0..7)
        .map(|i| ((5_000i64 << i).min(900_000) as f64 * 0.9) as i64)
        .collect();
    assert_eq!(delays, expected);
    assert!(
        q.claim("w", 1, Duration::from_secs(30), now + 10_000_000)
            .await
            .unwrap()
            .is_empty(),
        "failed jobs stay failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_refunds_the_attempt_and_graceful_stop_returns_leases() {
    let (_t, q) = setup().await;
    let now = 9_000_000;
    for g in 0..3 {
        enqueue_due(&q, g, now).await;
    }
    let claimed = q
        .claim("w1", 3, Duration::from_secs(300), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let first = &claimed[0];
    let r = q
        .release(
            first.id,
            first.claim_token.as_deref().unwrap(),
            now + 1_000,
            Some("seat_limit_exceeded"),
            true,
            now,
        )
        .await
        .unwrap();
    assert_eq!(r, Fenced::Applied);
    let row = q.get(first.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.attempts, row.last_error.as_deref()),
        ("pending", 0, Some("seat_limit_exceeded"))
    );

    assert_eq!(q.release_worker("w1", now).await.unwrap(), 2);
    let counts = q.counts(now).await.unwrap();
    assert_eq!((counts.pending, counts.processing), (3, 0));
    assert_eq!(
        q.claim("w2", 10, Duration::from_secs(300), now + 1_000)
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_completion_is_fenced_by_the_claim_token() {
    let (_t, q) = setup().await;
    let t0 = 2_000_000;
    for g in 0..4 {
        enqueue_due(&q, g, t0).await;
    }
    let a = q.claim("a", 4, Duration::from_secs(1), t0).await.unwrap();
    let ids: Vec<i64> = a.iter().map(|j| j.id).collect();
    // Two of them expire and go to b.
    let token_a = a[0].claim_token.clone().unwrap();
    q.release(ids[0], &token_a, t0, None, false, t0)
        .await
        .unwrap();
    q.release(ids[1], &token_a, t0, None, false, t0)
        .await
        .unwrap();
    let b = q.claim("b", 4, Duration::from_secs(60), t0).await.unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(
        q.complete_batch(&ids, &token_a, t0 + 10).await.unwrap(),
        2,
        "only a's own two"
    );
    let token_b = b[0].claim_token.clone().unwrap();
    assert_eq!(q.complete_batch(&ids, &token_b, t0 + 10).await.unwrap(), 2);
    assert_eq!(q.done_count().await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_releases_only_its_own_leases() {
    let (_t, q) = setup().await;
    let now = 3_000_000;
    for g in 0..4 {
        enqueue_due(&q, g, now).await;
    }
    let mine = q
        .claim("w1", 2, Duration::from_secs(300), now)
        .await
        .unwrap();
    let theirs = q
        .claim("w2", 2, Duration::from_secs(300), now)
        .await
        .unwrap();
    assert_eq!((mine.len(), theirs.len()), (2, 2));
    assert_eq!(q.release_worker("w1", now).await.unwrap(), 2);
    for job in &theirs {
        let row = q.get(job.id).await.unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.lease_owner.as_deref()),
            ("processing", Some("w2")),
            "another worker's lease stays"
        );
    }
    let counts = q.counts(now).await.unwrap();
    assert_eq!((counts.pending, counts.processing), (2, 2));
}
