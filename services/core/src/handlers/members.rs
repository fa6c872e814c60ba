//! Project members: `/projects/{project}/members` and `/members/{mid}`.
//! Wharf has local users only, so members are users (`entity_type` `u`).

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use wharf_catalog::projects::{self, Member};

use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::handlers::users::{api_uri, created};
use crate::paging::{paged, ListQuery};
use crate::rbac::{self, Action, Resource, Role};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/members",
            get(list_members).post(create_member),
        )
        .route(
            "/projects/{project}/members/{mid}",
            get(get_member).put(update_member).delete(delete_member),
        )
}

/// Harbor's `ProjectMemberEntity`.
fn member_json(m: &Member) -> Value {
    json!({
        "id": m.id,
        "project_id": m.project_id,
        "entity_name": m.entity_name,
        "entity_id": m.entity_id,
        "entity_type": m.entity_type,
        "role_id": m.role,
        "role_name": Role::from_id(m.role).map(Role::name).unwrap_or_default(),
    })
}

fn role(id: Option<i32>) -> Result<Role> {
    let id = id.ok_or_else(|| ApiError::BadRequest("role_id is required".into()))?;
    Role::from_id(id).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "role_id {id} is not a role: 1 projectAdmin, 2 developer, 3 guest, 4 maintainer, 5 limitedGuest"
        ))
    })
}

fn parse_mid(raw: &str) -> Result<i64> {
    raw.parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("member id {raw:?} is not a number")))
}

#[derive(Debug, Deserialize)]
struct MembersQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    entityname: Option<String>,
}

async fn list_members(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    uri: http::Uri,
    Path(project): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Result<Response> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Member, Action::List)?;
    let page = ListQuery {
        page: q.page,
        page_size: q.page_size,
        ..ListQuery::default()
    }
    .page()?;
    let name = q.entityname.as_deref().filter(|n| !n.is_empty());
    let id = ctx.project.project_id;
    let total = projects::count_members(&app.db, id, name).await?;
    let rows = projects::members(&app.db, id, name, page.limit(), page.offset()).await?;
    let items: Vec<Value> = rows.iter().map(member_json).collect();
    Ok(paged(items, total, page, &api_uri(&uri)))
}

#[derive(Debug, Deserialize)]
struct MemberUser {
    user_id: Option<i64>,
    username: Option<String>,
}

/// Harbor's `ProjectMember`.
#[derive(Debug, Deserialize)]
struct MemberReq {
    role_id: Option<i32>,
    member_user: Option<MemberUser>,
    member_group: Option<Value>,
}

async fn create_member(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(project): Path<String>,
    Json(req): Json<MemberReq>,
) -> Result<Response> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Member, Action::Create)?;
    let role = role(req.role_id)?;
    if req
        .member_group
        .as_ref()
        .is_some_and(|g| g.as_object().is_some_and(|o| !o.is_empty()))
    {
        return Err(ApiError::BadRequest(
            "member_group: user groups are not available in Wharf; add users with member_user"
                .into(),
        ));
    }
    let mu = req.member_user.ok_or_else(|| {
        ApiError::BadRequest("member_user with user_id or username is required".into())
    })?;
    let user = match (mu.user_id, mu.username.as_deref()) {
        (Some(id), _) if id > 0 => wharf_catalog::users::by_id(&app.db, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("user {id} not found")))?,
        (_, Some(name)) if !name.is_empty() => wharf_catalog::users::by_name(&app.db, name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("user {name} not found")))?,
        _ => {
            return Err(ApiError::BadRequest(
                "member_user needs a user_id or a username".into(),
            ))
        }
    };
    let p = &ctx.project;
    let mut tx = app.db.begin().await?;
    let mid = projects::add_member(&mut *tx, p.project_id, user.user_id, role.id())
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "{} is already a member of project {}",
                user.username, p.name
            ))
        })?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(p.project_id),
        "create",
        "project_member",
        &format!("{}:{}", user.username, role.name()),
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(created(format!(
        "/api/v2.0/projects/{}/members/{mid}",
        p.project_id
    )))
}

async fn get_member(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((project, mid)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Member, Action::Read)?;
    let mid = parse_mid(&mid)?;
    let m = projects::member(&app.db, ctx.project.project_id, mid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("member {mid} not found")))?;
    Ok(Json(member_json(&m)))
}

#[derive(Debug, Deserialize)]
struct RoleRequest {
    role_id: Option<i32>,
}

async fn update_member(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((project, mid)): Path<(String, String)>,
    Json(req): Json<RoleRequest>,
) -> Result<StatusCode> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Member, Action::Update)?;
    let mid = parse_mid(&mid)?;
    let role = role(req.role_id)?;
    let p = &ctx.project;
    let mut tx = app.db.begin().await?;
    let m = projects::member(&mut *tx, p.project_id, mid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("member {mid} not found")))?;
    projects::update_member(&mut *tx, p.project_id, mid, role.id()).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(p.project_id),
        "update",
        "project_member",
        &format!("{}:{}", m.entity_name, role.name()),
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

async fn delete_member(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((project, mid)): Path<(String, String)>,
) -> Result<StatusCode> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Member, Action::Delete)?;
    let mid = parse_mid(&mid)?;
    let p = &ctx.project;
    let mut tx = app.db.begin().await?;
    let m = projects::member(&mut *tx, p.project_id, mid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("member {mid} not found")))?;
    projects::delete_member(&mut *tx, p.project_id, mid).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(p.project_id),
        "delete",
        "project_member",
        &m.entity_name,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}
