//! Deciding a claimed job: expired, held by the gate, or delivered; a delivery that panics or
//! hangs fails its job.

use super::*;

impl Worker {
    /// [`Self::process`], but a delivery that panics or outlasts `delivery_timeout` fails its
    /// job (retried with backoff) instead of taking its lane, its place in flight and its
    /// lease renewal down with it.
    pub(super) async fn process_guarded(&self, prepared: &Prepared) -> Outcome {
        let job = prepared.job.id;
        let run = std::panic::AssertUnwindSafe(self.process(prepared)).catch_unwind();
        let error = match tokio::time::timeout(self.cfg.delivery_timeout, run).await {
            Ok(Ok(outcome)) => return outcome,
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                tracing::error!(job, panic = %what, "[mirror] delivery panicked; the job is retried with backoff");
                format!("{}: {what}", ErrorCode::MirrorDeliveryPanicked)
            }
            Err(_) => {
                tracing::warn!(
                    job,
                    timeout_s = self.cfg.delivery_timeout.as_secs_f64(),
                    "[mirror] delivery timed out; the job is retried with backoff"
                );
                format!(
                    "{}: no answer within {:?}",
                    ErrorCode::MirrorDeliveryTimeout,
                    self.cfg.delivery_timeout
                )
            }
        };
        metrics::counter!("seatgate_mirror_deliveries_aborted_total").increment(1);
        Outcome::Fail {
            error,
            jitter: rand::random::<f64>(),
        }
    }

    /// Decides one job: gate, then delivery. Only webhook bookkeeping touches the database
    /// here; the job's own row is written by the settler.
    pub(super) async fn process(&self, prepared: &Prepared) -> Outcome {
        let job = &prepared.job;
        match self.decide(prepared).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::warn!(job = job.id, error = %err, "[mirror] job bookkeeping failed; retried with backoff");
                Outcome::Fail {
                    error: format!("{}: {err}", err.code()),
                    jitter: rand::random::<f64>(),
                }
            }
        }
    }

    pub(super) async fn decide(&self, prepared: &Prepared) -> AppResult<Outcome> {
        let job = &prepared.job;
        let now = now_ms();
        let finish = |status: &'static str, error: &str| Outcome::Finish {
            status,
            error: error.to_owned(),
            broken: None,
        };
        let Some(kind) = parse_kind(&job.kind) else {
            return Ok(finish(FAILED, "validation_failed: unknown job kind"));
        };
        if is_expired(
            kind,
            job.created_at,
            now,
            self.cfg.max_age.as_millis() as i64,
        ) {
            tracing::info!(job = job.id, "[mirror] {}", ErrorCode::MirrorJobExpired);
            return Ok(finish(EXPIRED, ErrorCode::MirrorJobExpired.as_str()));
        }
        if kind != JobKind::Delete {
            // Deletes only remove copies: they go for a deleted or switched-off mapping too.
            let run = self.cache.connector_run(&job.tenant_key, &job.connector_id);
            let mapping = prepared.mapping.as_deref();
            if run == ConnectorRun::Deleted || mapping.is_some_and(|m| m.deleted_at.is_some()) {
                return Ok(finish(CANCELLED, "mapping_deleted"));
            }
            if run == ConnectorRun::Disabled || mapping.is_some_and(|m| !m.enabled) {
                return Ok(Outcome::Release {
                    run_after: now + self.cfg.held_retry.as_millis() as i64,
                    code: Some(ErrorCode::MirrorDisabled.as_str().to_owned()),
                    refund_attempt: true,
                });
            }
        }
        let key = ServerKey {
            tenant_key: job.tenant_key.clone(),
            connector_id: job.connector_id.clone(),
            guild_id: snowflake::from_db(job.target_guild_id),
        };
        let decision = gate::decide(
            self.cache.kill_switch(),
            self.cache.policy(&key).as_ref(),
            self.cache.snapshot(&key).as_ref(),
            kind,
            now,
            &self.cfg.windows,
        );
        if decision.enqueue_audit() {
            self.ask_for_audit(&key);
        }
        match decision {
            GateDecision::Block { code, .. } => {
                metrics::counter!("seatgate_mirror_jobs_blocked_total", "reason" => code.as_str())
                    .increment(1);
                tracing::debug!(job = job.id, server = %key, code = %code, "[mirror] held");
                return Ok(Outcome::Release {
                    run_after: now + self.cfg.held_retry.as_millis() as i64,
                    code: Some(code.as_str().to_owned()),
                    refund_attempt: true,
                });
            }
            GateDecision::AllowShadow { would_block, .. } => {
                tracing::info!(job = job.id, server = %key, code = %would_block, "[mirror] would block (shadow mode)");
            }
            GateDecision::Allow { .. } => {}
        }
        let hold = self
            .rate_limited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wait(job.target_channel_id, Instant::now());
        if let Some(wait) = hold {
            // Discord asked us to wait: no request until then; not an attempt.
            return Ok(Outcome::Release {
                run_after: now + wait.as_millis() as i64 + 1,
                code: Some(ErrorCode::DiscordRateLimited.as_str().to_owned()),
                refund_attempt: true,
            });
        }
        let Some(mapping) = prepared.mapping.as_deref() else {
            return Ok(finish(CANCELLED, "mapping_deleted"));
        };
        let (delivery, link_change) = self.deliver(prepared, kind, mapping).await?;
        let now = now_ms();
        Ok(match delivery {
            Delivery::Done => {
                let latency = (now - job.created_at).max(0) as f64 / 1000.0;
                metrics::histogram!("seatgate_mirror_latency_seconds").record(latency);
                let (link, unlink) = match link_change {
                    LinkChange::None => (None, None),
                    LinkChange::Add(link) => (Some(link), None),
                    LinkChange::Remove => (
                        None,
                        Some((mapping.id, snowflake::from_db(job.source_message_id))),
                    ),
                    LinkChange::Replace(link) => (
                        Some(link),
                        Some((mapping.id, snowflake::from_db(job.source_message_id))),
                    ),
                };
                Outcome::Complete { link, unlink }
            }
            Delivery::RateLimited { wait, global } => {
                metrics::counter!("seatgate_mirror_rate_limited_total", "global" => if global { "true" } else { "false" })
                    .increment(1);
                self.rate_limited
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .hold(job.target_channel_id, global, wait);
                tracing::debug!(
                    job = job.id,
                    wait_ms = wait.as_millis() as u64,
                    "[mirror] rate limited; rescheduled"
                );
                Outcome::Release {
                    run_after: now + wait.as_millis() as i64,
                    code: Some(ErrorCode::DiscordRateLimited.as_str().to_owned()),
                    refund_attempt: true,
                }
            }
            Delivery::WebhookGone => Outcome::Release {
                run_after: now,
                code: Some(ErrorCode::DiscordUnknownWebhook.as_str().to_owned()),
                refund_attempt: false,
            },
            Delivery::Broken(code) => {
                tracing::warn!(job = job.id, mapping = job.mapping_id, code = %code, "[mirror] target refused for good; mapping marked broken");
                Outcome::Finish {
                    status: FAILED,
                    error: code.as_str().to_owned(),
                    broken: Some(code),
                }
            }
            Delivery::Rejected(error) => {
                tracing::warn!(job = job.id, mapping = job.mapping_id, error = %error, "[mirror] Discord refused the message itself; the job ends without retries");
                Outcome::Finish {
                    status: FAILED,
                    error,
                    broken: None,
                }
            }
            Delivery::Failed(error) => {
                tracing::info!(job = job.id, error = %error, attempt = job.attempts, "[mirror] delivery failed");
                Outcome::Fail {
                    error,
                    jitter: rand::random::<f64>(),
                }
            }
        })
    }

    pub(super) fn ask_for_audit(&self, key: &ServerKey) {
        let Some(auditor) = &self.auditor else { return };
        let mut asked = self.audit_asked.lock().unwrap_or_else(|p| p.into_inner());
        let due = asked
            .get(key)
            .is_none_or(|at| at.elapsed() > Duration::from_secs(5));
        if due {
            asked.insert(key.clone(), Instant::now());
            auditor.do_send(AuditRequested {
                key: key.clone(),
                reason: AuditReason::SnapshotMissing,
            });
        }
    }
}
