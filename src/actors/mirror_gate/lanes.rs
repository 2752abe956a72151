//! One lane per target channel: a channel's jobs are delivered one after another, in claim
//! order, and leave the worker through [`Worker::left`].

use super::*;

#[derive(Default)]
pub(super) struct RateLimitHolds {
    global: Option<Instant>,
    channels: HashMap<i64, Instant>,
}

impl RateLimitHolds {
    /// How long a delivery to `channel` must still wait, if at all.
    pub(super) fn wait(&mut self, channel: i64, now: Instant) -> Option<Duration> {
        self.channels.retain(|_, until| *until > now);
        let global = self.global.filter(|until| *until > now);
        self.global = global;
        let until = match (global, self.channels.get(&channel).copied()) {
            (Some(g), Some(c)) => g.max(c),
            (g, c) => g.or(c)?,
        };
        Some(until - now)
    }

    pub(super) fn hold(&mut self, channel: i64, global: bool, wait: Duration) {
        let until = Instant::now() + wait;
        if global {
            self.global = Some(self.global.map_or(until, |g| g.max(until)));
        } else {
            let entry = self.channels.entry(channel).or_insert(until);
            *entry = (*entry).max(until);
        }
    }
}

impl Worker {
    pub(super) fn dispatch(self: &Arc<Self>, prepared: Vec<Prepared>) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        for p in prepared {
            let channel = p.job.target_channel_id;
            match lanes.get_mut(&channel) {
                Some(queue) => queue.push_back(p),
                None => {
                    lanes.insert(channel, VecDeque::from([p]));
                    let me = self.clone();
                    tokio::spawn(async move { me.lane(channel).await });
                }
            }
        }
    }

    /// Delivers one target channel's jobs in order until its queue is empty.
    pub(super) async fn lane(self: Arc<Self>, channel: i64) {
        loop {
            let next = {
                let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
                match lanes.get_mut(&channel).and_then(VecDeque::pop_front) {
                    Some(p) => p,
                    None => {
                        lanes.remove(&channel);
                        drop(lanes);
                        self.forget_scan(snowflake::from_db(channel));
                        return;
                    }
                }
            };
            if self.lease_until(&next.job) <= now_ms() {
                // Waited past its lease: it is claimable again (maybe by another worker), so
                // this claim must not act on it.
                tracing::debug!(
                    job = next.job.id,
                    "[mirror] lease expired before delivery; left to the next claim"
                );
                self.left(next.job, None);
                continue;
            }
            if self.stopping.load(Ordering::SeqCst) {
                // Not started: back to the queue without counting an attempt.
                let outcome = Outcome::Release {
                    run_after: now_ms(),
                    code: None,
                    refund_attempt: true,
                };
                self.left(next.job, Some(outcome));
            } else {
                let _permit = self.delivering.acquire().await;
                let resumes_seen = self.resumes.load(Ordering::SeqCst);
                let outcome = self.process_guarded(&next).await;
                self.left_decided(next.job, Some(outcome), resumes_seen);
            }
        }
    }

    /// Until when this worker's claim on the job holds.
    pub(super) fn lease_until(&self, job: &MirrorJob) -> i64 {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        job.claim_token
            .as_ref()
            .and_then(|t| held.get(t))
            .map_or(job.lease_expires_at.unwrap_or(0), |h| h.until)
    }

    /// A job leaves the worker: its outcome, if any, goes to the settler; its place frees.
    pub(super) fn left(&self, job: MirrorJob, settlement: Option<Outcome>) {
        let now = self.resumes.load(Ordering::SeqCst);
        self.left_decided(job, settlement, now);
    }

    /// [`Self::left`] for a job decided when [`Self::resumes`] was `resumes_seen`.
    pub(super) fn left_decided(
        &self,
        job: MirrorJob,
        settlement: Option<Outcome>,
        resumes_seen: u64,
    ) {
        if let Some(token) = &job.claim_token {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = held.get_mut(token) {
                h.jobs = h.jobs.saturating_sub(1);
                if h.jobs == 0 {
                    held.remove(token);
                }
            }
        }
        if let Some(outcome) = settlement {
            let settlement = Settlement { job, outcome };
            if let Outcome::Complete {
                link: Some(link), ..
            } = &settlement.outcome
            {
                self.recent_links
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((link.mapping_id, link.source_message_id), link.clone());
            }
            if self
                .settle_tx
                .send(SettleMsg::Job {
                    settlement: Box::new(settlement),
                    resumes_seen,
                })
                .is_err()
            {
                tracing::warn!(
                    "[mirror] settler gone; the job's lease will expire and it runs again"
                );
            }
        }
        // Only a full worker's claim loop waits for room; waking it for every job that
        // leaves would have it claim (and find nothing) once per delivery.
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) >= self.claim_cap() {
            self.notify.notify_one();
        }
        self.drained.notify_one();
    }
}
