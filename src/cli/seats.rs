//! `seatgate seats count --fixture FILE`: one JSON line with the seat count of a guild fixture.

use std::path::Path;
use std::time::Instant;

use crate::domain::seats::{parse_fixture, GuildIndex, Members};
use crate::error::{AppError, ErrorCode};

pub fn count(fixture: &Path) -> Result<(), AppError> {
    let text = std::fs::read_to_string(fixture).map_err(|e| {
        AppError::new(
            ErrorCode::IoError,
            format!("cannot read fixture {}: {e}", fixture.display()),
        )
        .with_source(e)
    })?;
    let fixture = parse_fixture(&text)?;
    let started = Instant::now();
    let count = GuildIndex::count_member_list(
        &fixture.guild,
        &fixture.members,
        &fixture.mapped_channel_ids,
        fixture.tiers,
        GuildIndex::default_threads(fixture.members.len()),
    );
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let line = serde_json::json!({
        "seats_used": count.seats_used,
        "by_tier": count.by_tier,
        "members_scanned": fixture.members.len(),
        "elapsed_ms": elapsed_ms,
    });
    println!("{line}");
    Ok(())
}
