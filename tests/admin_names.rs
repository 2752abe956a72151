//! The admin API speaks Discord's names, against the whole service on the sandbox: the
//! guilds a tenant uses with their channels and roles (another tenant's answer 404), the
//! counted members' usernames and display names, a search by name or id, and the CSV export.

mod admin_support;

use admin_support::live::{
    until, Live, BOT_ROLE, BRONZE, CHANNEL, CONNECTOR, GOLD, GOLD_NICK, GUILD, MEMBERS, OWNER,
    SEATS, SOURCE_GUILD, SUBSCRIBER, TENANT,
};
use admin_support::server_body;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const OPERATOR: &str = "operator-token-for-the-names-tests";

fn field(list: &Value, key: &str) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x[key].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn get_as(live: &Live, token: &str, path: &str) -> (StatusCode, Value) {
    let resp = live
        .http
        .get(format!("{}{path}", live.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin API reachable");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn guilds_channels_roles_and_members_by_name() {
    let live = Live::start(OPERATOR).await;
    live.connector().await;
    let path = live.server_path();
    let (s, v) = live
        .call(
            Method::PUT,
            &path,
            Some(server_body(json!({"seat_limit": SEATS}))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // The tenant's guilds, by name, with how it uses each.
    let guilds = format!("/api/v1/tenants/{TENANT}/guilds");
    until("both guilds named", Duration::from_secs(10), || async {
        let (_, v) = live.call(Method::GET, &guilds, None).await;
        field(&v, "name") == ["Alpha Traders", "Signal Provider"]
    })
    .await;
    let (_, v) = live.call(Method::GET, &guilds, None).await;
    assert_eq!(v["items"][0]["id"], json!(GUILD.to_string()));
    assert_eq!(v["items"][0]["uses"], json!(["target"]));
    assert_eq!(v["items"][1]["id"], json!(SOURCE_GUILD.to_string()));
    assert_eq!(v["items"][1]["uses"], json!(["source"]));
    assert_eq!(v["items"][0]["bot_in_guild"], json!(true));

    // The rest of the API names what it shows too.
    let (_, v) = live
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{TENANT}/connectors"),
            None,
        )
        .await;
    assert_eq!(
        v["items"][0]["source_guild_name"],
        json!("Signal Provider"),
        "{v}"
    );
    let (_, v) = live
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/mappings"),
            None,
        )
        .await;
    let m = &v["items"][0];
    assert_eq!(
        (
            m["source_channel_name"].clone(),
            m["target_guild_name"].clone(),
            m["target_channel_name"].clone()
        ),
        (
            json!("announcements"),
            json!("Alpha Traders"),
            json!("signals")
        ),
        "{m}"
    );
    let (_, v) = live
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{TENANT}/connectors/{CONNECTOR}/servers"),
            None,
        )
        .await;
    assert_eq!(v["items"][0]["guild_name"], json!("Alpha Traders"), "{v}");

    let (s, channels) = live
        .call(Method::GET, &format!("{guilds}/{GUILD}/channels"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{channels}");
    assert_eq!(field(&channels, "name"), ["general", "signals"]);
    let signals = &channels["items"][1];
    assert_eq!(signals["id"], json!(CHANNEL.to_string()));
    assert_eq!(signals["type"], json!(0));
    assert_eq!(signals["bot_can_post"], json!(true), "{signals}");
    // Webhooks need MANAGE_WEBHOOKS, which the bot's role lacks.
    assert_eq!(signals["webhook_can_post"], json!(false), "{signals}");

    let (s, roles) = live
        .call(Method::GET, &format!("{guilds}/{GUILD}/roles"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{roles}");
    assert_eq!(
        field(&roles, "id"),
        [BOT_ROLE, GOLD, BRONZE, SUBSCRIBER, GUILD].map(|id| id.to_string())
    );
    assert_eq!(
        field(&roles, "name"),
        ["seatgate", "gold", "bronze", "subscriber", "@everyone"]
    );

    // Another tenant knows nothing of them; a guild nobody uses is unknown to a tenant too.
    let (s, created) = live
        .call(
            Method::POST,
            "/api/v1/tenants/rival/tokens",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let rival = created["token"].as_str().expect("token").to_owned();
    let (s, v) = get_as(&live, &rival, "/api/v1/tenants/rival/guilds").await;
    assert_eq!((s, v["items"].clone()), (StatusCode::OK, json!([])));
    for route in ["channels", "roles"] {
        let (s, v) = get_as(
            &live,
            &rival,
            &format!("/api/v1/tenants/rival/guilds/{GUILD}/{route}"),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        assert_eq!(v["error"]["code"], json!("not_found"));
        let (s, _) = get_as(&live, &rival, &format!("{guilds}/{GUILD}/{route}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's path");
    }

    // Counted members with their names: the username, and the nickname where one is set.
    let seats = format!("{path}/seats");
    until("the counted members", Duration::from_secs(20), || async {
        let (s, v) = live.call(Method::GET, &seats, None).await;
        s == StatusCode::OK && v["total"] == json!(SEATS)
    })
    .await;
    let (_, page) = live.call(Method::GET, &seats, None).await;
    for m in page["items"].as_array().expect("items") {
        let id = m["user_id"].as_str().expect("user_id");
        assert_eq!(m["username"], json!(format!("u{id}")), "{m}");
        let display = if id == MEMBERS[1].to_string() {
            GOLD_NICK.to_owned()
        } else {
            format!("u{id}")
        };
        assert_eq!(m["display_name"], json!(display), "{m}");
    }

    // Search: by a nickname's start (any case), by a username's start (the outsider also
    // matches but holds no seat), by id, and for nobody.
    let (_, v) = live
        .call(Method::GET, &format!("{seats}?q=goLD"), None)
        .await;
    assert_eq!(field(&v, "user_id"), [MEMBERS[1].to_string()], "{v}");
    assert_eq!(v["matched"], json!(1));
    let (_, v) = live
        .call(Method::GET, &format!("{seats}?q=u7100"), None)
        .await;
    assert_eq!(
        field(&v, "user_id"),
        MEMBERS.map(|m| m.to_string()),
        "subscribers, not the outsider: {v}"
    );
    let (_, v) = live
        .call(Method::GET, &format!("{seats}?q={OWNER}"), None)
        .await;
    assert_eq!(field(&v, "user_id"), [OWNER.to_string()], "{v}");
    assert_eq!(v["total"], json!(SEATS), "total stays the whole count");
    let (_, v) = live
        .call(Method::GET, &format!("{seats}?q=nobody"), None)
        .await;
    assert_eq!(
        (v["items"].clone(), v["matched"].clone()),
        (json!([]), json!(0))
    );
    let (s, v) = live
        .call(Method::GET, &format!("{seats}?q=%20"), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // The export: every counted member, one CSV row each, with names and reasons.
    let resp = live
        .http
        .get(format!("{}{seats}/export", live.base))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    let csv = resp.text().await.expect("csv body");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "user_id,username,display_name,tier,reasons");
    assert_eq!(lines.len(), 1 + SEATS as usize, "{csv}");
    let gold = lines
        .iter()
        .find(|l| l.starts_with(&MEMBERS[1].to_string()))
        .expect("the gold subscriber's row");
    assert_eq!(
        *gold,
        format!(
            "{},u{},{GOLD_NICK},none,#signals via role_overwrite subscriber",
            MEMBERS[1], MEMBERS[1]
        )
    );
    live.stop().await;
}
