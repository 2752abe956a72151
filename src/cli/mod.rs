//! Command line: `seatgate serve | migrate | config | demo | sandbox | seats count`.
//! Configuration errors exit with status 2 and one line naming the setting.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::{config::Settings, error::ErrorCode, telemetry, AppError};

pub mod sandbox;
pub mod seats;

#[derive(Debug, Parser)]
#[command(
    name = "seatgate",
    version,
    about = "Discord mirroring with per-server seat licences"
)]
pub struct Cli {
    /// Optional TOML configuration file; `SEATGATE_*` environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: gateway ingest, seat auditor, snapshot cache, mirror gate, admin HTTP.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective configuration with secrets redacted.
    Config,
    /// Run the whole service against the built-in Discord sandbox and play the demo story.
    Demo(DemoArgs),
    /// Run the Discord sandbox standalone.
    Sandbox(SandboxArgs),
    /// Seat engine tools.
    Seats {
        #[command(subcommand)]
        command: SeatsCommand,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave the service and the admin HTTP up after the story.
    #[arg(long)]
    pub keep_running: bool,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Loopback address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: String,
    /// JSON scenario: `{"bot": {...}, "guilds": [Discord guild objects]}`.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Shards `GET /gateway/bot` recommends (default: the scenario's `shards`, else 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub shards: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum SeatsCommand {
    /// Count the seats of one guild fixture and print one JSON line.
    Count {
        #[arg(long, value_name = "FILE")]
        fixture: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(err) => return exit_with(err),
    };
    let result = match cli.command {
        Command::Config => {
            print!("{}", settings.to_redacted_toml());
            Ok(())
        }
        Command::Seats {
            command: SeatsCommand::Count { fixture },
        } => seats::count(&fixture),
        Command::Migrate => {
            telemetry::init(settings.log_format);
            run_async(crate::app::migrate_only(settings))
        }
        Command::Serve => {
            telemetry::init(settings.log_format);
            crate::app::serve_blocking(settings)
        }
        Command::Sandbox(args) => {
            telemetry::init(settings.log_format);
            run_async(sandbox::run(args))
        }
        Command::Demo(args) => {
            telemetry::init_with_default(settings.log_format, "warn");
            crate::app::demo_blocking(settings, args.keep_running)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit_with(err),
    }
}

fn run_async<F: std::future::Future<Output = Result<(), AppError>>>(
    fut: F,
) -> Result<(), AppError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(AppError::from)?;
    rt.block_on(fut)
}

fn exit_with(err: AppError) -> ExitCode {
    eprintln!("seatgate: {err}");
    if matches!(
        err.code(),
        ErrorCode::ConfigInvalid | ErrorCode::InstanceAlreadyRunning
    ) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
