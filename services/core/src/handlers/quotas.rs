//! Storage quotas: `/quotas` and `/quotas/{id}`, system administrators
//! only, as in Harbor (project members see theirs in the project summary).
//! The registry enforces them in its write transaction.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wharf_catalog::quotas::{self, Quota, SortKey};

use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::handlers::users::{api_uri, timestamp};
use crate::paging::{paged, ListQuery};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/quotas", get(list_quotas))
        .route("/quotas/{id}", get(get_quota).put(update_quota))
}

/// Harbor's `Quota`.
fn quota_json(q: &Quota) -> Value {
    json!({
        "id": q.id,
        "ref": {"id": q.project_id, "name": q.project_name, "owner_name": q.owner_name},
        "hard": {"storage": q.hard_storage},
        "used": {"storage": q.used_storage},
        "creation_time": timestamp(q.creation_time),
        "update_time": timestamp(q.update_time),
    })
}

fn parse_id(raw: &str) -> Result<i64> {
    raw.parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("quota id {raw:?} is not a number")))
}

#[derive(Debug, Deserialize)]
struct QuotasQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    reference: Option<String>,
    reference_id: Option<String>,
    sort: Option<String>,
}

async fn list_quotas(
    State(app): State<AppState>,
    who: Principal,
    uri: http::Uri,
    Query(q): Query<QuotasQuery>,
) -> Result<Response> {
    who.require_sysadmin()?;
    let page = ListQuery {
        page: q.page,
        page_size: q.page_size,
        ..ListQuery::default()
    }
    .page()?;
    match q.reference.as_deref() {
        None | Some("") | Some("project") => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "reference must be \"project\", not {other:?}"
            )))
        }
    }
    let project_id = match q.reference_id.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(r.parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!("reference_id must be a project id, not {r:?}"))
        })?),
    };
    let sort = match q.sort.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let (desc, key) = match s.strip_prefix('-') {
                Some(k) => (true, k),
                None => (false, s),
            };
            let key = match key {
                "hard.storage" => SortKey::HardStorage,
                "used.storage" => SortKey::UsedStorage,
                "creation_time" => SortKey::CreationTime,
                "update_time" => SortKey::UpdateTime,
                "id" => SortKey::Id,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "cannot sort quotas by {other:?}; use hard.storage, used.storage, creation_time, update_time or id"
                    )))
                }
            };
            Some((key, desc))
        }
    };
    let (rows, total) =
        quotas::list(&app.db, project_id, sort, page.limit(), page.offset()).await?;
    Ok(paged(
        rows.iter().map(quota_json).collect::<Vec<_>>(),
        total,
        page,
        &api_uri(&uri),
    ))
}

async fn get_quota(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    who.require_sysadmin()?;
    let id = parse_id(&id)?;
    let q = quotas::by_id(&app.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("quota {id} not found")))?;
    Ok(Json(quota_json(&q)))
}

/// Harbor's `QuotaUpdateReq`: `{"hard": {"storage": <bytes or -1>}}`.
#[derive(Debug, Deserialize)]
struct QuotaUpdateReq {
    hard: Option<BTreeMap<String, i64>>,
}

async fn update_quota(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(req): Json<QuotaUpdateReq>,
) -> Result<StatusCode> {
    who.require_sysadmin()?;
    let id = parse_id(&id)?;
    let hard = req.hard.ok_or_else(|| {
        ApiError::BadRequest("hard is required: {\"hard\": {\"storage\": <bytes or -1>}}".into())
    })?;
    if let Some(other) = hard.keys().find(|k| *k != "storage") {
        return Err(ApiError::BadRequest(format!(
            "hard.{other}: Wharf's quotas limit storage only"
        )));
    }
    let storage = *hard
        .get("storage")
        .ok_or_else(|| ApiError::BadRequest("hard.storage is required".into()))?;
    if storage < quotas::UNLIMITED {
        return Err(ApiError::BadRequest(format!(
            "hard.storage must be -1 (unlimited) or a number of bytes, not {storage}"
        )));
    }
    let mut tx = app.db.begin().await?;
    let q = quotas::by_id(&mut *tx, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("quota {id} not found")))?;
    quotas::set_hard(&mut *tx, id, storage).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(q.project_id),
        "update",
        "quota",
        &format!("{}: storage {storage}", q.project_name),
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}
