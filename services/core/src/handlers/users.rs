//! Users: `/users`, `/users/search`, `/users/current` and its permissions,
//! as Harbor's user API answers them (database authentication).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use http::{StatusCode, Uri};
use serde::{Deserialize, Serialize};
use wharf_catalog::filter::TextMatch;
use wharf_catalog::users::{User, UserFilter, UserOrder};

use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::paging::{paged, Filter, ListQuery};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/current", get(current_user))
        .route("/users/current/permissions", get(current_permissions))
        .route("/users/search", get(search_users))
        .route(
            "/users/{user_id}",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route("/users/{user_id}/password", put(change_password))
        .route("/users/{user_id}/sysadmin", put(set_sysadmin))
}

/// The user id Harbor gives the administrator created at install; it can
/// be neither deleted nor demoted.
const ADMIN_ID: i64 = 1;

/// Harbor's `UserResp`. The password hash never leaves the catalogue.
#[derive(Debug, Serialize)]
pub struct UserResp {
    pub user_id: i64,
    pub username: String,
    pub email: String,
    pub realname: String,
    pub comment: String,
    pub sysadmin_flag: bool,
    pub admin_role_in_auth: bool,
    pub creation_time: String,
    pub update_time: String,
}

impl From<User> for UserResp {
    fn from(u: User) -> UserResp {
        UserResp {
            user_id: u.user_id,
            username: u.username,
            email: u.email,
            realname: u.realname,
            comment: u.comment,
            sysadmin_flag: u.sysadmin_flag,
            // Only an external authenticator (LDAP, OIDC groups) grants admin
            // rights by itself; with database authentication never.
            admin_role_in_auth: false,
            creation_time: timestamp(u.creation_time),
            update_time: timestamp(u.update_time),
        }
    }
}

/// Harbor's date-time format: RFC 3339 in UTC with milliseconds.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The URI the client sent. Routes nested under `/api/v2.0` see their path
/// without that prefix, and `Link` headers must carry it.
pub(crate) fn api_uri(uri: &Uri) -> Uri {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("/api/v2.0{pq}")
        .parse()
        .unwrap_or_else(|_| uri.clone())
}

/// A `201 Created` with the new resource's `Location` and no body, as Harbor answers creations.
pub(crate) fn created(location: String) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(v) = http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("user {id} not found"))
}

/// The signed-in user, refusing anonymous callers (401) and robots (403).
fn require_user(who: &Principal) -> Result<&crate::auth::UserCtx> {
    who.require_auth()?;
    who.user().ok_or_else(|| {
        ApiError::Forbidden(format!(
            "{} is a robot account; only users may do this",
            who.username()
        ))
    })
}

// ---- validation, as Harbor's `validateUserProfile` and user creation check ----

const ILLEGAL_NAME_CHARS: [char; 5] = [',', '~', '#', '$', '%'];

fn check_username(name: &str) -> Result<()> {
    let len = name.chars().count();
    if !(1..=255).contains(&len) {
        return Err(ApiError::BadRequest(
            "username must be 1 to 255 characters long".into(),
        ));
    }
    // `:` would make the name impossible to send in basic credentials.
    if name
        .chars()
        .any(|c| ILLEGAL_NAME_CHARS.contains(&c) || c == ':' || c.is_control())
    {
        return Err(ApiError::BadRequest(
            "username must not contain any of , ~ # $ % : or control characters".into(),
        ));
    }
    Ok(())
}

/// The shape Harbor accepts: `local@domain.tld`, with a letters-only top-level domain.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && !local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

fn check_profile(email: &str, realname: &str, comment: &str) -> Result<()> {
    if email.is_empty() {
        return Err(ApiError::BadRequest("email must not be empty".into()));
    }
    if email.chars().count() > 255 || !valid_email(email) {
        return Err(ApiError::BadRequest(format!(
            "email {email:?} is not a valid address (expected name@example.com)"
        )));
    }
    let len = realname.chars().count();
    if !(1..=255).contains(&len) {
        return Err(ApiError::BadRequest(
            "realname must be 1 to 255 characters long".into(),
        ));
    }
    if realname.chars().any(|c| ILLEGAL_NAME_CHARS.contains(&c)) {
        return Err(ApiError::BadRequest(
            "realname must not contain any of , ~ # $ %".into(),
        ));
    }
    if comment.chars().count() > 30 {
        return Err(ApiError::BadRequest(
            "comment must be at most 30 characters long".into(),
        ));
    }
    Ok(())
}

/// A conflicting insert or update that raced past the checks.
fn unique_violation(e: &wharf_catalog::Error) -> bool {
    matches!(e, wharf_catalog::Error::Db(sqlx::Error::Database(d)) if d.is_unique_violation())
}

// ---- create ----

#[derive(Debug, Deserialize)]
struct UserCreationReq {
    username: Option<String>,
    email: Option<String>,
    realname: Option<String>,
    comment: Option<String>,
    password: Option<String>,
}

async fn create_user(
    State(app): State<AppState>,
    who: Principal,
    Json(req): Json<UserCreationReq>,
) -> Result<Response> {
    who.require_sysadmin()?;
    let username = req.username.unwrap_or_default();
    let email = req.email.unwrap_or_default();
    let realname = req.realname.unwrap_or_default();
    let comment = req.comment.unwrap_or_default();
    let password = req.password.unwrap_or_default();
    check_username(&username)?;
    check_profile(&email, &realname, &comment)?;
    crate::password::check_policy(&password)?;
    let hash = crate::password::hash(&password).await?;

    let mut tx = app.db.begin().await?;
    if wharf_catalog::users::username_taken(&mut *tx, &username, None).await? {
        return Err(ApiError::Conflict(format!(
            "username {username} is already taken"
        )));
    }
    if wharf_catalog::users::email_taken(&mut *tx, &email, None).await? {
        return Err(ApiError::Conflict(format!(
            "email {email} is already used by another user"
        )));
    }
    let id = wharf_catalog::users::create(
        &mut *tx,
        &wharf_catalog::users::NewUser {
            username: &username,
            email: &email,
            realname: &realname,
            comment: &comment,
            password_hash: &hash,
            sysadmin: false,
        },
    )
    .await?
    .ok_or_else(|| {
        ApiError::Conflict(format!(
            "username {username} or email {email} is already taken"
        ))
    })?;
    wharf_catalog::audit::record(&mut tx, None, "create", "user", &username, who.username())
        .await?;
    tx.commit().await?;
    Ok(created(format!("/api/v2.0/users/{id}")))
}

// ---- list and search ----

#[derive(Debug, Deserialize)]
struct UserListQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    q: Option<String>,
    sort: Option<String>,
    /// Harbor also takes `username=` and `email=` as fuzzy filters outside `q`.
    username: Option<String>,
    email: Option<String>,
}

/// Strips the quotes Harbor allows around `q` values.
fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn text_match(key: &str, f: Filter) -> Result<TextMatch> {
    match f {
        Filter::Exact(v) => Ok(TextMatch::Exact(unquote(&v).to_owned())),
        Filter::Fuzzy(v) => Ok(TextMatch::Fuzzy(unquote(&v).to_owned())),
        Filter::AnyOf(vs) => Ok(TextMatch::AnyOf(
            vs.iter().map(|v| unquote(v).to_owned()).collect(),
        )),
        _ => Err(ApiError::BadRequest(format!(
            "{key} supports k=v, k=~v and k={{a b}} in q"
        ))),
    }
}

fn parse_id(key: &str, v: &str) -> Result<i64> {
    unquote(v)
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{key} in q must be an integer, not {v:?}")))
}

/// A time in `q`: `2020-04-09 02:36:00` as Harbor writes it, RFC 3339, or a date.
pub(crate) fn parse_time(key: &str, v: &str) -> Result<DateTime<Utc>> {
    let v = unquote(v);
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(ApiError::BadRequest(format!(
        "{key} in q must be a time like \"2020-04-09 02:36:00\", not {v:?}"
    )))
}

type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn time_range(key: &str, f: Filter) -> Result<TimeRange> {
    match f {
        Filter::Range(a, b) => Ok((
            a.map(|a| parse_time(key, &a)).transpose()?,
            b.map(|b| parse_time(key, &b)).transpose()?,
        )),
        Filter::Exact(v) => {
            let t = parse_time(key, &v)?;
            Ok((Some(t), Some(t)))
        }
        _ => Err(ApiError::BadRequest(format!(
            "{key} supports k=[from~to] in q"
        ))),
    }
}

const USER_FILTER_KEYS: &str =
    "username, email, realname, user_id, sysadmin_flag, creation_time, update_time";

fn user_filter(terms: Vec<(String, Filter)>) -> Result<UserFilter> {
    let mut f = UserFilter::default();
    for (key, term) in terms {
        match key.as_str() {
            "username" => f.username = Some(text_match(&key, term)?),
            "email" => f.email = Some(text_match(&key, term)?),
            "realname" => f.realname = Some(text_match(&key, term)?),
            "user_id" => match term {
                Filter::Exact(v) => f.ids = Some(vec![parse_id(&key, &v)?]),
                Filter::AnyOf(vs) => {
                    f.ids = Some(
                        vs.iter()
                            .map(|v| parse_id(&key, v))
                            .collect::<Result<_>>()?,
                    )
                }
                Filter::Range(a, b) => {
                    f.id_min = a.map(|a| parse_id(&key, &a)).transpose()?;
                    f.id_max = b.map(|b| parse_id(&key, &b)).transpose()?;
                }
                _ => {
                    return Err(ApiError::BadRequest(
                        "user_id supports k=v, k={a b} and k=[a~b] in q".into(),
                    ))
                }
            },
            "sysadmin_flag" => match term {
                Filter::Exact(v) => {
                    f.sysadmin = Some(unquote(&v).parse().map_err(|_| {
                        ApiError::BadRequest(format!(
                            "sysadmin_flag in q must be true or false, not {v:?}"
                        ))
                    })?)
                }
                _ => {
                    return Err(ApiError::BadRequest(
                        "sysadmin_flag supports k=true or k=false in q".into(),
                    ))
                }
            },
            "creation_time" => (f.created_from, f.created_to) = time_range(&key, term)?,
            "update_time" => (f.updated_from, f.updated_to) = time_range(&key, term)?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "cannot filter users by {other:?}; q accepts {USER_FILTER_KEYS}"
                )))
            }
        }
    }
    Ok(f)
}

fn user_order(q: &ListQuery) -> Result<Vec<(UserOrder, bool)>> {
    let sort = q.sort(&[
        "user_id",
        "username",
        "email",
        "realname",
        "sysadmin_flag",
        "creation_time",
        "update_time",
    ])?;
    Ok(sort
        .into_iter()
        .map(|(k, desc)| {
            let col = match k.as_str() {
                "username" => UserOrder::Username,
                "email" => UserOrder::Email,
                "realname" => UserOrder::Realname,
                "sysadmin_flag" => UserOrder::SysadminFlag,
                "creation_time" => UserOrder::CreationTime,
                "update_time" => UserOrder::UpdateTime,
                _ => UserOrder::UserId,
            };
            (col, desc)
        })
        .collect())
}

async fn list_users(
    State(app): State<AppState>,
    who: Principal,
    uri: Uri,
    Query(query): Query<UserListQuery>,
) -> Result<Response> {
    who.require_sysadmin()?;
    let lq = ListQuery {
        page: query.page,
        page_size: query.page_size,
        q: query.q,
        sort: query.sort,
    };
    let page = lq.page()?;
    let mut filter = user_filter(lq.filters()?)?;
    if let Some(v) = query.username.filter(|v| !v.is_empty()) {
        filter.username = Some(TextMatch::Fuzzy(v));
    }
    if let Some(v) = query.email.filter(|v| !v.is_empty()) {
        filter.email = Some(TextMatch::Fuzzy(v));
    }
    let order = user_order(&lq)?;
    let mut tx = app.db.begin().await?;
    let total = wharf_catalog::users::count(&mut *tx, &filter).await?;
    let users =
        wharf_catalog::users::list(&mut *tx, &filter, &order, page.limit(), page.offset()).await?;
    tx.commit().await?;
    let items: Vec<UserResp> = users.into_iter().map(UserResp::from).collect();
    Ok(paged(items, total, page, &api_uri(&uri)))
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    username: Option<String>,
}

#[derive(Debug, Serialize)]
struct UserSearchRespItem {
    user_id: i64,
    username: String,
}

/// Open to every authenticated caller, so it reveals ids and names only.
async fn search_users(
    State(app): State<AppState>,
    who: Principal,
    uri: Uri,
    Query(query): Query<SearchQuery>,
) -> Result<Response> {
    who.require_auth()?;
    let username = query
        .username
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("the username query parameter is required".into()))?;
    let page = ListQuery {
        page: query.page,
        page_size: query.page_size,
        ..Default::default()
    }
    .page()?;
    let filter = UserFilter {
        username: Some(TextMatch::Fuzzy(username)),
        ..Default::default()
    };
    let order = [(UserOrder::Username, false)];
    let mut tx = app.db.begin().await?;
    let total = wharf_catalog::users::count(&mut *tx, &filter).await?;
    let users =
        wharf_catalog::users::list(&mut *tx, &filter, &order, page.limit(), page.offset()).await?;
    tx.commit().await?;
    let items: Vec<UserSearchRespItem> = users
        .into_iter()
        .map(|u| UserSearchRespItem {
            user_id: u.user_id,
            username: u.username,
        })
        .collect();
    Ok(paged(items, total, page, &api_uri(&uri)))
}

// ---- one user ----

/// Only a system administrator or the user themself may see or change a user.
fn require_self_or_admin(who: &Principal, id: i64) -> Result<()> {
    let user = require_user(who)?;
    if user.sysadmin || user.id == id {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only system administrators and user {id} themself may do this"
        )))
    }
}

async fn get_user(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<i64>,
) -> Result<Json<UserResp>> {
    require_self_or_admin(&who, id)?;
    let user = wharf_catalog::users::by_id(&app.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(user.into()))
}

async fn current_user(State(app): State<AppState>, who: Principal) -> Result<Json<UserResp>> {
    who.require_auth()?;
    let Some(me) = who.user() else {
        // Harbor answers 412 for a caller that is not a local user.
        return Err(ApiError::Precondition(format!(
            "{} is a robot account: /users/current describes user accounts only",
            who.username()
        )));
    };
    let user = wharf_catalog::users::by_id(&app.db, me.id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the signed-in user no longer exists".into()))?;
    Ok(Json(user.into()))
}

#[derive(Debug, Deserialize)]
struct UserProfile {
    email: Option<String>,
    realname: Option<String>,
    comment: Option<String>,
}

/// Updates email, realname and comment. A field left out keeps its value.
async fn update_user(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<i64>,
    Json(req): Json<UserProfile>,
) -> Result<StatusCode> {
    require_self_or_admin(&who, id)?;
    let mut tx = app.db.begin().await?;
    let user = wharf_catalog::users::lock(&mut *tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let email = req.email.unwrap_or(user.email);
    let realname = req.realname.unwrap_or(user.realname);
    let comment = req.comment.unwrap_or(user.comment);
    check_profile(&email, &realname, &comment)?;
    if wharf_catalog::users::email_taken(&mut *tx, &email, Some(id)).await? {
        return Err(ApiError::Conflict(format!(
            "email {email} is already used by another user"
        )));
    }
    match wharf_catalog::users::update_profile(&mut *tx, id, &email, &realname, &comment).await {
        Ok(true) => {}
        Ok(false) => return Err(not_found(id)),
        Err(e) if unique_violation(&e) => {
            return Err(ApiError::Conflict(format!(
                "email {email} is already used by another user"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    wharf_catalog::audit::record(
        &mut tx,
        None,
        "update",
        "user",
        &user.username,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

async fn delete_user(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<i64>,
) -> Result<StatusCode> {
    who.require_sysadmin()?;
    let me = require_user(&who)?;
    if id == me.id {
        return Err(ApiError::Forbidden("you cannot delete yourself".into()));
    }
    if id == ADMIN_ID {
        return Err(ApiError::Forbidden(
            "the admin user (id 1) cannot be deleted".into(),
        ));
    }
    let mut tx = app.db.begin().await?;
    let user = wharf_catalog::users::lock(&mut *tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    wharf_catalog::users::delete(&mut tx, id, me.id).await?;
    wharf_catalog::audit::record(
        &mut tx,
        None,
        "delete",
        "user",
        &user.username,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    app.credentials.clear();
    Ok(StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct PasswordReq {
    old_password: Option<String>,
    new_password: Option<String>,
}

/// Users change their own password by giving the current one; a system
/// administrator sets anyone else's without it.
async fn change_password(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<i64>,
    Json(req): Json<PasswordReq>,
) -> Result<StatusCode> {
    require_self_or_admin(&who, id)?;
    let me = require_user(&who)?;
    let new_password = req.new_password.unwrap_or_default();
    if new_password.is_empty() {
        return Err(ApiError::BadRequest("new_password is required".into()));
    }
    crate::password::check_policy(&new_password)?;
    let own = me.id == id;
    let old_password = req.old_password.unwrap_or_default();
    if own && old_password.is_empty() {
        return Err(ApiError::BadRequest(
            "old_password is required to change your own password".into(),
        ));
    }

    let mut tx = app.db.begin().await?;
    let user = wharf_catalog::users::lock(&mut *tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if own && !crate::password::verify(Some(user.password_hash.clone()), &old_password).await {
        return Err(ApiError::Forbidden(
            "the current password is incorrect".into(),
        ));
    }
    if crate::password::verify(Some(user.password_hash.clone()), &new_password).await {
        return Err(ApiError::BadRequest(
            "the new password must differ from the current one".into(),
        ));
    }
    let hash = crate::password::hash(&new_password).await?;
    wharf_catalog::users::set_password(&mut *tx, id, &hash).await?;
    wharf_catalog::audit::record(
        &mut tx,
        None,
        "update",
        "user",
        &user.username,
        who.username(),
    )
    .await?;
    tx.commit().await?;
    // The old password must stop working now, not when the cache expires.
    app.credentials.clear();
    Ok(StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct UserSysAdminFlag {
    sysadmin_flag: Option<bool>,
}

async fn set_sysadmin(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<i64>,
    Json(req): Json<UserSysAdminFlag>,
) -> Result<StatusCode> {
    who.require_sysadmin()?;
    let me = require_user(&who)?;
    let flag = req
        .sysadmin_flag
        .ok_or_else(|| ApiError::BadRequest("sysadmin_flag (true or false) is required".into()))?;
    if id == me.id {
        return Err(ApiError::Forbidden(
            "you cannot change your own system administrator flag".into(),
        ));
    }
    if id == ADMIN_ID {
        return Err(ApiError::Forbidden(
            "the admin user (id 1) always stays a system administrator".into(),
        ));
    }
    let mut tx = app.db.begin().await?;
    let user = wharf_catalog::users::lock(&mut *tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if user.sysadmin_flag != flag {
        wharf_catalog::users::set_sysadmin(&mut *tx, id, flag).await?;
        wharf_catalog::audit::record(
            &mut tx,
            None,
            "update",
            "user",
            &user.username,
            who.username(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::OK)
}

// ---- permissions ----

/// Harbor's system-level policies (`/system/<resource>`, action): what a
/// system administrator may do outside any project.
pub(crate) const SYSTEM_POLICIES: &[(&str, &str)] = &[
    ("audit-log", "list"),
    ("catalog", "read"),
    ("configuration", "read"),
    ("configuration", "update"),
    ("export-cve", "create"),
    ("export-cve", "read"),
    ("garbage-collection", "create"),
    ("garbage-collection", "read"),
    ("garbage-collection", "update"),
    ("garbage-collection", "delete"),
    ("garbage-collection", "list"),
    ("jobservice-monitor", "list"),
    ("jobservice-monitor", "stop"),
    ("label", "create"),
    ("label", "read"),
    ("label", "update"),
    ("label", "delete"),
    ("label", "list"),
    ("ldap-user", "create"),
    ("ldap-user", "list"),
    ("preheat-instance", "create"),
    ("preheat-instance", "read"),
    ("preheat-instance", "update"),
    ("preheat-instance", "delete"),
    ("preheat-instance", "list"),
    ("project", "create"),
    ("project", "read"),
    ("project", "update"),
    ("project", "delete"),
    ("project", "list"),
    ("purge-audit", "create"),
    ("purge-audit", "read"),
    ("purge-audit", "update"),
    ("purge-audit", "delete"),
    ("purge-audit", "list"),
    ("quota", "read"),
    ("quota", "update"),
    ("quota", "list"),
    ("registry", "create"),
    ("registry", "read"),
    ("registry", "update"),
    ("registry", "delete"),
    ("registry", "list"),
    ("replication", "create"),
    ("replication", "read"),
    ("replication", "update"),
    ("replication", "delete"),
    ("replication", "list"),
    ("replication-adapter", "list"),
    ("replication-policy", "create"),
    ("replication-policy", "read"),
    ("replication-policy", "update"),
    ("replication-policy", "delete"),
    ("replication-policy", "list"),
    ("robot", "create"),
    ("robot", "read"),
    ("robot", "update"),
    ("robot", "delete"),
    ("robot", "list"),
    ("scan-all", "create"),
    ("scan-all", "read"),
    ("scan-all", "update"),
    ("scan-all", "delete"),
    ("scan-all", "list"),
    ("scan-all", "stop"),
    ("scanner", "create"),
    ("scanner", "read"),
    ("scanner", "update"),
    ("scanner", "delete"),
    ("scanner", "list"),
    ("security-hub", "read"),
    ("security-hub", "list"),
    ("system-volumes", "read"),
    ("user", "create"),
    ("user", "read"),
    ("user", "update"),
    ("user", "delete"),
    ("user", "list"),
    ("user-group", "create"),
    ("user-group", "read"),
    ("user-group", "update"),
    ("user-group", "delete"),
    ("user-group", "list"),
];

/// The system-level (resource, action) pairs a caller holds: everything
/// for a system administrator, the `system` permissions of a robot, nothing
/// for anyone else.
pub(crate) fn system_permissions(who: &Principal) -> Vec<(String, String)> {
    match who {
        Principal::User(u) if u.sysadmin => SYSTEM_POLICIES
            .iter()
            .map(|(r, a)| ((*r).to_owned(), (*a).to_owned()))
            .collect(),
        Principal::Robot(r) => r
            .permissions
            .iter()
            .filter(|p| p.kind == "system")
            .map(|p| (p.resource.clone(), p.action.clone()))
            .collect(),
        _ => vec![],
    }
}

#[derive(Debug, Deserialize)]
struct PermissionsQuery {
    scope: Option<String>,
    relative: Option<bool>,
}

#[derive(Debug, Serialize)]
struct PermissionResp {
    resource: String,
    action: String,
}

/// `GET /users/current/permissions?scope=/project/1&relative=true`: what
/// the caller may do in a scope, `/system` or `/project/{id}` (without a
/// scope, the system scope). Resources are absolute (`/project/1/repository`)
/// or, with `relative=true`, relative to the scope (`repository`, and `.`
/// for the project itself). A project the caller may not see grants nothing.
async fn current_permissions(
    State(app): State<AppState>,
    who: Principal,
    Query(query): Query<PermissionsQuery>,
) -> Result<Json<Vec<PermissionResp>>> {
    who.require_auth()?;
    let scope = query.scope.unwrap_or_default();
    let scope = match scope.trim_end_matches('/') {
        "" | "/system" => "/system".to_owned(),
        other => other.to_owned(),
    };
    let relative = query.relative.unwrap_or(false);
    let granted = if scope == "/system" {
        system_permissions(&who)
    } else if let Some(id) = scope.strip_prefix("/project/") {
        let id: i64 = id.parse().map_err(|_| {
            ApiError::BadRequest(format!("scope {scope:?} must be /project/<project id>"))
        })?;
        crate::rbac::project_permissions(&app, &who, id)
            .await?
            .unwrap_or_default()
    } else {
        return Err(ApiError::BadRequest(format!(
            "unknown scope {scope:?}; expected /system or /project/<id>"
        )));
    };
    Ok(Json(
        granted
            .into_iter()
            .map(|(resource, action)| PermissionResp {
                resource: match (relative, resource.is_empty()) {
                    (true, true) => ".".to_owned(),
                    (true, false) => resource,
                    (false, true) => scope.clone(),
                    (false, false) => format!("{scope}/{resource}"),
                },
                action,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.io", "first.last@sub.example.com", "x+tag@ex-ample.org"] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@b",
            "a@b.c",
            "a b@example.com",
            "a@exa mple.com",
            "a@example.c0m",
            "a@.example.com",
            "a..b@example.com",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn usernames() {
        assert!(check_username("alice").is_ok());
        assert!(check_username("Alice.Smith-1").is_ok());
        for bad in [
            "",
            "robot$x",
            "a,b",
            "a~b",
            "a#b",
            "a%b",
            "a:b",
            &"x".repeat(256),
        ] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn q_for_users() {
        let f =
            user_filter(crate::paging::parse_q("username=~al,email=a@b.io,user_id=[2~9]").unwrap())
                .unwrap();
        assert_eq!(f.username, Some(TextMatch::Fuzzy("al".into())));
        assert_eq!(f.email, Some(TextMatch::Exact("a@b.io".into())));
        assert_eq!((f.id_min, f.id_max), (Some(2), Some(9)));
        assert!(user_filter(crate::paging::parse_q("password=x").unwrap()).is_err());
        assert!(user_filter(crate::paging::parse_q("user_id=abc").unwrap()).is_err());
        let f =
            user_filter(crate::paging::parse_q("creation_time=[2020-04-09 02:36:00~]").unwrap())
                .unwrap();
        assert!(f.created_from.is_some() && f.created_to.is_none());
    }
}
