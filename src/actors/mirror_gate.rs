//! Mirror gate: the mirror queue worker. Claims due mirror jobs, decides each from the
//! snapshot cache (see `domain::gate`), delivers the allowed ones through the Discord port
//! and holds the blocked ones pending.
//!
//! Not yet: delivery arrives with the mirroring issue. Until then the gate claims nothing,
//! so mirror jobs stay pending and are lost by no one.

use actix::prelude::*;

use super::{snapshot_cache::SnapshotCache, Shutdown};
use crate::store::{now_ms, queue::MirrorQueue};

/// Something changed that may unblock or create work: check the queue now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Wake;

pub struct MirrorGate {
    queue: MirrorQueue,
    cache: SnapshotCache,
    worker_id: String,
    wakes: u64,
}

impl MirrorGate {
    pub fn new(queue: MirrorQueue, cache: SnapshotCache, worker_id: String) -> Self {
        Self {
            queue,
            cache,
            worker_id,
            wakes: 0,
        }
    }
}

impl Actor for MirrorGate {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        tracing::info!(
            worker = %self.worker_id,
            servers_cached = self.cache.len(),
            "[mirror] gate started; not yet delivering (built by the mirroring issue)"
        );
    }
}

impl Handler<Wake> for MirrorGate {
    type Result = ();
    fn handle(&mut self, _: Wake, _: &mut Self::Context) {
        self.wakes += 1;
        tracing::debug!(wakes = self.wakes, "[mirror] woken");
    }
}

impl Handler<Shutdown> for MirrorGate {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let queue = self.queue.clone();
        let worker = self.worker_id.clone();
        Box::pin(
            async move {
                match queue.release_worker(&worker, now_ms()).await {
                    Ok(n) => tracing::info!(released = n, "[mirror] leases released"),
                    Err(err) => tracing::warn!(error = %err, "[mirror] could not release leases"),
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
