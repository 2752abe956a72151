//! `seatgate sandbox [--bind ADDR] [--scenario FILE]`.

use super::SandboxArgs;
use crate::AppError;

pub async fn run(_args: SandboxArgs) -> Result<(), AppError> {
    Err(AppError::not_yet("seatgate sandbox"))
}
