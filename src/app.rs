//! Wiring: database, actors and HTTP for `serve`, `migrate` and `demo`.

use crate::{config::Settings, AppError};

pub async fn migrate_only(_settings: Settings) -> Result<(), AppError> {
    Err(AppError::not_yet("migrate"))
}

pub fn serve_blocking(_settings: Settings) -> Result<(), AppError> {
    Err(AppError::not_yet("serve"))
}

pub fn demo_blocking(_settings: Settings, _keep_running: bool) -> Result<(), AppError> {
    Err(AppError::not_yet(
        "seatgate demo (the mirroring issue builds it)",
    ))
}
