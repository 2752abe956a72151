//! A server's counted members: who holds a seat, why (the rule that lets them see each
//! mapped channel), their names, a search by name or id, and a CSV export.

use std::{collections::HashMap, sync::Arc};

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    auth::Caller,
    forward,
    openapi::ErrorBody,
    servers::{require_config, server_key},
    validate, AppState,
};
use crate::{
    actors::{
        seat_auditor::{CountedSeats, SeatPage},
        ServerKey,
    },
    discord::{directory::GuildInfo, port::MemberName},
    error::{AppError, AppResult, ErrorCode},
};

/// A tier a member holds through the server config's tier roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Shown as "bronze".
    Basic,
    /// Shown as "silver".
    Advanced,
    /// Shown as "gold".
    Pro,
}

/// The highest tier of a member, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopTier {
    None,
    Basic,
    Advanced,
    Pro,
}

/// A member holding a seat.
#[derive(Serialize, ToSchema)]
pub struct Seat {
    pub user_id: String,
    /// The account's username; absent when Discord could not be asked in time (or the
    /// member left since the count).
    pub username: Option<String>,
    /// The name shown in the server: nickname, else the account's display name, else the
    /// username.
    pub display_name: Option<String>,
    /// The highest tier the member holds (`pro` > `advanced` > `basic`), or `none`.
    pub tier: TopTier,
    /// Every tier the member holds, lowest first.
    pub tiers: Vec<Tier>,
    /// The mapped channels the member sees, each with the rule that gives them sight.
    pub reasons: Vec<SeatReason>,
}

/// Why a member sees one mapped channel.
#[derive(Serialize, ToSchema)]
pub struct SeatReason {
    pub channel_id: String,
    /// The channel's name, when the gateway told it.
    pub channel_name: Option<String>,
    /// `owner`, `administrator` (through `role_id`; the guild id for `@everyone`),
    /// `everyone`, `role` (the role's permissions), `role_overwrite` (the channel's allow
    /// for `role_id`) or `member_overwrite`.
    pub via: String,
    pub role_id: Option<String>,
    pub role_name: Option<String>,
}

impl SeatReason {
    pub fn new(
        channel_id: u64,
        why: crate::domain::permissions::Sight,
        guild: Option<&crate::discord::directory::GuildInfo>,
    ) -> Self {
        Self {
            channel_id: channel_id.to_string(),
            channel_name: guild
                .and_then(|g| g.channels.get(&channel_id))
                .map(|c| c.name.clone()),
            via: why.via.as_str().to_owned(),
            role_id: why.role_id.map(|r| r.to_string()),
            role_name: why
                .role_id
                .and_then(|r| guild.and_then(|g| g.roles.get(&r)))
                .map(|r| r.name.clone()),
        }
    }
}

impl Seat {
    /// From the auditor's tier mask: bit 0 basic, bit 1 advanced, bit 2 pro.
    pub fn new(user_id: u64, mask: u8) -> Self {
        let tiers: Vec<Tier> = [(1u8, Tier::Basic), (2, Tier::Advanced), (4, Tier::Pro)]
            .into_iter()
            .filter(|(bit, _)| mask & bit != 0)
            .map(|(_, t)| t)
            .collect();
        let tier = match tiers.last() {
            None => TopTier::None,
            Some(Tier::Basic) => TopTier::Basic,
            Some(Tier::Advanced) => TopTier::Advanced,
            Some(Tier::Pro) => TopTier::Pro,
        };
        Self {
            user_id: user_id.to_string(),
            username: None,
            display_name: None,
            tier,
            tiers,
            reasons: Vec::new(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SeatList {
    /// Ascending by user id.
    pub items: Vec<Seat>,
    /// Members holding a seat in all (the live count), not only on this page.
    pub total: u64,
    /// False while the auditor's index is not known to be exact (a large guild's member list
    /// still being paged, or events possibly lost until the next recount).
    pub complete: bool,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
    /// Every counted member (not only this page's) by mapped channel and reason, most
    /// members first: which role or overwrite to change to free seats.
    pub reasons_summary: Vec<SeatReasonCount>,
    /// With `q`: how many counted members match (this page holds up to `limit` of them).
    pub matched: Option<u64>,
}

/// How many counted members see a mapped channel for one reason.
#[derive(Serialize, ToSchema)]
pub struct SeatReasonCount {
    #[serde(flatten)]
    pub reason: SeatReason,
    pub members: u64,
}

#[derive(Deserialize, IntoParams)]
pub struct SeatsQuery {
    /// 1 to 500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only members with a user id above this one (the previous page's `next_after`).
    #[param(pattern = "^[1-9][0-9]{0,18}$")]
    pub after: Option<String>,
    /// Only the counted member with this user id, or those whose username or nickname
    /// starts with this text (Discord's member search: up to 1,000 matches). 1 to 100
    /// characters.
    #[param(min_length = 1, max_length = 100)]
    pub q: Option<String>,
}

/// Which counted members a page holds.
enum Filter {
    All,
    /// Those ids (ascending), of a search.
    Only(Vec<u64>),
}

async fn search_filter(state: &AppState, key: &ServerKey, q: Option<&str>) -> AppResult<Filter> {
    let Some(q) = q.map(str::trim) else {
        return Ok(Filter::All);
    };
    if q.is_empty() || q.chars().count() > 100 {
        return Err(AppError::new(
            ErrorCode::ValidationFailed,
            "q must be 1 to 100 characters",
        ));
    }
    if q.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(id) = crate::domain::snowflake::parse(q) {
            return Ok(Filter::Only(vec![id]));
        }
    }
    let names = state.names.as_ref().ok_or_else(|| {
        AppError::new(
            ErrorCode::DiscordUnavailable,
            "searching by name needs Discord (no bot token is configured); search by user id",
        )
    })?;
    let mut ids: Vec<u64> = names
        .search(key.guild_id, q)
        .await?
        .iter()
        .map(|m| m.user_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(Filter::Only(ids))
}

async fn counted_page(
    state: &AppState,
    key: &ServerKey,
    after: Option<u64>,
    limit: usize,
    filter: &Filter,
) -> AppResult<SeatPage> {
    state
        .actors
        .seats
        .send(CountedSeats {
            key: key.clone(),
            after,
            limit,
            only: match filter {
                Filter::All => None,
                Filter::Only(ids) => Some(ids.clone()),
            },
        })
        .await
        .map_err(|err| {
            AppError::new(ErrorCode::Internal, "the seat auditor is not running").with_source(err)
        })?
        .ok_or_else(|| {
            AppError::new(
                ErrorCode::SeatCheckPending,
                "the seat auditor has no live count of this guild yet (the bot has not received it from Discord, or its first recount is still running); try again shortly",
            )
        })
}

/// A page's rows with their reasons and names.
async fn seats_of(
    state: &AppState,
    key: &ServerKey,
    page: SeatPage,
    guild: Option<&GuildInfo>,
) -> Vec<Seat> {
    let ids: Vec<u64> = page.items.iter().map(|(id, _)| *id).collect();
    let names: HashMap<u64, Arc<MemberName>> = match &state.names {
        Some(names) => names.resolve(key.guild_id, &ids).await,
        None => HashMap::new(),
    };
    let mut reasons = page.reasons.into_iter();
    page.items
        .into_iter()
        .map(|(user_id, mask)| {
            let mut seat = Seat::new(user_id, mask);
            seat.reasons = reasons
                .next()
                .unwrap_or_default()
                .into_iter()
                .map(|(channel, why)| SeatReason::new(channel, why, guild))
                .collect();
            if let Some(name) = names.get(&user_id) {
                seat.username = Some(name.username.clone());
                seat.display_name = Some(name.display_name.clone());
            }
            seat
        })
        .collect()
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/seats", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$"), SeatsQuery),
    responses((status = 200, body = SeatList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: no such connector or server config", body = ErrorBody),
        (status = 409, description = "`seat_check_pending`: the seat auditor holds no live index of this guild yet (the bot has not received the guild from Discord, or its first recount is still running); retry shortly or request a refresh", body = ErrorBody),
        (status = 503, description = "`discord_unavailable`: a search by name needs Discord", body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/seats")]
pub async fn list_seats(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    query: web::Query<SeatsQuery>,
) -> AppResult<HttpResponse> {
    let key = server_key(&state, &caller, path.into_inner()).await?;
    if let Some(answer) = forward::to_owner(&state, &req, key.guild_id).await? {
        return Ok(answer);
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(AppError::new(
            ErrorCode::ValidationFailed,
            "limit must be 1 to 500",
        ));
    }
    let after = match query.after.as_deref() {
        None => None,
        Some(text) => Some(validate::snowflake("after", text)?),
    };
    require_config(&state, &key).await?;
    let filter = search_filter(&state, &key, query.q.as_deref()).await?;
    let page = counted_page(&state, &key, after, limit as usize, &filter).await?;
    let next_after = if page.more {
        page.items.last().map(|(id, _)| id.to_string())
    } else {
        None
    };
    let guild = state.directory.guild(key.guild_id);
    let reasons_summary = page
        .summary
        .iter()
        .map(|(channel, why, members)| SeatReasonCount {
            reason: SeatReason::new(*channel, *why, guild.as_ref()),
            members: *members,
        })
        .collect();
    let total = page.total as u64;
    let complete = page.complete;
    let matched = page.matched.map(|m| m as u64);
    let items = seats_of(&state, &key, page, guild.as_ref()).await;
    Ok(HttpResponse::Ok().json(SeatList {
        total,
        complete,
        items,
        next_after,
        reasons_summary,
        matched,
    }))
}

/// Rows of the export read from the auditor at a time.
const EXPORT_PAGE: usize = 500;

#[utoipa::path(get, path = "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/seats/export", tag = "servers",
    params(("tenant_key" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("connector_id" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$"),
        ("guild_id" = String, Path, pattern = "^[1-9][0-9]{0,18}$")),
    responses((status = 200, description = "Every counted member as CSV: `user_id,username,display_name,tier,reasons`, ascending by user id; `reasons` is `#channel via rule` for each mapped channel, joined by `; `", content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/seats/export")]
pub async fn export_seats(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> AppResult<HttpResponse> {
    let key = server_key(&state, &caller, path.into_inner()).await?;
    if let Some(answer) = forward::to_owner(&state, &req, key.guild_id).await? {
        return Ok(answer);
    }
    require_config(&state, &key).await?;
    // The first page answers the errors (no live count yet) before the stream starts.
    let first = counted_page(&state, &key, None, EXPORT_PAGE, &Filter::All).await?;
    let state = state.into_inner();
    let guild = state.directory.guild(key.guild_id);
    let filename = format!("seats-{}.csv", key.guild_id);
    let start = (Some(first), None::<u64>, true);
    let rows = futures_util::stream::unfold(start, move |(page, after, header)| {
        let state = state.clone();
        let key = key.clone();
        let guild = guild.clone();
        async move {
            let page = match page {
                Some(page) => page,
                None => {
                    let after = after?;
                    match counted_page(&state, &key, Some(after), EXPORT_PAGE, &Filter::All).await {
                        Ok(page) => page,
                        Err(err) => {
                            tracing::warn!(server = %key, error = %err, "[admin/discord-bot] seat export cut short");
                            return None;
                        }
                    }
                }
            };
            let more = page.more;
            let last = page.items.last().map(|(id, _)| *id);
            let seats = seats_of(&state, &key, page, guild.as_ref()).await;
            let mut chunk = String::new();
            if header {
                chunk.push_str("user_id,username,display_name,tier,reasons\r\n");
            }
            for seat in &seats {
                csv_row(&mut chunk, seat);
            }
            let next = if more { last } else { None };
            if chunk.is_empty() && next.is_none() {
                return None;
            }
            Some((
                Ok::<_, actix_web::Error>(web::Bytes::from(chunk)),
                (None, next, false),
            ))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{filename}\""),
        ))
        .streaming(rows))
}

fn csv_row(out: &mut String, seat: &Seat) {
    let tier = serde_json::to_value(seat.tier)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let reasons: Vec<String> = seat
        .reasons
        .iter()
        .map(|r| {
            let channel = r.channel_name.as_deref().unwrap_or(&r.channel_id);
            match r.role_name.as_deref().or(r.role_id.as_deref()) {
                Some(role) => format!("#{channel} via {} {role}", r.via),
                None => format!("#{channel} via {}", r.via),
            }
        })
        .collect();
    let fields = [
        seat.user_id.as_str(),
        seat.username.as_deref().unwrap_or(""),
        seat.display_name.as_deref().unwrap_or(""),
        tier.as_str(),
        &reasons.join("; "),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str("\r\n");
}

/// RFC 4180 quoting, and a leading `'` before what a spreadsheet would run as a formula (a
/// member can name themselves `=HYPERLINK(...)`).
fn csv_field(out: &mut String, field: &str) {
    let formula = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || field.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    out.push_str(&field.replace('"', "\"\""));
    if quote {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(username: &str) -> Seat {
        let mut s = Seat::new(42, 0b011);
        s.username = Some(username.to_owned());
        s.display_name = Some("Ann, \"the\" trader".to_owned());
        s.reasons = vec![SeatReason {
            channel_id: "7".into(),
            channel_name: Some("signals".into()),
            via: "role".into(),
            role_id: Some("9".into()),
            role_name: Some("subscriber".into()),
        }];
        s
    }

    #[test]
    fn a_csv_row_quotes_what_needs_it() {
        let mut out = String::new();
        csv_row(&mut out, &seat("ann"));
        assert_eq!(
            out,
            "42,ann,\"Ann, \"\"the\"\" trader\",advanced,#signals via role subscriber\r\n"
        );
    }

    #[test]
    fn a_name_that_reads_as_a_formula_is_defused() {
        let mut out = String::new();
        csv_row(&mut out, &seat("=HYPERLINK(\"x\")"));
        assert!(out.starts_with("42,\"'=HYPERLINK(\"\"x\"\")\","), "{out}");
    }
}
