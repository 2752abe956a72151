//! Change feed (PostgreSQL only): keeps what this process holds in memory current with what
//! every instance on the database writes: seat snapshots, server policies, connector states,
//! the kill switch, tenant tokens and the service's own webhooks. The database's triggers
//! announce each change on [`migration::CHANGES_CHANNEL`] in the change's own transaction
//! (migration 16); the feed reads the announced row and hands it to the snapshot cache, so
//! a crossing counted on one instance holds jobs on this one within a notification's
//! latency. A notification sent while the listener's connection is down is lost with it: so
//! after every (re)connection, and every [`RELOAD_EVERY`], the feed reloads everything.

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use sea_orm::sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::{
    seat_auditor::{AuditReason, AuditRequested},
    snapshot_cache::{
        ConnectorRun, ConnectorState, KillSwitchSet, PolicyUpdated, SnapshotCache,
        SnapshotCacheActor, SnapshotStored,
    },
    ServerKey, Shutdown,
};
use crate::{
    discord::{directory::GuildDirectory, rest::SerenityRest, shards::ShardStates},
    domain::{backoff::RetryPolicy, changes::Change},
    error::{AppError, AppResult, ErrorCode},
    http::auth::Authenticator,
    store::{
        connectors::ConnectorStore,
        guild_directory::GuildDirectoryStore,
        mirror::MirrorStore,
        seat_audit::{snapshot_of_row, SeatAuditStore},
        servers::{key_of, policy_of, ServerStore},
        settings::{SettingsStore, KILL_SWITCH},
        Database,
    },
};

/// How often every process reloads what it holds from the tables, notifications or not.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// What the feed keeps current, and where from.
#[derive(Clone)]
pub struct Holders {
    pub db: Database,
    pub cache: SnapshotCache,
    pub cache_actor: Addr<SnapshotCacheActor>,
    pub auth: Authenticator,
    pub mirror: MirrorStore,
    /// `SEATGATE_KILL_SWITCH`: the kill switch when the API never set it.
    pub kill_switch_default: bool,
    /// With shard leases: this process's auditor reloads a server's config or mappings that
    /// another process changed, when this process runs the server's guild's shard.
    pub owner: Option<(Recipient<AuditRequested>, ShardStates)>,
    /// With shard leases: the guilds the other processes' shards carry, as they published
    /// them.
    pub directory: Option<GuildDirectory>,
    /// With shard leases: this process's worker id and its Discord limiter, which holds the
    /// buckets the other processes found used up.
    pub rate_limits: Option<(String, Arc<SerenityRest>)>,
}

pub struct ChangeFeed {
    url: String,
    holders: Arc<Holders>,
    reload_every: Duration,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ChangeFeed {
    /// A feed for the PostgreSQL database at `url`.
    pub fn new(url: String, holders: Holders) -> Self {
        Self {
            url,
            holders: Arc::new(holders),
            reload_every: RELOAD_EVERY,
            task: None,
        }
    }

    pub fn with_reload_every(mut self, every: Duration) -> Self {
        self.reload_every = every;
        self
    }
}

impl Actor for ChangeFeed {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        self.task = Some(tokio::spawn(run(
            self.url.clone(),
            self.holders.clone(),
            self.reload_every,
        )));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Handler<Shutdown> for ChangeFeed {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// What the listener's task hands over: a payload, or the end of its connection.
enum Heard {
    Payload(String),
    Lost(String),
}

async fn run(url: String, holders: Arc<Holders>, reload_every: Duration) {
    let backoff = RetryPolicy {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(5),
        max_attempts: u32::MAX,
    };
    let mut attempt = 0u32;
    loop {
        match listen(&url).await {
            Ok(listener) => {
                if attempt > 0 {
                    tracing::info!(
                        "change feed: listening again; reloading what may have been missed"
                    );
                }
                attempt = 0;
                let (tx, mut rx) = mpsc::unbounded_channel();
                // Its own task, never cancelled mid-read: a notification is never half-read.
                let reader = tokio::spawn(forward(listener, tx));
                reload_logged(&holders).await;
                let start = tokio::time::Instant::now() + reload_every;
                let mut tick = tokio::time::interval_at(start, reload_every);
                loop {
                    tokio::select! {
                        heard = rx.recv() => match heard {
                            Some(Heard::Payload(p)) => apply_logged(&holders, &p).await,
                            Some(Heard::Lost(why)) => {
                                tracing::warn!(error = %why, "change feed: the listener's connection was lost");
                                break;
                            }
                            None => break,
                        },
                        _ = tick.tick() => reload_logged(&holders).await,
                    }
                }
                reader.abort();
            }
            Err(err) => {
                tracing::warn!(error = %err, attempt, "change feed: cannot listen yet");
            }
        }
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(backoff.delay(attempt.min(16), 0.0)).await;
    }
}

async fn listen(url: &str) -> AppResult<PgListener> {
    let fail = |err| {
        // The URL may carry a password: name the setting, not the URL.
        AppError::new(
            ErrorCode::DatabaseUnavailable,
            "change feed: cannot LISTEN on the database named by SEATGATE_DATABASE_URL",
        )
        .with_source(err)
    };
    let mut listener = PgListener::connect(url).await.map_err(fail)?;
    listener
        .listen(migration::CHANGES_CHANNEL)
        .await
        .map_err(fail)?;
    Ok(listener)
}

async fn forward(mut listener: PgListener, tx: mpsc::UnboundedSender<Heard>) {
    loop {
        let heard = match listener.try_recv().await {
            Ok(Some(n)) => Heard::Payload(n.payload().to_owned()),
            Ok(None) => Heard::Lost("connection closed".into()),
            Err(err) => Heard::Lost(err.to_string()),
        };
        let lost = matches!(heard, Heard::Lost(_));
        if tx.send(heard).is_err() || lost {
            return;
        }
    }
}

async fn apply_logged(holders: &Holders, payload: &str) {
    let Some(change) = Change::parse(payload) else {
        tracing::debug!(payload, "change feed: a change this version does not hold");
        return;
    };
    if let Err(err) = apply(holders, &change).await {
        // The next reload reads it again.
        tracing::warn!(error = %err, ?change, "change feed: cannot read a changed row");
    }
}

async fn reload_logged(holders: &Holders) {
    if let Err(err) = reload(holders).await {
        tracing::warn!(error = %err, "change feed: reload failed; the next one retries");
    }
}

/// Reads the row a notification named and hands it to what holds it.
pub async fn apply(holders: &Holders, change: &Change) -> AppResult<()> {
    let servers = ServerStore::new(holders.db.clone());
    match change {
        Change::Snapshot(key) => {
            if let Some(row) = servers.snapshot(key).await? {
                let (key, record) = snapshot_of_row(row);
                holders.cache_actor.do_send(SnapshotStored {
                    key,
                    snapshot: record.view(),
                });
            }
        }
        Change::ServerConfig(key) => {
            let policy = servers.config(key).await?.map(|row| policy_of(&row));
            policy_held(holders, key.clone(), policy);
            owner_reloads(holders, key);
        }
        Change::Mapping(key) => owner_reloads(holders, key),
        Change::Connector {
            tenant_key,
            connector_id,
        } => {
            let row = ConnectorStore::new(holders.db.clone())
                .get_any(tenant_key, connector_id)
                .await?;
            let run = match row {
                Some(c) if c.deleted_at.is_some() => ConnectorRun::Deleted,
                Some(c) if !c.enabled => ConnectorRun::Disabled,
                // A connector never created or deleted for good has nothing held.
                Some(_) | None => ConnectorRun::Live,
            };
            connector_held(holders, tenant_key, connector_id, run);
        }
        Change::Setting(key) if key == KILL_SWITCH => {
            kill_switch_held(holders).await?;
        }
        Change::Setting(_) => {}
        Change::Token => {
            holders.auth.reload().await?;
        }
        Change::Webhook(_) => {
            holders.mirror.load_own_webhooks().await?;
        }
        Change::Guild(guild_id) => {
            if let Some(directory) = &holders.directory {
                match GuildDirectoryStore::new(holders.db.clone())
                    .get(*guild_id)
                    .await?
                {
                    Some(info) => directory.set_remote(info),
                    None => directory.drop_remote(*guild_id),
                }
            }
        }
        Change::RateHold { from, hold } => {
            if let Some((me, rest)) = &holders.rate_limits {
                if from != me {
                    rest.limiter().hold(hold);
                }
            }
        }
    }
    Ok(())
}

/// Everything again, from the tables.
pub async fn reload(holders: &Holders) -> AppResult<()> {
    kill_switch_held(holders).await?;
    let servers = ServerStore::new(holders.db.clone());
    let configs = servers.all_configs().await?;
    let mut configured = std::collections::HashSet::new();
    for row in &configs {
        let key = key_of(row);
        policy_held(holders, key.clone(), Some(policy_of(row)));
        configured.insert(key);
    }
    for key in holders.cache.policy_keys() {
        if !configured.contains(&key) {
            policy_held(holders, key, None);
        }
    }
    let stopped = ConnectorStore::new(holders.db.clone()).stopped().await?;
    let mut still_stopped = std::collections::HashSet::new();
    for c in &stopped {
        let run = if c.deleted_at.is_some() {
            ConnectorRun::Deleted
        } else {
            ConnectorRun::Disabled
        };
        connector_held(holders, &c.tenant_key, &c.connector_id, run);
        still_stopped.insert((c.tenant_key.clone(), c.connector_id.clone()));
    }
    for (tenant_key, connector_id) in holders.cache.stopped_connectors() {
        if !still_stopped.contains(&(tenant_key.clone(), connector_id.clone())) {
            connector_held(holders, &tenant_key, &connector_id, ConnectorRun::Live);
        }
    }
    for (key, record) in SeatAuditStore::new(holders.db.clone()).snapshots().await? {
        holders.cache_actor.do_send(SnapshotStored {
            key,
            snapshot: record.view(),
        });
    }
    holders.auth.reload().await?;
    holders.mirror.load_own_webhooks().await?;
    if let Some(directory) = &holders.directory {
        directory.replace_remote(GuildDirectoryStore::new(holders.db.clone()).all().await?);
    }
    Ok(())
}

/// The guild's owner counts with the new config (the process whose API took the change asked
/// its own auditor, which may not be the owner).
fn owner_reloads(holders: &Holders, key: &ServerKey) {
    if let Some((auditor, shards)) = &holders.owner {
        if shards.is_leased() && shards.carries(key.guild_id) {
            auditor.do_send(AuditRequested {
                key: key.clone(),
                reason: AuditReason::ConfigChanged,
            });
        }
    }
}

/// Only what differs from what is held goes to the cache: an unchanged policy would release
/// the server's held jobs for nothing.
fn policy_held(
    holders: &Holders,
    key: ServerKey,
    policy: Option<crate::domain::gate::ServerPolicy>,
) {
    if holders.cache.policy(&key) != policy {
        holders.cache_actor.do_send(PolicyUpdated { key, policy });
    }
}

fn connector_held(holders: &Holders, tenant_key: &str, connector_id: &str, run: ConnectorRun) {
    if holders.cache.connector_run(tenant_key, connector_id) != run {
        holders.cache_actor.do_send(ConnectorState {
            tenant_key: tenant_key.to_owned(),
            connector_id: connector_id.to_owned(),
            run,
        });
    }
}

async fn kill_switch_held(holders: &Holders) -> AppResult<()> {
    let on = SettingsStore::new(holders.db.clone())
        .kill_switch()
        .await?
        .unwrap_or(holders.kill_switch_default);
    if holders.cache.kill_switch() != on {
        holders.cache_actor.do_send(KillSwitchSet(on));
    }
    Ok(())
}
