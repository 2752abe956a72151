//! `/metrics` in Prometheus text format. The recorder is installed once per process; the
//! auditor and the gate record into it with the `metrics` macros under the names below, and
//! the scrape refreshes the gauges that are read from the database (queue depths, snapshots
//! by status, the kill switch).

use std::sync::OnceLock;

use actix_web::{get, web, HttpResponse};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::{queues, AppState};
use crate::{
    domain::freshness::Freshness,
    error::AppResult,
    store::{now_ms, servers::ServerStore},
};

// The names and labels below are the ones the actors record under (the seat auditor in
// `actors/seat_auditor.rs`, the gate in `actors/mirror_gate.rs`); `tests/admin_metrics.rs`
// checks that the real service's /metrics shows them.

/// Counter, label `result` = `ok` | `failed`: recounts from Discord, each attempt (a job
/// retried three times before it succeeds counts three `failed` and one `ok`).
pub const AUDITS_TOTAL: &str = "seatgate_seat_audits_total";
/// Counter: members by which a recount differed from the live count (absolute drift).
pub const AUDIT_DRIFT_TOTAL: &str = "seatgate_seat_audit_drift_total";
/// Gauge, label `status` = `fresh` | `stale` | `expired`.
pub const SNAPSHOTS: &str = "seatgate_snapshots";
/// Counter, label `reason` = the gate's block code (`seat_limit_exceeded`,
/// `seat_check_pending`, `seat_audit_failed`, `seat_override_block`); one per hold, so a job
/// held across several retries counts each time the gate looks at it.
pub const JOBS_BLOCKED_TOTAL: &str = "seatgate_mirror_jobs_blocked_total";
/// Histogram, seconds from a mirror job's creation (the source event) to its delivery.
pub const MIRROR_LATENCY: &str = "seatgate_mirror_latency_seconds";
/// Histogram, seconds from a server going over its limit (pause, when enforcing) to its
/// going back under (resume), recorded by the auditor when it appends the resume event.
pub const PAUSE_TO_RESUME: &str = "seatgate_pause_to_resume_seconds";
/// Gauge, labels `queue` = `audit` | `mirror`, `status` = `pending` | `processing` | `failed`.
pub const QUEUE_DEPTH: &str = "seatgate_queue_depth";
/// Gauge, labels `queue`: seconds since the oldest due pending job became due.
pub const QUEUE_OLDEST_DUE: &str = "seatgate_queue_oldest_due_seconds";
/// Gauge: 1 while the global kill switch is on.
pub const KILL_SWITCH: &str = "seatgate_kill_switch";
/// Gauge, label `shard`: 1 while that gateway shard of this process is connected, else 0.
pub const SHARD_CONNECTED: &str = "seatgate_gateway_shard_connected";
/// Gauge: the gateway shards this process runs.
pub const SHARDS_HELD: &str = "seatgate_gateway_shards_held";
/// Gauge (PostgreSQL): `serve` processes on the database with a heartbeat in the last 10 s.
pub const INSTANCES_LIVE: &str = "seatgate_instances_live";
/// Gauge: requests per second this process may send to Discord, its share of the token's
/// global limit among the live processes.
pub const DISCORD_GLOBAL_SHARE: &str = "seatgate_discord_global_share";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use. When another
/// recorder is already installed (a second test in the same process built its own), a
/// detached recorder still renders what the API sets on it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    .set_buckets(&[
                        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                    ])
                    // Pauses last minutes to days: buckets up to a week, so the guide's
                    // "long pauses" alert can see past an hour.
                    .and_then(|b| {
                        b.set_buckets_for_metric(
                            Matcher::Full(PAUSE_TO_RESUME.to_owned()),
                            &[
                                1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 21_600.0, 86_400.0,
                                259_200.0, 604_800.0,
                            ],
                        )
                    })
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            };
            let handle = builder()
                .install_recorder()
                .unwrap_or_else(|_| builder().build_recorder().handle());
            describe();
            handle
        })
        .clone()
}

fn describe() {
    ::metrics::describe_counter!(AUDITS_TOTAL, "Seat recounts from Discord, by result");
    ::metrics::describe_counter!(
        AUDIT_DRIFT_TOTAL,
        "Members by which recounts differed from the live count"
    );
    ::metrics::describe_gauge!(SNAPSHOTS, "Server snapshots by freshness status");
    ::metrics::describe_counter!(
        JOBS_BLOCKED_TOTAL,
        "Mirror jobs held by the gate, by reason"
    );
    ::metrics::describe_histogram!(MIRROR_LATENCY, "Mirror job creation to delivery, seconds");
    ::metrics::describe_histogram!(PAUSE_TO_RESUME, "Over the limit to back under, seconds");
    ::metrics::describe_gauge!(QUEUE_DEPTH, "Jobs per queue and status");
    ::metrics::describe_gauge!(
        QUEUE_OLDEST_DUE,
        "Age of the oldest due pending job, seconds"
    );
    ::metrics::describe_gauge!(KILL_SWITCH, "1 while the global kill switch is on");
    ::metrics::describe_gauge!(SHARD_CONNECTED, "1 while the gateway shard is connected");
    ::metrics::describe_gauge!(SHARDS_HELD, "Gateway shards this process runs");
    ::metrics::describe_gauge!(INSTANCES_LIVE, "serve processes with a recent heartbeat");
    ::metrics::describe_gauge!(
        DISCORD_GLOBAL_SHARE,
        "This process's share of the bot token's global rate limit, requests/s"
    );
    // Counters exist from the start, so alerts on rate() see zero instead of no data.
    for result in ["ok", "failed"] {
        ::metrics::counter!(AUDITS_TOTAL, "result" => result).increment(0);
    }
    ::metrics::counter!(AUDIT_DRIFT_TOTAL).increment(0);
    use crate::discord::invalid_guard::{INVALID_REQUESTS, SLOWED};
    ::metrics::describe_gauge!(
        INVALID_REQUESTS,
        "Discord's 401/403/429 answers in the last 10 minutes (Discord bans at 10,000)"
    );
    ::metrics::describe_gauge!(
        SLOWED,
        "1 while the ban guard slows Discord requests to 5/s"
    );
    ::metrics::gauge!(INVALID_REQUESTS).set(0.0);
    ::metrics::gauge!(SLOWED).set(0.0);
    for reason in [
        "seat_limit_exceeded",
        "seat_check_pending",
        "seat_audit_failed",
        "seat_override_block",
    ] {
        ::metrics::counter!(JOBS_BLOCKED_TOTAL, "reason" => reason).increment(0);
    }
}

/// A scraper every second (or several) reads the database at most this often; the queue
/// depths it sees are at most this old. Counts run on the read pool, never on SQLite's one
/// writer connection.
pub const DB_READ_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

async fn refresh(state: &AppState) -> AppResult<()> {
    ::metrics::gauge!(KILL_SWITCH).set(if state.cache.kill_switch() { 1.0 } else { 0.0 });
    let shards = state.shards.list();
    ::metrics::gauge!(SHARDS_HELD).set(shards.len() as f64);
    for shard in &shards {
        ::metrics::gauge!(SHARD_CONNECTED, "shard" => shard.id.to_string())
            .set(if shard.connected() { 1.0 } else { 0.0 });
    }
    if let Some(guard) = &state.invalid_requests {
        guard.status(); // sets its gauges, with answers older than 10 minutes gone
    }
    {
        let mut read_at = state
            .metrics_read_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if read_at.is_some_and(|t| t.elapsed() < DB_READ_INTERVAL) {
            return Ok(());
        }
        *read_at = Some(std::time::Instant::now());
    }
    for (name, q) in queues::all_counts(state).await? {
        for (status, n) in [
            ("pending", q.pending),
            ("processing", q.processing),
            ("failed", q.failed),
        ] {
            ::metrics::gauge!(QUEUE_DEPTH, "queue" => name, "status" => status).set(n as f64);
        }
        ::metrics::gauge!(QUEUE_OLDEST_DUE, "queue" => name)
            .set(q.oldest_due_age_ms.unwrap_or(0) as f64 / 1000.0);
    }
    let now = now_ms();
    let (mut fresh, mut stale, mut expired) = (0u32, 0u32, 0u32);
    for s in ServerStore::new(state.db.clone()).all_snapshots().await? {
        let status = match Freshness::parse(&s.status) {
            Some(Freshness::Expired) => Freshness::Expired,
            _ => state.windows.classify(s.checked_at, now),
        };
        match status {
            Freshness::Fresh => fresh += 1,
            Freshness::Stale => stale += 1,
            Freshness::Expired => expired += 1,
        }
    }
    ::metrics::gauge!(SNAPSHOTS, "status" => "fresh").set(f64::from(fresh));
    ::metrics::gauge!(SNAPSHOTS, "status" => "stale").set(f64::from(stale));
    ::metrics::gauge!(SNAPSHOTS, "status" => "expired").set(f64::from(expired));
    Ok(())
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
#[get("/metrics")]
pub async fn prometheus(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    refresh(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render()))
}
