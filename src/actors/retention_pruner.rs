//! The retention pruner: every interval, removes what is older than the retention ages, a
//! batch at a time with a pause between batches so mirroring keeps the writer.

use std::time::Duration;

use actix::prelude::*;

use super::Shutdown;
use crate::store::{
    now_ms,
    retention::{prune_batch, Pruned, RetentionAges},
    Database,
};

/// Between two batches of one round: room for the mirror's writes.
const PAUSE: Duration = Duration::from_millis(50);

pub struct RetentionPruner {
    db: Database,
    ages: RetentionAges,
    interval: Duration,
    running: bool,
}

impl RetentionPruner {
    pub fn new(db: Database, ages: RetentionAges, interval: Duration) -> Self {
        Self {
            db,
            ages,
            interval,
            running: false,
        }
    }
}

/// One round now (also what the interval sends).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct PruneNow;

impl Actor for RetentionPruner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |_, ctx| ctx.notify(PruneNow));
    }
}

impl Handler<PruneNow> for RetentionPruner {
    type Result = ();

    fn handle(&mut self, _: PruneNow, ctx: &mut Self::Context) {
        if self.running {
            return;
        }
        self.running = true;
        let (db, ages) = (self.db.clone(), self.ages);
        let round = async move {
            let mut total = Pruned::default();
            loop {
                match prune_batch(&db, ages, now_ms()).await {
                    Ok(p) if p.total() == 0 => break,
                    Ok(p) => {
                        total.mirror_jobs += p.mirror_jobs;
                        total.audit_jobs += p.audit_jobs;
                        total.links += p.links;
                        total.events += p.events;
                        metrics::counter!("seatgate_retention_pruned_total").increment(p.total());
                        tokio::time::sleep(PAUSE).await;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "[retention] pruning failed; trying again next round");
                        break;
                    }
                }
            }
            if total.total() > 0 {
                tracing::info!(
                    mirror_jobs = total.mirror_jobs,
                    audit_jobs = total.audit_jobs,
                    links = total.links,
                    events = total.events,
                    "[retention] pruned"
                );
            }
        };
        ctx.spawn(round.into_actor(self).map(|_, act, _| act.running = false));
    }
}

impl Handler<Shutdown> for RetentionPruner {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
