//! Repositories: `/repositories` and `/projects/{project}/repositories`
//! (list, get, update the description, delete with all its artifacts), and
//! the helpers the artifact and tag handlers share: the project by name, the
//! repository name from the path, who sees what.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::Uri;
use serde::Deserialize;
use serde_json::{json, Value};
use wharf_catalog::filter::{TextMatch, Viewer};
use wharf_catalog::repositories::{self, RepoQuery, RepoRef, RepoSort, Repository};
use wharf_catalog::{artifacts, immutable, projects};
use wharf_oci::{Digest, RepositoryName};

use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::handlers::users::{api_uri, timestamp};
use crate::paging::{paged, Filter, ListQuery};
use crate::rbac::{self, Action, ProjectCtx, Resource};
use crate::{App, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/repositories", get(list_all_repositories))
        .route("/projects/{project}/repositories", get(list_repositories))
        .route(
            "/projects/{project}/repositories/{repository}",
            get(get_repository)
                .put(update_repository)
                .delete(delete_repository),
        )
}

/// The project named in a catalogue path (these paths take names only), or
/// 404 when it does not exist or the caller may not see it.
pub(crate) async fn project_ctx(app: &App, who: &Principal, name: &str) -> Result<ProjectCtx> {
    let not_found = || ApiError::NotFound(format!("project {name} not found"));
    let project = projects::by_name(&app.db, name)
        .await?
        .ok_or_else(not_found)?;
    let metadata = projects::metadata_of(&app.db, project.project_id).await?;
    let access = rbac::access(app, who, &project, rbac::is_public(&metadata)).await?;
    if !access.visible() {
        return Err(not_found());
    }
    Ok(ProjectCtx {
        project,
        metadata,
        access,
    })
}

/// Like [`rbac::Access::require`], but an anonymous caller is asked to sign in (401).
pub(crate) fn require(
    who: &Principal,
    ctx: &ProjectCtx,
    resource: Resource,
    action: Action,
) -> Result<()> {
    match ctx.access.require(resource, action) {
        Err(ApiError::Forbidden(_)) if matches!(who, Principal::Anonymous) => {
            Err(ApiError::Unauthorized("authentication is required".into()))
        }
        other => other,
    }
}

/// The full repository name from the path's `{repository_name}`: the part
/// after the project, URL-encoded twice when it holds `/` (`a%252Fb`); the
/// router has decoded it once.
pub(crate) fn full_name(project: &str, raw: &str) -> Result<RepositoryName> {
    let decoded = percent_decode(raw).ok_or_else(|| {
        ApiError::BadRequest(format!("repository name {raw:?} is not valid UTF-8"))
    })?;
    RepositoryName::parse(&format!("{project}/{decoded}"))
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `a/b` → `a%252Fb`, as Harbor's clients put a repository name in a path.
pub(crate) fn path_segment(name_in_project: &str) -> String {
    name_in_project.replace('/', "%252F")
}

/// The repository of the project named in the path, or 404 when it holds no artifacts.
pub(crate) async fn repository(app: &App, ctx: &ProjectCtx, raw: &str) -> Result<Repository> {
    let name = full_name(&ctx.project.name, raw)?;
    repositories::by_name(&app.db, name.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("repository {name} not found")))
}

/// Like [`repository`], without the counts: what artifact and tag handlers need.
pub(crate) async fn repo_ref(app: &App, ctx: &ProjectCtx, raw: &str) -> Result<RepoRef> {
    let name = full_name(&ctx.project.name, raw)?;
    repositories::find(&app.db, name.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("repository {name} not found")))
}

/// Which projects the caller sees in lists (as `/projects` decides).
pub(crate) fn viewer(who: &Principal) -> Viewer {
    match who {
        Principal::User(u) if u.sysadmin => Viewer::everything(),
        Principal::User(u) => Viewer {
            public: true,
            user_id: Some(u.id),
            ..Viewer::default()
        },
        Principal::Robot(r) => {
            let names: Vec<String> = r
                .permissions
                .iter()
                .filter(|p| p.kind == "project")
                .map(|p| p.namespace.clone())
                .collect();
            if names.iter().any(|n| n == "*") {
                Viewer::everything()
            } else {
                Viewer {
                    public: true,
                    project_names: names,
                    project_ids: r.project_id.into_iter().collect(),
                    ..Viewer::default()
                }
            }
        }
        Principal::Anonymous => Viewer {
            public: true,
            ..Viewer::default()
        },
    }
}

/// A `q` text condition.
pub(crate) fn text_match(key: &str, f: Filter) -> Result<TextMatch> {
    Ok(match f {
        Filter::Exact(v) => TextMatch::Exact(v),
        Filter::Fuzzy(v) => TextMatch::Fuzzy(v),
        Filter::AnyOf(vs) => TextMatch::AnyOf(vs),
        Filter::Range(..) | Filter::AllOf(_) => {
            return Err(ApiError::BadRequest(format!(
                "{key} takes key=value, key=~value or key={{a b}}"
            )))
        }
    })
}

pub(crate) fn bool_param(key: &str, v: Option<&str>, default: bool) -> Result<bool> {
    match v.map(str::trim) {
        None | Some("") => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!(
            "{key} must be true or false, not {other:?}"
        ))),
    }
}

/// The tags of a repository that an enabled immutability rule protects,
/// with the rule, for refusals that name them.
pub(crate) async fn immutable_tags(
    app: &App,
    project_id: i64,
    repo: &RepositoryName,
    tags: &[String],
) -> Result<Vec<(String, String)>> {
    if tags.is_empty() {
        return Ok(vec![]);
    }
    let rules = immutable::enabled(&app.db, project_id).await?;
    let short = repo.as_str().split_once('/').map(|(_, r)| r).unwrap_or("");
    Ok(tags
        .iter()
        .filter_map(|t| {
            rules
                .iter()
                .find(|r| r.rule.protects(short, t))
                .map(|r| (t.clone(), r.rule.describe()))
        })
        .collect())
}

/// Harbor's `Repository`.
fn repository_json(r: &Repository) -> Value {
    json!({
        "id": r.id,
        "project_id": r.project_id,
        "name": r.name,
        "description": r.description,
        "artifact_count": r.artifact_count,
        "pull_count": r.pull_count,
        "creation_time": timestamp(r.creation_time),
        "update_time": timestamp(r.update_time),
    })
}

fn repo_query(lq: &ListQuery) -> Result<RepoQuery> {
    let page = lq.page()?;
    let mut q = RepoQuery {
        limit: page.limit(),
        offset: page.offset(),
        ..RepoQuery::default()
    };
    for (k, f) in lq.filters()? {
        match k.as_str() {
            "name" => q.name.push(text_match("name", f)?),
            "project_id" => match f {
                Filter::Exact(v) => {
                    q.project_id = Some(v.parse().map_err(|_| {
                        ApiError::BadRequest(format!("project_id {v:?} is not a number"))
                    })?)
                }
                _ => {
                    return Err(ApiError::BadRequest(
                        "project_id takes project_id=<id>".into(),
                    ))
                }
            },
            other => {
                return Err(ApiError::BadRequest(format!(
                    "cannot filter repositories by {other:?}; use name or project_id"
                )))
            }
        }
    }
    q.sort = lq
        .sort(&["name", "creation_time", "update_time"])?
        .into_iter()
        .map(|(k, desc)| {
            let key = match k.as_str() {
                "name" => RepoSort::Name,
                "update_time" => RepoSort::UpdateTime,
                _ => RepoSort::CreationTime,
            };
            (key, desc)
        })
        .collect();
    Ok(q)
}

async fn list_all_repositories(
    State(app): State<AppState>,
    who: Principal,
    uri: Uri,
    Query(lq): Query<ListQuery>,
) -> Result<Response> {
    let q = repo_query(&lq)?;
    let (rows, total) = repositories::list(&app.db, &viewer(&who), &q).await?;
    let items: Vec<Value> = rows.iter().map(repository_json).collect();
    Ok(paged(items, total, lq.page()?, &api_uri(&uri)))
}

async fn list_repositories(
    State(app): State<AppState>,
    who: Principal,
    Path(project): Path<String>,
    uri: Uri,
    Query(lq): Query<ListQuery>,
) -> Result<Response> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Repository, Action::List)?;
    let mut q = repo_query(&lq)?;
    q.project = Some(ctx.project.name.clone());
    let (rows, total) = repositories::list(&app.db, &Viewer::everything(), &q).await?;
    let items: Vec<Value> = rows.iter().map(repository_json).collect();
    Ok(paged(items, total, lq.page()?, &api_uri(&uri)))
}

async fn get_repository(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Repository, Action::Read)?;
    let r = repository(&app, &ctx, &repo).await?;
    Ok(Json(repository_json(&r)))
}

#[derive(Deserialize)]
struct RepositoryUpdate {
    description: Option<String>,
}

async fn update_repository(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo)): Path<(String, String)>,
    Json(body): Json<RepositoryUpdate>,
) -> Result<Response> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Repository, Action::Update)?;
    let r = repo_ref(&app, &ctx, &repo).await?;
    let description = body.description.unwrap_or_default();
    if description.len() > 64 << 10 {
        return Err(ApiError::BadRequest(
            "description is limited to 64 KiB".into(),
        ));
    }
    repositories::set_description(&app.db, r.id, &description).await?;
    Ok(http::StatusCode::OK.into_response())
}

/// Deletes every artifact of the repository through the registry (indexes
/// before their children, referrers before their subjects), then its extras.
async fn delete_repository(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo)): Path<(String, String)>,
) -> Result<Response> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Repository, Action::Delete)?;
    let r = repo_ref(&app, &ctx, &repo).await?;
    let name = full_name(&ctx.project.name, &repo)?;
    let tags = artifacts::repo_tags(&app.db, r.id).await?;
    if let Some((tag, rule)) = immutable_tags(&app, ctx.project.project_id, &name, &tags)
        .await?
        .into_iter()
        .next()
    {
        return Err(ApiError::Precondition(format!(
            "repository {name} cannot be deleted: its tag {tag} is immutable (rule: {rule})"
        )));
    }
    for d in artifacts::deletion_order(&app.db, r.id).await? {
        let Some(digest) = Digest::from_bytes(&d) else {
            continue;
        };
        match crate::registry::delete_artifact(
            &app,
            name.as_str(),
            &digest.to_string(),
            who.username(),
        )
        .await
        {
            // Deleted meanwhile by someone else: that is what we want.
            Ok(()) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let mut tx = app.db.begin().await?;
    repositories::delete_meta(&mut *tx, r.id).await?;
    wharf_catalog::audit::record(
        &mut tx,
        Some(ctx.project.project_id),
        "delete",
        "repository",
        name.as_str(),
        who.username(),
    )
    .await?;
    tx.commit().await?;
    Ok(http::StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_from_paths() {
        assert_eq!(full_name("p", "a%2Fb").unwrap().as_str(), "p/a/b");
        assert_eq!(full_name("p", "app").unwrap().as_str(), "p/app");
        assert!(full_name("p", "A").is_err());
        assert!(full_name("p", "a%2").is_err());
        assert_eq!(path_segment("a/b"), "a%252Fb");
    }
}
