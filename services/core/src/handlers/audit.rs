//! The audit log: `/audit-logs` (a system administrator sees everything,
//! others the projects whose logs their role lets them read) and
//! `/projects/{project}/logs`.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use http::Uri;
use serde_json::{json, Value};
use wharf_catalog::auditlog::{self, Entry, Query as AuditQuery};
use wharf_catalog::repositories::member_projects;

use super::repositories::{project_ctx, require, text_match};
use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Path, Query};
use crate::handlers::users::{api_uri, timestamp};
use crate::paging::{paged, Filter, ListQuery};
use crate::rbac::{Action, Resource, Role};
use crate::{App, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit-logs", get(list_audit_logs))
        .route("/projects/{project}/logs", get(list_project_logs))
}

/// Harbor's `AuditLog`.
fn entry_json(e: &Entry) -> Value {
    json!({
        "id": e.id,
        "username": e.username,
        "resource": e.resource,
        "resource_type": e.resource_type,
        "operation": e.operation,
        "op_time": timestamp(e.op_time),
    })
}

/// `2024-01-02T03:04:05Z`, `2024-01-02 03:04:05` (Harbor's portal) or `2024-01-02`.
fn parse_time(s: &str, end_of_day: bool) -> Result<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Ok(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = if end_of_day {
            d.and_hms_opt(23, 59, 59)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        if let Some(t) = t {
            return Ok(t.and_utc());
        }
    }
    Err(ApiError::BadRequest(format!(
        "op_time {s:?} is not a time: use RFC 3339, \"YYYY-MM-DD hh:mm:ss\" or YYYY-MM-DD"
    )))
}

fn audit_query(lq: &ListQuery, projects: Option<Vec<i64>>) -> Result<AuditQuery> {
    let page = lq.page()?;
    let mut q = AuditQuery {
        projects,
        limit: page.limit(),
        offset: page.offset(),
        ..AuditQuery::default()
    };
    for (k, f) in lq.filters()? {
        match k.as_str() {
            "operation" => q.operation.push(text_match(&k, f)?),
            "resource" => q.resource.push(text_match(&k, f)?),
            "resource_type" => q.resource_type.push(text_match(&k, f)?),
            "username" => q.username.push(text_match(&k, f)?),
            "op_time" => match f {
                Filter::Range(a, b) => {
                    q.from = a.as_deref().map(|a| parse_time(a, false)).transpose()?;
                    q.to = b.as_deref().map(|b| parse_time(b, true)).transpose()?;
                }
                _ => {
                    return Err(ApiError::BadRequest(
                        "op_time takes a range: op_time=[from~to]".into(),
                    ))
                }
            },
            other => {
                return Err(ApiError::BadRequest(format!(
                    "cannot filter audit logs by {other:?}; use operation, resource, resource_type, username or op_time"
                )))
            }
        }
    }
    for (k, desc) in lq.sort(&["op_time"])? {
        if k == "op_time" {
            q.ascending = !desc;
        }
    }
    Ok(q)
}

/// The projects whose logs `who` may read; `None` for all of them.
async fn readable_projects(app: &App, who: &Principal) -> Result<Option<Vec<i64>>> {
    Ok(match who {
        Principal::Anonymous => {
            return Err(ApiError::Unauthorized("authentication is required".into()))
        }
        Principal::User(u) if u.sysadmin => None,
        Principal::User(u) => Some(
            member_projects(&app.db, u.id)
                .await?
                .into_iter()
                .filter(|(_, role)| {
                    Role::from_id(*role)
                        .is_some_and(|r| crate::rbac::role_allows(r, Resource::Log, Action::List))
                })
                .map(|(id, _)| id)
                .collect(),
        ),
        Principal::Robot(r) => {
            let grants = |p: &&wharf_catalog::robots::Permission| {
                p.kind == "project"
                    && (p.resource == "log" || p.resource == "*")
                    && (p.action == "list" || p.action == "*")
            };
            let names: Vec<String> = r
                .permissions
                .iter()
                .filter(grants)
                .map(|p| p.namespace.clone())
                .collect();
            if names.iter().any(|n| n == "*") && r.level != "project" {
                None
            } else {
                let mut ids = Vec::new();
                for n in names {
                    if let Some(p) = wharf_catalog::projects::by_name(&app.db, &n).await? {
                        if r.project_id.is_none_or(|own| own == p.project_id) {
                            ids.push(p.project_id);
                        }
                    }
                }
                Some(ids)
            }
        }
    })
}

async fn list_audit_logs(
    State(app): State<AppState>,
    who: Principal,
    uri: Uri,
    Query(lq): Query<ListQuery>,
) -> Result<Response> {
    let projects = readable_projects(&app, &who).await?;
    let q = audit_query(&lq, projects)?;
    let (rows, total) = auditlog::list(&app.db, &q).await?;
    let items: Vec<Value> = rows.iter().map(entry_json).collect();
    Ok(paged(items, total, lq.page()?, &api_uri(&uri)))
}

async fn list_project_logs(
    State(app): State<AppState>,
    who: Principal,
    Path(project): Path<String>,
    uri: Uri,
    Query(lq): Query<ListQuery>,
) -> Result<Response> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Log, Action::List)?;
    let q = audit_query(&lq, Some(vec![ctx.project.project_id]))?;
    let (rows, total) = auditlog::list(&app.db, &q).await?;
    let items: Vec<Value> = rows.iter().map(entry_json).collect();
    Ok(paged(items, total, lq.page()?, &api_uri(&uri)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let a = parse_time("2024-01-02 03:04:05", false).unwrap();
        assert_eq!(a.to_rfc3339(), "2024-01-02T03:04:05+00:00");
        let b = parse_time("2024-01-02", true).unwrap();
        assert_eq!(b.to_rfc3339(), "2024-01-02T23:59:59+00:00");
        assert!(parse_time("2024-01-02T03:04:05Z", false).is_ok());
        assert!(parse_time("yesterday", false).is_err());
    }
}
