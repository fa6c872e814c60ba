//! Artifacts: `/projects/{project}/repositories/{repository}/artifacts`
//! (list, copy with `?from=`) and `/artifacts/{reference}` (get, delete).
//! An artifact is a manifest of the storage index; changes go through the
//! registry's internal API.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use http::Uri;
use serde::Deserialize;
use serde_json::{json, Value};
use wharf_catalog::artifacts::{self, ArtifactQuery, ArtifactRow, TagCond, TagRow};
use wharf_catalog::repositories::{self, RepoRef};
use wharf_oci::{media, Digest, RepositoryName, Tag};

use super::repositories::{
    bool_param, full_name, immutable_tags, path_segment, project_ctx, repo_ref, require, text_match,
};
use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::handlers::users::{api_uri, created, timestamp};
use crate::paging::{paged, Filter, ListQuery};
use crate::rbac::{Action, Resource};
use crate::{App, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/repositories/{repository}/artifacts",
            get(list_artifacts).post(copy_artifact),
        )
        .route(
            "/projects/{project}/repositories/{repository}/artifacts/{reference}",
            get(get_artifact).delete(delete_artifact),
        )
}

/// Harbor's zero time, which it reports for "never pulled".
const NEVER: &str = "0001-01-01T00:00:00.000Z";

pub(crate) fn time_or_never(t: Option<DateTime<Utc>>) -> String {
    t.map(timestamp).unwrap_or_else(|| NEVER.to_owned())
}

/// A digest or a tag, as `{reference}` holds it.
pub(crate) enum Ref {
    Digest(Digest),
    Tag(String),
}

pub(crate) fn parse_reference(raw: &str) -> Result<Ref> {
    if raw.contains(':') {
        Digest::parse(raw)
            .map(Ref::Digest)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    } else {
        Tag::parse(raw)
            .map(|t| Ref::Tag(t.as_str().to_owned()))
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// The artifact `{reference}` names in the repository, or 404.
pub(crate) async fn artifact(app: &App, repo: &RepoRef, raw: &str) -> Result<ArtifactRow> {
    let found = match parse_reference(raw)? {
        Ref::Digest(d) => artifacts::by_digest(&app.db, repo.id, d.as_bytes()).await?,
        Ref::Tag(t) => artifacts::by_tag(&app.db, repo.id, &t).await?,
    };
    found.ok_or_else(|| ApiError::NotFound(format!("artifact {}@{raw} not found", repo.name)))
}

pub(crate) fn digest_text(bytes: &[u8]) -> String {
    Digest::from_bytes(bytes)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

/// Harbor's artifact `type`: what kind of thing the media types say it is.
pub(crate) fn kind(manifest_media_type: &str, artifact_type: Option<&str>) -> &'static str {
    if media::is_index(manifest_media_type) {
        return "IMAGE";
    }
    match artifact_type {
        Some("application/vnd.oci.image.config.v1+json")
        | Some("application/vnd.docker.container.image.v1+json") => "IMAGE",
        Some("application/vnd.cncf.helm.config.v1+json") => "CHART",
        Some("application/vnd.cnab.manifest.v1") => "CNAB",
        _ => "UNKNOWN",
    }
}

/// Harbor's accessory type for a referrer.
fn accessory_type(artifact_type: Option<&str>) -> &'static str {
    match artifact_type {
        Some("application/vnd.dev.cosign.artifact.sig.v1+json") => "signature.cosign",
        Some("application/vnd.cncf.notary.signature") => "signature.notation",
        _ => "subject.accessory",
    }
}

/// Harbor's `Tag`.
pub(crate) fn tag_json(t: &TagRow, immutable: bool) -> Value {
    json!({
        "id": t.id,
        "repository_id": t.repository_id,
        "artifact_id": t.artifact_id,
        "name": t.name,
        "push_time": timestamp(t.push_time),
        "pull_time": time_or_never(t.pull_time),
        "immutable": immutable,
        "signed": false,
    })
}

fn parse_json(text: &Option<String>) -> Option<Value> {
    text.as_deref().and_then(|t| serde_json::from_str(t).ok())
}

/// What to put on each artifact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct With {
    pub tags: bool,
    pub accessories: bool,
}

/// Harbor's `Artifact` for each row, with tags, an index's references and
/// the accessories as asked.
pub(crate) async fn artifacts_json(
    app: &App,
    project_id: i64,
    repo: &RepoRef,
    rows: &[ArtifactRow],
    with: With,
) -> Result<Vec<Value>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut tags: HashMap<i64, Vec<TagRow>> = HashMap::new();
    let mut protected: Vec<String> = vec![];
    if with.tags && !ids.is_empty() {
        for t in artifacts::tags_of(&app.db, &ids).await? {
            tags.entry(t.artifact_id).or_default().push(t);
        }
        let names: Vec<String> = tags.values().flatten().map(|t| t.name.clone()).collect();
        let name = RepositoryName::parse(&repo.name).map_err(|e| ApiError::Internal(e.into()))?;
        protected = immutable_tags(app, project_id, &name, &names)
            .await?
            .into_iter()
            .map(|(t, _)| t)
            .collect();
    }
    let index_ids: Vec<i64> = rows
        .iter()
        .filter(|r| media::is_index(&r.media_type))
        .map(|r| r.id)
        .collect();
    let mut refs: HashMap<i64, Vec<artifacts::ReferenceRow>> = HashMap::new();
    if !index_ids.is_empty() {
        for r in artifacts::references_of(&app.db, &index_ids).await? {
            refs.entry(r.parent_id).or_default().push(r);
        }
    }
    let mut accessories: HashMap<Vec<u8>, Vec<artifacts::AccessoryRow>> = HashMap::new();
    if with.accessories && !rows.is_empty() {
        let digests: Vec<Vec<u8>> = rows.iter().map(|r| r.digest.clone()).collect();
        for a in artifacts::accessories_of(&app.db, repo.id, &digests).await? {
            accessories
                .entry(a.subject_digest.clone())
                .or_default()
                .push(a);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let digest = digest_text(&r.digest);
        let index = media::is_index(&r.media_type);
        let media_type = if index {
            r.media_type.clone()
        } else {
            r.artifact_type
                .clone()
                .unwrap_or_else(|| r.media_type.clone())
        };
        let mut v = json!({
            "id": r.id,
            "type": kind(&r.media_type, r.artifact_type.as_deref()),
            "media_type": media_type,
            "manifest_media_type": r.media_type,
            "artifact_type": r.artifact_type,
            "project_id": project_id,
            "repository_id": r.repo_id,
            "repository_name": repo.name,
            "digest": digest,
            "size": r.size,
            "icon": "",
            "push_time": timestamp(r.push_time),
            "pull_time": time_or_never(r.pull_time),
            "extra_attrs": parse_json(&r.extra_attrs).unwrap_or_else(|| json!({})),
            "annotations": parse_json(&r.annotations),
        });
        if index {
            // In the index's own order when its bytes have been read.
            let platforms = parse_json(&r.platforms).unwrap_or(Value::Null);
            let mut by_digest: BTreeMap<String, Value> = BTreeMap::new();
            let mut order: Vec<String> = vec![];
            if let Some(ps) = platforms.as_array() {
                for p in ps {
                    if let Some(d) = p.get("digest").and_then(Value::as_str) {
                        order.push(d.to_owned());
                        by_digest.insert(d.to_owned(), p.clone());
                    }
                }
            }
            let mut children = refs.remove(&r.id).unwrap_or_default();
            children.sort_by_key(|c| {
                let d = digest_text(&c.child_digest);
                order.iter().position(|o| *o == d).unwrap_or(usize::MAX)
            });
            let references: Vec<Value> = children
                .iter()
                .map(|c| {
                    let d = digest_text(&c.child_digest);
                    let mut rv = json!({
                        "parent_id": r.id,
                        "child_id": c.child_id.unwrap_or(0),
                        "child_digest": d,
                    });
                    if let Some(p) = by_digest.get(&d) {
                        for k in ["platform", "annotations", "urls"] {
                            if let Some(x) = p.get(k) {
                                rv[k] = x.clone();
                            }
                        }
                    }
                    rv
                })
                .collect();
            v["references"] = json!(references);
        }
        if with.tags {
            let ts: Vec<Value> = tags
                .remove(&r.id)
                .unwrap_or_default()
                .iter()
                .map(|t| tag_json(t, protected.contains(&t.name)))
                .collect();
            v["tags"] = json!(ts);
        }
        if with.accessories {
            let acc: Vec<Value> = accessories
                .remove(&r.digest)
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    json!({
                        "id": a.id,
                        "artifact_id": a.id,
                        "subject_artifact_id": r.id,
                        "subject_artifact_digest": digest,
                        "subject_artifact_repo": repo.name,
                        "size": a.size,
                        "digest": digest_text(&a.digest),
                        "type": accessory_type(a.artifact_type.as_deref()),
                        "icon": "",
                        "creation_time": timestamp(a.push_time),
                    })
                })
                .collect();
            v["accessories"] = json!(acc);
        }
        out.push(v);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct ListArtifactsQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    q: Option<String>,
    sort: Option<String>,
    with_tag: Option<String>,
    with_accessory: Option<String>,
    // Accepted for Harbor's clients; Wharf has no labels, scans or signatures.
    #[serde(rename = "with_label")]
    _with_label: Option<String>,
    #[serde(rename = "with_scan_overview")]
    _with_scan_overview: Option<String>,
    #[serde(rename = "with_signature")]
    _with_signature: Option<String>,
    #[serde(rename = "with_immutable_status")]
    _with_immutable_status: Option<String>,
}

fn artifact_query(lq: &ListQuery) -> Result<ArtifactQuery> {
    let page = lq.page()?;
    let mut q = ArtifactQuery {
        limit: page.limit(),
        offset: page.offset(),
        ..ArtifactQuery::default()
    };
    for (k, f) in lq.filters()? {
        match (k.as_str(), f) {
            ("digest", Filter::Exact(v)) => {
                let d = Digest::parse(&v).map_err(|e| ApiError::BadRequest(e.to_string()))?;
                q.digest = Some(d.as_bytes().to_vec());
            }
            ("tags", Filter::Exact(v)) if v == "*" => q.tags.push(TagCond::Any),
            ("tags", Filter::Exact(v)) if v == "nil" => q.tags.push(TagCond::None),
            ("tags", f) => q.tags.push(TagCond::Name(text_match("tags", f)?)),
            ("media_type", Filter::Exact(v)) => q.media_type = Some(v),
            ("base", Filter::Exact(v)) if v == "*" => q.all = true,
            ("digest" | "media_type" | "base", _) => {
                return Err(ApiError::BadRequest(format!(
                    "{k} takes {k}=<value>{}",
                    if k == "base" { " (base=*)" } else { "" }
                )))
            }
            (other, _) => {
                return Err(ApiError::BadRequest(format!(
                    "cannot filter artifacts by {other:?}; use digest, tags, media_type or base"
                )))
            }
        }
    }
    for (k, desc) in lq.sort(&["push_time"])? {
        if k == "push_time" {
            q.ascending = !desc;
        }
    }
    Ok(q)
}

async fn list_artifacts(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo)): Path<(String, String)>,
    uri: Uri,
    Query(aq): Query<ListArtifactsQuery>,
) -> Result<Response> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Artifact, Action::List)?;
    let lq = ListQuery {
        page: aq.page,
        page_size: aq.page_size,
        q: aq.q.clone(),
        sort: aq.sort.clone(),
    };
    let q = artifact_query(&lq)?;
    let with = With {
        tags: bool_param("with_tag", aq.with_tag.as_deref(), true)?,
        accessories: bool_param("with_accessory", aq.with_accessory.as_deref(), false)?,
    };
    let r = repo_ref(&app, &ctx, &repo).await?;
    let (rows, total) = artifacts::list(&app.db, r.id, &q).await?;
    let items = artifacts_json(&app, ctx.project.project_id, &r, &rows, with).await?;
    Ok(paged(items, total, lq.page()?, &api_uri(&uri)))
}

#[derive(Deserialize)]
struct GetArtifactQuery {
    with_tag: Option<String>,
    with_accessory: Option<String>,
}

async fn get_artifact(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo, reference)): Path<(String, String, String)>,
    Query(gq): Query<GetArtifactQuery>,
) -> Result<Json<Value>> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Artifact, Action::Read)?;
    let r = repo_ref(&app, &ctx, &repo).await?;
    let mut row = artifact(&app, &r, &reference).await?;
    if !row.has_meta {
        // Read its bytes now rather than wait for the outbox consumer.
        if let Some(d) = Digest::from_bytes(&row.digest) {
            match crate::meta::ensure(&app, &r.name, &d).await {
                Ok(true) => {
                    if let Some(fresh) = artifacts::by_digest(&app.db, r.id, &row.digest).await? {
                        row = fresh;
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "reading artifact metadata failed"),
            }
        }
    }
    let with = With {
        tags: bool_param("with_tag", gq.with_tag.as_deref(), true)?,
        accessories: bool_param("with_accessory", gq.with_accessory.as_deref(), false)?,
    };
    let mut items = artifacts_json(
        &app,
        ctx.project.project_id,
        &r,
        std::slice::from_ref(&row),
        with,
    )
    .await?;
    Ok(Json(items.pop().unwrap_or(Value::Null)))
}

/// Deletes the artifact (all its tags with it) through the registry. Its
/// referrers go first; an artifact that a live index lists is refused; an
/// index's untagged children that no other index lists go with it.
async fn delete_artifact(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo, reference)): Path<(String, String, String)>,
) -> Result<Response> {
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Artifact, Action::Delete)?;
    let r = repo_ref(&app, &ctx, &repo).await?;
    let row = artifact(&app, &r, &reference).await?;
    let digest = digest_text(&row.digest);
    if let Some(parent) = artifacts::parents_of(&app.db, r.id, &row.digest)
        .await?
        .first()
    {
        return Err(ApiError::Precondition(format!(
            "artifact {}@{digest} is part of index {}; delete the index instead",
            r.name,
            digest_text(parent)
        )));
    }
    let name = full_name(&ctx.project.name, &repo)?;
    let tags: Vec<String> = artifacts::tags_of(&app.db, &[row.id])
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    if let Some((tag, rule)) = immutable_tags(&app, ctx.project.project_id, &name, &tags)
        .await?
        .into_iter()
        .next()
    {
        return Err(ApiError::Precondition(format!(
            "artifact {}@{digest} cannot be deleted: its tag {tag} is immutable (rule: {rule})",
            r.name
        )));
    }
    for a in artifacts::accessories_of(&app.db, r.id, std::slice::from_ref(&row.digest)).await? {
        match crate::registry::delete_artifact(
            &app,
            &r.name,
            &digest_text(&a.digest),
            who.username(),
        )
        .await
        {
            Ok(()) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let children: Vec<artifacts::ReferenceRow> = if media::is_index(&row.media_type) {
        artifacts::references_of(&app.db, &[row.id]).await?
    } else {
        vec![]
    };
    crate::registry::delete_artifact(&app, &r.name, &digest, who.username()).await?;
    // As Harbor does: an index takes its children along, unless they are
    // tagged or another index still lists them.
    for c in children {
        let Some(child_id) = c.child_id else { continue };
        if !artifacts::parents_of(&app.db, r.id, &c.child_digest)
            .await?
            .is_empty()
            || !artifacts::tags_of(&app.db, &[child_id]).await?.is_empty()
        {
            continue;
        }
        let child = digest_text(&c.child_digest);
        match crate::registry::delete_artifact(&app, &r.name, &child, who.username()).await {
            Ok(()) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(http::StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct CopyQuery {
    from: Option<String>,
}

/// `proj/repo@sha256:…` or `proj/repo:tag` → (repository, reference).
fn parse_from(from: &str) -> Result<(RepositoryName, String)> {
    let bad = || {
        ApiError::BadRequest(format!(
            "from {from:?} must be <project>/<repository>@<digest> or <project>/<repository>:<tag>"
        ))
    };
    let (repo, reference) = match from.split_once('@') {
        Some((r, d)) => (r, d),
        None => {
            let slash = from.rfind('/').ok_or_else(bad)?;
            let colon = from[slash..].find(':').ok_or_else(bad)? + slash;
            (&from[..colon], &from[colon + 1..])
        }
    };
    let repo = RepositoryName::parse(repo).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !repo.as_str().contains('/') {
        return Err(bad());
    }
    parse_reference(reference)?;
    Ok((repo, reference.to_owned()))
}

/// Copies an artifact (an index with its children) from another repository,
/// with the tags it has there, as Harbor does.
async fn copy_artifact(
    State(app): State<AppState>,
    who: Principal,
    Path((project, repo)): Path<(String, String)>,
    Query(cq): Query<CopyQuery>,
) -> Result<Response> {
    let from = cq
        .from
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the query parameter from is required".into()))?;
    let ctx = project_ctx(&app, &who, &project).await?;
    require(&who, &ctx, Resource::Artifact, Action::Create)?;
    let target = full_name(&ctx.project.name, &repo)?;
    let (src_name, reference) = parse_from(&from)?;
    let src_project = src_name.as_str().split('/').next().unwrap_or_default();
    let src_ctx = project_ctx(&app, &who, src_project).await?;
    require(&who, &src_ctx, Resource::Repository, Action::Pull)?;
    let src_missing = || ApiError::NotFound(format!("artifact {from} not found"));
    let src = repositories::find(&app.db, src_name.as_str())
        .await?
        .ok_or_else(src_missing)?;
    let row = artifact(&app, &src, &reference)
        .await
        .map_err(|_| src_missing())?;
    let digest = digest_text(&row.digest);
    if let Some(existing) = repositories::find(&app.db, target.as_str()).await? {
        if artifacts::by_digest(&app.db, existing.id, &row.digest)
            .await?
            .is_some()
        {
            return Err(ApiError::Conflict(format!(
                "the artifact {target}@{digest} already exists"
            )));
        }
    }
    let tags: Vec<String> = artifacts::tags_of(&app.db, &[row.id])
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    crate::registry::copy(
        &app,
        src_name.as_str(),
        &digest,
        target.as_str(),
        &tags,
        who.username(),
    )
    .await?;
    let in_project = target
        .as_str()
        .split_once('/')
        .map(|(_, r)| r)
        .unwrap_or_default();
    Ok(created(format!(
        "/api/v2.0/projects/{}/repositories/{}/artifacts/{digest}",
        ctx.project.name,
        path_segment(in_project)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources() {
        let d = format!("sha256:{}", "a".repeat(64));
        let (r, rf) = parse_from(&format!("lib/app@{d}")).unwrap();
        assert_eq!((r.as_str(), rf.as_str()), ("lib/app", d.as_str()));
        let (r, rf) = parse_from("lib/a/b:v1.0").unwrap();
        assert_eq!((r.as_str(), rf.as_str()), ("lib/a/b", "v1.0"));
        assert!(parse_from("app:v1").is_err());
        assert!(parse_from("lib/app").is_err());
        assert!(parse_from("lib/app@sha256:00").is_err());
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(media::OCI_INDEX, None), "IMAGE");
        assert_eq!(
            kind(
                media::OCI_MANIFEST,
                Some("application/vnd.oci.image.config.v1+json")
            ),
            "IMAGE"
        );
        assert_eq!(
            kind(
                media::OCI_MANIFEST,
                Some("application/vnd.cncf.helm.config.v1+json")
            ),
            "CHART"
        );
        assert_eq!(
            kind(media::OCI_MANIFEST, Some("application/x.thing")),
            "UNKNOWN"
        );
    }
}
