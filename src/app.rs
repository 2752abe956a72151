//! Wiring: database, actors and HTTP for `serve`, `migrate` and `demo`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use crate::actors::retention_pruner::RetentionPruner;

use actix::prelude::*;
use actix_web::{App, HttpServer};

use crate::{
    actors::{
        admin_http::AdminHttp,
        change_feed::{ChangeFeed, Holders},
        directory_publisher::DirectoryPublisher,
        gateway_ingest::GatewayIngest,
        instance_registry::InstanceRegistry,
        mirror_gate::{GateInbox, MirrorGate, MirrorGateConfig},
        seat_auditor::{SeatAuditor, SeatAuditorConfig},
        snapshot_cache::{
            ConnectorRun, ConnectorState, KillSwitchSet, PolicyUpdated, SnapshotCache,
            SnapshotCacheActor,
        },
        Shutdown,
    },
    config::Settings,
    discord::{
        directory::GuildDirectory,
        invalid_guard::InvalidRequestGuard,
        port::{DiscordPort, GuildReader},
        rest::SerenityRest,
        shards::ShardStates,
    },
    domain::{backoff::RetryPolicy, freshness::FreshnessWindows},
    error::{AppError, AppResult, ErrorCode},
    http::{self, auth::Authenticator, ActorLinks, AppState},
    store::{
        catch_up::CatchUpConfig,
        connectors::ConnectorStore,
        instance::{self, InstanceLease},
        mirror::MirrorStore,
        queue::{AuditQueue, MirrorQueue},
        seat_audit::SeatAuditStore,
        servers::{key_of, policy_of, ServerStore},
        settings::SettingsStore,
        tokens::TokenStore,
        Database,
    },
};

pub async fn migrate_only(settings: Settings) -> AppResult<()> {
    let db = Database::connect(&settings.database_url).await?;
    db.migrate().await?;
    tracing::info!("migrations applied");
    db.close().await
}

/// The running service: every actor's address and the bound admin address.
pub struct Running {
    pub bound: SocketAddr,
    /// `serve` only: the database-wide lease, released when the process ends.
    pub lease: Option<InstanceLease>,
    pub db: Database,
    pub cache: SnapshotCache,
    pub auditor: Addr<SeatAuditor>,
    pub gate: Addr<MirrorGate>,
    pub cache_actor: Addr<SnapshotCacheActor>,
    pub ingest: Addr<GatewayIngest>,
    pub http: Addr<AdminHttp>,
    pub pruner: Addr<RetentionPruner>,
    /// PostgreSQL only: keeps this process's memory current with every instance's writes.
    pub feed: Option<Addr<ChangeFeed>>,
    /// PostgreSQL only: this process's heartbeat and its share of the global rate limit.
    pub registry: Option<Addr<InstanceRegistry>>,
    /// With shard leases: this process's guilds, published for the other processes.
    pub publisher: Option<Addr<DirectoryPublisher>>,
    /// Discord's REST API with its rate limiter (`None` without a token).
    pub rest: Option<Arc<SerenityRest>>,
}

impl Running {
    /// Graceful stop: the HTTP server finishes in-flight requests, workers release leases.
    pub async fn shutdown(self) {
        let _ = self.http.send(Shutdown).await;
        let _ = self.ingest.send(Shutdown).await;
        let _ = self.gate.send(Shutdown).await;
        if let Some(registry) = &self.registry {
            let _ = registry.send(Shutdown).await;
        }
        let _ = self.auditor.send(Shutdown).await;
        let _ = self.pruner.send(Shutdown).await;
        if let Some(publisher) = &self.publisher {
            let _ = publisher.send(Shutdown).await;
        }
        if let Some(feed) = &self.feed {
            let _ = feed.send(Shutdown).await;
        }
        let _ = self.db.close().await;
        drop(self.lease);
    }
}

fn retry_policy(settings: &Settings) -> RetryPolicy {
    RetryPolicy {
        base: std::time::Duration::from_secs(settings.queue_backoff_base_secs),
        cap: std::time::Duration::from_secs(settings.queue_backoff_cap_secs),
        max_attempts: settings.queue_max_attempts,
    }
}

/// The four actors behind the admin HTTP server, wired to each other.
pub struct Actors {
    pub cache: SnapshotCache,
    /// What the gateway told of the bot's guilds (for the admin API).
    pub directory: GuildDirectory,
    /// The gateway shards this process runs (for `/readyz` and `/metrics`).
    pub shards: ShardStates,
    pub gate: Addr<MirrorGate>,
    pub cache_actor: Addr<SnapshotCacheActor>,
    pub auditor: Addr<SeatAuditor>,
    pub ingest: Addr<GatewayIngest>,
    /// Discord's REST API (`None` without a token), with the ban guard every call goes through.
    pub rest: Option<Arc<SerenityRest>>,
}

/// Starts the gate, the snapshot cache, the auditor and gateway ingest. Must run inside an
/// actix system.
pub fn start_actors(db: &Database, settings: &Settings) -> Actors {
    let policy = retry_policy(settings);
    let mirror_store = MirrorStore::new(db.clone(), MirrorQueue::mirror(db.clone(), policy));
    start_actors_with(db, settings, mirror_store)
}

/// [`start_actors`] around a mirror store already told which webhooks are the service's own
/// (before the gateway delivers a message, or catch-up reads one, that one of them posted).
pub fn start_actors_with(db: &Database, settings: &Settings, mirror_store: MirrorStore) -> Actors {
    let policy = retry_policy(settings);
    let worker_id = settings.worker_id();
    let cache = SnapshotCache::new(settings.kill_switch);

    // The auditor and the gate need each other's address: create the auditor's first.
    let auditor_ctx = Context::<SeatAuditor>::new();
    let auditor = auditor_ctx.address();
    let rest = discord_rest(settings);
    let rest_for_api = rest.clone();
    let port = rest.clone().map(|r| r as Arc<dyn DiscordPort>);
    let mut gate_cfg = MirrorGateConfig::new(worker_id.clone());
    gate_cfg.lease = Duration::from_secs(settings.queue_lease_secs);
    gate_cfg.max_age = Duration::from_secs(settings.mirror_max_age_secs);
    gate_cfg.attachment_limit_bytes = settings.mirror_attachment_limit_bytes;
    gate_cfg.cdn_hosts = reqwest::Url::parse(&settings.discord_api_url)
        .ok()
        .and_then(|u| crate::discord::cdn::host_key(&u))
        .into_iter()
        .collect();
    gate_cfg.windows =
        FreshnessWindows::from_secs(settings.fresh_window_secs, settings.stale_window_secs);
    gate_cfg.handover = !(settings.shard_leases && settings.on_postgres());
    let gate = MirrorGate::new(
        mirror_store.clone(),
        cache.clone(),
        port,
        Some(auditor.clone().recipient()),
        gate_cfg,
    )
    .start();
    let cache_actor = SnapshotCacheActor::new(cache.clone(), gate.clone().recipient())
        .with_resume(gate.clone().recipient())
        .with_windows(FreshnessWindows::from_secs(
            settings.fresh_window_secs,
            settings.stale_window_secs,
        ))
        .start();
    let mut auditor_cfg = SeatAuditorConfig::new(worker_id);
    auditor_cfg.lease = Duration::from_secs(settings.queue_lease_secs.max(60));
    auditor_cfg.recheck = Duration::from_secs(settings.recheck_secs);
    auditor_cfg.recheck_over_limit = Duration::from_secs(settings.recheck_over_limit_secs);
    auditor_cfg.reconcile_interval = Duration::from_secs(settings.reconcile_interval_secs.max(1));
    // Re-stamp well inside the fresh window so that a live count never looks stale.
    auditor_cfg.keepalive_interval = Duration::from_secs((settings.fresh_window_secs / 3).max(1));
    let shards = ShardStates::default();
    let mut seat_auditor = SeatAuditor::new(
        SeatAuditStore::new(db.clone()),
        AuditQueue::audit(db.clone(), policy),
        auditor_cfg,
    )
    .with_shards(shards.clone())
    .with_cache(
        cache_actor.clone().recipient(),
        cache_actor.clone().recipient(),
    );
    if let Some(rest) = rest {
        seat_auditor = seat_auditor
            .with_reader(rest.clone() as Arc<dyn GuildReader>)
            .with_notifier(rest as Arc<dyn DiscordPort>);
    }
    auditor_ctx.run(seat_auditor);
    let directory = GuildDirectory::new();
    let mut ingest = GatewayIngest::new(
        auditor.clone().recipient(),
        settings.discord_api_url.clone(),
    )
    .with_directory(directory.clone())
    .with_shards(settings.shards, shards.clone())
    .with_rest(rest_for_api.clone())
    .with_mirror(mirror_store, GateInbox::of(&gate))
    .with_catch_up(CatchUpConfig {
        max_age: Duration::from_secs(settings.mirror_max_age_secs),
        max_pages: settings.mirror_catch_up_pages,
        ..CatchUpConfig::default()
    });
    if let Some(token) = settings.discord_token.clone().filter(|t| !t.is_empty()) {
        ingest = ingest.with_token(token);
    }
    if settings.shard_leases && settings.on_postgres() {
        ingest =
            ingest.with_shard_leasing(crate::actors::gateway_ingest::shard_keeper::ShardLeasing {
                leases: crate::store::shard_leases::ShardLeases::new(db.clone()),
                live: crate::store::live_instances::LiveInstances::new(db.clone()),
                worker_id: settings.worker_id(),
            });
    }
    let ingest = ingest.start();
    Actors {
        cache,
        directory,
        shards,
        gate,
        cache_actor,
        auditor,
        ingest,
        rest: rest_for_api,
    }
}

/// The Discord REST adapter for the configured token and base URL, if a token is set.
fn discord_rest(settings: &Settings) -> Option<Arc<SerenityRest>> {
    let token = settings.discord_token.as_ref().filter(|t| !t.is_empty())?;
    let http = crate::discord::connect::http(&settings.discord_api_url, token.expose());
    let guard = Arc::new(InvalidRequestGuard::new(settings.discord_invalid_fraction));
    Some(Arc::new(SerenityRest::new(
        Arc::new(http),
        guard,
        settings.discord_global_rate,
    )))
}

/// The admin API's state. Loads what the API persisted into the snapshot cache first: the
/// kill switch (on when the configuration or the last API call says so) and every server's
/// enforcement policy.
pub async fn admin_state(
    db: &Database,
    settings: &Settings,
    actors: &Actors,
) -> AppResult<AppState> {
    let settings_store = SettingsStore::new(db.clone());
    let persisted = settings_store.kill_switch().await?;
    let kill_switch = settings.kill_switch || persisted.unwrap_or(false);
    if settings.kill_switch && persisted != Some(true) {
        settings_store.set_kill_switch(true).await?;
    }
    actors
        .cache_actor
        .send(KillSwitchSet(kill_switch))
        .await
        .map_err(|err| AppError::internal("snapshot cache did not start").with_source(err))?;
    let configs = ServerStore::new(db.clone()).all_configs().await?;
    for row in &configs {
        actors
            .cache_actor
            .send(PolicyUpdated {
                key: key_of(row),
                policy: Some(policy_of(row)),
            })
            .await
            .map_err(|err| AppError::internal("snapshot cache did not start").with_source(err))?;
    }
    let stopped = ConnectorStore::new(db.clone()).stopped().await?;
    for c in &stopped {
        actors
            .cache_actor
            .send(ConnectorState {
                tenant_key: c.tenant_key.clone(),
                connector_id: c.connector_id.clone(),
                run: if c.deleted_at.is_some() {
                    ConnectorRun::Deleted
                } else {
                    ConnectorRun::Disabled
                },
            })
            .await
            .map_err(|err| AppError::internal("snapshot cache did not start").with_source(err))?;
    }
    tracing::info!(
        servers = configs.len(),
        stopped_connectors = stopped.len(),
        kill_switch,
        "[admin/discord-bot] server policies loaded into the snapshot cache"
    );
    let auth = Authenticator::new(
        settings.operator_token.as_ref(),
        TokenStore::new(db.clone()),
    );
    let tenant_tokens = auth.load().await?;
    tracing::debug!(tenant_tokens, "tenant tokens loaded for checks in memory");
    if !auth.has_operator_token() {
        tracing::warn!("SEATGATE_OPERATOR_TOKEN is not set: only tenant tokens can use the admin API, and none can be created");
    }
    let policy = retry_policy(settings);
    Ok(AppState {
        db: db.clone(),
        cache: actors.cache.clone(),
        auth,
        actors: ActorLinks {
            audit: actors.auditor.clone().recipient(),
            seats: actors.auditor.clone().recipient(),
            policy: actors.cache_actor.clone().recipient(),
            kill_switch: actors.cache_actor.clone().recipient(),
            wake: actors.gate.clone().recipient(),
            release: actors.gate.clone().recipient(),
            connector_state: actors.cache_actor.clone().recipient(),
        },
        windows: FreshnessWindows::from_secs(
            settings.fresh_window_secs,
            settings.stale_window_secs,
        ),
        audit_queue: AuditQueue::audit(db.clone(), policy),
        mirror_queue: MirrorQueue::mirror(db.clone(), policy),
        metrics: http::metrics::install(),
        directory: actors.directory.clone(),
        shards: actors.shards.clone(),
        worker_id: settings.worker_id(),
        forwarder: (settings.shard_leases && settings.on_postgres()).then(|| {
            http::forward::Forwarder::new(crate::store::live_instances::LiveInstances::new(
                db.clone(),
            ))
        }),
        discord: actors.rest.clone().map(|r| r as Arc<dyn DiscordPort>),
        names: actors
            .rest
            .clone()
            .map(|r| crate::discord::member_names::MemberNames::new(r as Arc<dyn GuildReader>)),
        invalid_requests: actors.rest.as_ref().map(|r| r.invalid_requests().clone()),
        metrics_read_at: Arc::default(),
    })
}

/// Connects, migrates and starts the five actors wired to each other. Must run inside an
/// actix system.
pub async fn start(settings: &Settings) -> AppResult<Running> {
    start_with(settings, false).await
}

/// [`start`], first taking the database-wide instance lease when `exclusive` (as `serve`
/// does): a second process on the database stops with `instance_already_running` before it
/// connects to Discord.
pub async fn start_with(settings: &Settings, exclusive: bool) -> AppResult<Running> {
    crate::redact::hide_all(
        [&settings.discord_token, &settings.operator_token]
            .into_iter()
            .flatten()
            .map(|s| s.expose().trim_start_matches("Bot ")),
    );
    let db = Database::connect(&settings.database_url).await?;
    db.migrate().await?;
    let lease = if exclusive {
        Some(instance::acquire(&settings.database_url, &db).await?)
    } else {
        None
    };
    let mut mirror_queue = MirrorQueue::mirror(db.clone(), retry_policy(settings));
    if settings.shard_leases {
        mirror_queue = mirror_queue.across_processes();
    }
    let mirror_store = MirrorStore::new(db.clone(), mirror_queue);
    let own = mirror_store.load_own_webhooks().await?;
    tracing::info!(webhooks = own, "[mirror] the service's own webhooks loaded");
    let actors = start_actors_with(&db, settings, mirror_store.clone());
    let state = admin_state(&db, settings, &actors).await?;
    let on_postgres = settings.on_postgres();
    let leased = on_postgres && settings.shard_leases;
    let publisher = leased.then(|| {
        DirectoryPublisher::new(
            crate::store::guild_directory::GuildDirectoryStore::new(db.clone()),
            actors.directory.clone(),
            actors.shards.clone(),
        )
        .start()
    });
    let rate_limits = actors.rest.clone().filter(|_| leased).map(|rest| {
        let (to, holds) = tokio::sync::mpsc::unbounded_channel();
        if rest.limiter().share_holds(to) {
            tokio::spawn(crate::store::rate_holds::publish(
                db.clone(),
                settings.worker_id(),
                holds,
            ));
        }
        (settings.worker_id(), rest)
    });
    let feed = on_postgres.then(|| {
        ChangeFeed::new(
            settings.database_url.clone(),
            Holders {
                db: db.clone(),
                cache: actors.cache.clone(),
                cache_actor: actors.cache_actor.clone(),
                auth: state.auth.clone(),
                mirror: mirror_store,
                kill_switch_default: settings.kill_switch,
                owner: Some((actors.auditor.clone().recipient(), actors.shards.clone())),
                directory: leased.then(|| actors.directory.clone()),
                rate_limits,
            },
        )
        .start()
    });
    let server = HttpServer::new(move || App::new().configure(http::configure(state.clone())))
        .workers(2)
        .disable_signals()
        .shutdown_timeout(10)
        .bind(settings.bind)
        .map_err(|err| {
            AppError::new(
                ErrorCode::IoError,
                format!("SEATGATE_BIND: cannot listen on {}: {err}", settings.bind),
            )
        })?;
    let bound = server.addrs().first().copied().unwrap_or(settings.bind);
    let server = server.run();
    let http = AdminHttp::new(server.handle()).start();
    actix::spawn(async move {
        if let Err(err) = server.await {
            tracing::error!(error = %err, "admin HTTP server stopped with an error");
        }
    });
    tracing::info!(%bound, "admin HTTP listening");
    let pruner = RetentionPruner::new(
        db.clone(),
        settings.retention_ages(),
        Duration::from_secs(settings.retention_interval_secs),
    )
    .start();
    let Actors {
        cache,
        directory: _,
        shards: _,
        gate,
        cache_actor,
        auditor,
        ingest,
        rest,
    } = actors;
    let registry = on_postgres.then(|| {
        InstanceRegistry::new(
            crate::store::live_instances::LiveInstances::new(db.clone()),
            settings.worker_id(),
            settings.advertised_url(bound),
            rest.clone(),
            settings.discord_global_rate,
        )
        .start()
    });
    Ok(Running {
        bound,
        lease,
        db,
        cache,
        auditor,
        gate,
        cache_actor,
        ingest,
        http,
        pruner,
        feed,
        registry,
        publisher,
        rest,
    })
}

pub fn actix_system() -> actix::SystemRunner {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("cannot start the tokio runtime: {err}"))
    })
}

pub fn serve_blocking(settings: Settings) -> AppResult<()> {
    if settings.discord_token.as_ref().is_none_or(|t| t.is_empty()) {
        return Err(AppError::new(
            ErrorCode::ConfigInvalid,
            "SEATGATE_DISCORD_TOKEN: required by serve (the bot token)",
        ));
    }
    actix_system().block_on(async move {
        // With shard leases several processes share the database by design.
        let running = start_with(&settings, !settings.shard_leases).await?;
        wait_for_stop_signal().await;
        tracing::info!("stop signal received; finishing in-flight work");
        running.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

pub async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub fn demo_blocking(settings: Settings, keep_running: bool) -> AppResult<()> {
    crate::demo::demo_blocking(settings, keep_running)
}
