//! Robot accounts (Harbor's v2.0 robot API): `robot$<name>` at system level,
//! `robot$<project>+<name>` at project level, with permission lists, expiry
//! in days (-1: never), disable, a secret shown once, and refresh.
//!
//! System administrators manage every robot; project administrators manage
//! the robots of their projects. Robots themselves manage none.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use http::{StatusCode, Uri};
use rand::Rng;
use serde::{Deserialize, Serialize};
use wharf_catalog::filter::TextMatch;
use wharf_catalog::projects::Project;
use wharf_catalog::robots::{Permission, Robot, RobotFilter, RobotOrder};
use wharf_catalog::PgConnection;

use super::users::{api_uri, timestamp, SYSTEM_POLICIES};
use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::paging::{paged, Filter, ListQuery};
use crate::rbac::{self, Action, Resource, Role};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/robots", get(list_robots).post(create_robot))
        .route(
            "/robots/{robot_id}",
            get(get_robot)
                .put(update_robot)
                .patch(refresh_secret)
                .delete(delete_robot),
        )
}

const SYSTEM: &str = "system";
const PROJECT: &str = "project";
/// Harbor's default `robot_token_duration`: a robot created with duration 0
/// (or none) lives this many days.
const DEFAULT_DURATION_DAYS: i64 = 30;

/// Actions Harbor's policies use.
const ACTIONS: &[&str] = &[
    "pull",
    "push",
    "create",
    "read",
    "update",
    "delete",
    "list",
    "operate",
    "scanner-pull",
    "stop",
];

/// Resources of Harbor's project namespace (`/project/<id>/<resource>`)
/// beyond those Wharf's role matrix knows ([`Resource`]), accepted so that
/// Harbor clients that grant them are not refused.
const PROJECT_RESOURCES: &[&str] = &[
    "accessory",
    "artifact",
    "artifact-addition",
    "artifact-label",
    "configuration",
    "export-cve",
    "helm-chart",
    "helm-chart-version",
    "helm-chart-version-label",
    "immutable-tag",
    "label",
    "log",
    "member",
    "metadata",
    "notification-policy",
    "preheat-policy",
    "project",
    "quota",
    "repository",
    "robot",
    "sbom",
    "scan",
    "scanner",
    "tag",
    "tag-retention",
];

// ---- JSON shapes ----

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Access {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RobotPermission {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

/// Harbor's `Robot`; the secret is never part of it.
#[derive(Debug, Serialize)]
struct RobotResp {
    id: i64,
    name: String,
    description: String,
    level: String,
    duration: i64,
    editable: bool,
    disable: bool,
    expires_at: i64,
    permissions: Vec<RobotPermission>,
    creation_time: String,
    update_time: String,
}

fn robot_resp(r: Robot, perms: Vec<Permission>) -> RobotResp {
    RobotResp {
        id: r.id,
        name: r.name,
        description: r.description,
        level: r.level,
        duration: r.duration,
        editable: true,
        disable: r.disabled,
        expires_at: r.expires_at,
        permissions: group_permissions(perms),
        creation_time: timestamp(r.creation_time),
        update_time: timestamp(r.update_time),
    }
}

/// Rows of (kind, namespace, resource, action) as Harbor's nested list.
fn group_permissions(perms: Vec<Permission>) -> Vec<RobotPermission> {
    let mut out: Vec<RobotPermission> = Vec::new();
    for p in perms {
        let access = Access {
            resource: p.resource,
            action: p.action,
            effect: None,
        };
        match out
            .iter_mut()
            .find(|g| g.kind == p.kind && g.namespace == p.namespace)
        {
            Some(g) => g.access.push(access),
            None => out.push(RobotPermission {
                kind: p.kind,
                namespace: p.namespace,
                access: vec![access],
            }),
        }
    }
    out
}

// ---- validation ----

/// Harbor's robot name rule: lower-case letters and digits, single `.`,
/// `_` or `-` between them (so never `+`, which separates project and name).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn check_level(level: &str) -> Result<()> {
    if level == SYSTEM || level == PROJECT {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "level must be \"system\" or \"project\", not {level:?}"
        )))
    }
}

/// (duration, expires_at) for a duration in days counted from `from`.
fn expiry(duration: Option<i64>, from: DateTime<Utc>) -> Result<(i64, i64)> {
    let days = match duration.unwrap_or(0) {
        0 => DEFAULT_DURATION_DAYS,
        -1 => return Ok((-1, -1)),
        d if d > 0 && d < i64::from(i32::MAX) => d,
        d => {
            return Err(ApiError::BadRequest(format!(
                "duration must be -1 (never expires) or a positive number of days, not {d}"
            )))
        }
    };
    Ok((days, from.timestamp() + days * 86_400))
}

/// Checks a permission list's shape for a robot of `level`, and flattens it
/// into rows. Project names are resolved later, once access is checked.
fn check_permissions(level: &str, perms: &[RobotPermission]) -> Result<Vec<Permission>> {
    if perms.is_empty() {
        return Err(ApiError::BadRequest(
            "permissions must hold at least one {kind, namespace, access} entry".into(),
        ));
    }
    if level == PROJECT && perms.len() != 1 {
        return Err(ApiError::BadRequest(
            "a project robot account has exactly one permission entry, for its own project".into(),
        ));
    }
    let mut rows = Vec::new();
    for p in perms {
        let namespace = match (p.kind.as_str(), level) {
            (PROJECT, PROJECT) => {
                if p.namespace.is_empty() || p.namespace == "*" {
                    return Err(ApiError::BadRequest(
                        "the namespace of a project robot account must name its project".into(),
                    ));
                }
                p.namespace.clone()
            }
            (PROJECT, _) => {
                if p.namespace.is_empty() {
                    return Err(ApiError::BadRequest(
                        "a project permission needs a namespace: a project name or * for all projects"
                            .into(),
                    ));
                }
                p.namespace.clone()
            }
            (SYSTEM, SYSTEM) => {
                if !(p.namespace.is_empty() || p.namespace == "/") {
                    return Err(ApiError::BadRequest(
                        "the namespace of a system permission is \"/\"".into(),
                    ));
                }
                "/".to_owned()
            }
            (SYSTEM, _) => {
                return Err(ApiError::BadRequest(
                    "a project robot account cannot hold system permissions".into(),
                ))
            }
            (kind, _) => {
                return Err(ApiError::BadRequest(format!(
                    "permission kind must be \"system\" or \"project\", not {kind:?}"
                )))
            }
        };
        if p.access.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "the {} permission for {namespace} has no access entries",
                p.kind
            )));
        }
        for a in &p.access {
            let known = if p.kind == SYSTEM {
                SYSTEM_POLICIES
                    .iter()
                    .any(|(r, act)| *r == a.resource && *act == a.action)
            } else {
                (Resource::parse(&a.resource).is_some()
                    || PROJECT_RESOURCES.contains(&a.resource.as_str()))
                    && ACTIONS.contains(&a.action.as_str())
            };
            if !known {
                return Err(ApiError::BadRequest(format!(
                    "unknown {} permission {:?} on {:?}",
                    p.kind, a.action, a.resource
                )));
            }
            if let Some(effect) = &a.effect {
                if !(effect.is_empty() || effect == "allow") {
                    return Err(ApiError::BadRequest(format!(
                        "access effect {effect:?} is not supported; robot permissions allow"
                    )));
                }
            }
            rows.push(Permission {
                kind: p.kind.clone(),
                namespace: namespace.clone(),
                resource: a.resource.clone(),
                action: a.action.clone(),
            });
        }
    }
    Ok(rows)
}

/// Every project a system robot's permissions name must exist.
async fn check_namespaces(tx: &mut PgConnection, rows: &[Permission]) -> Result<()> {
    let mut seen: Vec<&str> = Vec::new();
    for p in rows
        .iter()
        .filter(|p| p.kind == PROJECT && p.namespace != "*")
    {
        if seen.contains(&p.namespace.as_str()) {
            continue;
        }
        seen.push(&p.namespace);
        if wharf_catalog::projects::by_name(&mut *tx, &p.namespace)
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound(format!(
                "project {} not found",
                p.namespace
            )));
        }
    }
    Ok(())
}

/// A fresh secret: 32 letters and digits with at least one upper-case
/// letter, one lower-case letter and one digit.
fn generate_secret() -> String {
    let mut rng = rand::thread_rng();
    loop {
        let s: String = (&mut rng)
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        if crate::password::check_policy(&s).is_ok() {
            return s;
        }
    }
}

// ---- who may manage ----

/// A project with its visibility, as robot management needs it.
struct ProjectInfo {
    project: Project,
    public: bool,
}

async fn project_info(
    tx: &mut PgConnection,
    project: Option<Project>,
) -> Result<Option<ProjectInfo>> {
    let Some(project) = project else {
        return Ok(None);
    };
    let metadata = wharf_catalog::projects::metadata_of(&mut *tx, project.project_id).await?;
    Ok(Some(ProjectInfo {
        project,
        public: rbac::is_public(&metadata),
    }))
}

async fn project_by_name(tx: &mut PgConnection, name: &str) -> Result<Option<ProjectInfo>> {
    let p = wharf_catalog::projects::by_name(&mut *tx, name).await?;
    project_info(tx, p).await
}

async fn project_by_id(tx: &mut PgConnection, id: i64) -> Result<Option<ProjectInfo>> {
    let p = wharf_catalog::projects::by_id(&mut *tx, id).await?;
    project_info(tx, p).await
}

fn robot_refused(name: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "{name} is a robot account; robot accounts cannot manage robot accounts"
    ))
}

/// Refuses callers who may not do `action` to robots of this level and
/// project: system robots are for system administrators; project robots
/// follow the project role matrix (administrators manage them, members
/// from guest up may read and list them). `hidden` is the error for a user
/// who may not even know the project exists (an outsider to a private
/// project).
async fn require_manager(
    tx: &mut PgConnection,
    who: &Principal,
    project: Option<&ProjectInfo>,
    action: Action,
    hidden: impl FnOnce() -> ApiError,
) -> Result<()> {
    let user = match who {
        Principal::Anonymous => {
            return Err(ApiError::Unauthorized("authentication is required".into()))
        }
        Principal::Robot(r) => return Err(robot_refused(&r.name)),
        Principal::User(u) => u,
    };
    if user.sysadmin {
        return Ok(());
    }
    let Some(p) = project else {
        return Err(ApiError::Forbidden(
            "only system administrators may manage system robot accounts".into(),
        ));
    };
    let role = wharf_catalog::projects::role_of(&mut *tx, p.project.project_id, user.id)
        .await?
        .and_then(Role::from_id);
    match role {
        Some(r) if rbac::role_allows(r, Resource::Robot, action) => Ok(()),
        None if !p.public => Err(hidden()),
        _ => Err(ApiError::Forbidden(format!(
            "you may not {} robot accounts of project {}",
            action.as_str(),
            p.project.name
        ))),
    }
}

/// A robot and its project, refusing callers who may not do `action` to
/// it. An outsider learns nothing about a robot of a private project (404).
async fn managed_robot(
    tx: &mut PgConnection,
    who: &Principal,
    id: i64,
    action: Action,
) -> Result<(Robot, Option<ProjectInfo>)> {
    who.require_auth()?;
    let not_found = || ApiError::NotFound(format!("robot account {id} not found"));
    let robot = if action == Action::Read {
        wharf_catalog::robots::by_id(&mut *tx, id).await?
    } else {
        wharf_catalog::robots::lock(&mut *tx, id).await?
    }
    .ok_or_else(not_found)?;
    let project = match robot.project_id {
        Some(p) => project_by_id(tx, p).await?,
        None => None,
    };
    if robot.level == PROJECT && project.is_none() {
        // The project went away with its robots; only a race can see this.
        return Err(not_found());
    }
    require_manager(tx, who, project.as_ref(), action, not_found).await?;
    Ok((robot, project))
}

// ---- handlers ----

#[derive(Debug, Deserialize)]
struct RobotCreate {
    name: Option<String>,
    description: Option<String>,
    secret: Option<String>,
    level: Option<String>,
    disable: Option<bool>,
    duration: Option<i64>,
    permissions: Option<Vec<RobotPermission>>,
}

#[derive(Debug, Serialize)]
struct RobotCreated {
    id: i64,
    name: String,
    secret: String,
    creation_time: String,
    expires_at: i64,
}

async fn create_robot(
    State(app): State<AppState>,
    who: Principal,
    Json(req): Json<RobotCreate>,
) -> Result<Response> {
    who.require_auth()?;
    if let Principal::Robot(r) = &who {
        return Err(robot_refused(&r.name));
    }
    let name = req.name.unwrap_or_default();
    if !valid_name(&name) {
        return Err(ApiError::BadRequest(format!(
            "robot name {name:?} is invalid: use lower-case letters and digits, separated by single . _ or -"
        )));
    }
    let level = req.level.unwrap_or_default();
    check_level(&level)?;
    let now = Utc::now();
    let (duration, expires_at) = expiry(req.duration, now)?;
    let perms = req.permissions.unwrap_or_default();
    let rows = check_permissions(&level, &perms)?;
    let secret = match req.secret.filter(|s| !s.is_empty()) {
        Some(s) => {
            crate::password::check_policy(&s)?;
            s
        }
        None => generate_secret(),
    };
    let description = req.description.unwrap_or_default();

    let mut tx = app.db.begin().await?;
    let project = if level == PROJECT {
        let ns = &perms[0].namespace;
        let not_found = || ApiError::NotFound(format!("project {ns} not found"));
        let p = project_by_name(&mut tx, ns).await?.ok_or_else(not_found)?;
        require_manager(&mut tx, &who, Some(&p), Action::Create, not_found).await?;
        Some(p.project)
    } else {
        require_manager(&mut tx, &who, None, Action::Create, || {
            ApiError::Forbidden(
                "only system administrators may manage system robot accounts".into(),
            )
        })
        .await?;
        check_namespaces(&mut tx, &rows).await?;
        None
    };
    let prefix = &app.config.robot_name_prefix;
    let full_name = match &project {
        Some(p) => format!("{prefix}{}+{name}", p.name),
        None => format!("{prefix}{name}"),
    };
    let conflict = || ApiError::Conflict(format!("robot account {full_name} already exists"));
    if wharf_catalog::robots::name_taken(&mut *tx, &full_name).await? {
        return Err(conflict());
    }
    // Hash only once the request is known to be acceptable.
    let hash = crate::password::hash(&secret).await?;
    let id = wharf_catalog::robots::create(
        &mut *tx,
        &wharf_catalog::robots::NewRobot {
            name: &full_name,
            description: &description,
            secret_hash: &hash,
            level: &level,
            project_id: project.as_ref().map(|p| p.project_id),
            duration,
            expires_at,
            disabled: req.disable.unwrap_or(false),
            creator_ref: who.username(),
        },
    )
    .await?
    .ok_or_else(conflict)?;
    wharf_catalog::robots::set_permissions(&mut tx, id, &rows).await?;
    wharf_catalog::audit::record(
        &mut tx,
        project.as_ref().map(|p| p.project_id),
        "create",
        "robot",
        &full_name,
        who.username(),
    )
    .await?;
    tx.commit().await?;

    let body = RobotCreated {
        id,
        name: full_name,
        secret,
        creation_time: timestamp(now),
        expires_at,
    };
    let mut resp = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&format!("/api/v2.0/robots/{id}")) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(resp)
}

async fn get_robot(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<i64>,
) -> Result<Json<RobotResp>> {
    let mut tx = app.db.begin().await?;
    let (robot, _) = managed_robot(&mut tx, &who, id, Action::Read).await?;
    let perms = wharf_catalog::robots::permissions(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(Json(robot_resp(robot, perms)))
}

/// The `q` of a robot listing: Harbor's `Level`, `ProjectID` and `name`.
struct RobotListTerms {
    level: String,
    project_id: Option<i64>,
    name: Option<Filter>,
}

fn robot_terms(terms: Vec<(String, Filter)>) -> Result<RobotListTerms> {
    let mut out = RobotListTerms {
        level: SYSTEM.to_owned(),
        project_id: None,
        name: None,
    };
    let exact = |key: &str, f: Filter| match f {
        Filter::Exact(v) => Ok(v.trim().to_owned()),
        _ => Err(ApiError::BadRequest(format!(
            "{key} supports only {key}=value in q"
        ))),
    };
    for (key, term) in terms {
        match key.as_str() {
            "Level" | "level" => {
                out.level = exact(&key, term)?;
                check_level(&out.level)?;
            }
            "ProjectID" | "project_id" => {
                let v = exact(&key, term)?;
                out.project_id = Some(v.parse().map_err(|_| {
                    ApiError::BadRequest(format!("{key} in q must be a project id, not {v:?}"))
                })?);
            }
            "name" | "Name" => out.name = Some(term),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "cannot filter robot accounts by {other:?}; q accepts Level, ProjectID and name"
                )))
            }
        }
    }
    Ok(out)
}

fn robot_order(q: &ListQuery) -> Result<Vec<(RobotOrder, bool)>> {
    let sort = q.sort(&[
        "id",
        "name",
        "duration",
        "expires_at",
        "creation_time",
        "update_time",
    ])?;
    Ok(sort
        .into_iter()
        .map(|(k, desc)| {
            let col = match k.as_str() {
                "name" => RobotOrder::Name,
                "duration" => RobotOrder::Duration,
                "expires_at" => RobotOrder::ExpiresAt,
                "creation_time" => RobotOrder::CreationTime,
                "update_time" => RobotOrder::UpdateTime,
                _ => RobotOrder::Id,
            };
            (col, desc)
        })
        .collect())
}

/// `GET /robots`: system robots by default; `q=Level=project,ProjectID=<id>`
/// for a project's robots.
async fn list_robots(
    State(app): State<AppState>,
    who: Principal,
    uri: Uri,
    Query(query): Query<ListQuery>,
) -> Result<Response> {
    who.require_auth()?;
    let page = query.page()?;
    let terms = robot_terms(query.filters()?)?;
    let order = robot_order(&query)?;
    let mut tx = app.db.begin().await?;
    let project = if terms.level == PROJECT {
        let pid = terms.project_id.ok_or_else(|| {
            ApiError::BadRequest(
                "listing project robot accounts needs the project: q=Level=project,ProjectID=<id>"
                    .into(),
            )
        })?;
        let not_found = || ApiError::NotFound(format!("project {pid} not found"));
        let p = project_by_id(&mut tx, pid).await?.ok_or_else(not_found)?;
        require_manager(&mut tx, &who, Some(&p), Action::List, not_found).await?;
        Some(p.project)
    } else {
        require_manager(&mut tx, &who, None, Action::List, || {
            ApiError::Forbidden("only system administrators may list system robot accounts".into())
        })
        .await?;
        None
    };
    let prefix = &app.config.robot_name_prefix;
    // Names in `q` may be written with or without the prefix (and project).
    let full = |v: &str| -> Vec<String> {
        let v = v.trim();
        let mut names = vec![v.to_owned(), format!("{prefix}{v}")];
        if let Some(p) = &project {
            names.push(format!("{prefix}{}+{v}", p.name));
        }
        names
    };
    let mut filter = RobotFilter {
        level: Some(terms.level.clone()),
        project_id: project.as_ref().map(|p| p.project_id),
        ..Default::default()
    };
    match terms.name {
        None => {}
        Some(Filter::Exact(v)) => filter.names = Some(full(&v)),
        Some(Filter::AnyOf(vs)) => filter.names = Some(vs.iter().flat_map(|v| full(v)).collect()),
        Some(Filter::Fuzzy(v)) => filter.name = Some(TextMatch::Fuzzy(v.trim().to_owned())),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "name supports name=v, name=~v and name={a b} in q".into(),
            ))
        }
    }
    let total = wharf_catalog::robots::count(&mut *tx, &filter).await?;
    let robots =
        wharf_catalog::robots::list(&mut *tx, &filter, &order, page.limit(), page.offset()).await?;
    let ids: Vec<i64> = robots.iter().map(|r| r.id).collect();
    let mut perms: HashMap<i64, Vec<Permission>> = HashMap::new();
    for (id, p) in wharf_catalog::robots::permissions_of(&mut *tx, &ids).await? {
        perms.entry(id).or_default().push(p);
    }
    tx.commit().await?;
    let items: Vec<RobotResp> = robots
        .into_iter()
        .map(|r| {
            let p = perms.remove(&r.id).unwrap_or_default();
            robot_resp(r, p)
        })
        .collect();
    Ok(paged(items, total, page, &api_uri(&uri)))
}

/// The body of `PUT /robots/{id}`: Harbor's `Robot`. Level and name cannot
/// change; a field left out keeps its value.
#[derive(Debug, Deserialize)]
struct RobotUpdate {
    name: Option<String>,
    description: Option<String>,
    level: Option<String>,
    duration: Option<i64>,
    disable: Option<bool>,
    permissions: Option<Vec<RobotPermission>>,
}

async fn update_robot(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<i64>,
    Json(req): Json<RobotUpdate>,
) -> Result<StatusCode> {
    let mut tx = app.db.begin().await?;
    let (robot, project) = managed_robot(&mut tx, &who, id, Action::Update).await?;
    let project = project.map(|p| p.project);
    if let Some(level) = req.level.as_deref().filter(|l| !l.is_empty()) {
        if level != robot.level {
            return Err(ApiError::BadRequest(
                "the level of a robot account cannot change".into(),
            ));
        }
    }
    if let Some(name) = req.name.as_deref().filter(|n| !n.is_empty()) {
        let prefix = &app.config.robot_name_prefix;
        let short = robot
            .name
            .strip_prefix(prefix.as_str())
            .unwrap_or(&robot.name);
        let bare = short.split_once('+').map_or(short, |(_, n)| n);
        if name != robot.name && name != short && name != bare {
            return Err(ApiError::BadRequest(
                "the name of a robot account cannot change".into(),
            ));
        }
    }
    let rows = match &req.permissions {
        None => None,
        Some(perms) => {
            let rows = check_permissions(&robot.level, perms)?;
            match &project {
                Some(p) if rows.iter().any(|r| r.namespace != p.name) => {
                    return Err(ApiError::BadRequest(format!(
                        "robot account {} belongs to project {}; its permission namespace cannot change",
                        robot.name, p.name
                    )))
                }
                Some(_) => {}
                None => check_namespaces(&mut tx, &rows).await?,
            }
            Some(rows)
        }
    };
    let (duration, expires_at) = match req.duration {
        Some(d) if d != robot.duration => expiry(Some(d), robot.creation_time)?,
        _ => (robot.duration, robot.expires_at),
    };
    let description = req.description.unwrap_or(robot.description);
    let disabled = req.disable.unwrap_or(robot.disabled);
    wharf_catalog::robots::update(&mut *tx, id, &description, duration, expires_at, disabled)
        .await?;
    if let Some(rows) = rows {
        wharf_catalog::robots::set_permissions(&mut tx, id, &rows).await?;
    }
    wharf_catalog::audit::record(
        &mut tx,
        robot.project_id,
        "update",
        "robot",
        &robot.name,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    app.credentials.clear();
    Ok(StatusCode::OK)
}

async fn delete_robot(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<i64>,
) -> Result<StatusCode> {
    let mut tx = app.db.begin().await?;
    let (robot, _) = managed_robot(&mut tx, &who, id, Action::Delete).await?;
    wharf_catalog::robots::delete(&mut *tx, id).await?;
    wharf_catalog::audit::record(
        &mut tx,
        robot.project_id,
        "delete",
        "robot",
        &robot.name,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    app.credentials.clear();
    Ok(StatusCode::OK)
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct RobotSec {
    #[serde(default)]
    secret: String,
}

/// `PATCH /robots/{id}`: a new secret. With `{"secret": ""}` (or none) one is
/// generated and returned once; a given secret must meet the password
/// policy and is not echoed back, as in Harbor. The old secret stops
/// working at once.
async fn refresh_secret(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<i64>,
    Json(req): Json<RobotSec>,
) -> Result<Json<RobotSec>> {
    let given = !req.secret.is_empty();
    if given {
        crate::password::check_policy(&req.secret)?;
    }
    let mut tx = app.db.begin().await?;
    let (robot, _) = managed_robot(&mut tx, &who, id, Action::Update).await?;
    let secret = if given { req.secret } else { generate_secret() };
    let hash = crate::password::hash(&secret).await?;
    wharf_catalog::robots::set_secret(&mut *tx, id, &hash).await?;
    wharf_catalog::audit::record(
        &mut tx,
        robot.project_id,
        "update",
        "robot",
        &robot.name,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    app.credentials.clear();
    Ok(Json(RobotSec {
        secret: if given { String::new() } else { secret },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ci", "ci-bot", "a.b_c-d", "x1", "9"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "CI", "a+b", "a$b", "-a", "a-", "a..b", "a b", "ä"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_meet_the_policy() {
        for _ in 0..100 {
            let s = generate_secret();
            assert_eq!(s.len(), 32);
            assert!(crate::password::check_policy(&s).is_ok());
        }
    }

    #[test]
    fn durations() {
        let t = Utc::now();
        assert_eq!(expiry(Some(-1), t).unwrap(), (-1, -1));
        assert_eq!(expiry(None, t).unwrap().0, DEFAULT_DURATION_DAYS);
        assert_eq!(expiry(Some(2), t).unwrap(), (2, t.timestamp() + 2 * 86_400));
        assert!(expiry(Some(-2), t).is_err());
        assert!(expiry(Some(i64::MAX), t).is_err());
    }

    fn perm(kind: &str, ns: &str, access: &[(&str, &str)]) -> RobotPermission {
        RobotPermission {
            kind: kind.into(),
            namespace: ns.into(),
            access: access
                .iter()
                .map(|(r, a)| Access {
                    resource: (*r).into(),
                    action: (*a).into(),
                    effect: None,
                })
                .collect(),
        }
    }

    #[test]
    fn permission_shapes() {
        let pull = [("repository", "pull")];
        assert_eq!(
            check_permissions(PROJECT, &[perm("project", "p1", &pull)])
                .unwrap()
                .len(),
            1
        );
        assert!(check_permissions(PROJECT, &[]).is_err());
        assert!(check_permissions(PROJECT, &[perm("project", "*", &pull)]).is_err());
        assert!(check_permissions(
            PROJECT,
            &[perm("project", "p1", &pull), perm("project", "p2", &pull)]
        )
        .is_err());
        assert!(check_permissions(PROJECT, &[perm("system", "/", &[("user", "list")])]).is_err());
        assert!(check_permissions(PROJECT, &[perm("project", "p1", &[])]).is_err());
        assert!(
            check_permissions(PROJECT, &[perm("project", "p1", &[("repository", "fly")])]).is_err()
        );
        let rows = check_permissions(
            SYSTEM,
            &[
                perm("system", "", &[("user", "list")]),
                perm("project", "*", &pull),
            ],
        )
        .unwrap();
        assert_eq!(rows[0].namespace, "/");
        assert!(
            check_permissions(SYSTEM, &[perm("system", "/", &[("repository", "pull")])]).is_err()
        );
        assert!(check_permissions(SYSTEM, &[perm("galaxy", "/", &pull)]).is_err());
    }

    #[test]
    fn grouping() {
        let p = |ns: &str, r: &str| Permission {
            kind: "project".into(),
            namespace: ns.into(),
            resource: r.into(),
            action: "pull".into(),
        };
        let g = group_permissions(vec![
            p("a", "repository"),
            p("a", "artifact"),
            p("b", "repository"),
        ]);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].access.len(), 2);
    }
}
