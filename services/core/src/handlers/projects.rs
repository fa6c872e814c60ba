//! Projects: `/projects` (list, create, `HEAD` by name), one project (get,
//! update, delete), its `summary`, `_deletable` and `metadatas`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use wharf_catalog::projects::{self, IdCond, ListFilter, NameCond, NewProject, Project, Scope};
use wharf_catalog::quotas;

use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::handlers::users::{api_uri, created, timestamp};
use crate::paging::{paged, Filter, ListQuery};
use crate::rbac::{self, Action, Resource, Role};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/projects",
            get(list_projects).head(head_project).post(create_project),
        )
        .route(
            "/projects/{project}",
            get(get_project).put(update_project).delete(delete_project),
        )
        .route("/projects/{project}/summary", get(project_summary))
        .route("/projects/{project}/_deletable", get(project_deletable))
        .route(
            "/projects/{project}/metadatas",
            get(list_metadata).post(add_metadata),
        )
        .route(
            "/projects/{project}/metadatas/",
            get(list_metadata).post(add_metadata),
        )
        .route(
            "/projects/{project}/metadatas/{name}",
            get(get_metadata)
                .put(update_metadata)
                .delete(delete_metadata),
        )
}

/// Harbor's project name rule: 1 to 255 characters matching
/// `^[a-z0-9]+(?:[._-][a-z0-9]+)*$`.
pub fn check_name(name: &str) -> Result<()> {
    let bad = || {
        ApiError::BadRequest(format!(
            "invalid project name {name:?}: use 1 to 255 lower-case letters and digits, separated by single '.', '_' or '-' (not at the start or end)"
        ))
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad());
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut prev_sep = true;
    for &c in name.as_bytes() {
        if alnum(c) {
            prev_sep = false;
        } else if matches!(c, b'.' | b'_' | b'-') && !prev_sep {
            prev_sep = true;
        } else {
            return Err(bad());
        }
    }
    if prev_sep {
        return Err(bad());
    }
    Ok(())
}

/// Go's `strconv.ParseBool`, which Harbor applies to boolean metadata.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

const SEVERITIES: &[&str] = &[
    "none",
    "unknown",
    "negligible",
    "low",
    "medium",
    "high",
    "critical",
];

/// Checks one metadata pair as Harbor clients send it. `Some(value)` is
/// stored (normalised); `None` is accepted and not stored: a setting of a
/// feature Wharf does not have, sent with its "off" value (Harbor's portal
/// sends every key on every update). Turning such a feature on, or an
/// unknown key, is refused with a message naming the key.
pub fn check_metadata(key: &str, value: &str) -> Result<Option<String>> {
    let boolean = || {
        parse_bool(value).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "metadata {key:?} must be \"true\" or \"false\", not {value:?}"
            ))
        })
    };
    let missing = |feature: &str| {
        ApiError::BadRequest(format!(
            "metadata {key:?}: {feature} is not available in Wharf; leave it \"false\""
        ))
    };
    match key {
        "public" | "auto_scan" => Ok(Some(boolean()?.to_string())),
        "enable_content_trust" | "enable_content_trust_cosign" => match boolean()? {
            false => Ok(None),
            true => Err(missing("content trust (signature enforcement)")),
        },
        "prevent_vul" => match boolean()? {
            false => Ok(None),
            true => Err(missing("preventing vulnerable images from running")),
        },
        "auto_sbom_generation" => match boolean()? {
            false => Ok(None),
            true => Err(missing("SBOM generation")),
        },
        "reuse_sys_cve_allowlist" => boolean().map(|_| None),
        "severity" => {
            if SEVERITIES.contains(&value.to_ascii_lowercase().as_str()) {
                Ok(None)
            } else {
                Err(ApiError::BadRequest(format!(
                    "metadata \"severity\" must be one of {}, not {value:?}",
                    SEVERITIES.join(", ")
                )))
            }
        }
        "proxy_speed_kb" => match value {
            "" | "-1" => Ok(None),
            _ => Err(ApiError::BadRequest(
                "metadata \"proxy_speed_kb\": proxy-cache projects are not available in Wharf"
                    .into(),
            )),
        },
        _ => Err(ApiError::BadRequest(format!(
            "unknown metadata key {key:?}; Wharf keeps \"public\" and \"auto_scan\", and accepts Harbor's other project settings only switched off"
        ))),
    }
}

/// Metadata values as clients send them: strings, though some send booleans or numbers.
fn metadata_text(key: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(ApiError::BadRequest(format!(
            "metadata {key:?} must be a string"
        ))),
    }
}

/// The metadata of a request, checked and normalised: what to store.
fn checked_metadata(sent: &BTreeMap<String, Value>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in sent {
        if let Some(v) = metadata_text(k, v)? {
            if let Some(stored) = check_metadata(k, &v)? {
                out.insert(k.clone(), stored);
            }
        }
    }
    Ok(out)
}

/// Harbor's `ProjectReq`.
#[derive(Debug, Deserialize)]
struct ProjectReq {
    project_name: Option<String>,
    /// Deprecated in Harbor, still sent by replication and old clients.
    public: Option<bool>,
    metadata: Option<BTreeMap<String, Value>>,
    storage_limit: Option<i64>,
    registry_id: Option<i64>,
    cve_allowlist: Option<Value>,
}

impl ProjectReq {
    /// The parts of Harbor's request Wharf has no feature for are accepted
    /// only when they ask for nothing.
    fn refuse_unsupported(&self) -> Result<()> {
        if self.registry_id.is_some_and(|r| r != 0) {
            return Err(ApiError::BadRequest(
                "registry_id: proxy-cache projects are not available in Wharf".into(),
            ));
        }
        if let Some(list) = &self.cve_allowlist {
            let items = list.get("items").and_then(Value::as_array);
            if items.is_some_and(|i| !i.is_empty()) {
                return Err(ApiError::BadRequest(
                    "cve_allowlist: CVE allowlists are not available in Wharf (there is no scanner); send no items".into(),
                ));
            }
        }
        Ok(())
    }
}

fn role_ids(role: Option<Role>) -> (i32, Vec<i32>) {
    match role {
        Some(r) => (r.id(), vec![r.id()]),
        None => (0, vec![]),
    }
}

/// Harbor's `Project` model. `detail` adds what the portal shows: owner
/// name, the caller's roles, the repository count, the CVE allowlist.
fn project_json(
    p: &Project,
    metadata: &BTreeMap<String, String>,
    detail: Option<(Option<Role>, i64)>,
) -> Value {
    let mut v = json!({
        "project_id": p.project_id,
        "owner_id": p.owner_id,
        "name": p.name,
        "registry_id": p.registry_id,
        "creation_time": timestamp(p.creation_time),
        "update_time": timestamp(p.update_time),
        "deleted": false,
        "togglable": true,
        "metadata": metadata,
    });
    if let Some((role, repo_count)) = detail {
        let (role_id, role_ids) = role_ids(role);
        v["owner_name"] = json!(p.owner_name);
        v["current_user_role_id"] = json!(role_id);
        v["current_user_role_ids"] = json!(role_ids);
        v["repo_count"] = json!(repo_count);
        v["chart_count"] = json!(0);
        v["cve_allowlist"] = json!({
            "id": 0,
            "project_id": p.project_id,
            "items": [],
            "creation_time": timestamp(p.creation_time),
            "update_time": timestamp(p.update_time),
        });
    }
    v
}

async fn create_project(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Json(req): Json<ProjectReq>,
) -> Result<Response> {
    who.require_auth()?;
    let Principal::User(user) = &who else {
        return Err(ApiError::Forbidden(
            "robot accounts cannot create projects".into(),
        ));
    };
    let name = req
        .project_name
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("project_name is required".into()))?;
    check_name(name)?;
    req.refuse_unsupported()?;
    let mut metadata = checked_metadata(&req.metadata.clone().unwrap_or_default())?;
    if !metadata.contains_key("public") {
        let public = req.public.unwrap_or(false);
        metadata.insert("public".into(), public.to_string());
    }
    let storage_limit = match req.storage_limit {
        None => quotas::UNLIMITED,
        Some(l) if l < -1 => {
            return Err(ApiError::BadRequest(format!(
                "storage_limit must be -1 (unlimited) or a number of bytes, not {l}"
            )))
        }
        Some(l) if l != quotas::UNLIMITED && !user.sysadmin => {
            return Err(ApiError::Forbidden(
                "only system administrators may set storage_limit".into(),
            ))
        }
        Some(l) => l,
    };
    let mut tx = app.db.begin().await?;
    let id = projects::create(
        &mut tx,
        &NewProject {
            name,
            owner_id: user.id,
            metadata: &metadata,
            storage_limit,
        },
    )
    .await?
    .ok_or_else(|| ApiError::Conflict(format!("project {name} already exists")))?;
    wharf_catalog::audit::record(&mut tx, Some(id), "create", "project", name, &user.username)
        .await?;
    tx.commit().await?;
    let by_name = headers
        .get("x-resource-name-in-location")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(created(if by_name {
        format!("/api/v2.0/projects/{name}")
    } else {
        format!("/api/v2.0/projects/{id}")
    }))
}

#[derive(Debug, Deserialize)]
struct HeadQuery {
    project_name: Option<String>,
}

/// `HEAD /projects?project_name=`: whether a name is taken (for the
/// portal's create dialog); any signed-in caller may ask, as in Harbor.
async fn head_project(
    State(app): State<AppState>,
    who: Principal,
    Query(q): Query<HeadQuery>,
) -> Result<StatusCode> {
    who.require_auth()?;
    let name = q
        .project_name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("project_name is required".into()))?;
    if projects::exists(&app.db, &name).await? {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::NotFound(format!("project {name} not found")))
    }
}

#[derive(Debug, Deserialize)]
struct ListProjectsQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    q: Option<String>,
    sort: Option<String>,
    name: Option<String>,
    public: Option<String>,
    owner: Option<String>,
    with_detail: Option<String>,
}

fn bool_param(key: &str, v: &str) -> Result<bool> {
    parse_bool(v)
        .ok_or_else(|| ApiError::BadRequest(format!("{key} must be true or false, not {v:?}")))
}

fn id_value(key: &str, v: &str) -> Result<i64> {
    v.trim()
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{key} must be a number, not {v:?}")))
}

/// Harbor's `q` keys for projects: `name`, `project_id`, `public`, `owner`.
fn project_filter(terms: Vec<(String, Filter)>, f: &mut ListFilter) -> Result<()> {
    for (key, cond) in terms {
        match (key.as_str(), cond) {
            ("name", Filter::Exact(v)) => f.names.push(NameCond::Exact(v)),
            ("name", Filter::Fuzzy(v)) => f.names.push(NameCond::Fuzzy(v)),
            ("name", Filter::AnyOf(vs)) => f.names.push(NameCond::AnyOf(vs)),
            ("project_id", Filter::Exact(v)) => f.ids.push(IdCond::Exact(id_value(&key, &v)?)),
            ("project_id", Filter::AnyOf(vs)) => f.ids.push(IdCond::AnyOf(
                vs.iter()
                    .map(|v| id_value(&key, v))
                    .collect::<Result<_>>()?,
            )),
            ("project_id", Filter::Range(lo, hi)) => f.ids.push(IdCond::Range(
                lo.map(|v| id_value(&key, &v)).transpose()?,
                hi.map(|v| id_value(&key, &v)).transpose()?,
            )),
            ("public", Filter::Exact(v)) => f.public = Some(bool_param("public", &v)?),
            ("owner", Filter::Exact(v)) => f.owner = Some(v),
            ("name" | "project_id" | "public" | "owner", _) => {
                return Err(ApiError::BadRequest(format!(
                    "q: this kind of match is not supported for {key}"
                )))
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "q: cannot filter projects by {key:?}; use name, project_id, public or owner"
                )))
            }
        }
    }
    Ok(())
}

async fn list_projects(
    State(app): State<AppState>,
    who: Principal,
    uri: http::Uri,
    Query(q): Query<ListProjectsQuery>,
) -> Result<Response> {
    let lq = ListQuery {
        page: q.page,
        page_size: q.page_size,
        q: q.q.clone(),
        sort: q.sort.clone(),
    };
    let page = lq.page()?;
    let scope = match &who {
        Principal::User(u) if u.sysadmin => Scope::All,
        Principal::User(u) => Scope::Visible {
            user_id: Some(u.id),
            names: vec![],
        },
        Principal::Robot(r) => {
            let names: Vec<String> = r
                .permissions
                .iter()
                .filter(|p| p.kind == "project")
                .map(|p| p.namespace.clone())
                .collect();
            if names.iter().any(|n| n == "*") {
                Scope::All
            } else {
                Scope::Visible {
                    user_id: None,
                    names,
                }
            }
        }
        Principal::Anonymous => Scope::Visible {
            user_id: None,
            names: vec![],
        },
    };
    let sort = lq
        .sort(&["name", "project_id", "creation_time", "update_time"])?
        .into_iter()
        .map(|(k, desc)| {
            let key = match k.as_str() {
                "project_id" => projects::SortKey::ProjectId,
                "creation_time" => projects::SortKey::CreationTime,
                "update_time" => projects::SortKey::UpdateTime,
                _ => projects::SortKey::Name,
            };
            (key, desc)
        })
        .collect();
    let mut filter = ListFilter {
        scope,
        names: vec![],
        ids: vec![],
        public: None,
        owner: None,
        sort,
    };
    project_filter(lq.filters()?, &mut filter)?;
    if let Some(n) = q.name.filter(|n| !n.is_empty()) {
        filter.names.push(NameCond::Fuzzy(n));
    }
    if let Some(p) = q.public.filter(|p| !p.is_empty()) {
        filter.public = Some(bool_param("public", &p)?);
    }
    if let Some(o) = q.owner.filter(|o| !o.is_empty()) {
        filter.owner = Some(o);
    }
    let with_detail = match q.with_detail.as_deref() {
        None | Some("") => true,
        Some(v) => bool_param("with_detail", v)?,
    };
    let (rows, total) = projects::list(&app.db, &filter, page.limit(), page.offset()).await?;
    let ids: Vec<i64> = rows.iter().map(|p| p.project_id).collect();
    let mut metadata: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    for (id, k, v) in projects::metadata(&app.db, &ids).await? {
        metadata.entry(id).or_default().insert(k, v);
    }
    let mut items = Vec::with_capacity(rows.len());
    if with_detail {
        let names: Vec<String> = rows.iter().map(|p| p.name.clone()).collect();
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
        for p in &rows {
            let role = roles.get(&p.project_id).copied().and_then(Role::from_id);
            let count = counts.get(&p.name).copied().unwrap_or(0);
            let md = metadata.remove(&p.project_id).unwrap_or_default();
            items.push(project_json(p, &md, Some((role, count))));
        }
    } else {
        for p in &rows {
            let md = metadata.remove(&p.project_id).unwrap_or_default();
            items.push(project_json(p, &md, None));
        }
    }
    Ok(paged(items, total, page, &api_uri(&uri)))
}

async fn get_project(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Result<Json<Value>> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    let count = projects::repo_count(&app.db, &ctx.project.name).await?;
    Ok(Json(project_json(
        &ctx.project,
        &ctx.metadata,
        Some((ctx.access.role, count)),
    )))
}

async fn update_project(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(project): Path<String>,
    Json(req): Json<ProjectReq>,
) -> Result<StatusCode> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Project, Action::Update)?;
    req.refuse_unsupported()?;
    let mut metadata = checked_metadata(&req.metadata.clone().unwrap_or_default())?;
    if let (Some(public), false) = (req.public, metadata.contains_key("public")) {
        metadata.insert("public".into(), public.to_string());
    }
    let id = ctx.project.project_id;
    let mut tx = app.db.begin().await?;
    for (k, v) in &metadata {
        projects::set_metadata(&mut *tx, id, k, v).await?;
    }
    projects::touch(&mut *tx, id).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(id),
        "update",
        "project",
        &ctx.project.name,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

async fn delete_project(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Result<StatusCode> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Project, Action::Delete)?;
    let p = &ctx.project;
    let mut tx = app.db.begin().await?;
    // Holding the row stops pushes into the project (the registry key-share
    // locks it) until this transaction ends; then count in a new statement.
    if !projects::lock_for_delete(&mut tx, p.project_id).await? {
        return Err(ApiError::NotFound(format!("project {project} not found")));
    }
    let repos = projects::repo_count(&mut *tx, &p.name).await?;
    if repos > 0 {
        return Err(ApiError::Precondition(format!(
            "project {} still holds {repos} repositories; delete them before the project",
            p.name
        )));
    }
    projects::delete(&mut *tx, p.project_id).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(p.project_id),
        "delete",
        "project",
        &p.name,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

async fn project_deletable(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Result<Json<Value>> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Project, Action::Delete)?;
    let repos = projects::repo_count(&app.db, &ctx.project.name).await?;
    Ok(Json(if repos > 0 {
        json!({"deletable": false, "message": format!("the project still holds {repos} repositories")})
    } else {
        json!({"deletable": true})
    }))
}

async fn project_summary(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Result<Json<Value>> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    let p = &ctx.project;
    let mut summary = json!({
        "repo_count": projects::repo_count(&app.db, &p.name).await?,
        "chart_count": 0,
    });
    if ctx.access.can(Resource::Member, Action::List) {
        let counts: BTreeMap<i32, i64> = projects::role_counts(&app.db, p.project_id)
            .await?
            .into_iter()
            .collect();
        for (role, key) in [
            (Role::ProjectAdmin, "project_admin_count"),
            (Role::Maintainer, "maintainer_count"),
            (Role::Developer, "developer_count"),
            (Role::Guest, "guest_count"),
            (Role::LimitedGuest, "limited_guest_count"),
        ] {
            summary[key] = json!(counts.get(&role.id()).copied().unwrap_or(0));
        }
    }
    if ctx.access.can(Resource::Quota, Action::Read) {
        if let Some(q) = quotas::by_project(&app.db, p.project_id).await? {
            summary["quota"] = json!({
                "hard": {"storage": q.hard_storage},
                "used": {"storage": q.used_storage},
            });
        }
    }
    Ok(Json(summary))
}

async fn list_metadata(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Result<Json<BTreeMap<String, String>>> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Metadata, Action::Read)?;
    Ok(Json(ctx.metadata))
}

/// A metadata body: `{"key": "value", …}`.
async fn add_metadata(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(project): Path<String>,
    Json(body): Json<BTreeMap<String, Value>>,
) -> Result<StatusCode> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Metadata, Action::Create)?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the body must hold at least one metadata key".into(),
        ));
    }
    let metadata = checked_metadata(&body)?;
    let id = ctx.project.project_id;
    let mut tx = app.db.begin().await?;
    for (k, v) in &metadata {
        if !projects::add_metadata(&mut *tx, id, k, v).await? {
            return Err(ApiError::Conflict(format!(
                "metadata {k:?} exists already; update it with PUT"
            )));
        }
    }
    projects::touch(&mut *tx, id).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(id),
        "update",
        "project",
        &ctx.project.name,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

async fn get_metadata(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<BTreeMap<String, String>>> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Metadata, Action::Read)?;
    let value = ctx
        .metadata
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("metadata {name:?} not found")))?;
    Ok(Json(BTreeMap::from([(name.clone(), value.clone())])))
}

async fn update_metadata(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
    Json(body): Json<BTreeMap<String, Value>>,
) -> Result<StatusCode> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Metadata, Action::Update)?;
    let value = match (body.len(), body.get(&name)) {
        (1, Some(v)) => metadata_text(&name, v)?,
        _ => {
            return Err(ApiError::BadRequest(format!(
                "the body must hold exactly the key {name:?} of the path"
            )))
        }
    };
    let value = value.ok_or_else(|| ApiError::BadRequest(format!("{name:?} needs a value")))?;
    let stored = check_metadata(&name, &value)?;
    let id = ctx.project.project_id;
    let mut tx = app.db.begin().await?;
    if let Some(v) = stored {
        projects::set_metadata(&mut *tx, id, &name, &v).await?;
    }
    projects::touch(&mut *tx, id).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(id),
        "update",
        "project",
        &ctx.project.name,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

async fn delete_metadata(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let ctx = rbac::project(&app, &who, &headers, &project).await?;
    ctx.access.require(Resource::Metadata, Action::Delete)?;
    if name == "public" {
        return Err(ApiError::BadRequest(
            "\"public\" cannot be deleted; set it to \"false\" to make the project private".into(),
        ));
    }
    let id = ctx.project.project_id;
    let mut tx = app.db.begin().await?;
    if !projects::delete_metadata(&mut *tx, id, &name).await? {
        return Err(ApiError::NotFound(format!("metadata {name:?} not found")));
    }
    projects::touch(&mut *tx, id).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(id),
        "update",
        "project",
        &ctx.project.name,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_harbor() {
        for ok in ["library", "a", "a.b", "a-b_c.d", "x1", &"a".repeat(255)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Library",
            "-a",
            "a-",
            "a..b",
            "a-_b",
            "a/b",
            "a b",
            &"a".repeat(256),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_keys() {
        assert_eq!(check_metadata("public", "True").unwrap().unwrap(), "true");
        assert_eq!(check_metadata("auto_scan", "0").unwrap().unwrap(), "false");
        assert!(check_metadata("public", "yes").is_err());
        assert!(check_metadata("enable_content_trust", "false")
            .unwrap()
            .is_none());
        let e = check_metadata("prevent_vul", "true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("prevent_vul"), "{e}");
        assert!(check_metadata("severity", "low").unwrap().is_none());
        assert!(check_metadata("severity", "dire").is_err());
        let e = check_metadata("colour", "blue").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
