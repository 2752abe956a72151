//! Directory publisher (PostgreSQL, with shard leases): writes what this process's gateway
//! told of the guilds of its own shards into `guild_directory`, so that the processes running
//! the other shards answer the admin API's guild lists, channel and role pickers and names the
//! same (their change feeds read each row as it is announced). Every [`PUBLISH_EVERY`] it
//! writes the guilds changed since; a write that fails is tried again at the next look.

use std::time::Duration;

use actix::prelude::*;

use super::Shutdown;
use crate::{
    discord::{directory::GuildDirectory, shards::ShardStates},
    error::AppResult,
    store::guild_directory::GuildDirectoryStore,
};

pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);

pub struct DirectoryPublisher {
    store: GuildDirectoryStore,
    directory: GuildDirectory,
    shards: ShardStates,
    busy: bool,
}

impl DirectoryPublisher {
    pub fn new(store: GuildDirectoryStore, directory: GuildDirectory, shards: ShardStates) -> Self {
        Self {
            store,
            directory,
            shards,
            busy: false,
        }
    }

    fn look(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let changed = self.directory.take_changed();
        if changed.is_empty() {
            return;
        }
        self.busy = true;
        let store = self.store.clone();
        let directory = self.directory.clone();
        let shards = self.shards.clone();
        ctx.spawn(
            async move { publish(&store, &directory, &shards, changed).await }
                .into_actor(self)
                .map(|_, me, _| me.busy = false),
        );
    }
}

/// Writes each changed guild of a shard this process runs; what fails is marked again.
async fn publish(
    store: &GuildDirectoryStore,
    directory: &GuildDirectory,
    shards: &ShardStates,
    changed: Vec<u64>,
) {
    let mut failed = None;
    for guild_id in changed {
        if !shards.carries(guild_id) {
            continue;
        }
        let written: AppResult<()> = match directory.local_guild(guild_id) {
            Some(info) => store.publish(&info).await.map(|_| ()),
            None => store.unpublish(guild_id).await,
        };
        if let Err(err) = written {
            directory.mark_changed(guild_id);
            failed = Some(err);
        }
    }
    if let Some(err) = failed {
        tracing::warn!(error = %err, "guild directory: cannot publish; the next look retries");
    }
}

impl Actor for DirectoryPublisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(PUBLISH_EVERY, |me, ctx| me.look(ctx));
    }
}

impl Handler<Shutdown> for DirectoryPublisher {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
