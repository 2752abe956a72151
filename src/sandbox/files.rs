//! Message attachments as Discord takes and hosts them: `multipart/form-data` bodies
//! (`payload_json` + `files[N]` parts) on the message routes, Discord's upload limits, and the
//! CDN path `GET /attachments/{channel_id}/{attachment_id}/{filename}` that serves the bytes
//! back without auth.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::core::Core;
use super::error::{DResult, DiscordError};
use super::model::sf;
use super::router::match_template;

/// Discord's default upload limit per file: 10 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;
/// Discord takes at most 10 files per message.
pub const MAX_FILES: usize = 10;
/// Room for `payload_json` and the multipart framing on top of ten full files.
const BODY_SLACK_BYTES: u64 = 1024 * 1024;

pub const CDN_TEMPLATE: &str = "/attachments/{channel_id}/{attachment_id}/{filename}";

/// One file part of a multipart body. `key` is what `attachments[].id` refers to: the `N` of
/// `files[N]`, or the part's name for other file parts.
#[derive(Debug, Clone)]
pub struct Upload {
    pub key: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// A hosted file, served by the CDN path.
#[derive(Debug, Clone)]
pub struct Hosted {
    pub channel_id: u64,
    pub filename: String,
    pub content_type: String,
    pub data: Bytes,
}

/// A parsed multipart body: the JSON the plain route would take, and the files.
#[derive(Debug)]
pub struct Form {
    pub payload: Value,
    pub uploads: Vec<Upload>,
}

/// The largest request body the REST and control routes read: ten files at the limit, a third
/// more for base64 (control bodies carry files that way), and room for JSON and framing.
pub fn body_limit(max_upload_bytes: u64) -> u64 {
    max_upload_bytes
        .saturating_mul(MAX_FILES as u64 + 4)
        .saturating_add(BODY_SLACK_BYTES)
}

/// Reads a request body up to `limit` bytes; a larger one is Discord's 413 (40005).
pub async fn read_body(mut payload: web::Payload, limit: u64) -> DResult<Bytes> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| DiscordError::invalid_form(format!("body: {e}")))?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(DiscordError::entity_too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Whether a `Content-Type` header value announces a multipart body.
pub fn is_multipart(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        c.trim_start()
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("multipart/"))
    })
}

/// Parses a `multipart/form-data` body as Discord does: `payload_json` (or, without it, the
/// plain text fields) is the JSON payload; every part with a filename or named `files[N]` is
/// an upload. A file above `max_file_bytes` is 413 (40005), more than ten files or a malformed
/// body 400 (50035), a `payload_json` that is not JSON 400 (50109).
pub async fn parse_form(content_type: &str, body: Bytes, max_file_bytes: u64) -> DResult<Form> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| DiscordError::invalid_form(format!("multipart: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let malformed = |e: multer::Error| DiscordError::invalid_form(format!("multipart: {e}"));

    let mut payload_json: Option<Value> = None;
    let mut fields = Map::new();
    let mut uploads = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let is_file = file_name.is_some() || name.starts_with("files[");
        if !is_file {
            let text = field.text().await.map_err(malformed)?;
            if name == "payload_json" {
                payload_json =
                    Some(serde_json::from_str(&text).map_err(|_| DiscordError::invalid_json())?);
            } else if !name.is_empty() {
                fields.insert(name, Value::String(text));
            }
            continue;
        }
        if uploads.len() == MAX_FILES {
            return Err(DiscordError::invalid_form(format!(
                "files: must be {MAX_FILES} or fewer in length"
            )));
        }
        let content_type = field.content_type().map(|m| m.to_string());
        let mut data = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            if (data.len() + chunk.len()) as u64 > max_file_bytes {
                return Err(DiscordError::entity_too_large());
            }
            data.extend_from_slice(&chunk);
        }
        let key = name
            .strip_prefix("files[")
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(&name)
            .to_owned();
        uploads.push(Upload {
            filename: file_name.unwrap_or_else(|| key.clone()),
            key,
            content_type,
            data: data.freeze(),
        });
    }
    let payload = match payload_json {
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(DiscordError::invalid_form(
                "payload_json: must be an object",
            ))
        }
        None => Value::Object(fields),
    };
    Ok(Form { payload, uploads })
}

/// Discord's attachment file names: characters other than letters, digits, `.`, `-` and `_`
/// become `_`, so the name is a URL path segment as it is.
pub fn clean_filename(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "unknown".into()
    } else {
        cleaned
    }
}

/// The CDN base: the sandbox's own HTTP server (its `api_url` without any `/api/v10`).
pub fn cdn_base(api_url: &str) -> &str {
    let base = api_url.trim_end_matches('/');
    base.strip_suffix("/api/v10").unwrap_or(base)
}

pub fn cdn_url(cdn_base: &str, channel_id: u64, attachment_id: u64, filename: &str) -> String {
    format!("{cdn_base}/attachments/{channel_id}/{attachment_id}/{filename}")
}

/// The content type Discord reports: the part's own, else a guess from the file name.
pub fn content_type_for(given: Option<&str>, filename: &str) -> String {
    match given.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => c.to_owned(),
        None => mime_guess::from_path(filename)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
    }
}

/// Discord's attachment object for a hosted file.
pub fn attachment_json(id: u64, file: &Hosted, url: &str, description: Option<&Value>) -> Value {
    let mut v = json!({
        "id": sf(id),
        "filename": file.filename,
        "size": file.data.len(),
        "url": url,
        "proxy_url": url,
        "content_type": file.content_type,
    });
    if let (Some(obj), Some(d)) = (v.as_object_mut(), description) {
        if d.is_string() {
            obj.insert("description".into(), d.clone());
        }
    }
    v
}

/// `attachments[].id` as a string: `0` and `"0"` both refer to `files[0]`.
pub fn attachment_ref(entry: &Value) -> Option<String> {
    match entry.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `GET /attachments/{channel_id}/{attachment_id}/{filename}`: the stored bytes with their
/// content type, no auth, like Discord's CDN. Injected faults apply to this path too.
pub async fn cdn_entry(req: HttpRequest, core: web::Data<Core>) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let Some(params) = match_template(CDN_TEMPLATE, &path) else {
        return DiscordError::not_found().to_response();
    };
    if method != "GET" && method != "HEAD" {
        return DiscordError::method_not_allowed().to_response();
    }
    if let Some(fault) = core.faults.take(&method, &path) {
        if let Some(ms) = fault.delay_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if !(200..300).contains(&fault.status) {
            return super::rest::fault_response(&fault);
        }
    }
    let ids = (params[0].parse::<u64>(), params[1].parse::<u64>());
    let (Ok(channel_id), Ok(attachment_id)) = ids else {
        return DiscordError::not_found().to_response();
    };
    let filename = params[2];
    let file = core.read(|st| {
        st.files
            .get(&attachment_id)
            .filter(|f| f.channel_id == channel_id && f.filename == filename)
            .map(|f| (f.content_type.clone(), f.data.clone()))
    });
    match file {
        Some((content_type, data)) => {
            if method == "GET" {
                core.stats.record_cdn_download();
            }
            HttpResponse::Ok().content_type(content_type).body(data)
        }
        None => DiscordError::not_found().to_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_body(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Bytes {
        let mut b = Vec::new();
        for (name, filename, data) in parts {
            b.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match filename {
                Some(f) => b.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => b.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Bytes::from(b)
    }

    const CT: &str = "multipart/form-data; boundary=XyZ";

    #[tokio::test]
    async fn payload_json_and_files_n_parts_are_read() {
        let body = form_body(
            "XyZ",
            &[
                ("payload_json", None, br#"{"content":"hi"}"#),
                ("files[0]", Some("a b.png"), b"\x89PNG"),
                ("files[1]", Some("c.txt"), b"text"),
            ],
        );
        let form = parse_form(CT, body, 1024).await.unwrap();
        assert_eq!(form.payload, json!({"content": "hi"}));
        assert_eq!(form.uploads.len(), 2);
        assert_eq!(form.uploads[0].key, "0");
        assert_eq!(form.uploads[0].filename, "a b.png");
        assert_eq!(&form.uploads[1].data[..], b"text");
    }

    #[tokio::test]
    async fn a_file_over_the_limit_is_413_40005() {
        let body = form_body("XyZ", &[("files[0]", Some("big.bin"), &[0u8; 33])]);
        let err = parse_form(CT, body, 32).await.unwrap_err();
        assert_eq!((err.status, err.code), (413, 40005));
    }

    #[tokio::test]
    async fn eleven_files_are_an_invalid_form_body() {
        let names: Vec<String> = (0..11).map(|i| format!("files[{i}]")).collect();
        let parts: Vec<(&str, Option<&str>, &[u8])> = names
            .iter()
            .map(|n| (n.as_str(), Some("f.txt"), &b"x"[..]))
            .collect();
        let err = parse_form(CT, form_body("XyZ", &parts), 32)
            .await
            .unwrap_err();
        assert_eq!((err.status, err.code), (400, 50035));
    }

    #[tokio::test]
    async fn malformed_bodies_are_400_not_panics() {
        for (ct, body) in [
            (CT, Bytes::from_static(b"--XyZ\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"a\"\r\n\r\nno end")),
            (CT, Bytes::from_static(b"garbage")),
            ("multipart/form-data", Bytes::from_static(b"--a\r\n")),
        ] {
            let err = parse_form(ct, body, 1024).await.unwrap_err();
            assert_eq!(err.status, 400, "{err}");
        }
    }

    #[test]
    fn filenames_become_url_safe_and_the_cdn_base_drops_the_api_prefix() {
        assert_eq!(clean_filename("my chart (1).png"), "my_chart__1_.png");
        assert_eq!(clean_filename("../"), ".._");
        assert_eq!(clean_filename(""), "unknown");
        assert_eq!(cdn_base("http://127.0.0.1:5/api/v10"), "http://127.0.0.1:5");
        assert_eq!(cdn_base("http://127.0.0.1:5/"), "http://127.0.0.1:5");
    }
}
