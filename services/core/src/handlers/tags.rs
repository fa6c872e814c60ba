//! Tags of an artifact: `/projects/{project}/repositories/{repository}/
//! artifacts/{reference}/tags` (list, add) and `/tags/{tag}` (delete). Adding
//! and deleting go through the registry's internal API, so the write path's
//! policy (tag immutability among it) applies as to a push.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use http::Uri;
use serde::Deserialize;
use serde_json::Value;
use wharf_catalog::artifacts::{self, TagQuery};
use wharf_oci::{RepositoryName, Tag};

use super::artifacts::{artifact, digest_text, tag_json};
use super::repositories::{
    full_name, immutable_tags, path_segment, project_ctx, repo_ref, require, text_match,
};
use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::handlers::users::{api_uri, created};
use crate::paging::{paged, ListQuery};
use crate::rbac::{Action, Resource};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/repositories/{repository}/artifacts/{reference}/tags",
            get(list_tags).post(create_tag),
        )
        .route(
            "/projects/{project}/repositories/{repository}/artifacts/{reference}/tags/{tag}",
            delete(delete_tag),
        )
}

async fn list_tags(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo, reference)): Path<(String, String, String)>,
    uri: Uri,
    Query(lq): Query<ListQuery>,
) -> Result<Response> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Tag, Action::List)?;
    let r = repo_ref(&app, &ctx, &repo).await?;
    let a = artifact(&app, &r, &reference).await?;
    let page = lq.page()?;
    let mut q = TagQuery {
        limit: page.limit(),
        offset: page.offset(),
        descending: true,
        ..TagQuery::default()
    };
    for (k, f) in lq.filters()? {
        match k.as_str() {
            "name" => q.name.push(text_match("name", f)?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "cannot filter tags by {other:?}; use name"
                )))
            }
        }
    }
    if let Some((k, desc)) = lq.sort(&["name", "push_time"])?.into_iter().next() {
        q.by_name = k == "name";
        q.descending = desc;
    }
    let (rows, total) = artifacts::list_tags(&app.db, a.id, &q).await?;
    let name = RepositoryName::parse(&r.name).map_err(|e| ApiError::Internal(e.into()))?;
    let names: Vec<String> = rows.iter().map(|t| t.name.clone()).collect();
    let protected: Vec<String> = immutable_tags(&app, ctx.project.project_id, &name, &names)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let items: Vec<Value> = rows
        .iter()
        .map(|t| tag_json(t, protected.contains(&t.name)))
        .collect();
    Ok(paged(items, total, page, &api_uri(&uri)))
}

#[derive(Deserialize)]
struct NewTag {
    name: Option<String>,
}

/// Adds a tag to the artifact. A tag that already exists in the repository
/// is a conflict (move it by deleting it first), as in Harbor.
async fn create_tag(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo, reference)): Path<(String, String, String)>,
    Json(body): Json<NewTag>,
) -> Result<Response> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Tag, Action::Create)?;
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    let tag = Tag::parse(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let r = repo_ref(&app, &ctx, &repo).await?;
    let a = artifact(&app, &r, &reference).await?;
    if artifacts::tag_target(&app.db, r.id, tag.as_str())
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "tag {tag} already exists in repository {}",
            r.name
        )));
    }
    let digest = digest_text(&a.digest);
    crate::registry::put_tag(&app, &r.name, tag.as_str(), &digest, who.username()).await?;
    let in_project = r.name.split_once('/').map(|(_, n)| n).unwrap_or_default();
    Ok(created(format!(
        "/api/v2.0/projects/{}/repositories/{}/artifacts/{digest}/tags/{tag}",
        ctx.project.name,
        path_segment(in_project)
    )))
}

async fn delete_tag(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo, reference, tag)): Path<(String, String, String, String)>,
) -> Result<Response> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Tag, Action::Delete)?;
    let r = repo_ref(&app, &ctx, &repo).await?;
    let a = artifact(&app, &r, &reference).await?;
    let tag = Tag::parse(&tag).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if artifacts::tag_target(&app.db, r.id, tag.as_str()).await? != Some(a.id) {
        return Err(ApiError::NotFound(format!(
            "tag {tag} is not on artifact {}@{}",
            r.name,
            digest_text(&a.digest)
        )));
    }
    let name = full_name(&ctx.project.name, &repo)?;
    if let Some((_, rule)) = immutable_tags(
        &app,
        ctx.project.project_id,
        &name,
        &[tag.as_str().to_owned()],
    )
    .await?
    .into_iter()
    .next()
    {
        return Err(ApiError::Precondition(format!(
            "tag {tag} of {name} is immutable and cannot be deleted (rule: {rule})"
        )));
    }
    crate::registry::delete_tag(&app, &r.name, tag.as_str(), who.username()).await?;
    Ok(http::StatusCode::OK.into_response())
}
