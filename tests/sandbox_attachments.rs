//! Attachments as Discord takes and hosts them: `multipart/form-data` uploads (`payload_json` +
//! `files[N]`) on message create and webhook execute, the upload limits (413 / 40005, ten
//! files), the CDN path that serves the bytes back, control-API posts with `content_base64`,
//! and the unmodified serenity client uploading a file.

mod common;

use common::sandbox::*;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use seatgate::sandbox::{RateLimitConfig, Sandbox, SandboxHandle, SandboxOptions, Scenario};
use serde_json::{json, Value};
use serenity::all::*;

const GUILD_MESSAGES: u64 = 1 << 9;
const MESSAGE_CONTENT: u64 = 1 << 15;

fn client() -> reqwest::Client {
    no_proxy();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .build()
        .unwrap()
}

fn api(sb: &SandboxHandle, path: &str) -> String {
    format!("{}/api/v10{path}", sb.api_url())
}

fn bot_auth(sb: &SandboxHandle) -> String {
    format!("Bot {}", sb.bot_token())
}

/// Discord's shape: `payload_json` plus one `files[N]` part per file.
fn upload_form(payload: Value, files: &[(&str, &[u8])]) -> Form {
    let mut form = Form::new().text("payload_json", payload.to_string());
    for (i, (name, data)) in files.iter().enumerate() {
        form = form.part(
            format!("files[{i}]"),
            Part::bytes(data.to_vec()).file_name(name.to_string()),
        );
    }
    form
}

/// Fetches a CDN url without any auth, as a browser would.
/// A multipart create in #general as the bot.
async fn create_with_files(
    c: &reqwest::Client,
    sb: &SandboxHandle,
    form: Form,
) -> reqwest::Response {
    c.post(api(sb, &format!("/channels/{GENERAL}/messages")))
        .header("Authorization", bot_auth(sb))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn fetch(c: &reqwest::Client, url: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let resp = c.get(url).send().await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|h| h.to_str().unwrap().to_owned());
    (status, content_type, resp.bytes().await.unwrap().to_vec())
}

fn attachment_id(a: &Value) -> u64 {
    a["id"].as_str().unwrap().parse().unwrap()
}

/// Each attachment object is Discord's, with a CDN url on the sandbox that serves `data`.
async fn assert_hosted(
    c: &reqwest::Client,
    sb: &SandboxHandle,
    channel: u64,
    a: &Value,
    filename: &str,
    data: &[u8],
) {
    let id = attachment_id(a);
    assert_eq!(a["filename"], filename, "{a}");
    assert_eq!(a["size"], data.len(), "{a}");
    let url = format!(
        "{}/attachments/{channel}/{id}/{filename}",
        sb.api_url().trim_end_matches('/')
    );
    assert_eq!(a["url"], url, "{a}");
    assert_eq!(a["proxy_url"], url, "{a}");
    assert!(a["content_type"].is_string(), "{a}");
    let (status, content_type, body) = fetch(c, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), a["content_type"].as_str());
    assert_eq!(body, data);
    assert_eq!(sb.attachment_bytes(id).as_deref(), Some(data));
}

#[tokio::test]
async fn multipart_create_hosts_both_files_and_the_cdn_serves_them() {
    let sb = start().await;
    let c = client();
    let mut gw = RawGateway::connect(sb.gateway_url()).await;
    gw.identify(sb.bot_token(), GUILD_MESSAGES | MESSAGE_CONTENT)
        .await;

    let png: &[u8] = b"\x89PNG\r\n\x1a\n fake image bytes";
    let csv: &[u8] = b"day,signal\nmon,buy\n";
    let form = upload_form(
        json!({"content": "charts", "attachments": [
            {"id": 0, "filename": "chart.png"},
            {"id": 1, "filename": "week.csv", "description": "the week"}
        ]}),
        &[("chart.png", png), ("week.csv", csv)],
    );
    let resp = create_with_files(&c, &sb, form).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["content"], "charts");
    let list = m["attachments"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{m}");
    assert_hosted(&c, &sb, GENERAL, &list[0], "chart.png", png).await;
    assert_eq!(list[0]["content_type"], "image/png");
    assert_hosted(&c, &sb, GENERAL, &list[1], "week.csv", csv).await;
    assert_eq!(list[1]["description"], "the week");
    assert_ne!(list[0]["id"], list[1]["id"]);

    // The message as REST reads it back, and the MESSAGE_CREATE dispatch, carry the same.
    let got: Value = c
        .get(api(
            &sb,
            &format!("/channels/{GENERAL}/messages/{}", m["id"].as_str().unwrap()),
        ))
        .header("Authorization", bot_auth(&sb))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["attachments"], m["attachments"]);
    let d = gw.dispatch_named("MESSAGE_CREATE").await;
    assert_eq!(d["d"]["attachments"], m["attachments"]);

    // Unknown ids, channels or names are 404; the CDN needs no auth but is not a catch-all.
    let id = attachment_id(&list[0]);
    let base = sb.api_url().trim_end_matches('/').to_owned();
    for url in [
        format!("{base}/attachments/{GENERAL}/{}/chart.png", id + 999),
        format!("{base}/attachments/{SIGNALS}/{id}/chart.png"),
        format!("{base}/attachments/{GENERAL}/{id}/other.png"),
        format!("{base}/attachments/{GENERAL}/nope/chart.png"),
    ] {
        assert_eq!(fetch(&c, &url).await.0, StatusCode::NOT_FOUND, "{url}");
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn files_parts_without_an_attachments_entry_are_attached_too() {
    let sb = start().await;
    let c = client();
    let form = upload_form(json!({}), &[("notes one.txt", b"hello")]);
    let resp = create_with_files(&c, &sb, form).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["content"], "");
    let list = m["attachments"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{m}");
    // Discord's file names are URL-safe: the space becomes `_`.
    assert_hosted(&c, &sb, GENERAL, &list[0], "notes_one.txt", b"hello").await;
    assert_eq!(list[0]["content_type"], "text/plain");
    sb.shutdown().await;
}

#[tokio::test]
async fn multipart_webhook_execute_with_wait_hosts_the_files() {
    let sb = start().await;
    let c = client();
    let hook: Value = c
        .post(api(&sb, &format!("/channels/{SIGNALS}/webhooks")))
        .header("Authorization", bot_auth(&sb))
        .json(&json!({"name": "mirror"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, token) = (
        hook["id"].as_str().unwrap(),
        hook["token"].as_str().unwrap(),
    );

    let a: &[u8] = &[0u8, 1, 2, 3, 255, 254];
    let b: &[u8] = b"second file";
    let form = upload_form(
        json!({"content": "mirrored", "username": "alice", "attachments": [
            {"id": 0, "filename": "raw.bin"}, {"id": 1, "filename": "b.txt"}
        ]}),
        &[("raw.bin", a), ("b.txt", b)],
    );
    let resp = c
        .post(api(&sb, &format!("/webhooks/{id}/{token}?wait=true")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["webhook_id"], id);
    assert_eq!(m["author"]["username"], "alice");
    let list = m["attachments"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{m}");
    assert_hosted(&c, &sb, SIGNALS, &list[0], "raw.bin", a).await;
    assert_eq!(list[0]["content_type"], "application/octet-stream");
    assert_hosted(&c, &sb, SIGNALS, &list[1], "b.txt", b).await;

    // Editing the webhook message keeps the named attachment and adds a new file.
    let form = upload_form(
        json!({"content": "edited", "attachments": [
            {"id": list[1]["id"]}, {"id": 0, "filename": "c.txt"}
        ]}),
        &[("c.txt", b"third")],
    );
    let mid = m["id"].as_str().unwrap();
    let resp = c
        .patch(api(&sb, &format!("/webhooks/{id}/{token}/messages/{mid}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let edited: Value = resp.json().await.unwrap();
    let list2 = edited["attachments"].as_array().unwrap();
    assert_eq!(list2.len(), 2, "{edited}");
    assert_eq!(list2[0], list[1]);
    assert_hosted(&c, &sb, SIGNALS, &list2[1], "c.txt", b"third").await;
    sb.shutdown().await;
}

#[tokio::test]
async fn a_file_over_the_limit_is_413_40005_and_creates_nothing() {
    no_proxy();
    let sb = Sandbox::start(SandboxOptions {
        scenario: Some(Scenario::from_json(&scenario()).unwrap()),
        rate_limits: RateLimitConfig::disabled(),
        max_upload_bytes: 1024,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let c = client();
    let send = |files: Vec<(&'static str, Vec<u8>)>| {
        let c = c.clone();
        let url = api(&sb, &format!("/channels/{GENERAL}/messages"));
        let auth = bot_auth(&sb);
        async move {
            let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (*n, &d[..])).collect();
            let form = upload_form(json!({"content": "x"}), &refs);
            let resp = c
                .post(url)
                .header("Authorization", auth)
                .multipart(form)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };

    let (status, body) = send(vec![("ok.txt", vec![b'a'; 10]), ("big.bin", vec![0; 1025])]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        json!({"code": 40005, "message": "Request entity too large"})
    );
    assert_eq!(sb.message_count(GENERAL), 0, "nothing was created");

    // Exactly at the limit is fine; the limit can be raised at run time.
    let (status, _) = send(vec![("edge.bin", vec![7; 1024])]).await;
    assert_eq!(status, StatusCode::OK);
    sb.set_max_upload_bytes(4096);
    let (status, _) = send(vec![("big.bin", vec![0; 1025])]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sb.message_count(GENERAL), 2);

    // And through the control API.
    let resp = c
        .put(format!("{}/upload-limit", sb.control_url()))
        .json(&json!({"max_upload_bytes": 16}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, body) = send(vec![("small.bin", vec![0; 17])]).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!(40005))
    );

    // More than ten files is an invalid form body.
    let eleven: Vec<(&'static str, Vec<u8>)> = (0..11).map(|_| ("f.txt", vec![b'x'])).collect();
    let (status, body) = send(eleven).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], 50035);
    assert_eq!(sb.message_count(GENERAL), 2, "nothing more was created");
    sb.shutdown().await;
}

#[tokio::test]
async fn large_but_allowed_uploads_are_not_cut_off_by_the_body_limit() {
    let sb = start().await;
    let c = client();
    // Three files of 3 MiB: well above actix's default body limits, within Discord's.
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let files: Vec<(&str, &[u8])> = vec![("a.bin", &big), ("b.bin", &big), ("c.bin", &big)];
    let resp = create_with_files(&c, &sb, upload_form(json!({}), &files)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let m: Value = resp.json().await.unwrap();
    let list = m["attachments"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_hosted(&c, &sb, GENERAL, &list[2], "c.bin", &big).await;
    sb.shutdown().await;
}

#[tokio::test]
async fn a_malformed_multipart_body_is_400() {
    let sb = start().await;
    let c = client();
    let url = api(&sb, &format!("/channels/{GENERAL}/messages"));
    let bodies: [(&str, &[u8]); 4] = [
        // Never closed.
        (
            "multipart/form-data; boundary=XyZ",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"a.txt\"\r\n\r\nno end",
        ),
        // Not multipart at all.
        ("multipart/form-data; boundary=XyZ", b"just some text"),
        // No boundary.
        ("multipart/form-data", b"--a\r\n\r\n--a--\r\n"),
        // payload_json that is not JSON.
        (
            "multipart/form-data; boundary=XyZ",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"payload_json\"\r\n\r\n{nope\r\n--XyZ--\r\n",
        ),
    ];
    for (content_type, body) in bodies {
        let resp = c
            .post(&url)
            .header("Authorization", bot_auth(&sb))
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{content_type}");
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["code"] == 50035 || v["code"] == 50109,
            "invalid form body or invalid JSON: {v}"
        );
    }
    assert_eq!(sb.message_count(GENERAL), 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn control_posts_with_content_base64_are_hosted() {
    use base64::Engine as _;
    let sb = start().await;
    let c = client();
    let png: &[u8] = b"\x89PNG\r\n\x1a\n control bytes";
    let encoded = base64::engine::general_purpose::STANDARD.encode(png);

    // Over HTTP.
    let resp = c
        .post(format!("{}/channels/{GENERAL}/messages", sb.control_url()))
        .json(&json!({
            "author": {"id": ALICE.to_string(), "username": "alice"},
            "content": "look",
            "attachments": [
                {"filename": "chart.png", "content_base64": encoded, "content_type": "image/png"},
                {"id": "123", "filename": "given.txt", "url": "https://example.invalid/given.txt", "size": 3}
            ]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let m: Value = resp.json().await.unwrap();
    let list = m["attachments"].as_array().unwrap();
    assert_hosted(&c, &sb, GENERAL, &list[0], "chart.png", png).await;
    assert_eq!(list[0]["content_type"], "image/png");
    assert_eq!(
        list[1],
        json!({"id": "123", "filename": "given.txt", "url": "https://example.invalid/given.txt", "size": 3}),
        "entries without content_base64 are stored as given"
    );

    // Through the handle; the content type is guessed from the name when not given.
    let m = sb
        .post_message(
            GENERAL,
            &json!({
                "author": {"id": BOB.to_string(), "username": "bob"},
                "attachments": [{"filename": "data.json", "content_base64": base64::engine::general_purpose::STANDARD.encode(b"{}")}]
            }),
        )
        .unwrap();
    let a = &m["attachments"][0];
    assert_eq!(a["content_type"], "application/json");
    assert_hosted(&c, &sb, GENERAL, a, "data.json", b"{}").await;

    // Not base64: an invalid form body, nothing posted.
    let before = sb.message_count(GENERAL);
    let err = sb
        .post_message(
            GENERAL,
            &json!({
                "author": {"id": BOB.to_string(), "username": "bob"},
                "attachments": [{"filename": "x.bin", "content_base64": "%%%"}]
            }),
        )
        .unwrap_err();
    assert_eq!((err.status, err.code), (400, 50035));
    assert_eq!(sb.message_count(GENERAL), before);
    sb.shutdown().await;
}

#[tokio::test]
async fn plain_json_creates_still_store_attachments_as_given() {
    let sb = start().await;
    let c = client();
    let given =
        json!([{"id": "1", "filename": "x.png", "url": "https://cdn.example/x.png", "size": 1}]);
    let resp = c
        .post(api(&sb, &format!("/channels/{GENERAL}/messages")))
        .header("Authorization", bot_auth(&sb))
        .json(&json!({"content": "plain", "attachments": given}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["content"], "plain");
    assert_eq!(m["attachments"], given);
    sb.shutdown().await;
}

#[tokio::test]
async fn cdn_requests_can_be_faulted() {
    let sb = start().await;
    let c = client();
    let m = sb
        .post_message(
            GENERAL,
            &json!({
                "author": {"id": ALICE.to_string(), "username": "alice"},
                "attachments": [{"filename": "f.txt", "content_base64": "aGk="}]
            }),
        )
        .unwrap();
    let url = m["attachments"][0]["url"].as_str().unwrap().to_owned();
    sb.add_fault(seatgate::sandbox::Fault::new(
        "GET",
        "/attachments/{c}/{a}/{f}",
        503,
        1,
    ));
    assert_eq!(fetch(&c, &url).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, body) = fetch(&c, &url).await;
    assert_eq!((status, body), (StatusCode::OK, b"hi".to_vec()));
    sb.shutdown().await;
}

#[tokio::test]
async fn the_unmodified_serenity_client_uploads_files() {
    let sb = start().await;
    let c = client();
    let http = seatgate::discord::connect::http(sb.api_url(), sb.bot_token());
    let png: &[u8] = b"\x89PNG\r\n\x1a\n serenity";
    let m = ChannelId::new(GENERAL)
        .send_message(
            &http,
            CreateMessage::new()
                .content("from serenity")
                .add_file(CreateAttachment::bytes(png, "chart.png"))
                .add_file(CreateAttachment::bytes(&b"a,b\n1,2\n"[..], "table.csv")),
        )
        .await
        .unwrap();
    assert_eq!(m.content, "from serenity");
    assert_eq!(m.attachments.len(), 2);
    let a = &m.attachments[0];
    assert_eq!(a.filename, "chart.png");
    assert_eq!(a.size as usize, png.len());
    assert_eq!(a.content_type.as_deref(), Some("image/png"));
    let (status, _, body) = fetch(&c, &a.url).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, png));
    assert_eq!(m.attachments[1].filename, "table.csv");
    assert_eq!(
        sb.attachment_bytes(m.attachments[1].id.get()).unwrap(),
        b"a,b\n1,2\n"
    );

    // A webhook, through serenity's own execute.
    let hook = ChannelId::new(SIGNALS)
        .create_webhook(&http, CreateWebhook::new("mirror"))
        .await
        .unwrap();
    let sent = hook
        .execute(
            &http,
            true,
            ExecuteWebhook::new()
                .username("alice")
                .add_file(CreateAttachment::bytes(&b"webhook file"[..], "w.txt")),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.attachments.len(), 1);
    let (status, _, body) = fetch(&c, &sent.attachments[0].url).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"webhook file"[..])
    );
    sb.shutdown().await;
}
