//! One durable queue mechanism for audit jobs and mirror jobs.
//!
//! - Enqueue with an optional dedupe key: a partial unique index keeps at most one pending or
//!   processing row per key, so concurrent enqueues cannot both win; a second enqueue returns
//!   the existing row and pulls its `run_after` earlier if asked to run sooner. The audit
//!   queue frees the key at claim, so it folds requests into a pending audit only.
//! - Claim takes due pending rows, then (at least once a second) rows whose lease expired,
//!   each kind in ONE statement that stamps the lease (claim token, worker, expiry) and bumps the attempt count:
//!   `FOR UPDATE SKIP LOCKED` on PostgreSQL, a plain `UPDATE ... RETURNING` on SQLite, whose
//!   single writer makes it safe. Each kind is read in order from its own partial index.
//! - Complete, fail and release are fenced by the claim token: a worker whose lease expired
//!   and was re-claimed by another changes nothing and is told so.
//!
//! Delivery is at least once; exactly-once effects come from the receiver (Discord's nonce,
//! the stored message link).

use std::{
    marker::PhantomData,
    sync::{atomic::AtomicI64, Arc},
    time::Duration,
};

use sea_orm::{ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, Statement, Value};

use crate::{
    domain::backoff::{RetryDecision, RetryPolicy},
    error::AppResult,
    store::Database,
};

pub const PENDING: &str = "pending";
pub const PROCESSING: &str = "processing";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

/// The queue columns every job row has; implemented by the job entities' models.
pub trait JobRow: FromQueryResult + Send + Sync {
    fn job_id(&self) -> i64;
    fn claim_token(&self) -> Option<&str>;
    fn attempts(&self) -> i32;
    fn max_attempts(&self) -> i32;
}

macro_rules! impl_job_row {
    ($model:ty) => {
        impl JobRow for $model {
            fn job_id(&self) -> i64 {
                self.id
            }
            fn claim_token(&self) -> Option<&str> {
                self.claim_token.as_deref()
            }
            fn attempts(&self) -> i32 {
                self.attempts
            }
            fn max_attempts(&self) -> i32 {
                self.max_attempts
            }
        }
    };
}
impl_job_row!(entities::discord_seat_audit_jobs::Model);
impl_job_row!(entities::mirror_jobs::Model);

/// What to enqueue besides the payload columns.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    pub dedupe_key: Option<String>,
    /// Earliest run time, epoch ms.
    pub run_after: i64,
    /// Overrides the queue's policy.
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: i64,
    /// True when a live row with the same dedupe key already existed and was returned.
    pub deduped: bool,
}

/// Result of a fenced operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    Applied,
    /// The claim token no longer matches (lease expired and re-claimed, or already done).
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back to pending, due at this time (epoch ms).
    Rescheduled {
        run_after: i64,
    },
    /// Gave up after the last attempt.
    Failed,
    Stale,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueCounts {
    pub pending: i64,
    pub processing: i64,
    pub failed: i64,
    /// Age in ms of the oldest pending row that is due, if any.
    pub oldest_due_age_ms: Option<i64>,
}

/// A queue over one job table. `E` is the table's entity.
pub struct Queue<E: EntityTrait> {
    db: Database,
    table: &'static str,
    policy: RetryPolicy,
    /// Extra condition on a claimable row `j` (the mirror queue keeps per-message order).
    claim_guard: &'static str,
    /// Claim clears the dedupe key, so a request that arrives while its job runs queues one
    /// more run instead of folding into a run that may already have read the old state.
    claim_frees_dedupe_key: bool,
    /// When this queue (and its clones) last looked for expired leases.
    last_reclaim: Arc<AtomicI64>,
    /// Several processes claim from this queue (PostgreSQL with shard leases): see
    /// [`MirrorQueue::across_processes`].
    across_processes: bool,
    _entity: PhantomData<E>,
}

/// How often a claim loop that keeps finding due rows also looks for expired leases.
const RECLAIM_EVERY_MS: i64 = 1_000;

impl<E: EntityTrait> Clone for Queue<E> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            table: self.table,
            policy: self.policy,
            claim_guard: self.claim_guard,
            claim_frees_dedupe_key: self.claim_frees_dedupe_key,
            last_reclaim: self.last_reclaim.clone(),
            across_processes: self.across_processes,
            _entity: PhantomData,
        }
    }
}

pub type AuditQueue = Queue<entities::discord_seat_audit_jobs::Entity>;
pub type MirrorQueue = Queue<entities::mirror_jobs::Entity>;

impl AuditQueue {
    /// One pending audit per server; a request while the audit runs queues the next one
    /// (the running one may have read the guild or the config before the change it reports).
    pub fn audit(db: Database, policy: RetryPolicy) -> Self {
        let mut q = Queue::new(db, "discord_seat_audit_jobs", policy);
        q.claim_frees_dedupe_key = true;
        q
    }
}

/// A mirror job waits while an earlier job for the same message and mapping is live, so a
/// send goes before its edits and its delete.
const MIRROR_ORDER_GUARD: &str = "AND NOT EXISTS (SELECT 1 FROM mirror_jobs p \
     WHERE p.mapping_id = j.mapping_id AND p.source_message_id = j.source_message_id \
     AND p.id < j.id AND p.status IN ('pending', 'processing'))";

/// The advisory lock that serialises claims across processes ("seatgate" in ASCII, its
/// last bit flipped: not the instance lease's key).
const CLAIM_LOCK: i64 = 0x7365_6174_6761_7465 ^ 1;

impl MirrorQueue {
    pub fn mirror(db: Database, policy: RetryPolicy) -> Self {
        let mut q = Queue::new(db, "mirror_jobs", policy);
        q.claim_guard = MIRROR_ORDER_GUARD;
        q
    }

    /// Per-target order across processes (PostgreSQL): a job is not claimed while an earlier
    /// job for the same target channel is held by another process (its lease live, or
    /// expired and not yet taken again: a claim takes expired leases first, so the earlier
    /// job and the later go to one process, in id order), and claims run one at a time
    /// under a transaction-scoped advisory lock, so that a claim sees the one before it
    /// committed (under READ COMMITTED two concurrent claims would not see each other's rows
    /// and could both take a channel's jobs). Within a process the channel's lane keeps the
    /// order, as on a single process. Ingest then writes new jobs pending rather than
    /// claimed for itself (`MirrorGateConfig::handover`), so every job passes this claim.
    pub fn across_processes(mut self) -> Self {
        self.across_processes = self.db.backend() == DatabaseBackend::Postgres;
        self
    }
}

/// The lease a worker holds on rows written already claimed for it
/// ([`Queue::enqueue_many_claimed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimStamp {
    pub worker: String,
    pub token: String,
    /// Epoch ms.
    pub lease_expires_at: i64,
}

/// The two kinds of row a claim takes.
#[derive(Clone, Copy)]
enum Claimable {
    /// Processing, but its worker's lease ran out.
    LeaseExpired,
    /// Pending and due.
    Due,
}

/// Builds numbered placeholders the way each backend spells them.
struct Params {
    backend: DatabaseBackend,
    values: Vec<Value>,
}

impl Params {
    fn new(backend: DatabaseBackend) -> Self {
        Self {
            backend,
            values: Vec::new(),
        }
    }

    fn push(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            DatabaseBackend::Postgres => format!("${}", self.values.len()),
            _ => format!("?{}", self.values.len()),
        }
    }

    fn statement(self, sql: String) -> Statement {
        Statement::from_sql_and_values(self.backend, sql, self.values)
    }
}

impl<E> Queue<E>
where
    E: EntityTrait,
    E::Model: JobRow,
{
    pub fn new(db: Database, table: &'static str, policy: RetryPolicy) -> Self {
        Self {
            db,
            table,
            policy,
            claim_guard: "",
            claim_frees_dedupe_key: false,
            last_reclaim: Arc::new(AtomicI64::new(i64::MIN / 2)),
            across_processes: false,
            _entity: PhantomData,
        }
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Inserts a job with its payload columns, or returns the live row with the same dedupe
    /// key. `conn` may be a transaction, so that a job is written together with what caused it.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        conn: &C,
        columns: &[(&'static str, Value)],
        options: EnqueueOptions,
        now: i64,
    ) -> AppResult<Enqueued> {
        let max_attempts = options.max_attempts.unwrap_or(self.policy.max_attempts) as i32;
        // A live row can finish between the insert that lost and the lookup: try again.
        for _ in 0..5 {
            let mut p = Params::new(conn.get_database_backend());
            let mut names = vec![
                "status",
                "dedupe_key",
                "run_after",
                "attempts",
                "max_attempts",
                "created_at",
                "updated_at",
            ];
            let mut placeholders = vec![
                p.push(PENDING),
                p.push(options.dedupe_key.clone()),
                p.push(options.run_after),
                p.push(0i32),
                p.push(max_attempts),
                p.push(now),
                p.push(now),
            ];
            for (name, value) in columns {
                names.push(name);
                placeholders.push(p.push(value.clone()));
            }
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING RETURNING id",
                self.table,
                names.join(", "),
                placeholders.join(", ")
            );
            if let Some(row) = conn.query_one_raw(p.statement(sql)).await? {
                let id: i64 = row.try_get("", "id")?;
                return Ok(Enqueued { id, deduped: false });
            }
            let Some(key) = options.dedupe_key.as_ref() else {
                // No dedupe key and nothing inserted: only a foreign conflict can cause this.
                return Err(crate::AppError::internal(format!(
                    "insert into {} was refused without a dedupe key",
                    self.table
                )));
            };
            let mut p = Params::new(conn.get_database_backend());
            let ra = p.push(options.run_after);
            let now_p = p.push(now);
            let key_p = p.push(key.clone());
            let sql = format!(
                "UPDATE {t} SET run_after = CASE WHEN status = '{PENDING}' AND run_after > {ra} \
                 THEN {ra} ELSE run_after END, updated_at = {now_p} \
                 WHERE dedupe_key = {key_p} AND status IN ('{PENDING}', '{PROCESSING}') RETURNING id",
                t = self.table
            );
            if let Some(row) = conn.query_one_raw(p.statement(sql)).await? {
                let id: i64 = row.try_get("", "id")?;
                return Ok(Enqueued { id, deduped: true });
            }
        }
        Err(crate::AppError::internal(format!(
            "enqueue into {} kept racing with completions",
            self.table
        )))
    }

    /// Enqueues several rows in one statement, due at `now`; returns how many were written. A
    /// row may carry a `dedupe_key` column: a row whose key is live already is skipped. Every
    /// row must name the same columns in the same order.
    pub async fn enqueue_many<C: ConnectionTrait>(
        &self,
        conn: &C,
        rows: &[Vec<(&'static str, Value)>],
        now: i64,
    ) -> AppResult<u64> {
        let mut inserted = 0;
        // Bounded statements: SQLite allows 32,766 parameters in one.
        for chunk in rows.chunks(500) {
            let (sql, p) = self.insert_rows(conn.get_database_backend(), chunk, None, now)?;
            inserted += conn.execute_raw(p.statement(sql)).await?.rows_affected();
        }
        Ok(inserted)
    }

    /// [`Self::enqueue_many`], the rows written already claimed under `stamp` (processing,
    /// first attempt, leased): for a worker in this process that takes them straight from
    /// the writer, without a claim statement. Returns the rows written. Should the worker
    /// never see them, their lease expires and any worker claims them, as after a crash.
    pub async fn enqueue_many_claimed<C: ConnectionTrait>(
        &self,
        conn: &C,
        rows: &[Vec<(&'static str, Value)>],
        stamp: &ClaimStamp,
        now: i64,
    ) -> AppResult<Vec<E::Model>> {
        let mut written = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(500) {
            let (sql, p) =
                self.insert_rows(conn.get_database_backend(), chunk, Some(stamp), now)?;
            let statement = p.statement(format!("{sql} RETURNING *"));
            written.extend(E::find().from_raw_sql(statement).all(conn).await?);
        }
        Ok(written)
    }

    fn insert_rows(
        &self,
        backend: DatabaseBackend,
        rows: &[Vec<(&'static str, Value)>],
        stamp: Option<&ClaimStamp>,
        now: i64,
    ) -> AppResult<(String, Params)> {
        let first = rows.first().map(Vec::as_slice).unwrap_or_default();
        let mut names = vec![
            "status",
            "run_after",
            "attempts",
            "max_attempts",
            "created_at",
            "updated_at",
            "lease_owner",
            "lease_expires_at",
            "claim_token",
        ];
        names.extend(first.iter().map(|(name, _)| *name));
        let mut p = Params::new(backend);
        let mut tuples = Vec::with_capacity(rows.len());
        for row in rows {
            if row.len() != first.len() || row.iter().zip(first).any(|(a, b)| a.0 != b.0) {
                return Err(crate::AppError::internal(format!(
                    "enqueue_many into {}: rows name different columns",
                    self.table
                )));
            }
            let mut placeholders = vec![
                p.push(if stamp.is_some() { PROCESSING } else { PENDING }),
                p.push(now),
                p.push(i32::from(stamp.is_some())),
                p.push(self.policy.max_attempts as i32),
                p.push(now),
                p.push(now),
                p.push(stamp.map(|s| s.worker.clone())),
                p.push(stamp.map(|s| s.lease_expires_at)),
                p.push(stamp.map(|s| s.token.clone())),
            ];
            placeholders.extend(row.iter().map(|(_, value)| p.push(value.clone())));
            tuples.push(format!("({})", placeholders.join(", ")));
        }
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {} ON CONFLICT DO NOTHING",
            self.table,
            names.join(", "),
            tuples.join(", ")
        );
        Ok((sql, p))
    }

    /// Claims up to `limit` due rows (pending and due, or processing with an expired lease)
    /// for `worker`: due rows in one statement, expired leases in another.
    pub async fn claim(
        &self,
        worker: &str,
        limit: u64,
        lease: Duration,
        now: i64,
    ) -> AppResult<Vec<E::Model>> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        // Due pending rows, then (when this queue has not looked for a second) rows whose
        // lease expired: each read in its partial index's order. A claim costs one statement
        // (also the many that find nothing), and a dead worker's jobs are taken within a
        // second of their lease running out.
        // With several processes, expired leases first: a channel's later jobs wait behind
        // another process's jobs whose lease ran out (see the claim guard), and both go to
        // this process's lanes in id order.
        let order = if self.across_processes {
            [Claimable::LeaseExpired, Claimable::Due]
        } else {
            [Claimable::Due, Claimable::LeaseExpired]
        };
        let reclaim = self.reclaim_due(now);
        let mut rows = Vec::new();
        for which in order {
            if matches!(which, Claimable::LeaseExpired) && !reclaim {
                continue;
            }
            let room = limit.saturating_sub(rows.len() as u64);
            if room == 0 {
                break;
            }
            rows.extend(
                self.claim_some(worker, &token, room, lease, now, which)
                    .await?,
            );
        }
        if self.across_processes {
            rows.sort_by_key(|r| r.job_id());
        }
        Ok(rows)
    }

    /// Whether this claim also looks for expired leases (at most once a second per queue).
    fn reclaim_due(&self, now: i64) -> bool {
        let last = self.last_reclaim.load(std::sync::atomic::Ordering::Relaxed);
        if now - last < RECLAIM_EVERY_MS {
            return false;
        }
        self.last_reclaim
            .store(now, std::sync::atomic::Ordering::Relaxed);
        true
    }

    async fn claim_some(
        &self,
        worker: &str,
        token: &str,
        limit: u64,
        lease: Duration,
        now: i64,
        which: Claimable,
    ) -> AppResult<Vec<E::Model>> {
        let backend = self.db.backend();
        let mut p = Params::new(backend);
        let owner = p.push(worker.to_owned());
        let expires = p.push(now + lease.as_millis() as i64);
        let token_p = p.push(token.to_owned());
        let now_p = p.push(now);
        let limit_p = p.push(limit as i64);
        let lock = match backend {
            DatabaseBackend::Postgres => "FOR UPDATE SKIP LOCKED",
            _ => "",
        };
        let other_holder = if self.across_processes {
            format!(
                " AND NOT EXISTS (SELECT 1 FROM {t} o WHERE o.target_channel_id = j.target_channel_id \
                 AND o.id < j.id AND o.status = '{PROCESSING}' AND o.lease_owner <> {owner})",
                t = self.table
            )
        } else {
            String::new()
        };
        let (condition, order) = match which {
            Claimable::LeaseExpired => (
                format!("j.status = '{PROCESSING}' AND j.lease_expires_at <= {now_p}"),
                "j.lease_expires_at",
            ),
            Claimable::Due => (
                format!("j.status = '{PENDING}' AND j.run_after <= {now_p}"),
                "j.run_after, j.id",
            ),
        };
        let sql = format!(
            "UPDATE {t} SET status = '{PROCESSING}', lease_owner = {owner}, \
             lease_expires_at = {expires}, claim_token = {token_p}, attempts = attempts + 1, \
             updated_at = {now_p}{free_key} \
             WHERE id IN (SELECT j.id FROM {t} j WHERE {condition} {guard}{other_holder} \
               ORDER BY {order} LIMIT {limit_p} {lock}) \
             RETURNING *",
            t = self.table,
            guard = self.claim_guard,
            free_key = if self.claim_frees_dedupe_key {
                ", dedupe_key = NULL"
            } else {
                ""
            },
        );
        if self.across_processes {
            use sea_orm::TransactionTrait;
            let txn = self.db.claim_conn().begin().await?;
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT pg_advisory_xact_lock($1)",
                [CLAIM_LOCK.into()],
            ))
            .await?;
            let rows = E::find().from_raw_sql(p.statement(sql)).all(&txn).await?;
            txn.commit().await?;
            return Ok(rows);
        }
        let rows = E::find()
            .from_raw_sql(p.statement(sql))
            .all(self.db.claim_conn())
            .await?;
        Ok(rows)
    }

    /// Marks a claimed job done.
    pub async fn complete(&self, id: i64, token: &str, now: i64) -> AppResult<Fenced> {
        self.complete_on(self.db.conn(), id, token, now).await
    }

    pub async fn complete_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: i64,
        token: &str,
        now: i64,
    ) -> AppResult<Fenced> {
        let mut p = Params::new(self.db.backend());
        let now_p = p.push(now);
        let id_p = p.push(id);
        let tok = p.push(token.to_owned());
        let sql = format!(
            "UPDATE {t} SET status = '{DONE}', finished_at = {now_p}, updated_at = {now_p}, \
             lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = {id_p} AND claim_token = {tok} AND status = '{PROCESSING}'",
            t = self.table
        );
        Self::fenced_on(conn, p.statement(sql)).await
    }

    /// Marks several jobs of one claim done in one statement; returns how many were still
    /// held under `token` (the others were re-claimed elsewhere and are left alone).
    pub async fn complete_batch(&self, ids: &[i64], token: &str, now: i64) -> AppResult<u64> {
        self.complete_batch_on(self.db.conn(), ids, token, now)
            .await
    }

    /// Completes every listed job still held under `token`; returns how many were.
    pub async fn complete_batch_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        ids: &[i64],
        token: &str,
        now: i64,
    ) -> AppResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut p = Params::new(self.db.backend());
        let now_p = p.push(now);
        let tok = p.push(token.to_owned());
        let list: Vec<String> = ids.iter().map(|id| p.push(*id)).collect();
        let sql = format!(
            "UPDATE {t} SET status = '{DONE}', finished_at = {now_p}, updated_at = {now_p}, \
             lease_owner = NULL, lease_expires_at = NULL \
             WHERE claim_token = {tok} AND status = '{PROCESSING}' AND id IN ({list})",
            t = self.table,
            list = list.join(", ")
        );
        let res = conn.execute_raw(p.statement(sql)).await?;
        Ok(res.rows_affected())
    }

    /// Records a failed attempt: back to pending after the backoff delay, or `failed` after
    /// the last attempt. `jitter` in `[0, 1)`.
    pub async fn fail(
        &self,
        job: &E::Model,
        error: &str,
        now: i64,
        jitter: f64,
    ) -> AppResult<FailOutcome> {
        self.fail_on(self.db.conn(), job, error, now, jitter).await
    }

    pub async fn fail_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        job: &E::Model,
        error: &str,
        now: i64,
        jitter: f64,
    ) -> AppResult<FailOutcome> {
        let Some(token) = job.claim_token() else {
            return Ok(FailOutcome::Stale);
        };
        let policy = RetryPolicy {
            max_attempts: job.max_attempts().max(1) as u32,
            ..self.policy
        };
        match policy.decide(job.attempts().max(0) as u32, jitter) {
            RetryDecision::RetryAfter(delay) => {
                let run_after = now + delay.as_millis() as i64;
                match self
                    .release_on(
                        conn,
                        job.job_id(),
                        token,
                        run_after,
                        Some(error),
                        false,
                        now,
                    )
                    .await?
                {
                    Fenced::Applied => Ok(FailOutcome::Rescheduled { run_after }),
                    Fenced::Stale => Ok(FailOutcome::Stale),
                }
            }
            RetryDecision::GiveUp => {
                match self
                    .finish_as_on(conn, job.job_id(), token, FAILED, error, now)
                    .await?
                {
                    Fenced::Applied => Ok(FailOutcome::Failed),
                    Fenced::Stale => Ok(FailOutcome::Stale),
                }
            }
        }
    }

    /// Ends a claimed job in a terminal `status` other than done (failed, expired,
    /// cancelled...) with `error` as its last error.
    pub async fn finish_as_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: i64,
        token: &str,
        status: &str,
        error: &str,
        now: i64,
    ) -> AppResult<Fenced> {
        let mut p = Params::new(self.db.backend());
        let status_p = p.push(status.to_owned());
        let err = p.push(error.to_owned());
        let now_p = p.push(now);
        let id_p = p.push(id);
        let tok = p.push(token.to_owned());
        let sql = format!(
            "UPDATE {t} SET status = {status_p}, last_error = {err}, finished_at = {now_p}, \
             updated_at = {now_p}, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = {id_p} AND claim_token = {tok} AND status = '{PROCESSING}'",
            t = self.table
        );
        Self::fenced_on(conn, p.statement(sql)).await
    }

    /// Puts a claimed job back to pending, due at `run_after`. With `refund_attempt` the
    /// claim does not count as an attempt (a gate block or a shutdown is not a failure).
    pub async fn release(
        &self,
        id: i64,
        token: &str,
        run_after: i64,
        last_error: Option<&str>,
        refund_attempt: bool,
        now: i64,
    ) -> AppResult<Fenced> {
        self.release_on(
            self.db.conn(),
            id,
            token,
            run_after,
            last_error,
            refund_attempt,
            now,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn release_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: i64,
        token: &str,
        run_after: i64,
        last_error: Option<&str>,
        refund_attempt: bool,
        now: i64,
    ) -> AppResult<Fenced> {
        let mut p = Params::new(self.db.backend());
        let ra = p.push(run_after);
        let err = p.push(last_error.map(str::to_owned));
        let now_p = p.push(now);
        let id_p = p.push(id);
        let tok = p.push(token.to_owned());
        let refund = if refund_attempt {
            "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, "
        } else {
            ""
        };
        let sql = format!(
            "UPDATE {t} SET status = '{PENDING}', run_after = {ra}, last_error = {err}, {refund}\
             updated_at = {now_p}, lease_owner = NULL, lease_expires_at = NULL, claim_token = NULL \
             WHERE id = {id_p} AND claim_token = {tok} AND status = '{PROCESSING}'",
            t = self.table
        );
        Self::fenced_on(conn, p.statement(sql)).await
    }

    /// Extends the leases of the jobs still held under these claim tokens, so that a job
    /// waiting its turn behind others of its channel is not claimed a second time.
    pub async fn extend_leases(&self, tokens: &[String], until: i64, now: i64) -> AppResult<u64> {
        let mut extended = 0;
        for chunk in tokens.chunks(500) {
            let mut p = Params::new(self.db.backend());
            let until_p = p.push(until);
            let now_p = p.push(now);
            let list: Vec<String> = chunk.iter().map(|t| p.push(t.clone())).collect();
            // Rows a settle is writing are skipped, not waited for: they are about to be
            // done, and waiting on them in another order than the settle deadlocked.
            let lock = match self.db.backend() {
                DatabaseBackend::Postgres => "FOR UPDATE SKIP LOCKED",
                _ => "",
            };
            let sql = format!(
                "UPDATE {t} SET lease_expires_at = {until_p}, updated_at = {now_p} \
                 WHERE id IN (SELECT id FROM {t} WHERE status = '{PROCESSING}' \
                 AND claim_token IN ({list}) {lock})",
                t = self.table,
                list = list.join(", ")
            );
            extended += self
                .db
                .claim_conn()
                .execute_raw(p.statement(sql))
                .await?
                .rows_affected();
        }
        Ok(extended)
    }

    /// Returns every lease `worker` holds to pending at once (graceful stop).
    pub async fn release_worker(&self, worker: &str, now: i64) -> AppResult<u64> {
        let mut p = Params::new(self.db.backend());
        let now_p = p.push(now);
        let owner = p.push(worker.to_owned());
        let sql = format!(
            "UPDATE {t} SET status = '{PENDING}', run_after = {now_p}, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             updated_at = {now_p}, lease_owner = NULL, lease_expires_at = NULL, claim_token = NULL \
             WHERE lease_owner = {owner} AND status = '{PROCESSING}'",
            t = self.table
        );
        let res = self.db.conn().execute_raw(p.statement(sql)).await?;
        Ok(res.rows_affected())
    }

    /// Depth per live status (pending, processing, failed) and the age of the oldest due
    /// pending row, read through `(status, run_after)` on the read connection: the rows
    /// read are the live ones, not the finished jobs retention keeps for days
    /// ([`Self::done_count`] counts those).
    pub async fn counts(&self, now: i64) -> AppResult<QueueCounts> {
        let mut p = Params::new(self.db.backend());
        let now_p = p.push(now);
        let sql = format!(
            "SELECT status, COUNT(*) AS n, MIN(CASE WHEN run_after <= {now_p} THEN run_after END) AS oldest \
             FROM {t} WHERE status IN ('{PENDING}', '{PROCESSING}', '{FAILED}') GROUP BY status",
            t = self.table
        );
        let rows = self.db.read_conn().query_all_raw(p.statement(sql)).await?;
        let mut counts = QueueCounts::default();
        for row in rows {
            let status: String = row.try_get("", "status")?;
            let n: i64 = row.try_get("", "n")?;
            match status.as_str() {
                PENDING => {
                    counts.pending = n;
                    let oldest: Option<i64> = row.try_get("", "oldest")?;
                    counts.oldest_due_age_ms = oldest.map(|t| (now - t).max(0));
                }
                PROCESSING => counts.processing = n,
                FAILED => counts.failed = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// Finished jobs still kept (until retention removes them): a count of the whole
    /// finished part of the table, for the operator's queue view, not for `/metrics`.
    pub async fn done_count(&self) -> AppResult<i64> {
        let p = Params::new(self.db.backend());
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {t} WHERE status = '{DONE}'",
            t = self.table
        );
        let row = self.db.read_conn().query_one_raw(p.statement(sql)).await?;
        Ok(match row {
            Some(r) => r.try_get("", "n")?,
            None => 0,
        })
    }

    /// One job by id.
    pub async fn get(&self, id: i64) -> AppResult<Option<E::Model>>
    where
        <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType: From<i64>,
    {
        Ok(E::find_by_id(id).one(self.db.conn()).await?)
    }

    async fn fenced_on<C: ConnectionTrait>(conn: &C, stmt: Statement) -> AppResult<Fenced> {
        let res = conn.execute_raw(stmt).await?;
        Ok(if res.rows_affected() == 1 {
            Fenced::Applied
        } else {
            Fenced::Stale
        })
    }
}
