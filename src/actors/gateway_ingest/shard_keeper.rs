//! Shard leases (PostgreSQL, `SEATGATE_SHARD_LEASES`): which gateway shards this process runs
//! when several share one database. Every [`LOOK_EVERY`] the keeper renews the leases it holds
//! (a lease lost, taken by another process after it expired: that shard stops here), gives up
//! what is over its fair share (`ceil(shards / live processes)`), and takes one free shard
//! when the IDENTIFY slot of that shard's bucket is open: Discord allows one IDENTIFY per
//! bucket (`shard_id % max_concurrency`) per 5 s, for every process together
//! (<https://discord.com/developers/docs/events/gateway#session-start-limit-object>). Each
//! shard runs in a serenity client of its own, so that one can start and stop without the
//! others. A graceful stop releases every lease at once; a killed process's leases expire
//! after [`LEASE_TTL`]. A shard whose lease cannot be renewed for [`UNCONFIRMED_LIMIT`] (the
//! database away) stops here before the lease can expire, so that no shard runs twice.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serenity::all::ShardManager;
use tokio::sync::oneshot;

use super::Handler;
use crate::{
    actors::seat_auditor::GuildChange,
    config::Secret,
    discord::{connect, shards::ShardStates},
    domain::shards::{plan_leases, Shard, ShardCount},
    error::{AppError, AppResult, ErrorCode},
    store::{live_instances::LiveInstances, shard_leases::ShardLeases},
};

pub const LOOK_EVERY: Duration = Duration::from_secs(1);
/// A lease not renewed for this long is free to take.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// Discord's IDENTIFY spacing per bucket, with a margin.
const IDENTIFY_SPACING: Duration = Duration::from_millis(5_250);
/// What the instance registry counts as live.
const LIVE_TTL: Duration = crate::actors::instance_registry::LIVE_TTL;

/// Where the keeper keeps the leases, and under which name.
#[derive(Clone)]
pub struct ShardLeasing {
    pub leases: ShardLeases,
    pub live: LiveInstances,
    pub worker_id: String,
}

struct RunningShard {
    epoch: i64,
    /// When its lease was last renewed (or taken).
    renewed: tokio::time::Instant,
    manager: Arc<ShardManager>,
    task: tokio::task::JoinHandle<()>,
}

/// A shard whose lease could not be renewed for this long stops here, database or not: its
/// lease may expire and another process take it, and a shard must never run twice.
const UNCONFIRMED_LIMIT: Duration = Duration::from_secs(10);

pub(super) struct Keeper {
    pub leasing: ShardLeasing,
    pub handler: Handler,
    pub api_url: String,
    pub token: Secret,
    pub count: ShardCount,
    pub states: ShardStates,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Keeper {
    /// Runs until `stop` fires (or its sender is dropped), then stops every shard and
    /// releases its leases.
    pub(super) async fn run(self, mut stop: oneshot::Receiver<()>) {
        let (total, max_concurrency) = loop {
            match self.shard_total().await {
                Ok(t) => break t,
                Err(err) => {
                    tracing::warn!(error = %err, "shard leases: cannot learn the shard count yet");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = &mut stop => return,
                    }
                }
            }
        };
        self.states.set_leased();
        if let Err(err) = self.leasing.leases.ensure(total).await {
            tracing::error!(error = %err, "shard leases: cannot write the lease rows");
        }
        tracing::info!(
            shards = total,
            max_concurrency,
            "shard leases: sharing the gateway's shards with the other processes"
        );
        let mut running: BTreeMap<u32, RunningShard> = BTreeMap::new();
        let mut connected = None;
        let mut tick = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stop => break,
            }
            if let Err(err) = self.look(total, max_concurrency, &mut running).await {
                tracing::warn!(error = %err, "shard leases: look failed; the next one retries");
            }
            let now = self.report(&running).await;
            if connected != Some(now) {
                connected = Some(now);
                self.handler.send(GuildChange::Gateway { connected: now });
            }
        }
        for (shard, r) in std::mem::take(&mut running) {
            self.stop_shard(shard, total, r, true).await;
        }
    }

    /// The shard count, and how many IDENTIFYs Discord allows per 5 s.
    async fn shard_total(&self) -> AppResult<(u32, u32)> {
        let http = connect::http(&self.api_url, self.token.expose());
        let bot = http.get_bot_gateway().await.map_err(|e| {
            AppError::new(ErrorCode::DiscordUnavailable, "GET /gateway/bot failed").with_source(e)
        })?;
        let total = match self.count {
            ShardCount::Auto => bot.shards.max(1),
            ShardCount::Fixed(n) => n,
        };
        let concurrency = u32::try_from(bot.session_start_limit.max_concurrency)
            .unwrap_or(1)
            .max(1);
        Ok((total, concurrency))
    }

    async fn look(
        &self,
        total: u32,
        max_concurrency: u32,
        running: &mut BTreeMap<u32, RunningShard>,
    ) -> AppResult<()> {
        let l = &self.leasing;
        let ttl = ms(LEASE_TTL);
        let unconfirmed: Vec<u32> = running
            .iter()
            .filter(|(_, r)| r.renewed.elapsed() > UNCONFIRMED_LIMIT)
            .map(|(s, _)| *s)
            .collect();
        for shard in unconfirmed {
            tracing::error!(shard, "shard leases: the lease could not be renewed for 10 s (database away?); stopping the shard here before it can expire");
            if let Some(r) = running.remove(&shard) {
                self.stop_shard(shard, total, r, false).await;
            }
        }
        let held: Vec<(u32, i64)> = running.iter().map(|(s, r)| (*s, r.epoch)).collect();
        for (shard, epoch) in held {
            if l.leases.renew(shard, &l.worker_id, epoch, ttl).await? {
                if let Some(r) = running.get_mut(&shard) {
                    r.renewed = tokio::time::Instant::now();
                }
            } else {
                tracing::warn!(shard, "shard leases: lease lost (another process holds it now); stopping the shard here");
                if let Some(r) = running.remove(&shard) {
                    self.stop_shard(shard, total, r, false).await;
                }
            }
        }
        let leases = l.leases.list().await?;
        // Held under this worker id but not run here: an earlier run's, before a restart.
        let free: Vec<u32> = leases
            .iter()
            .filter(|x| {
                !x.held()
                    || (x.holder.as_deref() == Some(l.worker_id.as_str())
                        && !running.contains_key(&x.shard_id))
            })
            .map(|x| x.shard_id)
            .collect();
        let mine: Vec<u32> = running.keys().copied().collect();
        let live = l.live.live(ms(LIVE_TTL)).await?.max(1);
        let plan = plan_leases(total, live, &mine, &free);
        for shard in plan.give {
            if let Some(r) = running.remove(&shard) {
                tracing::info!(
                    shard,
                    live,
                    "shard leases: over the fair share; handing the shard over"
                );
                self.stop_shard(shard, total, r, true).await;
            }
        }
        // One IDENTIFY per look at most.
        if let Some(&shard) = plan.take.first() {
            if l.leases
                .identify_slot(shard % max_concurrency, ms(IDENTIFY_SPACING))
                .await?
            {
                if let Some(epoch) = l.leases.take(shard, &l.worker_id, ttl).await? {
                    match self.start_shard(shard, total, epoch).await {
                        Ok(r) => {
                            tracing::info!(
                                shard,
                                shards = total,
                                epoch,
                                "shard leases: shard taken"
                            );
                            self.states.hold(Shard { id: shard, total }, epoch);
                            running.insert(shard, r);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, shard, "shard leases: cannot start the shard; giving it back");
                            l.leases.release(shard, &l.worker_id, epoch).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn start_shard(&self, shard: u32, total: u32, epoch: i64) -> AppResult<RunningShard> {
        let builder = connect::client_builder(&self.api_url, self.token.expose())
            .event_handler(self.handler.clone());
        let mut client = connect::build_client(builder, &self.api_url).await?;
        let manager = client.shard_manager.clone();
        let task = tokio::spawn(async move {
            if let Err(err) = client.start_shard(shard, total).await {
                tracing::error!(error = %err, shard, "gateway: the shard's client stopped");
            }
        });
        Ok(RunningShard {
            epoch,
            renewed: tokio::time::Instant::now(),
            manager,
            task,
        })
    }

    /// Stops a shard here; its guilds' counts stand and age until their new holder counts
    /// them. `release`: give the lease back at once (else it was lost already).
    async fn stop_shard(&self, shard: u32, total: u32, r: RunningShard, release: bool) {
        self.states.unhold(shard);
        r.manager.shutdown_all().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
        // Its guilds are the new holder's to tell (through the guild directory).
        self.handler
            .ordered
            .directory()
            .forget_shard(Shard { id: shard, total });
        self.handler.send(GuildChange::ShardReleased {
            shard: Shard { id: shard, total },
        });
        if release {
            let l = &self.leasing;
            if let Err(err) = l.leases.release(shard, &l.worker_id, r.epoch).await {
                tracing::warn!(error = %err, shard, "shard leases: cannot release; it expires by itself");
            }
        }
    }

    /// Every running shard's stage for the admin API; whether all are connected.
    async fn report(&self, running: &BTreeMap<u32, RunningShard>) -> bool {
        let managers: Vec<Arc<ShardManager>> =
            running.values().map(|r| r.manager.clone()).collect();
        self.states.report(&managers).await
    }
}
