//! `seatgate seats count --fixture FILE`.

use std::path::Path;

use crate::AppError;

pub fn count(_fixture: &Path) -> Result<(), AppError> {
    Err(AppError::not_yet("seatgate seats count"))
}
