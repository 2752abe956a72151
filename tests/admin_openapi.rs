//! The OpenAPI document: it parses as OpenAPI 3, lists every route of the admin API, and
//! every operation it lists is served by the app (none falls through to "no such route").

mod admin_support;

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use admin_support::*;
use seatgate::http::NO_ROUTE;

const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/tenants/{tenant_key}/tokens"),
    ("get", "/api/v1/tenants/{tenant_key}/tokens"),
    ("delete", "/api/v1/tenants/{tenant_key}/tokens/{token_id}"),
    ("get", "/api/v1/tenants/{tenant_key}/connectors"),
    ("post", "/api/v1/tenants/{tenant_key}/connectors"),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}",
    ),
    (
        "put",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}",
    ),
    (
        "delete",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings",
    ),
    (
        "post",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}",
    ),
    (
        "put",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}",
    ),
    (
        "delete",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}",
    ),
    (
        "put",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}",
    ),
    (
        "delete",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/snapshot",
    ),
    (
        "post",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/audit",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/seats",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/events",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/failed-jobs",
    ),
    (
        "patch",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}",
    ),
    (
        "patch",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/mappings/{mapping_id}",
    ),
    (
        "patch",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}",
    ),
    ("get", "/api/v1/tenants/{tenant_key}/source-guilds"),
    ("get", "/api/v1/tenants/{tenant_key}/guilds"),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/guilds/{guild_id}/channels",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/guilds/{guild_id}/roles",
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_key}/connectors/{connector_id}/servers/{guild_id}/seats/export",
    ),
    (
        "put",
        "/api/v1/tenants/{tenant_key}/source-guilds/{guild_id}",
    ),
    (
        "delete",
        "/api/v1/tenants/{tenant_key}/source-guilds/{guild_id}",
    ),
    ("get", "/api/v1/enforcement"),
    ("put", "/api/v1/enforcement"),
    ("get", "/api/v1/queues"),
    ("get", "/api/v1/shards"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/metrics"),
];

#[actix_web::test]
async fn the_document_is_openapi_3_and_lists_exactly_the_routes() {
    let h = harness().await;
    let app = app!(h.state);
    let r = send(&app, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc: utoipa::openapi::OpenApi =
        serde_json::from_str(&r.text).expect("parses as an OpenAPI document");
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3."));
    let mut listed = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            ("get", &item.get),
            ("put", &item.put),
            ("post", &item.post),
            ("delete", &item.delete),
            ("patch", &item.patch),
        ] {
            if let Some(op) = op {
                assert!(
                    !op.responses.responses.is_empty(),
                    "{method} {path} has no responses"
                );
                listed.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(listed, expected);
    assert!(r.body["components"]["securitySchemes"]["bearer"].is_object());
    // Every $ref points at a schema the document defines.
    let schemas = r.body["components"]["schemas"].as_object().unwrap();
    for (pos, _) in r.text.match_indices("#/components/schemas/") {
        let name: String = r.text[pos + 21..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        assert!(schemas.contains_key(&name), "dangling $ref {name}");
    }
}

#[actix_web::test]
async fn every_documented_operation_is_served() {
    let h = harness().await;
    let app = app!(h.state);
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{tenant_key}", "acme")
            .replace("{connector_id}", "c1")
            .replace("{guild_id}", "900")
            .replace("{mapping_id}", "1")
            .replace("{token_id}", "1");
        let body = matches!(*method, "post" | "put").then(|| serde_json::json!({}));
        let r = send(
            &app,
            &method.to_uppercase(),
            &concrete,
            Some(OPERATOR),
            body,
        )
        .await;
        let message = r.body["error"]["message"].as_str().unwrap_or("");
        assert_ne!(
            message, NO_ROUTE,
            "{method} {path} is documented but not served"
        );
        assert!(
            !r.status.is_server_error() || r.status == StatusCode::NOT_IMPLEMENTED,
            "{method} {path}: {}",
            r.text
        );
    }
}
