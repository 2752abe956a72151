//! The settler: writes decided jobs in batches, one transaction per batch, and releases held
//! jobs in order with them.

use super::*;

impl Worker {
    /// Writes decided jobs in batches: whatever arrived while the previous write ran goes
    /// into the next one. Held jobs are released in order with them.
    pub(super) async fn settle_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<SettleMsg>) {
        let mut batch: Vec<Settlement> = Vec::new();
        let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
        let mut resumed: Vec<HeldScope> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    SettleMsg::Job {
                        settlement,
                        resumes_seen,
                    } => batch.push(self.unless_resumed(*settlement, resumes_seen)),
                    SettleMsg::ReleaseHeld(server) => resumed.push(server),
                    SettleMsg::Flush(tx) => flushes.push(tx),
                }
                if batch.len() < 1_000 && resumed.is_empty() {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.settle(&batch).await;
                let mut recent = self.recent_links.lock().unwrap_or_else(|p| p.into_inner());
                for s in &batch {
                    if let Outcome::Complete {
                        link: Some(link), ..
                    } = &s.outcome
                    {
                        recent.remove(&(link.mapping_id, link.source_message_id));
                    }
                }
                drop(recent);
                batch.clear();
            }
            for server in resumed.drain(..) {
                release_held(&self.store, &server).await;
            }
            // Completed sends let their edits and deletes be claimed; released holds are due.
            self.notify.notify_one();
            for tx in flushes.drain(..) {
                let _ = tx.send(());
            }
        }
    }

    pub(super) fn unless_resumed(
        &self,
        mut settlement: Settlement,
        resumes_seen: u64,
    ) -> Settlement {
        let resumes = self.resumes.load(Ordering::SeqCst);
        due_if_resumed_since(&mut settlement.outcome, resumes_seen, resumes, now_ms());
        settlement
    }

    pub(super) async fn settle(&self, batch: &[Settlement]) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            match self.store.settle(batch, now_ms()).await {
                Ok(counts) => {
                    metrics::counter!("seatgate_mirror_jobs_settled_total")
                        .increment(batch.len() as u64);
                    tracing::trace!(?counts, "[mirror] settled");
                    return;
                }
                Err(err) if attempt < 5 => {
                    tracing::warn!(error = %err, attempt, jobs = batch.len(), "[mirror] could not record outcomes; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => {
                    // Their leases expire and they run again; Discord's nonce and the stored
                    // links keep the repeat from duplicating a message.
                    tracing::error!(error = %err, jobs = batch.len(), "[mirror] outcomes not recorded; the jobs run again after their leases expire");
                }
            }
        }
    }
}

/// A hold (a gate code) decided when `resumes_seen` [`HeldJobsMayResume`] had arrived, now
/// that `resumes` have, is due at `now` rather than after `held_retry`: its decision may have
/// read the snapshot from before the change. One decided after the latest resume read the
/// new snapshot, and keeps its wait.
pub(super) fn due_if_resumed_since(
    outcome: &mut Outcome,
    resumes_seen: u64,
    resumes: u64,
    now: i64,
) {
    if let Outcome::Release {
        run_after,
        code: Some(code),
        ..
    } = outcome
    {
        let held = HELD_CODES.iter().any(|c| c.as_str() == code.as_str());
        if held && resumes_seen < resumes {
            *run_after = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(code: &str) -> Outcome {
        Outcome::Release {
            run_after: 30_000,
            code: Some(code.to_owned()),
            refund_attempt: true,
        }
    }

    fn run_after(outcome: &Outcome) -> i64 {
        match outcome {
            Outcome::Release { run_after, .. } => *run_after,
            _ => -1,
        }
    }

    #[test]
    fn a_hold_decided_before_a_resume_is_due_at_once_and_one_decided_after_waits() {
        let mut before = hold("seat_limit_exceeded");
        due_if_resumed_since(&mut before, 3, 4, 100);
        assert_eq!(run_after(&before), 100);

        let mut after = hold("seat_limit_exceeded");
        due_if_resumed_since(&mut after, 4, 4, 100);
        assert_eq!(
            run_after(&after),
            30_000,
            "no resume since: it keeps its wait"
        );

        // A rate-limit wait is Discord's, not the gate's: a resume does not shorten it.
        let mut rate_limited = hold("discord_rate_limited");
        due_if_resumed_since(&mut rate_limited, 3, 4, 100);
        assert_eq!(run_after(&rate_limited), 30_000);
    }
}
