//! Instance registry (PostgreSQL only): beats this process's heartbeat into
//! `service_instances` every [`HEARTBEAT`], counts the processes seen within [`LIVE_TTL`], and
//! gives this process its share of the bot token's global rate limit. Discord counts that
//! limit per token ("All bots can make up to 50 requests per second to our API",
//! <https://discord.com/developers/docs/topics/rate-limits#global-rate-limit>), so the
//! processes that send with one token split it rather than take 50/s each. A graceful stop
//! removes this process's row at once; a killed one drops out after the TTL, and until then
//! the others send at the smaller share: slower, never over.

use std::{sync::Arc, time::Duration};

use actix::prelude::*;

use super::Shutdown;
use crate::{
    discord::rest::SerenityRest,
    domain::rate_limits::global_share,
    http::metrics::{DISCORD_GLOBAL_SHARE, INSTANCES_LIVE},
    store::live_instances::LiveInstances,
};

pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A process not seen for this long is not counted.
pub const LIVE_TTL: Duration = Duration::from_secs(10);
/// Rows of processes gone this long are deleted.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

pub struct InstanceRegistry {
    store: LiveInstances,
    worker_id: String,
    /// Where the other processes reach this one's admin API.
    admin_url: String,
    rest: Option<Arc<SerenityRest>>,
    /// The token's whole limit (`SEATGATE_DISCORD_GLOBAL_RATE`).
    global_per_sec: u32,
    live: u32,
    beating: bool,
}

impl InstanceRegistry {
    pub fn new(
        store: LiveInstances,
        worker_id: String,
        admin_url: String,
        rest: Option<Arc<SerenityRest>>,
        global_per_sec: u32,
    ) -> Self {
        Self {
            store,
            worker_id,
            admin_url,
            rest,
            global_per_sec,
            live: 1,
            beating: false,
        }
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.beating {
            return;
        }
        self.beating = true;
        let store = self.store.clone();
        let worker_id = self.worker_id.clone();
        let admin_url = self.admin_url.clone();
        let ttl = i64::try_from(LIVE_TTL.as_millis()).unwrap_or(i64::MAX);
        let forget = i64::try_from(FORGET_AFTER.as_millis()).unwrap_or(i64::MAX);
        ctx.spawn(
            async move {
                store.heartbeat(&worker_id, &admin_url).await?;
                // By worker id: every process ranks the live ones alike.
                let live: Vec<String> = store
                    .list()
                    .await?
                    .into_iter()
                    .filter(|(_, _, ago)| *ago < ttl)
                    .map(|(id, _, _)| id)
                    .collect();
                store.forget_dead(forget).await?;
                let rank = live
                    .iter()
                    .position(|id| *id == worker_id)
                    .unwrap_or(live.len());
                Ok::<(u32, u32), crate::error::AppError>((
                    u32::try_from(live.len()).unwrap_or(u32::MAX),
                    u32::try_from(rank).unwrap_or(u32::MAX),
                ))
            }
            .into_actor(self)
            .map(|result, me, _| {
                me.beating = false;
                match result {
                    Ok((live, rank)) => me.set_live(live, rank),
                    // The share stays as it was: a database that is away stops the others'
                    // heartbeats too.
                    Err(err) => tracing::warn!(error = %err, "instance registry: heartbeat failed"),
                }
            }),
        );
    }

    fn set_live(&mut self, live: u32, rank: u32) {
        let share = global_share(self.global_per_sec, live, rank);
        if live != self.live {
            tracing::info!(
                live,
                requests_per_sec = share,
                "[discord] live instances share the bot token's global rate limit"
            );
            self.live = live;
        }
        if let Some(rest) = &self.rest {
            rest.set_global_per_sec(share);
        }
        metrics::gauge!(INSTANCES_LIVE).set(f64::from(live));
        metrics::gauge!(DISCORD_GLOBAL_SHARE).set(f64::from(share));
    }
}

impl Actor for InstanceRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.beat(ctx);
        ctx.run_interval(HEARTBEAT, |me, ctx| me.beat(ctx));
    }
}

impl Handler<Shutdown> for InstanceRegistry {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let worker_id = self.worker_id.clone();
        Box::pin(
            async move {
                if let Err(err) = store.leave(&worker_id).await {
                    tracing::warn!(error = %err, "instance registry: could not leave; the others count this process until its heartbeat ages out");
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
