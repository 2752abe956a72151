//! The audit worker: claims audit jobs, reads the guild and its member list from Discord page
//! by page, builds the index as the pages arrive (on the worker's task, not the actor's
//! thread), and hands the built index to the auditor, which applies the events that came in
//! meanwhile on top.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use actix::prelude::*;
use tokio::sync::Notify;

use super::{
    messages::{RecountDone, RecountFailed, RecountPlan, RecountProgress, RecountStarting},
    SeatAuditor, SeatAuditorConfig,
};
use crate::{
    discord::{
        port::{DiscordError, DiscordResult, GuildReader},
        shards::ShardStates,
    },
    domain::{seats::GuildIndex, server_key::ServerKey, snowflake},
    error::{AppError, AppResult, ErrorCode},
    store::{
        now_ms,
        queue::{AuditQueue, FailOutcome},
    },
};

/// Discord's largest member page.
pub const MEMBER_PAGE: u16 = 1000;

pub(super) struct AuditWorker {
    pub queue: AuditQueue,
    pub reader: Arc<dyn GuildReader>,
    pub auditor: Addr<SeatAuditor>,
    pub cfg: SeatAuditorConfig,
    pub stop: Arc<AtomicBool>,
    pub wake: Arc<Notify>,
    pub shards: ShardStates,
}

/// A job for a guild on another process's shard goes back for its owner, this long later.
const NOT_OURS_BACKOFF_MS: i64 = 1_000;

impl AuditWorker {
    pub async fn run(self) {
        while !self.stop.load(Ordering::SeqCst) {
            let jobs = match self
                .queue
                .claim(&self.cfg.worker_id, 4, self.cfg.lease, now_ms())
                .await
            {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(error = %err, "[seat-audit] claim failed");
                    Vec::new()
                }
            };
            if jobs.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {},
                    _ = tokio::time::sleep(self.cfg.poll) => {},
                }
                continue;
            }
            for job in jobs {
                if let Err(err) = self.run_job(&job).await {
                    tracing::warn!(job = job.id, error = %err, "[seat-audit] job bookkeeping failed; its lease will expire");
                }
            }
        }
    }

    async fn run_job(&self, job: &entities::discord_seat_audit_jobs::Model) -> AppResult<()> {
        let key = ServerKey {
            tenant_key: job.tenant_key.clone(),
            connector_id: job.connector_id.clone(),
            guild_id: snowflake::from_db(job.guild_id),
        };
        let token = job.claim_token.clone().unwrap_or_default();
        if !self.shards.carries(key.guild_id) {
            // Its shard runs in another process, which counts it from its own index.
            let now = now_ms();
            self.queue
                .release(job.id, &token, now + NOT_OURS_BACKOFF_MS, None, true, now)
                .await?;
            return Ok(());
        }
        let gone = |e: MailboxError| AppError::internal(format!("auditor gone: {e}"));
        let plan = self
            .auditor
            .send(RecountStarting {
                key: key.clone(),
                job_id: job.id,
            })
            .await
            .map_err(gone)?;
        let Some(plan) = plan else {
            // Not configured (any more): nothing to count.
            self.queue.complete(job.id, &token, now_ms()).await?;
            return Ok(());
        };
        let started = Instant::now();
        match self.recount(&key, job.id, &plan).await {
            Ok((index, build)) => {
                let read = Instant::now();
                let members = index.member_count();
                let applied = self
                    .auditor
                    .send(RecountDone {
                        key: key.clone(),
                        job_id: job.id,
                        index: Box::new(index),
                    })
                    .await
                    .map_err(gone)?;
                // From the last member page to the count applied and published.
                let after_last_page = read.elapsed();
                self.queue.complete(job.id, &token, now_ms()).await?;
                metrics::counter!("seatgate_seat_audits_total", "result" => "ok").increment(1);
                tracing::info!(
                    server = %key,
                    members,
                    applied,
                    reason = %job.reason,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    index_build_ms = build.as_secs_f64() * 1e3,
                    after_last_page_ms = after_last_page.as_secs_f64() * 1e3,
                    "[seat-audit] recount done"
                );
            }
            Err(err) if bot_not_in_guild(&err) => {
                // Retrying with backoff would only collect more 403/404s, which Discord
                // counts towards its ban of 10,000 invalid requests per 10 minutes: one
                // attempt, then the auditor tries again at its recheck interval.
                let cause = format!("{}: {err}", ErrorCode::BotNotInGuild);
                self.queue.complete(job.id, &token, now_ms()).await?;
                metrics::counter!("seatgate_seat_audits_total", "result" => "failed").increment(1);
                tracing::warn!(server = %key, cause = %cause, "[seat-audit] the bot is not in this guild or cannot see it");
                self.auditor.do_send(RecountFailed {
                    key,
                    job_id: job.id,
                    cause,
                    for_good: true,
                });
            }
            Err(err) => {
                let cause = format!("{}: {err}", err.code());
                let outcome = self
                    .queue
                    .fail(job, &cause, now_ms(), rand::random::<f64>())
                    .await?;
                metrics::counter!("seatgate_seat_audits_total", "result" => "failed").increment(1);
                tracing::warn!(server = %key, cause = %cause, ?outcome, "[seat-audit] recount failed");
                self.auditor.do_send(RecountFailed {
                    key,
                    job_id: job.id,
                    cause,
                    for_good: outcome == FailOutcome::Failed,
                });
            }
        }
        Ok(())
    }

    /// Reads the guild, then its members a page at a time into the index being built; only
    /// one page of members is held besides the index. Also answers the time spent building.
    async fn recount(
        &self,
        key: &ServerKey,
        job_id: i64,
        plan: &RecountPlan,
    ) -> DiscordResult<(GuildIndex, std::time::Duration)> {
        let (structure, member_count) = self
            .reader
            .guild_structure(key.guild_id, &plan.mapped_channels)
            .await?;
        let member_count = member_count.or(plan.member_count);
        let mut index = GuildIndex::build(&structure, &plan.mapped_channels, plan.tiers);
        drop(structure);
        if let Some(n) = member_count {
            index.reserve_members(n.min(50_000_000) as usize);
        }
        let mut after = 0u64;
        let mut members = 0u64;
        let mut build = std::time::Duration::ZERO;
        loop {
            let page = self
                .reader
                .members_after(key.guild_id, after, MEMBER_PAGE)
                .await?;
            let at = Instant::now();
            for m in &page {
                index.member_upsert(m.user_id, &m.roles, m.is_bot);
            }
            build += at.elapsed();
            members += page.len() as u64;
            self.auditor.do_send(RecountProgress {
                key: key.clone(),
                job_id,
                members,
                member_count,
            });
            match page.last() {
                Some(last) if page.len() == usize::from(MEMBER_PAGE) && last.user_id > after => {
                    after = last.user_id
                }
                _ => break,
            }
        }
        let at = Instant::now();
        index.shrink_to_fit();
        build += at.elapsed();
        Ok((index, build))
    }
}

/// Discord's answer for a guild the bot is not in (404 Unknown Guild, 10004) or cannot read
/// (403 Missing Access, 50001).
fn bot_not_in_guild(err: &DiscordError) -> bool {
    matches!(
        err,
        DiscordError::MissingAccess | DiscordError::Rejected { code: 10004, .. }
    )
}
