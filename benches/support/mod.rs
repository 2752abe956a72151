//! What the benches that run `seatgate serve` as its own process share: a free port, the
//! process (killed when dropped), its resident memory, and waiting for it to answer.

#![allow(dead_code)]

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use seatgate::{
    config::{Secret, Settings},
    sandbox::SandboxHandle,
};

pub const OPERATOR: &str = "bench-operator";

/// An in-process service's settings on `database_url` against `sandbox`, its admin API on a
/// free port and `operator` its operator token; the rest defaults.
pub fn service_settings(database_url: &str, sandbox: &SandboxHandle, operator: &str) -> Settings {
    Settings {
        database_url: database_url.to_owned(),
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        discord_token: Some(Secret::new(sandbox.bot_token())),
        discord_api_url: sandbox.api_url().to_owned(),
        operator_token: Some(Secret::new(operator.to_owned())),
        ..Settings::default()
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `seatgate serve` process against the sandbox, as an operator runs it.
pub struct Serve {
    pub child: Child,
    pub base: String,
    pub started: Instant,
}

impl Serve {
    /// Starts serve on `database_url` with its stderr in `log`, and waits for `/healthz`.
    pub async fn start(
        database_url: &str,
        sandbox: &SandboxHandle,
        rust_log: &str,
        log: &tempfile::NamedTempFile,
        client: &reqwest::Client,
    ) -> Serve {
        Serve::start_with(database_url, sandbox, rust_log, log, client, &[]).await
    }

    /// [`Serve::start`] with `extra` settings.
    pub async fn start_with(
        database_url: &str,
        sandbox: &SandboxHandle,
        rust_log: &str,
        log: &tempfile::NamedTempFile,
        client: &reqwest::Client,
        extra: &[(&str, &str)],
    ) -> Serve {
        let port = free_port();
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_seatgate"))
            .arg("serve")
            .env("SEATGATE_DATABASE_URL", database_url)
            .env("SEATGATE_BIND", format!("127.0.0.1:{port}"))
            .env("SEATGATE_DISCORD_TOKEN", sandbox.bot_token())
            .env("SEATGATE_DISCORD_API_URL", sandbox.api_url())
            .env("SEATGATE_OPERATOR_TOKEN", OPERATOR)
            .env("RUST_LOG", rust_log)
            .env("SEATGATE_LOG_FORMAT", "json")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().expect("log file")))
            .spawn()
            .expect("seatgate serve starts");
        let serve = Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
            started,
        };
        while client
            .get(format!("{}/healthz", serve.base))
            .send()
            .await
            .is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(60), "serve not up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        serve
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls a server's snapshot until `seats_used` is `expected` and no count is running.
    pub async fn wait_counted(
        &self,
        client: &reqwest::Client,
        server_path: &str,
        expected: u64,
        limit: Duration,
    ) {
        let snapshot = format!("{}{server_path}/snapshot", self.base);
        loop {
            let v: Option<serde_json::Value> =
                match client.get(&snapshot).bearer_auth(OPERATOR).send().await {
                    Ok(r) if r.status().is_success() => r.json().await.ok(),
                    _ => None,
                };
            if v.as_ref().is_some_and(|v| {
                v["seats_used"].as_u64() == Some(expected) && v["counting"].is_null()
            }) {
                return;
            }
            assert!(
                self.started.elapsed() < limit,
                "not counted within {limit:?}: {v:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
