//! The claim loop: claims due jobs (or takes sends written already claimed), keeps their
//! leases alive while they wait, and reads what their delivery needs once per batch.

use super::*;

impl Worker {
    /// The claim loop. Claimed jobs go to one lane per target channel (a task that delivers
    /// that channel's jobs one after another, in claim order); lanes hand their outcomes to
    /// the settler, which writes them in one transaction per batch. Claiming goes on while
    /// lanes deliver, up to [`Self::claim_cap`] jobs.
    pub(super) async fn run(self: Arc<Self>, settle_rx: mpsc::UnboundedReceiver<SettleMsg>) {
        let settler = tokio::spawn(self.clone().settle_loop(settle_rx));
        let renewer = tokio::spawn(self.clone().renew_leases());
        while !self.stopping.load(Ordering::SeqCst) {
            let room = self
                .claim_cap()
                .saturating_sub(self.in_flight.load(Ordering::SeqCst));
            if room == 0 {
                self.idle().await;
                continue;
            }
            let claimed = self
                .store
                .queue()
                .claim(
                    &self.cfg.worker_id,
                    self.cfg.batch.min(room as u64),
                    self.cfg.lease,
                    now_ms(),
                )
                .await;
            let jobs = match claimed {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(error = %err, "[mirror] claim failed; retrying");
                    self.idle().await;
                    continue;
                }
            };
            if jobs.is_empty() {
                self.idle().await;
                continue;
            }
            self.in_flight.fetch_add(jobs.len(), Ordering::SeqCst);
            {
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                for job in &jobs {
                    if let Some(token) = &job.claim_token {
                        held.entry(token.clone())
                            .or_insert(Held {
                                jobs: 0,
                                until: job.lease_expires_at.unwrap_or(0),
                            })
                            .jobs += 1;
                    }
                }
            }
            match self.prepare(jobs, None).await {
                Ok(prepared) => self.dispatch(prepared),
                Err((jobs, err)) => {
                    self.put_back(jobs, &err);
                    self.idle().await;
                }
            }
        }
        // Stopping: lanes hand back what they have not started; wait for them, then for the
        // settler to write everything.
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::select! {
                _ = self.drained.notified() => {},
                _ = tokio::time::sleep(Duration::from_millis(50)) => {},
            }
        }
        let (done_tx, done_rx) = oneshot::channel();
        if self.settle_tx.send(SettleMsg::Flush(done_tx)).is_ok() {
            let _ = done_rx.await;
        }
        settler.abort();
        renewer.abort();
    }

    /// A stamp for sends written already claimed, while there is room for them. The stamp's
    /// lease is held (and renewed) from now, so it cannot lapse between the write and
    /// [`Self::take`].
    pub(super) fn offer(&self) -> Option<ClaimStamp> {
        if self.stopping.load(Ordering::SeqCst)
            || self.in_flight.load(Ordering::SeqCst) >= self.claim_cap()
        {
            return None;
        }
        let stamp = ClaimStamp {
            worker: self.cfg.worker_id.clone(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            lease_expires_at: now_ms() + self.cfg.lease.as_millis() as i64,
        };
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(
            stamp.token.clone(),
            Held {
                jobs: 0,
                until: stamp.lease_expires_at,
            },
        );
        Some(stamp)
    }

    /// Delivers the sends written under `stamp` as if this worker had claimed them.
    pub(super) async fn take(self: Arc<Self>, stamp: ClaimStamp, sends: ClaimedSends) {
        let n = sends.jobs.len();
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if n == 0 {
                held.remove(&stamp.token);
                return;
            }
            held.entry(stamp.token)
                .or_insert(Held {
                    jobs: 0,
                    until: stamp.lease_expires_at,
                })
                .jobs += n;
        }
        self.in_flight.fetch_add(n, Ordering::SeqCst);
        let mappings = sends
            .mappings
            .into_iter()
            .map(|m| (m.id, Arc::new(m)))
            .collect();
        match self.prepare(sends.jobs, Some(mappings)).await {
            Ok(prepared) => self.dispatch(prepared),
            Err((jobs, err)) => self.put_back(jobs, &err),
        }
    }

    /// Every third of a lease, pushes the leases of the jobs this worker holds forward.
    pub(super) async fn renew_leases(self: Arc<Self>) {
        let every = (self.cfg.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let tokens: Vec<String> = self
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect();
            if tokens.is_empty() {
                continue;
            }
            let now = now_ms();
            let until = now + self.cfg.lease.as_millis() as i64;
            match self.store.queue().extend_leases(&tokens, until, now).await {
                Ok(_) => {
                    let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                    for token in &tokens {
                        if let Some(h) = held.get_mut(token) {
                            h.until = h.until.max(until);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "[mirror] could not renew leases; jobs that outwait them may be claimed again")
                }
            }
        }
    }

    /// Most jobs held claimed at once: beside other processes (no handover), what this
    /// process's share of the global limit sends in a couple of seconds.
    pub(super) fn claim_cap(&self) -> usize {
        let shared = (!self.cfg.handover)
            .then(|| self.port.sends_per_sec())
            .flatten();
        crate::domain::rate_limits::claim_cap(self.cfg.max_in_flight, shared)
    }

    pub(super) async fn idle(&self) {
        tokio::select! {
            _ = self.notify.notified() => {},
            _ = tokio::time::sleep(self.cfg.poll) => {},
        }
    }

    /// Reads the claimed jobs' mappings and links in two queries. Sends taken at ingest come
    /// with their mappings, and have no link of their own yet (a send is written only for a
    /// mapping with no send for that message): only the messages they reply to are read.
    pub(super) async fn prepare(
        &self,
        mut jobs: Vec<MirrorJob>,
        fresh_sends: Option<HashMap<i64, Arc<connector_mappings::Model>>>,
    ) -> Result<Vec<Prepared>, (Vec<MirrorJob>, crate::AppError)> {
        // RETURNING gives no order: within a channel, deliver in the order the source
        // messages were ingested.
        jobs.sort_by_key(|j| j.id);
        let fresh = fresh_sends.is_some();
        let mappings = match fresh_sends {
            Some(m) => m,
            None => {
                let mut mapping_ids: Vec<i64> = jobs.iter().map(|j| j.mapping_id).collect();
                mapping_ids.sort_unstable();
                mapping_ids.dedup();
                match self.store.mappings_by_id(&mapping_ids).await {
                    Ok(m) => m.into_iter().map(|(id, m)| (id, Arc::new(m))).collect(),
                    Err(err) => return Err((jobs, err)),
                }
            }
        };
        let payloads: Vec<Result<MirrorPayload, String>> = jobs
            .iter()
            .map(|j| decode(&j.payload).map_err(|e| e.message().to_owned()))
            .collect();
        let replies: Vec<Option<u64>> = jobs
            .iter()
            .zip(&payloads)
            .map(|(j, p)| {
                (j.kind == "send")
                    .then(|| p.as_ref().ok()?.reply_to_source_id)
                    .flatten()
            })
            .collect();
        let mut pairs: Vec<(i64, u64)> = if fresh {
            Vec::new()
        } else {
            jobs.iter()
                .map(|j| (j.mapping_id, snowflake::from_db(j.source_message_id)))
                .collect()
        };
        pairs.extend(
            jobs.iter()
                .zip(&replies)
                .filter_map(|(j, r)| r.map(|r| (j.mapping_id, r))),
        );
        let links = if pairs.is_empty() {
            HashMap::new()
        } else {
            match self.store.links_for(&pairs).await {
                Ok(l) => l,
                Err(err) => return Err((jobs, err)),
            }
        };
        let recent = self.recent_links.lock().unwrap_or_else(|p| p.into_inner());
        Ok(jobs
            .into_iter()
            .zip(replies)
            .zip(payloads)
            .map(|((job, reply), payload)| {
                let source = snowflake::from_db(job.source_message_id);
                let reply_target = reply.and_then(|r| {
                    links
                        .get(&(job.mapping_id, r))
                        .map(|l| snowflake::from_db(l.target_message_id))
                        .or_else(|| {
                            recent
                                .get(&(job.mapping_id, r))
                                .map(|l| l.target_message_id)
                        })
                });
                Prepared {
                    payload,
                    mapping: mappings.get(&job.mapping_id).cloned(),
                    link: links.get(&(job.mapping_id, source)).cloned(),
                    reply_target,
                    job,
                }
            })
            .collect())
    }

    /// Claimed jobs whose mappings and links could not be read go back to the queue.
    pub(super) fn put_back(&self, jobs: Vec<MirrorJob>, err: &AppError) {
        tracing::warn!(error = %err, jobs = jobs.len(), "[mirror] could not read mappings and links for claimed jobs; they go back to the queue");
        for job in jobs {
            self.left(
                job,
                Some(Outcome::Fail {
                    error: format!("{}: {err}", ErrorCode::DatabaseUnavailable),
                    jitter: rand::random::<f64>(),
                }),
            );
        }
    }
}
