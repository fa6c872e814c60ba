//! Tag immutability rules: `/projects/{project}/immutabletagrules`. The
//! registry applies them in its write transaction (`wharf_catalog::policy`).

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use wharf_catalog::immutable::{self, Rule, RuleBody, Selector};

use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::handlers::users::{api_uri, created};
use crate::paging::{paged, ListQuery};
use crate::rbac::{self, Action, Resource};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/immutabletagrules",
            get(list_rules).post(create_rule),
        )
        .route(
            "/projects/{project}/immutabletagrules/{id}",
            put(update_rule).delete(delete_rule),
        )
}

/// Harbor's `ImmutableRule`.
fn rule_json(r: &Rule) -> Value {
    json!({
        "id": r.id,
        "priority": r.priority,
        "disabled": r.disabled,
        "action": r.rule.action,
        "template": r.rule.template,
        "params": r.rule.params,
        "tag_selectors": r.rule.tag_selectors,
        "scope_selectors": r.rule.scope_selectors,
    })
}

/// The request body: Harbor's `ImmutableRule` (its `id` is ignored).
#[derive(Debug, Deserialize)]
struct RuleReq {
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    disabled: bool,
    action: Option<String>,
    template: Option<String>,
    #[serde(default)]
    params: serde_json::Map<String, Value>,
    #[serde(default)]
    tag_selectors: Vec<Selector>,
    #[serde(default)]
    scope_selectors: std::collections::BTreeMap<String, Vec<Selector>>,
}

impl RuleReq {
    fn body(self) -> Result<(RuleBody, bool, i32)> {
        let body = RuleBody {
            action: self
                .action
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| "immutable".into()),
            template: self
                .template
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "immutable_template".into()),
            params: self.params,
            tag_selectors: self.tag_selectors,
            scope_selectors: self.scope_selectors,
        };
        body.validate()
            .map_err(|m| ApiError::BadRequest(format!("invalid immutability rule: {m}")))?;
        Ok((body, self.disabled, self.priority))
    }
}

fn parse_id(raw: &str) -> Result<i64> {
    raw.parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("rule id {raw:?} is not a number")))
}

async fn list_rules(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    uri: http::Uri,
    Path(project): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::ImmutableTag, Action::List)?;
    let page = q.page()?;
    let id = ctx.project.project_id;
    let total = immutable::count(&app.db, id).await?;
    let rules = immutable::list(&app.db, id, page.limit(), page.offset()).await?;
    Ok(paged(
        rules.iter().map(rule_json).collect::<Vec<_>>(),
        total,
        page,
        &api_uri(&uri),
    ))
}

async fn create_rule(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(project): Path<String>,
    Json(req): Json<RuleReq>,
) -> Result<Response> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::ImmutableTag, Action::Create)?;
    let (body, disabled, priority) = req.body()?;
    let pid = ctx.project.project_id;
    let mut tx = app.db.begin().await?;
    if !immutable::lock_project(&mut tx, pid).await? {
        return Err(ApiError::NotFound(format!("project {project} not found")));
    }
    if immutable::count(&mut *tx, pid).await? >= immutable::MAX_RULES_PER_PROJECT {
        return Err(ApiError::BadRequest(format!(
            "a project holds at most {} immutability rules",
            immutable::MAX_RULES_PER_PROJECT
        )));
    }
    if let Some(other) = immutable::duplicate_of(&mut *tx, pid, &body, None).await? {
        return Err(ApiError::Conflict(format!(
            "immutability rule {other} already has these selectors"
        )));
    }
    let id = immutable::create(&mut *tx, pid, disabled, priority, &body).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(pid),
        "create",
        "immutable_rule",
        &format!("{}: {}", id, body.describe()),
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(created(format!(
        "/api/v2.0/projects/{pid}/immutabletagrules/{id}"
    )))
}

async fn update_rule(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
    Json(req): Json<RuleReq>,
) -> Result<StatusCode> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::ImmutableTag, Action::Update)?;
    let id = parse_id(&id)?;
    let (body, disabled, priority) = req.body()?;
    let pid = ctx.project.project_id;
    let mut tx = app.db.begin().await?;
    if !immutable::lock_project(&mut tx, pid).await? {
        return Err(ApiError::NotFound(format!("project {project} not found")));
    }
    if let Some(other) = immutable::duplicate_of(&mut *tx, pid, &body, Some(id)).await? {
        return Err(ApiError::Conflict(format!(
            "immutability rule {other} already has these selectors"
        )));
    }
    if !immutable::update(&mut *tx, pid, id, disabled, priority, &body).await? {
        return Err(ApiError::NotFound(format!(
            "immutability rule {id} not found"
        )));
    }
    wharf_catalog::audit::record(
        &mut tx,
        Some(pid),
        "update",
        "immutable_rule",
        &format!(
            "{id}: {}{}",
            body.describe(),
            if disabled { " (disabled)" } else { "" }
        ),
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

async fn delete_rule(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::ImmutableTag, Action::Delete)?;
    let id = parse_id(&id)?;
    let pid = ctx.project.project_id;
    let mut tx = app.db.begin().await?;
    if !immutable::delete(&mut *tx, pid, id).await? {
        return Err(ApiError::NotFound(format!(
            "immutability rule {id} not found"
        )));
    }
    wharf_catalog::audit::record(
        &mut tx,
        Some(pid),
        "delete",
        "immutable_rule",
        &id.to_string(),
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}
