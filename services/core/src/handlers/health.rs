//! `/health` (every component's status, Harbor's `OverallHealthStatus`),
//! `/statistics` and `/search`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use wharf_catalog::projects::{self, ListFilter, NameCond, Scope};
use wharf_catalog::repositories;

use super::repositories::viewer;
use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Query};
use crate::handlers::users::timestamp;
use crate::rbac::Role;
use crate::{App, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/statistics", get(statistics))
        .route("/search", get(search))
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

async fn check_database(app: &App) -> std::result::Result<(), String> {
    let q = sqlx::query("SELECT 1").execute(&app.db);
    match tokio::time::timeout(CHECK_TIMEOUT, q).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("the database is not usable: {e}")),
        Err(_) => Err("the database did not answer in time".into()),
    }
}

async fn check_redis(app: &App) -> std::result::Result<(), String> {
    let mut c = app.redis.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut c);
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("redis is not usable: {e}")),
        Err(_) => Err("redis did not answer in time".into()),
    }
}

/// Jobservice answers 200 when its database and queue answer.
async fn check_jobservice(app: &App) -> std::result::Result<(), String> {
    let url = format!("{}/health", app.config.jobservice.url.trim_end_matches('/'));
    let resp = app.http.get(&url).timeout(CHECK_TIMEOUT).send().await;
    match resp {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("jobservice answered {}", r.status())),
        Err(e) if e.is_timeout() => Err("jobservice did not answer in time".into()),
        Err(_) => Err(format!("jobservice is not reachable at {url}")),
    }
}

fn component(name: &str, r: std::result::Result<(), String>) -> Value {
    match r {
        Ok(()) => json!({"name": name, "status": "healthy"}),
        Err(e) => json!({"name": name, "status": "unhealthy", "error": e}),
    }
}

/// Harbor answers 200 either way; `status` says whether everything is healthy.
async fn health(State(app): State<AppState>) -> Json<Value> {
    let (db, redis, registry, jobservice) = tokio::join!(
        check_database(&app),
        check_redis(&app),
        crate::registry::health(&app),
        check_jobservice(&app)
    );
    let components = vec![
        component("core", Ok(())),
        component("database", db),
        component("redis", redis),
        component("registry", registry),
        component("jobservice", jobservice),
    ];
    let healthy = components.iter().all(|c| c["status"] == "healthy");
    Json(json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "components": components,
    }))
}

/// Counted over what the caller may see; Harbor asks callers to sign in.
async fn statistics(State(app): State<AppState>, who: Principal) -> Result<Json<Value>> {
    who.require_auth()?;
    let s = repositories::statistics(&app.db, &viewer(&who)).await?;
    Ok(Json(json!({
        "private_project_count": s.private_project_count,
        "private_repo_count": s.private_repo_count,
        "public_project_count": s.public_project_count,
        "public_repo_count": s.public_repo_count,
        "total_project_count": s.total_project_count,
        "total_repo_count": s.total_repo_count,
        "total_storage_consumption": s.total_storage_consumption,
    })))
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

/// Most results of each kind `/search` returns.
const SEARCH_LIMIT: i64 = 100;

/// Projects and repositories whose names contain `q`, among those the
/// caller may see.
async fn search(
    State(app): State<AppState>,
    who: Principal,
    Query(sq): Query<SearchQuery>,
) -> Result<Json<Value>> {
    let term = sq.q.unwrap_or_default();
    let term = term.trim();
    if term.is_empty() {
        return Err(ApiError::BadRequest("q is required".into()));
    }
    let v = viewer(&who);
    let scope = if v.all {
        Scope::All
    } else {
        Scope::Visible {
            user_id: v.user_id,
            names: v.project_names.clone(),
        }
    };
    let filter = ListFilter {
        scope,
        names: vec![NameCond::Fuzzy(term.to_owned())],
        ids: vec![],
        public: None,
        owner: None,
        sort: vec![],
    };
    let (found, _) = projects::list(&app.db, &filter, SEARCH_LIMIT, 0).await?;
    let ids: Vec<i64> = found.iter().map(|p| p.project_id).collect();
    let names: Vec<String> = found.iter().map(|p| p.name.clone()).collect();
    let mut metadata: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    for (id, k, val) in projects::metadata(&app.db, &ids).await? {
        metadata.entry(id).or_default().insert(k, val);
    }
    let counts: BTreeMap<String, i64> = projects::repo_counts(&app.db, &names)
        .await?
        .into_iter()
        .collect();
    let roles: BTreeMap<i64, i32> = match &who {
        Principal::User(u) => projects::roles_in(&app.db, u.id, &ids)
            .await?
            .into_iter()
            .collect(),
        _ => BTreeMap::new(),
    };
    let project: Vec<Value> = found
        .iter()
        .map(|p| {
            let role = roles.get(&p.project_id).copied().and_then(Role::from_id);
            json!({
                "project_id": p.project_id,
                "owner_id": p.owner_id,
                "owner_name": p.owner_name,
                "name": p.name,
                "registry_id": p.registry_id,
                "creation_time": timestamp(p.creation_time),
                "update_time": timestamp(p.update_time),
                "deleted": false,
                "togglable": true,
                "current_user_role_id": role.map(Role::id).unwrap_or(0),
                "current_user_role_ids": role.map(|r| vec![r.id()]).unwrap_or_default(),
                "repo_count": counts.get(&p.name).copied().unwrap_or(0),
                "chart_count": 0,
                "metadata": metadata.remove(&p.project_id).unwrap_or_default(),
            })
        })
        .collect();
    let repository: Vec<Value> = repositories::search_repositories(&app.db, &v, term, SEARCH_LIMIT)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "project_id": r.project_id,
                "project_name": r.project_name,
                "project_public": r.project_public,
                "repository_name": r.repository_name,
                "pull_count": r.pull_count,
                "artifact_count": r.artifact_count,
            })
        })
        .collect();
    Ok(Json(json!({"project": project, "repository": repository})))
}
