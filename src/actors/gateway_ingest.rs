//! Gateway ingest: owns the serenity client and turns Discord events into typed messages
//! for the seat auditor (guild changes) and, later, mirror jobs (source messages).
//!
//! Not yet: the serenity connection arrives with the auditor issue; until then the actor
//! holds its wiring and says plainly that it is not connected.

use actix::prelude::*;

use super::{seat_auditor::GuildChange, Shutdown};

pub struct GatewayIngest {
    auditor: Recipient<GuildChange>,
    api_url: String,
}

impl GatewayIngest {
    pub fn new(auditor: Recipient<GuildChange>, api_url: String) -> Self {
        Self { auditor, api_url }
    }

    /// Forwards a guild change to the auditor.
    pub fn forward(&self, change: GuildChange) {
        self.auditor.do_send(change);
    }
}

impl Actor for GatewayIngest {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        tracing::warn!(
            api_url = %self.api_url,
            "gateway ingest: not yet connecting to Discord (built by the auditor issue)"
        );
    }
}

impl Handler<Shutdown> for GatewayIngest {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
