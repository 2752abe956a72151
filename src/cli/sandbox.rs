//! `seatgate sandbox [--bind ADDR] [--scenario FILE] [--shards N]`: runs the Discord sandbox standalone and
//! prints one JSON line with its URLs and bot token, then serves until SIGINT/SIGTERM.

use super::SandboxArgs;
use crate::sandbox::{Sandbox, SandboxOptions, Scenario};
use crate::AppError;

pub async fn run(args: SandboxArgs) -> Result<(), AppError> {
    let scenario = match &args.scenario {
        Some(path) => Some(Scenario::load(path)?),
        None => None,
    };
    let handle = Sandbox::start(SandboxOptions {
        bind: args.bind,
        scenario,
        shards: args.shards,
        ..SandboxOptions::default()
    })
    .await?;
    let line = serde_json::json!({
        "api_url": handle.api_url(),
        "gateway_url": handle.gateway_url(),
        "control_url": handle.control_url(),
        "bot_token": handle.bot_token(),
    });
    println!("{line}");
    wait_for_signal().await?;
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> Result<(), AppError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
