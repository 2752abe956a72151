//! Queue throughput: jobs/s for claim + complete in batches, on SQLite and PostgreSQL.
//!
//! `cargo bench --bench queue` (PostgreSQL from SEATGATE_TEST_POSTGRES_URL or the local
//! default; skipped with a note when it is not reachable). Prints one line per backend.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use sea_orm::{TransactionTrait, Value};
use seatgate::{
    domain::backoff::RetryPolicy,
    store::{
        now_ms,
        queue::{AuditQueue, EnqueueOptions},
        testing::TestDatabase,
    },
};

const JOBS: i64 = 20_000;
const WORKERS: usize = 8;
const BATCH: u64 = 100;

async fn run(name: &str, t: TestDatabase, batch_complete: bool) {
    let q = AuditQueue::audit(t.db.clone(), RetryPolicy::default());
    let now = now_ms();
    let txn = q.database().conn().begin().await.expect("begin");
    for i in 0..JOBS {
        let cols: Vec<(&'static str, Value)> = vec![
            ("tenant_key", "bench".into()),
            ("connector_id", "c".into()),
            ("guild_id", i.into()),
            ("reason", "bench".into()),
        ];
        q.enqueue(
            &txn,
            &cols,
            EnqueueOptions {
                run_after: now,
                ..Default::default()
            },
            now,
        )
        .await
        .expect("enqueue");
    }
    txn.commit().await.expect("commit");

    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let q = q.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("bench-{w}");
            loop {
                let jobs = q
                    .claim(&worker, BATCH, Duration::from_secs(300), now_ms())
                    .await
                    .expect("claim");
                if jobs.is_empty() {
                    break;
                }
                for job in jobs {
                    let token = job.claim_token.clone().unwrap_or_default();
                    q.complete(job.id, &token, now_ms())
                        .await
                        .expect("complete");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let how = if batch_complete {
        "batch complete"
    } else {
        "complete per job"
    };
    println!(
        "queue {name}, {how}: {n} jobs claimed+completed by {WORKERS} workers (claim batch {BATCH}) in {secs:.2} s = {:.0} jobs/s",
        n as f64 / secs
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: both just run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        std::env::remove_var("SEATGATE_TEST_DATABASE");
        for batch in [false, true] {
            run("sqlite", TestDatabase::new().await.expect("sqlite"), batch).await;
        }
        std::env::set_var("SEATGATE_TEST_DATABASE", "postgres");
        for batch in [false, true] {
            match TestDatabase::new().await {
                Ok(t) => run("postgres", t, batch).await,
                Err(err) => println!("queue postgres: skipped ({err})"),
            }
        }
    });
}
