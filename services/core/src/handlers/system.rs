//! `/ping` and `/systeminfo`.

use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::auth::Principal;
use crate::extract::Json;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ping", get(ping))
        .route("/systeminfo", get(systeminfo))
}

async fn ping() -> &'static str {
    "Pong"
}

/// Harbor's general system information; the details that only matter to an
/// administrator are shown to authenticated callers only, as Harbor does.
async fn systeminfo(
    axum::extract::State(app): axum::extract::State<AppState>,
    who: Principal,
) -> Json<serde_json::Value> {
    let host = url::Url::parse(&app.config.external_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let port = url::Url::parse(&app.config.external_url)
        .ok()
        .and_then(|u| u.port())
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let mut info = json!({
        "auth_mode": "db_auth",
        "primary_auth_mode": false,
        "self_registration": false,
        "harbor_version": concat!("wharf-", env!("CARGO_PKG_VERSION")),
        "banner_message": "",
        "oidc_provider_name": "",
    });
    if !matches!(who, Principal::Anonymous) {
        info["registry_url"] = json!(format!("{host}{port}"));
        info["external_url"] = json!(app.config.external_url);
        info["project_creation_restriction"] = json!("everyone");
        info["has_ca_root"] = json!(false);
        info["read_only"] = json!(false);
        info["with_chartmuseum"] = json!(false);
        info["notification_enable"] = json!(true);
    }
    Json(info)
}
