//! The admin web page: plain HTML, JS and CSS embedded in the binary (no CDN, works
//! offline). The page asks for the bearer token in a field and keeps it in sessionStorage;
//! it never puts it in a URL.

use actix_web::{get, HttpResponse};

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

fn html() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
        ))
        .body(INDEX_HTML)
}

#[get("/")]
pub async fn index() -> HttpResponse {
    html()
}

#[get("/admin")]
pub async fn admin_index() -> HttpResponse {
    html()
}

#[get("/admin/app.js")]
pub async fn app_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(APP_JS)
}

#[get("/admin/style.css")]
pub async fn style_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(STYLE_CSS)
}
