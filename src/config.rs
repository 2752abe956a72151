//! Effective configuration: defaults, then an optional TOML file (`--config`), then
//! `SEATGATE_*` environment variables. Secrets are wrapped so that printing or logging the
//! configuration never shows them.

use std::{fmt, net::SocketAddr, path::Path};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{AppError, ErrorCode};

/// A value that must not appear in logs, error bodies or `seatgate config`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

/// Every setting, flat, so that `SEATGATE_<NAME>` maps onto `<name>` one to one. `Debug`
/// prints what `seatgate config` prints: secrets and URL passwords redacted.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://seatgate.db?mode=rwc` (embedded default) or `postgres://...`.
    pub database_url: String,
    /// Admin HTTP, `/healthz`, `/readyz`, `/metrics`.
    pub bind: SocketAddr,
    /// With shard leases: where the other processes reach this one's admin API (for a
    /// guild's `.../seats`, which only the owner of its shard holds). Default: `http://` and
    /// the bound address, the host name in place of an unspecified address.
    pub advertise_url: Option<String>,
    pub log_format: LogFormat,
    /// Bot token; required by `serve`.
    pub discord_token: Option<Secret>,
    /// Discord or a Discord-compatible base URL (the sandbox).
    pub discord_api_url: String,
    /// Admin operator token (reaches every tenant).
    pub operator_token: Option<Secret>,
    /// Identifies this instance's leases in the queues.
    pub worker_id: Option<String>,
    /// Snapshot is fresh up to this many seconds after `checked_at`.
    pub fresh_window_secs: u64,
    /// Snapshot is stale (not expired) up to this many seconds after `checked_at`.
    pub stale_window_secs: u64,
    pub recheck_secs: u64,
    pub recheck_over_limit_secs: u64,
    pub reconcile_interval_secs: u64,
    pub queue_max_attempts: u32,
    pub queue_backoff_base_secs: u64,
    pub queue_backoff_cap_secs: u64,
    pub queue_lease_secs: u64,
    pub mirror_max_age_secs: u64,
    /// Catch-up after a new gateway session reads at most this many pages of 100 messages per
    /// source channel (0 turns catch-up off).
    pub mirror_catch_up_pages: u32,
    /// Attachments up to this many bytes per message are downloaded and uploaded again with
    /// the mirrored message; larger ones are linked (0 links all). Discord's limit for a bot
    /// in a server without boosts is 10 MiB.
    pub mirror_attachment_limit_bytes: u64,
    /// Share of Discord's 10,000 invalid requests (401, 403, 429) per 10 minutes at which the
    /// service slows every new Discord request down to 5 a second, so that it never reaches
    /// the IP ban. In (0, 1].
    pub discord_invalid_fraction: f64,
    /// The bot token's global limit, requests per second, kept before any 429: Discord's is
    /// 50 for every bot ("All bots can make up to 50 requests per second"); a large bot that
    /// Discord granted more sets it here.
    pub discord_global_rate: u32,
    /// Gateway shards: `auto` (the `shards` that `GET /gateway/bot` recommends) or a number.
    /// One process runs every shard.
    pub shards: crate::domain::shards::ShardCount,
    /// PostgreSQL: the shards are shared with the other processes on the database through
    /// leases (each shard run by one process, a fair share each), and any process delivers
    /// any job. Loaded settings default to it on PostgreSQL (every process runs with the same
    /// configuration); `false` there keeps one `serve` per database. SQLite: never.
    pub shard_leases: bool,
    /// Starts the service with enforcement globally off (every server behaves as `off`).
    pub kill_switch: bool,
    /// Finished mirror and audit jobs are removed this long after they finished.
    pub retention_jobs_secs: u64,
    /// Links from source messages to their copies are removed this long after the copy was
    /// made: a later source edit or delete no longer reaches it.
    pub retention_links_secs: u64,
    /// Pause/resume history is removed after this long.
    pub retention_events_secs: u64,
    /// How often the pruner runs.
    pub retention_interval_secs: u64,
}

impl Settings {
    pub fn retention_ages(&self) -> crate::store::retention::RetentionAges {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        crate::store::retention::RetentionAges {
            jobs_ms: ms(self.retention_jobs_secs),
            links_ms: ms(self.retention_links_secs),
            events_ms: ms(self.retention_events_secs),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://seatgate.db?mode=rwc".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            advertise_url: None,
            log_format: LogFormat::Human,
            discord_token: None,
            discord_api_url: "https://discord.com".into(),
            operator_token: None,
            worker_id: None,
            fresh_window_secs: 90,
            stale_window_secs: 300,
            recheck_secs: 60,
            recheck_over_limit_secs: 30,
            reconcile_interval_secs: 6 * 60 * 60,
            queue_max_attempts: 8,
            queue_backoff_base_secs: 5,
            queue_backoff_cap_secs: 15 * 60,
            queue_lease_secs: 60,
            mirror_max_age_secs: 60 * 60,
            mirror_catch_up_pages: 10,
            mirror_attachment_limit_bytes: crate::domain::mirror::DEFAULT_UPLOAD_LIMIT_BYTES,
            discord_invalid_fraction: crate::domain::invalid_requests::DEFAULT_FRACTION,
            discord_global_rate: crate::domain::rate_limits::DISCORD_GLOBAL_PER_SEC,
            shards: crate::domain::shards::ShardCount::Auto,
            shard_leases: false,
            kill_switch: false,
            retention_jobs_secs: 7 * 24 * 60 * 60,
            retention_links_secs: 30 * 24 * 60 * 60,
            retention_events_secs: 365 * 24 * 60 * 60,
            retention_interval_secs: 60,
        }
    }
}

impl Settings {
    /// Loads defaults <- TOML file <- environment (`SEATGATE_*`).
    pub fn load(config_file: Option<&Path>) -> Result<Settings, AppError> {
        // SEATGATE_TEST_* belong to the test suite, not to the service.
        let env = Env::prefixed("SEATGATE_")
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"));
        Self::load_from(config_file, env)
    }

    fn load_from(config_file: Option<&Path>, env: Env) -> Result<Settings, AppError> {
        let mut given = Figment::new();
        if let Some(path) = config_file {
            if !path.exists() {
                return Err(AppError::new(
                    ErrorCode::ConfigInvalid,
                    format!("config file {} does not exist", path.display()),
                ));
            }
            given = given.merge(Toml::file(path));
        }
        given = given.merge(env);
        let mut settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(given.clone())
            .extract()
            .map_err(config_error)?;
        if !given.contains("shard_leases") {
            settings.shard_leases = settings.on_postgres();
        }
        settings.validate()?;
        Ok(settings)
    }

    pub fn on_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }

    fn validate(&self) -> Result<(), AppError> {
        let bad = |name: &str, why: &str| {
            Err(AppError::new(
                ErrorCode::ConfigInvalid,
                format!("SEATGATE_{}: {why}", name.to_uppercase()),
            ))
        };
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return bad("database_url", "must start with sqlite: or postgres://");
        }
        if self.fresh_window_secs == 0 || self.stale_window_secs <= self.fresh_window_secs {
            return bad(
                "stale_window_secs",
                "must be greater than fresh_window_secs, which must be positive",
            );
        }
        if !(self.discord_invalid_fraction > 0.0 && self.discord_invalid_fraction <= 1.0) {
            return bad("discord_invalid_fraction", "must be above 0 and at most 1");
        }
        if self.shard_leases && self.database_url.starts_with("sqlite:") {
            return bad(
                "shard_leases",
                "needs PostgreSQL: on SQLite one process runs every shard",
            );
        }
        if self.discord_global_rate == 0 {
            return bad("discord_global_rate", "must be at least 1");
        }
        if self.queue_max_attempts == 0 {
            return bad("queue_max_attempts", "must be at least 1");
        }
        if self.queue_lease_secs == 0 {
            return bad("queue_lease_secs", "must be at least 1");
        }
        if self.retention_interval_secs == 0 {
            return bad("retention_interval_secs", "must be at least 1");
        }
        if self.retention_jobs_secs < self.mirror_max_age_secs
            || self.retention_links_secs < self.mirror_max_age_secs
        {
            return bad(
                "retention_links_secs",
                "retention_jobs_secs and retention_links_secs must be at least mirror_max_age_secs (a job still due needs its job row and its links)",
            );
        }
        if let Some(url) = &self.advertise_url {
            if !matches!(reqwest::Url::parse(url), Ok(u) if u.scheme().starts_with("http")) {
                return bad("advertise_url", "must be an absolute http(s) URL");
            }
        }
        if reqwest::Url::parse(&self.discord_api_url).is_err() {
            return bad("discord_api_url", "must be an absolute URL");
        }
        Ok(())
    }

    /// This instance's queue lease owner.
    /// The owner name on this process's queue leases: `SEATGATE_WORKER_ID`, else one made
    /// once per process from the host name, the process id and a random part (in containers
    /// every process is pid 1, and a graceful stop releases the leases under its name only).
    pub fn worker_id(&self) -> String {
        self.worker_id
            .clone()
            .unwrap_or_else(|| DEFAULT_WORKER_ID.get_or_init(fresh_worker_id).clone())
    }

    /// Where the other processes reach this one's admin API, once it listens on `bound`.
    pub fn advertised_url(&self, bound: SocketAddr) -> String {
        if let Some(url) = &self.advertise_url {
            return url.trim_end_matches('/').to_owned();
        }
        if bound.ip().is_unspecified() {
            format!("http://{}:{}", host_name(), bound.port())
        } else {
            format!("http://{bound}")
        }
    }

    /// The configuration as TOML with secrets redacted, for `seatgate config`.
    pub fn to_redacted_toml(&self) -> String {
        let mut out = String::new();
        let value = serde_json::to_value(self).unwrap_or_default();
        if let serde_json::Value::Object(map) = value {
            for (key, value) in map {
                let value = match value {
                    serde_json::Value::String(url) if key.ends_with("_url") => {
                        serde_json::Value::String(crate::redact::url(&url))
                    }
                    other => other,
                };
                match value {
                    serde_json::Value::Null => out.push_str(&format!("# {key} = (unset)\n")),
                    other => out.push_str(&format!("{key} = {other}\n")),
                }
            }
        }
        out
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_redacted_toml())
    }
}

fn config_error(err: figment::Error) -> AppError {
    // Name the setting the way an operator sets it.
    let setting = err
        .path
        .first()
        .map(|p| format!("SEATGATE_{}", p.to_uppercase()))
        .unwrap_or_else(|| "configuration".into());
    let kind = err.kind.to_string();
    AppError::new(ErrorCode::ConfigInvalid, format!("{setting}: {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(vars: &[(&str, &str)]) -> Result<Settings, AppError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        for (k, v) in vars {
            let key = k.trim_start_matches("SEATGATE_").to_lowercase();
            figment = figment.merge((key, *v));
        }
        let settings: Settings = figment.extract().map_err(config_error)?;
        settings.validate()?;
        Ok(settings)
    }

    #[test]
    fn defaults_match_the_design_windows() {
        let s = Settings::default();
        assert_eq!(s.fresh_window_secs, 90);
        assert_eq!(s.stale_window_secs, 300);
        assert_eq!(s.queue_max_attempts, 8);
        assert!(s.database_url.starts_with("sqlite://"));
    }

    #[test]
    fn bad_bind_names_the_setting() {
        let err = load_with(&[("SEATGATE_BIND", "not-an-address")]).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid);
        assert!(err.message().contains("SEATGATE_BIND"), "{}", err.message());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
    fn shard_leases_need_postgresql() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SEATGATE_SHARD_LEASES", "true");
            let err = Settings::load(None).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ConfigInvalid);
            assert!(
                err.message().contains("needs PostgreSQL"),
                "{}",
                err.message()
            );
            jail.set_env("SEATGATE_DATABASE_URL", "postgres://seatgate@db/seatgate");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(s.shard_leases);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
    fn shard_leases_default_on_postgresql_only_and_can_be_turned_off() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(!s.shard_leases, "SQLite: one process runs every shard");
            jail.set_env("SEATGATE_DATABASE_URL", "postgres://seatgate@db/seatgate");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(s.shard_leases, "PostgreSQL: shared by default");
            jail.set_env("SEATGATE_SHARD_LEASES", "false");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(!s.shard_leases, "turned off: one serve per database");
            jail.clear_env();
            jail.create_file(
                "seatgate.toml",
                "database_url = \"postgresql://seatgate@db/seatgate\"\nshard_leases = false\n",
            )?;
            let s = Settings::load(Some(Path::new("seatgate.toml"))).map_err(|e| e.to_string())?;
            assert!(!s.shard_leases, "a config file's setting counts too");
            Ok(())
        });
    }

    #[test]
    fn stale_window_must_exceed_fresh_window() {
        let err = load_with(&[("SEATGATE_STALE_WINDOW_SECS", "10")]).unwrap_err();
        assert!(err.message().contains("SEATGATE_STALE_WINDOW_SECS"));
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_printed_config() {
        let s = Settings {
            discord_token: Some(Secret::new("Bot very-secret")),
            operator_token: Some(Secret::new("op-secret")),
            ..Settings::default()
        };
        let printed = s.to_redacted_toml();
        assert!(!printed.contains("very-secret"));
        assert!(!printed.contains("op-secret"));
        assert!(printed.contains("discord_token = \"[redacted]\""));
        assert!(!format!("{s:?}").contains("very-secret"));
    }

    #[test]
    fn a_password_in_the_database_url_is_not_printed() {
        let s = Settings {
            database_url: "postgres://u:secret@h/db".into(),
            ..Settings::default()
        };
        let printed = s.to_redacted_toml();
        assert!(!printed.contains("secret"), "{printed}");
        assert!(
            printed.contains("postgres://u:[redacted]@h/db"),
            "{printed}"
        );
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
    fn toml_file_then_env_override() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "seatgate.toml",
                "bind = \"127.0.0.1:9999\"\nrecheck_secs = 7\n",
            )?;
            jail.set_env("SEATGATE_RECHECK_SECS", "11");
            let s = Settings::load(Some(Path::new("seatgate.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.bind.port(), 9999);
            assert_eq!(s.recheck_secs, 11);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
    fn shards_come_from_the_environment_as_auto_or_a_number() {
        figment::Jail::expect_with(|jail| {
            use crate::domain::shards::ShardCount;
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.shards, ShardCount::Auto, "auto by default");
            jail.set_env("SEATGATE_SHARDS", "4");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.shards, ShardCount::Fixed(4));
            jail.set_env("SEATGATE_SHARDS", "auto");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.shards, ShardCount::Auto);
            jail.set_env("SEATGATE_SHARDS", "0");
            let err = Settings::load(None).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ConfigInvalid);
            assert!(
                err.message().contains("SEATGATE_SHARDS"),
                "{}",
                err.message()
            );
            Ok(())
        });
    }
}

static DEFAULT_WORKER_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `seatgate-<host>-<pid>-<8 hex>`.
fn fresh_worker_id() -> String {
    format!(
        "seatgate-{}-{}-{:08x}",
        host_name(),
        std::process::id(),
        rand::random::<u32>()
    )
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                .take(64)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned())
}

#[cfg(test)]
mod worker_id_tests {
    use super::*;

    #[test]
    fn the_default_worker_id_is_one_per_process_and_unlike_another_processs() {
        let settings = Settings::default();
        let id = settings.worker_id();
        assert_eq!(id, settings.worker_id(), "the same for every caller");
        assert!(id.contains(&format!("-{}-", std::process::id())), "{id}");
        // Another process with the same pid (a container's 1) gets another random part.
        assert_ne!(fresh_worker_id(), fresh_worker_id());
    }
}
